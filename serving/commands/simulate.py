"""``soz simulate OUT``: write a synthetic SEEG cohort (BIDS iEEG, EDF) to OUT."""

from __future__ import annotations

import argparse

from serving.cli import command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="folder to write the BIDS dataset to")
    p.add_argument("--subjects", type=int, default=6, help="number of subjects (default: 6)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    p.add_argument(
        "--generator",
        default="epileptor",
        choices=("epileptor", "wendling"),
        help="generator family: 'epileptor' (default: Epileptor network, centres A-C) or "
        "'wendling' (Wendling neural masses, exponential lead field, bipolar/referential montages, "
        "its own noise, artefacts, naming and rates, centres D-F): train on one, test on the other",
    )
    p.add_argument("--ictal-runs", type=int, default=2, help="ictal runs per subject (default: 2)")
    p.add_argument(
        "--interictal-runs", type=int, default=1, help="interictal runs per subject (default: 1)"
    )
    p.add_argument(
        "--ictal-duration", type=float, default=180.0, help="ictal run length in s (default: 180)"
    )
    p.add_argument(
        "--interictal-duration",
        type=float,
        default=300.0,
        help="interictal run length in s (default: 300)",
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
        default=0.5,
        help="0 (obvious onset zone) .. 1 (fast spread, subtle onset); default 0.5",
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
    from tqdm import tqdm

    from ingest.errors import ConfigError
    from ingest.simulate import SimulationConfig, simulate_cohort

    extra = {} if args.sfreqs is None else {"sfreqs": tuple(args.sfreqs)}
    try:
        cfg = SimulationConfig(
            n_subjects=args.subjects,
            seed=args.seed,
            n_ictal_runs=args.ictal_runs,
            n_interictal_runs=args.interictal_runs,
            ictal_duration_s=args.ictal_duration,
            interictal_duration_s=args.interictal_duration,
            difficulty=args.difficulty,
            label_agreement=args.label_agreement,
            **extra,
        )
    except ConfigError as e:
        print(f"soz simulate: {e}")
        return 2
    with tqdm(total=cfg.n_subjects * (cfg.n_ictal_runs + cfg.n_interictal_runs), unit="run") as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        root = simulate_cohort(args.out, cfg, generator=args.generator, progress=progress)
    print(f"wrote {cfg.n_subjects} subjects ({args.generator} family) to {root}")
    return 0
