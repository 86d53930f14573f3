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
from serving.cli import command, progress_bar
from serving.commands import options

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="BIDS root, folder or file")
    p.add_argument("--out", required=True, metavar="STORE", help="store path or fsspec URL")
    p.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet (non-BIDS sources)")
    opt = partial(options.config_option, p, IngestConfig)
    opt("--sfreq", "sfreq", "stored rate, Hz (%(default)s)")
    opt("--clip-s", "clip_s", "clip length, s (%(default)s)")
    opt("--block-clips", "block_clips", "clips per block/shard (%(default)s)")
    opt("--l-freq", "l_freq", "high-pass, Hz (%(default)s)", type=float)
    opt("--h-freq", "h_freq", "low-pass edge in Hz", type=float)
    opt("--line-freq", "line_freq", "line frequency where a source has none", type=float)
    opt("--dtype", "dtype", None, choices=("float16", "float32"))
    opt("--workers", "num_workers", "local workers (0: one per core)")
    options.add_beam_args(p, what="the ingest")
    p.add_argument(
        "--allow-empty-soz",
        action="store_true",
        help="accept label-sheet entries that leave a recording with no SOZ contact "
        "(default: such a recording fails, its contacts would all train as negatives)",
    )
    options.add_progress_arg(p)


@command("ingest", "Ingest cohorts into a Zarr clip store (Apache Beam)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from ingest.driver import run_ingest

    cfg = options.config_from_args(IngestConfig, args)
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
