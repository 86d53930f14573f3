"""Evaluation of per-channel SOZ predictions: aggregation, threshold, channel and patient metrics.

The protocol (SPEC, stage 3):

1. :func:`aggregate_channel_scores`: a channel's probability is the mean over a recording's
   sequences, then the mean over the patient's recordings; one row per (patient, channel).
2. :func:`youden_threshold`: the threshold maximising Youden's J on the **validation** patients.
3. On the test patients, with that threshold: :func:`channel_metrics` (confusion matrix, ROC-AUC,
   PR-AUC with the SOZ prevalence, Brier score, reliability curve, channel-wise recall /
   specificity / precision / F1) and :func:`patient_macro_metrics` (the same four per patient,
   then mean and std across patients).
4. :func:`evaluate_fold` does 2-3 for one fold; :func:`summarise_folds` pools the folds and gives
   mean and std over folds.

A channel is called SOZ when ``score >= threshold`` (the convention of
:func:`sklearn.metrics.roc_curve`). Every dict returned here holds plain ``int`` / ``float`` /
``list`` / ``None`` only, ready for :func:`json.dump`; an undefined value (ROC-AUC of a set with
one class, recall of a patient without SOZ contacts) is ``None``, never NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

logger = logging.getLogger(__name__)

__all__ = [
    "PRED_COLUMNS",
    "TABLE_COLUMNS",
    "aggregate_channel_scores",
    "channel_metrics",
    "evaluate_fold",
    "fold_scalars",
    "patient_macro_metrics",
    "reliability_curve",
    "roc_curve_by_cohort",
    "summarise_folds",
    "youden_threshold",
]

#: Columns of a prediction table (one row per sequence x channel, or per recording x channel).
PRED_COLUMNS = ("cohort", "patient", "recording_id", "channel", "y_true", "score")
#: Columns of an aggregated table (one row per patient x channel), as returned by
#: :func:`aggregate_channel_scores`.
TABLE_COLUMNS = ("cohort", "patient", "channel", "y_true", "score", "n_recordings", "n_sequences")
#: The scalar metrics averaged over folds by :func:`summarise_folds`.
FOLD_SCALARS = (
    "roc_auc",
    "pr_auc",
    "prevalence",
    "brier",
    "recall",
    "specificity",
    "precision",
    "f1",
    "macro_recall",
    "macro_specificity",
    "macro_precision",
    "macro_f1",
    "threshold",
)
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


def aggregate_channel_scores(preds: pd.DataFrame) -> pd.DataFrame:
    """Channel probabilities per patient: mean over each recording's sequences, then over recordings.

    The two-step mean weights every recording of a patient equally, whatever its length (a 20-h
    interictal recording does not drown a 10-min ictal run).

    Parameters
    ----------
    preds : DataFrame
        Columns :data:`PRED_COLUMNS`: ``cohort``, ``patient``, ``recording_id``, ``channel``,
        ``y_true`` (0/1), ``score`` (probability), one row per sequence x channel (or per
        recording x channel). An optional ``n_sequences`` column (> 0) says how many sequences
        a row's score already averages (a worker's partial mean of a recording): the recording
        mean is then weighted by it, so that partial means combine exactly.

    Returns
    -------
    table : DataFrame
        Columns :data:`TABLE_COLUMNS`, one row per (patient, channel), sorted. ``y_true`` is 1 when
        the channel is SOZ in **any** of the patient's recordings (labels are per patient in
        practice; a disagreement between runs is logged and resolved towards SOZ, the clinically
        conservative call). ``n_recordings`` / ``n_sequences`` count what was averaged.
    """
    _require(preds, PRED_COLUMNS, "the prediction table")
    if preds.empty:
        raise ValueError("the prediction table is empty: no sequences were scored.")
    _check_labels_scores(preds["y_true"].to_numpy(), preds["score"].to_numpy())
    keys = ["cohort", "patient", "recording_id", "channel"]
    if "n_sequences" in preds.columns:
        weight = preds["n_sequences"].to_numpy(dtype=float)
        if not (np.isfinite(weight).all() and (weight > 0).all()):
            raise ValueError(
                "n_sequences must be a positive count on every row (the number of sequences a "
                f"row's score averages); found {np.unique(weight[~(weight > 0)])[:5].tolist()}."
            )
    else:
        weight = np.ones(len(preds))
    work = preds.loc[:, keys + ["y_true"]].assign(
        _w=weight, _ws=weight * preds["score"].to_numpy(dtype=float)
    )
    per_rec = (
        work.groupby(keys, sort=True, observed=True)
        .agg(
            _ws=("_ws", "sum"),
            n_sequences=("_w", "sum"),
            y_true=("y_true", "max"),
            y_min=("y_true", "min"),
        )
        .reset_index()
    )
    per_rec["score"] = per_rec["_ws"] / per_rec["n_sequences"]
    inconsistent = per_rec["y_true"] != per_rec["y_min"]
    if inconsistent.any():
        raise ValueError(
            f"{int(inconsistent.sum())} (recording, channel) pairs have rows with different "
            f"labels, e.g. {per_rec.loc[inconsistent, keys].iloc[0].tolist()}; a channel's SOZ "
            "label is fixed within a recording: check the join of the manifest labels."
        )
    table = (
        per_rec.groupby(["cohort", "patient", "channel"], sort=True, observed=True)
        .agg(
            y_true=("y_true", "max"),
            y_min=("y_true", "min"),
            score=("score", "mean"),
            n_recordings=("recording_id", "nunique"),
            n_sequences=("n_sequences", "sum"),
        )
        .reset_index()
    )
    disagree = table["y_true"] != table["y_min"]
    if disagree.any():
        logger.warning(
            "%d channels are SOZ in some recordings of their patient and not in others; "
            "counted as SOZ (e.g. %s)",
            int(disagree.sum()),
            table.loc[disagree, ["patient", "channel"]].iloc[0].tolist(),
        )
    table["y_true"] = table["y_true"].astype(int)
    table["n_sequences"] = table["n_sequences"].round().astype(int)
    return table.loc[:, list(TABLE_COLUMNS)].reset_index(drop=True)


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
    """Calibration bins: mean predicted probability vs observed SOZ fraction.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
    y_score : array-like of float, shape (n_channels,)
        Probabilities in [0, 1].
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    bins : list of dict
        One dict per bin: ``lower``, ``upper``, ``count``, ``mean_score`` and ``fraction_positive``
        (None for an empty bin). The last bin includes 1.0.
    """
    if n_bins < 1:
        raise ValueError(f"{n_bins=} must be >= 1.")
    y_true, y_score = _check_labels_scores(y_true, y_score)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, y_score, side="right") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "mean_score": _float(y_score[sel].mean()) if n else None,
                "fraction_positive": _float(y_true[sel].mean()) if n else None,
            }
        )
    return bins


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


def channel_metrics(y_true, y_score, threshold, *, n_bins: int = 10) -> dict:
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

    Returns
    -------
    metrics : dict
        ``tn, fp, fn, tp`` and ``confusion`` (``[[tn, fp], [fn, tp]]``, rows = truth); ``roc_auc``
        and ``pr_auc`` (average precision, whose chance level is ``prevalence``), None with one
        class only; ``prevalence`` (SOZ fraction); ``brier`` score; ``reliability`` bins;
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
        "pr_auc": _float(average_precision_score(y_true, y_score)) if both else None,
        "prevalence": float(y_true.mean()),
        "brier": float(brier_score_loss(y_true, y_score)),
        "reliability": reliability_curve(y_true, y_score, n_bins=n_bins),
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


def roc_curve_by_cohort(
    table: pd.DataFrame, *, include_all: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """ROC curve of each cohort's channels (for the per-cohort plots, also through training).

    Parameters
    ----------
    table : DataFrame
        Columns ``cohort``, ``y_true``, ``score`` (aggregated or not).
    include_all : bool
        Also return the curve of all channels together, under the key ``"all"``.

    Returns
    -------
    curves : dict of str to (fpr, tpr, auc)
        ``fpr``, ``tpr`` : ndarray, shape (n_points,); ``auc`` : float. Cohorts whose channels
        all have one label have no ROC curve and are left out (logged).
    """
    _require(table, ("cohort", "y_true", "score"), "the channel table")
    groups = [(str(c), g) for c, g in table.groupby("cohort", sort=True)]
    if include_all:
        groups.append(("all", table))
    curves = {}
    for name, g in groups:
        y, s = _check_labels_scores(g["y_true"].to_numpy(), g["score"].to_numpy())
        if y.min() == y.max():
            logger.info("cohort %s: one class only among %d channels, no ROC curve", name, y.size)
            continue
        fpr, tpr, _ = roc_curve(y, s)
        curves[name] = (fpr, tpr, float(roc_auc_score(y, s)))
    return curves


def _curves_json(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> dict:
    return {
        k: {"fpr": np.asarray(f).tolist(), "tpr": np.asarray(t).tolist(), "auc": float(a)}
        for k, (f, t, a) in curves.items()
    }


def _as_table(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Aggregate a prediction table; an already aggregated one is returned as is."""
    if "recording_id" in df.columns:
        return aggregate_channel_scores(df)
    _require(df, ("cohort", "patient", "channel", "y_true", "score"), what)
    return df


