"""Which contacts are called SOZ: the absolute Youden threshold, or a patient-relative rule.

Two rules, both chosen on a fold's **validation** patients:

- ``"youden"``: ``score >= t``, ``t`` maximising Youden's J on the validation channels
  (:func:`trainer.channel_metrics.youden_threshold`). One number for every patient, so a site
  whose scores all sit higher (another montage, another amplifier) gets more calls.
- ``"relative"``: a contact is called when it stands out among its own patient's contacts:
  ``score >= min(mean + k * std, max)`` over that patient's (in serving: that recording's)
  contacts, ``k`` maximising Youden's J on the validation channels (:func:`fit_relative_k`).
  A shift or a stretch of all of a patient's scores moves the threshold with them; the
  patient's top contact is always called. Flat contacts (no signal) are left out of the
  contacts the threshold is taken from, in training as in serving (:func:`reference_scores`).

``"relative"`` is the default of ``soz train`` (``TrainConfig.call_rule``): trained on one
simulator family and tested on the other, it gave every model a higher macro precision at an
equal or higher macro recall than the Youden threshold (``benchmarks/results/cross_generator.md``).

Both give a threshold per contact, so :func:`trainer.channel_metrics.channel_metrics` and
:func:`~trainer.channel_metrics.patient_macro_metrics` evaluate either the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CALL_RULES",
    "K_GRID",
    "fit_relative_k",
    "group_indices",
    "reference_scores",
    "relative_threshold",
    "relative_thresholds",
]

#: The call rules (``--call-rule``).
CALL_RULES = ("youden", "relative")
#: The values of ``k`` (standard deviations above the patient's mean) tried on validation.
K_GRID = np.round(np.arange(-1.0, 4.0001, 0.05), 2)


def reference_scores(scores, flat=None) -> np.ndarray:
    """The scores a recording's (patient's) contacts stand against: those of its contacts that
    are not ``flat`` (:func:`ingest.preprocessing.flat_channels`), all of them when none, or
    every one, is. The relative call rule (training and serving) and the relative calibration
    (:func:`trainer.calibration.relative_scores`) both take their reference from here.

    Parameters
    ----------
    scores : array-like of float, shape (n_contacts,)
    flat : array-like of bool, shape (n_contacts,), optional

    Returns
    -------
    ndarray of float
    """
    s = np.asarray(scores, dtype=float)
    if flat is None:
        return s
    keep = ~np.asarray(flat, dtype=bool)
    if keep.shape != s.shape:
        raise ValueError(f"{keep.shape=} must equal {s.shape=}: one flat flag per contact.")
    return s[keep] if keep.any() else s


def group_indices(groups) -> list[np.ndarray]:
    """The positions of each group's members (groups in sorted order)."""
    g = np.asarray(groups)
    if not g.size:
        return []
    _, inverse = np.unique(g, return_inverse=True)
    return [np.flatnonzero(inverse == j) for j in range(inverse.max() + 1)]


def relative_threshold(scores, k: float, flat=None) -> float:
    """The relative rule's threshold of one patient's (or recording's) contacts.

    Parameters
    ----------
    scores : array-like of float, shape (n_contacts,)
    k : float
    flat : array-like of bool, shape (n_contacts,), optional
        Contacts without signal: not among the contacts the threshold is taken from
        (:func:`reference_scores`).

    Returns
    -------
    float
        ``min(mean + k * std, max)`` of the reference scores (std with ``ddof=0``).
    """
    s = reference_scores(scores, flat)
    if s.size == 0:
        raise ValueError("a relative threshold needs at least one contact.")
    return float(min(s.mean() + float(k) * s.std(), s.max()))


def relative_thresholds(scores, groups, k, flat=None) -> np.ndarray:
    """Per-contact thresholds of the relative rule, each from its own group's contacts.

    Parameters
    ----------
    scores : array-like of float, shape (n_contacts,)
    groups : array-like, shape (n_contacts,)
        Patient (or recording) of each contact.
    k : float or array-like of float, shape (n_contacts,)
        One ``k``, or one per contact (constant within a group: pooled folds).
    flat : array-like of bool, shape (n_contacts,), optional
        Contacts left out of their group's reference (:func:`reference_scores`).

    Returns
    -------
    ndarray of float, shape (n_contacts,)
    """
    s = np.asarray(scores, dtype=float)
    g = np.asarray(groups)
    ks = np.broadcast_to(np.asarray(k, dtype=float), s.shape)
    if g.shape != s.shape:
        raise ValueError(f"{g.shape=} must equal {s.shape=}: one group per contact.")
    fl = None if flat is None else np.asarray(flat, dtype=bool)
    out = np.empty_like(s)
    for idx in group_indices(g):
        out[idx] = relative_threshold(s[idx], ks[idx[0]], None if fl is None else fl[idx])
    return out


def fit_relative_k(y_true, scores, groups, *, flat=None, grid=K_GRID) -> float:
    """The ``k`` of the relative rule maximising Youden's J on validation channels.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        Both classes must be present.
    scores : array-like of float, shape (n_channels,)
    groups : array-like, shape (n_channels,)
        Patient of each channel.
    flat : array-like of bool, shape (n_channels,), optional
        Channels left out of their patient's reference (:func:`reference_scores`); they are
        still called or not like the others.
    grid : array-like of float
        Candidate values; ties go to the largest (fewest calls).
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.min() == y.max():
        raise ValueError(
            f"the relative rule's k needs SOZ and non-SOZ validation channels; all {y.size} "
            f"have label {int(y[0])}."
        )
    g = np.asarray(groups)
    _, inverse = np.unique(g, return_inverse=True)
    n_groups = inverse.max() + 1
    ref = np.ones(s.size) if flat is None else (~np.asarray(flat, dtype=bool)).astype(float)
    if ref.shape != s.shape:
        raise ValueError(f"{ref.shape=} must equal {s.shape=}: one flat flag per channel.")
    none_left = np.bincount(inverse, weights=ref, minlength=n_groups) == 0
    ref[none_left[inverse]] = 1.0  # a group of flat channels only: all of them
    counts = np.bincount(inverse, weights=ref, minlength=n_groups)
    mean = np.bincount(inverse, weights=ref * s, minlength=n_groups) / counts
    var = np.bincount(inverse, weights=ref * (s - mean[inverse]) ** 2, minlength=n_groups)
    std = np.sqrt(var / counts)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, inverse, np.where(ref > 0, s, -np.inf))
    best_k, best_j = float(grid[0]), -np.inf
    for k in grid:
        t = np.minimum(mean + k * std, top)[inverse]
        call = s >= t
        j = call[y == 1].mean() - call[y == 0].mean()
        if j >= best_j - 1e-12:
            best_k, best_j = float(k), j
    return best_k
