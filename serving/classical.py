"""Scoring with the run's SVM (per-channel heuristic features), and loading every model of a run.

:class:`SVMScorer` mirrors the SVM stage of training (:mod:`trainer.svm_stage`): the features of
a channel are the mean over *every* clip of the recording of
:func:`models.features.clip_features` on the scaled clips, and each fold's
:class:`models.svm.SOZSVM` turns them into a calibrated probability (the wavelet bands are
those the store's rate holds, :func:`trainer.svm_stage.svm_bands`, as in training); the
ensemble averages the folds' probabilities and thresholds (``fold_<k>/threshold.json``). The scaled clips come from the
same stream as the neural scorer's (:class:`serving.preprocess.RecordingStream`), so one pass over
a recording can feed several models (:func:`score_models`).

The classical *baseline* of training (Epileptogenicity Index on annotated seizures, interictal
spike ranking) is an evaluation reference computed inside cross-validation; it has no fitted
model to serve and is not scored here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import IngestConfig
from ingest.errors import RecordingError, SozkitError
from ingest.recording import Recording
from models.features import clip_features, feature_names
from models.svm import SOZSVM
from serving.config import ALL_MODELS
from serving.preprocess import (
    DEFAULT_CACHE_BYTES,
    RecordingStream,
    StoredRecordingStream,
    check_length,
)
from serving.results import ScoreResult
from serving.scoring import (
    Scorer,
    SequenceAssembler,
    make_result,
    pick_folds,
    run_models,
    scoring_warnings,
)
from trainer.svm_stage import svm_bands

logger = logging.getLogger(__name__)

#: Models of a run directory that have nothing to serve (evaluation-only references).
NOT_SERVED = ("baseline",)


def run_ingest_config(run_dir: str | os.PathLike) -> IngestConfig:
    """The ingest configuration of the store a run was trained on.

    Read from a neural checkpoint when there is one, else from ``card.json``
    (``store_ingest_config``).
    """
    run_dir = Path(run_dir)
    for ckpt in sorted(run_dir.glob("*/fold_*/checkpoint.pt")):
        import torch

        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        if payload.get("ingest_config"):
            return IngestConfig.from_dict(dict(payload["ingest_config"]))
    card_path = run_dir / "card.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        for holder in (card, card.get("extra") or {}):
            if isinstance(holder, dict) and holder.get("store_ingest_config"):
                return IngestConfig.from_dict(dict(holder["store_ingest_config"]))
    raise SozkitError(
        f"{run_dir}: no checkpoint or card.json records the store's ingest configuration, so "
        "the training preprocessing cannot be reproduced; retrain with a current sozkit."
    )


class SVMScorer:
    """The run's SVM (one fold or the fold ensemble).

    Parameters
    ----------
    svms : sequence of SOZSVM
        Fitted models, one per fold.
    thresholds : sequence of float
        Each fold's threshold.
    folds : sequence of int
        Fold indices.
    ingest_config : IngestConfig
        Preprocessing of the training store.
    cache_bytes : int
        Memory budget between the two preprocessing passes.
    """

    name = "svm"

    def __init__(
        self,
        svms: Sequence[SOZSVM],
        thresholds: Sequence[float],
        folds: Sequence[int],
        *,
        ingest_config: IngestConfig,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not svms or not len(svms) == len(thresholds) == len(folds):
            raise SozkitError(
                f"svm: need as many thresholds ({len(thresholds)}) and folds ({len(folds)}) as "
                f"models ({len(svms)}), at least one."
            )
        self.bands = svm_bands(ingest_config.sfreq)
        self.feature_names = feature_names(self.bands)
        for svm in svms:
            if svm.feature_names is not None and tuple(svm.feature_names) != self.feature_names:
                raise SozkitError(
                    "svm: the saved model was fitted on other features "
                    f"({svm.feature_names}) than this sozkit computes at the store's "
                    f"{ingest_config.sfreq:g} Hz ({self.feature_names}); retrain."
                )
        self.svms = list(svms)
        self.folds = tuple(int(f) for f in folds)
        self.threshold = float(np.mean(thresholds))
        self.ingest_config = ingest_config
        self.cache_bytes = int(cache_bytes)
        self.seq_len = 1  # any recording with one clip can be scored

    @classmethod
    def from_run(
        cls, run_dir: str | os.PathLike, fold: int | None = None, **kwargs: Any
    ) -> SVMScorer:
        """Load ``RUN_DIR/svm/fold_<k>/svm.pkl`` and ``threshold.json`` (every fold if None)."""
        run_dir = Path(run_dir)
        paths = pick_folds(run_dir, "svm", "svm.pkl", fold)
        svms, thresholds = [], []
        for k, path in paths.items():
            thr_path = path.parent / "threshold.json"
            if not thr_path.is_file():
                raise SozkitError(
                    f"{thr_path} is missing: fold {k} of the SVM has no threshold; the fold did "
                    "not finish. Re-run `soz train --resume`."
                )
            svms.append(SOZSVM.load(path))
            thresholds.append(float(json.loads(thr_path.read_text())["threshold"]))
        kwargs.setdefault("ingest_config", run_ingest_config(run_dir))
        return cls(svms, thresholds, list(paths), **kwargs)

    def stream(self, rec: Recording) -> RecordingStream:
        """The preprocessing stream of ``rec``."""
        return RecordingStream(rec, self.ingest_config, cache_bytes=self.cache_bytes)

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Per-clip SVM features of scaled clips (n, C, T) -> (n, C, F)."""
        return clip_features(clips, self.ingest_config.sfreq, bands=self.bands)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean calibrated probability over the folds, X (n_chans, n_feats) -> (n_chans,)."""
        return np.mean([svm.predict_proba(X) for svm in self.svms], axis=0)

    def score(self, rec: Recording) -> ScoreResult:
        """Score one recording."""
        return score_models(rec, [self])[0]

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows about this scorer."""
        return {
            "model": self.name,
            "kind": "svm",
            "folds": list(self.folds),
            "threshold": self.threshold,
            "features": list(self.feature_names),
            "ingest_config": self.ingest_config.to_dict(),
        }


