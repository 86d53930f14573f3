"""``soz score RUN_DIR INPUT... --out results.parquet``: bulk scoring on Ray, with progress.

A local Ray is started (no dashboard) unless ``RAY_ADDRESS`` names a cluster to join; this is the
only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
from functools import partial
from pathlib import Path

from serving.cli import command, progress_bar, ray_session
from serving.commands import options
from serving.config import BulkConfig

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_run_args(
        p,
        BulkConfig,
        model_help="sozformer | dcgru | svm | baseline (EI on ictal runs, interictal ranking "
        "otherwise) | all fitted models",
        use="score with",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BIDS root, folder, file or store")
    p.add_argument("--out", required=True, metavar="FILE", help="results .parquet")
    p.add_argument("--workers", type=int, default=None, help="parallel recordings (CPU count)")
    p.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet for folder inputs")
    opt = partial(options.config_option, p, BulkConfig)
    opt("--batch-size", "batch_size", "sequences per forward pass (%(default)s)")
    opt(
        "--flush-every", "flush_every",
        "rewrite --out after this many recordings, so a killed run keeps them (%(default)s)",
    )  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="rewrite --out instead of appending")
    options.add_progress_arg(p)


@command("score", "Score archived recordings in bulk on Ray (results to Parquet)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.bulk import run_bulk

    cfg = options.config_from_args(
        BulkConfig,
        args,
        run_dir=str(Path(args.run_dir).resolve()),
        inputs=tuple(str(Path(i).resolve()) for i in args.inputs),
        out=str(Path(args.out).resolve()),
        num_workers=args.workers or os.cpu_count() or 1,
        resume=not args.no_resume,
    )
    with progress_bar("rec", "score", enabled=not args.no_progress) as progress:
        shared = (cfg.run_dir, *map(_folder, cfg.inputs))  # what the workers read
        with ray_session(log_to_driver=False, shared=shared):
            report = run_bulk(cfg, progress=progress)
    print(report.summary())
    for f in report.failures[:20]:
        print(f"  failed: {f.get('source_path')}: {f.get('reason')}")
    return 0 if report.n_failed == 0 else 1


def _folder(path: str) -> str:
    """The folder a worker reads ``path`` from (itself, or a file's parent)."""
    return path if os.path.isdir(path) else os.path.dirname(path)
