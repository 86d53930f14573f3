"""Pure array functions of ingest: filter design, resampling, FIR filtering, robust scaling.

Arrays are ``(n_chans, n_times)`` (or ``(n_clips, n_chans, n_samples)`` for clips) and every
function takes its rates explicitly. Nothing here knows about blocks, files or engines: the block
arithmetic that makes block-wise processing equal one-shot processing lives in
:mod:`ingest.stream`, and the same functions run in the Beam workers and in serving.

The chain applied to a recording is
1. polyphase resampling from the source rate to the stored rate (:func:`resample`), with a
   Kaiser-windowed sinc anti-aliasing filter (:func:`design_resampler`);
2. one combined linear-phase FIR at the stored rate (:func:`design_filter`): high-pass, low-pass
   and band-stops at the line frequency and its harmonics in a single multi-band windowed-sinc,
   applied by FFT convolution in float32 (:func:`fir_filter`);
3. per-clip, per-channel robust standard deviations (:func:`robust_std`), their median over a
   recording's clips is the channel's scale (:func:`channel_scale`), and
   :func:`scale_clips` divides by it.
"""

from __future__ import annotations

import functools
import logging
from fractions import Fraction

import numpy as np
import scipy.fft
import scipy.signal

logger = logging.getLogger(__name__)

#: IQR of a standard normal distribution: IQR / this = the standard deviation for Gaussian data.
_IQR_TO_STD = 1.3489795003921634


def rational_ratio(
    orig_sfreq: float, sfreq: float, *, max_denominator: int = 2000
) -> tuple[int, int]:
    """``(up, down)``, coprime, with ``up / down`` the best approximation of ``sfreq / orig_sfreq``.

    Parameters
    ----------
    orig_sfreq, sfreq : float
        Source and target sampling rates in Hz.
    max_denominator : int
        Largest ``down`` allowed. Integer rates in Hz give the exact ratio whenever
        ``orig_sfreq / gcd`` fits (1024 -> 1000 is 125 / 128; 2048 -> 1000 is 125 / 256).

    Returns
    -------
    up, down : int
        Resampling factors; the relative error of the ratio is
        ``abs(up / down * orig_sfreq / sfreq - 1)``.
    """
    if orig_sfreq <= 0 or sfreq <= 0:
        raise ValueError(f"{orig_sfreq=} and {sfreq=} must be positive rates in Hz.")
    exact = Fraction(sfreq).limit_denominator(10**9) / Fraction(orig_sfreq).limit_denominator(10**9)
    approx = exact.limit_denominator(max_denominator)
    if approx == 0:
        raise ValueError(
            f"cannot resample {orig_sfreq=} Hz to {sfreq=} Hz with {max_denominator=}; "
            "raise resample_max_denominator."
        )
    return approx.numerator, approx.denominator


@functools.lru_cache(maxsize=32)
def design_resampler(up: int, down: int, *, half_taps: int = 10) -> np.ndarray:
    """Anti-aliasing FIR of the polyphase resampler ``up / down`` (as :func:`scipy.signal.resample_poly`).

    Parameters
    ----------
    up, down : int
        Coprime resampling factors.
    half_taps : int
        Zero crossings of the sinc per side; the filter has ``2 * half_taps * max(up, down) + 1``
        taps at the up-sampled rate.

    Returns
    -------
    h : ndarray, shape (n_taps,)
        float64 filter taps (read-only, cached), cutoff at the lower of the two Nyquist rates.
    """
    max_rate = max(up, down)
    half_len = half_taps * max_rate
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h.flags.writeable = False
    return h


def resampler_half_length(up: int, down: int, *, half_taps: int = 10) -> int:
    """Half length of :func:`design_resampler`'s filter, in samples of the up-sampled rate."""
    return half_taps * max(up, down)


