"""One DDP rank's view of a fold's data: its share of each epoch's training sequences, and scoring.

:func:`trainer.loop.fit_fold` trains on a :class:`FoldData`; the Ray Train worker builds one per
rank (its rank and world size), a notebook or a test builds one with the defaults (one process).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ingest.errors import SozkitError
from trainer.config import TrainConfig
from trainer.datasets import (
    RecordingInfo,
    SequenceDataset,
    evaluation_sequences,
    make_loader,
    recording_table,
    sample_training_sequences,
    shard,
)
from trainer.loop import ScoreSums, all_gather, predict
from trainer.splits import Fold


@dataclass(frozen=True)
class FoldData:
    """One rank's view of a fold's data: its share of each epoch's sequences, and scoring.

    Parameters
    ----------
    store_url : str
        The clip store.
    recordings : mapping of str to list of RecordingInfo
        ``"train"``, ``"val"`` and ``"test"`` recordings of the fold.
    cfg : TrainConfig
        Sampling (``seqs_per_recording``, ``ictal_fraction``...), batch size, loader workers,
        evaluation stride and each model's inputs.
    model : {"sozformer", "dcgru"}
        The model this data feeds: its clip features (:meth:`TrainConfig.feature_config`) and
        training augmentations (:meth:`TrainConfig.augment_for`).
    seed : int
        Seed of the training-sequence sampler (the fold's seed).
    rank, world_size : int
        This DDP rank and the number of ranks (0 and 1 without DDP).
    feature_cache : str, optional
        URL of the precomputed clip features (:mod:`trainer.feature_cache`).
    n_feats : int, optional
        Features per clip (the models' ``n_feats``), from the store and ``cfg``.
    label : str
        How errors name the fold.
    seq_len : int
        Clips per sequence (:func:`trainer.loop.fit_fold` sets it from the model).
    """

    store_url: str
    recordings: Mapping[str, Sequence[RecordingInfo]]
    cfg: TrainConfig
    model: str
    seed: int
    rank: int = 0
    world_size: int = 1
    feature_cache: str | None = None
    n_feats: int | None = None
    label: str = "the fold"
    seq_len: int = 0

    def __post_init__(self) -> None:
        for role in ("train", "val", "test"):
            if not self.recordings.get(role):
                raise SozkitError(
                    f"{self.label} has no labelled {role} recordings in {self.store_url}; "
                    "use fewer folds or ingest more labelled patients."
                )

    @classmethod
    def for_fold(
        cls,
        store_url: str,
        fold: Fold,
        cfg: TrainConfig,
        model: str,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> FoldData:
        """``model``'s view of the fold's recordings in the store; seed
        ``cfg.seed + 1000 * fold.index``."""
        from ingest.store import ClipStore
        from models.site_norm import n_features
        from trainer.feature_cache import cache_url

        store = ClipStore.open(store_url)
        recs = recording_table(store)
        by_role = {
            role: [r for r in recs if r.patient in set(getattr(fold, role))]
            for role in ("train", "val", "test")
        }
        feature_config = cfg.feature_config(model)
        return cls(
            store_url=str(store_url),
            recordings=by_role,
            cfg=cfg,
            model=model,
            seed=cfg.seed + 1000 * fold.index,
            rank=rank,
            world_size=world_size,
            feature_cache=cache_url(store_url, feature_config) if cfg.feature_cache else None,
            n_feats=n_features(store.clip_samples, store.sfreq, feature_config),
            label=f"fold {fold.index}",
        )

    def hparams(self, model_name: str) -> dict:
        """The model's constructor arguments: ``cfg``'s for it, with this store's ``n_feats``."""
        if self.n_feats is None:
            raise SozkitError(f"{self.label}: n_feats is unknown; build it with FoldData.for_fold.")
        return {**self.cfg.hparams_for(model_name), "n_feats": self.n_feats}

    def _dataset(self, role: str, items: np.ndarray, *, epoch: int = 0) -> SequenceDataset:
        augment = None
        if role == "train" and self.cfg.augment_for(self.model):
            augment = site_augment(self.store_url, self.cfg, self.model)
        return SequenceDataset(
            self.store_url,
            self.recordings[role],
            items,
            seq_len=self.seq_len,
            feature_config=self.cfg.feature_config(self.model),
            feature_cache=self.feature_cache,
            augment=augment,
            augment_seed=self.seed * 1009 + epoch,
        )

    def train_loader(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        """This rank's batches of epoch ``epoch``'s training sequences (a function of seed, epoch)."""
        cfg, rows = self.cfg, self.recordings["train"]
        items = sample_training_sequences(
            rows,
            seq_len=self.seq_len,
            seqs_per_recording=cfg.seqs_per_recording,
            ictal_fraction=cfg.ictal_fraction,
            balance_cohorts=cfg.balance_cohorts,
            seed=self.seed,
            epoch=epoch,
        )
        ds = self._dataset("train", shard(items, self.rank, self.world_size), epoch=epoch)
        return make_loader(ds, batch_size=cfg.batch_size, num_workers=cfg.loader_workers)

    def score(
        self, model: torch.nn.Module, role: str, *, device: torch.device | str = "cpu"
    ) -> pd.DataFrame:
        """Predictions of every ``role`` recording (each rank scores a share; gathered on all).

        Returns
        -------
        DataFrame
            One row per (recording, channel), see :meth:`ScoreSums.to_frame`.
        """
        rows = self.recordings[role]
        items = evaluation_sequences(
            rows,
            seq_len=self.seq_len,
            stride=self.cfg.eval_stride,
            max_per_recording=self.cfg.max_eval_seqs,
        )
        ds = self._dataset(role, shard(items, self.rank, self.world_size, pad=False))
        sums = predict(model, make_loader(ds, batch_size=self.cfg.batch_size), device=device)
        merged = ScoreSums()
        for part in all_gather(sums):
            merged.merge(part)
        return merged.to_frame(rows)


def site_augment(store_url: str, cfg: TrainConfig, model: str):
    """The :class:`trainer.site_augment.SiteAugment` of ``model``'s augmentations
    (:meth:`TrainConfig.augment_for`) for this store's clips."""
    from ingest.store import ClipStore
    from trainer.site_augment import SiteAugment, feature_frequencies

    store = ClipStore.open(store_url)
    freqs = feature_frequencies(store.clip_samples, store.sfreq, cfg.feature_config(model))
    return SiteAugment(cfg.augment_for(model), freqs)