def load_scorers(
    run_dir: str | os.PathLike, model: str = ALL_MODELS, fold: int | None = None, **kwargs: Any
) -> list[Scorer | SVMScorer]:
    """The scorers of a run: one model by name, or every servable model (``"all"``).

    Parameters
    ----------
    run_dir : path-like
    model : str
        ``"sozformer"``, ``"dcgru"``, ``"svm"`` or ``"all"``.
    fold : int | None
        One fold, or ``None`` for each model's fold ensemble.
    **kwargs
        ``batch_size``, ``device``, ``line_freq`` (neural) and ``cache_bytes`` (all).
    """
    available = run_models(run_dir)
    if model == ALL_MODELS:
        names = [m for m in available if m not in NOT_SERVED]
        if not names:
            raise SozkitError(
                f"{run_dir} holds no servable model (found {sorted(available) or 'none'}); "
                "train sozformer, dcgru or svm first."
            )
    else:
        if model in NOT_SERVED:
            raise SozkitError(
                f"{model!r} is an evaluation reference without a fitted model; it cannot score "
                "new recordings. Pick sozformer, dcgru or svm."
            )
        names = [model]
    svm_kw = {k: v for k, v in kwargs.items() if k in ("cache_bytes",)}
    line_freq = kwargs.get("line_freq")
    out: list[Scorer | SVMScorer] = []
    for name in names:
        if name == "svm":
            scorer = SVMScorer.from_run(run_dir, fold=fold, **svm_kw)
            if line_freq is not None and scorer.ingest_config.line_freq is None:
                scorer.ingest_config = IngestConfig.from_dict(
                    {**scorer.ingest_config.to_dict(), "line_freq": float(line_freq)}
                )
            out.append(scorer)
        else:
            out.append(Scorer.from_run(run_dir, model=name, fold=fold, **kwargs))
    return out


