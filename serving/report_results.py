"""The results table a report is drawn from: ``soz score``'s Parquet file, or a training run
directory's test-fold predictions turned into the same table (:func:`load_results`), each row
completed to :data:`serving.results.RESULT_COLUMNS` with its call (:func:`complete_results`).

A run directory's predictions are per sequence and channel; they are averaged to one row per
recording x channel, with the fold's threshold (:meth:`trainer.rundir.RunDir.threshold`), or each
recording's own where the fold was trained with the patient-relative call rule.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.errors import SozkitError
from ingest.recording import shaft_of
from serving.results import RESULT_COLUMNS
from trainer.rundir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["complete_results", "load_results"]


def load_results(source: str | os.PathLike) -> pd.DataFrame:
    """Read a results table from ``soz score``'s Parquet file or from a training run directory.

    Parameters
    ----------
    source : path-like
        A ``.parquet`` results file, or ``RUN_DIR`` (``RUN_DIR/<model>/predictions.parquet``:
        the test-fold predictions, scored by the fold's model at the fold's threshold).

    Returns
    -------
    DataFrame
        Columns :data:`serving.results.RESULT_COLUMNS` (missing metadata left empty).
    """
    source = Path(source)
    if source.is_file():
        frame = pd.read_parquet(source)
        missing = {"recording_id", "channel", "model", "probability", "threshold"} - set(frame)
        if missing:
            raise SozkitError(
                f"{source} lacks the columns {sorted(missing)}; give a file written by "
                "`soz score` or a training run directory."
            )
        if "superseded" in frame:  # soz watch keeps an older version's rows, marked
            frame = frame[~frame["superseded"].fillna(False).astype(bool)]
        return complete_results(frame)
    if source.is_dir():
        return complete_results(_run_dir_results(source))
    raise SozkitError(
        f"{source} does not exist; give a results .parquet (soz score --out) or a RUN_DIR."
    )


def _run_dir_results(run_dir: Path) -> pd.DataFrame:
    run = RunDir.open(run_dir)
    frames = []
    for model_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        model, pred = model_dir.name, run.predictions_path(model_dir.name)
        if not pred.is_file():
            continue
        df = pd.read_parquet(pred)
        needed = {"recording_id", "channel", "score"}
        if not needed <= set(df):
            logger.warning("%s lacks %s; skipped", pred, sorted(needed - set(df)))
            continue
        df = df.rename(columns={"score": "probability", "y_true": "soz_label"})
        if "patient" in df and "subject" not in df:
            df["subject"] = df["patient"].astype(str).str.split("/").str[-1]
        df["model"] = model
        if "fold" not in df:
            df["fold"] = pd.NA
        df["threshold"] = [_fold_threshold(run, model, f) for f in df["fold"].astype("object")]
        # One row per sequence x channel: average to one per recording x channel.
        keys = [c for c in ("recording_id", "channel", "model", "fold") if c in df]
        agg = {"probability": "mean", "threshold": "first"}
        for col in ("subject", "cohort", "soz_label"):
            if col in df:
                agg[col] = "first" if col != "soz_label" else "max"
        if "flat" in df:  # flat in every row, as training counts it
            agg["flat"] = "min"
        per = df.groupby(keys, dropna=False, sort=False).agg(agg).reset_index()
        frames.append(_relative_calls(run, model, per).drop(columns="flat", errors="ignore"))
    if not frames:
        raise SozkitError(
            f"{run_dir} holds no <model>/predictions.parquet; train first (soz train --out "
            f"{run_dir}) or give a results file from `soz score`."
        )
    out = pd.concat(frames, ignore_index=True)
    out["soz_call"] = out["probability"] >= out["threshold"]
    return out


def _relative_calls(run: RunDir, model: str, per: pd.DataFrame) -> pd.DataFrame:
    """Folds trained with the patient-relative call rule: each recording's own threshold, its
    flat contacts (a ``flat`` column, as ``soz train`` writes) left out as in training."""
    from trainer.call_rules import relative_threshold

    if "fold" not in per:
        return per
    flat = per["flat"].fillna(False).astype(bool) if "flat" in per else None
    for fold, idx in per.groupby("fold", dropna=True).groups.items():
        k = run.relative_k(model, int(fold))
        if k is None:
            continue
        for rows in per.loc[idx].groupby("recording_id").groups.values():
            probs = per.loc[rows, "probability"].to_numpy(float)
            f = None if flat is None else flat.loc[rows].to_numpy()
            per.loc[rows, "threshold"] = relative_threshold(probs, k, f)
    return per


def _fold_threshold(run: RunDir, model: str, fold: object) -> float:
    """A fold's threshold (:meth:`RunDir.threshold`); every fold's mean when ``fold`` is None."""
    folds = run.fold_indices(model) if fold is None or pd.isna(fold) else [int(fold)]
    values = []
    for k in folds:
        try:
            values.append(run.threshold(model, k))
        except SozkitError:
            continue
    if not values:
        raise SozkitError(
            f"no threshold in {run.model_dir(model)}/fold_*/threshold.json for fold {fold}; the "
            "run did not finish that fold (soz train --resume)."
        )
    return float(np.mean(values))


def complete_results(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every :data:`~serving.results.RESULT_COLUMNS` column (absent
    ones empty), each contact's shaft, its SOZ call at its threshold, and a subject."""
    frame = frame.copy()
    for col in RESULT_COLUMNS:
        if col not in frame:
            frame[col] = pd.NA
    frame["shaft"] = [
        s if isinstance(s, str) else shaft_of(c)
        for s, c in zip(frame["shaft"], frame["channel"], strict=True)
    ]
    frame["soz_call"] = frame["probability"].astype(float) >= frame["threshold"].astype(float)
    frame["soz_label"] = frame["soz_label"].astype("boolean")
    frame["subject"] = frame["subject"].fillna(frame["recording_id"]).astype(str)
    return frame
