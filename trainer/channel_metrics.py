"""Metrics of one set of channels: Youden's threshold, the channel-wise and the patient-wise figures.

The pure core of :mod:`trainer.metrics` (which runs the fold protocol on top of it, and
re-exports these names): labels and scores in, plain JSON-ready dicts out (``None`` where a value
is undefined, never NaN). A channel is called SOZ when ``score >= threshold``; a threshold is
one float or one value per channel (folds pooled, patient-relative call rules).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from trainer import calibration
from trainer.calibration import brier_skill_score

logger = logging.getLogger(__name__)

__all__ = [
    "channel_metrics",
    "patient_macro_metrics",
    "reliability_curve",
    "youden_threshold",
]

_MACRO = ("recall", "specificity", "precision", "f1")


def _float(x) -> float | None:
    """A JSON-safe float: None for NaN / inf / None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing columns {missing}; it has {list(df.columns)}. Expected "
            f"{list(columns)}."
        )


def _check_labels_scores(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.ndim != 1 or y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true.shape={y_true.shape} and y_score.shape={y_score.shape} must be equal and 1-D "
            "(one label and one score per channel)."
        )
    if y_true.size == 0:
        raise ValueError("no channels to evaluate: y_true is empty.")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"y_true must be 0/1; found values {np.unique(y_true)[:10].tolist()}.")
    if not np.isfinite(y_score).all():
        raise ValueError(
            f"y_score has {int((~np.isfinite(y_score)).sum())} non-finite values; the model "
            "produced NaN/inf probabilities (check the loss and the learning rate)."
        )
    return y_true.astype(int), y_score


def youden_threshold(y_true, y_score) -> float:
    """The score threshold maximising Youden's ``J = TPR - FPR`` (on the validation set).

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        0/1 labels; both classes must be present.
    y_score : array-like of float, shape (n_channels,)
        Scores (probabilities).

    Returns
    -------
    threshold : float
        Always one of the scores (never the ``+inf`` that :func:`sklearn.metrics.roc_curve`
        puts first): a channel is positive when ``score >= threshold``. Ties in J are broken
        towards the highest threshold (fewest SOZ calls), as ``np.argmax`` does. When no score
        beats J = 0 (scores inverted), that is the lowest score: every channel is called, J = 0.
    """
    y_true, y_score = _check_labels_scores(y_true, y_score)
    if y_true.min() == y_true.max():
        raise ValueError(
            f"Youden's threshold needs SOZ and non-SOZ channels; all {y_true.size} validation "
            f"channels have label {int(y_true[0])}. Use more validation patients (val_fraction) "
            "or check the labels."
        )
    fpr, tpr, thresholds = roc_curve(y_true, y_score, drop_intermediate=False)
    n_pos = int(y_true.sum())
    n_neg = y_true.size - n_pos
    j = np.rint(tpr * n_pos) * n_neg - np.rint(fpr * n_neg) * n_pos  # J * P * N: exact ties
    best = int(np.argmax(j[1:])) + 1  # thresholds[0] is +inf (nothing called positive)
    return float(thresholds[best])


def reliability_curve(y_true, y_score, *, n_bins: int = 10) -> list[dict]:
    """Calibration bins of checked labels and probabilities (:func:`trainer.calibration.reliability_curve`)."""
    y_true, y_score = _check_labels_scores(y_true, y_score)
    return calibration.reliability_curve(y_true, y_score, n_bins=n_bins)


def _ratio(num: float, den: float, zero_division: float | None) -> float | None:
    return float(num) / float(den) if den > 0 else zero_division


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    s = precision + recall
    return 2.0 * precision * recall / s if s > 0 else 0.0


def _threshold_array(threshold, n: int) -> np.ndarray:
    t = np.asarray(threshold, dtype=float)
    if t.ndim == 0:
        t = np.full(n, float(t))
    if t.shape != (n,) or not np.isfinite(t).all():
        raise ValueError(
            f"threshold must be a finite float or one finite value per channel (shape ({n},)); "
            f"got shape {t.shape}."
        )
    return t


