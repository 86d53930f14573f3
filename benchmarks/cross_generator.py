"""Cross-generator accuracy: train on one simulator family, test on the other, and the reverse.

``python -m benchmarks.accuracy --protocol cross-generator`` (or ``python -m
benchmarks.cross_generator``) measures domain shift in-house, the way a new hospital sees it:

1. **simulate** ``--subjects`` patients of each family (:func:`ingest.simulate.simulate_cohort`
   with ``generator="epileptor"`` and ``"wendling"``: different neural mass, connectome, lead
   field, montage, noise, artefacts, naming, rates, line frequencies and centres) into the
   cohorts ``epileptor`` and ``wendling``;
2. **ingest** both into one clip store (Beam) at ``--sfreq``;
3. **train** with ``split="cohort"`` (leave one cohort out): fold 0 trains and thresholds on
   the epileptor patients (85 / 15 train / validation) and tests on every wendling patient,
   fold 1 the reverse; SOZFormer, the SVM and the classical baseline (``--models``);
4. **SVM variants** on the same folds from the cached features: the per-recording feature
   normalisation of :class:`models.svm.SOZSVM` (``normalise="zscore"``, the default) against
   none (``normalise=None``, the SVM as it was) and ``"rank"``, and the feature sets
   (:data:`models.features.FEATURE_SETS`: ``v1`` without, ``v2`` with the energy ratio and the
   peaks), the SVM's ``C`` before its default became 0.1 (``C=1``) and its training-time
   spectral-tilt augmentation (``augment: tilt``, :mod:`trainer.svm_augment`);
5. **report** per model and direction: channel ROC-AUC (all recordings, ictal only, interictal
   only); the calls of both call rules chosen on the validation patients (the Youden threshold
   and the patient-relative rule, :mod:`trainer.call_rules`: calls / channels, macro precision
   and recall, all recordings and ictal / interictal apart); the Brier score of the
   probabilities calibrated on the validation patients, its raw value and its skill against
   the prevalence (BSS, all / ictal / interictal).

``--feature-norm`` (default ``none``, :mod:`models.site_norm`), ``--augment``
(:mod:`trainer.site_augment`) and ``--clip-extras`` set the neural inputs (``--train-defaults``:
each model's ``soz train`` default); each setting trains in its own run folder of ``--out``
(``--run-name``), on the same cohorts and store.

Results: ``cross_generator.json`` / ``.md`` in ``--results`` (default
``benchmarks/results``; with ``--quick`` under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ingest.config import IngestConfig
from ingest.errors import SozkitError
from ingest.simulate import SimulationConfig, simulate_cohort
from models.site_norm import NORMS
from serving.commands.options import comma_list
from trainer.calibration import CALIBRATIONS, PRIORS
from trainer.call_rules import relative_thresholds
from trainer.config import MODEL_INPUTS, TrainConfig, per_model_text
from trainer.metrics import aggregate_channel_scores, call_summary, evaluate_fold, with_flat
from trainer.splits import Fold

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
FAMILIES = ("epileptor", "wendling")
_MARKER = "sozkit-cross-generator-simulation.json"
#: SVM feature normalisations and feature sets compared on the same folds (hyper-parameters
#: over the run's own).
SVM_VARIANTS = {
    "svm (no normalisation)": {"normalise": None},
    "svm (z-score)": {"normalise": "zscore"},
    "svm (rank)": {"normalise": "rank"},
    "svm (z-score, v1 features)": {"normalise": "zscore", "features": "v1"},
    "svm (z-score, v2 features)": {"normalise": "zscore", "features": "v2"},
    "svm (z-score, C=1: the default before)": {"normalise": "zscore", "C": 1.0},
    "svm (z-score, tilt augmentation)": {"normalise": "zscore", "augment": "tilt"},
}


def simulate_families(work: Path, cfg: SimulationConfig, *, n_jobs: int) -> dict[str, float]:
    """Simulate each family into ``work/<family>`` unless a finished one of ``cfg`` is there."""
    wall = {}
    wanted = json.loads(json.dumps(cfg.__dict__, default=str))
    for family in FAMILIES:
        root = work / family
        marker = root / _MARKER
        if marker.is_file() and json.loads(marker.read_text("utf-8")).get("config") == wanted:
            wall[family] = json.loads(marker.read_text("utf-8"))["wall_s"]
            continue
        t = time.perf_counter()
        simulate_cohort(root, cfg, generator=family, n_jobs=n_jobs)
        wall[family] = time.perf_counter() - t
        marker.write_text(json.dumps({"config": wanted, "wall_s": wall[family]}), "utf-8")
        logger.info("simulated %s in %.0f s", family, wall[family])
    return wall


def direction_figures(
    val: pd.DataFrame,
    test: pd.DataFrame,
    recordings: pd.DataFrame,
    *,
    calibration: str = "auto",
    calibration_prior: str = "match",
) -> dict[str, Any]:
    """Figures of one fold (one direction): AUC all / ictal / interictal, calls, Brier.

    Parameters
    ----------
    val, test : DataFrame
        The fold's validation and test predictions (``RUN_DIR/<model>/fold_<k>``).
    recordings : DataFrame
        The store's recordings manifest (``n_seizures`` says which runs are ictal).
    calibration : str
        The run's calibration (``TrainConfig.calibration``).
    calibration_prior : str
        The run's ``TrainConfig.calibration_prior``.

    Returns
    -------
    dict
        BSS of the run's calibration (``bss``), of its map alone, without matching each
        patient to the prior (``bss_unmatched``), of the one chosen among the raw maps only
        (``bss_old``: the calibration before the relative input and the prior existed), of the
        relative isotonic map (``bss_relative``, unmatched) and raw (``bss_raw``), each all /
        ictal / interictal;
        ROC-AUC of the raw scores and of each calibration's probabilities; per run kind the
        calls of both call rules and of the calibrated probabilities
        (:func:`trainer.metrics.calibrated_calls`).
    """
    from trainer.calibration import CANDIDATES, Calibrator, brier_skill_score, fit_calibrator
    from trainer.metrics import calibrated_calls
    from trainer.sites import site_figures

    result = evaluate_fold(val, test, calibration=calibration, calibration_prior=calibration_prior)
    t = result["test"]
    val_t = aggregate_channel_scores(val)
    fit = partial(fit_calibrator, val_t["y_true"], val_t["score"], val_t["patient"],
                  flat=val_t["flat"].to_numpy(bool) if "flat" in val_t else None)  # fmt: skip
    run_cal = Calibrator.from_dict(result["calibration"])
    cals = {
        "": run_cal,
        "_unmatched": dataclasses.replace(run_cal, prior=None),
        "_old": fit(candidates=CANDIDATES[:3], prior="none"),
        "_relative": fit(method="relative-isotonic", prior="none"),
    }
    seizures = dict(zip(recordings["recording_id"], recordings["n_seizures"], strict=True))
    n_sz = test["recording_id"].map(seizures)
    out: dict[str, Any] = {
        "threshold": result["threshold"],
        "relative_k": result["relative_k"],
        "channels": int(t["n_channels"]),
        "soz": int(t["n_positive"]),
        "prevalence": t["prevalence"],
        "brier": t["brier"],
        "brier_raw": t["brier_raw"],
        "bss_raw": brier_skill_score(t["brier_raw"], t["prevalence"]),
        "cv_brier": cals[""].info.get("cv_brier"),
        "calls": result["calls"],
        "oracle_relative": oracle_relative(aggregate_channel_scores(test)),
    }
    for tag, cal in cals.items():
        r = evaluate_fold(val, test, calibrator=cal)
        out[f"calibration{tag}"] = cal.name
        out[f"bss{tag}"] = r["test"]["bss"]
        out[f"roc_auc_calibrated{tag}"] = r["test"]["roc_auc_calibrated"]
        out[f"calibrated_threshold{tag}"] = r["calibrated_threshold"]
    for kind, part in (("all", test), ("ictal", test[n_sz > 0]), ("interictal", test[n_sz == 0])):
        if not len(part):
            continue
        table = aggregate_channel_scores(part)
        tflat = table["flat"].to_numpy(bool) if "flat" in table else None
        for tag, cal in cals.items():
            fig = site_figures(part.assign(fold=0), recordings, {}, {0: (result["threshold"], cal)})
            out[f"roc_auc_{kind}" if kind != "all" else "roc_auc"] = fig["all"]["roc_auc"]
            out[f"bss{tag}_{kind}"] = fig["all"]["bss"]
            prob = cal(table["score"].to_numpy(float), table["patient"].to_numpy(), flat=tflat)
            for rule, c in calibrated_calls(
                table.assign(score=prob), out[f"calibrated_threshold{tag}"]
            ).items():
                out[f"{rule}{tag}_{kind}"] = {k: c[k] for k in ("n_calls", "macro_precision",
                                                            "macro_recall")}  # fmt: skip
        for rule, thr in (
            ("youden", result["threshold"]),
            ("relative", relative_thresholds(table["score"], table["patient"],
                                             result["relative_k"], flat=tflat)),
        ):  # fmt: skip
            c = call_summary(table, thr)
            out[f"{rule}_{kind}"] = {k: c[k] for k in ("n_calls", "macro_precision",
                                                       "macro_recall")}  # fmt: skip
    return out


def oracle_relative(table: pd.DataFrame, *, min_recall: float = 0.8) -> dict[str, Any]:
    """The relative rule's best macro precision at macro recall >= ``min_recall`` with ``k``
    chosen on the **test** patients themselves (never a rule: the ceiling that any ``k``
    chosen on validation patients can reach on these rankings); ``{}`` when no ``k`` does."""
    from trainer.call_rules import K_GRID

    flat = table["flat"].to_numpy(bool) if "flat" in table else None
    best: dict[str, Any] = {}
    for k in K_GRID:
        c = call_summary(table, relative_thresholds(table["score"], table["patient"], k,
                                                    flat=flat))  # fmt: skip
        if (
            c["macro_recall"] is not None
            and c["macro_recall"] >= min_recall
            and (not best or c["macro_precision"] > best["macro_precision"])
        ):
            best = {"k": float(k), **{m: c[m] for m in ("n_calls", "macro_precision",
                                                        "macro_recall")}}  # fmt: skip
    return best


def svm_variants(store_url: str, run_dir: Path, folds: list[Fold], cfg: TrainConfig) -> dict:
    """The SVM with each feature normalisation, trained on the run's folds (cached features)."""
    from ingest.store import ClipStore
    from trainer.datasets import recording_table
    from trainer.svm_stage import compute_features, train_svm_fold

    store = ClipStore.open(store_url)
    recs = recording_table(store)
    features = compute_features(store_url, [r.recording_id for r in recs])
    manifest, channels = store.recordings(), store.channels()
    out: dict[str, dict] = {}
    for name, changes in SVM_VARIANTS.items():
        hparams = {**cfg.hparams_for("svm"), **changes}
        out[name] = {}
        for fold in folds:
            res = train_svm_fold(features, recs, fold, seed=cfg.seed, hparams=hparams)
            out[name][_direction(fold)] = direction_figures(
                with_flat(res.val_predictions, channels),
                with_flat(res.test_predictions, channels),
                manifest,
                calibration=cfg.calibration,
                calibration_prior=cfg.calibration_prior,
            )
    return out


