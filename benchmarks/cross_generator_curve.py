"""Cross-generator learning curves: the test family's ROC-AUC after every epoch (a diagnostic).

``python -m benchmarks.cross_generator_curve --out WORK`` takes the work folder of a
:mod:`benchmarks.cross_generator` run (its store, feature cache and leave-one-family-out folds)
and trains a neural model on each fold in this process (no Ray), for ``--epochs`` epochs with no
early stopping, scoring after every epoch both the fold's validation patients (the training
family: what early stopping sees) and its test patients (the other family: what the benchmark
reports). It answers two questions the benchmark's single figure cannot: does the
cross-generator ranking improve with more training (under-training) or degrade (the model
learns the training family's signature), and does the validation AUC of the training family
pick the epoch that transfers.

The test figures here are never used to choose anything; they are read, not optimised.
Results: ``cross_generator_curve_<tag>.json`` in ``--results`` (default the work folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.site_norm import NORMS
from serving.commands.options import comma_list
from trainer.config import TrainConfig
from trainer.metrics import aggregate_channel_scores
from trainer.splits import Fold

logger = logging.getLogger(__name__)


def kind_aucs(preds: pd.DataFrame, seizures: dict[str, int]) -> dict[str, float]:
    """Channel ROC-AUC of ``preds`` over all recordings, ictal ones only, interictal ones only."""
    n_sz = preds["recording_id"].map(seizures)
    out = {}
    for kind, part in (
        ("all", preds),
        ("ictal", preds[n_sz > 0]),
        ("interictal", preds[n_sz == 0]),
    ):
        table = aggregate_channel_scores(part)
        y = table["y_true"].to_numpy()
        out[kind] = float(roc_auc_score(y, table["score"])) if len(np.unique(y)) == 2 else None
    return out


def fold_curve(store_url: str, fold: Fold, cfg: TrainConfig, model_name: str) -> dict[str, Any]:
    """Train ``model_name`` on ``fold`` for ``cfg.epochs`` epochs; validation and test AUC per epoch."""
    import torch

    from ingest.store import ClipStore
    from models.registry import build_model
    from trainer.fold_data import FoldData
    from trainer.loop import fit_fold

    data = FoldData.for_fold(store_url, fold, cfg, model_name)
    manifest = ClipStore.open(store_url).recordings()
    seizures = dict(zip(manifest["recording_id"], manifest["n_seizures"], strict=True))
    rows: list[dict[str, Any]] = []
    probe: dict[str, Any] = {}

    def on_epoch(row: dict[str, Any], state: dict[str, Any]) -> None:
        if row["stage"] != "train":
            return
        if "model" not in probe:
            probe["model"] = build_model(model_name, **state["hparams"])
            probe["data"] = dataclasses.replace(data, seq_len=int(probe["model"].seq_len))
        probe["model"].load_state_dict(state["model"])
        probe["model"].eval()
        with torch.no_grad():
            test = probe["data"].score(probe["model"], "test")
        rows.append(
            {
                "epoch": row["epoch"],
                "train_loss": row["train_loss"],
                "val_auc": row["val_auc"],
                "test_auc": kind_aucs(test, seizures),
                "seconds": row["seconds"],
            }
        )
        logger.info("fold %d epoch %d: val %.3f test %s", fold.index, row["epoch"],
                    row["val_auc"], rows[-1]["test_auc"])  # fmt: skip

    fit = fit_fold(model_name, data, on_epoch=on_epoch)
    best = fit.state["best_epoch"]
    return {
        "fold": fold.index,
        "train": sorted({p.split("/")[0] for p in fold.train}),
        "test": sorted({p.split("/")[0] for p in fold.test}),
        "patients": {"train": list(fold.train), "val": list(fold.val), "test": list(fold.test)},
        "epochs": rows,
        "best_epoch_by_val": best,
        "test_at_best_val": kind_aucs(fit.test_predictions, seizures),
    }


def fill_feature_cache(store_url: str, cfg: TrainConfig, model: str) -> None:
    """The store's clip-feature cache of ``model``'s features in ``cfg``, computed where missing."""
    from ingest.store import ClipStore
    from trainer.datasets import recording_table
    from trainer.feature_cache import write_recording_features

    store = ClipStore.open(store_url)
    for r in recording_table(store):
        write_recording_features(store, r.recording_id, cfg.feature_config(model))


def early_stopped(rows: list[dict[str, Any]], epochs: int = 4, patience: int = 2) -> int:
    """The epoch :func:`trainer.loop.fit_fold` would keep with ``epochs`` and ``patience``
    (the benchmark's 4 and 2), from a curve's validation AUCs."""
    best, best_auc, bad = 0, -np.inf, 0
    for i, r in enumerate(rows[:epochs]):
        if r["val_auc"] > best_auc:
            best, best_auc, bad = i, r["val_auc"], 0
        else:
            bad += 1
            if bad >= patience:
                break
    return best


def summarise(paths: list[str]) -> str:
    """A markdown table of curve files: test ROC-AUC after epochs 1, 4 and the last, at the
    epoch the training family's validation patients pick over all epochs, and at the one the
    benchmark's early stopping (4 epochs, patience 2) would keep."""
    lines = [
        "| curve file | direction | after 1 epoch | after 4 | after the last "
        "| best val epoch: test | benchmark's epoch: test |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        result = json.loads(Path(path).read_text())
        for c in result["curves"]:
            aucs = [r["test_auc"]["all"] for r in c["epochs"]]
            at = c["test_at_best_val"]["all"]
            lines.append(
                f"| {Path(path).parent.name}/{Path(path).stem.removeprefix('cross_generator_curve_')} "
                f"| {c['train'][0][0].upper()} -> {c['test'][0][0].upper()} | {aucs[0]:.3f} "
                f"| {aucs[min(3, len(aucs) - 1)]:.3f} | {aucs[-1]:.3f} "
                f"| {c['best_epoch_by_val'] + 1}: {at:.3f} "
                f"| {early_stopped(c['epochs']) + 1}: {aucs[early_stopped(c['epochs'])]:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--summarise":  # python -m ... --summarise FILE.json ...
        print(summarise(argv[1:]), end="")
        return 0
    parser.add_argument("--out", required=True, help="work folder of a cross_generator run")
    parser.add_argument("--run", default=None, help="its run folder (default: the first run-*)")
    parser.add_argument("--model", default="sozformer", choices=("sozformer", "dcgru"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and sampling")
    parser.add_argument("--feature-norm", default="none", choices=("none", *NORMS))
    parser.add_argument("--seqs-per-recording", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fmax", type=float, default=None, help="top of the spectral bands (Hz)")
    parser.add_argument(
        "--augment", default="", help="site augmentations (tilt,line,dropout; default none)"
    )
    parser.add_argument(
        "--clip-extras",
        default="",
        help="per-clip measures of the tokens (spikes,linelength; default none)",
    )
    parser.add_argument(
        "--tilt-sd",
        type=float,
        default=None,
        help="per-contact slope SD of the tilt augmentation (default trainer.site_augment's)",
    )
    parser.add_argument(
        "--in-family",
        default=None,
        metavar="COHORT",
        help="instead of the run's folds: 3 patient-wise folds within COHORT (in-family accuracy)",
    )
    parser.add_argument("--tag", default=None, help="name of the result file")
    parser.add_argument("--results", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    if args.tilt_sd is not None:  # a diagnostic: the training run's own value is a constant
        import trainer.site_augment as site_augment

        site_augment.TILT_SD = (site_augment.TILT_SD[0], args.tilt_sd)
    from trainer.card import read_card

    work = Path(args.out).resolve()
    run_dir = Path(args.run) if args.run else sorted(work.glob("run-*"))[0]
    folds = read_card(run_dir / "card.json")["folds"]
    if args.in_family:
        from trainer.splits import make_folds

        patients = sorted(
            {p for f in folds for p in f.patients if p.startswith(f"{args.in_family}/")}
        )
        folds = make_folds(patients, split="patient", n_folds=3, seed=args.seed)
    cfg = TrainConfig(
        models=(args.model,),
        epochs=args.epochs,
        patience=args.epochs,
        seqs_per_recording=args.seqs_per_recording,
        ssl_epochs=1,
        seed=args.seed,
        lr=args.lr,
        fmax=args.fmax,
        augment=comma_list(args.augment),
        clip_extras=comma_list(args.clip_extras),
        feature_norm=None if args.feature_norm == "none" else args.feature_norm,
    )
    load = os.getloadavg()[0]
    t = time.perf_counter()
    fill_feature_cache(str(work / "store"), cfg, args.model)
    curves = [fold_curve(str(work / "store"), f, cfg.replace(seed=args.seed), args.model)
              for f in folds]  # fmt: skip
    fmax = f"-f{args.fmax:g}" if args.fmax else ""
    aug = f"-{args.augment.replace(',', '+')}" if args.augment else ""
    aug += f"{args.tilt_sd:g}" if args.tilt_sd is not None else ""
    extras = cfg.extras_for(args.model)
    aug += f"-x-{'+'.join(extras)}" if extras else ""
    aug += f"-in-{args.in_family}" if args.in_family else ""
    tag = (
        args.tag
        or f"{work.name}-{args.model}-{args.feature_norm}{aug}{fmax}-e{args.epochs}-s{args.seed}"
    )
    result = {
        "command": " ".join(
            ["python -m benchmarks.cross_generator_curve", *(argv or sys.argv[1:])]
        ),
        "load_avg": f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
        "wall_s": round(time.perf_counter() - t, 1),
        "config": cfg.to_dict(),
        "curves": curves,
    }
    results = Path(args.results) if args.results else work
    results.mkdir(parents=True, exist_ok=True)
    (results / f"cross_generator_curve_{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    for c in curves:
        print(
            f"{'+'.join(c['train'])} -> {'+'.join(c['test'])} (best by val: {c['best_epoch_by_val']})"
        )
        for r in c["epochs"]:
            ta = r["test_auc"]
            print(f"  epoch {r['epoch']:2d} loss {r['train_loss']:.3f} val {r['val_auc']:.3f} "
                  f"test {ta['all']:.3f} (ictal {ta['ictal']:.3f} / interictal {ta['interictal']:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
