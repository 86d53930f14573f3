"""Training-time spectral-tilt augmentation of the SVM's channel features.

The SVM's strongest features on one simulator family (its log band powers and line length) can
carry that family's spectral signature of the SOZ, a steeper or flatter spectrum, which another
family (or site) does not share. :func:`tilt_augment` adds to the training rows ``copies``
copies of every recording in which each contact's spectrum is tilted by its own random slope,
so the SVM cannot rank by the tilt alone. It is the SVM's counterpart of the neural ``"tilt"``
of :mod:`trainer.site_augment` (same units and default spread, :data:`TILT_SD`), applied to the
recording-level features before the SVM's normalisation within each recording. Training only:
the features a model is served are never augmented.

A slope ``s`` (log-amplitude per log-frequency, natural logs, as the neural augmentation) moves
what the features measure as follows (:func:`tilt_shift`):

- ``wp_log_power_<band>`` (``log10`` power): ``2 s ln(f_b) / ln 10`` with ``f_b`` the band's
  geometric centre, plus the constant that keeps the contact's total power over its bands
  (ingest scales every contact to its own scale, :func:`ingest.preprocessing.scale_clips`);
- ``log_line_length`` and ``peak_log_line_length``: line length follows the RMS of the
  derivative, ``sqrt(sum_b P_b f_b**2)``, recomputed from the tilted band powers;
- ``log_energy_ratio`` and ``peak_log_energy_ratio``: ``(beta + gamma) / (theta + alpha)``
  recomputed from the tilted powers of those bands;
- the spike rate (mean and peak) is **left alone**: the detector's threshold is relative to each
  clip's own envelope, and how a tilt moves it is not modelled.

These are the shifts of the recording's mean log features computed from those means (the mean
of a log is not the log of a mean): an approximation that keeps the augmentation on the cached
features, with no clip read again. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.features import DEFAULT_BANDS
from trainer.site_augment import TILT_SD as NEURAL_TILT_SD

__all__ = ["AUGMENTS", "TILT_SD", "band_centres", "tilt_augment", "tilt_shift"]

#: Augmentations of the SVM's training rows (``model_hparams["svm"]["augment"]``).
AUGMENTS = ("tilt",)
#: Default standard deviation of the per-contact slope: the neural augmentation's per-contact
#: spread. A slope shared by a recording's contacts is not drawn: the normalisation within
#: the recording removes a common shift of a column.
TILT_SD = NEURAL_TILT_SD[1]
#: Default number of tilted copies of each training recording.
COPIES = 3

_POWER = "wp_log_power_"
_LN10 = np.log(10.0)


def band_centres(names: Sequence[str]) -> dict[str, float]:
    """Geometric centre frequency (Hz) of every band-power column of ``names``.

    Parameters
    ----------
    names : sequence of str
        Feature columns (``wp_log_power_<band>`` of :data:`models.features.DEFAULT_BANDS` are
        the ones with a frequency).

    Returns
    -------
    dict of str to float
        Column name to centre, in the order of ``names``.
    """
    out = {}
    for name in names:
        band = name.removeprefix(_POWER)
        if name.startswith(_POWER) and band in DEFAULT_BANDS:
            low, high = DEFAULT_BANDS[band]
            out[name] = float(np.sqrt(low * high))
    return out


def tilt_shift(X: np.ndarray, names: Sequence[str], slope: np.ndarray) -> np.ndarray:
    """What a spectral tilt of slope ``slope`` adds to each feature of each row.

    Parameters
    ----------
    X : ndarray, shape (n_channels, n_feats)
        Recording-level features (mean over clips), columns ``names``.
    names : sequence of str
        Column names (a :class:`models.features.RecordingFeatureMean`'s).
    slope : ndarray, shape (n_channels,)
        Slope of each row, log-amplitude per natural log of frequency.

    Returns
    -------
    shift : ndarray, shape (n_channels, n_feats)
        Add it to ``X``; 0 in the columns the tilt leaves alone (spike rate) and in every column
        when there are no band powers.
    """
    X = np.asarray(X, dtype=np.float64)
    names = list(names)
    slope = np.asarray(slope, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names) or slope.shape != (X.shape[0],):
        raise ValueError(
            f"X {X.shape}, {len(names)} names and slope {slope.shape} must be "
            "(n_channels, n_feats), n_feats and (n_channels,)."
        )
    shift = np.zeros_like(X)
    centres = band_centres(names)
    if not centres:
        return shift
    cols = [names.index(n) for n in centres]
    logf = np.log(np.fromiter(centres.values(), dtype=np.float64))
    power = 10.0 ** X[:, cols]  # (C, B)
    tilt = 2.0 * slope[:, None] * (logf - logf.mean())[None, :] / _LN10  # log10 power
    tilt -= np.log10((power * 10.0**tilt).sum(axis=1) / power.sum(axis=1))[:, None]  # power kept
    shift[:, cols] = tilt
    gain = 10.0**tilt  # (C, B) power multiplier per band

    def log_ratio(weights: np.ndarray, bands: Sequence[str] | None = None) -> np.ndarray:
        keep = np.array([bands is None or n.removeprefix(_POWER) in bands for n in centres])
        w = power[:, keep] * weights[keep]
        return np.log10((w * gain[:, keep]).sum(axis=1) / w.sum(axis=1))

    line_length = 0.5 * log_ratio(np.exp(2.0 * logf))  # RMS of the derivative
    for name in ("log_line_length", "peak_log_line_length"):
        if name in names:
            shift[:, names.index(name)] = line_length
    if {f"{_POWER}{b}" for b in ("theta", "alpha", "beta", "gamma")} <= set(centres):
        ones = np.ones_like(logf)
        ratio = log_ratio(ones, ("beta", "gamma")) - log_ratio(ones, ("theta", "alpha"))
        for name in ("log_energy_ratio", "peak_log_energy_ratio"):
            if name in names:
                shift[:, names.index(name)] = ratio
    return shift


def tilt_augment(
    X: np.ndarray,
    names: Sequence[str],
    recordings: np.ndarray,
    *,
    copies: int = COPIES,
    sd: float = TILT_SD,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training rows and ``copies`` tilted copies of each, one random slope per row and copy.

    Parameters
    ----------
    X : ndarray, shape (n_channels, n_feats)
        Training rows (recording-level features), columns ``names``.
    names : sequence of str
        Column names.
    recordings : ndarray, shape (n_channels,)
        Recording of each row; copy ``k`` of a recording is the recording ``f"{rid}~tilt{k}"``,
        so the SVM normalises it within itself.
    copies : int
        Tilted copies per row (0: the rows unchanged).
    sd : float
        Standard deviation of the slopes (log-amplitude per log-frequency).
    seed : int
        Seed of the slopes (:func:`numpy.random.default_rng`).

    Returns
    -------
    X : ndarray, shape ((copies + 1) * n_channels, n_feats)
        The rows unchanged, then copy 1, copy 2...
    recordings : ndarray, shape ((copies + 1) * n_channels,)
    source : ndarray of int, shape ((copies + 1) * n_channels,)
        The row of the input each output row comes from (index labels, patients with it).
    """
    X = np.asarray(X, dtype=np.float64)
    recordings = np.asarray(recordings).astype(str)
    if int(copies) != copies or copies < 0:
        raise ValueError(f"{copies=} must be an integer >= 0.")
    if not np.isfinite(sd) or sd < 0:
        raise ValueError(f"{sd=} must be a number >= 0.")
    if recordings.shape != (X.shape[0],):
        raise ValueError(f"recordings must have shape ({X.shape[0]},), got {recordings.shape}.")
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    rows, recs = [X], [recordings]
    for k in range(1, int(copies) + 1):
        rows.append(X + tilt_shift(X, names, rng.normal(0.0, sd, size=n)))
        recs.append(np.char.add(recordings, f"~tilt{k}"))
    return np.concatenate(rows), np.concatenate(recs), np.tile(np.arange(n), int(copies) + 1)
