"""Fold checkpoints: a round trip rebuilds an identical model with its metadata."""

from __future__ import annotations

import pytest
import torch

from ingest.errors import SozkitError
from models.registry import build_model
from trainer.checkpoint import load_checkpoint, save_checkpoint, unwrap_model


@pytest.mark.parametrize(
    "name, hparams",
    [
        ("sozformer", {"n_feats": 12, "seq_len": 5, "d_model": 16, "n_heads": 2}),
        ("dcgru", {"n_feats": 12, "seq_len": 4, "hidden": 8}),
    ],
)
def test_round_trip_rebuilds_identical_model(tmp_path, name, hparams):
    torch.manual_seed(3)
    model = build_model(name, **hparams).eval()
    path = save_checkpoint(
        tmp_path / name / "fold_0" / "checkpoint.pt",
        model,
        model_name=name,
        threshold=0.37,
        feature_config={"n_bands": 12, "fmin": 0.5, "fmax": None},
        sfreq=200.0,
        clip_samples=1000,
        ingest_config={"sfreq": 200.0, "clip_s": 5.0},
        fold=0,
        extra={"best_epoch": 2},
    )
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert meta.threshold == pytest.approx(0.37)
    assert meta.feature_config["n_bands"] == 12 and meta.seq_len == hparams["seq_len"]
    assert meta.sfreq == 200.0 and meta.clip_samples == 1000 and meta.fold == 0
    assert meta.ingest_config == {"sfreq": 200.0, "clip_s": 5.0}
    assert meta.extra == {"best_epoch": 2}
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 6, hparams["seq_len"], 12)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), loaded(x, mask), rtol=0, atol=0)


def test_ddp_prefix_is_stripped_and_best_state_saved(tmp_path):
    model = build_model("sozformer", n_feats=4, seq_len=3, d_model=8, n_heads=2)
    wrapper = torch.nn.Module()
    wrapper.module = model  # what DistributedDataParallel looks like from outside
    assert unwrap_model(wrapper) is model
    best = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    path = save_checkpoint(
        tmp_path / "c.pt",
        wrapper,
        model_name="sozformer",
        threshold=0.5,
        feature_config={},
        sfreq=100.0,
        clip_samples=500,
        state_dict=best,
    )
    loaded, _ = load_checkpoint(path)
    assert all(torch.count_nonzero(v) == 0 for v in loaded.state_dict().values())


def test_errors_say_what_and_how(tmp_path):
    model = build_model("sozformer", n_feats=4, seq_len=3, d_model=8, n_heads=2)
    with pytest.raises(SozkitError, match="threshold=1.5"):
        save_checkpoint(
            tmp_path / "c.pt",
            model,
            model_name="sozformer",
            threshold=1.5,
            feature_config={},
            sfreq=100.0,
            clip_samples=500,
        )
    with pytest.raises(SozkitError, match="no checkpoint at .*soz train"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(SozkitError, match="not a sozkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_dcgru_checkpoint_from_before_standardize_loads_unstandardised(tmp_path):
    torch.manual_seed(3)
    model = build_model("dcgru", n_feats=12, seq_len=4, hidden=8, standardize=False).eval()
    path = save_checkpoint(
        tmp_path / "checkpoint.pt",
        model,
        model_name="dcgru",
        threshold=0.5,
        feature_config={"n_bands": 12, "fmin": 0.5, "fmax": None},
        sfreq=200.0,
        clip_samples=1000,
    )
    payload = torch.load(path, weights_only=True)
    del payload["hparams"]["standardize"]  # as written before the option existed
    torch.save(payload, path)
    loaded, meta = load_checkpoint(path)
    assert loaded.standardize is False and meta.hparams["standardize"] is False
    x = torch.randn(2, 6, 4, 12)
    mask = torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), loaded(x, mask), rtol=0, atol=0)
