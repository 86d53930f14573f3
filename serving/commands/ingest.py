"""``soz ingest SOURCE... --out STORE``: cohorts -> clip store (Apache Beam).

Prints every warning of the readers (grouped by kind, kept in the store's ``warnings.parquet``)
and every failure. Exit status: 0 when everything given is in the store; 1 when some recordings
failed; 2 when nothing of the sources could be ingested (each source empty, unreadable or
failed). A source that cannot be read (absent, empty) is reported and the other sources are
ingested: alone it does not make the status non-zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from functools import partial

from ingest.config import IngestConfig
from serving.cli import command, default, progress_bar

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="BIDS root, folder or file")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URL")
    p.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet (non-BIDS sources)")
    d = partial(default, IngestConfig)
    p.add_argument("--sfreq", type=float, default=d("sfreq"), help="stored rate, Hz (%(default)s)")
    p.add_argument("--clip-s", type=float, default=d("clip_s"), help="clip length, s (%(default)s)")
    p.add_argument(
        "--block-clips", type=int, default=d("block_clips"),
        help="clips per block/shard (%(default)s)",
    )  # fmt: skip
    p.add_argument("--l-freq", type=float, default=d("l_freq"), help="high-pass, Hz (%(default)s)")
    p.add_argument("--h-freq", type=float, default=d("h_freq"), help="low-pass edge in Hz")
    p.add_argument(
        "--line-freq", type=float, default=d("line_freq"),
        help="line frequency where a source has none",
    )  # fmt: skip
    p.add_argument("--dtype", choices=("float16", "float32"), default=d("dtype"))
    p.add_argument(
        "--workers", type=int, default=d("num_workers"), help="local workers (0: one per core)"
    )
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
    from ingest.driver import run_ingest

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
    with progress_bar("block", "ingest", enabled=not args.no_progress) as progress:
        report = run_ingest(  # absolute paths: a distributed runner's workers have another cwd
            [_absolute(s) for s in args.sources],
            _absolute(args.out),
            cfg,
            label_sheet=args.label_sheet,
            allow_empty_soz=args.allow_empty_soz,
            pipeline_args=shlex.split(args.beam_args),
            progress=progress,
        )
    print(
        f"{report.n_ingested} recordings ingested ({report.n_clips} clips), "
        f"{report.n_skipped} already complete, {report.n_failed} failed, "
        f"{report.elapsed_s:.1f} s -> {report.store_url}"
    )
    print_warnings(report.warnings)
    for rid, owner in report.busy.items():
        print(f"  LEFT ALONE {rid}: another ingest ({owner}) is writing it; re-run once it ends.")
    sources = report.failures["stage"] == "source"
    for row in report.failures[sources].itertuples():
        print(f"  SOURCE NOT INGESTED {row.source}: {row.reason} Fix: {row.fix}")
    for row in report.failures[~sources].itertuples():
        print(f"  FAILED {row.source} [{row.stage}]: {row.reason} Fix: {row.fix}")
    if report.n_ingested + report.n_skipped == 0 and (report.n_failed or report.busy):
        return 2  # nothing of the sources is in the store
    return 1 if (~sources).sum() else 0


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def print_warnings(warnings) -> None:
    """Every warning of the run, grouped by kind (most frequent first), with counts."""
    if not len(warnings):
        return
    counts = warnings["kind"].value_counts()
    print(f"{len(warnings)} warnings: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    for kind in counts.index:
        print(f"  {kind} ({counts[kind]}):")
        for row in warnings[warnings["kind"] == kind].itertuples():
            where = row.recording_id if isinstance(row.recording_id, str) else row.source
            print(f"    {where}: {row.message}")
