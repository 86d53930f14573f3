"""``soz simulate OUT``: write a synthetic SEEG cohort (BIDS iEEG, EDF) to OUT."""

from __future__ import annotations

import argparse

from serving.cli import command, progress_bar


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are SimulationConfig's (an option left out is not passed).
    p.add_argument("out", metavar="OUT", help="folder to write the BIDS dataset to")
    p.add_argument("--subjects", type=int, default=None, help="number of subjects")
    p.add_argument("--seed", type=int, default=None, help="master seed")
    p.add_argument("--ictal-runs", type=int, default=None, help="ictal runs per subject")
    p.add_argument("--interictal-runs", type=int, default=None, help="interictal runs per subject")
    p.add_argument("--ictal-duration", type=float, default=None, help="ictal run length in s")
    p.add_argument(
        "--generator",
        default="epileptor",
        choices=("epileptor", "wendling"),
        help="generator family: 'epileptor' (default: Epileptor network, centres A-C) or "
        "'wendling' (Wendling neural masses, exponential lead field, bipolar/referential montages, "
        "its own noise, artefacts, naming and rates, centres D-F): train on one, test on the other",
    )
    p.add_argument(
        "--interictal-duration", type=float, default=None, help="interictal run length in s"
    )
    p.add_argument(
        "--sfreqs",
        type=float,
        nargs="+",
        default=None,
        help="sampling rates subjects may get (default: the family's own; epileptor: "
        "256 500 512 1000 1024 2048, wendling: 400 512 600 1000 1024 2000 2048)",
    )
    p.add_argument(
        "--difficulty",
        type=float,
        default=None,
        help="0 (obvious onset zone) .. 1 (fast spread, subtle onset)",
    )
    p.add_argument(
        "--label-agreement",
        type=float,
        default=None,
        help="agreement (Dice) of clinical SOZ labels with the truth (default: 1 - 0.4 difficulty)",
    )


@command(
    "simulate", "Simulate a synthetic SEEG cohort (Epileptor or Wendling) as BIDS", add_arguments
)
def run(args: argparse.Namespace) -> int:
    from ingest.simulate import SimulationConfig, simulate_cohort

    given = {
        "n_subjects": args.subjects,
        "seed": args.seed,
        "n_ictal_runs": args.ictal_runs,
        "n_interictal_runs": args.interictal_runs,
        "ictal_duration_s": args.ictal_duration,
        "interictal_duration_s": args.interictal_duration,
        "difficulty": args.difficulty,
        "label_agreement": args.label_agreement,
        "sfreqs": None if args.sfreqs is None else tuple(args.sfreqs),
    }
    cfg = SimulationConfig(**{k: v for k, v in given.items() if v is not None})
    with progress_bar("run", "simulate") as progress:
        root = simulate_cohort(args.out, cfg, generator=args.generator, progress=progress)
    print(f"wrote {cfg.n_subjects} subjects ({args.generator} family) to {root}")
    return 0