def score_models(
    rec: Recording,
    scorers: Sequence[Scorer | SVMScorer],
    *,
    stream: StoredRecordingStream | None = None,
) -> list[ScoreResult]:
    """Score ``rec`` with several models in one pass over its clips where they can share it.

    Scorers trained on the same store (equal ingest configuration) share one
    :class:`RecordingStream`; each consumes the scaled clips block by block (neural models as
    sequences batched ``batch_size`` at a time, the SVM as running feature sums).

    Parameters
    ----------
    rec : Recording
    scorers : sequence of Scorer or SVMScorer
    stream : StoredRecordingStream, optional
        Read the clips from a clip store instead of the signal file; every scorer's ingest
        configuration must then equal the store's.

    Returns
    -------
    list of ScoreResult
        One per scorer, in order.

    Raises
    ------
    RecordingError
        The recording cannot be read or is too short for one of the models (nothing is scored
        then).
    """
    results: dict[int, ScoreResult] = {}
    groups: dict[IngestConfig, list[int]] = {}
    for i, s in enumerate(scorers):
        groups.setdefault(s.ingest_config, []).append(i)
    if stream is not None:
        cfg = stream.store.ingest_config
        if set(groups) != {cfg}:
            raise RecordingError(
                f"{stream.store.url}::{rec.recording_id}",
                "the store was preprocessed with other ingest settings than the model(s) were "
                "trained on, so its clips are not what the model expects.",
                "score the source recordings instead of the store, or a store ingested with the "
                "training store's settings.",
            )
    for cfg, members in groups.items():
        t0 = time.perf_counter()
        src = stream if stream is not None else RecordingStream(
            rec, cfg, cache_bytes=max(scorers[i].cache_bytes for i in members)
        )  # fmt: skip
        for i in members:
            check_length(rec, src.n_clips, scorers[i].seq_len, cfg.clip_s)
        states = [_State(scorers[i], src.n_clips, len(src.contacts)) for i in members]
        t_models = [0.0] * len(members)
        for clip_start, clips in src:
            for j, st in enumerate(states):
                t1 = time.perf_counter()
                st.add(clip_start, clips)
                t_models[j] += time.perf_counter() - t1
        finished = []
        for j, st in enumerate(states):
            t1 = time.perf_counter()
            finished.append(st.finish(rec.recording_id))
            t_models[j] += time.perf_counter() - t1
        prep = src.timings.as_dict()
        total = time.perf_counter() - t0
        for j, (i, (probs, n_seq)) in enumerate(zip(members, finished, strict=True)):
            s = scorers[i]
            results[i] = make_result(
                rec, s.name, s.folds, s.threshold, src.contacts, probs, n_sequences=n_seq,
                timings={**prep, "features_model": t_models[j], "total": total},
                warnings=scoring_warnings(rec),
            )  # fmt: skip
    return [results[i] for i in range(len(scorers))]


class _State:
    """Running state of one scorer over a recording's blocks."""

    def __init__(self, scorer: Scorer | SVMScorer, n_clips: int, n_chans: int) -> None:
        self.scorer = scorer
        self.sum = np.zeros(n_chans, dtype=np.float64)
        self.n = 0
        if isinstance(scorer, Scorer):
            self.assembler = SequenceAssembler(scorer.sequence_starts(n_clips), scorer.seq_len)
            self.pending: list[np.ndarray] = []
        else:
            self.feat_sum: np.ndarray | None = None

    def _flush(self) -> None:
        if self.pending:
            self.sum += self.scorer.predict(self.pending).sum(axis=0)
            self.n += len(self.pending)
            self.pending = []

    def add(self, clip_start: int, clips: np.ndarray) -> None:
        feats = self.scorer.features(clips)
        if isinstance(self.scorer, Scorer):
            for seq in self.assembler.add(clip_start, feats):
                self.pending.append(seq)
                if len(self.pending) >= self.scorer.batch_size:
                    self._flush()
        else:
            part = feats.astype(np.float64).sum(axis=0)  # (C, F)
            self.feat_sum = part if self.feat_sum is None else self.feat_sum + part
            self.n += len(feats)

    def finish(self, recording_id: str) -> tuple[np.ndarray, int]:
        if isinstance(self.scorer, Scorer):
            self._flush()
            self.assembler.check_done(recording_id)
            return self.sum / max(self.n, 1), self.n
        if self.feat_sum is None:
            raise SozkitError(f"{recording_id}: no clip to compute SVM features from.")
        return self.scorer.predict(self.feat_sum / self.n), 0
