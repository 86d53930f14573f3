"""``soz simulate OUT``: write a synthetic SEEG cohort (BIDS iEEG, EDF) to OUT."""

from __future__ import annotations

import argparse
from functools import partial

from ingest.sim_config import SimulationConfig
from serving.cli import command, progress_bar
from serving.commands import options


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are SimulationConfig's (options.config_option).
    p.add_argument("out", metavar="OUT", help="folder to write the BIDS dataset to")
    opt = partial(options.config_option, p, SimulationConfig)
    opt("--subjects", "n_subjects", "number of subjects (%(default)s)")
    opt("--seed", "seed", "master seed (%(default)s)")
    opt("--ictal-runs", "n_ictal_runs", "ictal runs per subject (%(default)s)")
    opt("--interictal-runs", "n_interictal_runs", "interictal runs per subject (%(default)s)")
    opt("--ictal-duration", "ictal_duration_s", "ictal run length in s (%(default)s)")
    p.add_argument(
        "--generator",
        default="epileptor",
        choices=("epileptor", "wendling"),
        help="generator family: 'epileptor' (default: Epileptor network, centres A-C) or "
        "'wendling' (Wendling neural masses, exponential lead field, bipolar/referential montages, "
        "its own noise, artefacts, naming and rates, centres D-F): train on one, test on the other",
    )
    opt(
        "--interictal-duration", "interictal_duration_s", "interictal run length in s (%(default)s)"
    )
    opt(
        "--sfreqs",
        "sfreqs",
        "sampling rates subjects may get (default: the family's own; "
        "epileptor: 256 500 512 1000 1024 2048, wendling: 400 512 600 1000 1024 2000 2048)",
        type=float,
        nargs="+",
    )
    opt(
        "--difficulty",
        "difficulty",
        "0 (obvious onset zone) .. 1 (fast spread, subtle onset) (%(default)s)",
    )
    opt(
        "--label-agreement",
        "label_agreement",
        "agreement (Dice) of clinical SOZ labels with the truth (default: 1 - 0.4 difficulty)",
        type=float,
    )


@command(
    "simulate", "Simulate a synthetic SEEG cohort (Epileptor or Wendling) as BIDS", add_arguments
)
def run(args: argparse.Namespace) -> int:
    from ingest.simulate import simulate_cohort

    cfg = options.config_from_args(SimulationConfig, args, sfreqs=tuple(args.sfreqs))
    with progress_bar("run", "simulate") as progress:
        root = simulate_cohort(args.out, cfg, generator=args.generator, progress=progress)
    print(f"wrote {cfg.n_subjects} subjects ({args.generator} family) to {root}")
    return 0