def evaluate_fold(
    val: pd.DataFrame,
    test: pd.DataFrame,
    *,
    n_bins: int = 10,
    threshold: float | None = None,
) -> dict:
    """Evaluate one fold: Youden threshold on the validation patients, metrics on the test patients.

    Parameters
    ----------
    val, test : DataFrame
        Prediction tables (:data:`PRED_COLUMNS`, aggregated here) or already aggregated tables
        (:data:`TABLE_COLUMNS`, without ``recording_id``).
    n_bins : int
        Bins of the reliability curve.
    threshold : float, optional
        Use this threshold instead of Youden's on ``val`` (re-evaluating a checkpoint at the
        threshold it was saved with). Never pick it on the test patients.

    Returns
    -------
    result : dict
        ``threshold``; ``val`` and ``test``: :func:`channel_metrics` at that threshold;
        ``macro``: :func:`patient_macro_metrics` on test; ``roc_by_cohort``: test ROC curves
        per cohort (``{"fpr", "tpr", "auc"}``, plus ``"all"``); ``test_table``: the aggregated
        test table as records (``cohort, patient, channel, y_true, score``) so that
        :func:`summarise_folds` can pool folds; ``n_val_patients``, ``n_test_patients``.
    """
    val_t = _as_table(val, "the validation table")
    test_t = _as_table(test, "the test table")
    overlap = set(val_t["patient"]) & set(test_t["patient"])
    if overlap:
        raise ValueError(
            f"patients {sorted(overlap)[:5]} are in both the validation and the test table; "
            "the threshold must come from patients the test never sees."
        )
    if threshold is None:
        threshold = youden_threshold(val_t["y_true"], val_t["score"])
    elif not math.isfinite(threshold):
        raise ValueError(f"{threshold=} must be a finite score threshold.")
    threshold = float(threshold)
    records = [
        {
            "cohort": str(r.cohort),
            "patient": str(r.patient),
            "channel": str(r.channel),
            "y_true": int(r.y_true),
            "score": float(r.score),
        }
        for r in test_t.itertuples(index=False)
    ]
    return {
        "threshold": threshold,
        "n_val_patients": int(val_t["patient"].nunique()),
        "n_test_patients": int(test_t["patient"].nunique()),
        "val": channel_metrics(val_t["y_true"], val_t["score"], threshold, n_bins=n_bins),
        "test": channel_metrics(test_t["y_true"], test_t["score"], threshold, n_bins=n_bins),
        "macro": patient_macro_metrics(test_t, threshold),
        "roc_by_cohort": _curves_json(roc_curve_by_cohort(test_t, include_all=True)),
        "test_table": records,
    }


