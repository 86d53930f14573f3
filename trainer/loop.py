"""The plain PyTorch training loop: one epoch, one pre-training epoch, prediction, validation.

No Ray here: these functions run in a notebook, in a test, or inside a Ray Train worker
(:mod:`trainer.ray_train` wraps them, adding DDP, checkpoints and ``ray.train.report``). A model
wrapped in ``DistributedDataParallel`` is trained as is; prediction always runs on the bare model,
so ranks may score different numbers of sequences without a collective call.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from models.dcgru import next_clip_loss
from trainer.checkpoint import unwrap_model
from trainer.datasets import RecordingInfo
from trainer.losses import focal_class_balanced_bce, pos_weight_bce
from trainer.metrics import PRED_COLUMNS, aggregate_channel_scores, roc_curve_by_cohort

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) for model initialisation and dropout."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def soz_loss(
    model_name: str,
    *,
    focal_gamma: float = 0.0,
    focal_beta: float = 0.999,
    pos_weight: float = 1.0,
) -> LossFn:
    """The supervised loss of a model: ``loss(logits, targets, mask) -> Tensor ()``.

    SOZFormer: focal class-balanced BCE (SPEC); DCGRU: BCEWithLogits with ``pos_weight``.
    """
    if model_name == "sozformer":
        fn = partial(focal_class_balanced_bce, gamma=focal_gamma, beta=focal_beta)
    elif model_name == "dcgru":
        fn = partial(pos_weight_bce, pos_weight=pos_weight)
    else:
        raise ValueError(f"no supervised loss for {model_name=}; expected 'sozformer' or 'dcgru'.")
    return lambda logits, targets, mask: fn(logits, targets, mask=mask)


def _to(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    device: torch.device | str = "cpu",
    grad_clip: float = 0.0,
) -> dict[str, float]:
    """One pass of supervised training over ``loader``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier: ``model(x (B, C, S, F), mask (B, C)) -> logits (B, C)`` (DDP-wrapped or not).
    loader : iterable of dict
        Batches from :func:`trainer.datasets.collate_sequences`.
    optimizer : torch.optim.Optimizer
    loss_fn : callable
        ``loss_fn(logits, y, mask) -> Tensor ()`` (see :func:`soz_loss`).
    device : torch.device or str
    grad_clip : float
        Clip the gradient norm to this value (0: no clipping).

    Returns
    -------
    dict
        ``loss`` (mean over steps), ``n_sequences``, ``n_steps``, ``seconds``,
        ``sequences_per_s``, ``load_seconds`` (time spent waiting for batches).
    """

    def batch_loss(b: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(model(b["x"], b["mask"]), b["y"], b["mask"])

    return _run_epoch(model, loader, optimizer, batch_loss, device=device, grad_clip=grad_clip)


def pretrain_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str = "cpu",
    grad_clip: float = 0.0,
) -> dict[str, float]:
    """One epoch of self-supervised next-clip prediction (DCGRU pre-training).

    ``model(x, mask)`` returns the predicted features of the next clips, shape (B, C, S-1, F);
    the loss is :func:`next_clip_loss`. Labels are not used. Returns the same keys as
    :func:`train_epoch`.
    """

    def batch_loss(b: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return next_clip_loss(model(b["x"], b["mask"]), b["x"], b["mask"])

    return _run_epoch(model, loader, optimizer, batch_loss, device=device, grad_clip=grad_clip)


def _run_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    batch_loss: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    *,
    device: torch.device | str,
    grad_clip: float,
) -> dict[str, float]:
    """The optimisation loop shared by :func:`train_epoch` and :func:`pretrain_epoch`."""
    device = torch.device(device)
    model.train()
    total, n_steps, n_seqs, t_load = 0.0, 0, 0, 0.0
    t0 = time.perf_counter()
    t_wait = t0
    for batch in loader:
        t_load += time.perf_counter() - t_wait
        b = _to(batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(b)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {n_steps}; lower the learning rate "
                "or check the input features for NaN/inf."
            )
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += float(loss.detach())
        n_steps += 1
        n_seqs += int(b["x"].shape[0])
        t_wait = time.perf_counter()
    seconds = time.perf_counter() - t0
    return {
        "loss": total / max(n_steps, 1),
        "n_sequences": n_seqs,
        "n_steps": n_steps,
        "seconds": seconds,
        "sequences_per_s": n_seqs / seconds if seconds > 0 else 0.0,
        "load_seconds": t_load,
    }


@dataclass
class ScoreSums:
    """Running per-channel sums of sequence probabilities, per recording (mergeable across ranks).

    ``sums[rec]`` : ndarray, shape (n_chans,) and ``counts[rec]`` : int, the number of sequences.
    """

    sums: dict[int, np.ndarray] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)

    def add(self, rec: int, probs: np.ndarray) -> None:
        """Add one sequence's channel probabilities, shape (n_chans,)."""
        if rec in self.sums:
            self.sums[rec] += probs
            self.counts[rec] += 1
        else:
            self.sums[rec] = probs.astype(np.float64)
            self.counts[rec] = 1

    def merge(self, other: ScoreSums) -> ScoreSums:
        """Add another rank's sums into this one (in place) and return self."""
        for rec, s in other.sums.items():
            if rec in self.sums:
                self.sums[rec] += s
                self.counts[rec] += other.counts[rec]
            else:
                self.sums[rec] = s.copy()
                self.counts[rec] = other.counts[rec]
        return self

    def to_frame(self, recordings: Sequence[RecordingInfo]) -> pd.DataFrame:
        """One row per (recording, channel): :data:`trainer.metrics.PRED_COLUMNS` + ``n_sequences``.

        ``score`` is the mean probability over the recording's sequences.
        """
        frames = []
        for rec in sorted(self.sums):
            info = recordings[rec]
            n = len(info.channels)
            frames.append(
                pd.DataFrame(
                    {
                        "cohort": info.cohort,
                        "patient": info.patient,
                        "recording_id": info.recording_id,
                        "channel": list(info.channels),
                        "y_true": info.labels.astype(np.int64),
                        "score": self.sums[rec][:n] / self.counts[rec],
                        "n_sequences": self.counts[rec],
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=[*_PRED_COLUMNS, "n_sequences"])
        return pd.concat(frames, ignore_index=True)


_PRED_COLUMNS = PRED_COLUMNS  # one definition, trainer.metrics


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    *,
    device: torch.device | str = "cpu",
) -> ScoreSums:
    """Channel probabilities (sigmoid of the logits) summed per recording over ``loader``.

    Runs on the bare model (a DDP wrapper is unwrapped), in eval mode.
    """
    device = torch.device(device)
    bare = unwrap_model(model)
    was_training = bare.training
    bare.eval()
    out = ScoreSums()
    try:
        for batch in loader:
            b = _to(batch, device)
            probs = torch.sigmoid(bare(b["x"], b["mask"])).float().cpu().numpy()  # (B, C)
            n_real = batch["mask"].sum(dim=1).tolist()  # channels are left-aligned, padding after
            for i, rec in enumerate(batch["rec"].tolist()):
                out.add(rec, probs[i, : n_real[i]])
    finally:
        bare.train(was_training)
    return out


def validation_metrics(preds: pd.DataFrame) -> dict[str, Any]:
    """The early-stopping metrics of a prediction table (per recording x channel).

    Returns
    -------
    dict
        ``val_auc`` (channel ROC-AUC after aggregation per patient and channel; NaN when the
        validation channels have one class only), ``val_pr_auc``, ``val_prevalence``,
        ``val_auc_by_cohort`` ({cohort: AUC}) and ``val_roc_by_cohort`` ({cohort: {"fpr",
        "tpr", "auc"}}, for the ROC-through-training plot).
    """
    table = aggregate_channel_scores(preds[list(_PRED_COLUMNS)])
    y, s = table["y_true"].to_numpy(), table["score"].to_numpy()
    curves = roc_curve_by_cohort(table)
    two = len(np.unique(y)) == 2
    return {
        "val_auc": float(roc_auc_score(y, s)) if two else math.nan,
        "val_pr_auc": float(average_precision_score(y, s)) if two else math.nan,
        "val_prevalence": float(y.mean()) if y.size else math.nan,
        "val_auc_by_cohort": {c: float(auc) for c, (_, _, auc) in curves.items()},
        "val_roc_by_cohort": {
            c: {"fpr": np.asarray(f).tolist(), "tpr": np.asarray(t).tolist(), "auc": float(auc)}
            for c, (f, t, auc) in curves.items()
        },
    }
