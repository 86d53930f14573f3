"""Ray Train for the neural models: DDP per fold, a checkpoint every epoch, early stopping, resume.

This is the only module of sozkit that imports ``ray.train``. It runs the plain
:func:`trainer.loop.fit_fold` in every worker of a Ray Train V2 ``TorchTrainer``, with that
rank's :class:`trainer.fold_data.FoldData` and an ``on_epoch`` that reports to Ray Train:

- **DDP** over ``TrainConfig.num_workers`` workers (``ray.train.torch.prepare_model``; CPU with the
  gloo backend, or one GPU per worker with NCCL). Each worker reads its own share of an epoch's
  sequences (:func:`trainer.datasets.shard`), and sets its torch threads to its reserved CPUs so
  that workers do not oversubscribe the cores.
- **A checkpoint every epoch** (``ray.train.report`` with a ``Checkpoint`` from rank 0, every
  rank reporting equally often): the model and optimizer state, the best weights so far, the
  early-stopping counters, the history and every rank's random states, so that a resumed fold
  ends bit for bit where an uninterrupted one does.
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
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ingest.errors import SozkitError
from trainer.config import TrainConfig
from trainer.fold_data import FoldData
from trainer.loop import fit_fold
from trainer.splits import Fold

logger = logging.getLogger(__name__)

_STATE = "state.pt"
_VAL = "val_predictions.parquet"
_TEST = "test_predictions.parquet"
#: Key of the checkpointed state listing the Ray nodes of every rank, per epoch.
_EPOCH_NODES = "epoch_nodes"


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
    epoch_nodes : list of dict
        Where each epoch ran: ``stage``, ``epoch`` and ``nodes``, the Ray node id of every rank
        (in rank order), across restarts after a lost worker or node.
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
    epoch_nodes: list[dict[str, Any]] = field(default_factory=list)


def scaling_config(cfg: TrainConfig) -> ScalingConfig:
    """One fold's worker group: ``cfg.num_workers`` DDP ranks, each with ``cpus_per_worker``
    CPUs and, when ``gpus_per_worker > 0``, that share of a GPU (``use_gpu``: Ray Train then
    gives each rank its own CUDA device and the NCCL backend)."""
    use_gpu = cfg.gpus_per_worker > 0
    resources: dict[str, float] = {"CPU": cfg.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    return ScalingConfig(
        num_workers=cfg.num_workers,
        use_gpu=use_gpu,
        resources_per_worker=resources,
        placement_strategy=cfg.placement_strategy,
    )


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
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "store_url": str(store_url),
            "model_name": model_name,
            "fold": fold.to_dict(),
            "cfg": cfg.to_dict(),
        },
        scaling_config=scaling_config(cfg),
        run_config=RunConfig(
            name=f"fold_{fold.index}",
            storage_path=str(Path(storage_path).resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
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
        epoch_nodes=list(state.get(_EPOCH_NODES, [])),
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


def fold_resources(cfg: TrainConfig) -> dict[str, float]:
    """What one fold's worker group holds while it trains (``CPU``, and ``GPU`` if any)."""
    need = {"CPU": float(cfg.num_workers * cfg.cpus_per_worker)}
    if cfg.gpus_per_worker > 0:
        need["GPU"] = float(cfg.num_workers * cfg.gpus_per_worker)
    return need


def _fmt(resources: Mapping[str, float], keys: Sequence[str]) -> str:
    return ", ".join(f"{k} {resources.get(k, 0.0):g}" for k in keys)


#: Seconds a wait for resources lasts before it is reported (see :class:`_ResourceGate`).
WAIT_GRACE_S = 10.0


class _ResourceGate:
    """Let work start once the cluster has ``need`` free, saying what it waits for.

    While none of this gate's work is running and the cluster lacks ``need`` (another job or a
    Serve app holds it), a warning says what is needed and what is free, then every
    ``report_s`` seconds. The first warning comes only once a wait has lasted ``grace_s`` with
    Ray's available resources short of ``need`` at every poll: between two folds, or right
    after the feature tasks, Ray takes a moment to hand back the CPUs it freed, and a wait
    that short is normal start-up, not something to tell. :meth:`stop` (Ctrl-C in the
    driver) ends every wait.
    """

    def __init__(
        self,
        need: Mapping[str, float],
        *,
        report_s: float = 30.0,
        poll_s: float = 0.5,
        grace_s: float = WAIT_GRACE_S,
    ) -> None:
        self.need = {k: float(v) for k, v in need.items() if v > 0}
        self.report_s = report_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = 0
        self._last_report = -math.inf

    def stop(self) -> None:
        self._stop.set()

    def _fits(self, free: Mapping[str, float]) -> bool:
        return all(free.get(k, 0.0) >= v for k, v in self.need.items())

    def wait(self, label: str) -> None:
        """Block until ``label`` can start; KeyboardInterrupt once stopped."""
        short_since = time.monotonic()  # every poll below saw the cluster short of need
        while not self._fits(ray.available_resources()):
            with self._lock:
                now = time.monotonic()
                if (
                    self._running == 0
                    and now - short_since >= self.grace_s
                    and now - self._last_report >= self.report_s
                ):
                    self._last_report = now
                    keys = list(self.need)
                    logger.warning(
                        "waiting for resources: %s needs %s; the cluster has %s free of %s. "
                        "Other Ray work holds the rest (a `soz serve` app, another training "
                        "run): free it, or lower --workers / --cpus-per-worker. Ctrl-C stops.",
                        label,
                        _fmt(self.need, keys),
                        _fmt(ray.available_resources(), keys),
                        _fmt(ray.cluster_resources(), keys),
                    )
            if self._stop.wait(self.poll_s):
                raise KeyboardInterrupt(f"{label}: stopped while waiting for resources")
        if self._stop.is_set():
            raise KeyboardInterrupt(f"{label}: stopped before it started")

    def running(self, delta: int) -> None:
        with self._lock:
            self._running += delta


