"""Figures that say how a model does at a site it was not trained on, and on which kind of run.

Every run's summary gets them (:func:`site_figures`, :func:`render_sites`): the test channel
ROC-AUC pooled by centre of the test patients, and apart for ictal recordings (with at least one
seizure) and interictal recordings, each ranking the channels of a patient from those recordings
only. With ``--split centre`` (leave-one-centre-out) a centre's figure is what a model trained on
the other centres does there; with ``--split patient`` its patients' centre was also seen in
training, so the two splits side by side measure the cost of a new site.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from trainer.metrics import aggregate_channel_scores, channel_metrics, patient_macro_metrics
from trainer.summary import section

logger = logging.getLogger(__name__)

__all__ = ["RUN_KINDS", "call_figures", "pooled_auc", "render_sites", "site_figures"]

#: Recording subsets reported apart: every recording, ictal only, interictal only.
RUN_KINDS = ("all", "ictal", "interictal")


def pooled_auc(table: pd.DataFrame) -> dict[str, Any]:
    """Channel ROC-AUC of a (patient, channel) table, with its channel and SOZ counts.

    Parameters
    ----------
    table : DataFrame
        Columns ``y_true`` (0/1) and ``score``, one row per (patient, channel).

    Returns
    -------
    dict
        ``roc_auc`` (None when one class only), ``n_channels``, ``n_positive``, ``n_patients``.
    """
    y = table["y_true"].to_numpy(int)
    auc = None
    if 0 < y.sum() < y.size:
        auc = float(roc_auc_score(y, table["score"].to_numpy(float)))
    return {
        "roc_auc": auc,
        "n_channels": int(y.size),
        "n_positive": int(y.sum()),
        "n_patients": int(table["patient"].nunique()) if "patient" in table else None,
    }


def call_figures(table: pd.DataFrame, folds: Mapping[int, tuple[float, Any]]) -> dict[str, Any]:
    """Brier (calibrated), its skill score and macro precision / recall of the calls of a table.

    Parameters
    ----------
    table : DataFrame
        Aggregated (patient, channel) table with ``fold``, ``patient``, ``y_true``, ``score``
        (and ``flat``, optional: out of a relative calibration's reference).
    folds : mapping of int to (threshold, calibrator)
        Each fold's threshold and :class:`trainer.calibration.Calibrator`.

    Returns
    -------
    dict
        ``brier``, ``bss``, ``macro_precision``, ``macro_recall`` (None where undefined).
    """
    if table is None or not len(table):
        return dict.fromkeys(("brier", "bss", "macro_precision", "macro_recall"))
    score = table["score"].to_numpy(float)
    patient = table["patient"].to_numpy()
    flat = table["flat"].to_numpy(bool) if "flat" in table else None
    prob, thr = np.empty_like(score), np.empty_like(score)
    for k, idx in table.groupby("fold").indices.items():
        t, cal = folds[int(k)]
        prob[idx] = cal(score[idx], patient[idx], flat=None if flat is None else flat[idx])
        thr[idx] = t
    m = channel_metrics(table["y_true"], score, thr, probability=prob)
    macro = patient_macro_metrics(table, thr)
    return {
        "brier": m["brier"],
        "bss": m["bss"],
        "macro_precision": macro["precision"]["mean"],
        "macro_recall": macro["recall"]["mean"],
    }


def site_figures(
    predictions: pd.DataFrame,
    recordings: pd.DataFrame,
    centres: Mapping[str, str],
    folds: Mapping[int, tuple[float, Any]] | None = None,
) -> dict[str, Any]:
    """Test figures by run kind and by centre, from a model's pooled test predictions.

    Parameters
    ----------
    predictions : DataFrame
        ``RUN_DIR/<model>/predictions.parquet``: ``cohort``, ``patient``, ``recording_id``,
        ``channel``, ``y_true``, ``score`` (one row per recording and channel, or per sequence).
    recordings : DataFrame
        The store's recordings manifest (``recording_id``, ``n_seizures``).
    centres : mapping of str to str
        ``{patient: centre}`` (:func:`trainer.splits.patient_groups`).
    folds : mapping of int to (threshold, calibrator), optional
        Each fold's threshold and calibration (the predictions then need ``fold``): every
        kind's figures get :func:`call_figures` too.

    Returns
    -------
    dict
        ``{"all" | "ictal" | "interictal": pooled_auc(...) [+ call_figures(...)]}`` and
        ``"by_centre"``: ``{centre: {"all" | "ictal" | "interictal": pooled_auc(...)}}``.
    """
    seizures = dict(zip(recordings["recording_id"], recordings["n_seizures"], strict=True))
    n_sz = predictions["recording_id"].map(seizures)
    if n_sz.isna().any():
        missing = predictions.loc[n_sz.isna(), "recording_id"].iloc[0]
        raise ValueError(
            f"recording {missing} of the predictions is not in the store's manifest; "
            "compute site figures against the store the run was trained on."
        )
    subsets = {"all": predictions, "ictal": predictions[n_sz > 0]}
    subsets["interictal"] = predictions[n_sz == 0]
    out: dict[str, Any] = {}
    tables = {}
    for kind, preds in subsets.items():
        tables[kind] = aggregate_channel_scores(preds) if len(preds) else None
        out[kind] = (
            pooled_auc(tables[kind])
            if tables[kind] is not None
            else pooled_auc(pd.DataFrame({"y_true": [], "score": [], "patient": []}))
        )
        if folds is not None and tables[kind] is not None:
            fold_of = preds.groupby("patient")["fold"].first()
            table = tables[kind].assign(fold=tables[kind]["patient"].map(fold_of))
            out[kind].update(call_figures(table, folds))
    by_centre: dict[str, dict] = {}
    for kind, table in tables.items():
        if table is None:
            continue
        centre = table["patient"].map(lambda p: centres.get(p, "unknown"))
        for name, part in table.groupby(centre, sort=True):
            by_centre.setdefault(str(name), {})[kind] = pooled_auc(part)
    out["by_centre"] = by_centre
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def render_sites(sites: Mapping[str, Mapping], split: str) -> list[str]:
    """Markdown lines of the summary's site section.

    Parameters
    ----------
    sites : mapping of str to dict
        ``{model: site_figures(...)}``.
    split : str
        The run's split (``"patient"``, ``"centre"`` or ``"cohort"``): says what a centre's
        figure means.

    Returns
    -------
    list of str
    """
    if not sites:
        return []
    meaning = {
        "patient": "patient-wise folds: each centre's patients were tested by models that had "
        "seen other patients of the same centre (within-site figure)",
        "centre": "leave-one-centre-out: each centre's patients were tested by models trained "
        "and thresholded on the other centres only (cross-site figure)",
        "cohort": "leave-one-cohort-out: each cohort was tested by models trained on the other "
        "cohorts only (cross-generator when the cohorts come from two simulator families)",
    }[split]
    lines = section(
        f"By site and run kind (split: {split})",
        f"Pooled test channel ROC-AUC; {meaning}. Ictal / interictal: the channel scores from",
        "that kind of recording only (ictal = at least one seizure).",
    )
    centres = sorted({c for s in sites.values() for c in s.get("by_centre", {})})
    header = ["model", *RUN_KINDS, *(f"{c} ({k})" for c in centres for k in RUN_KINDS)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for model, s in sites.items():
        cells = [f"`{model}`", *(_fmt(s[k]["roc_auc"]) for k in RUN_KINDS)]
        for c in centres:
            per = s.get("by_centre", {}).get(c, {})
            cells += [_fmt(per.get(k, {}).get("roc_auc")) for k in RUN_KINDS]
        lines.append("| " + " | ".join(cells) + " |")
    if any("bss" in s.get("all", {}) for s in sites.values()):
        lines += ["", "Calibrated probabilities and calls by run kind (Brier skill score against",
                  "the constant prediction at the prevalence: > 0 beats it; macro = per patient).",
                  ""]  # fmt: skip
        header = ["model", *(f"{h} ({k})" for k in RUN_KINDS
                             for h in ("BSS", "macro precision", "macro recall"))]  # fmt: skip
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for model, s in sites.items():
            cells = [f"`{model}`"]
            for k in RUN_KINDS:
                cells += [_fmt(s[k].get(h)) for h in ("bss", "macro_precision", "macro_recall")]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
