"""``run_training``: patient-wise cross-validation of every requested model, the call behind ``soz train``.

It expects a running Ray (the CLI starts a local one or joins ``RAY_ADDRESS``), splits the store's
labelled patients into folds (:func:`trainer.splits.patient_folds`, stratified by cohort), trains
the neural models with Ray Train (:mod:`trainer.ray_train`, folds in parallel when the cluster
fits several), the SVM on Ray CPU tasks (:mod:`trainer.svm_stage`) and scores the classical
baseline (:mod:`trainer.baseline_stage`) on the same folds, then evaluates every fold the same way
(:func:`trainer.metrics.evaluate_fold`) and writes the run directory.

The run directory's layout and its finished/complete rules are those of :mod:`trainer.rundir`
(:class:`~trainer.rundir.RunDir`); every path below goes through it. A fold's ``metrics.json`` (the
finished marker) is written after everything else of the fold, its model file included; with
``TrainConfig.resume`` finished folds are kept and an interrupted neural fold resumes from its last
Ray Train checkpoint.
``RUN_DIR/sites.json`` holds the test ROC-AUC by centre and run kind (ictal / interictal).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ingest.errors import ConfigError, SozkitError
from ingest.fileio import json_safe, write_json, write_parquet
from trainer.calibration import Calibrator
from trainer.checkpoint import save_checkpoint
from trainer.config import MODEL_INPUTS, TrainConfig, per_model_text
from trainer.datasets import recording_table
from trainer.metrics import evaluate_fold, summarise_folds, with_flat
from trainer.rundir import RunDir
from trainer.splits import Fold, make_folds, patient_groups

logger = logging.getLogger(__name__)

Tick = Callable[[str], None]
#: Per-epoch values drawn in training_curves.png (losses left, validation metrics right).
_CURVE_KEYS = ("epoch", "train_loss", "val_auc", "val_pr_auc")

#: ``json_safe`` is re-exported (benchmarks import it from here).
__all__ = ["json_safe", "recorded_inputs", "run_training", "write_fold", "write_model_summary"]


def _plot(fn, *args, **kwargs) -> str | None:
    """Draw one plot; a plot that cannot be drawn (one class only...) is logged, not fatal."""
    try:
        return str(fn(*args, **kwargs))
    except ValueError as e:
        logger.warning("plot %s skipped: %s", Path(args[-1]).name, e)
        return None


def write_fold(
    run_dir: Path,
    model: str,
    fold: Fold,
    val: pd.DataFrame,
    test: pd.DataFrame,
    *,
    extra: Mapping[str, Any] | None = None,
    save_model: Callable[[Mapping[str, Any]], None] | None = None,
    call_rule: str = "youden",
    channels: pd.DataFrame | None = None,
    calibration: str = "auto",
    calibration_prior: str = "match",
) -> dict:
    """Evaluate one fold and write its predictions, plots, model and, last, its ``metrics.json``.

    Parameters
    ----------
    run_dir : Path
    model : str
    fold : Fold
    val, test : DataFrame
        The fold's validation and test predictions (:data:`trainer.metrics.PRED_COLUMNS`).
    extra : mapping, optional
        Stored in ``metrics.json`` beside the evaluation (history, best epoch ...).
    save_model : callable, optional
        ``save_model(result)`` writes the fold's model file once the threshold is known; it
        runs before the finished marker, so a kill in between leaves an unfinished fold.
    call_rule : {"youden", "relative"}
        The call rule of the fold's test metrics and of serving (:mod:`trainer.call_rules`).
    channels : DataFrame, optional
        The store's channels table (:meth:`ingest.store.ClipStore.channels`): its ``flat``
        flags join the predictions (:func:`trainer.metrics.with_flat`), so that flat contacts
        stay out of the relative rule's and the relative calibration's reference.
    calibration : str
        The calibration fitted on the validation patients (``TrainConfig.calibration``).
    calibration_prior : str
        Whether it matches each patient to their prevalence (``TrainConfig.calibration_prior``).

    Returns
    -------
    dict
        The :func:`trainer.metrics.evaluate_fold` result (+ ``extra``).
    """
    from trainer import plots

    run = RunDir(run_dir)
    d = run.fold_dir(model, fold.index)
    d.mkdir(parents=True, exist_ok=True)
    val, test = with_flat(val, channels), with_flat(test, channels)
    write_parquet(d / "val_predictions.parquet", val)
    write_parquet(d / "test_predictions.parquet", test)
    result = evaluate_fold(
        val, test, call_rule=call_rule, calibration=calibration,
        calibration_prior=calibration_prior,
    )  # fmt: skip
    history = list((extra or {}).get("history", []))
    _plot(
        plots.plot_confusion,
        result["test"],
        d / "confusion.png",
        title=f"{model} fold {fold.index}",
    )
    if result.get("roc_by_cohort"):
        _plot(plots.plot_roc_by_cohort, result["roc_by_cohort"], d / "roc_by_cohort.png")
    per_epoch = {
        h["epoch"]: h["val_roc_by_cohort"]
        for h in history
        if h.get("stage") == "train" and h.get("val_roc_by_cohort")
    }
    if per_epoch:
        _plot(plots.plot_roc_through_training, per_epoch, d / "roc_through_training.png")
    out = {"model": model, "fold": fold.index, **result, **dict(extra or {})}
    write_json(
        d / "threshold.json",
        {k: result[k] for k in ("threshold", "call_rule", "relative_k")},
    )
    run.write_calibration(model, fold.index, Calibrator.from_dict(result["calibration"]))
    if save_model is not None:
        save_model(out)
    run.mark_finished(model, fold.index, out)  # last: the fold is finished only now
    return out


def _fold_label(model: str, fold: Fold, result: Mapping[str, Any]) -> str:
    """``"sozformer fold 2: test ROC-AUC 0.912"``, what progress displays show per fold."""
    auc = result.get("test", {}).get("roc_auc")
    return f"{model} fold {fold.index}: test ROC-AUC " + ("n/a" if auc is None else f"{auc:.3f}")


def write_model_summary(run_dir: Path, model: str, folds: list[Fold]) -> dict:
    """Pool a model's folds: ``metrics.json``, ``predictions.parquet`` and the model-level plots."""
    from trainer import plots

    run = RunDir(run_dir)
    results = [run.fold_metrics(model, f.index) for f in folds]
    summary = summarise_folds(results)
    frames = []
    for f in folds:
        t = pd.read_parquet(run.fold_dir(model, f.index) / "test_predictions.parquet")
        t.insert(0, "fold", f.index)
        frames.append(t)
    preds = pd.concat(frames, ignore_index=True)
    mdir = run.model_dir(model)
    write_parquet(run.predictions_path(model), preds)
    pooled = summary["pooled"]
    table = pd.DataFrame.from_records(
        [row for r in results for row in r["test_table"]],
        columns=["cohort", "patient", "channel", "y_true", "score"],
    )
    made = {
        "ROC by cohort": _plot(
            plots.plot_roc_by_cohort,
            summary["pooled_roc_by_cohort"],
            mdir / "roc_by_cohort.png",
            title=f"{model}: test ROC by cohort",
        ),
        "PR": _plot(
            plots.plot_pr,
            table["y_true"],
            table["score"],
            mdir / "pr.png",
            groups=table["cohort"],
            title=f"{model}: test precision-recall",
        ),
        "confusion": _plot(plots.plot_confusion, pooled, mdir / "confusion.png"),
        "calibration": _plot(
            plots.plot_reliability,
            pooled["reliability"],
            mdir / "reliability.png",
            brier=pooled.get("brier"),
        ),
    }
    histories = {
        f"fold {r['fold']}": [
            {k: h[k] for k in _CURVE_KEYS if isinstance(h.get(k), int | float)}
            for h in r.get("history", [])
            if h.get("stage") == "train"
        ]
        for r in results
    }
    if any(histories.values()):
        made["training curves"] = _plot(
            plots.plot_training_curves, histories, mdir / "training_curves.png"
        )
    summary["plots"] = {k: v for k, v in made.items() if v}
    write_json(run.model_metrics_path(model), summary)
    return summary


