"""``soz scan SOURCE...``: list what the cohort readers find, without ingesting anything."""

from __future__ import annotations

import argparse

from serving.cli import command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources", metavar="SOURCE", nargs="+", help="BIDS root, folder or recording file"
    )
    p.add_argument("--label-sheet", default=None, help="SOZ label sheet (CSV/XLSX) for the sources")
    p.add_argument("--cohort", default=None, help="cohort name (default: the folder name)")
    p.add_argument("--line-freq", type=float, default=None, help="line frequency where unknown")
    p.add_argument("--recordings", action="store_true", help="one line per recording")
    p.add_argument(
        "--allow-empty-soz",
        action="store_true",
        help="accept label-sheet entries that leave a recording with no SOZ contact "
        "(default: such a recording is a problem, its contacts would all train as negatives)",
    )


@command(
    "scan", "List the recordings, labels and problems the readers find in cohorts", add_arguments
)
def run(args: argparse.Namespace) -> int:
    from ingest.errors import SozkitError
    from ingest.manifests import recording_warnings, warning_row
    from ingest.sources import SourceOptions, scan_source
    from ingest.store import warnings_frame
    from serving.commands.ingest import print_warnings
    from serving.commands.options import config_from_args

    status = 0
    for source in args.sources:
        try:
            scan = scan_source(source, config_from_args(SourceOptions, args))
        except SozkitError as e:
            print(f"{source}: {e}")
            status = 1
            continue
        print(f"{source}: {scan.summary()}")
        if args.recordings:
            for rec in scan.recordings:
                soz = "unlabelled" if rec.soz is None else f"{len(rec.soz)} SOZ"
                print(
                    f"  {rec.recording_id}: {rec.sfreq:g} Hz, {rec.duration_s:.0f} s, "
                    f"{len(rec.contacts)} contacts, {soz}, {len(rec.seizures)} seizures"
                    + (f", {len(rec.warnings)} warnings" if rec.warnings else "")
                )
        # grouped with counts, exactly as soz ingest prints (and stores) them
        rows = [warning_row(None, str(source), w) for w in scan.warnings]
        print_warnings(
            warnings_frame(rows + [w for r in scan.recordings for w in recording_warnings(r)])
        )
    return status