def resample(x: np.ndarray, up: int, down: int, *, half_taps: int = 10) -> np.ndarray:
    """Polyphase resampling of ``x`` by ``up / down`` along the last axis, aligned on ``x[..., 0]``.

    Output sample ``m`` is at input position ``m * down / up``; the signal is taken as zero beyond
    both ends of ``x``, so only outputs further than ``half_taps * max(up, down) / up`` input
    samples from the ends are exact (callers pass margins, see :mod:`ingest.stream`).

    Parameters
    ----------
    x : ndarray, shape (n_chans, n_times)
        Signal, float32 or float64 (the dtype is kept).
    up, down : int
        Resampling factors.
    half_taps : int
        See :func:`design_resampler`.

    Returns
    -------
    y : ndarray, shape (n_chans, ceil(n_times * up / down))
    """
    if up == down:
        return x
    h = design_resampler(up, down, half_taps=half_taps)
    return scipy.signal.resample_poly(x, up, down, axis=-1, window=h.astype(x.dtype))


def notch_frequencies(line_freq: float, upper: float) -> list[float]:
    """The line frequency and its harmonics strictly below ``upper`` Hz."""
    if line_freq <= 0:
        raise ValueError(f"{line_freq=} must be positive (50 or 60 Hz).")
    n = int(np.floor((upper - 1e-9) / line_freq))
    return [line_freq * k for k in range(1, n + 1)]


def filter_length(sfreq: float, trans_bandwidth: float) -> int:
    """Odd FIR length giving ``trans_bandwidth`` Hz transitions with a Hamming window."""
    n = int(np.ceil(3.3 / trans_bandwidth * sfreq))
    return n + 1 - n % 2


@functools.lru_cache(maxsize=32)
def design_filter(
    sfreq: float,
    *,
    l_freq: float | None = 0.5,
    h_freq: float | None = None,
    line_freq: float | None = None,
    notch_width: float = 2.0,
    trans_bandwidth: float = 0.5,
) -> np.ndarray:
    """One linear-phase FIR combining high-pass, low-pass and line-noise notches.

    A single multi-band windowed-sinc (Hamming) so the whole cascade costs one convolution.
    Edges are -6 dB points; each transition is ``trans_bandwidth`` wide; each notch is a stop
    band ``notch_width`` wide centred on a harmonic of ``line_freq`` below ``h_freq`` (or the
    Nyquist rate). Stop-band attenuation is about 53 dB (Hamming).

    Parameters
    ----------
    sfreq : float
        Rate the filter runs at, Hz.
    l_freq, h_freq : float or None
        Pass band edges in Hz; ``None`` leaves that side open.
    line_freq : float or None
        Line frequency to notch with its harmonics; ``None`` for no notch.
    notch_width, trans_bandwidth : float
        In Hz.

    Returns
    -------
    h : ndarray, shape (n_taps,)
        float32 taps, odd length, symmetric (read-only, cached).
    """
    nyquist = sfreq / 2
    upper = h_freq if h_freq is not None else nyquist
    edges: list[float] = []
    if l_freq is not None:
        edges.append(l_freq)
    if line_freq is not None:
        for f in notch_frequencies(line_freq, upper):
            lo, hi = f - notch_width / 2, f + notch_width / 2
            if hi >= upper - trans_bandwidth:
                break
            if l_freq is not None and lo <= l_freq + trans_bandwidth:
                raise ValueError(
                    f"notch at {f} Hz (width {notch_width}) overlaps the high-pass at {l_freq=}; "
                    "narrow notch_width or lower l_freq."
                )
            edges += [lo, hi]
    if h_freq is not None:
        edges.append(h_freq)
    n_taps = filter_length(sfreq, trans_bandwidth)
    if not edges:
        h = np.zeros(1, dtype=np.float32)
        h[0] = 1.0
    else:
        h = scipy.signal.firwin(
            n_taps, edges, pass_zero=l_freq is None, window="hamming", fs=sfreq, scale=False
        ).astype(np.float32)
    h.flags.writeable = False
    return h


@functools.lru_cache(maxsize=8)
def _filter_spectrum(h_bytes: bytes, n_fft: int) -> np.ndarray:
    h = np.frombuffer(h_bytes, dtype=np.float32)
    spec = scipy.fft.rfft(h, n_fft).astype(np.complex64)
    spec.flags.writeable = False
    return spec


