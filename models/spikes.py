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

Implementation: rows go through in chunks of about :data:`CHUNK_SAMPLES` input samples; the
resampling is ``scipy.signal.resample_poly``'s filter applied as one block-Toeplitz matrix product,
the zero-phase filters are ``sosfiltfilt``'s arithmetic with their designs and initial conditions
cached per rate, the envelope comes from real FFTs, and a clip-length signal (one distribution
window) keeps its threshold as one value per row. The detections are those of the per-stage scipy
calls the detector first used (``tests/models/test_spikes_reference.py`` holds them frozen); the
floats agree to rounding (about 1e-15).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import fft as sp_fft
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, firwin, iirnotch, sosfilt, sosfilt_zi, tf2sos

from models.arrays import check_finite_rows, check_sfreq

logger = logging.getLogger(__name__)

#: Rate the detector runs at; every duration parameter below is applied at this rate.
DETECTION_SFREQ = 200.0

#: Input samples processed together (rows of the signal in chunks of about this size): bounds the
#: temporaries and keeps them in cache; rows are independent, so the result does not depend on it.
CHUNK_SAMPLES = 2**20


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


def _resampling_ratio(sfreq: float) -> tuple[int, int]:
    """``(up, down)`` that bring ``sfreq`` to about 200 Hz; ``(1, 1)`` for slower signals."""
    if sfreq <= DETECTION_SFREQ:
        return 1, 1
    ratio = Fraction(DETECTION_SFREQ / sfreq).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=32)
