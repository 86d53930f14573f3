"""``soz serve RUN_DIR``: the HTTP scoring service (Ray Serve), until interrupted.

A local Ray is started (no dashboard) unless ``RAY_ADDRESS`` names a cluster to join; this is the
only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path

from serving.cli import command, default, ray_session
from serving.commands.options import add_run_args, config_from_args, config_option
from serving.config import PROXY_LOCATIONS, ServeConfig

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_args(p, ServeConfig, model_help="model to serve", use="serve")
    opt = partial(config_option, p, ServeConfig)
    opt("--host", "host", "listen address (%(default)s)")
    opt("--port", "port", "port (%(default)s)")
    opt("--replicas", "replicas", "model replicas")
    opt("--ingress-replicas", "ingress_replicas", "HTTP/preprocessing replicas")
    p.add_argument(
        "--data-root", action="append", default=[], metavar="DIR",
        help="folder whose recordings POST /score {'path': ...} may read (repeatable)",
    )  # fmt: skip
    opt("--max-batch-size", "max_batch_size", "sequences per batch (%(default)s)")
    d = partial(default, ServeConfig)
    p.add_argument(
        "--batch-wait-ms", type=float, default=d("batch_wait_timeout_s") * 1000,
        help="batch fill wait in ms (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-upload-mb", type=float, default=d("max_upload_bytes") / 2**20,
        help="upload cap in MB (%(default)s)",
    )  # fmt: skip
    opt("--max-uploads", "max_concurrent_uploads", "uploads at once; more get 503 (%(default)s)")
    opt(
        "--body-timeout-s", "body_timeout_s",
        "longest time to receive a request body; slower ones get 408 (%(default)s)",
    )  # fmt: skip
    p.add_argument("--gpus-per-replica", type=float, default=None, help="default: 1 if CUDA")
    opt(
        "--cpus-per-replica",
        "num_cpus",
        "CPUs reserved by each replica of each deployment (%(default)s)",
    )
    opt(
        "--max-replicas-per-node", "max_replicas_per_node",
        "cap on model replicas per Ray node (1: one per node; default no cap)", type=int,
    )  # fmt: skip
    opt(
        "--proxy-location", "proxy_location",
        "where Serve runs HTTP proxies (%(default)s; EveryNode: on every node)",
        choices=PROXY_LOCATIONS,
    )  # fmt: skip
    opt(
        "--cache-mb", "cache_mb",
        "per request, memory for keeping clips between the two preprocessing passes",
    )  # fmt: skip


@command("serve", "Serve SOZ scoring over HTTP (Ray Serve)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.app import start
    from serving.serve_shutdown import quiet_serve_logger, shutdown_serve

    gpus = args.gpus_per_replica
    if gpus is None:
        import torch

        gpus = 1.0 if torch.cuda.is_available() else 0.0
    cfg = config_from_args(
        ServeConfig,
        args,
        run_dir=str(Path(args.run_dir).resolve()),
        data_roots=tuple(str(Path(r).resolve()) for r in args.data_root),
        batch_wait_timeout_s=args.batch_wait_ms / 1000.0,
        max_upload_bytes=int(args.max_upload_mb * 1024**2),
        num_gpus=gpus,
    )
    print(f"serving {cfg.model} from {cfg.run_dir} on http://{cfg.host}:{cfg.port} (Ctrl-C stops)")
    with ray_session(shared=(cfg.run_dir, *cfg.data_roots)):
        quiet_serve_logger()
        try:
            start(cfg, blocking=True)
        except KeyboardInterrupt:
            pass
        finally:
            shutdown_serve()
    return 0
