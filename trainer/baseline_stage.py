"""The classical baseline on the same folds: Epileptogenicity Index (ictal) + interictal ranking.

No learning: every recording gets a score per channel, computed by Ray CPU tasks in parallel from
the store's clips:

- an **ictal** recording: for each seizure, the clips from ``pre_s`` before to ``post_s`` after the
  onset (the onset is ``start_s - seconds_from_onset`` of the seizure's clips) are joined into one
  signal and :func:`models.baseline.epileptogenicity_index` scores it, averaged with the
  interictal ranking of that signal's pre-ictal part when ``preictal`` is set
  (:func:`models.baseline.ictal_score`); the recording's score is the mean over its seizures;
- an **interictal** recording: :func:`models.baseline.interictal_ranking` (spike rate by default)
  on ``interictal_clips`` consecutive clips from the middle of the recording.

Scores are then averaged per patient and channel like every model's
(:func:`trainer.metrics.aggregate_channel_scores`), the threshold is Youden's on the fold's
validation patients and the metrics are computed on its test patients
(:func:`trainer.metrics.evaluate_fold`), so the baseline sits in the same table as the models.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import ray

from ingest.errors import ConfigError, SozkitError
from models.baseline import ictal_score, interictal_ranking
from trainer.datasets import RecordingInfo
from trainer.splits import Fold

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    """Windows of the classical baseline (``TrainConfig.model_hparams["baseline"]``).

    Parameters
    ----------
    pre_s, post_s : float
        Seconds of signal before and after each seizure onset given to the EI.
    interictal_clips : int
        Consecutive clips (from the middle of an interictal recording) given to the ranking.
    method : {"spike_rate", "hf_power"}
        Interictal ranking method.
    ei_params : mapping
        Extra keyword arguments of :func:`models.baseline.epileptogenicity_index`.
    preictal : bool
        Around each seizure, average the EI with the ``method`` ranking of the signal before
        the onset (:func:`models.baseline.ictal_score`), as clinicians read both.
    """

    pre_s: float = 60.0
    post_s: float = 60.0
    interictal_clips: int = 60
    method: str = "spike_rate"
    ei_params: Mapping[str, Any] | None = None
    preictal: bool = False

    def __post_init__(self) -> None:
        if self.pre_s <= 0 or self.post_s <= 0 or self.interictal_clips < 1:
            raise ConfigError(
                f"{self.pre_s=} and {self.post_s=} must be > 0 and {self.interictal_clips=} >= 1."
            )
        if self.method not in ("spike_rate", "hf_power"):
            raise ConfigError(f"{self.method=} must be 'spike_rate' or 'hf_power'.")

    def seizure_score(self, signal: np.ndarray, sfreq: float, onset_s: float) -> np.ndarray:
        """Score of every channel of ``signal`` (the window around one seizure; ``onset_s``
        from its start, clamped into it), shape (n_chans,), in [0, 1]."""
        onset_s = min(max(onset_s, 0.0), signal.shape[1] / sfreq - 1.0 / sfreq)
        return ictal_score(
            signal, sfreq, onset_s, preictal=self.method if self.preictal else None,
            ei_params=self.ei_params,
        )  # fmt: skip


def recording_scores(store: Any, recording_id: str, cfg: BaselineConfig) -> np.ndarray:
    """Baseline score of every channel of one recording.

    Returns
    -------
    ndarray, shape (n_chans,)
        Mean over the seizures of :meth:`BaselineConfig.seizure_score` (ictal recording) or
        the interictal ranking, in [0, 1].
    """
    clips = store.clips([recording_id]).sort_values("clip_index")
    n_clips = len(clips)
    if n_clips == 0:
        raise SozkitError(f"{recording_id} has no clips in {store.url}; re-ingest it.")
    clip_s = store.clip_samples / store.sfreq
    seizures = clips.dropna(subset=["seizure"])
    if seizures.empty:
        mid = n_clips // 2
        lo = max(0, min(mid - cfg.interictal_clips // 2, n_clips - cfg.interictal_clips))
        hi = min(n_clips, lo + cfg.interictal_clips)
        x = store.read_clips(recording_id, lo, hi)  # (n, C, samples)
        signal = np.concatenate(list(x), axis=-1)  # (C, n * samples)
        return interictal_ranking(signal, store.sfreq, method=cfg.method)
    scores = []
    for _, g in seizures.groupby("seizure"):
        onset = float((g["start_s"] - g["seconds_from_onset"]).iloc[0])
        lo = int(np.clip(math.floor((onset - cfg.pre_s) / clip_s), 0, n_clips - 1))
        hi = int(np.clip(math.ceil((onset + cfg.post_s) / clip_s), lo + 1, n_clips))
        x = store.read_clips(recording_id, lo, hi)
        signal = np.concatenate(list(x), axis=-1)
        start_s = float(clips["start_s"].iloc[lo])
        scores.append(cfg.seizure_score(signal, store.sfreq, onset - start_s))
    return np.mean(scores, axis=0)


@ray.remote(num_cpus=1)
def _scores_task(store_url: str, recording_id: str, cfg: BaselineConfig) -> np.ndarray:
    from ingest.store import ClipStore

    try:
        return recording_scores(ClipStore.open(store_url), recording_id, cfg)
    except Exception as e:
        raise SozkitError(f"{recording_id}: baseline scoring failed: {e}") from e


def score_recordings(
    store_url: str,
    recordings: Sequence[RecordingInfo],
    cfg: BaselineConfig = BaselineConfig(),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Baseline scores of every recording, by Ray CPU tasks in parallel.

    Returns
    -------
    DataFrame
        One row per (recording, channel): ``cohort, patient, recording_id, channel, y_true,
        score``.
    """
    refs = {_scores_task.remote(str(store_url), r.recording_id, cfg): r for r in recordings}
    results: dict[str, np.ndarray] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        rec = refs[ready[0]]
        results[rec.recording_id] = ray.get(ready[0])
        if progress is not None:
            progress(len(results), len(refs))
    frames = []
    for r in recordings:
        s = results[r.recording_id]
        if s.shape != (r.n_channels,):
            raise SozkitError(
                f"{r.recording_id}: baseline gave {s.shape[0]} scores for {r.n_channels} channels."
            )
        frames.append(
            pd.DataFrame(
                {
                    "cohort": r.cohort,
                    "patient": r.patient,
                    "recording_id": r.recording_id,
                    "channel": list(r.channels),
                    "y_true": r.labels.astype(np.int64),
                    "score": s.astype(float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fold_predictions(scores: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validation and test rows of the baseline scores for one fold."""
    val = scores[scores["patient"].isin(fold.val)].reset_index(drop=True)
    test = scores[scores["patient"].isin(fold.test)].reset_index(drop=True)
    return val, test