def recorded_inputs(run_dir: str | os.PathLike) -> dict[str, dict[str, tuple[str, ...]]] | None:
    """The neural models' inputs ``run_dir``'s training card records, ``None`` without a card.

    Returns
    -------
    dict or None
        ``{"clip_extras": {model: names}, "augment": {model: names}}`` for every neural model,
        read as :meth:`TrainConfig.from_dict` reads a config: a global list (a card written
        before the inputs were per model) is every model's, ``[]`` or a missing key none.
    """
    card = RunDir(Path(run_dir)).card()
    if not card:
        return None
    config = card.get("config", card)
    recorded = TrainConfig.from_dict({k: config[k] for k in MODEL_INPUTS if k in config})
    return {k: dict(getattr(recorded, k)) for k in MODEL_INPUTS}


def _check_run_dir(run_dir: Path, folds: list[Fold], cfg: TrainConfig) -> None:
    saved = RunDir(run_dir).folds_path
    if saved.is_file():
        if not cfg.resume:
            raise ConfigError(
                f"{run_dir} already holds a training run; pass --resume to continue it, or "
                "choose a new --out directory."
            )
        old = [Fold.from_dict(d) for d in json.loads(saved.read_text("utf-8"))]
        if old != folds:
            raise ConfigError(
                f"{run_dir} was trained with other folds (different patients, --folds or "
                "--seed); resume with the original settings or use a new --out directory."
            )
        _check_inputs(run_dir, cfg)
    write_json(saved, [f.to_dict() for f in folds])


