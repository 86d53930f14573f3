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
from serving.config import PROXY_LOCATIONS, ServeConfig

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run directory (soz train --out)")
    d = partial(default, ServeConfig)
    p.add_argument("--model", default=d("model"), help="model to serve (%(default)s)")
    p.add_argument("--fold", type=int, default=None, help="one fold (default: fold ensemble)")
    p.add_argument("--host", default=d("host"), help="listen address (%(default)s)")
    p.add_argument("--port", type=int, default=d("port"), help="port (%(default)s)")
    p.add_argument("--replicas", type=int, default=d("replicas"), help="model replicas")
    p.add_argument(
        "--ingress-replicas", type=int, default=d("ingress_replicas"),
        help="HTTP/preprocessing replicas",
    )  # fmt: skip
    p.add_argument(
        "--data-root", action="append", default=[], metavar="DIR",
        help="folder whose recordings POST /score {'path': ...} may read (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--max-batch-size", type=int, default=d("max_batch_size"),
        help="sequences per batch (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--batch-wait-ms", type=float, default=d("batch_wait_timeout_s") * 1000,
        help="batch fill wait in ms (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-upload-mb", type=float, default=d("max_upload_bytes") / 2**20,
        help="upload cap in MB (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-uploads", type=int, default=d("max_concurrent_uploads"),
        help="uploads received at once; more get 503 (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--body-timeout-s", type=float, default=d("body_timeout_s"),
        help="longest time to receive a request body; slower ones get 408 (%(default)s)",
    )  # fmt: skip
    p.add_argument("--gpus-per-replica", type=float, default=None, help="default: 1 if CUDA")
    p.add_argument("--line-freq", type=float, default=None, help="for files that state none")
    p.add_argument(
        "--cache-mb", type=float, default=d("cache_mb"),
        help="per request, memory for keeping clips between the two preprocessing passes",
    )  # fmt: skip
    p.add_argument(
        "--cpus-per-replica", type=float, default=d("num_cpus"),
        help="CPUs reserved by each replica of each deployment (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-replicas-per-node", type=int, default=d("max_replicas_per_node"),
        help="cap on model replicas per Ray node (1: one per node; default no cap)",
    )  # fmt: skip
    p.add_argument(
        "--proxy-location", default=d("proxy_location"), choices=PROXY_LOCATIONS,
        help="where Serve runs HTTP proxies (%(default)s; EveryNode: on every node)",
    )  # fmt: skip
    p.add_argument(
        "--allow-incomplete", action="store_true",
        help="serve the finished folds of a run whose other folds did not finish",
    )  # fmt: skip


@command("serve", "Serve SOZ scoring over HTTP (Ray Serve)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.app import start

    gpus = args.gpus_per_replica
    if gpus is None:
        import torch

        gpus = 1.0 if torch.cuda.is_available() else 0.0
    cfg = ServeConfig(
        run_dir=str(Path(args.run_dir).resolve()),
        model=args.model,
        fold=args.fold,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        ingress_replicas=args.ingress_replicas,
        data_roots=tuple(str(Path(r).resolve()) for r in args.data_root),
        max_batch_size=args.max_batch_size,
        batch_wait_timeout_s=args.batch_wait_ms / 1000.0,
        max_upload_bytes=int(args.max_upload_mb * 1024**2),
        max_concurrent_uploads=args.max_uploads,
        body_timeout_s=args.body_timeout_s,
        num_gpus=gpus,
        num_cpus=args.cpus_per_replica,
        line_freq=args.line_freq,
        cache_mb=args.cache_mb,
        allow_incomplete=args.allow_incomplete,
        max_replicas_per_node=args.max_replicas_per_node,
        proxy_location=args.proxy_location,
    )
    print(f"serving {cfg.model} from {cfg.run_dir} on http://{cfg.host}:{cfg.port} (Ctrl-C stops)")
    with ray_session(shared=(cfg.run_dir, *cfg.data_roots)):
        try:
            start(cfg, blocking=True)
        except KeyboardInterrupt:
            pass
        finally:
            from ray import serve

            serve.shutdown()
    return 0
