"""Evaluation of per-channel SOZ predictions: aggregation, threshold, channel and patient metrics.

The protocol (SPEC, stage 3):

1. :func:`aggregate_channel_scores`: a channel's probability is the mean over a recording's
   sequences, then the mean over the patient's recordings; one row per (patient, channel).
2. :func:`youden_threshold`: the threshold maximising Youden's J on the **validation** patients.
3. On the test patients, with that threshold: :func:`channel_metrics` (confusion matrix, ROC-AUC,
   PR-AUC with the SOZ prevalence, Brier score, reliability curve, channel-wise recall /
   specificity / precision / F1) and :func:`patient_macro_metrics` (the same four per patient,
   then mean and std across patients).
   The Brier score, its skill against the prevalence and the reliability curve are those of the
   probabilities **calibrated** on the validation patients (:mod:`trainer.calibration`); the
   raw Brier is kept beside them (``brier_raw``), and so is the ROC-AUC of the calibrated
   probabilities (``roc_auc_calibrated``) beside that of the raw scores (``roc_auc``, the
   headline figure): a calibration relative to each patient's contacts keeps every patient's
   ranking but not the pooled one.
   Flat contacts (a ``flat`` column, :func:`with_flat`) stay in the figures but out of their
   patient's reference for the relative call rule and the relative calibration
   (:func:`trainer.call_rules.reference_scores`, the function serving uses).
4. :func:`evaluate_fold` does 2-3 for one fold; :func:`summarise_folds` pools the folds and gives
   mean and std over folds.

A channel is called SOZ when ``score >= threshold`` (the convention of
:func:`sklearn.metrics.roc_curve`). Every dict returned here holds plain ``int`` / ``float`` /
``list`` / ``None`` only, ready for :func:`json.dump`; an undefined value (ROC-AUC of a set with
one class, recall of a patient without SOZ contacts) is ``None``, never NaN. The metrics of one
set of channels live in :mod:`trainer.channel_metrics` and are re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from trainer.calibration import Calibrator, fit_calibrator
from trainer.call_rules import CALL_RULES, fit_relative_k, relative_thresholds
from trainer.channel_metrics import (
    _MACRO,
    _check_labels_scores,
    _mean_std,
    _require,
    channel_metrics,
    patient_macro_metrics,
    reliability_curve,
    youden_threshold,
)

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
#: What each level of :func:`aggregate_channel_scores` carries up of a channel's rows: SOZ when
#: any row is (``y_true`` max; ``y_min`` below it flags rows that disagree), flat when every row is.
_CARRIED_UP = {"y_true": ("y_true", "max"), "y_min": ("y_true", "min"), "flat": ("flat", "min")}
#: The scalar metrics averaged over folds by :func:`summarise_folds`.
FOLD_SCALARS = (
    "roc_auc",
    "pr_auc",
    "prevalence",
    "brier",
    "brier_raw",
    "bss",
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
        mean is then weighted by it, so that partial means combine exactly. An optional ``flat``
        column (bool, :func:`with_flat`) says which contacts carry no signal in a recording.

    Returns
    -------
    table : DataFrame
        Columns :data:`TABLE_COLUMNS`, one row per (patient, channel), sorted. ``y_true`` is 1 when
        the channel is SOZ in **any** of the patient's recordings (labels are per patient in
        practice; a disagreement between runs is logged and resolved towards SOZ, the clinically
        conservative call). ``n_recordings`` / ``n_sequences`` count what was averaged.
        With a ``flat`` column in ``preds``, ``flat`` too: the channel is flat in every one of
        the patient's recordings (left out of the patient's relative-rule and calibration
        reference, :func:`trainer.call_rules.reference_scores`).
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
    has_flat = "flat" in preds.columns
    work = preds.loc[:, keys + ["y_true"]].assign(
        _w=weight, _ws=weight * preds["score"].to_numpy(dtype=float),
        flat=preds["flat"].fillna(False).astype(bool) if has_flat else False,
    )  # fmt: skip
    per_rec = (
        work.groupby(keys, sort=True, observed=True)
        .agg(**_CARRIED_UP, _ws=("_ws", "sum"), n_sequences=("_w", "sum"))
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
            **_CARRIED_UP,
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
    table["flat"] = table["flat"].astype(bool)
    return table.loc[:, [*TABLE_COLUMNS, *(["flat"] if has_flat else [])]].reset_index(drop=True)


def with_flat(preds: pd.DataFrame, channels: pd.DataFrame | None) -> pd.DataFrame:
    """``preds`` with a ``flat`` column from the store's channels table (its ``recording_id``,
    ``name``, ``flat``; :meth:`ingest.store.ClipStore.channels`): which contacts carry no
    signal in their recording. ``channels=None``: ``preds`` as it is."""
    if channels is None or "flat" not in channels or not len(preds):
        return preds
    flat = channels.loc[:, ["recording_id", "name", "flat"]].rename(columns={"name": "channel"})
    flat = flat.assign(flat=flat["flat"].fillna(False).astype(bool))
    out = preds.drop(columns=["flat"], errors="ignore").merge(
        flat, on=["recording_id", "channel"], how="left"
    )
    out["flat"] = out["flat"].fillna(False).astype(bool)
    return out


def _flat(table: pd.DataFrame) -> np.ndarray | None:
    """A table's ``flat`` column as bool, None without one."""
    return table["flat"].to_numpy(bool) if "flat" in table else None


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
    calibrator: Calibrator | None = None,
    calibration: str = "auto",
    calibration_prior: str = "match",
    call_rule: str = "youden",
    relative_k: float | None = None,
) -> dict:
    """Evaluate one fold: threshold and calibration from the validation patients, metrics on test.

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
    calibrator : Calibrator, optional
        Use this calibration instead of fitting one on ``val``
        (:func:`trainer.calibration.fit_calibrator`, method ``calibration``).
    calibration : {"auto", "identity", "platt", "isotonic", "relative-platt", "relative-isotonic"}
        The method fitted on the validation patients when no ``calibrator`` is given
        (:func:`trainer.calibration.fit_calibrator`).
    calibration_prior : {"match", "none"}
        Whether that calibration matches each patient to the validation prevalence
        (``prior`` of :func:`trainer.calibration.fit_calibrator`).
    call_rule : {"youden", "relative"}
        The rule the test calls (``test``, ``macro``) use (:mod:`trainer.call_rules`); both
        rules' calls are reported under ``calls``.
    relative_k : float, optional
        The relative rule's ``k`` instead of fitting it on ``val``.

    Returns
    -------
    result : dict
        ``threshold``; ``val`` and ``test``: :func:`channel_metrics` at that threshold;
        ``macro``: :func:`patient_macro_metrics` on test; ``roc_by_cohort``: test ROC curves
        per cohort (``{"fpr", "tpr", "auc"}``, plus ``"all"``); ``test_table``: the aggregated
        test table as records (``cohort, patient, channel, y_true, score, probability``: raw
        score and calibrated probability) so that :func:`summarise_folds` can pool folds;
        ``calibration``: the :meth:`~trainer.calibration.Calibrator.to_dict` of the fold;
        ``call_rule``, ``relative_k``; ``calibrated_threshold``: Youden's threshold of the
        validation patients' calibrated probabilities; ``calls``: ``{rule: macro / pooled
        precision and recall, calls}`` on test of both rules and of the calls on calibrated
        probabilities (:func:`calibrated_calls`, compared, not used by serving);
        ``n_val_patients``, ``n_test_patients``.
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
    if call_rule not in CALL_RULES:
        raise ValueError(f"{call_rule=} must be one of {CALL_RULES}.")
    if relative_k is None:
        relative_k = fit_relative_k(
            val_t["y_true"], val_t["score"], val_t["patient"], flat=_flat(val_t)
        )
    rules = {
        "youden": (threshold, threshold),
        "relative": tuple(
            relative_thresholds(t["score"], t["patient"], relative_k, flat=_flat(t))
            for t in (val_t, test_t)
        ),
    }
    val_thr, test_thr = rules[call_rule]
    if calibrator is None:
        calibrator = fit_calibrator(
            val_t["y_true"], val_t["score"], val_t["patient"], method=calibration,
            flat=_flat(val_t), prior=calibration_prior,
        )  # fmt: skip
    val_p, test_p = (
        calibrator(t["score"].to_numpy(float), t["patient"].to_numpy(), flat=_flat(t))
        for t in (val_t, test_t)
    )
    cal_threshold = youden_threshold(val_t["y_true"], val_p)
    records = [
        {
            "cohort": str(r.cohort),
            "patient": str(r.patient),
            "channel": str(r.channel),
            "y_true": int(r.y_true),
            "score": float(r.score),
            "probability": float(p),
            **({"flat": bool(r.flat)} if "flat" in test_t else {}),
        }
        for r, p in zip(test_t.itertuples(index=False), test_p, strict=True)
    ]
    calls = {rule: call_summary(test_t, thr) for rule, (_, thr) in rules.items()}
    calls.update(calibrated_calls(test_t.assign(score=test_p), cal_threshold))
    return {
        "threshold": threshold,
        "call_rule": call_rule,
        "relative_k": float(relative_k),
        "calibrated_threshold": float(cal_threshold),
        "calls": calls,
        "n_val_patients": int(val_t["patient"].nunique()),
        "n_test_patients": int(test_t["patient"].nunique()),
        "calibration": calibrator.to_dict(),
        "val": channel_metrics(
            val_t["y_true"], val_t["score"], val_thr, n_bins=n_bins, probability=val_p
        ),
        "test": channel_metrics(
            test_t["y_true"], test_t["score"], test_thr, n_bins=n_bins, probability=test_p
        ),
        "macro": patient_macro_metrics(test_t, test_thr),
        "roc_by_cohort": _curves_json(roc_curve_by_cohort(test_t, include_all=True)),
        "test_table": records,
    }


def call_summary(table: pd.DataFrame, thresholds) -> dict:
    """Calls of a rule on a (patient, channel) table: pooled and macro precision / recall."""
    m = channel_metrics(table["y_true"], table["score"], thresholds)
    macro = patient_macro_metrics(table, thresholds)
    return {
        "n_calls": m["tp"] + m["fp"],
        "n_channels": m["n_channels"],
        "precision": m["precision"],
        "recall": m["recall"],
        "macro_precision": macro["precision"]["mean"],
        "macro_recall": macro["recall"]["mean"],
        "macro_f1": macro["f1"]["mean"],
    }


def calibrated_calls(table: pd.DataFrame, threshold) -> dict:
    """Calls on calibrated probabilities (``table["score"]`` holds them), compared beside the
    call rules: ``calibrated`` (``p >= threshold``, Youden's threshold of the validation
    patients' calibrated probabilities) and ``calibrated_half`` (``p >= 0.5``)."""
    return {"calibrated": call_summary(table, threshold),
            "calibrated_half": call_summary(table, 0.5)}  # fmt: skip


def _pooled_calls(pooled: pd.DataFrame, fold_results: Sequence[Mapping]) -> dict:
    """Both call rules on all test patients, each fold's threshold / ``k`` on its own patients
    (and the calls on calibrated probabilities, :func:`calibrated_calls`, where every fold
    has its calibrated threshold)."""
    youden = np.array([float(fold_results[i]["threshold"]) for i in pooled["fold"]])
    out = {"youden": call_summary(pooled, youden)}
    if pooled["relative_k"].notna().all():
        out["relative"] = call_summary(
            pooled,
            relative_thresholds(pooled["score"], pooled["patient"], pooled["relative_k"],
                                flat=_flat(pooled)),
        )  # fmt: skip
    if all("calibrated_threshold" in r for r in fold_results):
        cal = np.array([float(fold_results[i]["calibrated_threshold"]) for i in pooled["fold"]])
        out.update(calibrated_calls(pooled.assign(score=pooled["probability"]), cal))
    return out


def fold_scalars(result: Mapping) -> dict[str, float | None]:
    """The headline numbers of one :func:`evaluate_fold` result (:data:`FOLD_SCALARS`)."""
    test, macro = result["test"], result["macro"]
    out = {k: test.get(k) for k in ("roc_auc", "pr_auc", "prevalence", "brier", "brier_raw", "bss")}
    out.update({k: test[k] for k in _MACRO})
    out.update({f"macro_{k}": macro[k]["mean"] for k in _MACRO})
    out["threshold"] = result["threshold"]
    out["call_rule"] = result.get("call_rule", "youden")
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
        f = pd.DataFrame.from_records(r["test_table"])
        _require(f, ("cohort", "patient", "channel", "y_true", "score"), f"fold {i}'s test_table")
        if "probability" not in f:  # a run from before calibration: raw = calibrated
            f["probability"] = f["score"]
        f["threshold"] = float(r["threshold"])
        if r.get("call_rule") == "relative":
            f["threshold"] = relative_thresholds(
                f["score"], f["patient"], r["relative_k"], flat=_flat(f)
            )
        f["relative_k"] = r.get("relative_k", float("nan"))
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
        "pooled": channel_metrics(
            pooled["y_true"],
            pooled["score"],
            thresholds,
            n_bins=n_bins,
            probability=pooled["probability"],
        ),  # fmt: skip
        "pooled_macro": patient_macro_metrics(pooled, thresholds),
        "pooled_calls": _pooled_calls(pooled, fold_results),
        "pooled_roc_by_cohort": _curves_json(roc_curve_by_cohort(pooled, include_all=True)),
    }
