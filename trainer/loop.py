"""The plain PyTorch training loop: one epoch, one pre-training epoch, prediction, validation.

No Ray here: these functions run in a notebook, in a test, or inside a Ray Train worker
(:mod:`trainer.ray_train` wraps them, adding DDP, checkpoints and ``ray.train.report``). A model
wrapped in ``DistributedDataParallel`` is trained as is; prediction always runs on the bare model,
so ranks may score different numbers of sequences without a collective call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ingest.errors import SozkitError
from models.dcgru import next_clip_loss
from trainer.checkpoint import cpu_state_dict, unwrap_model
from trainer.config import TrainConfig
from trainer.datasets import RecordingInfo
from trainer.losses import focal_class_balanced_bce, pos_weight_bce
from trainer.metrics import PRED_COLUMNS, aggregate_channel_scores, roc_curve_by_cohort

if TYPE_CHECKING:
    from trainer.fold_data import FoldData

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


def training_autocast(device: torch.device | str, bf16: bool = True):
    """The autocast context of a training step: bfloat16 on a CUDA device that supports it
    (when ``bf16``), else none: CPU training stays float32.

    bfloat16 keeps float32's exponent range, so no gradient scaler is needed.
    """
    device = torch.device(device)
    if bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    target: str,
    *,
    device: torch.device | str,
    grad_clip: float,
    bf16: bool = True,
) -> dict[str, float]:
    """The optimisation loop shared by :func:`train_epoch` and :func:`pretrain_epoch`: each step's
    loss is ``loss_fn(model(x, mask), batch[target], mask)``."""
    device = torch.device(device)
    model.train()
    total, n_steps, n_seqs, t_load = 0.0, 0, 0, 0.0
    t0 = time.perf_counter()
    t_wait = t0
    for batch in loader:
        t_load += time.perf_counter() - t_wait
        b = _to(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with training_autocast(device, bf16):
            loss = loss_fn(model(b["x"], b["mask"]), b[target], b["mask"]).float()
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


def train_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    device: torch.device | str = "cpu",
    grad_clip: float = 0.0,
    bf16: bool = True,
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
    bf16 : bool
        bfloat16 autocast of the forward pass and loss on CUDA (:func:`training_autocast`).

    Returns
    -------
    dict
        ``loss`` (mean over steps), ``n_sequences``, ``n_steps``, ``seconds``,
        ``sequences_per_s``, ``load_seconds`` (time spent waiting for batches).
    """
    return _run_epoch(
        model, loader, optimizer, loss_fn, "y", device=device, grad_clip=grad_clip, bf16=bf16
    )


def pretrain_epoch(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str = "cpu",
    grad_clip: float = 0.0,
    bf16: bool = True,
) -> dict[str, float]:
    """One epoch of self-supervised next-clip prediction (DCGRU pre-training).

    ``model(x, mask)`` returns the predicted features of the next clips, shape (B, C, S-1, F);
    the loss is :func:`next_clip_loss`. Labels are not used. Returns the same keys as
    :func:`train_epoch`.
    """
    return _run_epoch(
        model, loader, optimizer, next_clip_loss, "x", device=device, grad_clip=grad_clip, bf16=bf16
    )


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


# ----------------------------------------------------------------------------------------------
# A whole fold: SSL stage, supervised epochs, early stopping, best weights, exact resume

#: Pre-training epochs draw their sequences with epoch numbers from here (distinct from training).
SSL_EPOCH_OFFSET = 100_000
#: History keys that measure time, not training: they differ between otherwise identical runs.
TIMING_KEYS = ("seconds", "sequences_per_s", "load_seconds")


def all_gather(obj: Any) -> list[Any]:
    """Every DDP rank's ``obj`` on every rank (``[obj]`` without a process group)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def rng_state() -> dict[str, Any]:
    """This process's random states: torch (CPU and every CUDA device), NumPy's global, Python's.

    DataLoader worker processes are seeded from the torch state when each epoch's loader starts,
    and the samplers are pure functions of ``(seed, epoch)``, so these states and the epoch
    number fix every random draw of the next epoch.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


