"""``soz train STORE --model M --out RUN_DIR``: patient-wise cross-validation on Ray (Train + tasks).

A local Ray is started on demand (every core of the machine, no dashboard); with ``RAY_ADDRESS``
set, the existing cluster is joined instead. This is the only place that reads the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from functools import partial

from models.site_norm import NORMS
from serving.cli import command, default, json_arg, ray_session
from serving.commands.options import add_progress_arg, comma_list, config_from_args, config_option
from trainer.calibration import CALIBRATIONS, PRIORS
from trainer.config import (
    MODEL_INPUTS,
    NEURAL_MODELS,
    PLACEMENT_STRATEGIES,
    TrainConfig,
    per_model_text,
)

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="clip store path or fsspec URL (soz ingest)")
    p.add_argument(
        "--model",
        default="all",
        choices=("sozformer", "dcgru", "svm", "baseline", "all"),
        help="model to cross-validate; 'all' = every model and the classical baseline",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    opt = partial(config_option, p, TrainConfig)
    opt("--folds", "n_folds", "CV folds (%(default)s)")
    opt(
        "--split", "split", choices=("patient", "centre", "cohort"),
        help="patient: --folds patient-wise folds; centre: leave one centre out (the "
        "cross-site figure); cohort: leave one cohort out",
    )  # fmt: skip
    opt(
        "--call-rule", "call_rule", choices=("youden", "relative"),
        help="youden: one threshold for every patient; relative: a contact standing out among "
        "its patient's contacts (both chosen on validation patients; default %(default)s)",
    )  # fmt: skip
    opt(
        "--calibration", "calibration", choices=CALIBRATIONS,
        help="probability calibration fitted on validation patients: auto (lowest "
        "leave-one-patient-out Brier), or one map; relative-*: on each contact's standing "
        "among its recording's contacts (better at a new site, worse within one; %(default)s)",
    )  # fmt: skip
    opt(
        "--calibration-prior", "calibration_prior", choices=PRIORS,
        help="match: after the map, each recording's probabilities shifted to the validation "
        "patients' SOZ prevalence (kept the Brier skill score above 0 at a new site); none: "
        "the map alone (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--feature-norm",
        dest="feature_norm_opt",
        default=None,
        choices=("none", *NORMS),
        help="neural inputs relative to the recording's other contacts, per clip and band: "
        "median (subtract their median), robust (robust z-score); detrend: each clip's spectral "
        "tilt removed per contact; kept in the checkpoints, "
        "serving applies the same (default: TrainConfig's)",
    )
    p.add_argument(
        "--augment",
        dest="augment_opt",
        action="append",
        metavar="[MODEL=]KINDS",
        help="training-time site augmentation of the neural sequences, comma-separated: "
        "tilt, line, dropout; 'none' for none; KINDS for every neural model, MODEL=KINDS for "
        "one (repeatable, later ones win; default "
        f"{per_model_text(default(TrainConfig, 'augment'))}; with --resume, the run's own "
        "unless given)",
    )
    p.add_argument(
        "--clip-extras",
        dest="clip_extras_opt",
        action="append",
        metavar="[MODEL=]MEASURES",
        help="per-clip time-domain measures appended to every token of the neural models, "
        "relative to the recording's other contacts at the same moment, comma-separated: "
        "spikes (Janca spike rate), linelength; 'none' for none; MEASURES for every neural "
        "model, MODEL=MEASURES for one (repeatable, later ones win); kept in the checkpoints, "
        "serving computes the same (default "
        f"{per_model_text(default(TrainConfig, 'clip_extras'))}; with --resume, the run's "
        "own, card.json, unless given)",
    )
    opt("--epochs", "epochs", "maximum epochs per fold (%(default)s)")
    opt("--patience", "patience", "early-stopping patience (%(default)s)")
    add_ray_args(p)
    opt("--batch-size", "batch_size", "sequences per step and worker (%(default)s)")
    opt(
        "--seqs-per-recording", "seqs_per_recording", "sequences per recording, epoch (%(default)s)"
    )
    opt("--n-bands", "n_bands", "spectral bands per clip (0: every FFT bin; %(default)s)")
    opt("--lr", "lr", "AdamW learning rate (%(default)s)")
    opt("--ssl-epochs", "ssl_epochs", "DCGRU self-supervised epochs")
    p.add_argument(
        "--hparams",
        default=None,
        metavar="JSON",
        help='model keyword arguments, e.g. \'{"sozformer": {"d_model": 128}}\'',
    )
    opt("--resume", "resume", "continue an interrupted run in RUN_DIR", action="store_true")
    opt("--seed", "seed", "seed of splits, sampling, models (%(default)s)")
    add_progress_arg(p, "per-fold progress lines")


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """What each fold asks of the Ray cluster."""
    opt = partial(config_option, p, TrainConfig)
    opt("--workers", "num_workers", "Ray Train workers (DDP) per fold")
    opt("--cpus-per-worker", "cpus_per_worker", "CPUs (torch threads) per worker")
    opt("--gpus-per-worker", "gpus_per_worker", "GPUs per worker (0: CPU training)")
    opt(
        "--no-bf16", "bf16", "train in float32 on GPU too (default: bfloat16 autocast where "
        "the GPU supports it)", action="store_false",
    )  # fmt: skip
    opt("--parallel-folds", "max_parallel_folds", "folds at once (default: all that fit)", type=int)
    opt(
        "--max-failures", "max_failures",
        "restarts of a fold after a lost worker or node, from its last epoch (%(default)s)",
    )  # fmt: skip
    opt(
        "--placement", "placement_strategy",
        "where a fold's workers go: PACK few nodes, SPREAD different nodes (%(default)s)",
        choices=PLACEMENT_STRATEGIES,
    )  # fmt: skip


@command("train", "Cross-validate SOZ models patient-wise on Ray Train", add_arguments)
def run(args: argparse.Namespace) -> int:
    from trainer.config import ALL_MODELS
    from trainer.run import recorded_inputs, run_training

    cfg = config_from_args(
        TrainConfig,
        args,
        models=ALL_MODELS if args.model == "all" else (args.model,),
        n_bands=args.n_bands or None,
        model_hparams=json_arg(args.hparams, "--hparams"),
        **site_options(args, recorded_inputs(_absolute(args.out)) if args.resume else None),
    )
    t0 = time.perf_counter()

    def progress(done: int, total: int, label: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {done}/{total} {label}", file=sys.stderr)

    try:
        store, out_dir = _absolute(args.store), _absolute(args.out)
        if "://" not in out_dir:
            os.makedirs(out_dir, exist_ok=True)  # so that every node can be checked to see it
        # On the way out it stops this session's trainers with Ray.
        with ray_session(shared=(store, out_dir)):
            out = run_training(
                store,
                out_dir,
                cfg,
                progress=None if args.no_progress else progress,
            )
    except KeyboardInterrupt:
        print(
            f"soz train: interrupted; folds finished so far are kept in {args.out} "
            "(run again with --resume to continue).",
            file=sys.stderr,
        )
        return 130
    for model, summary in out["models"].items():
        mean = summary["mean"]
        auc, f1 = mean.get("roc_auc"), mean.get("macro_f1")
        print(
            f"{model:10s} channel ROC-AUC {auc if auc is None else f'{auc:.3f}'}  "
            f"macro F1 {f1 if f1 is None else f'{f1:.3f}'}"
        )
    print(f"wrote {out['run_dir']} (summary: {out['summary']})")
    return 0


def _absolute(path: str) -> str:
    """Local paths made absolute here: Ray workers do not share this process's directory."""
    return path if "://" in path else os.path.abspath(path)