def _direction(fold: Fold) -> str:
    train = sorted({p.split("/")[0] for p in fold.train})
    test = sorted({p.split("/")[0] for p in fold.test})
    return f"{'+'.join(train)} -> {'+'.join(test)}"


def run(
    work: Path,
    sim_cfg: SimulationConfig,
    ingest_cfg: IngestConfig,
    train_cfg: TrainConfig,
    *,
    n_jobs: int,
    run_name: str = "run",
) -> dict:
    """Simulate both families, ingest, train leave-one-cohort-out, evaluate (needs Ray).

    ``run_name``: the run's folder in ``work`` (one per neural-input setting, sharing the
    cohorts and the store)."""
    from ingest.driver import run_ingest
    from ingest.store import ClipStore
    from trainer.run import run_training
    from trainer.rundir import RunDir

    work.mkdir(parents=True, exist_ok=True)
    wall: dict[str, Any] = {"simulate": simulate_families(work, sim_cfg, n_jobs=n_jobs)}
    store_url = str(work / "store")
    t = time.perf_counter()
    report = run_ingest([str(work / f) for f in FAMILIES], store_url, ingest_cfg)
    if len(report.failures):
        raise SozkitError(f"ingest failed for some recordings:\n{report.failures}")
    wall["ingest"] = time.perf_counter() - t

    run_dir = work / run_name
    t = time.perf_counter()
    cfg = train_cfg.replace(split="cohort", resume=(run_dir / "card.json").is_file())
    trained = run_training(store_url, str(run_dir), cfg)
    wall["train"] = time.perf_counter() - t
    folds = [Fold.from_dict(d) for d in trained["folds"]]
    store = ClipStore.open(store_url)
    manifest, channels = store.recordings(), store.channels()
    models: dict[str, dict] = {}
    for name in cfg.models:
        models[name] = {}
        for fold in folds:
            d = RunDir(run_dir).fold_dir(name, fold.index)
            models[name][_direction(fold)] = direction_figures(
                with_flat(pd.read_parquet(d / "val_predictions.parquet"), channels),
                with_flat(pd.read_parquet(d / "test_predictions.parquet"), channels),
                manifest,
                calibration=cfg.calibration,
                calibration_prior=cfg.calibration_prior,
            )
    t = time.perf_counter()
    variants = svm_variants(store_url, run_dir, folds, cfg) if "svm" in cfg.models else {}
    wall["svm_variants"] = time.perf_counter() - t
    return {
        "models": models,
        "svm_variants": variants,
        "folds": [f.to_dict() for f in folds],
        "wall_s": wall,
        "run_dir": str(run_dir),
        "config": {
            "simulation": json.loads(json.dumps(sim_cfg.__dict__, default=str)),
            "ingest": ingest_cfg.to_dict(),
            "train": cfg.to_dict(),
        },
    }


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3f}"


