"""``run_training`` end to end: a 2-fold, 1-epoch run of every model writes every output."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ingest.errors import ConfigError
from serving.commands.train import site_options
from tests.figures import check_png
from tests.trainer.conftest import (
    PATIENTS,
    TINY_HPARAMS,
    brute_force_youden,
    channel_table,
    tiny_train_config,
)
from trainer.checkpoint import load_checkpoint
from trainer.config import ALL_MODELS, NEURAL_MODELS, TrainConfig
from trainer.run import recorded_inputs, run_training
from trainer.svm_stage import FEATURE_VERSION as SVM_FEATURES

#: The clip spectra of tiny_train_config (a checkpoint's feature_config without extras).
SPECTRA = {"n_bands": 8, "fmin": 0.5, "fmax": None}


def test_two_fold_run_of_every_model_writes_every_output(ray_local, tiny_store, tmp_path):
    run_dir = tmp_path / "run"
    ticks = []
    out = run_training(
        tiny_store, run_dir, tiny_train_config(), progress=lambda *a: ticks.append(a)
    )
    assert set(out["models"]) == set(ALL_MODELS)
    assert sorted(t[0] for t in ticks) == list(range(1, 9)) and {t[1] for t in ticks} == {8}
    card = json.loads((run_dir / "card.json").read_text())
    assert card["n_folds"] == 2 and card["config"]["epochs"] == 1
    assert card["config"]["augment"] == {"sozformer": ["tilt"], "dcgru": []}  # the defaults
    assert card["config"]["clip_extras"] == {"sozformer": ["spikes"], "dcgru": ["spikes"]}
    test_patients = sorted(p for f in card["folds"] for p in f["test"])
    assert test_patients == sorted(f"{c}/{p}" for c, p in PATIENTS)  # each patient tested once
    summary = (run_dir / "summary.md").read_text()
    assert "| `sozformer` | spectrum, spikes | tilt |" in summary
    assert "| `dcgru` | spectrum, spikes | none |" in summary
    for model in ALL_MODELS:
        assert model in summary
        mdir = run_dir / model
        metrics = json.loads((mdir / "metrics.json").read_text())
        assert metrics["n_folds"] == 2
        preds = pd.read_parquet(mdir / "predictions.parquet")
        assert sorted(preds["patient"].unique()) == test_patients
        assert preds["score"].between(0, 1).all()
        # The pooled AUC is sklearn's on the saved predictions, aggregated here independently.
        table = channel_table(preds)
        auc = roc_auc_score(table["y_true"], table["score"])
        assert metrics["pooled"]["roc_auc"] == pytest.approx(auc, abs=1e-12)
        for png in ("roc_by_cohort.png", "pr.png", "confusion.png", "reliability.png"):
            check_png(mdir / png)
        for k in range(2):
            fdir = mdir / f"fold_{k}"
            fm = json.loads((fdir / "metrics.json").read_text())
            # Youden's threshold on this fold's validation patients, found by brute force.
            val = channel_table(pd.read_parquet(fdir / "val_predictions.parquet"))
            assert fm["threshold"] == pytest.approx(brute_force_youden(val["y_true"], val["score"]))
            rule = json.loads((fdir / "threshold.json").read_text())
            assert rule["call_rule"] == "relative" and rule["relative_k"] == fm["relative_k"]
            assert set(fm["calls"]) == {"youden", "relative", "calibrated", "calibrated_half"}
            cal = json.loads((fdir / "calibration.json").read_text())
            assert cal["method"] in ("identity", "platt", "isotonic") and "cv_brier" in cal["info"]
            assert (
                cal["input"] in ("raw", "relative") and "relative-platt" in cal["info"]["cv_brier"]
            )
            assert "flat" in pd.read_parquet(fdir / "test_predictions.parquet")  # store's flags
            if model in ("sozformer", "dcgru"):
                net, meta = load_checkpoint(fdir / "checkpoint.pt")
                assert meta.threshold == pytest.approx(fm["threshold"])
                # The default inputs: 8 bands and the spike rate, for both neural models.
                assert meta.feature_config == {**SPECTRA, "extras": ["spikes"]}
                assert meta.n_feats == 9 and meta.sfreq == 256.0
                assert meta.ingest_config["clip_s"] == 4.0
                x = torch.zeros(1, 3, meta.seq_len, meta.n_feats)
                assert net(x, torch.ones(1, 3, dtype=torch.bool)).shape == (1, 3)
                assert [h["stage"] for h in fm["history"]][-1] == "train"
            if model == "dcgru":
                assert [h["stage"] for h in fm["history"]][0] == "ssl"
            if model == "svm":
                assert (fdir / "svm.pkl").is_file()
        if model in ("sozformer", "dcgru"):
            check_png(mdir / "training_curves.png")
    # SOZ contacts carry spikes and a 40 Hz onset: the SVM's band features separate them.
    svm = channel_table(pd.read_parquet(run_dir / "svm" / "predictions.parquet"))
    assert roc_auc_score(svm["y_true"], svm["score"]) > 0.9
    # SVM and spectral features are cached beside the store, keyed by their versions.
    n_recordings = 2 * len(PATIENTS)  # one ictal and one interictal recording each
    assert len(list(Path(tiny_store).glob(f"features/{SVM_FEATURES}/*.parquet"))) == n_recordings
    spectra = "features/spectral-v1-nb8-fmin0.5-fmaxNone-x-spikes/*/zarr.json"  # one, shared
    assert len(list(Path(tiny_store).glob(spectra))) == n_recordings
    # A second run into the same folder without --resume is refused.
    with pytest.raises(ConfigError, match="--resume"):
        run_training(tiny_store, run_dir, tiny_train_config(models=("baseline",)))

    # Killed after fold 1 finished training but before its outputs were written: --resume keeps
    # the finished folds and takes fold 1's result from its final Ray Train checkpoint.
    fold1 = run_dir / "sozformer" / "fold_1"
    before = pd.read_parquet(fold1 / "test_predictions.parquet")
    kept = (run_dir / "sozformer" / "fold_0" / "metrics.json").stat().st_mtime_ns
    for name in ("metrics.json", "checkpoint.pt", "test_predictions.parquet"):
        (fold1 / name).unlink()
    ticks.clear()
    # Resumed with the inputs it was trained with, from a card as sozkit wrote it before the
    # inputs were per model (one list for every model); [] there is none, not the defaults.
    card_path = run_dir / "card.json"
    for extras, wrong in (([], {}), (["spikes"], {"clip_extras": ()})):
        card["config"].update(clip_extras=extras, augment=["tilt"])
        card_path.write_text(json.dumps(card))
        with pytest.raises(ConfigError, match="was trained with clip_extras sozformer="):
            run_training(tiny_store, run_dir, tiny_train_config(resume=True, **wrong))
    resumed = site_options(_train_args("--resume"), recorded_inputs(run_dir))
    assert resumed["clip_extras"]["sozformer"] == ("spikes",)
    out = run_training(
        tiny_store,
        run_dir,
        tiny_train_config(models=("sozformer",), resume=True, **resumed),
        progress=lambda *a: ticks.append(a),
    )
    # fold 0 counted as done, fold 1 redone
    assert len(ticks) == 1 and ticks[0][:2] == (2, 2)
    assert re.fullmatch(r"sozformer fold 1: test ROC-AUC (\d\.\d{3}|n/a)", ticks[0][2])
    assert (run_dir / "sozformer" / "fold_0" / "metrics.json").stat().st_mtime_ns == kept
    pd.testing.assert_frame_equal(pd.read_parquet(fold1 / "test_predictions.parquet"), before)
    assert (fold1 / "checkpoint.pt").is_file() and out["models"]["sozformer"]["n_folds"] == 2
    assert load_checkpoint(fold1 / "checkpoint.pt")[1].feature_config["extras"] == ["spikes"]


def _train_args(*argv: str):
    import argparse

    from serving.commands.train import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["STORE", "--out", "RUN", *argv])


def test_models_with_their_own_inputs_score_through_one_engine(ray_local, tiny_store, tmp_path):
    """SOZFormer with the spike rate, DCGRU with the spectra alone: each checkpoint records its
    own features, and one pass of the serving engine over a stored recording scores each model
    with its own, to the run's test predictions."""
    from ingest.store import ClipStore
    from serving.engine import score_recording
    from serving.preprocess import StoredRecordingStream, stored_recording
    from serving.scoring import Scorer

    run_dir = tmp_path / "run"
    cfg = tiny_train_config(
        models=NEURAL_MODELS, clip_extras={"dcgru": ()}, augment=(), ssl_epochs=0
    )
    run_training(tiny_store, run_dir, cfg)
    scorers = [Scorer.from_run(run_dir, m, fold=0) for m in NEURAL_MODELS]
    assert [s.feature_config for s in scorers] == [{**SPECTRA, "extras": ["spikes"]}, SPECTRA]
    assert [s.n_feats for s in scorers] == [9, 8]
    store = ClipStore.open(tiny_store)
    preds = {m: pd.read_parquet(run_dir / m / "predictions.parquet") for m in NEURAL_MODELS}
    fold0 = preds["sozformer"].query("fold == 0")
    ictal = set(store.recordings().query("n_seizures > 0")["recording_id"])
    (rid, *_) = sorted(set(fold0["recording_id"]) & ictal)
    stream = StoredRecordingStream(store, rid, block_clips=5)
    both = score_recording(
        stored_recording(store, rid), [s.consumer() for s in scorers], stream=stream
    )
    for model, res in zip(NEURAL_MODELS, both, strict=True):
        run = preds[model].query("fold == 0 and recording_id == @rid").set_index("channel")
        np.testing.assert_allclose(res.p_raw, run.loc[list(res.channels), "score"], rtol=1e-5)
    assert not np.allclose(both[0].p_raw, both[1].p_raw)


