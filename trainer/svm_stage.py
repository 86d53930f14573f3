"""The SVM stage: channel features per recording by Ray CPU tasks (cached beside the store), one SVM per fold.

Features: :func:`models.features.clip_features` (interictal spike counts + wavelet-packet band
features, :func:`models.features.svm_bands` of the store's rate, the energy ratio) of every clip,
averaged over the recording's clips, and the peaks of some, by
:class:`models.features.RecordingFeatureMean` (streamed in chunks, so memory stays bounded
whatever the duration; serving uses the same accumulator), giving one feature vector per
(recording, channel). Each SVM uses the columns of its feature set (``features``, see
:func:`train_svm_fold`) and records them in its ``feature_names``, which serving selects.

Cache: ``STORE/features/<FEATURE_VERSION>/<recording_id>.parquet`` (columns ``recording_id``,
``channel_index``, ``channel``, ``n_clips`` and one column per feature). A recording's file is
written once, atomically (temporary name, then rename); bump :data:`FEATURE_VERSION` whenever the
features change so stale caches are never read.

Training: one :class:`models.svm.SOZSVM` per fold on the training patients' (recording, channel)
rows (calibration folds grouped by patient; features normalised within each recording by the
model itself, so serving a single recording normalises the same way), optionally with spectrally
tilted copies of the training rows (``augment: "tilt"``, :mod:`trainer.svm_augment`, training
only); it scores the validation and test recordings, and
:func:`trainer.metrics.evaluate_fold` turns those into the fold's metrics like for every model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import ray

from ingest.errors import SozkitError
from ingest.fileio import write_parquet
from models.features import RecordingFeatureMean, select_features, svm_bands
from models.svm import SOZSVM
from trainer.datasets import RecordingInfo
from trainer.splits import Fold
from trainer.svm_augment import AUGMENTS, COPIES, TILT_SD, tilt_augment

logger = logging.getLogger(__name__)

__all__ = [
    "compute_features",
    "feature_columns",
    "recording_features",
    "svm_bands",
    "train_svm_fold",
]

#: Key of the feature cache; change it whenever :func:`models.features.clip_features` changes.
FEATURE_VERSION = "svm-v2"
#: The SVM's feature set when ``model_hparams["svm"]`` names none
#: (:data:`models.features.FEATURE_SETS`).
DEFAULT_FEATURE_SET = "v1"


def feature_columns(sfreq: float) -> list[str]:
    """Feature columns of the SVM features of a store at ``sfreq`` (every feature set's)."""
    return list(RecordingFeatureMean(sfreq).names)


def feature_cache_dir(store_url: str | os.PathLike) -> str:
    """``STORE/features/<FEATURE_VERSION>``: where the per-recording features are cached."""
    return f"{str(store_url).rstrip('/')}/features/{FEATURE_VERSION}"


def recording_features(
    store: Any, recording_id: str, *, chunk_clips: int = 64, max_clips: int | None = None
) -> pd.DataFrame:
    """Mean over clips of :func:`models.features.clip_features` for one recording.

    Parameters
    ----------
    store : ingest.store.ClipStore
        The open store.
    recording_id : str
    chunk_clips : int
        Clips read and featurised at a time (bounds memory).
    max_clips : int, optional
        Use at most this many evenly spaced chunks' worth of clips (faster on 20-hour
        recordings); ``None`` = every clip.

    Returns
    -------
    DataFrame
        One row per channel: ``recording_id``, ``channel_index``, ``channel``, ``n_clips``, then
        the :func:`feature_columns` of the store's rate.
    """
    recs = store.recordings()
    row = recs.loc[recs["recording_id"] == recording_id]
    if row.empty:
        raise SozkitError(f"{recording_id} is not a complete recording of {store.url}.")
    n_clips = int(row["n_clips"].iloc[0])
    starts = np.arange(0, n_clips, chunk_clips)
    if max_clips is not None and len(starts) * chunk_clips > max_clips:
        keep = max(1, max_clips // chunk_clips)
        starts = starts[np.linspace(0, len(starts) - 1, keep).round().astype(int)]
    acc = RecordingFeatureMean(store.sfreq)
    for start in starts:
        stop = min(int(start) + chunk_clips, n_clips)
        acc.add(store.read_clips(recording_id, int(start), stop))
    chans = store.channels([recording_id]).sort_values("channel_index")
    out = pd.DataFrame(acc.mean(), columns=list(acc.names))
    out.insert(0, "n_clips", acc.n_clips)
    out.insert(0, "channel", chans["name"].astype(str).to_numpy())
    out.insert(0, "channel_index", chans["channel_index"].to_numpy())
    out.insert(0, "recording_id", recording_id)
    return out


@ray.remote(num_cpus=1)
def _features_task(store_url: str, recording_id: str, path: str, max_clips: int | None) -> str:
    from ingest.store import ClipStore

    fs, fs_path = fsspec.core.url_to_fs(path)
    if fs.exists(fs_path):
        return path
    try:
        df = recording_features(ClipStore.open(store_url), recording_id, max_clips=max_clips)
    except Exception as e:
        raise SozkitError(f"{recording_id}: SVM features failed: {e}") from e
    write_parquet(path, df)
    return path


def compute_features(
    store_url: str,
    recording_ids: Sequence[str],
    *,
    cache_dir: str | None = None,
    max_clips: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Features of every recording, computed by Ray CPU tasks in parallel (cached recordings are read).

    Parameters
    ----------
    store_url : str
    recording_ids : sequence of str
    cache_dir : str, optional
        Default :func:`feature_cache_dir` of the store.
    max_clips : int, optional
        See :func:`recording_features`.
    progress : callable, optional
        ``progress(done, total)`` as recordings finish.

    Returns
    -------
    DataFrame
        Rows of every recording, as :func:`recording_features` gives them.
    """
    cache_dir = cache_dir or feature_cache_dir(store_url)
    paths = {rid: f"{cache_dir.rstrip('/')}/{rid}.parquet" for rid in recording_ids}
    pending = {
        _features_task.remote(str(store_url), rid, path, max_clips): rid
        for rid, path in paths.items()
    }
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        rid = pending.pop(ready[0])
        try:
            ray.get(ready[0])
        except Exception as e:
            for ref in pending:
                ray.cancel(ref)
            raise SozkitError(f"{rid}: computing SVM features failed: {e}") from e
        done += 1
        if progress is not None:
            progress(done, len(paths))
    return pd.concat([pd.read_parquet(paths[rid]) for rid in recording_ids], ignore_index=True)


@dataclass
class SVMFoldResult:
    """One fold of the SVM stage: the fitted model and its per-(recording, channel) scores."""

    fold: int
    model: SOZSVM
    val_predictions: pd.DataFrame
    test_predictions: pd.DataFrame


_META = ("recording_id", "channel_index", "channel", "n_clips")


def _feature_cols(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if c not in _META]


def _rows(features: pd.DataFrame, recordings: Sequence[RecordingInfo]) -> pd.DataFrame:
    meta = pd.DataFrame(
        [
            {
                "recording_id": r.recording_id,
                "channel_index": i,
                "cohort": r.cohort,
                "patient": r.patient,
                "y_true": int(r.labels[i]),
            }
            for r in recordings
            for i in range(r.n_channels)
        ]
    )
    rows = meta.merge(features, on=["recording_id", "channel_index"], how="left", validate="1:1")
    cols = _feature_cols(features)
    if not np.isfinite(rows[cols].to_numpy(float)).all():
        bad = rows.loc[
            ~np.isfinite(rows[cols].to_numpy(float)).all(axis=1), "recording_id"
        ].unique()
        raise SozkitError(
            f"recordings {list(bad)[:5]} have no or non-finite SVM features; delete their cache "
            "files under STORE/features and re-run."
        )
    return rows


def train_svm_fold(
    features: pd.DataFrame,
    recordings: Sequence[RecordingInfo],
    fold: Fold,
    *,
    seed: int = 0,
    hparams: Mapping[str, Any] | None = None,
) -> SVMFoldResult:
    """Fit one SVM on the fold's training patients and score its validation and test patients.

    Parameters
    ----------
    features : DataFrame
        From :func:`compute_features`.
    recordings : sequence of RecordingInfo
        Every labelled recording (labels, patients, cohorts).
    fold : Fold
    seed : int
    hparams : mapping, optional
        Keyword arguments of :class:`models.svm.SOZSVM` (``C``, ``gamma``, ``normalise``...),
        and ``features``: the feature set (:data:`models.features.FEATURE_SETS`, default
        :data:`DEFAULT_FEATURE_SET`), recorded in the model's ``feature_names``; ``augment``:
        ``"tilt"`` adds ``augment_copies`` (default :data:`trainer.svm_augment.COPIES`) copies
        of every training recording with a random spectral tilt per contact of standard
        deviation ``tilt_sd`` (default :data:`trainer.svm_augment.TILT_SD`), seeded by
        ``seed`` (:func:`trainer.svm_augment.tilt_augment`; training only, so serving is
        unchanged), and ``C`` divided by ``augment_copies + 1`` so that a contact and its copies
        weigh in the SVM's loss as the contact alone did (untilted copies would then fit the
        very same SVM); ``None`` (the default) none.

    Returns
    -------
    SVMFoldResult
        Prediction tables with columns ``cohort, patient, recording_id, channel, y_true, score``.
    """
    kw = {"seed": seed, **dict(hparams or {})}
    feature_set = kw.pop("features", DEFAULT_FEATURE_SET)
    augment = kw.pop("augment", None)
    copies, tilt_sd = kw.pop("augment_copies", COPIES), kw.pop("tilt_sd", TILT_SD)
    if augment is not None and augment not in AUGMENTS:
        raise SozkitError(f"svm hparams: augment={augment!r} must be one of {AUGMENTS} or None.")
    by_role = {
        role: _rows(features, [r for r in recordings if r.patient in set(getattr(fold, role))])
        for role in ("train", "val", "test")
    }
    train = by_role["train"]
    if train["y_true"].nunique() < 2:
        raise SozkitError(
            f"fold {fold.index}: the training patients have only one class of channels; the SVM "
            "needs SOZ and non-SOZ contacts (use fewer folds or more patients)."
        )
    n_patients = train["patient"].nunique()
    grouped = n_patients >= 2
    if "n_calibration_folds" not in kw:  # calibration folds by patient: at most one per patient
        kw["n_calibration_folds"] = min(3, n_patients) if grouped else 3
    cols = select_features(_feature_cols(features), feature_set)
    X, recs = train[cols].to_numpy(), train["recording_id"].to_numpy()
    source = np.arange(len(train))
    if augment == "tilt":
        X, recs, source = tilt_augment(X, cols, recs, copies=copies, sd=tilt_sd, seed=seed)
        kw["C"] = kw.get("C", SOZSVM().C) / (copies + 1)
    svm = SOZSVM(**kw).fit(
        X,
        train["y_true"].to_numpy()[source],
        groups=train["patient"].to_numpy()[source] if grouped else None,
        recordings=recs,
        feature_names=cols,
    )
    preds = {}
    for role in ("val", "test"):
        rows = by_role[role]
        preds[role] = pd.DataFrame(
            {
                "cohort": rows["cohort"],
                "patient": rows["patient"],
                "recording_id": rows["recording_id"],
                "channel": rows["channel"],
                "y_true": rows["y_true"],
                "score": svm.predict_proba(
                    rows[cols].to_numpy(), recordings=rows["recording_id"].to_numpy()
                ),
            }
        )
    return SVMFoldResult(fold.index, svm, preds["val"], preds["test"])
