"""``soz watch LANDING... --store STORE --run RUN_DIR --results RESULTS.parquet --reports DIR``.

Recordings that land in the folders are ingested, scored and reported as they arrive (see
:mod:`serving.watch`). One line per arrival, a summary on exit; Ctrl-C stops after the
recording in flight (a second Ctrl-C stops at once: what was in flight is redone on restart).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from serving.cli import command, ray_session
from serving.commands.options import LINE_FREQ_HELP, add_watch_args, config_from_args
from serving.watch_config import WatchConfig

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "landings",
        nargs="+",
        metavar="LANDING",
        help="landing folder(s) or fsspec URL(s) (file://, memory://, gs://...) to watch",
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="training run (soz train)")
    p.add_argument("--line-freq", type=float, default=None, help=LINE_FREQ_HELP)
    p.add_argument("--once", action="store_true", help="take what is complete now, then exit")
    add_watch_args(p, WatchConfig, required=True)


def watch_config(
    args: argparse.Namespace, landings: Sequence[str], run_dir: str, **given: Any
) -> WatchConfig:
    """The :class:`WatchConfig` of the parsed :func:`add_watch_args` options (local paths
    made absolute, URLs kept)."""

    def path(p: str) -> str:
        return p if "://" in p else str(Path(p).resolve())

    return config_from_args(
        WatchConfig, args, landings=tuple(path(p) for p in landings), store=path(args.store),
        run_dir=str(Path(run_dir).resolve()), results=str(Path(args.results).resolve()),
        reports=str(Path(args.reports).resolve()), pipeline_args=tuple(shlex.split(args.beam_args)),
        **given,
    )  # fmt: skip


def system_heap() -> None:
    """pyarrow (this process's and the Ray workers' started after this) allocates from the C
    heap, which the watcher trims after each batch (:func:`serving.watch_outputs.
    use_system_heap`); set before pyarrow is first imported, as only then does its C++ half
    read it."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


@command("watch", "Ingest, score and report recordings as they land in folders", add_arguments)
def run(args: argparse.Namespace) -> int:
    system_heap()
    from serving.watch import Watcher

    cfg = watch_config(args, args.landings, args.run)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: stop now, the journal replays the rest
        print("stopping after the recording in flight (Ctrl-C again to stop now)", flush=True)
        stop.set()

    say = lambda line: print(line, flush=True)  # noqa: E731
    watcher = Watcher(cfg, say=say)
    with ray_session(log_to_driver=False):
        import ray

        cpus = int(ray.available_resources().get("CPU", 1))
        watcher.cfg = replace(cfg, num_workers=max(1, min(cpus, os.cpu_count() or 1)))
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            watcher.start()
            say(
                f"watching {', '.join(cfg.landings)} (poll {cfg.poll_s:g} s, stable "
                f"{cfg.stable_s:g} s); models {', '.join(watcher.models)}; Ctrl-C stops"
            )
            summary = watcher.run(stop)
        except KeyboardInterrupt:
            summary = watcher.summary
            summary.interrupted = True
            say("stopped; the recording in flight is redone on the next start")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            watcher.close()
    say(summary.line())
    say(f"  store {cfg.store}\n  results {cfg.results}\n  reports {cfg.reports}/index.html")
    for name, detail in sorted(summary.waiting.items()):
        say(f"  waiting: {name}: {detail}")
    return 0