@dataclass
class FoldFit:
    """What :func:`fit_fold` returns.

    Attributes
    ----------
    state : dict
        The final training state: ``best_state`` (the best epoch's CPU weights), ``best_epoch``,
        ``best_auc``, ``history`` (one row per epoch), ``hparams``, ``done`` (True).
    val_predictions, test_predictions : DataFrame
        The best weights' predictions, one row per (recording, channel).
    """

    state: dict[str, Any]
    val_predictions: pd.DataFrame
    test_predictions: pd.DataFrame


def _initial_state(model_name: str, cfg: TrainConfig, hparams: Mapping[str, Any]) -> dict:
    return {
        "stage": "ssl" if model_name == "dcgru" and cfg.ssl_epochs > 0 else "train",
        "epoch": -1,
        "ssl_epoch": -1,
        "best_auc": -math.inf,
        "best_epoch": -1,
        "best_state": None,
        "bad_epochs": 0,
        "history": [],
        "done": False,
        "hparams": dict(hparams),
        "encoder": None,
    }


def fit_fold(
    model_name: str,
    data: FoldData,
    *,
    hparams: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    prepare: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    resume: Mapping[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> FoldFit:
    """Train one neural model on one fold, from scratch or from a saved state.

    DCGRU first runs its self-supervised stage (next-clip prediction, ``cfg.ssl_epochs``) and
    starts the classifier from its encoder. Supervised training stops after ``cfg.epochs`` or
    ``cfg.patience`` epochs without a better validation channel ROC-AUC; the best epoch's
    weights then score the validation and test recordings.

    Parameters
    ----------
    model_name : {"sozformer", "dcgru"}
    data : FoldData
        This rank's loaders for ``model_name`` (``data.model``), the training configuration
        (``data.cfg``) and the fold's seed (``data.seed``: weights' initialisation and
        sequence sampling).
    hparams : mapping, optional
        Model constructor arguments, ``n_feats`` included (default ``data.hparams(model_name)``).
    device : torch.device or str
    prepare : callable, optional
        Wraps a model once it is built (e.g. ``ray.train.torch.prepare_model``: device and DDP).
        Default: move it to ``device``.
    resume : mapping, optional
        A state handed to ``on_epoch`` earlier (saved and loaded back). Training continues after
        its epoch and ends with the very weights, metrics and predictions of an uninterrupted
        run: the state holds the weights, the optimizer, the early-stopping counters and every
        rank's random states.
    on_epoch : callable, optional
        ``on_epoch(row, state)`` after every epoch on every rank: ``row`` the epoch's history
        row (``stage`` "ssl" or "train", ``epoch``, ``train_loss``, ``val_auc``...), ``state``
        what ``resume`` takes (Ray Train checkpoints it).

    Returns
    -------
    FoldFit
    """
    from models.registry import build_model
    from trainer.losses import pos_weight_from_counts

    if model_name not in ("sozformer", "dcgru"):
        raise SozkitError(f"{model_name=} has no epoch loop; use 'sozformer' or 'dcgru'.")
    if data.model != model_name:
        raise SozkitError(
            f"{model_name=} but its fold data holds {data.model}'s inputs; build it with "
            f"FoldData.for_fold(..., {model_name!r})."
        )
    cfg, rank, world = data.cfg, data.rank, data.world_size
    prepare = prepare or (lambda m: m.to(device))
    hparams = dict(hparams) if hparams is not None else data.hparams(model_name)
    state = _initial_state(model_name, cfg, hparams)
    saved = dict(resume or {})
    state.update({k: v for k, v in saved.items() if k in state})
    seed_everything(data.seed)
    model = build_model(model_name, **state["hparams"])
    data = dataclasses.replace(data, seq_len=int(model.seq_len))

    def restore_rng() -> None:
        states = saved.get("rng") or []
        if len(states) == world:
            set_rng_state(states[rank])
        elif saved:
            logger.warning(
                "the saved state holds random states of %d rank(s), this run has %d: resuming, "
                "but not exactly as the interrupted run would have continued.",
                len(states),
                world,
            )

    def snapshot() -> dict[str, Any]:
        return {**state, "rng": all_gather(rng_state())}

    def epoch_done(row: dict[str, Any], extra: dict[str, Any]) -> None:
        state["history"].append(row)
        if on_epoch is not None:
            on_epoch(row, {**snapshot(), **extra})

    if state["done"]:  # finished already: score again with the best weights
        model.load_state_dict(state["best_state"])
        model = prepare(model)
        val, test = (data.score(model, role, device=device) for role in ("val", "test"))
        return FoldFit(state, val, test)

    # Stage 1 (DCGRU only): self-supervised next-clip prediction on the training recordings.
    if state["stage"] == "ssl":
        ssl = build_model("dcgru_ssl", **state["hparams"])
        resume_ssl = saved.get("ssl_model") is not None
        if resume_ssl:
            ssl.load_state_dict(saved["ssl_model"])
        ssl = prepare(ssl)
        # The optimizer is made (and its state loaded) once the weights are on the device.
        ssl_opt = torch.optim.AdamW(ssl.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if resume_ssl:
            ssl_opt.load_state_dict(saved["ssl_optimizer"])
            restore_rng()
        for epoch in range(state["ssl_epoch"] + 1, cfg.ssl_epochs):
            stats = pretrain_epoch(
                ssl,
                data.train_loader(SSL_EPOCH_OFFSET + epoch),
                ssl_opt,
                device=device,
                grad_clip=cfg.grad_clip,
                bf16=cfg.bf16,
            )
            loss = float(np.mean(all_gather(stats["loss"])))
            row = {"stage": "ssl", "epoch": epoch, "train_loss": loss, "seconds": stats["seconds"]}
            state["ssl_epoch"] = epoch
            last = epoch == cfg.ssl_epochs - 1
            if last:
                state["encoder"] = unwrap_model(ssl).encoder_state_dict()
                state["stage"] = "train"
            epoch_done(
                row,
                {
                    "ssl_model": None if last else cpu_state_dict(ssl),
                    "ssl_optimizer": None if last else ssl_opt.state_dict(),
                },
            )
        del ssl, ssl_opt
        saved.pop("rng", None)  # consumed: the supervised stage continues from here

    # Stage 2: supervised training with early stopping on the validation channel ROC-AUC.
    if model_name == "dcgru":
        labels = np.concatenate([r.labels for r in data.recordings["train"]])
        pos_weight = cfg.pos_weight or pos_weight_from_counts(
            int(labels.sum()), int((1 - labels).sum())
        )
        if state["encoder"] is not None and state["epoch"] < 0:
            model.load_encoder_state_dict(state["encoder"])
    else:
        pos_weight = 1.0
    loss_fn = soz_loss(
        model_name, focal_gamma=cfg.focal_gamma, focal_beta=cfg.focal_beta, pos_weight=pos_weight
    )
    resume_train = saved.get("model") is not None and state["epoch"] >= 0
    if resume_train:
        model.load_state_dict(saved["model"])
    model = prepare(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume_train:
        optimizer.load_state_dict(saved["optimizer"])  # moves its state to the weights' device
    if saved.get("rng"):
        restore_rng()
    epoch = state["epoch"]
    while state["bad_epochs"] < cfg.patience and epoch + 1 < cfg.epochs:
        epoch += 1
        stats = train_epoch(
            model,
            data.train_loader(epoch),
            optimizer,
            loss_fn,
            device=device,
            grad_clip=cfg.grad_clip,
            bf16=cfg.bf16,
        )
        metrics = validation_metrics(data.score(model, "val", device=device))
        auc = metrics["val_auc"]
        improved = not math.isnan(auc) and auc > state["best_auc"]
        if improved or state["best_state"] is None:
            state["best_auc"] = auc if not math.isnan(auc) else state["best_auc"]
            state["best_epoch"] = epoch
            state["best_state"] = cpu_state_dict(model)
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
        row = {
            "stage": "train",
            "epoch": epoch,
            "train_loss": float(np.mean(all_gather(stats["loss"]))),
            "seconds": stats["seconds"],
            "sequences_per_s": stats["sequences_per_s"] * world,
            "world_size": world,
            "load_seconds": stats["load_seconds"],
            **metrics,
            "best_auc": state["best_auc"],
        }
        state["epoch"] = epoch
        epoch_done(row, {"model": cpu_state_dict(model), "optimizer": optimizer.state_dict()})

    # Final: the best weights score validation and test.
    unwrap_model(model).load_state_dict(state["best_state"])
    val = data.score(model, "val", device=device)
    test = data.score(model, "test", device=device)
    state["done"] = True
    return FoldFit(state, val, test)
