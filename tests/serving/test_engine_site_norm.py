"""Serving normalises the neural inputs as the checkpoints' ``feature_config`` says, and only then."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.site_norm import clip_features
from models.spectral import spectral_features
from serving.scoring import Scorer
from tests.serving.conftest import FEATURES, INGEST
from trainer.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("norm", ["median", "detrend"])
def test_checkpoint_norm_reaches_the_engine(serving_data, tmp_path, norm):
    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    for fold in (0, 1):
        path = run_dir / "sozformer" / f"fold_{fold}" / "checkpoint.pt"
        net, meta = load_checkpoint(path)
        save_checkpoint(
            path, net, model_name="sozformer", threshold=meta.threshold,
            feature_config={**FEATURES, "norm": norm}, sfreq=INGEST.sfreq,
            clip_samples=INGEST.clip_samples, ingest_config=INGEST.to_dict(), fold=fold,
        )  # fmt: skip
    plain = Scorer.from_run(serving_data["run_dir"])
    normed = Scorer.from_run(run_dir)
    assert "norm" not in plain.feature_config and normed.feature_config["norm"] == norm
    clips = np.random.default_rng(0).normal(size=(2, 7, INGEST.clip_samples)).astype(np.float32)
    np.testing.assert_array_equal(
        plain.prep.features(clips), spectral_features(clips, INGEST.sfreq, **FEATURES)
    )
    served = normed.prep.features(clips)
    np.testing.assert_allclose(served, clip_features(clips, INGEST.sfreq, normed.feature_config))
    if norm == "detrend":  # every clip and contact without level or tilt, whatever the path
        t = np.arange(served.shape[-1]) - (served.shape[-1] - 1) / 2
        np.testing.assert_allclose(served.mean(axis=-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(served @ t, 0.0, atol=1e-2)
    a, b = plain.score(serving_data["long_rec"]), normed.score(serving_data["long_rec"])
    assert a.channels == b.channels and not np.allclose(a.p_raw, b.p_raw)


def test_soz_train_options_reach_the_config():
    import argparse

    from serving.commands.options import config_from_args
    from serving.commands.train import add_arguments, site_options
    from trainer.config import TrainConfig

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(
        ["S", "--out", "R", "--feature-norm", "robust", "--augment", "tilt,dropout"]
    )
    cfg = config_from_args(TrainConfig, args, **site_options(args))
    assert cfg.feature_norm == "robust"
    assert cfg.augment_for("sozformer") == cfg.augment_for("dcgru") == ("tilt", "dropout")
    plain = p.parse_args(["S", "--out", "R"])
    assert config_from_args(TrainConfig, plain, **site_options(plain)) == TrainConfig()
    off = p.parse_args(["S", "--out", "R", "--feature-norm", "none"])
    assert config_from_args(TrainConfig, off, **site_options(off)).feature_norm is None


def test_checkpoint_extras_reach_the_engine(serving_data, tmp_path):
    """A run with per-clip extras: the engine appends them; a run without scores as before."""
    from models.clip_extras import extra_values, relative_extras
    from tests.serving.conftest import make_run_dir

    run_dir = make_run_dir(tmp_path, svm=False, features={**FEATURES, "extras": ["spikes"]})
    extra, plain = Scorer.from_run(run_dir), Scorer.from_run(serving_data["run_dir"])
    assert extra.feature_config["extras"] == ["spikes"] and "extras" not in plain.feature_config
    assert extra.n_feats == plain.n_feats + 1
    assert extra.describe()["feature_config"]["extras"] == ["spikes"]
    clips = np.random.default_rng(1).normal(size=(3, 7, INGEST.clip_samples)).astype(np.float32)
    clips[:, 4, ::97] += 9.0  # sharp transients on one contact
    spectra = spectral_features(clips, INGEST.sfreq, **FEATURES)
    np.testing.assert_array_equal(plain.prep.features(clips), spectra)
    served = extra.prep.features(clips)
    np.testing.assert_array_equal(served[..., :-1], spectra)
    z = relative_extras(extra_values(clips, INGEST.sfreq, ["spikes"]), ["spikes"])
    np.testing.assert_array_equal(served[..., -1:], z)
    res = extra.score(serving_data["long_rec"])
    assert res.probabilities.shape == (7,) and np.all(np.isfinite(res.probabilities))