def wait_for_resources(
    need: Mapping[str, float],
    label: str,
    *,
    report_s: float = 30.0,
    grace_s: float = WAIT_GRACE_S,
) -> None:
    """Block until the cluster has ``need`` (e.g. ``{"CPU": 1}``) free, warning while it waits.

    The warning names ``label``, what it needs and what the cluster has free; it comes once the
    wait has lasted ``grace_s`` and repeats every ``report_s`` seconds. Ctrl-C
    (KeyboardInterrupt) ends the wait.
    """
    _ResourceGate(need, report_s=report_s, grace_s=grace_s).wait(label)


def train_folds(
    store_url: str,
    jobs: Sequence[tuple[str, Fold]],
    cfg: TrainConfig,
    *,
    storage_root: str | os.PathLike,
    on_done: Any = None,
    wait_report_s: float = 30.0,
) -> list[FoldTrainResult]:
    """Train ``(model_name, fold)`` jobs, as many at once as the cluster fits.

    A fold starts once the cluster has its CPUs / GPUs free; while none of this run's folds
    can train, a warning says every ``wait_report_s`` seconds what it waits for. A
    KeyboardInterrupt (Ctrl-C) ends the waits and propagates; the folds already training stop
    with the driver's Ray session.

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
    wait_report_s : float
        Seconds between two "waiting for resources" warnings.

    Returns
    -------
    list of FoldTrainResult
        In the order of ``jobs``.
    """
    if not jobs:
        return []
    resources = ray.cluster_resources()
    need = fold_resources(cfg)
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
    gate = _ResourceGate(need, report_s=wait_report_s)
    per_worker = _fmt({"CPU": cfg.cpus_per_worker, "GPU": cfg.gpus_per_worker}, list(need))

    def one(job: tuple[str, Fold]) -> FoldTrainResult:
        model_name, fold = job
        gate.wait(f"{model_name} fold {fold.index} ({cfg.num_workers} worker(s) x {per_worker})")
        gate.running(+1)
        try:
            res = train_fold(
                store_url,
                model_name=model_name,
                fold=fold,
                cfg=cfg,
                storage_path=Path(storage_root) / model_name / "ray",
            )
        finally:
            gate.running(-1)
        if on_done is not None:
            on_done(res)
        return res

    if n_parallel == 1:
        return [one(job) for job in jobs]
    pool = ThreadPoolExecutor(max_workers=n_parallel, thread_name_prefix="sozkit-fold")
    try:
        results = list(pool.map(one, jobs))
    except BaseException:
        gate.stop()  # waiting folds give up; none starts after this
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


# ----------------------------------------------------------------------------------------------
# The worker function (runs in every Ray Train worker)


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
    """:func:`trainer.loop.fit_fold` on this rank's data, every epoch reported to Ray Train."""
    cfg = TrainConfig.from_dict(config["cfg"])
    fold = Fold.from_dict(config["fold"])
    model_name = config["model_name"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.cpus_per_worker)
    data = FoldData.for_fold(
        config["store_url"], fold, cfg, model_name, rank=rank, world_size=world
    )

    saved = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            saved = torch.load(Path(d) / _STATE, map_location="cpu", weights_only=False)
            frames = {
                n: pd.read_parquet(Path(d) / n) for n in (_VAL, _TEST) if (Path(d) / n).is_file()
            }
        if saved.get("done") and len(frames) == 2:
            # Finished before the driver wrote its outputs: hand the result back.
            _report(_done_row(saved), saved, rank, frames)
            return
        logger.info(
            "fold %d: resuming %s at %s epoch %d",
            fold.index,
            model_name,
            saved["stage"],
            saved["epoch"] if saved["stage"] == "train" else saved["ssl_epoch"],
        )

    nodes = _rank_nodes(world)
    epoch_nodes = list((saved or {}).get(_EPOCH_NODES, []))

    def on_epoch(row: dict, state: dict) -> None:
        epoch_nodes.append({"stage": row.get("stage"), "epoch": row.get("epoch"), "nodes": nodes})
        _report(row, {**state, _EPOCH_NODES: list(epoch_nodes)}, rank)

    fit = fit_fold(
        model_name,
        data,
        device=ray.train.torch.get_device(),
        prepare=partial(ray.train.torch.prepare_model, parallel_strategy="ddp"),
        resume=saved,
        on_epoch=on_epoch,
    )
    frames = {_VAL: fit.val_predictions, _TEST: fit.test_predictions}
    state = {**fit.state, _EPOCH_NODES: epoch_nodes}
    _report(_done_row(state), state, rank, frames)


def _rank_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (gathered over the process group)."""
    me = ray.get_runtime_context().get_node_id()
    if world == 1 or not torch.distributed.is_initialized():
        return [me]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, me)
    return [str(n) for n in out]


def _done_row(state: Mapping[str, Any]) -> dict:
    return {"stage": "done", "epoch": state["epoch"], "best_auc": state["best_auc"]}