def fir_filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """'valid' convolution of every row of ``x`` with the symmetric FIR ``h``, by one FFT.

    Overlap-save with a single segment: the circular wrap-around only touches the first
    ``len(h) - 1`` outputs, which 'valid' drops. Computed in float32 (the filter's own error,
    ~1e-6 relative, is far below the float16 storage error).

    Parameters
    ----------
    x : ndarray, shape (n_chans, n_times)
        Signal with ``(len(h) - 1) / 2`` samples of margin at each end.
    h : ndarray, shape (n_taps,)
        Odd-length symmetric FIR (e.g. from :func:`design_filter`).

    Returns
    -------
    y : ndarray, shape (n_chans, n_times - n_taps + 1)
        float32; ``y[:, i]`` is centred on ``x[:, i + (n_taps - 1) // 2]``.
    """
    n_taps = h.shape[-1]
    n_times = x.shape[-1]
    if n_times < n_taps:
        raise ValueError(f"{n_times=} must be >= {n_taps=}: pass margins of (n_taps - 1) / 2.")
    x = np.asarray(x, dtype=np.float32)
    if n_taps == 1:
        return x * h[0]
    n_fft = scipy.fft.next_fast_len(n_times, real=True)
    spec = _filter_spectrum(np.ascontiguousarray(h, dtype=np.float32).tobytes(), n_fft)
    X = scipy.fft.rfft(x, n_fft, axis=-1)
    X *= spec
    y = scipy.fft.irfft(X, n_fft, axis=-1)
    return np.ascontiguousarray(y[..., n_taps - 1 : n_times])


def robust_std(clips: np.ndarray, *, max_samples: int = 1000) -> np.ndarray:
    """Per-clip, per-channel robust standard deviation: IQR / 1.349 of strided samples.

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, n_samples)
        Unscaled clips.
    max_samples : int
        The IQR is taken over every ``ceil(n_samples / max_samples)``-th sample (a deterministic
        subsample: serving gets the same value from the same clip).

    Returns
    -------
    std : ndarray, shape (n_clips, n_chans)
        float32.
    """
    stride = max(1, -(-clips.shape[-1] // max_samples))
    sub = np.asarray(clips[..., ::stride], dtype=np.float32)
    q25, q75 = np.percentile(sub, [25.0, 75.0], axis=-1)
    return ((q75 - q25) / _IQR_TO_STD).astype(np.float32)


def channel_scale(clip_std: np.ndarray) -> np.ndarray:
    """A recording's per-channel scale: the median over its clips of :func:`robust_std`.

    A channel whose median is not a positive finite number (flat, all-zero) gets scale 1.0, so
    scaling never divides by zero.

    Parameters
    ----------
    clip_std : ndarray, shape (n_clips, n_chans)

    Returns
    -------
    scale : ndarray, shape (n_chans,)
        float32.
    """
    if clip_std.ndim != 2 or clip_std.shape[0] == 0:
        raise ValueError(f"clip_std must be (n_clips >= 1, n_chans), got shape {clip_std.shape}.")
    scale = np.median(np.asarray(clip_std, dtype=np.float64), axis=0)
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        logger.debug("%d flat channels get scale 1.0", int(bad.sum()))
    scale[bad] = 1.0
    return scale.astype(np.float32)


def scale_clips(clips: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Divide every channel of ``clips`` by its scale (the one scaling ingest and serving share).

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, n_samples)
    scale : ndarray, shape (n_chans,)

    Returns
    -------
    scaled : ndarray, shape (n_clips, n_chans, n_samples)
        float32.
    """
    scale = np.asarray(scale, dtype=np.float32)
    if clips.ndim != 3 or scale.shape != (clips.shape[1],):
        raise ValueError(
            f"clips shape {clips.shape} and scale shape {scale.shape} do not match: "
            "scale must be (n_chans,) for clips (n_clips, n_chans, n_samples)."
        )
    return np.asarray(clips, dtype=np.float32) / scale[None, :, None]


def to_storage(x: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """Cast to the storage dtype, saturating at its finite range.

    Parameters
    ----------
    x : ndarray
        float32 samples (uV).
    dtype : {"float16", "float32"}

    Returns
    -------
    stored : ndarray
        Same shape, ``dtype``.
    n_saturated : int
        Samples clipped to the dtype's largest finite value.
    """
    info = np.finfo(dtype)
    n_sat = int(np.count_nonzero(np.abs(x) > info.max))
    if n_sat:
        x = np.clip(x, float(info.min), float(info.max))
    return x.astype(dtype), n_sat