@pytest.mark.slow
def test_simulated_cohort_through_soz_ingest_and_soz_train(ray_local, tmp_path, capsys):
    """The real chain: simulator -> Beam ingest -> `soz train --model all` (slow: ~2-3 min)."""
    from ingest.simulate import simulate_cohort
    from serving.cli import main
    from tests.cohorts import smallest_cohort

    cohort = smallest_cohort(n_subjects=4, n_centres=2, ictal_duration_s=90.0)
    cohort = replace(cohort, interictal_duration_s=40.0, onset_window_s=(20.0, 25.0))
    bids = simulate_cohort(tmp_path / "bids", cohort)
    store = tmp_path / "store.zarr"
    argv = ["ingest", str(bids), "--out", str(store), "--sfreq", "250", "--block-clips", "4"]
    assert main([*argv, "--workers", "1", "--no-progress", "--line-freq", "50"]) == 0
    run_dir = tmp_path / "run"
    hparams = json.dumps({k: v for k, v in TINY_HPARAMS.items() if k != "baseline"})
    argv = ["train", str(store), "--model", "all", "--out", str(run_dir), "--folds", "2"]
    argv += ["--epochs", "1", "--ssl-epochs", "1", "--n-bands", "8", "--hparams", hparams]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for model in ALL_MODELS:
        assert model in out
        assert (run_dir / model / "metrics.json").is_file()
        assert (run_dir / model / "predictions.parquet").is_file()
    assert (run_dir / "sozformer" / "fold_1" / "checkpoint.pt").is_file()
    assert (run_dir / "summary.md").is_file() and (run_dir / "card.json").is_file()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"models": ("transformer",)}, "unknown model"),
        ({"models": ()}, "is empty"),
        ({"models": ("svm", "svm")}, "twice"),
        ({"n_folds": 1}, "n_folds=1 must be >= 2"),
        ({"val_fraction": 1.0}, "val_fraction=1.0"),
        ({"fmin": 10.0, "fmax": 5.0}, "fmin < fmax"),
        ({"model_hparams": {"resnet": {}}}, "no model"),
        ({"pos_weight": 0.0}, "pos_weight=0.0"),
        ({"max_parallel_folds": 0}, "max_parallel_folds=0"),
        ({"placement_strategy": "ANYWHERE"}, "SPREAD puts a fold's workers"),
        ({"max_failures": -1}, "max_failures=-1 must be >= 0"),
        ({"call_rule": "top3"}, "call_rule='top3'"),
    ],
)
def test_config_rejects_bad_values_with_the_fix(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_config_round_trips_through_its_dict():
    cfg = tiny_train_config(seed=7, resume=True)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.neural_models == ("sozformer", "dcgru")
    assert cfg.hparams_for("dcgru") == TINY_HPARAMS["dcgru"] and cfg.hparams_for("svm") == {}
    with pytest.raises(ConfigError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"epochs": 2, "learning_rate": 1.0})
