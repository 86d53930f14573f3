"""``soz demo``: simulate a cohort, ingest it, cross-validate every model, serve, score, report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from serving.cli import command, json_arg, ray_session


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are DemoConfig's (an option left out is not passed); importing it here would
    # load Beam and Ray for every `soz` command.
    p.add_argument("--out", default=None, help="output folder (demo-output)")
    p.add_argument("--subjects", type=int, default=None, help="patients cross-validated")
    p.add_argument("--heldout", type=int, default=None, help="held-out patients scored by Serve")
    p.add_argument("--seed", type=int, default=None, help="seed of everything")
    p.add_argument("--folds", type=int, default=None, help="cross-validation folds")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs per fold")
    p.add_argument("--sfreq", type=float, default=None, help="clip store rate in Hz")
    p.add_argument(
        "--interictal-duration", type=float, default=None, help="interictal run length, s"
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=("sozformer", "dcgru", "svm", "baseline"),
        help="models to cross-validate (default: all four)",
    )
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers per fold")
    p.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker")
    p.add_argument("--port", type=int, default=None, help="Serve HTTP port on 127.0.0.1")
    p.add_argument(
        "--explain", action=argparse.BooleanOptionalAction, default=None,
        help="explain recordings of the first held-out patient (occlusion) and save one "
        "screenshot per figure kind (default: on; --no-explain leaves it out)",
    )  # fmt: skip
    p.add_argument(
        "--explain-recordings", type=int, default=None, metavar="K",
        help="recordings of that patient explained, ictal first (1; 0: all)",
    )  # fmt: skip
    p.add_argument(
        "--train-json",
        default=None,
        metavar="JSON",
        help='further TrainConfig fields, e.g. \'{"batch_size": 16, "seqs_per_recording": 32}\'',
    )


def demo_config(args: argparse.Namespace):
    """The :class:`serving.demo.DemoConfig` of parsed ``soz demo`` arguments."""
    from serving.demo import DemoConfig

    given = {
        "out_dir": None if args.out is None else os.path.abspath(args.out),  # Ray workers
        "n_subjects": args.subjects,
        "n_heldout": args.heldout,
        "seed": args.seed,
        "folds": args.folds,
        "epochs": args.epochs,
        "sfreq": args.sfreq,
        "interictal_duration_s": args.interictal_duration,
        "models": tuple(args.models) if args.models else None,
        "workers": args.workers,
        "gpus_per_worker": args.gpus_per_worker,
        "port": args.port,
        "explain": args.explain,
        "explain_recordings": args.explain_recordings,
    }
    cfg = DemoConfig(
        **{k: v for k, v in given.items() if v is not None},
        n_jobs=os.cpu_count() or 1,
        train_overrides=json_arg(args.train_json, "--train-json"),
    )
    if args.out is None:  # Ray workers do not share this directory
        cfg = replace(cfg, out_dir=os.path.abspath(cfg.out_dir))
    return cfg


@command("demo", "Run the whole pipeline on a simulated cohort (the main job)", add_arguments)
def run(args: argparse.Namespace) -> int:
    from serving.demo import STAGES, run_demo

    cfg = demo_config(args)
    t0 = time.perf_counter()

    def progress(stage: str, message: str) -> None:
        step = STAGES.index(stage) + 1
        print(
            f"[{time.perf_counter() - t0:6.0f} s] {step}/{len(STAGES)} {stage}: {message}",
            file=sys.stderr,
            flush=True,
        )

    with ray_session(log_to_driver=False):
        result = run_demo(cfg, progress=progress)

    print(f"\nsozkit demo finished in {time.perf_counter() - t0:.0f} s (simulated data)")
    print(
        f"{'model':10s} {'ROC-AUC':>8s} {'PR-AUC':>8s} {'recall':>8s} {'precision':>9s} {'F1':>6s}"
    )
    for model, m in result.headline.items():
        cells = [m.get(k) for k in ("roc_auc", "pr_auc", "macro_recall", "macro_precision")]
        cells.append(m.get("macro_f1"))
        print(
            f"{model:10s} "
            + " ".join(_fmt(v, w) for v, w in zip(cells, (8, 8, 8, 9, 6), strict=True))
        )
    print("(channel ROC/PR-AUC and patient-wise macro metrics, mean over test folds)")
    for h in result.heldout:
        print(
            f"held-out {h['recording_id']}: {h['clinical_soz_in_top']}/{h['clinical_soz']} "
            f"clinical SOZ contacts among the top-ranked, {h['n_soz_calls']} SOZ calls"
        )
    print(f"summary:  {result.summary}")
    print(f"reports:  {result.report}")
    if result.screenshots:
        shots = next(iter(result.screenshots.values())).parent
        print(f"figures:  {shots} ({', '.join(result.screenshots)}: one screenshot per kind)")
    print(f"all:      {result.out_dir / 'demo.json'}")
    return 0


def _fmt(value: float | None, width: int) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.3f}"
