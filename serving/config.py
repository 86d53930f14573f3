"""Frozen configuration of the serving stage: the HTTP service and bulk scoring.

Both are built once by the CLI (``soz serve``, ``soz score``) from parsed arguments and passed
down; nothing below reads the environment or the working directory. Paths are stored as given
(strings); the CLI makes them absolute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ingest.errors import ConfigError

#: ``--model all``: every model the run directory holds.
ALL_MODELS = "all"

#: Where Ray Serve may run its HTTP proxies (``ServeConfig.proxy_location``).
PROXY_LOCATIONS = ("HeadOnly", "EveryNode", "Disabled")

#: Default cap on an uploaded EDF (bytes): 2 GiB is ~ 2 h of 128 contacts at 1 kHz in 16 bit.
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} must be {bound}.")


def _check_fold(fold: int | None) -> None:
    if fold is not None and fold < 0:
        raise ConfigError(
            f"fold={fold!r} must be a fold index >= 0, or None for the ensemble of all folds."
        )


@dataclass(frozen=True)
class ServeConfig:
    """How ``soz serve`` runs the Ray Serve application.

    Parameters
    ----------
    run_dir : str
        Training run directory (``RUN_DIR/<model>/fold_<k>/checkpoint.pt``).
    model : str
        Model served (``"sozformer"``, ``"dcgru"`` ...).
    fold : int | None
        One fold's checkpoint, or ``None`` for the mean over every fold's model.
    host, port : str, int
        Where the HTTP proxy listens.
    replicas : int
        Replicas of the model deployment (the batched forward pass).
    ingress_replicas : int
        Replicas of the HTTP ingress (file checks, preprocessing, feature extraction).
    data_roots : tuple of str
        Folders ``POST /score {"path": ...}`` may read from. Empty: only uploads are accepted.
    max_batch_size : int
        Sequences per forward pass, gathered across concurrent requests by ``@serve.batch``.
    batch_wait_timeout_s : float
        How long a batch waits to fill before running anyway.
    max_ongoing_requests : int | None
        Per model replica; ``None`` = ``2 * max_batch_size``. Must be ``>= max_batch_size``,
        otherwise Ray Serve never hands a replica enough requests to fill a batch.
    max_upload_bytes : int
        Largest accepted upload; a body is refused with 413 as soon as it passes the cap, while
        it is being read.
    max_concurrent_uploads : int
        Uploads received at once per ingress replica; one more gets 503 at once (it holds no
        slot), so slow uploaders cannot starve ``/health`` or path requests.
    body_timeout_s : float
        Longest time to receive a request body; a slower one gets 408 and its slot back.
    num_gpus : float
        GPUs per model replica (``0`` on CPU machines; fractions share a GPU).
    num_cpus : float
        CPUs per replica (each deployment).
    line_freq : float | None
        Power-line frequency assumed for files that do not state one (uploads, plain EDF); the
        checkpoint's ingest configuration fallback is used when ``None``.
    route_prefix : str
        URL prefix of the application.
    cache_mb : float
        Per request, memory the ingress may use to keep a recording's clips between the two
        preprocessing passes (longer recordings are processed twice instead).
    allow_incomplete : bool
        Serve the complete folds of a model whose other folds did not finish (logged), instead
        of refusing to start (:class:`trainer.rundir.IncompleteRun`).
    max_replicas_per_node : int | None
        Cap on the model replicas one Ray node holds (1 puts ``replicas`` on as many nodes);
        ``None``: no cap.
    proxy_location : str
        Where Ray Serve runs HTTP proxies: ``"HeadOnly"`` (one, on the head node),
        ``"EveryNode"`` (one per node holding a replica: any node's address answers) or
        ``"Disabled"``.
    watch_status : str or None
        The state file of the watcher ``soz serve --watch`` runs beside the service
        (:mod:`serving.watch_status`); ``/health`` shows it. ``None``: no watcher.
    """

    run_dir: str
    model: str = "sozformer"
    fold: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    ingress_replicas: int = 1
    data_roots: tuple[str, ...] = ()
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01
    max_ongoing_requests: int | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_concurrent_uploads: int = 4
    body_timeout_s: float = 300.0
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    line_freq: float | None = None
    route_prefix: str = "/"
    cache_mb: float = 256.0
    allow_incomplete: bool = False
    max_replicas_per_node: int | None = None
    proxy_location: str = "HeadOnly"
    watch_status: str | None = None

    def __post_init__(self) -> None:
        if not str(self.run_dir):
            raise ConfigError(
                "run_dir is empty; give the training run directory (soz train --out)."
            )
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ConfigError(
                f"proxy_location={self.proxy_location!r} must be one of {PROXY_LOCATIONS}."
            )
        if self.max_replicas_per_node is not None:
            _check_positive("max_replicas_per_node", self.max_replicas_per_node)
        if self.model == ALL_MODELS:
            raise ConfigError(
                f"model={self.model!r}: the service serves one model; pick one of the run's models "
                "(GET /models lists them) and start one service per model if you need several."
            )
        _check_fold(self.fold)
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port!r} must be in 1..65535.")
        _check_positive("replicas", self.replicas)
        _check_positive("ingress_replicas", self.ingress_replicas)
        _check_positive("max_batch_size", self.max_batch_size)
        _check_positive("batch_wait_timeout_s", self.batch_wait_timeout_s, allow_zero=True)
        _check_positive("max_upload_bytes", self.max_upload_bytes)
        _check_positive("max_concurrent_uploads", self.max_concurrent_uploads)
        _check_positive("body_timeout_s", self.body_timeout_s)
        _check_positive("num_gpus", self.num_gpus, allow_zero=True)
        _check_positive("num_cpus", self.num_cpus, allow_zero=True)
        _check_positive("cache_mb", self.cache_mb, allow_zero=True)
        if (
            self.max_ongoing_requests is not None
            and self.max_ongoing_requests < self.max_batch_size
        ):
            raise ConfigError(
                f"max_ongoing_requests={self.max_ongoing_requests} must be >= "
                f"max_batch_size={self.max_batch_size}: a replica only batches the requests it "
                "holds, so batches would never fill. Raise it or leave it unset (2 x batch size)."
            )
        if self.line_freq is not None and self.line_freq not in (50.0, 60.0):
            raise ConfigError(f"line_freq={self.line_freq!r} must be 50 or 60 Hz (or None).")
        if not self.route_prefix.startswith("/"):
            raise ConfigError(f"route_prefix={self.route_prefix!r} must start with '/'.")
        object.__setattr__(self, "data_roots", tuple(str(r) for r in self.data_roots))

    @property
    def ongoing_requests(self) -> int:
        """``max_ongoing_requests`` actually used by the model deployment."""
        return self.max_ongoing_requests or 2 * self.max_batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BulkConfig:
    """How ``soz score`` scores many recordings into a Parquet table.

    Parameters
    ----------
    run_dir : str
        Training run directory.
    inputs : tuple of str
        BIDS roots, folders of recordings, single files, or clip stores (Zarr groups written by
        ``soz ingest``).
    out : str
        Results Parquet file; failures go to ``<out stem>.failures.parquet`` beside it.
    model : str
        One model name, or ``"all"`` for every model of the run.
    fold : int | None
        One fold, or ``None`` for the mean over the folds.
    num_workers : int
        Recordings scored at once (Ray tasks, one CPU each).
    label_sheet : str | None
        Label sheet for folder inputs (adds ``soz_label``).
    line_freq : float | None
        Power-line frequency of folder recordings that do not state one.
    batch_size : int
        Sequences per forward pass inside a worker.
    torch_threads : int
        Torch intra-op threads per worker (1 avoids oversubscribing the cores).
    resume : bool
        Skip (recording_id, model) pairs already in ``out``; ``False`` rewrites it.
    flush_every : int
        Rewrite ``out`` (atomically) after this many recordings, so an interrupted run keeps
        its work.
    allow_incomplete : bool
        Score with the complete folds of a model whose other folds did not finish (logged),
        instead of refusing (:class:`trainer.rundir.IncompleteRun`).
    """

    run_dir: str
    inputs: tuple[str, ...]
    out: str
    model: str = ALL_MODELS
    fold: int | None = None
    num_workers: int = 2
    label_sheet: str | None = None
    line_freq: float | None = None
    batch_size: int = 8
    torch_threads: int = 1
    resume: bool = True
    flush_every: int = 16
    allow_incomplete: bool = False

    def __post_init__(self) -> None:
        if not str(self.run_dir):
            raise ConfigError(
                "run_dir is empty; give the training run directory (soz train --out)."
            )
        object.__setattr__(self, "inputs", tuple(str(i) for i in self.inputs))
        if not self.inputs:
            raise ConfigError(
                "inputs is empty; give at least one BIDS root, folder, file or store."
            )
        if not str(self.out).endswith(".parquet"):
            raise ConfigError(f"out={self.out!r} must be a .parquet file path.")
        _check_fold(self.fold)
        _check_positive("num_workers", self.num_workers)
        _check_positive("batch_size", self.batch_size)
        _check_positive("torch_threads", self.torch_threads)
        _check_positive("flush_every", self.flush_every)
        if self.line_freq is not None and self.line_freq not in (50.0, 60.0):
            raise ConfigError(f"line_freq={self.line_freq!r} must be 50 or 60 Hz (or None).")

    @property
    def failures_path(self) -> str:
        """Where failed recordings are recorded (``results.parquet`` -> ``results.failures.parquet``)."""
        from serving.results import failures_path

        return failures_path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
