"""Accuracy benchmark: every model against the classical baseline, on one simulated cohort.

Runs the whole pipeline the way a user would, on data whose truth is known:

1. **simulate** a cohort of ``--subjects`` patients (:func:`ingest.simulate.simulate_cohort`,
   the default :class:`~ingest.simulate.SimulationConfig` otherwise: 3 centres, mixed sampling
   rates and line frequencies, 2 ictal + 1 interictal run per patient, clinical SOZ labels that
   agree ~80 % (Dice) with the true onset contacts);
2. **ingest** it with Beam into a clip store at ``--sfreq`` (500 Hz by default: the SVM keeps its
   wavelet bands up to 250 Hz, SOZFormer / DCGRU get 64 log-spaced bands up to the Nyquist rate);
3. **train**: one :func:`trainer.run.run_training` of SOZFormer, DCGRU, the SVM and the classical
   baseline, 5-fold patient-wise cross-validation (the same folds for all), on a local Ray;
4. **evaluate**: per model, channel ROC-AUC, PR-AUC (with the SOZ prevalence, its chance level)
   and patient-wise macro recall / precision / F1, mean and std over folds and pooled over all
   test patients, against the clinical labels the models were trained on AND against the
   simulator's true SOZ (``derivatives/sozkit-truth``). The label ceiling (the AUC against the
   clinical labels of a model that knew the true SOZ exactly) says how far label noise alone caps
   the first figure. An SVM ablation without its spike features is cross-validated on the
   same folds (it reuses the cached features: seconds).

Results: ``benchmarks/results/accuracy.json`` (figures, configs, seeds, folds, wall time per
stage) and ``benchmarks/results/accuracy.md`` (the table, labelled "simulated data", beside the
figures the original work reported on real data, labelled "not comparable"); the table is printed.

Usage::

    python -m benchmarks.accuracy [--subjects 20] [--seed 0] [--epochs N] [--out DIR] [--quick]
    python -m benchmarks.accuracy --protocol cross-generator [benchmarks.cross_generator options]

``--out`` holds the cohort, the store and the run (default: a new temporary folder). Re-running
with the same ``--out`` reuses a finished simulation, skips recordings already ingested and
resumes the training run, so an interrupted benchmark continues where it stopped. ``--quick``
(6 patients, 3 folds, 2 epochs, short runs) checks the script end to end in a few minutes and
writes its results under ``--out`` only, never over the committed ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.accuracy_report import METRICS, render_markdown  # noqa: F401  (re-exported)
from ingest.bids_writer import TRUTH_DIR
from ingest.config import IngestConfig
from ingest.driver import run_ingest
from ingest.errors import SozkitError
from ingest.simulate import SimulationConfig, simulate_cohort
from trainer.config import ALL_MODELS, TrainConfig
from trainer.metrics import evaluate_fold, summarise_folds
from trainer.splits import Fold, patient_id
from trainer.summary import REFERENCE

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
_SIM_MARKER = "sozkit-accuracy-simulation.json"


def simulate_stage(root: Path, cfg: SimulationConfig, *, n_jobs: int) -> tuple[float, bool]:
    """Simulate the cohort into ``root`` unless a finished simulation of ``cfg`` is there.

    Returns
    -------
    wall_s : float
        Wall seconds the simulation took (when reused: as recorded when it was made).
    reused : bool
        Whether a finished simulation of the same config was found.
    """
    marker = root / _SIM_MARKER
    wanted = json.loads(json.dumps(asdict(cfg), default=str))
    if marker.is_file():
        saved = json.loads(marker.read_text("utf-8"))
        if saved.get("config") == wanted:
            logger.info("reusing the simulated cohort in %s", root)
            return float(saved["wall_s"]), True
    t = time.perf_counter()
    simulate_cohort(root, cfg, n_jobs=n_jobs)
    wall = time.perf_counter() - t
    # Written last: a simulation cut short is redone.
    marker.write_text(json.dumps({"config": wanted, "wall_s": wall}), encoding="utf-8")
    return wall, False


def truth_table(root: Path, cohort: str) -> pd.DataFrame:
    """The simulator's true SOZ and the clinical label of every contact of the cohort.

    Parameters
    ----------
    root : Path
        BIDS root of the simulated cohort.
    cohort : str
        The cohort name the store gives these patients (the patient id is ``cohort/subject``).

    Returns
    -------
    DataFrame
        Columns ``patient``, ``channel``, ``soz_true``, ``soz_label`` (0/1) and ``ez_share`` (the
        fraction of the contact's lead field that comes from epileptogenic regions), one row per
        contact.
    """
    frames = []
    for path in sorted((root / TRUTH_DIR).glob("sub-*/sub-*_desc-truth_channels.tsv")):
        subject = path.parent.name.removeprefix("sub-")
        t = pd.read_csv(path, sep="\t")
        frames.append(
            pd.DataFrame(
                {
                    "patient": patient_id(cohort, subject),
                    "channel": t["name"].astype(str),
                    "soz_true": t["soz_true"].astype(int),
                    "soz_label": t["soz_label"].astype(int),
                    "ez_share": t["ez_share"].astype(float),
                }
            )
        )
    if not frames:
        raise SozkitError(
            f"no truth tables under {root / TRUTH_DIR}; point --out at a simulated cohort."
        )
    return pd.concat(frames, ignore_index=True)


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None


def truth_metrics(predictions: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """Channel ROC-AUC of a model's test scores against the TRUE SOZ of the simulator.

    Scores are aggregated like :func:`trainer.metrics.evaluate_fold` does (mean over a patient's
    recordings per channel) before ranking.

    Parameters
    ----------
    predictions : DataFrame
        ``RUN_DIR/<model>/predictions.parquet`` (``fold, patient, channel, score``...).
    truth : DataFrame
        From :func:`truth_table`.

    Returns
    -------
    dict
        ``roc_auc_true``: mean / std over folds and pooled; ``n_channels`` matched.
    """
    table = (
        predictions.groupby(["fold", "patient", "channel"], as_index=False)["score"]
        .mean()
        .merge(truth, on=["patient", "channel"], how="inner", validate="m:1")
    )
    per_fold = [
        _auc(g["soz_true"].to_numpy(), g["score"].to_numpy()) for _, g in table.groupby("fold")
    ]
    defined = [a for a in per_fold if a is not None]
    return {
        "n_channels": len(table),
        "folds": per_fold,
        "mean": float(np.mean(defined)) if defined else None,
        "std": float(np.std(defined)) if defined else None,
        "pooled": _auc(table["soz_true"].to_numpy(), table["score"].to_numpy()),
    }


def label_ceiling(truth: pd.DataFrame, patients: list[str]) -> dict[str, Any]:
    """What label noise allows: oracles that know the simulator's truth, scored on clinical labels.

    The simulator swaps some true SOZ contacts for nearby ones, so the clinical labels are
    spatially close to the truth: a graded oracle (the contact's EZ lead-field share) ranks those
    neighbours above far contacts and scores higher than the binary true set, whose ties cost it.

    Returns
    -------
    dict
        ``roc_auc``: ROC-AUC of ``soz_true`` (as a score) against ``soz_label``;
        ``roc_auc_ez_share``: the same for ``ez_share``; ``dice``: the agreement of the two
        sets; ``prevalence_label`` / ``prevalence_true``; over the contacts of ``patients``.
    """
    t = truth[truth["patient"].isin(patients)]
    y, s = t["soz_label"].to_numpy(), t["soz_true"].to_numpy()
    both = int((y & s).sum())
    return {
        "roc_auc": _auc(y, s),
        "roc_auc_ez_share": _auc(y, t["ez_share"].to_numpy()),
        "dice": 2 * both / max(int(y.sum() + s.sum()), 1),
        "prevalence_label": float(y.mean()),
        "prevalence_true": float(s.mean()),
        "n_channels": len(t),
    }


def svm_without_spikes(store_url: str, run_dir: Path, folds: list[Fold], cfg: TrainConfig) -> dict:
    """Cross-validate the SVM on the same folds without its spike-detector features.

    Reads the features the run cached (no recomputation) and drops ``spike_rate`` (and its
    peak, ``peak_spike_rate``).

    Returns
    -------
    dict
        :func:`trainer.metrics.summarise_folds` of the ablated SVM, plus the feature columns used.
    """
    from ingest.store import ClipStore
    from trainer.datasets import recording_table
    from trainer.svm_stage import compute_features, train_svm_fold

    recs = recording_table(ClipStore.open(store_url))
    features = compute_features(store_url, [r.recording_id for r in recs])
    ablated = features.drop(columns=[c for c in features.columns if c.endswith("spike_rate")])
    results = []
    for fold in folds:
        res = train_svm_fold(ablated, recs, fold, seed=cfg.seed, hparams=cfg.hparams_for("svm"))
        results.append(evaluate_fold(res.val_predictions, res.test_predictions))
    summary = summarise_folds(results)
    return {
        "features": [c for c in ablated.columns if c not in ("recording_id", "channel_index")],
        **{k: summary[k] for k in ("mean", "std", "pooled")},
    }


def training_epochs(model_dir: Path, folds: list[Fold]) -> list[dict[str, Any]]:
    """Per fold of a neural model: its best (kept) epoch and validation AUC of every epoch.

    A best epoch at the last epoch says the model was still improving when training stopped.
    """
    out = []
    for fold in folds:
        fold_metrics = json.loads((model_dir / f"fold_{fold.index}" / "metrics.json").read_text())
        history = [h for h in fold_metrics.get("history", []) if h.get("stage") == "train"]
        out.append(
            {
                "fold": fold.index,
                "best_epoch": fold_metrics.get("best_epoch"),
                "epochs_run": len(history),
                "val_auc": [h.get("val_auc") for h in history],
                "train_loss": [h.get("train_loss") for h in history],
            }
        )
    return out


#: DCGRU variants ``--dcgru-variants`` trains on the first folds: TrainConfig changes.
DCGRU_VARIANTS: dict[str, dict[str, Any]] = {
    "16 epochs (patience 16)": {"epochs": 16, "patience": 16},
    "dense graph (top_k None)": {"model_hparams": {"dcgru": {"top_k": None}}},
}


def neural_variants(
    store_url: str,
    work: Path,
    folds: list[Fold],
    cfg: TrainConfig,
    variants: dict[str, dict[str, Any]],
    *,
    model: str = "dcgru",
) -> dict[str, Any]:
    """Train variants of one neural model on ``folds`` (same store, same folds, same seeds).

    Each variant is ``cfg`` with some fields changed; it trains in ``work/variants/<k>`` through
    :func:`trainer.ray_train.train_folds` (needs a running Ray).

    Returns
    -------
    dict
        Per variant: its changes, wall seconds and per fold the best epoch, best validation
        ROC-AUC and test ROC-AUC / PR-AUC.
    """
    from trainer.ray_train import train_folds

    out = {}
    for k, (name, changes) in enumerate(variants.items()):
        vcfg = cfg.replace(models=(model,), resume=False, **changes)
        t = time.perf_counter()
        results = train_folds(
            store_url, [(model, f) for f in folds], vcfg, storage_root=work / "variants" / str(k)
        )
        per_fold = []
        for r in results:
            test = evaluate_fold(r.val_predictions, r.test_predictions)["test"]
            per_fold.append(
                {
                    "fold": r.fold,
                    "best_epoch": r.best_epoch,
                    "best_val_auc": r.best_val_auc,
                    "test_roc_auc": test["roc_auc"],
                    "test_pr_auc": test["pr_auc"],
                }
            )
        out[name] = {"changes": changes, "wall_s": time.perf_counter() - t, "folds": per_fold}
    return out


def model_figures(summary: dict) -> dict[str, Any]:
    """The figures of one model the benchmark reports (from its ``metrics.json`` summary)."""
    pooled = summary["pooled"]
    macro = summary.get("pooled_macro", {})
    return {
        "n_folds": summary["n_folds"],
        "fold_roc_auc": [f.get("roc_auc") for f in summary["folds"]],
        "mean": {k: summary["mean"].get(k) for k, _ in METRICS + (("prevalence", ""),)},
        "std": {k: summary["std"].get(k) for k, _ in METRICS + (("prevalence", ""),)},
        "pooled": {
            **{
                k: pooled.get(k)
                for k in ("roc_auc", "pr_auc", "prevalence", "recall", "precision", "f1")
            },
            **{k: pooled.get(k) for k in ("n_channels", "n_positive", "tn", "fp", "fn", "tp")},
            "macro": macro,
        },
    }


def run_benchmark(
    work: Path,
    sim_cfg: SimulationConfig,
    ingest_cfg: IngestConfig,
    train_cfg: TrainConfig,
    *,
    n_jobs: int = 2,
    dcgru_variant_folds: int = 0,
) -> dict:
    """Simulate, ingest, cross-validate every model and evaluate; see the module docstring.

    Needs a running Ray (``main`` starts a local one). ``dcgru_variant_folds > 0`` also trains
    the :data:`DCGRU_VARIANTS` on that many first folds (:func:`neural_variants`).

    Returns
    -------
    dict
        What ``accuracy.json`` holds.
    """
    from trainer.run import run_training

    work.mkdir(parents=True, exist_ok=True)
    cohort, store, run_dir = work / "cohort", work / "store", work / "run"
    wall: dict[str, float] = {}

    wall["simulate"], reused = simulate_stage(cohort, sim_cfg, n_jobs=n_jobs)
    logger.info("simulate: %.0f s%s", wall["simulate"], " (reused)" if reused else "")

    t = time.perf_counter()
    report = run_ingest([str(cohort)], str(store), ingest_cfg)
    if report.n_ingested + report.n_skipped == 0 or len(report.failures):
        raise SozkitError(f"ingest failed for some recordings:\n{report.failures}")
    wall["ingest"] = time.perf_counter() - t
    logger.info("ingest: %.0f s", wall["ingest"])

    t = time.perf_counter()
    cfg = train_cfg.replace(resume=(run_dir / "card.json").is_file())
    trained = run_training(str(store), str(run_dir), cfg)
    wall["train"] = time.perf_counter() - t
    logger.info("train: %.0f s", wall["train"])

    t = time.perf_counter()
    folds = [Fold.from_dict(d) for d in trained["folds"]]
    patients = sorted({p for f in folds for p in f.test})
    cohort_name = patients[0].split("/")[0]
    truth = truth_table(cohort, cohort_name)
    models = {}
    for name, summary in trained["models"].items():
        preds = pd.read_parquet(run_dir / name / "predictions.parquet")
        models[name] = {**model_figures(summary), "vs_true_soz": truth_metrics(preds, truth)}
        if name in cfg.neural_models:
            models[name]["training"] = training_epochs(run_dir / name, folds)
    ablations = {}
    if "svm" in cfg.models:
        ablations["svm without spike features"] = svm_without_spikes(
            str(store), run_dir, folds, cfg
        )
    wall["evaluate"] = time.perf_counter() - t
    variants = {}
    if dcgru_variant_folds:
        t = time.perf_counter()
        variants = neural_variants(
            str(store), work, folds[:dcgru_variant_folds], cfg, DCGRU_VARIANTS
        )
        wall["dcgru_variants"] = time.perf_counter() - t

    return {
        "models": models,
        "label_ceiling": label_ceiling(truth, patients),
        "ablations": ablations,
        "dcgru_variants": variants,
        "folds": trained["folds"],
        "wall_s": {k: round(v, 1) for k, v in wall.items()},
        "simulation_reused": reused,
        "ingest": {"n_ingested": report.n_ingested, "n_skipped": report.n_skipped},
        "run_dir": str(run_dir),
        "config": {
            "simulation": asdict(sim_cfg),
            "ingest": ingest_cfg.to_dict(),
            "train": cfg.to_dict(),
        },
        "seeds": {"simulation": sim_cfg.seed, "splits_and_models": cfg.seed},
    }


def _configs(args: argparse.Namespace) -> tuple[SimulationConfig, IngestConfig, TrainConfig]:
    sim_kw: dict[str, Any] = {"n_subjects": args.subjects, "seed": args.seed}
    train_kw: dict[str, Any] = {"models": ALL_MODELS, "seed": args.seed, "n_folds": args.folds}
    if args.quick:
        sim_kw.update(interictal_duration_s=200.0)
        train_kw.update(seqs_per_recording=4, ssl_epochs=1, patience=2)
    if args.epochs is not None:
        train_kw["epochs"] = args.epochs
    return (
        SimulationConfig(**sim_kw),
        IngestConfig(sfreq=args.sfreq, num_workers=args.jobs),
        TrainConfig(**train_kw),
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--protocol", choices=("patient", "cross-generator"), default="patient")
    known, rest = pre.parse_known_args(argv)
    if known.protocol == "cross-generator":
        from benchmarks import cross_generator

        return cross_generator.main(rest)
    argv = rest
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--protocol",
        choices=("patient", "cross-generator"),
        default="patient",
        help="patient: patient-wise CV on one cohort (this script); cross-generator: train on "
        "one simulator family, test on the other (benchmarks.cross_generator, its options)",
    )
    parser.add_argument("--subjects", type=int, default=20, help="simulated patients (>= 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort, folds, models")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs (TrainConfig's)")
    parser.add_argument("--folds", type=int, default=5, help="patient-wise CV folds")
    parser.add_argument("--sfreq", type=float, default=500.0, help="store rate in Hz")
    parser.add_argument("--jobs", type=int, default=2, help="simulation / Beam processes")
    parser.add_argument("--out", default=None, help="work folder (cohort, store, run); reused")
    parser.add_argument("--results", default=None, help="folder of accuracy.json / .md")
    parser.add_argument(
        "--dcgru-variants",
        type=int,
        default=0,
        metavar="N",
        help="also train DCGRU variants (more epochs, dense graph) on the first N folds",
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 patients, 3 folds, 2 epochs: a smoke test"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects = min(args.subjects, 6)
        args.folds = min(args.folds, 3)
        args.epochs = args.epochs or 2
    elif args.subjects < 20:
        parser.error(f"--subjects {args.subjects}: the benchmark needs at least 20 patients.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.out or tempfile.mkdtemp(prefix="sozkit-accuracy-")).resolve()
    results = Path(args.results) if args.results else (work if args.quick else RESULTS)
    sim_cfg, ingest_cfg, train_cfg = _configs(args)
    load_start = os.getloadavg()[0]

    from serving.cli import ray_session

    t = time.perf_counter()
    with ray_session(log_to_driver=False):
        result = run_benchmark(
            work,
            sim_cfg,
            ingest_cfg,
            train_cfg,
            n_jobs=args.jobs,
            dcgru_variant_folds=args.dcgru_variants,
        )
    result["wall_s"]["total"] = round(time.perf_counter() - t, 1)
    import torch

    from trainer.run import json_safe

    result = json_safe(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.accuracy", *(argv or sys.argv[1:])]),
            "data": "simulated",
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "cuda": torch.cuda.is_available(),
                "load_avg_start": load_start,
                "load_avg_end": os.getloadavg()[0],
            },
            **result,
            "reference_real_data_not_comparable": REFERENCE,
        }
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / "accuracy.json").write_text(
        json.dumps(result, indent=2, default=str, allow_nan=False) + "\n"
    )
    table = render_markdown(result)
    (results / "accuracy.md").write_text(table)
    print(table)
    print(f"results: {results / 'accuracy.json'}, {results / 'accuracy.md'}; run: {work / 'run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
