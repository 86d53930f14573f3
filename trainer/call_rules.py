"""Which contacts are called SOZ: the absolute Youden threshold, or a patient-relative rule.

Two rules, both chosen on a fold's **validation** patients:

- ``"youden"``: ``score >= t``, ``t`` maximising Youden's J on the validation channels
  (:func:`trainer.channel_metrics.youden_threshold`). One number for every patient, so a site
  whose scores all sit higher (another montage, another amplifier) gets more calls.
- ``"relative"``: a contact is called when it stands out among its own patient's contacts:
  ``score >= min(mean + k * std, max)`` over that patient's (in serving: that recording's)
  contacts, ``k`` maximising Youden's J on the validation channels (:func:`fit_relative_k`).
  A shift or a stretch of all of a patient's scores moves the threshold with them; the
  patient's top contact is always called.

``"relative"`` is the default of ``soz train`` (``TrainConfig.call_rule``): trained on one
simulator family and tested on the other, it gave every model a higher macro precision at an
equal or higher macro recall than the Youden threshold (``benchmarks/results/cross_generator.md``).

Both give a threshold per contact, so :func:`trainer.channel_metrics.channel_metrics` and
:func:`~trainer.channel_metrics.patient_macro_metrics` evaluate either the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CALL_RULES", "K_GRID", "fit_relative_k", "relative_threshold", "relative_thresholds"]

#: The call rules (``--call-rule``).
CALL_RULES = ("youden", "relative")
#: The values of ``k`` (standard deviations above the patient's mean) tried on validation.
K_GRID = np.round(np.arange(-1.0, 4.0001, 0.05), 2)


def relative_threshold(scores, k: float) -> float:
    """The relative rule's threshold of one patient's (or recording's) contacts.

    Parameters
    ----------
    scores : array-like of float, shape (n_contacts,)
    k : float

    Returns
    -------
    float
        ``min(mean + k * std, max)`` of ``scores`` (std with ``ddof=0``).
    """
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        raise ValueError("a relative threshold needs at least one contact.")
    return float(min(s.mean() + float(k) * s.std(), s.max()))


def relative_thresholds(scores, groups, k) -> np.ndarray:
    """Per-contact thresholds of the relative rule, each from its own group's contacts.

    Parameters
    ----------
    scores : array-like of float, shape (n_contacts,)
    groups : array-like, shape (n_contacts,)
        Patient (or recording) of each contact.
    k : float or array-like of float, shape (n_contacts,)
        One ``k``, or one per contact (constant within a group: pooled folds).

    Returns
    -------
    ndarray of float, shape (n_contacts,)
    """
    s = np.asarray(scores, dtype=float)
    g = np.asarray(groups)
    ks = np.broadcast_to(np.asarray(k, dtype=float), s.shape)
    if g.shape != s.shape:
        raise ValueError(f"{g.shape=} must equal {s.shape=}: one group per contact.")
    out = np.empty_like(s)
    _, inverse = np.unique(g, return_inverse=True)
    for j in range(inverse.max() + 1 if s.size else 0):
        idx = np.flatnonzero(inverse == j)
        out[idx] = relative_threshold(s[idx], ks[idx[0]])
    return out


def fit_relative_k(y_true, scores, groups, *, grid=K_GRID) -> float:
    """The ``k`` of the relative rule maximising Youden's J on validation channels.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        Both classes must be present.
    scores : array-like of float, shape (n_channels,)
    groups : array-like, shape (n_channels,)
        Patient of each channel.
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
    counts = np.bincount(inverse, minlength=n_groups)
    mean = np.bincount(inverse, weights=s, minlength=n_groups) / counts
    std = np.sqrt(np.bincount(inverse, weights=(s - mean[inverse]) ** 2) / counts)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, inverse, s)
    best_k, best_j = float(grid[0]), -np.inf
    for k in grid:
        t = np.minimum(mean + k * std, top)[inverse]
        call = s >= t
        j = call[y == 1].mean() - call[y == 0].mean()
        if j >= best_j - 1e-12:
            best_k, best_j = float(k), j
    return best_k