def fold_scalars(result: Mapping) -> dict[str, float | None]:
    """The headline numbers of one :func:`evaluate_fold` result (:data:`FOLD_SCALARS`)."""
    test, macro = result["test"], result["macro"]
    out = {k: test[k] for k in ("roc_auc", "pr_auc", "prevalence", "brier")}
    out.update({k: test[k] for k in _MACRO})
    out.update({f"macro_{k}": macro[k]["mean"] for k in _MACRO})
    out["threshold"] = result["threshold"]
    return out


def summarise_folds(fold_results: Sequence[Mapping], *, n_bins: int = 10) -> dict:
    """Overall results of a cross-validation: pooled over test folds, and mean / std over folds.

    Parameters
    ----------
    fold_results : sequence of dict
        :func:`evaluate_fold` results, one per fold (as loaded back from JSON is fine).
    n_bins : int
        Bins of the pooled reliability curve.

    Returns
    -------
    summary : dict
        ``n_folds``; ``folds``: :func:`fold_scalars` of each fold; ``mean`` / ``std`` (``ddof=0``)
        over folds of each of :data:`FOLD_SCALARS` (None where no fold defines it);
        ``pooled``: :func:`channel_metrics` of all test channels, each called with its own
        fold's threshold (ROC-AUC / PR-AUC rank scores of different fold models together);
        ``pooled_macro``: :func:`patient_macro_metrics` over all test patients (each in exactly
        one fold), ``pooled_roc_by_cohort``: ROC curves per cohort of all test channels.
    """
    if not fold_results:
        raise ValueError("no fold results to summarise; run at least one fold.")
    frames = []
    for i, r in enumerate(fold_results):
        if "test_table" not in r:
            raise ValueError(
                f"fold result {i} has no 'test_table'; pass the dicts evaluate_fold returns."
            )
        f = pd.DataFrame.from_records(
            r["test_table"], columns=["cohort", "patient", "channel", "y_true", "score"]
        )
        f["threshold"] = float(r["threshold"])
        f["fold"] = i
        frames.append(f)
    pooled = pd.concat(frames, ignore_index=True)
    repeated = pooled.groupby("patient")["fold"].nunique()
    if (repeated > 1).any():
        raise ValueError(
            f"patients {repeated[repeated > 1].index[:5].tolist()} are test patients of several "
            "folds; the test folds must partition the patients."
        )
    per_fold = [fold_scalars(r) for r in fold_results]
    mean, std = {}, {}
    for k in FOLD_SCALARS:
        mean[k], std[k], _ = _mean_std([f[k] for f in per_fold])
    thresholds = pooled["threshold"].to_numpy()
    return {
        "n_folds": len(fold_results),
        "folds": per_fold,
        "mean": mean,
        "std": std,
        "pooled": channel_metrics(pooled["y_true"], pooled["score"], thresholds, n_bins=n_bins),
        "pooled_macro": patient_macro_metrics(pooled, thresholds),
        "pooled_roc_by_cohort": _curves_json(roc_curve_by_cohort(pooled, include_all=True)),
    }