def channel_metrics(y_true, y_score, threshold, *, n_bins: int = 10, probability=None) -> dict:
    """Channel-wise metrics of one set of channels (pooled across patients).

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        0/1 SOZ labels.
    y_score : array-like of float, shape (n_channels,)
        Probabilities.
    threshold : float or array-like, shape (n_channels,)
        SOZ call when ``score >= threshold``; one per channel when the channels come from folds
        with different thresholds (pooled results).
    n_bins : int
        Bins of the reliability curve.
    probability : array-like of float, shape (n_channels,), optional
        Calibrated probabilities (:mod:`trainer.calibration`): the Brier score, its skill and
        the reliability curve are theirs (and ``roc_auc_calibrated``); calls, ``roc_auc`` and
        ``pr_auc`` stay those of ``y_score``.

    Returns
    -------
    metrics : dict
        ``tn, fp, fn, tp`` and ``confusion`` (``[[tn, fp], [fn, tp]]``, rows = truth); ``roc_auc``
        and ``pr_auc`` (average precision, whose chance level is ``prevalence``), None with one
        class only; ``prevalence`` (SOZ fraction); ``brier`` score (of ``probability``),
        ``brier_raw`` (of ``y_score``), ``bss``: Brier skill score against the constant
        prediction at the prevalence (:func:`trainer.calibration.brier_skill_score`);
        ``roc_auc_calibrated``: the ROC-AUC of ``probability`` (equal to ``roc_auc`` unless a
        calibration relative to each recording re-orders contacts across patients);
        ``reliability`` bins;
        channel-wise ``recall``, ``specificity``, ``precision`` (0 when nothing is called, like
        scikit-learn's ``zero_division=0``), ``f1``, ``balanced_accuracy`` (None where undefined);
        ``threshold`` (a float, or None when per-channel); ``n_channels``, ``n_positive``.
    """
    y_true, y_score = _check_labels_scores(y_true, y_score)
    if y_score.min() < 0.0 or y_score.max() > 1.0:
        raise ValueError(
            f"scores must be probabilities in [0, 1] (Brier score, reliability); found range "
            f"[{y_score.min():.3g}, {y_score.max():.3g}]. Apply a sigmoid to logits first."
        )
    prob = y_score if probability is None else _check_labels_scores(y_true, probability)[1]
    if prob.min() < 0.0 or prob.max() > 1.0:
        raise ValueError("calibrated probabilities must lie in [0, 1].")
    t = _threshold_array(threshold, y_true.size)
    y_pred = (y_score >= t).astype(int)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    both = 0 < y_true.sum() < y_true.size
    recall = _ratio(tp, tp + fn, None)
    specificity = _ratio(tn, tn + fp, None)
    precision = _ratio(tp, tp + fp, 0.0)
    return {
        "n_channels": int(y_true.size),
        "n_positive": int(y_true.sum()),
        "threshold": float(t[0]) if np.all(t == t[0]) else None,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "confusion": [[tn, fp], [fn, tp]],
        "roc_auc": _float(roc_auc_score(y_true, y_score)) if both else None,
        "roc_auc_calibrated": _float(roc_auc_score(y_true, prob)) if both else None,
        "pr_auc": _float(average_precision_score(y_true, y_score)) if both else None,
        "prevalence": float(y_true.mean()),
        "brier": (brier := float(brier_score_loss(y_true, prob))),
        "brier_raw": float(brier_score_loss(y_true, y_score)),
        "bss": brier_skill_score(brier, float(y_true.mean())),
        "reliability": reliability_curve(y_true, prob, n_bins=n_bins),
        "recall": recall,
        "specificity": specificity,
        "precision": precision,
        "f1": _f1(precision, recall),
        "balanced_accuracy": (recall + specificity) / 2.0
        if recall is not None and specificity is not None
        else None,
    }


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=0)), int(v.size)


def patient_macro_metrics(table: pd.DataFrame, threshold) -> dict:
    """Patient-wise macro recall, specificity, precision and F1: per patient, then mean and std.

    Parameters
    ----------
    table : DataFrame
        Aggregated table (one row per patient x channel; :func:`aggregate_channel_scores`) with
        columns ``patient``, ``y_true``, ``score`` (``cohort`` is kept when present).
    threshold : float or array-like, shape (n_rows,)
        SOZ call when ``score >= threshold``; per row when patients come from different folds.

    Returns
    -------
    macro : dict
        ``recall``, ``specificity``, ``precision``, ``f1``: each ``{"mean", "std", "n"}`` over the
        patients where it is defined (std with ``ddof=0``); ``n_patients``; ``per_patient``: a
        list of records (``patient``, ``cohort``, ``n_channels``, ``n_soz``, ``tp``, ``fp``,
        ``fn``, ``tn`` and the four metrics).

    Notes
    -----
    Conventions for the empty denominators, per patient:

    - **precision** with no channel called SOZ is 0 (scikit-learn's ``zero_division=0``, the
      common choice in the SOZ literature): a model that localises nothing in a patient has
      failed that patient, and leaving it out would reward abstaining.
    - **recall** (and so F1) of a patient with no SOZ contact is undefined: the patient is left
      out of the recall and F1 means (``n`` says how many patients count) instead of scoring a
      perfect or a zero recall that says nothing about the model.
    - **specificity** of a patient whose contacts are all SOZ is undefined likewise.
    - F1 is 0 when precision + recall = 0.
    """
    _require(table, ("patient", "y_true", "score"), "the channel table")
    y_true, y_score = _check_labels_scores(table["y_true"].to_numpy(), table["score"].to_numpy())
    t = _threshold_array(threshold, y_true.size)
    df = pd.DataFrame(
        {
            "patient": table["patient"].to_numpy(),
            "cohort": table["cohort"].to_numpy() if "cohort" in table else None,
            "y_true": y_true,
            "y_pred": (y_score >= t).astype(int),
        }
    )
    rows = []
    for patient, g in df.groupby("patient", sort=True):
        yt, yp = g["y_true"].to_numpy(), g["y_pred"].to_numpy()
        tp = int(((yp == 1) & (yt == 1)).sum())
        fp = int(((yp == 1) & (yt == 0)).sum())
        fn = int(((yp == 0) & (yt == 1)).sum())
        tn = int(((yp == 0) & (yt == 0)).sum())
        recall = _ratio(tp, tp + fn, None)
        precision = _ratio(tp, tp + fp, 0.0)
        cohort = g["cohort"].iloc[0]
        rows.append(
            {
                "patient": str(patient),
                "cohort": None if cohort is None else str(cohort),
                "n_channels": int(yt.size),
                "n_soz": int(yt.sum()),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "recall": recall,
                "specificity": _ratio(tn, tn + fp, None),
                "precision": precision,
                "f1": _f1(precision, recall),
            }
        )
    no_soz = [r["patient"] for r in rows if r["n_soz"] == 0]
    if no_soz:
        logger.info("%d patients have no SOZ contact (left out of macro recall/F1)", len(no_soz))
    out: dict = {"n_patients": len(rows)}
    for name in _MACRO:
        mean, std, n = _mean_std([r[name] for r in rows])
        out[name] = {"mean": mean, "std": std, "n": n}
    out["per_patient"] = rows
    return out
