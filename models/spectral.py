"""Log-amplitude spectra of clips: the input features of the neural models.

One function, :func:`spectral_features`, turns clips of samples into per-clip log-amplitude
spectra. The training loader and the serving path both call it, so the features a model was
trained on and the features it is scored on cannot drift apart.

Two modes:

- ``n_bands=None`` (the default, as in the original DCGRU work): every rFFT bin except DC up to
  ``fmax``. A 5-s clip at 1000 Hz gives 2500 features (0.2 Hz ... 500 Hz).
- ``n_bands=k``: the amplitude spectrum averaged over ``k`` log-spaced bands between ``fmin``
  and ``fmax``, then the log. The spectrum is treated as piecewise constant over each bin's
  interval ``[f - df/2, f + df/2]`` and integrated over each band, so a band narrower than the
  bin spacing takes the amplitude of the bin(s) it overlaps instead of being empty. With
  ``k`` around 100 this gives the "about 100 log-FFT bins" input of Tang et al. (ICLR 2022).

The amplitude is the one-sided amplitude spectrum ``2 |X_f| / n_samples`` (``|X_f| / n_samples``
at the Nyquist frequency; a sinusoid of amplitude ``a`` on a bin reads ``a`` there), so features do not depend on the clip length; the log is
taken after adding :data:`AMPLITUDE_FLOOR`, which keeps silent (all-zero, e.g. flat or padded)
clips finite.

This module is pure numpy / scipy: no torch, no Ray, no Beam.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse

from models.arrays import check_sfreq

logger = logging.getLogger(__name__)

#: Added to the amplitude before the log: a flat clip gives ``log(AMPLITUDE_FLOOR)`` (about
#: -13.8) instead of ``-inf``. Real clips, scaled per channel at ingest, sit far above it.
AMPLITUDE_FLOOR = 1e-6


def _check_args(
    n_samples: int, sfreq: float, n_bands: int | None, fmin: float, fmax: float | None
) -> float:
    """Validate the arguments shared by both public functions; return the resolved ``fmax``."""
    if int(n_samples) != n_samples or n_samples < 2:
        raise ValueError(f"{n_samples=} must be an integer >= 2 (the clip length in samples).")
    check_sfreq(sfreq)
    nyquist = sfreq / 2.0
    fmax = nyquist if fmax is None else float(fmax)
    if not 0 < fmax <= nyquist:
        raise ValueError(
            f"{fmax=} must be in (0, {nyquist}] (the Nyquist frequency of {sfreq=}); "
            "pass fmax=None for the Nyquist frequency."
        )
    df = sfreq / n_samples
    if n_bands is None:
        if fmax < df:
            raise ValueError(
                f"{fmax=} is below the first non-DC bin ({df} Hz for {n_samples=} at {sfreq=}): "
                "no feature would remain. Raise fmax or use longer clips."
            )
        return fmax
    if isinstance(n_bands, bool) or int(n_bands) != n_bands or n_bands < 1:
        raise ValueError(f"{n_bands=} must be a positive integer, or None for every bin.")
    if not 0 < fmin < fmax:
        raise ValueError(f"{fmin=} must be positive and below {fmax=} (the band range in Hz).")
    if fmax <= df / 2:
        raise ValueError(
            f"{fmax=} lies inside the DC bin (bin spacing {df} Hz): no band would overlap a "
            "non-DC bin. Raise fmax or use longer clips."
        )
    return fmax


def n_spectral_features(
    n_samples: int,
    sfreq: float,
    *,
    n_bands: int | None = None,
    fmin: float = 0.5,
    fmax: float | None = None,
) -> int:
    """Number of features :func:`spectral_features` returns per clip.

    Parameters
    ----------
    n_samples : int
        Clip length in samples.
    sfreq : float
        Sampling rate in Hz.
    n_bands, fmin, fmax
        As in :func:`spectral_features`.

    Returns
    -------
    n_feats : int
        ``n_bands`` in band mode; otherwise the number of non-DC rFFT bins at or below ``fmax``
        (2500 for ``n_samples=5000, sfreq=1000``).
    """
    fmax = _check_args(n_samples, sfreq, n_bands, fmin, fmax)
    if n_bands is not None:
        return int(n_bands)
    return len(_bin_indices(int(n_samples), float(sfreq), fmax))


def _bin_indices(n_samples: int, sfreq: float, fmax: float) -> range:
    """rFFT bin indices ``1 .. j_max`` with ``j * df <= fmax`` (DC excluded)."""
    df = sfreq / n_samples
    # The tolerance keeps fmax = Nyquist (or any exact bin frequency) inside despite rounding.
    j_max = min(int(np.floor(fmax / df + 1e-9)), n_samples // 2)
    return range(1, j_max + 1)


def band_edges(n_bands: int, *, fmin: float = 0.5, fmax: float) -> np.ndarray:
    """Edges of ``n_bands`` log-spaced bands between ``fmin`` and ``fmax``.

    Returns
    -------
    edges : ndarray, shape (n_bands + 1,)
        Strictly increasing, ``edges[0] == fmin`` and ``edges[-1] == fmax``; band ``i`` is
        ``[edges[i], edges[i + 1])``.
    """
    if not 0 < fmin < fmax:
        raise ValueError(f"{fmin=} must be positive and below {fmax=}.")
    return np.geomspace(fmin, fmax, int(n_bands) + 1)


@lru_cache(maxsize=32)
def _band_matrix(
    n_samples: int, sfreq: float, n_bands: int, fmin: float, fmax: float
) -> tuple[np.ndarray, int]:
    """Averaging weights from rFFT bins to bands, and the number of bins they use.

    Returns
    -------
    weights_t : scipy.sparse.csr_array, shape (n_bands, n_bins), float32
        The transposed weights (each bin feeds at most a few bands: sparse). Row ``i`` holds the overlap (Hz) of each bin's interval with band ``i``, divided by
        the row's total overlap: the band value is a weighted mean of bin amplitudes.
    n_bins : int
        Bins ``1 .. n_bins`` (DC excluded) are the rows.
    """
    df = sfreq / n_samples
    edges = band_edges(n_bands, fmin=fmin, fmax=fmax)
    j = np.arange(1, n_samples // 2 + 1)
    lo = (j - 0.5) * df
    hi = np.minimum((j + 0.5) * df, sfreq / 2.0)
    overlap = np.clip(
        np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]),
        0.0,
        None,
    )  # (n_bins, n_bands)
    total = overlap.sum(axis=0)
    if np.any(total <= 0):  # cannot happen once _check_args passed; keep the guard explicit
        raise ValueError(f"bands {np.flatnonzero(total <= 0)} overlap no rFFT bin.")
    used = np.flatnonzero(overlap.any(axis=1))
    n_bins = int(used[-1]) + 1
    weights = overlap[:n_bins] / total
    if n_samples % 2 == 0 and n_bins == n_samples // 2:
        weights[-1] *= 0.5  # the Nyquist bin is not mirrored: its one-sided amplitude is |X| / n
    return scipy.sparse.csr_array(weights.T.astype(np.float32)), n_bins


def spectral_features(
    clips: np.ndarray,
    sfreq: float,
    *,
    n_bands: int | None = None,
    fmin: float = 0.5,
    fmax: float | None = None,
) -> np.ndarray:
    """Log-amplitude spectrum of each clip, all bins or averaged into log-spaced bands.

    Parameters
    ----------
    clips : ndarray, shape (..., n_samples)
        Clips of samples, any leading shape, e.g. ``(n_chans, n_clips, n_samples)``. Computed
        in float32 (other float dtypes are converted).
    sfreq : float
        Sampling rate in Hz.
    n_bands : int | None
        ``None``: every rFFT bin except DC up to ``fmax``. An integer ``k``: the mean amplitude
        over ``k`` log-spaced bands between ``fmin`` and ``fmax`` (see the module docstring).
    fmin : float
        Lower edge of the first band in Hz (band mode only; the bin mode starts at the first
        non-DC bin, ``sfreq / n_samples``).
    fmax : float | None
        Highest frequency kept in Hz; ``None`` = Nyquist (``sfreq / 2``).

    Returns
    -------
    feats : ndarray, shape (..., n_feats), float32
        ``log(amplitude + AMPLITUDE_FLOOR)``; ``n_feats`` is
        :func:`n_spectral_features` ``(n_samples, sfreq, ...)``.

    Examples
    --------
    >>> x = np.zeros((3, 25, 5000), dtype=np.float32)
    >>> spectral_features(x, 1000.0).shape
    (3, 25, 2500)
    >>> spectral_features(x, 1000.0, n_bands=100).shape
    (3, 25, 100)
    """
    clips = np.asarray(clips)
    if clips.ndim < 1 or not (
        np.issubdtype(clips.dtype, np.floating) or np.issubdtype(clips.dtype, np.integer)
    ):
        raise ValueError(
            f"clips must be a real array of shape (..., n_samples), got dtype={clips.dtype} "
            f"and shape={clips.shape}."
        )
    n_samples = clips.shape[-1]
    fmax = _check_args(n_samples, sfreq, n_bands, fmin, fmax)
    clips = clips.astype(np.float32, copy=False)
    if n_bands is None:
        bins = _bin_indices(n_samples, float(sfreq), fmax)
        spec = scipy.fft.rfft(clips, axis=-1)[..., bins.start : bins.stop]
        amp = np.abs(spec)
        if n_samples % 2 == 0 and bins.stop - 1 == n_samples // 2:
            amp[..., -1] *= 0.5  # the Nyquist bin is not mirrored: its amplitude is |X| / n
    else:
        weights_t, n_bins = _band_matrix(n_samples, float(sfreq), int(n_bands), float(fmin), fmax)
        amp = np.abs(scipy.fft.rfft(clips, axis=-1)[..., 1 : n_bins + 1])
        # One sparse 2-D product (2x faster than dense for 100 bands over 2500 bins; numpy's
        # stacked dense matmul over the leading axes was 10x slower still).
        lead = amp.shape[:-1]
        amp = (weights_t @ amp.reshape(-1, n_bins).T).T  # (n_clips_total, n_bands)
        amp = np.ascontiguousarray(amp).reshape(*lead, int(n_bands))
    amp *= np.float32(2.0 / n_samples)
    amp += np.float32(AMPLITUDE_FLOOR)
    return np.log(amp, out=amp)