def _check_inputs(run_dir: Path, cfg: TrainConfig) -> None:
    """A resumed model keeps the inputs it was trained with (its checkpoints need them)."""
    recorded = recorded_inputs(run_dir)
    if recorded is None:
        return
    started = [m for m in cfg.neural_models if (run_dir / m).is_dir()]
    for name in MODEL_INPUTS:
        was = {m: recorded[name][m] for m in started}
        now = {m: getattr(cfg, name)[m] for m in started}
        if was != now:
            raise ConfigError(
                f"{run_dir} was trained with {name} {per_model_text(was)}, not "
                f"{per_model_text(now)}; resume with those (soz train --resume reads them from "
                "the run's card.json unless --clip-extras / --augment are given) or use a new "
                "--out directory."
            )


def run_training(
    store_url: str | os.PathLike,
    run_dir: str | os.PathLike,
    cfg: TrainConfig,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Cross-validate every model of ``cfg`` on the store and write ``run_dir``.

    Parameters
    ----------
    store_url : str or path-like
        The clip store (``soz ingest`` output).
    run_dir : str or path-like
        Output folder (layout in the module docstring).
    cfg : TrainConfig
    progress : callable, optional
        ``progress(done, total, label)`` each time a (model, fold) is finished (the CLI draws a
        progress bar with it).

    Returns
    -------
    dict
        ``run_dir``, ``folds`` (as dicts), ``models``: {model: its :func:`summarise_folds`
        summary}, ``summary`` (path of summary.md), ``card`` (path of card.json).
    """
    import ray

    from ingest.store import ClipStore
    from trainer.card import training_card, write_card
    from trainer.summary import write_summary

    if not ray.is_initialized():
        raise SozkitError(
            "run_training needs a running Ray; call ray.init() first (soz train does it)."
        )
    store_url = os.fspath(store_url)
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    store = ClipStore.open(store_url)
    recs = recording_table(store)
    channels = store.channels()
    patients = sorted({r.patient for r in recs})
    if cfg.split == "patient" and len(patients) < cfg.n_folds:
        raise SozkitError(
            f"the store {store_url} has {len(patients)} labelled patients, fewer than "
            f"{cfg.n_folds=}; use --folds {max(2, len(patients))} or ingest more patients."
        )
    try:
        folds = make_folds(
            patients,
            split=cfg.split,
            n_folds=cfg.n_folds,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            recordings=store.recordings(),
        )
    except ValueError as e:
        raise SozkitError(f"the store {store_url} cannot be split by {cfg.split}: {e}") from e
    _check_run_dir(run_dir, folds, cfg)
    card_extra = {
        "store": store_url,
        "store_ingest_config": store.ingest_config.to_dict(),
        "n_recordings": len(recs),
        "ray_resources": ray.cluster_resources(),
    }
    write_card(
        training_card(
            config=cfg.to_dict(),
            folds=folds,
            seeds={"split": cfg.seed, "torch": cfg.seed, "sampler": cfg.seed},
            extra=card_extra,
        ),
        run.card_path,
    )

    total = len(cfg.models) * len(folds)
    done = [sum(run.fold_finished(m, f.index) for m in cfg.models for f in folds)]
    lock = threading.Lock()  # neural folds finish in the threads of train_folds

    def tick(label: str) -> None:
        with lock:
            done[0] += 1
            if progress is not None:
                progress(done[0], total, label)

    # Neural models: every unfinished (model, fold) through Ray Train, folds in parallel.
    from trainer.ray_train import train_folds

    jobs = [(m, f) for m in cfg.neural_models for f in folds if not run.fold_finished(m, f.index)]
    by_index = {f.index: f for f in folds}

    def neural_done(res) -> None:
        fold = by_index[res.fold]

        def save_model(result: Mapping[str, Any]) -> None:
            from models.registry import build_model

            model = build_model(res.model_name, **res.hparams)
            model.load_state_dict(res.state_dict)
            save_checkpoint(
                run.checkpoint_path(res.model_name, fold.index),
                model,
                model_name=res.model_name,
                threshold=result["threshold"],
                feature_config=cfg.feature_config(res.model_name),
                sfreq=store.sfreq,
                clip_samples=store.clip_samples,
                ingest_config=store.ingest_config.to_dict(),
                fold=fold.index,
                extra={"best_epoch": res.best_epoch, "best_val_auc": res.best_val_auc},
            )

        result = write_fold(
            run_dir,
            res.model_name,
            fold,
            res.val_predictions,
            res.test_predictions,
            extra={
                "history": res.history,
                "best_epoch": res.best_epoch,
                "best_val_auc": res.best_val_auc,
                "epoch_nodes": res.epoch_nodes,
            },
            save_model=save_model,  # the checkpoint before the finished marker
            call_rule=cfg.call_rule,
            channels=channels,
            calibration=cfg.calibration,
            calibration_prior=cfg.calibration_prior,
        )
        tick(_fold_label(res.model_name, fold, result))

    if jobs and cfg.feature_cache:  # one cache per distinct feature set of the models
        from trainer.feature_cache import cache_url

        caches = {cache_url(store_url, cfg.feature_config(m)): m for m, _ in jobs}
        for m in caches.values():
            _precompute_features(store_url, [r.recording_id for r in recs], cfg.feature_config(m))
    train_folds(store_url, jobs, cfg, storage_root=run_dir, on_done=neural_done)

    if "svm" in cfg.models:
        _run_svm(store_url, run_dir, recs, folds, cfg, tick, channels)
    if "baseline" in cfg.models:
        _run_baseline(store_url, run_dir, recs, folds, cfg, tick, channels)

    summaries = {m: write_model_summary(run_dir, m, folds) for m in cfg.models}
    sites = _site_figures(run_dir, cfg.models, store.recordings())
    summary_path = write_summary(
        run_dir,
        summaries,
        title=f"sozkit training run: {run_dir.name}",
        sites=sites,
        split=cfg.split,
        inputs={m: {k: getattr(cfg, k)[m] for k in MODEL_INPUTS} for m in cfg.neural_models},
    )
    return {
        "run_dir": str(run_dir),
        "folds": [f.to_dict() for f in folds],
        "models": summaries,
        "summary": str(summary_path),
        "card": str(run.card_path),
    }


def _site_figures(run_dir: Path, models, recordings: pd.DataFrame) -> dict:
    """Test figures by centre and run kind per model (:mod:`trainer.sites`), to sites.json."""
    from trainer.sites import site_figures

    centres = patient_groups(recordings, "centre")
    run = RunDir(run_dir)
    sites = {}
    for m in models:
        preds = pd.read_parquet(run.predictions_path(m))
        folds = {
            int(k): (run.threshold(m, int(k)), run.calibrator(m, int(k)))
            for k in preds["fold"].unique()
        }
        sites[m] = site_figures(preds, recordings, centres, folds)
    write_json(Path(run_dir) / "sites.json", sites)
    return sites


def _precompute_features(store_url: str, recording_ids: list[str], feature_config: dict) -> None:
    """Cache every clip's spectral features (one Ray CPU task per recording; done ones skipped)."""
    import ray

    from trainer.feature_cache import cache_url, write_recording_features
    from trainer.ray_train import wait_for_resources

    @ray.remote(num_cpus=1)
    def one(rid: str) -> bool:
        from ingest.store import ClipStore

        try:
            return write_recording_features(ClipStore.open(store_url), rid, feature_config)
        except Exception as e:
            raise SozkitError(f"{rid}: caching spectral features failed: {e}") from e

    wait_for_resources({"CPU": 1}, "caching spectral features")
    computed = ray.get([one.remote(rid) for rid in recording_ids])
    logger.info(
        "spectral features of %d recordings cached in %s (%d already there)",
        sum(computed),
        cache_url(store_url, feature_config),
        len(computed) - sum(computed),
    )


def _run_svm(
    store_url: str, run_dir: Path, recs, folds: list[Fold], cfg: TrainConfig, tick: Tick,
    channels: pd.DataFrame | None = None,
) -> None:  # fmt: skip
    from trainer.svm_stage import compute_features, train_svm_fold

    run = RunDir(run_dir)
    todo = [f for f in folds if not run.fold_finished("svm", f.index)]
    if not todo:
        return
    from trainer.ray_train import wait_for_resources

    wait_for_resources({"CPU": 1}, "the SVM's feature tasks")
    features = compute_features(store_url, [r.recording_id for r in recs])
    for fold in todo:
        res = train_svm_fold(features, recs, fold, seed=cfg.seed, hparams=cfg.hparams_for("svm"))
        result = write_fold(
            run_dir, "svm", fold, res.val_predictions, res.test_predictions,
            save_model=lambda _result, m=res.model, k=fold.index: m.save(run.svm_path(k)),
            call_rule=cfg.call_rule, channels=channels, calibration=cfg.calibration,
            calibration_prior=cfg.calibration_prior,
        )  # fmt: skip
        tick(_fold_label("svm", fold, result))


def _run_baseline(
    store_url: str, run_dir: Path, recs, folds: list[Fold], cfg: TrainConfig, tick: Tick,
    channels: pd.DataFrame | None = None,
) -> None:  # fmt: skip
    from trainer.baseline_stage import BaselineConfig, fold_predictions, score_recordings

    todo = [f for f in folds if not RunDir(run_dir).fold_finished("baseline", f.index)]
    if not todo:
        return
    from trainer.ray_train import wait_for_resources

    wait_for_resources({"CPU": 1}, "the classical baseline's tasks")
    scores = score_recordings(store_url, recs, BaselineConfig(**cfg.hparams_for("baseline")))
    for fold in todo:
        val, test = fold_predictions(scores, fold)
        result = write_fold(
            run_dir, "baseline", fold, val, test, call_rule=cfg.call_rule, channels=channels,
            calibration=cfg.calibration, calibration_prior=cfg.calibration_prior,
        )  # fmt: skip
        tick(_fold_label("baseline", fold, result))
