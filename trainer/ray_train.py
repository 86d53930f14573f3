"""Ray Train for the neural models: DDP per fold, a checkpoint every epoch, early stopping, resume.

This is the only module of sozkit that imports ``ray.train``. It wraps the plain loop of
:mod:`trainer.loop` in a Ray Train V2 ``TorchTrainer``:

- **DDP** over ``TrainConfig.num_workers`` workers (``ray.train.torch.prepare_model``; CPU with the
  gloo backend, or one GPU per worker with NCCL). Each worker reads its own share of an epoch's
  sequences (:func:`trainer.datasets.shard`), and sets its torch threads to its reserved CPUs so
  that workers do not oversubscribe the cores.
- **A checkpoint every epoch** (``ray.train.report`` with a ``Checkpoint`` from rank 0, every
  rank reporting equally often): the model and optimizer state, the best weights so far, the
  early-stopping counters and the history.
- **Early stopping** on the validation channel ROC-AUC (``TrainConfig.patience`` epochs without
  improvement). Validation scores are gathered from every rank, so all ranks stop together.
- **Resume**: the trainer of a fold is named ``fold_<k>`` under
  ``RUN_DIR/<model>/ray``; re-creating it with the same ``storage_path`` and ``name`` (Train V2
  has no ``Trainer.restore``) hands the latest checkpoint to ``ray.train.get_checkpoint()``, and
  the worker continues from the epoch after it. A fold whose final checkpoint (``done``) exists is
  not trained again.
- **DCGRU** first runs its self-supervised stage (next-clip prediction on the training
  patients' sequences, ``TrainConfig.ssl_epochs``, checkpointed too), loads the encoder weights
  into the classifier, then trains with BCEWithLogits and ``pos_weight``.
- **Parallel folds**: :func:`train_folds` runs several ``TorchTrainer.fit()`` calls at once from a
  thread pool (each blocks on its own Train controller actor); Ray schedules their worker groups
  as resources free up, so with ``P = cluster CPUs // (num_workers * cpus_per_worker)`` (or the GPU
  equivalent) ``P`` folds train side by side.

At the end of a fold the workers score the validation and test recordings with the best weights
(sharded, gathered on rank 0) and report a final checkpoint holding those predictions, so the
driver never needs the data or a GPU.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ingest.errors import SozkitError
from trainer.checkpoint import cpu_state_dict, unwrap_model
from trainer.config import TrainConfig
from trainer.datasets import (
    SequenceDataset,
    evaluation_sequences,
    make_loader,
    recording_table,
    sample_training_sequences,
    shard,
)
from trainer.feature_cache import cache_url
from trainer.loop import (
    ScoreSums,
    predict,
    pretrain_epoch,
    seed_everything,
    soz_loss,
    train_epoch,
    validation_metrics,
)
from trainer.splits import Fold

logger = logging.getLogger(__name__)

_STATE = "state.pt"
_VAL = "val_predictions.parquet"
_TEST = "test_predictions.parquet"
#: Pre-training epochs draw their sequences with epoch numbers from here (distinct from training).
_SSL_EPOCH_OFFSET = 100_000


@dataclass
class FoldTrainResult:
    """What a trained fold hands back to :func:`trainer.run.run_training`.

    Attributes
    ----------
    model_name : str
    fold : int
    hparams : dict
        Constructor keyword arguments of the model (``n_feats`` included).
    state_dict : dict of str to Tensor
        The best epoch's weights (CPU).
    val_predictions, test_predictions : DataFrame
        One row per (recording, channel): ``cohort, patient, recording_id, channel, y_true,
        score, n_sequences``.
    history : list of dict
        Per-epoch metrics (``stage`` "ssl" or "train", ``epoch``, ``train_loss``, ``val_auc``...).
    best_epoch : int
    best_val_auc : float
    """

    model_name: str
    fold: int
    hparams: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    val_predictions: pd.DataFrame
    test_predictions: pd.DataFrame
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_auc: float = math.nan


def train_fold(
    store_url: str,
    *,
    model_name: str,
    fold: Fold,
    cfg: TrainConfig,
    storage_path: str | os.PathLike,
    callbacks: Sequence[Any] = (),
) -> FoldTrainResult:
    """Train one model on one fold with Ray Train (resuming from its last checkpoint if any).

    Parameters
    ----------
    store_url : str
        The clip store.
    model_name : {"sozformer", "dcgru"}
    fold : Fold
        Train / validation / test patients.
    cfg : TrainConfig
    storage_path : path-like
        Where Ray Train keeps the fold's run (``RUN_DIR/<model>/ray``); the run is named
        ``fold_<k>``. Pointing a new call at the same place resumes it.
    callbacks : sequence of ray.train.UserCallback
        Extra controller callbacks (tests use one to interrupt a run).

    Returns
    -------
    FoldTrainResult
    """
    if model_name not in ("sozformer", "dcgru"):
        raise SozkitError(
            f"{model_name=} is not trained with Ray Train; use 'sozformer' or 'dcgru'."
        )
    use_gpu = cfg.gpus_per_worker > 0
    resources = {"CPU": cfg.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "store_url": str(store_url),
            "model_name": model_name,
            "fold": fold.to_dict(),
            "cfg": cfg.to_dict(),
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=f"fold_{fold.index}",
            storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=0),
            callbacks=list(callbacks) or None,
        ),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    if result.checkpoint is None:
        raise SozkitError(
            f"{model_name} fold {fold.index} finished without a checkpoint in {storage_path}; "
            "re-run with --resume, or delete that folder to start the fold afresh."
        )
    with result.checkpoint.as_directory() as d:
        d = Path(d)
        state = torch.load(d / _STATE, map_location="cpu", weights_only=False)
        if not state.get("done"):
            raise SozkitError(
                f"{model_name} fold {fold.index}: the last checkpoint is from epoch "
                f"{state.get('epoch')}, not the end of training; re-run with --resume."
            )
        val = pd.read_parquet(d / _VAL)
        test = pd.read_parquet(d / _TEST)
    logger.info(
        "%s fold %d: best epoch %d, val AUC %.3f (%.0f s)",
        model_name,
        fold.index,
        state["best_epoch"],
        state["best_auc"],
        time.perf_counter() - t0,
    )
    return FoldTrainResult(
        model_name=model_name,
        fold=fold.index,
        hparams=state["hparams"],
        state_dict=state["best_state"],
        val_predictions=val,
        test_predictions=test,
        history=state["history"],
        best_epoch=int(state["best_epoch"]),
        best_val_auc=float(state["best_auc"]),
    )


def folds_in_parallel(cfg: TrainConfig, n_jobs: int, resources: Mapping[str, float]) -> int:
    """How many folds fit on the cluster at once.

    Parameters
    ----------
    cfg : TrainConfig
        Workers per fold and their CPUs / GPUs.
    n_jobs : int
        Folds waiting to be trained.
    resources : mapping
        ``ray.cluster_resources()``.
    """
    fit = resources.get("CPU", 0) // (cfg.num_workers * cfg.cpus_per_worker)
    if cfg.gpus_per_worker > 0:
        fit = min(fit, resources.get("GPU", 0) // (cfg.num_workers * cfg.gpus_per_worker))
    if cfg.max_parallel_folds is not None:
        fit = min(fit, cfg.max_parallel_folds)
    return int(max(1, min(fit, n_jobs)))


def train_folds(
    store_url: str,
    jobs: Sequence[tuple[str, Fold]],
    cfg: TrainConfig,
    *,
    storage_root: str | os.PathLike,
    on_done: Any = None,
) -> list[FoldTrainResult]:
    """Train ``(model_name, fold)`` jobs, as many at once as the cluster fits.

    Parameters
    ----------
    store_url : str
    jobs : sequence of (str, Fold)
    cfg : TrainConfig
    storage_root : path-like
        ``RUN_DIR``; a job's Ray Train run lives in ``RUN_DIR/<model>/ray/fold_<k>``.
    on_done : callable, optional
        ``on_done(result)`` as each fold finishes (the caller writes its outputs right away, so
        a later interruption loses nothing finished).

    Returns
    -------
    list of FoldTrainResult
        In the order of ``jobs``.
    """
    if not jobs:
        return []
    resources = ray.cluster_resources()
    need = {
        "CPU": cfg.num_workers * cfg.cpus_per_worker,
        "GPU": cfg.num_workers * cfg.gpus_per_worker,
    }
    short = {k: (v, resources.get(k, 0)) for k, v in need.items() if v > resources.get(k, 0)}
    if short:
        logger.warning(
            "one fold needs %s (needed, available) but the cluster has less now; the fold waits "
            "for an autoscaler to add nodes, else lower --workers / --cpus-per-worker / "
            "--gpus-per-worker.",
            short,
        )
    n_parallel = folds_in_parallel(cfg, len(jobs), resources)
    logger.info("training %d fold(s), %d at a time", len(jobs), n_parallel)

    def one(job: tuple[str, Fold]) -> FoldTrainResult:
        model_name, fold = job
        res = train_fold(
            store_url,
            model_name=model_name,
            fold=fold,
            cfg=cfg,
            storage_path=Path(storage_root) / model_name / "ray",
        )
        if on_done is not None:
            on_done(res)
        return res

    if n_parallel == 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=n_parallel, thread_name_prefix="sozkit-fold") as pool:
        return list(pool.map(one, jobs))


# ----------------------------------------------------------------------------------------------
# The worker function (runs in every Ray Train worker)


def _gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank (a no-op list on one worker)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _score(
    model, ds_kwargs: dict, items: np.ndarray, rank: int, world: int, batch_size: int, device
) -> ScoreSums:
    ds = SequenceDataset(items=shard(items, rank, world, pad=False), **ds_kwargs)
    sums = predict(model, make_loader(ds, batch_size=batch_size), device=device)
    merged = ScoreSums()
    for part in _gather(sums):
        merged.merge(part)
    return merged


def _report(
    metrics: dict, state: dict, rank: int, frames: Mapping[str, pd.DataFrame] | None = None
) -> None:
    """Report metrics from every rank and, from rank 0, a checkpoint holding ``state``."""
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    for cohort, auc in metrics.get("val_auc_by_cohort", {}).items():
        flat[f"val_auc/{cohort}"] = auc
    if rank != 0:
        ray.train.report(flat, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="sozkit-ckpt-") as d:
        torch.save(state, Path(d) / _STATE)
        for name, df in (frames or {}).items():
            df.to_parquet(Path(d) / name, index=False)
        ray.train.report(flat, checkpoint=Checkpoint.from_directory(d))


def _train_worker(config: dict) -> None:
    from ingest.store import ClipStore
    from models.registry import build_model
    from models.spectral import n_spectral_features
    from trainer.losses import pos_weight_from_counts

    cfg = TrainConfig.from_dict(config["cfg"])
    fold = Fold.from_dict(config["fold"])
    model_name = config["model_name"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()

    store = ClipStore.open(config["store_url"])
    recs = recording_table(store)
    by_role = {
        role: [r for r in recs if r.patient in set(getattr(fold, role))]
        for role in ("train", "val", "test")
    }
    for role, rows in by_role.items():
        if not rows:
            raise SozkitError(
                f"fold {fold.index} has no labelled {role} recordings in {store.url}; "
                "use fewer folds or ingest more labelled patients."
            )
    feature_config = cfg.feature_config()
    n_feats = n_spectral_features(store.clip_samples, store.sfreq, **feature_config)
    hparams = {**cfg.hparams_for(model_name), "n_feats": n_feats}
    seed = cfg.seed + 1000 * fold.index
    seed_everything(seed)
    model = build_model(model_name, **hparams)
    seq_len = int(model.seq_len)

    features_url = cache_url(config["store_url"], feature_config) if cfg.feature_cache else None

    def dataset_kwargs(rows):
        return {
            "store_url": config["store_url"],
            "recordings": rows,
            "seq_len": seq_len,
            "feature_config": feature_config,
            "feature_cache": features_url,
        }

    def train_loader(rows, epoch):
        items = sample_training_sequences(
            rows,
            seq_len=seq_len,
            seqs_per_recording=cfg.seqs_per_recording,
            ictal_fraction=cfg.ictal_fraction,
            balance_cohorts=cfg.balance_cohorts,
            seed=seed,
            epoch=epoch,
        )
        ds = SequenceDataset(items=shard(items, rank, world), **dataset_kwargs(rows))
        return make_loader(ds, batch_size=cfg.batch_size, num_workers=cfg.loader_workers)

    def eval_items(rows):
        return evaluation_sequences(
            rows, seq_len=seq_len, stride=cfg.eval_stride, max_per_recording=cfg.max_eval_seqs
        )

    state: dict[str, Any] = {
        "stage": "ssl" if model_name == "dcgru" and cfg.ssl_epochs > 0 else "train",
        "epoch": -1,
        "ssl_epoch": -1,
        "best_auc": -math.inf,
        "best_epoch": -1,
        "best_state": None,
        "bad_epochs": 0,
        "history": [],
        "done": False,
        "hparams": hparams,
        "encoder": None,
    }
    ckpt = ray.train.get_checkpoint()
    saved = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / _STATE, map_location="cpu", weights_only=False)
            frames = {
                n: pd.read_parquet(Path(d) / n) for n in (_VAL, _TEST) if (Path(d) / n).is_file()
            }
        state.update({k: v for k, v in saved.items() if k in state})
        if state["done"]:  # finished before the driver wrote its outputs: hand the result back
            _report(
                {"stage": "done", "epoch": state["epoch"], "best_auc": state["best_auc"]},
                state,
                rank,
                frames,
            )
            return
        logger.info(
            "fold %d: resuming %s at %s epoch %d",
            fold.index,
            model_name,
            state["stage"],
            state["epoch"] if state["stage"] == "train" else state["ssl_epoch"],
        )

    # Stage 1 (DCGRU only): self-supervised next-clip prediction on the training recordings.
    if state["stage"] == "ssl":
        ssl = build_model("dcgru_ssl", **hparams)
        resume_ssl = saved is not None and saved.get("ssl_model") is not None
        if resume_ssl:
            ssl.load_state_dict(saved["ssl_model"])
        ssl = ray.train.torch.prepare_model(ssl)
        # The optimizer is made (and its state loaded) once the weights are on the device.
        ssl_opt = torch.optim.AdamW(ssl.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if resume_ssl:
            ssl_opt.load_state_dict(saved["ssl_optimizer"])
        for epoch in range(state["ssl_epoch"] + 1, cfg.ssl_epochs):
            stats = pretrain_epoch(
                ssl,
                train_loader(by_role["train"], _SSL_EPOCH_OFFSET + epoch),
                ssl_opt,
                device=device,
                grad_clip=cfg.grad_clip,
            )
            loss = float(np.mean(_gather(stats["loss"])))
            row = {"stage": "ssl", "epoch": epoch, "train_loss": loss, "seconds": stats["seconds"]}
            state["history"].append(row)
            state["ssl_epoch"] = epoch
            last = epoch == cfg.ssl_epochs - 1
            if last:
                state["encoder"] = unwrap_model(ssl).encoder_state_dict()
                state["stage"] = "train"
            _report(
                row,
                {
                    **state,
                    "ssl_model": None if last else cpu_state_dict(ssl),
                    "ssl_optimizer": None if last else ssl_opt.state_dict(),
                },
                rank,
            )
        del ssl, ssl_opt

    # Stage 2: supervised training with early stopping on the validation channel ROC-AUC.
    if model_name == "dcgru":
        labels = np.concatenate([r.labels for r in by_role["train"]])
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
    resume_train = saved is not None and saved.get("model") is not None and state["epoch"] >= 0
    if resume_train:
        model.load_state_dict(saved["model"])
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume_train:
        optimizer.load_state_dict(saved["optimizer"])  # moves its state to the weights' device
    val_items = eval_items(by_role["val"])
    epoch = state["epoch"]
    while state["bad_epochs"] < cfg.patience and epoch + 1 < cfg.epochs:
        epoch += 1
        stats = train_epoch(
            model,
            train_loader(by_role["train"], epoch),
            optimizer,
            loss_fn,
            device=device,
            grad_clip=cfg.grad_clip,
        )
        sums = _score(
            model, dataset_kwargs(by_role["val"]), val_items, rank, world, cfg.batch_size, device
        )
        metrics = validation_metrics(sums.to_frame(by_role["val"]))
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
            "train_loss": float(np.mean(_gather(stats["loss"]))),
            "seconds": stats["seconds"],
            "sequences_per_s": stats["sequences_per_s"] * world,
            "world_size": world,
            "load_seconds": stats["load_seconds"],
            **metrics,
            "best_auc": state["best_auc"],
        }
        state["history"].append(row)
        state["epoch"] = epoch
        _report(
            row,
            {**state, "model": cpu_state_dict(model), "optimizer": optimizer.state_dict()},
            rank,
        )

    # Final: score validation and test with the best weights; report them in a last checkpoint.
    unwrap_model(model).load_state_dict(state["best_state"])
    frames = {}
    for role, name in (("val", _VAL), ("test", _TEST)):
        rows = by_role[role]
        frames[name] = _score(
            model, dataset_kwargs(rows), eval_items(rows), rank, world, cfg.batch_size, device
        ).to_frame(rows)
    state["done"] = True
    _report(
        {"stage": "done", "epoch": state["epoch"], "best_auc": state["best_auc"]},
        state,
        rank,
        frames,
    )