def _trio(f: dict, kind: str) -> str:
    """``run / unmatched / old / relative`` BSS of one run kind (``bss_ictal`` ...)."""
    tags = ("", "_unmatched", "_old", "_relative")
    return " / ".join(_fmt(f.get(f"bss{tag}_{kind}")) for tag in tags)


def _calls(c: dict | None) -> str:
    if not c:
        return "n/a"
    return f"{c['n_calls']} · {_fmt(c['macro_precision'])} / {_fmt(c['macro_recall'])}"


def _size(result: dict) -> str:
    """One line: patients per family, epochs, neural inputs (normalisation, augmentation, extras)."""
    cfg = result.get("config", {})
    sim, train = cfg.get("simulation", {}), cfg.get("train", {})
    # A list (results before the inputs were per model) is every neural model's.
    inputs = TrainConfig.from_dict({k: train.get(k) or () for k in MODEL_INPUTS})
    listed = {k: per_model_text(getattr(inputs, k)) for k in MODEL_INPUTS}
    return (
        f"Size: {sim.get('n_subjects')} patients per family, {train.get('epochs')} epochs; "
        f"neural inputs: normalisation {train.get('feature_norm')}, augmentation "
        f"{listed['augment']}, clip extras {listed['clip_extras']}; wall {result.get('total_wall_s')} s."
    )


