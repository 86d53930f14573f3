"""``soz ingest SOURCE... --out STORE``: cohorts -> clip store (Apache Beam)."""

from __future__ import annotations

import argparse
import logging
import shlex

from serving.cli import command

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="BIDS root, folder or file")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URL")
    p.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet (non-BIDS sources)")
    p.add_argument("--sfreq", type=float, default=1000.0, help="stored rate in Hz (1000)")
    p.add_argument("--clip-s", type=float, default=5.0, help="clip length in s (5)")
    p.add_argument("--block-clips", type=int, default=60, help="clips per block/shard (60)")
    p.add_argument("--l-freq", type=float, default=0.5, help="high-pass edge in Hz (0.5)")
    p.add_argument("--h-freq", type=float, default=None, help="low-pass edge in Hz")
    p.add_argument(
        "--line-freq", type=float, default=None, help="line frequency where a source has none"
    )
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--workers", type=int, default=0, help="local workers (0: one per core)")
    p.add_argument(
        "--beam-args",
        default="",
        metavar="'OPTIONS'",
        help="Beam pipeline options, quoted: '--runner=FlinkRunner --flink_master=host:8081' "
        "(default: local FnApiRunner over every core)",
    )
    p.add_argument(
        "--allow-empty-soz",
        action="store_true",
        help="accept label-sheet entries that leave a recording with no SOZ contact "
        "(default: such a recording fails, its contacts would all train as negatives)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("ingest", "Ingest cohorts into a Zarr clip store (Apache Beam)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from ingest.config import IngestConfig
    from ingest.pipeline import run_ingest

    cfg = IngestConfig(
        sfreq=args.sfreq,
        clip_s=args.clip_s,
        block_clips=args.block_clips,
        l_freq=args.l_freq,
        h_freq=args.h_freq,
        line_freq=args.line_freq,
        dtype=args.dtype,
        num_workers=args.workers,
    )
    bar = None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="block", desc="ingest")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        report = run_ingest(
            args.sources,
            args.out,
            cfg,
            label_sheet=args.label_sheet,
            allow_empty_soz=args.allow_empty_soz,
            pipeline_args=shlex.split(args.beam_args),
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{report.n_ingested} recordings ingested ({report.n_clips} clips), "
        f"{report.n_skipped} already complete, {report.n_failed} failed, "
        f"{report.elapsed_s:.1f} s -> {report.store_url}"
    )
    for row in report.failures.itertuples():
        print(f"  FAILED {row.source} [{row.stage}]: {row.reason} Fix: {row.fix}")
    return 1 if report.n_failed else 0
