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
    p.add_argument(
        "--explain", action="store_true",
        help="per-window probabilities of every fold model and occlusion attribution of the "
        "windows behind the top and clinical SOZ contacts (neural models; needs the run)",
    )  # fmt: skip
    p.add_argument(
        "--run", metavar="RUN_DIR", help="the training run of the models (--explain with a "
        "results file; a RUN_DIR source is its own run)",
    )  # fmt: skip
    p.add_argument("--store", metavar="STORE", help="clip store holding the recordings' traces")
    p.add_argument("--line-freq", type=float, default=None, help="for files that state none")
    p.add_argument("--pdf", action="store_true", help="also print each page to PDF (Chromium)")


@command("report", "Write clinician reports (HTML + PNG) from scoring results", add_arguments)
def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ingest.errors import ConfigError
    from serving.report import select_rows, write_report
    from serving.report_results import load_results

    by = "patient" if (args.patient or args.by_patient) else "recording"
    select = args.patient or args.recording
    results = load_results(args.source)
    store = None
    if args.store:
        from ingest.store import ClipStore

        store = ClipStore.open(args.store)
    explanations = None
    if args.explain:
        run_dir = args.run or (args.source if Path(args.source).is_dir() else None)
        if run_dir is None:
            raise ConfigError(
                "--explain needs the models: give --run RUN_DIR (the run that scored the "
                "results), or the RUN_DIR itself as the source."
            )
        from serving.cli import progress_bar
        from serving.explain import explain_results

        with progress_bar("rec", "explain") as progress:
            explanations, notes = explain_results(
                select_rows(results, by, select), run_dir, store=store,
                line_freq=args.line_freq, progress=progress,
            )  # fmt: skip
        for note in notes:
            print(f"explain: {note}")
        seconds = sum(e.seconds for e in explanations.values())
        print(f"explain: {len(explanations)} recording(s) x model explained in {seconds:.1f} s")
    index = write_report(
        results, args.out, by=by, select=select, top_n=args.top, store=store,
        explanations=explanations, pdf=args.pdf,
    )  # fmt: skip
    print(f"report: {index}")
    if args.pdf:
        print(f"pdf:    {len(list(Path(args.out).glob('*.pdf')))} page(s) in {args.out}")
    return 0