def render_markdown(result: dict) -> str:
    """The result tables (one row per model and direction), and the issue's targets."""
    lines = [
        "# Cross-generator accuracy (simulated data)",
        "",
        f"Command: `{result.get('command', '')}`; load average {result.get('load_avg', '')}.",
        _size(result),
        "Train (threshold, call rule and calibration on validation patients of the same family)",
        "on one simulator family, test on every patient of the other. Channel ROC-AUC pooled",
        "over the test family's patients; ictal / interictal: scores from that kind of",
        "recording only. BSS: Brier skill score of the calibrated probabilities against the",
        "constant prevalence (> 0 beats it): the run's calibration (--calibration and",
        "--calibration-prior; cal.: the map chosen) / its map without matching each patient to",
        "the prior / chosen among the raw maps only, unmatched (the calibration before the",
        "relative input and the prior) / the relative isotonic map, unmatched / none (raw).",
        "AUC cal.: ROC-AUC of the run's and of",
        "the relative map's probabilities (a relative map re-orders contacts across patients).",
        "Calls: `calls · macro precision / macro recall` of the Youden threshold, the",
        "patient-relative rule, and the relative map's probability p >= Youden's threshold of",
        "the validation patients' (p_rel >= t) or >= 0.5. Oracle k: the relative rule with k",
        "chosen on the test patients themselves for the best macro precision at macro recall",
        ">= 0.8 (not a rule: the ceiling of any k on these rankings; n/a: no k reaches 0.8).",
        "",
        "| model | direction | ROC-AUC | ictal | interictal | AUC cal. | cal. | BSS run / "
        "unmatched / old / relative / raw | BSS ictal | BSS interictal | Youden calls | relative calls | "
        "p_rel >= t | p_rel >= 0.5 | relative ictal | relative interictal | oracle k |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {**result["models"], **result.get("svm_variants", {})}
    for model, directions in rows.items():
        for direction, f in directions.items():
            lines.append(
                f"| {model} | {direction} | {_fmt(f.get('roc_auc'))} "
                f"| {_fmt(f.get('roc_auc_ictal'))} | {_fmt(f.get('roc_auc_interictal'))} "
                f"| {_fmt(f.get('roc_auc_calibrated'))} / "
                f"{_fmt(f.get('roc_auc_calibrated_relative'))} | {f.get('calibration', '')} "
                f"| {_fmt(f.get('bss'))} / {_fmt(f.get('bss_unmatched'))} / "
                f"{_fmt(f.get('bss_old'))} / "
                f"{_fmt(f.get('bss_relative'))} / {_fmt(f.get('bss_raw'))} "
                f"| {_trio(f, 'ictal')} | {_trio(f, 'interictal')} "
                f"| {_calls(f.get('youden_all'))} | {_calls(f.get('relative_all'))} "
                f"| {_calls(f.get('calibrated_relative_all'))} "
                f"| {_calls(f.get('calibrated_half_relative_all'))} "
                f"| {_calls(f.get('relative_ictal'))} | {_calls(f.get('relative_interictal'))} "
                f"| {_calls(f.get('oracle_relative'))} |"
            )
    lines += ["", "## Against the targets of issue 12", ""]
    lines += targets(result)
    return "\n".join(lines) + "\n"


def targets(result: dict) -> list[str]:
    """Each target of the issue, met or not, from the figures of this run."""
    models = result["models"]
    out = []

    def worst(model: str, key: str):
        vals = [f.get(key) for f in models.get(model, {}).values()]
        vals = [v for v in vals if v is not None]
        return min(vals) if vals else None

    def line(ok, text):
        out.append(f"- {'met' if ok else 'NOT met'}: {text}")

    if "sozformer" in models:
        a = worst("sozformer", "roc_auc")
        line(a is not None and a >= 0.95, f"SOZFormer ROC-AUC >= 0.95 both ways (worst {_fmt(a)})")
    for m in models:
        a = worst(m, "roc_auc")
        line(a is not None and a >= 0.85, f"{m} ROC-AUC >= 0.85 both ways (worst {_fmt(a)})")
    for m in models:
        for rule in ("youden", "relative", "calibrated_relative", "calibrated_half_relative"):
            if not all(f"{rule}_all" in f for f in models[m].values()):
                continue
            p = [f[f"{rule}_all"]["macro_precision"] for f in models[m].values()]
            r = [f[f"{rule}_all"]["macro_recall"] for f in models[m].values()]
            ok = all(x is not None and x >= 0.5 for x in p) and all(
                x is not None and x >= 0.8 for x in r
            )
            line(ok, f"{m} {rule} calls macro precision >= 0.5 at macro recall >= 0.8 "
                     f"(precision {', '.join(map(_fmt, p))}; recall {', '.join(map(_fmt, r))})")  # fmt: skip
    for m in models:
        for key, what in (
            ("bss", "the run's calibration"),
            ("bss_unmatched", "its map without the prior"),
            ("bss_relative", "relative isotonic"),
        ):
            b = worst(m, key)
            line(b is not None and b > 0, f"{m} Brier skill score > 0, {what} (worst {_fmt(b)})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=8, help="patients per family (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of cohorts, folds, models")
    parser.add_argument(
        "--cohort-seed", type=int, default=None,
        help="seed of the simulated cohorts alone (default --seed): the same cohorts, cached in "
        "--out, trained with other --seed values",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=4, help="max epochs (4)")
    parser.add_argument(
        "--models", default="sozformer,svm,baseline", help="comma-separated models to train"
    )
    parser.add_argument("--sfreq", type=float, default=500.0, help="store rate in Hz")
    parser.add_argument("--jobs", type=int, default=2, help="simulation / Beam processes")
    parser.add_argument("--out", default=None, help="work folder (cohorts, store, run); reused")
    parser.add_argument("--results", default=None, help="folder of cross_generator.json / .md")
    parser.add_argument("--quick", action="store_true", help="3 patients, 1 epoch, short runs")
    parser.add_argument(
        "--splits", type=int, default=0, metavar="K",
        help="instead: patient-wise K-fold CV vs leave-one-centre-out on the store in --out "
        "(made by a cross-generator run), to cross_generator_splits.json / .md",
    )  # fmt: skip
    parser.add_argument(
        "--feature-norm", default="none", choices=("none", *NORMS),
        help="per-recording normalisation of the neural inputs (models.site_norm; %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--train-defaults", action="store_true",
        help="each neural model's inputs as soz train's defaults (trainer.config "
        "DEFAULT_CLIP_EXTRAS / DEFAULT_AUGMENT) instead of --augment / --clip-extras",
    )  # fmt: skip
    parser.add_argument(
        "--augment", default="",
        help="comma-separated training-time site augmentations: tilt,line,dropout, for every "
        "neural model (default none, as the recorded runs; soz train's default differs)",
    )  # fmt: skip
    parser.add_argument(
        "--clip-extras", default="",
        help="neural tokens' extras: spikes,linelength, for every neural model (default none)",
    )  # fmt: skip
    parser.add_argument(
        "--run-name", default=None, help="run folder in --out (default from the options)"
    )
    parser.add_argument(
        "--calibration", default="auto", choices=CALIBRATIONS,
        help="the run's calibration (trainer.calibration; %(default)s); the old (raw maps "
        "only) and the relative isotonic one are reported beside it",
    )  # fmt: skip
    parser.add_argument(
        "--calibration-prior", default="match", choices=PRIORS,
        help="the run's calibration prior (%(default)s); its map without it is reported beside",
    )  # fmt: skip
    args = parser.parse_args(argv)
    augment, extras = comma_list(args.augment), comma_list(args.clip_extras)
    inputs = {} if args.train_defaults else {"augment": augment, "clip_extras": extras}
    norm = None if args.feature_norm == "none" else args.feature_norm
    sim_kw: dict[str, Any] = dict(
        n_subjects=3 if args.quick else args.subjects,
        seed=args.seed if args.cohort_seed is None else args.cohort_seed,
        n_ictal_runs=1,
        n_interictal_runs=1,
        ictal_duration_s=150.0,
        interictal_duration_s=120.0,
        onset_window_s=(30.0, 50.0),
    )
    train_cfg = TrainConfig(
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        epochs=1 if args.quick else args.epochs,
        patience=2,
        seqs_per_recording=8,
        ssl_epochs=1,
        seed=args.seed,
        feature_norm=norm,
        calibration=args.calibration,
        calibration_prior=args.calibration_prior,
        **inputs,
    )
    seeded = [] if args.cohort_seed is None or args.cohort_seed == args.seed else [f"s{args.seed}"]
    tags = [*augment, *([f"x-{'+'.join(extras)}"] if extras else []), *seeded]
    tags = ["defaults", *seeded] if args.train_defaults else tags
    run_name = args.run_name or "-".join(["run", args.feature_norm, *tags])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.out or tempfile.mkdtemp(prefix="sozkit-xgen-")).resolve()
    results = Path(args.results) if args.results else (work if args.quick else RESULTS)
    load = os.getloadavg()[0]
    from serving.cli import ray_session

    t = time.perf_counter()

    def save(stem: str, figures: dict[str, Any], render: Callable[[dict], str]) -> int:
        """Stamp ``figures`` with the run's context, write ``<stem>.json`` / ``.md``, print."""
        from trainer.run import json_safe

        result = json_safe(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": " ".join(
                    ["python -m benchmarks.cross_generator", *(argv or sys.argv[1:])]
                ),
                "data": "simulated",
                "load_avg": f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
                "total_wall_s": round(time.perf_counter() - t, 1),
                **figures,
            }
        )
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        text = render(result)
        (results / f"{stem}.md").write_text(text)
        print(text)
        return 0

    if args.splits:
        with ray_session(log_to_driver=False):
            from benchmarks.cross_generator_splits import render_splits, split_comparison

            splits = split_comparison(str(work / "store"), work, train_cfg, n_folds=args.splits)
        return save("cross_generator_splits", {"splits": splits}, render_splits)
    with ray_session(log_to_driver=False):
        result = run(
            work,
            SimulationConfig(**sim_kw),
            IngestConfig(sfreq=args.sfreq, num_workers=args.jobs),
            train_cfg,
            n_jobs=args.jobs,
            run_name=run_name,
        )
    return save("cross_generator", result, render_markdown)


if __name__ == "__main__":
    sys.exit(main())
