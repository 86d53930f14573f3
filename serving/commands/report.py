"""``soz report RESULTS.parquet|RUN_DIR --out DIR``: HTML + PNG pages for neurologists."""

from __future__ import annotations

import argparse
import logging

from serving.cli import command

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RESULTS|RUN_DIR", help="soz score output or a RUN_DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--recording", metavar="ID", help="only this recording")
    which.add_argument(
        "--patient", metavar="ID", help="one page for this patient (cohort/subject or subject)"
    )
    p.add_argument(
        "--by-patient", action="store_true", help="one page per patient instead of per recording"
    )
    p.add_argument("--top", type=int, default=10, help="contacts in the top list (10)")


@command("report", "Write clinician reports (HTML + PNG) from scoring results", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.report import load_results, write_report

    by = "patient" if (args.patient or args.by_patient) else "recording"
    index = write_report(
        load_results(args.source),
        args.out,
        by=by,
        select=args.patient or args.recording,
        top_n=args.top,
    )
    print(f"report: {index}")
    return 0
