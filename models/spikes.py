"""Interictal spike detection by envelope distribution modelling (Janca et al., 2015).

The detector follows Janca R. et al., "Detection of interictal epileptiform discharges using
signal envelope distribution modelling: application to epileptic and non-epileptic intracranial
recordings", Brain Topography 28(1):172-183, 2015 (doi:10.1007/s10548-014-0379-1), and the
authors' reference implementation (``spike_detector_hilbert``):

1. resample to 200 Hz (the rate every other parameter is defined at);
2. band-pass 10-60 Hz (zero-phase Butterworth, order 5 per edge, the reference's ``-ft 2``);
3. instantaneous envelope ``|hilbert(x)|``;
4. in 5-s windows stepped by 1 s, fit a log-normal distribution to the envelope
   (``mu = mean(log env)``, ``sigma = std(log env)``); smooth both over 5 windows and interpolate
   them to every sample;
5. threshold ``k1 * (mode + median)`` of that log-normal, ``mode = exp(mu - sigma**2)``,
   ``median = exp(mu)``, ``k1 = 3.65``;
6. local maxima of the envelope above the threshold; maxima closer than 120 ms (the
   "polyspike union time") are one discharge, marked at its highest maximum;
7. the first and last second are not analysed (filter and Hilbert transients).

Because the threshold is a multiple of the *local* envelope statistics, the detector is
invariant to the signal's scale: it works the same on microvolts, volts, or the per-channel
scaled signals of the clip store.

Differences from the reference implementation: the optional beta-activity rejection and the
"ambiguous spike" second threshold ``k2`` (both off by default there) are not implemented; a
polyspike complex is reported once at its highest envelope peak (the reference's comment says
so, its code may keep several peaks of one complex); the window statistics are interpolated with a
shape-preserving PCHIP rather than a spline (no overshoot between windows); line noise is assumed
removed upstream (ingest notches it) unless ``line_freq`` is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, hilbert, iirnotch, resample_poly, sosfiltfilt, tf2sos

from models.arrays import check_finite_rows, check_sfreq

logger = logging.getLogger(__name__)

#: Rate the detector runs at; every duration parameter below is applied at this rate.
DETECTION_SFREQ = 200.0


@dataclass(frozen=True)
class SpikeDetections:
    """Spikes found by :func:`detect_spikes`, one row per spike (like MNE events).

    Parameters
    ----------
    channel : ndarray of int, shape (n_spikes,)
        Row of the input signal the spike was found in.
    sample : ndarray of int, shape (n_spikes,)
        Sample of the envelope peak, at the *input* sampling rate. Sorted by channel, then time.
    amplitude : ndarray of float, shape (n_spikes,)
        Envelope of the 10-60 Hz band at the peak, in the input's units.
    ratio : ndarray of float, shape (n_spikes,)
        Envelope divided by the local threshold at the peak (>= 1): a unit-free strength.
    n_chans : int
        Number of channels of the input.
    n_times : int
        Number of samples of the input.
    sfreq : float
        Sampling frequency of the input in Hz.
    analysed_s : float
        Seconds of each channel that were searched (the signal less the excluded edges).
    """

    channel: np.ndarray
    sample: np.ndarray
    amplitude: np.ndarray
    ratio: np.ndarray
    n_chans: int
    n_times: int
    sfreq: float
    analysed_s: float

    @property
    def n_spikes(self) -> int:
        """Total number of spikes over all channels."""
        return int(self.channel.size)

    def counts(self) -> np.ndarray:
        """Number of spikes per channel, ndarray of int, shape (n_chans,)."""
        return np.bincount(self.channel, minlength=self.n_chans)

    def rate_per_minute(self) -> np.ndarray:
        """Spikes per minute of analysed signal, ndarray of float, shape (n_chans,).

        Zero for every channel when nothing could be analysed (signal shorter than the edges).
        """
        if self.analysed_s <= 0:
            return np.zeros(self.n_chans)
        return self.counts() * (60.0 / self.analysed_s)

    def per_channel(self) -> list[np.ndarray]:
        """Spike samples of each channel, a list of n_chans int arrays (input rate)."""
        bounds = np.searchsorted(self.channel, np.arange(self.n_chans + 1))
        return [self.sample[bounds[c] : bounds[c + 1]] for c in range(self.n_chans)]


def _check_params(
    sfreq: float,
    band: tuple[float, float],
    k1: float,
    window_s: float,
    step_s: float,
    union_s: float,
    edge_s: float,
    line_freq: float | None,
) -> None:
    check_sfreq(sfreq)
    low, high = band
    rate = min(sfreq, DETECTION_SFREQ)
    if not 0 < low < high < rate / 2:
        raise ValueError(
            f"{band=} must satisfy 0 < low < high < {rate / 2:g} Hz (Nyquist of the "
            f"{rate:g} Hz detection rate); pass a band inside it."
        )
    if k1 <= 0:
        raise ValueError(f"{k1=} must be > 0 (the reference uses 3.65).")
    if window_s <= 0 or step_s <= 0 or step_s > window_s:
        raise ValueError(f"{window_s=} and {step_s=} must be > 0 with step_s <= window_s.")
    if union_s < 0 or edge_s < 0:
        raise ValueError(f"{union_s=} and {edge_s=} must be >= 0.")
    if line_freq is not None and not 0 < line_freq < rate / 2:
        raise ValueError(f"{line_freq=} must lie in (0, {rate / 2:g}) Hz or be None.")


def _to_detection_rate(signal: np.ndarray, sfreq: float) -> tuple[np.ndarray, float]:
    """Polyphase-resample to 200 Hz when faster; slower signals are kept as they are."""
    if sfreq <= DETECTION_SFREQ:
        return signal, sfreq
    ratio = Fraction(DETECTION_SFREQ / sfreq).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)
    return out, sfreq * ratio.numerator / ratio.denominator


def _lognormal_threshold(
    envelope: np.ndarray, fs: float, k1: float, window_s: float, step_s: float
) -> np.ndarray:
    """Janca's threshold curve ``k1 * (mode + median)`` of windowed log-normal fits.

    envelope : shape (n_chans, n_times) -> threshold, shape (n_chans, n_times).
    """
    n_chans, n_times = envelope.shape
    win = min(round(window_s * fs), n_times)
    step = max(round(step_s * fs), 1)
    tiny = np.finfo(envelope.dtype).tiny
    log_env = np.log(np.maximum(envelope, tiny))
    # window means of log env and its square from cumulative sums: O(n_times) per channel
    starts = np.arange(0, n_times - win + 1, step)
    stops = starts + win
    csum = np.pad(np.cumsum(log_env, axis=-1), ((0, 0), (1, 0)))
    csq = np.pad(np.cumsum(log_env**2, axis=-1), ((0, 0), (1, 0)))
    mu = (csum[:, stops] - csum[:, starts]) / win  # (C, W)
    sigma = np.sqrt(np.maximum((csq[:, stops] - csq[:, starts]) / win - mu**2, 0.0))
    n_win = mu.shape[1]
    n_avg = max(round(window_s / step_s), 1)
    if n_win > 1 and n_avg > 1:
        # forward-backward moving average over the windows, as the reference's filtfilt
        for _ in range(2):
            mu = uniform_filter1d(mu, n_avg, axis=-1, mode="nearest")
            sigma = uniform_filter1d(sigma, n_avg, axis=-1, mode="nearest")
    if n_win > 1:
        centres = np.arange(n_win) * step + win / 2
        t = np.clip(np.arange(n_times), centres[0], centres[-1])
        mu = PchipInterpolator(centres, mu, axis=-1)(t)
        sigma = PchipInterpolator(centres, sigma, axis=-1)(t)
    else:
        mu = np.repeat(mu, n_times, axis=-1)
        sigma = np.repeat(sigma, n_times, axis=-1)
    return k1 * (np.exp(mu - sigma**2) + np.exp(mu))


def _peaks_above(
    envelope: np.ndarray, threshold: np.ndarray, union: int, edge: int
) -> tuple[np.ndarray, np.ndarray]:
    """Highest envelope maximum of each supra-threshold discharge.

    Candidates are local maxima of the envelope inside runs above the threshold (run edges
    count as lower neighbours, so each run has at least one); candidates of a channel closer
    than ``union`` samples form one discharge, kept at its highest candidate.
    Returns ``(channel, sample)`` int arrays sorted by channel then sample.
    """
    above = envelope > threshold
    if edge > 0:
        above[:, :edge] = False
        above[:, -edge:] = False
    masked = np.where(above, envelope, -np.inf)
    left = np.pad(masked, ((0, 0), (1, 0)), constant_values=-np.inf)[:, :-1]
    right = np.pad(masked, ((0, 0), (0, 1)), constant_values=-np.inf)[:, 1:]
    is_peak = above & (masked >= left) & (masked > right)
    ch, t = np.nonzero(is_peak)  # row-major: sorted by channel, then time
    if ch.size == 0:
        return ch, t
    new_group = np.ones(ch.size, dtype=bool)
    new_group[1:] = (ch[1:] != ch[:-1]) | (np.diff(t) > union)
    group = np.cumsum(new_group) - 1
    values = envelope[ch, t]
    order = np.lexsort((-values, group))  # per group, the highest value first
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    first.sort()
    return ch[first], t[first]


def detect_spikes(
    signal: np.ndarray,
    sfreq: float,
    *,
    band: tuple[float, float] = (10.0, 60.0),
    k1: float = 3.65,
    window_s: float = 5.0,
    step_s: float = 1.0,
    union_s: float = 0.12,
    edge_s: float = 1.0,
    line_freq: float | None = None,
) -> SpikeDetections:
    """Detect interictal epileptiform discharges (spikes) per channel (Janca et al., 2015).

    See the module docstring for the algorithm. Thresholds are relative to each channel's local
    envelope distribution, so ``signal`` may be in any unit and scaled per channel.

    Parameters
    ----------
    signal : ndarray, shape (n_chans, n_times)
        Intracranial signal (any unit). Rows are processed independently, so a stack of clips
        reshaped to ``(n_clips * n_chans, n_samples)`` is valid input.
    sfreq : float
        Sampling frequency of ``signal`` in Hz. Faster signals are resampled to 200 Hz.
    band : tuple of float
        Band-pass edges in Hz (reference: 10-60 Hz).
    k1 : float
        Threshold factor on ``mode + median`` of the log-normal envelope model (reference: 3.65).
    window_s, step_s : float
        Length and step of the windows the envelope distribution is fitted in (reference: 5 s,
        1 s). A signal shorter than ``window_s`` is fitted in one window.
    union_s : float
        Polyspike union time: maxima closer than this are one discharge (reference: 0.12 s).
    edge_s : float
        Seconds excluded at each end (reference: 1 s). Lower it for short clips.
    line_freq : float | None
        Notch this line frequency (and harmonics below Nyquist) before detection; ``None``
        when line noise was already removed (the clip store's case).

    Returns
    -------
    detections : SpikeDetections
        Spike channels, samples (input rate), amplitudes (input units) and threshold ratios.
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ValueError(
            f"signal must have shape (n_chans, n_times), got {signal.shape}; "
            "pass signal[np.newaxis] for one channel."
        )
    _check_params(sfreq, band, k1, window_s, step_s, union_s, edge_s, line_freq)
    n_chans, n_times = signal.shape
    check_finite_rows(
        signal, "signal", "channels", "interpolate or drop them before spike detection."
    )
    empty = np.array([], dtype=np.int64)
    x, fs = _to_detection_rate(signal.astype(np.float64, copy=False), float(sfreq))
    edge = round(edge_s * fs)
    analysed_s = max(x.shape[-1] - 2 * edge, 0) / fs
    # Butterworth order 5 per edge (sosfiltfilt pads with odd extension)
    padlen = 3 * 2 * 6
    if analysed_s <= 0 or x.shape[-1] <= padlen:
        logger.debug("signal of %d samples too short for spike detection", n_times)
        return SpikeDetections(empty, empty, np.array([]), np.array([]), n_chans, n_times,
                               float(sfreq), 0.0)  # fmt: skip
    if line_freq is not None:
        for f0 in np.arange(line_freq, fs / 2, line_freq):
            b, a = iirnotch(f0, Q=30.0, fs=fs)
            x = sosfiltfilt(tf2sos(b, a), x, axis=-1)
    sos = np.vstack(
        [
            butter(5, band[0], btype="highpass", fs=fs, output="sos"),
            butter(5, band[1], btype="lowpass", fs=fs, output="sos"),
        ]
    )
    filtered = sosfiltfilt(sos, x, axis=-1)
    envelope = np.abs(hilbert(filtered, axis=-1))
    threshold = _lognormal_threshold(envelope, fs, k1, window_s, step_s)
    flat = np.ptp(signal, axis=-1) == 0
    threshold[flat] = np.inf
    channel, peak = _peaks_above(envelope, threshold, round(union_s * fs), edge)
    amplitude = envelope[channel, peak]
    ratio = amplitude / threshold[channel, peak]
    sample = np.minimum(np.round(peak * (sfreq / fs)).astype(np.int64), n_times - 1)
    return SpikeDetections(
        channel=channel.astype(np.int64),
        sample=sample,
        amplitude=amplitude,
        ratio=ratio,
        n_chans=n_chans,
        n_times=n_times,
        sfreq=float(sfreq),
        analysed_s=analysed_s,
    )
