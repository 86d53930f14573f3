"""Scoring with the run's SVM: per-channel heuristic features averaged over the recording.

:class:`SVMScorer` mirrors the SVM stage of training (:mod:`trainer.svm_stage`) through the same
code: the features of a channel are the mean over *every* clip of the recording of
:func:`models.features.clip_features` on the scaled clips, and the peaks of some (one
accumulator, :class:`models.features.RecordingFeatureMean`, with the bands the store's rate
holds, :func:`models.features.svm_bands`), and each fold's :class:`models.svm.SOZSVM` takes the
columns it was fitted on (its ``feature_names``: a run's feature set) and turns them into a
calibrated probability; the ensemble averages the folds' probabilities and thresholds. Its
:class:`SVMConsumer` takes the blocks of the engine's one stream
(:func:`serving.engine.score_recording`), so one pass over a recording feeds the SVM and the
neural models alike.

The classical *baseline* (Epileptogenicity Index on annotated seizures, interictal spike
ranking) has no fitted model; :mod:`serving.baseline_scorer` scores it with the run's baseline
thresholds (``soz score --model baseline``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ingest.config import IngestConfig
from ingest.errors import SozkitError
from ingest.recording import Recording
from models.features import RecordingFeatureMean, select_features
from models.svm import SOZSVM
from serving.calls import CallRules
from serving.engine import ScorerConsumer, WholeRecordingScorer, make_result, scoring_warnings
from serving.preprocess import DEFAULT_CACHE_BYTES
from serving.results import ScoreResult
from trainer.rundir import RunDir

logger = logging.getLogger(__name__)


class SVMScorer(WholeRecordingScorer):
    """The run's SVM (one fold or the fold ensemble).

    Parameters
    ----------
    svms : sequence of SOZSVM
        Fitted models, one per fold.
    folds : sequence of int
        Fold indices.
    rules : CallRules
        The folds' mean threshold, calibration and call rule (``from_run`` loads them).
    ingest_config : IngestConfig
        Preprocessing of the training store.
    cache_bytes : int
        Memory budget between the two preprocessing passes.
    """

    name = kind = "svm"
    seq_len = 1  # any recording with one clip can be scored

    def __init__(
        self,
        svms: Sequence[SOZSVM],
        folds: Sequence[int],
        rules: CallRules,
        *,
        ingest_config: IngestConfig,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not svms or len(svms) != len(folds):
            raise SozkitError(
                f"svm: need as many folds ({len(folds)}) as models ({len(svms)}), at least one."
            )
        computed = RecordingFeatureMean(ingest_config.sfreq).names
        self._columns = []
        for svm in svms:
            names = svm.feature_names or select_features(computed, "v1")  # unnamed: the v1 set
            missing = [n for n in names if n not in computed]
            if missing or (svm.n_features_in_ is not None and len(names) != svm.n_features_in_):
                raise SozkitError(
                    f"svm: the saved model was fitted on features ({list(names)}) this sozkit "
                    f"does not compute at the store's {ingest_config.sfreq:g} Hz (missing "
                    f"{missing}; it computes {list(computed)}); retrain."
                )
            self._columns.append(np.array([computed.index(n) for n in names], dtype=np.int64))
        used = {i for cols in self._columns for i in cols}
        self.feature_names = tuple(n for i, n in enumerate(computed) if i in used)
        self.svms = list(svms)
        self.folds, self.rules = tuple(int(f) for f in folds), rules
        self.ingest_config = ingest_config
        self.cache_bytes = int(cache_bytes)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        fold: int | None = None,
        *,
        allow_incomplete: bool = False,
        line_freq: float | None = None,
        **kwargs: Any,
    ) -> SVMScorer:
        """Load ``RUN_DIR/svm/fold_<k>/svm.pkl``, its threshold and calibration (every fold if None).

        ``line_freq`` fills in an ingest configuration that has none; ``allow_incomplete`` as
        in :meth:`serving.scoring.Scorer.from_run`.
        """
        run = RunDir.open(run_dir)
        paths = run.serving_folds("svm", fold, allow_incomplete=allow_incomplete)
        svms = [SOZSVM.load(path) for path in paths.values()]
        rules = kwargs.pop("rules", None) or CallRules.from_run(run, "svm", paths)
        cfg = kwargs.pop("ingest_config", None) or run.ingest_config()
        cfg = cfg.with_line_freq(line_freq)
        return cls(svms, list(paths), rules, ingest_config=cfg, **kwargs)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean calibrated probability over the folds, X (n_chans, n_feats) -> (n_chans,).

        ``X``: the columns of :class:`models.features.RecordingFeatureMean`; each fold's SVM
        takes those it was fitted on (its ``feature_names``).
        """
        return np.mean(
            [
                svm.predict_proba(X[:, cols])
                for svm, cols in zip(self.svms, self._columns, strict=True)
            ],
            axis=0,
        )

    def consumer(self) -> SVMConsumer:
        """A fresh engine consumer scoring one recording with this SVM."""
        return SVMConsumer(self)

    def describe_extra(self) -> dict[str, Any]:
        return {"features": list(self.feature_names)}


class SVMConsumer(ScorerConsumer):
    """Engine consumer: the recording's mean clip features, scored by the SVM at the end."""

    scorer: SVMScorer

    def start(self, rec: Recording, contacts: tuple[str, ...], n_clips: int) -> None:
        self._mean = RecordingFeatureMean(self.ingest_config.sfreq)
        self._t = 0.0

    def add(self, clip_start: int, clips: np.ndarray) -> None:
        t0 = time.perf_counter()
        self._mean.add(clips)
        self._t += time.perf_counter() - t0

    def finish(self, rec: Recording, contacts: tuple[str, ...], timings: dict) -> ScoreResult:
        if self._mean.n_clips == 0:
            raise SozkitError(f"{rec.recording_id}: no clip to compute SVM features from.")
        t0 = time.perf_counter()
        probs = self.scorer.predict(self._mean.mean())
        t_model = time.perf_counter() - t0
        s = self.scorer
        return make_result(
            rec, s.name, s.folds, s.rules, contacts, probs, n_sequences=0,
            timings={**timings, "features": self._t, "model": t_model},
            warnings=scoring_warnings(rec), flat=self.flat,
        )  # fmt: skip
