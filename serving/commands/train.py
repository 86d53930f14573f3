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
from functools import partial

from serving.cli import command, default, json_arg, ray_session
from trainer.config import TrainConfig

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
    d = partial(default, TrainConfig)
    p.add_argument("--folds", type=int, default=d("n_folds"), help="CV folds (%(default)s)")
    p.add_argument(
        "--split",
        default=d("split"),
        choices=("patient", "centre", "cohort"),
        help="patient: --folds patient-wise folds; centre: leave one centre out (the "
        "cross-site figure); cohort: leave one cohort out",
    )
    p.add_argument(
        "--call-rule",
        default=d("call_rule"),
        choices=("youden", "relative"),
        help="youden: one threshold for every patient; relative: a contact standing out among "
        "its patient's contacts (both chosen on validation patients; default %(default)s)",
    )
    p.add_argument(
        "--epochs", type=int, default=d("epochs"), help="maximum epochs per fold (%(default)s)"
    )
    p.add_argument(
        "--patience", type=int, default=d("patience"), help="early-stopping patience (%(default)s)"
    )
    p.add_argument(
        "--workers", type=int, default=d("num_workers"), help="Ray Train workers (DDP) per fold"
    )
    p.add_argument(
        "--cpus-per-worker", type=int, default=d("cpus_per_worker"),
        help="CPUs (torch threads) per worker",
    )  # fmt: skip
    p.add_argument(
        "--gpus-per-worker", type=float, default=d("gpus_per_worker"),
        help="GPUs per worker (0: CPU training)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=d("batch_size"),
        help="sequences per step and worker (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--seqs-per-recording", type=int, default=d("seqs_per_recording"),
        help="sequences per recording and epoch (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--n-bands", type=int, default=d("n_bands"),
        help="spectral bands per clip (0: every FFT bin; %(default)s)",
    )  # fmt: skip
    p.add_argument("--lr", type=float, default=d("lr"), help="AdamW learning rate (%(default)s)")
    p.add_argument(
        "--ssl-epochs", type=int, default=d("ssl_epochs"), help="DCGRU self-supervised epochs"
    )
    p.add_argument(
        "--parallel-folds", type=int, default=None, help="folds at once (default: as many as fit)"
    )
    p.add_argument(
        "--hparams",
        default=None,
        metavar="JSON",
        help='model keyword arguments, e.g. \'{"sozformer": {"d_model": 128}}\'',
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN_DIR")
    p.add_argument(
        "--seed", type=int, default=d("seed"), help="seed of splits, sampling, models (%(default)s)"
    )
    p.add_argument("--no-progress", action="store_true", help="no per-fold progress lines")


@command("train", "Cross-validate SOZ models patient-wise on Ray Train", add_arguments)
def run(args: argparse.Namespace) -> int:
    from trainer.config import ALL_MODELS
    from trainer.run import run_training

    cfg = TrainConfig(
        models=ALL_MODELS if args.model == "all" else (args.model,),
        n_folds=args.folds,
        split=args.split,
        call_rule=args.call_rule,
        epochs=args.epochs,
        patience=args.patience,
        num_workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch_size,
        seqs_per_recording=args.seqs_per_recording,
        n_bands=args.n_bands or None,
        lr=args.lr,
        ssl_epochs=args.ssl_epochs,
        max_parallel_folds=args.parallel_folds,
        model_hparams=json_arg(args.hparams, "--hparams"),
        resume=args.resume,
        seed=args.seed,
    )
    t0 = time.perf_counter()

    def progress(done: int, total: int, label: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {done}/{total} {label}", file=sys.stderr)

    try:
        with ray_session():  # on the way out it stops this session's trainers with Ray
            out = run_training(
                _absolute(args.store),
                _absolute(args.out),
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
