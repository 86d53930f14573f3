"""``soz score --model baseline``: the clinicians' standard scored like every model.

The classical baseline of training (:mod:`trainer.baseline_stage`) on new recordings, through the
one scoring engine (:func:`serving.engine.score_recording`) and into the same results schema
(:class:`serving.results.ScoreResult`): on a recording with annotated seizures the
**Epileptogenicity Index** (:func:`models.baseline.epileptogenicity_index`, the mean over the
seizures of the EI of ``pre_s`` before to ``post_s`` after each onset, read with the ranking of
the part before the onset when the run set ``preictal``: :meth:`trainer.baseline_stage.
BaselineConfig.seizure_score`, as training scores it), otherwise the
**interictal ranking** (:func:`models.baseline.interictal_ranking` on ``interictal_clips`` clips
from the middle of the recording). The clips are those training saw (the run's ingest
configuration), kept only where a window needs them. The threshold, call rule and calibration are
the run's ``baseline`` folds' (chosen on their validation patients), averaged over the folds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ingest.config import IngestConfig
from ingest.errors import SozkitError
from ingest.recording import Recording
from models.baseline import interictal_ranking
from serving.calls import CallRules
from serving.engine import ScorerConsumer, WholeRecordingScorer, make_result, scoring_warnings
from serving.preprocess import DEFAULT_CACHE_BYTES
from serving.results import ScoreResult
from trainer.baseline_stage import BaselineConfig
from trainer.rundir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["BaselineConsumer", "BaselineScorer"]


class BaselineScorer(WholeRecordingScorer):
    """The classical baseline with a run's thresholds and calibration.

    Parameters
    ----------
    cfg : BaselineConfig
        Windows and method (the run's ``model_hparams["baseline"]``).
    folds : sequence of int
    rules : CallRules
        The folds' mean threshold, calibration and call rule.
    ingest_config : IngestConfig
        The preprocessing of the training store.
    cache_bytes : int
    """

    name = kind = "baseline"
    seq_len = 1

    def __init__(
        self,
        cfg: BaselineConfig,
        folds: Sequence[int],
        rules: CallRules,
        *,
        ingest_config: IngestConfig,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not len(folds):
            raise SozkitError("baseline: need at least one fold.")
        self.cfg = cfg
        self.folds, self.rules = tuple(int(f) for f in folds), rules
        self.ingest_config = ingest_config
        self.cache_bytes = int(cache_bytes)

    @classmethod
    def from_run(
        cls, run_dir: str | os.PathLike, fold: int | None = None, **kwargs: Any
    ) -> BaselineScorer:
        """The run's ``baseline`` folds (every finished one, or ``fold``)."""
        run = RunDir.open(run_dir)
        done = [k for k in run.fold_indices("baseline") if run.fold_finished("baseline", k)]
        if fold is not None:
            if fold not in done:
                raise SozkitError(
                    f"{run.path} has no finished baseline fold {fold}; it has {done}."
                )
            done = [fold]
        if not done:
            raise SozkitError(
                f"{run.path} holds no baseline folds, so the baseline has no threshold chosen on "
                "validation patients; train it with `soz train --model baseline --out RUN_DIR` "
                "(or --model all)."
            )
        config = run.card().get("config", {})
        hparams = dict((config.get("model_hparams") or {}).get("baseline") or {})
        line_freq = kwargs.pop("line_freq", None)
        cfg = run.ingest_config().with_line_freq(line_freq)
        kwargs = {k: v for k, v in kwargs.items() if k == "cache_bytes"}
        rules = CallRules.from_run(run, "baseline", done)
        return cls(BaselineConfig(**hparams), done, rules, ingest_config=cfg, **kwargs)

    def consumer(self) -> BaselineConsumer:
        return BaselineConsumer(self)

    def describe_extra(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "config": {
                "pre_s": cfg.pre_s,
                "post_s": cfg.post_s,
                "interictal_clips": cfg.interictal_clips,
                "method": cfg.method,
                "preictal": cfg.preictal,
            }
        }


class BaselineConsumer(ScorerConsumer):
    """Engine consumer: keeps the clips of the EI windows (or the interictal middle), scores them."""

    scorer: BaselineScorer

    def windows(self, rec: Recording, n_clips: int) -> list[tuple[int, int, float]]:
        """``(first clip, end clip, onset in seconds from the first clip)`` of each window;
        the onset is ``None`` for the interictal window."""
        cfg, clip_s = self.scorer.cfg, self.ingest_config.clip_s
        if not rec.seizures:
            lo = max(
                0, min(n_clips // 2 - cfg.interictal_clips // 2, n_clips - cfg.interictal_clips)
            )
            return [(lo, min(n_clips, lo + cfg.interictal_clips), None)]
        out = []
        for sz in rec.seizures:
            lo = int(np.clip(math.floor((sz.onset_s - cfg.pre_s) / clip_s), 0, n_clips - 1))
            hi = int(np.clip(math.ceil((sz.onset_s + cfg.post_s) / clip_s), lo + 1, n_clips))
            out.append((lo, hi, sz.onset_s - lo * clip_s))
        return out

    def start(self, rec: Recording, contacts: tuple[str, ...], n_clips: int) -> None:
        self._windows = self.windows(rec, n_clips)
        self._keep = {i for lo, hi, _ in self._windows for i in range(lo, hi)}
        self._clips: dict[int, np.ndarray] = {}
        self._t = 0.0

    def add(self, clip_start: int, clips: np.ndarray) -> None:
        for j in range(len(clips)):
            if clip_start + j in self._keep:
                self._clips[clip_start + j] = clips[j]

    def finish(self, rec: Recording, contacts: tuple[str, ...], timings: dict) -> ScoreResult:
        t0 = time.perf_counter()
        sfreq, cfg = self.ingest_config.sfreq, self.scorer.cfg
        scores = []
        for lo, hi, onset in self._windows:
            signal = np.concatenate([self._clips[i] for i in range(lo, hi)], axis=-1)  # (C, T)
            if onset is None:
                scores.append(interictal_ranking(signal, sfreq, method=cfg.method))
            else:
                scores.append(cfg.seizure_score(signal, sfreq, onset))
        probs = np.clip(np.mean(scores, axis=0), 0.0, 1.0)
        s = self.scorer
        return make_result(
            rec, s.name, s.folds, s.rules, contacts, probs, n_sequences=0,
            timings={**timings, "model": time.perf_counter() - t0},
            warnings=scoring_warnings(rec), flat=self.flat,
        )  # fmt: skip