def site_options(args: argparse.Namespace, recorded: Mapping[str, Mapping] | None = None) -> dict:
    """``feature_norm``, ``augment`` and ``clip_extras`` of ``--feature-norm`` /
    ``--augment`` / ``--clip-extras`` where given.

    ``recorded``: the inputs of the run being resumed (:func:`trainer.run.recorded_inputs`):
    an option given changes them, one not given leaves them; without ``recorded`` the options
    change :class:`TrainConfig`'s defaults.
    """
    out: dict = {}
    if args.feature_norm_opt is not None:
        out["feature_norm"] = None if args.feature_norm_opt == "none" else args.feature_norm_opt
    for name in MODEL_INPUTS:
        given = getattr(args, f"{name}_opt")
        base = dict(recorded[name]) if recorded else None
        if given:
            start = base if base is not None else default(TrainConfig, name)
            out[name] = per_model_options(given, start)
        elif base is not None:
            out[name] = base
    return out


def per_model_options(values: list[str], base: Mapping[str, tuple[str, ...]]) -> dict:
    """``{model: names}``: ``base`` changed by each ``--clip-extras`` / ``--augment`` value in
    turn: ``"a,b"`` (or ``"none"``) for every neural model, ``"MODEL=a,b"`` for one."""
    out = dict(base)
    for value in values:
        model, sep, names = value.partition("=")
        if sep:
            out[model.strip()] = comma_list(names)
        else:
            out = dict.fromkeys(NEURAL_MODELS, comma_list(value))
    return out
