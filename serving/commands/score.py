"""``soz score RUN_DIR INPUT... --out results.parquet``: bulk scoring on Ray, with progress.

A local Ray is started (no dashboard) unless ``RAY_ADDRESS`` names a cluster to join; this is the
only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from serving.cli import command, default, progress_bar, ray_session
from serving.config import BulkConfig

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run directory (soz train --out)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="BIDS root, folder, file or store")
    p.add_argument("--out", required=True, metavar="FILE", help="results .parquet")
    p.add_argument(
        "--model", default=default(BulkConfig, "model"),
        help="sozformer | dcgru | svm | baseline (EI on ictal runs, interictal ranking "
        "otherwise) | all fitted models (%(default)s)",
    )  # fmt: skip
    p.add_argument("--fold", type=int, default=None, help="one fold (default: fold ensemble)")
    p.add_argument("--workers", type=int, default=None, help="parallel recordings (CPU count)")
    p.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet for folder inputs")
    p.add_argument("--line-freq", type=float, default=None, help="for files that state none")
    p.add_argument(
        "--batch-size", type=int, default=default(BulkConfig, "batch_size"),
        help="sequences per forward pass (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--flush-every", type=int, default=default(BulkConfig, "flush_every"),
        help="rewrite --out after this many recordings, so a killed run keeps them (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--allow-incomplete", action="store_true",
        help="score with the finished folds of a run whose other folds did not finish",
    )  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="rewrite --out instead of appending")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("score", "Score archived recordings in bulk on Ray (results to Parquet)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.bulk import run_bulk

    cfg = BulkConfig(
        run_dir=str(Path(args.run_dir).resolve()),
        inputs=tuple(str(Path(i).resolve()) for i in args.inputs),
        out=str(Path(args.out).resolve()),
        model=args.model,
        fold=args.fold,
        num_workers=args.workers or os.cpu_count() or 1,
        label_sheet=args.label_sheet,
        line_freq=args.line_freq,
        batch_size=args.batch_size,
        resume=not args.no_resume,
        flush_every=args.flush_every,
        allow_incomplete=args.allow_incomplete,
    )
    with progress_bar("rec", "score", enabled=not args.no_progress) as progress:
        with ray_session(log_to_driver=False):
            report = run_bulk(cfg, progress=progress)
    print(report.summary())
    for f in report.failures[:20]:
        print(f"  failed: {f.get('source_path')}: {f.get('reason')}")
    return 0 if report.n_failed == 0 else 1
