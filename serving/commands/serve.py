"""``soz serve RUN_DIR``: the HTTP scoring service (Ray Serve), until interrupted.

A local Ray is started (no dashboard) unless ``RAY_ADDRESS`` names a cluster to join; this is the
only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from ingest.errors import ConfigError
from serving.cli import command, default, ray_session
from serving.commands.options import (
    add_run_args,
    add_watch_args,
    config_from_args,
    config_option,
)
from serving.config import PROXY_LOCATIONS, ServeConfig
from serving.watch_config import WatchConfig
from serving.watch_status import status_path

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
    p.add_argument(
        "--watch", action="append", default=[], metavar="LANDING",
        help="also run `soz watch` on this landing folder or URL inside the service "
        "(repeatable; needs --store, --results, --reports; /health shows its state)",
    )  # fmt: skip
    add_watch_args(p, WatchConfig, required=False)


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
    watcher = _watcher(args) if args.watch else None
    if watcher is not None:
        cfg = replace(cfg, watch_status=str(status_path(watcher.cfg.results)))
    print(f"serving {cfg.model} from {cfg.run_dir} on http://{cfg.host}:{cfg.port} (Ctrl-C stops)")
    with ray_session(shared=(cfg.run_dir, *cfg.data_roots)):
        quiet_serve_logger()
        try:
            if watcher is None:
                start(cfg, blocking=True)
            else:
                start(cfg)
                _watch_beside(watcher)
        except KeyboardInterrupt:
            pass
        finally:
            shutdown_serve()
    return 0


def _watcher(args: argparse.Namespace):
    """The :class:`serving.watch.Watcher` of ``--watch`` and its options (built before Ray
    starts: a wrong path or store is one clear line)."""
    from serving.commands.watch import system_heap, watch_config

    system_heap()
    missing = [f"--{f}" for f in ("store", "results", "reports") if not getattr(args, f)]
    if missing:
        raise ConfigError(f"--watch needs {', '.join(missing)} too: where what lands goes.")
    from serving.watch import Watcher

    cfg = watch_config(args, args.watch, args.run_dir)
    return Watcher(cfg, say=lambda line: print(line, flush=True))


def _watch_beside(watcher) -> None:
    """Run ``watcher`` in a thread of this process while Serve answers HTTP, until Ctrl-C;
    then let it finish the recording in flight (a second Ctrl-C: at once, the journal replays
    the rest on the next start)."""
    import ray

    # Serve's replicas may hold every CPU: the scoring actors then share them.
    free = ray.available_resources().get("CPU", 0.0)
    watcher.cfg = replace(
        watcher.cfg, num_workers=max(1, int(free)), worker_cpus=1.0 if free >= 1 else 0.0
    )
    watcher.start()
    print(f"watching {', '.join(watcher.cfg.landings)}; models {', '.join(watcher.models)}")
    stop = threading.Event()

    def watch() -> None:
        try:
            watcher.run(stop)
        except Exception as e:  # the state file says failed; HTTP scoring goes on
            print(f"watch: stopped by {type(e).__name__}: {e} (HTTP scoring goes on)", flush=True)

    thread = threading.Thread(target=watch, name="soz-watch", daemon=True)
    thread.start()
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping: the watcher finishes the recording in flight (Ctrl-C again: now)")
        stop.set()
        try:
            thread.join()
        finally:
            print(watcher.summary.line(), flush=True)
            watcher.close()