def _resampling_plan(n_in: int, up: int, down: int) -> tuple[np.ndarray, int, int, int, int]:
    """Block-Toeplitz form of ``scipy.signal.resample_poly(x, up, down)`` for rows of ``n_in``.

    ``resample_poly`` filters with the Kaiser-windowed FIR below and keeps the centred outputs; a
    shift of ``up`` outputs is a shift of ``down`` inputs, so blocks of ``q * up`` consecutive
    outputs are one matrix ``T`` applied to windows of the zero-padded input stepped by
    ``q * down`` samples: one BLAS product instead of ``upfirdn``'s per-sample loop (same outputs
    to rounding, about 1e-15 of the signal).

    Returns ``(T, left, stride, n_blocks, n_out)``: ``T`` shape (span, q * up), read-only;
    ``left`` zeros before the input; windows ``stride`` apart; ``n_blocks`` windows; ``n_out``
    output samples (``resample_poly``'s length).
    """
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    n_pre_pad = down - half_len % down
    h = np.concatenate((np.zeros(n_pre_pad), h))
    n_taps = h.size
    n_out = -(-n_in * up // down)
    pre_remove = (half_len + n_pre_pad) // down
    q = max(1, -(-n_taps // (up * down)))  # blocks about as long as the filter
    block = q * up
    # output n of a block uses inputs i with 0 <= (n + pre_remove) * down - i * up < n_taps
    i_min = -(-(pre_remove * down - (n_taps - 1)) // up)
    i_max = ((block - 1 + pre_remove) * down) // up
    k = (np.arange(block) + pre_remove) * down - np.arange(i_min, i_max + 1)[:, np.newaxis] * up
    inside = (k >= 0) & (k < n_taps)
    taps = np.where(inside, h[np.where(inside, k, 0)], 0.0)
    taps.flags.writeable = False
    return taps, -i_min, q * down, -(-n_out // block), n_out


def _to_detection_rate(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase-resample float64 rows by ``up / down`` (``resample_poly``, zero-padded edges).

    x : shape (n_rows, n_in) -> shape (n_rows, n_out), C-contiguous.
    """
    if up == down:
        return x
    taps, left, stride, n_blocks, n_out = _resampling_plan(x.shape[-1], up, down)
    span, block = taps.shape
    n_rows = x.shape[0]
    padded = np.zeros((n_rows, (n_blocks - 1) * stride + span))
    n_used = min(x.shape[-1], padded.shape[-1] - left)
    padded[:, left : left + n_used] = x[:, :n_used]
    item = padded.itemsize
    windows = as_strided(
        padded, (n_rows, n_blocks, span), (padded.strides[0], stride * item, item), writeable=False
    )
    out = (windows @ taps).reshape(n_rows, n_blocks * block)  # (rows, blocks, q*up) -> (rows, t)
    return np.ascontiguousarray(out[:, :n_out])


@dataclass(frozen=True)
class _ZeroPhase:
    """A zero-phase IIR filter as ``scipy.signal.sosfiltfilt`` applies it (odd extension of
    ``edge`` samples, initial conditions ``zi`` scaled by the first sample), with the design and
    ``sosfilt_zi`` computed once instead of on every call: the same arithmetic, the same output.
    """

    sos: np.ndarray
    zi: np.ndarray
    edge: int

    @classmethod
    def design(cls, sos: np.ndarray) -> _ZeroPhase:
        n_sections = sos.shape[0]
        n_taps = 2 * n_sections + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
        return cls(sos, sosfilt_zi(sos).reshape(n_sections, 1, 2), int(3 * n_taps))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x : shape (n_rows, n_times), n_times > edge -> shape (n_rows, n_times)."""
        n = self.edge
        if x.shape[-1] <= n:
            raise ValueError(
                f"The length of the input vector x must be greater than padlen, which is {n}."
            )
        ext = np.concatenate(
            (2 * x[:, :1] - x[:, n:0:-1], x, 2 * x[:, -1:] - x[:, -2 : -(n + 2) : -1]), axis=-1
        )
        y, _ = sosfilt(self.sos, ext, axis=-1, zi=self.zi * ext[:, :1])
        y, _ = sosfilt(self.sos, y[:, ::-1], axis=-1, zi=self.zi * y[:, -1:])
        return y[:, ::-1][:, n:-n] if n > 0 else y[:, ::-1]


@lru_cache(maxsize=32)
def _filters(
    fs: float, band: tuple[float, float], line_freq: float | None
) -> tuple[_ZeroPhase, ...]:
    """The line notches (one per harmonic below Nyquist), then the band-pass, at rate ``fs``.

    Cached per rate and settings; callers must not modify the arrays (``sosfilt`` needs them
    writable).
    """
    stages = []
    if line_freq is not None:
        for f0 in np.arange(line_freq, fs / 2, line_freq):
            b, a = iirnotch(f0, Q=30.0, fs=fs)
            stages.append(_ZeroPhase.design(tf2sos(b, a)))
    sos = np.vstack(
        [
            butter(5, band[0], btype="highpass", fs=fs, output="sos"),
            butter(5, band[1], btype="lowpass", fs=fs, output="sos"),
        ]
    )
    return (*stages, _ZeroPhase.design(sos))


def _envelope(x: np.ndarray) -> np.ndarray:
    """``abs(scipy.signal.hilbert(x, axis=-1))`` from real FFTs.

    The analytic signal's real part is ``x`` and its imaginary part the Hilbert transform, the
    inverse real FFT of ``-1j`` times the positive frequencies (DC and an even length's Nyquist
    bin zero): half the work of the complex inverse FFT, the same envelope to rounding.

    x : shape (n_rows, n_times) -> shape (n_rows, n_times).
    """
    n_times = x.shape[-1]
    spec = sp_fft.rfft(x, axis=-1)
    spec[:, 0] = 0.0
    if n_times % 2 == 0:
        spec[:, -1] = 0.0
    spec *= -1j
    envelope = sp_fft.irfft(spec, n=n_times, axis=-1)
    envelope *= envelope
    envelope += x * x
    return np.sqrt(envelope, out=envelope)


def _lognormal_threshold(
    envelope: np.ndarray, fs: float, k1: float, window_s: float, step_s: float
) -> np.ndarray:
    """Janca's threshold curve ``k1 * (mode + median)`` of windowed log-normal fits.

    envelope : shape (n_chans, n_times) -> threshold, shape (n_chans, n_times), or shape
    (n_chans, 1) (to broadcast) when the signal holds one window (a clip).
    """
    n_chans, n_times = envelope.shape
    win = min(round(window_s * fs), n_times)
    step = max(round(step_s * fs), 1)
    tiny = np.finfo(envelope.dtype).tiny
    log_env = np.log(np.maximum(envelope, tiny))
    starts = np.arange(0, n_times - win + 1, step)
    if starts.size == 1:
        # one window: its statistics are the threshold everywhere
        head = log_env[:, :win]
        mu = head.sum(axis=-1, keepdims=True) / win
        mean_sq = np.einsum("ct,ct->c", head, head)[:, np.newaxis] / win
        sigma = np.sqrt(np.maximum(mean_sq - mu**2, 0.0))
        return k1 * (np.exp(mu - sigma**2) + np.exp(mu))
    # window means of log env and its square from cumulative sums: O(n_times) per channel
    stops = starts + win
    csum = np.pad(np.cumsum(log_env, axis=-1), ((0, 0), (1, 0)))
    csq = np.pad(np.cumsum(log_env**2, axis=-1), ((0, 0), (1, 0)))
    mu = (csum[:, stops] - csum[:, starts]) / win  # (C, W)
    sigma = np.sqrt(np.maximum((csq[:, stops] - csq[:, starts]) / win - mu**2, 0.0))
    n_win = mu.shape[1]
    n_avg = max(round(window_s / step_s), 1)
    if n_avg > 1:
        # forward-backward moving average over the windows, as the reference's filtfilt
        for _ in range(2):
            mu = uniform_filter1d(mu, n_avg, axis=-1, mode="nearest")
            sigma = uniform_filter1d(sigma, n_avg, axis=-1, mode="nearest")
    centres = np.arange(n_win) * step + win / 2
    t = np.clip(np.arange(n_times), centres[0], centres[-1])
    mu = PchipInterpolator(centres, mu, axis=-1)(t)
    sigma = PchipInterpolator(centres, sigma, axis=-1)(t)
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
    above = envelope > threshold  # threshold (C, T) or (C, 1)
    if edge > 0:
        above[:, :edge] = False
        above[:, -edge:] = False
    ch, t = np.divmod(np.flatnonzero(above), above.shape[-1])  # sorted by channel, then time
    if ch.size == 0:
        return ch, t
    # a local maximum of the run: neighbours outside it (or outside the signal) count as lower
    last = envelope.shape[-1] - 1
    values = envelope[ch, t]
    prev, succ = np.maximum(t - 1, 0), np.minimum(t + 1, last)
    is_peak = (t == 0) | ~above[ch, prev] | (values >= envelope[ch, prev])
    is_peak &= (t == last) | ~above[ch, succ] | (values > envelope[ch, succ])
    ch, t, values = ch[is_peak], t[is_peak], values[is_peak]
    if ch.size == 0:
        return ch, t
    new_group = np.ones(ch.size, dtype=bool)
    new_group[1:] = (ch[1:] != ch[:-1]) | (np.diff(t) > union)
    group = np.cumsum(new_group) - 1
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
    up, down = _resampling_ratio(float(sfreq))
    fs = float(sfreq) * up / down
    n_det = -(-n_times * up // down)  # samples at the detection rate
    edge = round(edge_s * fs)
    analysed_s = max(n_det - 2 * edge, 0) / fs
    # Butterworth order 5 per edge (sosfiltfilt pads with odd extension)
    padlen = 3 * 2 * 6
    if analysed_s <= 0 or n_det <= padlen:
        logger.debug("signal of %d samples too short for spike detection", n_times)
        return SpikeDetections(empty, empty, np.array([]), np.array([]), n_chans, n_times,
                               float(sfreq), 0.0)  # fmt: skip
    filters = _filters(fs, (float(band[0]), float(band[1])), line_freq)
    step = max(CHUNK_SAMPLES // n_times, 1)
    found = [(empty, empty, np.array([]), np.array([]))]
    for start in range(0, n_chans, step):
        rows = signal[start : start + step]
        x = _to_detection_rate(rows.astype(np.float64, copy=False), up, down)
        for zero_phase in filters:
            x = zero_phase(x)
        envelope = _envelope(x)
        threshold = _lognormal_threshold(envelope, fs, k1, window_s, step_s)
        threshold[np.ptp(rows, axis=-1) == 0] = np.inf  # flat rows
        channel, peak = _peaks_above(envelope, threshold, round(union_s * fs), edge)
        amplitude = envelope[channel, peak]
        ratio = amplitude / np.broadcast_to(threshold, envelope.shape)[channel, peak]
        found.append((channel + start, peak, amplitude, ratio))
    channel, peak, amplitude, ratio = (np.concatenate(parts) for parts in zip(*found, strict=True))
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
