"""Training-time site augmentation and per-recording normalisation in the training loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ingest.errors import ConfigError
from ingest.store import ClipStore
from models.site_norm import normalise
from models.spectral import spectral_features
from trainer.config import TrainConfig
from trainer.datasets import SequenceDataset, recording_table
from trainer.fold_data import site_augment
from trainer.site_augment import AUGMENTS, SiteAugment, feature_frequencies

FEATS = {"n_bands": 8, "fmin": 0.5, "fmax": None}


def test_config_records_the_norm_and_checks_both():
    assert "norm" not in TrainConfig().feature_config("sozformer")  # the default: as before
    cfg = TrainConfig(feature_norm="median", augment=["tilt", "dropout"])
    assert cfg.feature_config("dcgru")["norm"] == "median"
    assert cfg.augment_for("sozformer") == cfg.augment_for("dcgru") == ("tilt", "dropout")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="feature_norm"):
        TrainConfig(feature_norm="zscore")
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment=("gain",))
    with pytest.raises(ConfigError, match="augment of dcgru"):
        TrainConfig(augment={"dcgru": ("tilt", "tilt")})


def test_feature_frequencies_are_the_band_centres():
    f = feature_frequencies(1000, 500.0, FEATS)
    assert f.shape == (8,) and 0.5 < f[0] < f[-1] < 250.0 and np.all(np.diff(f) > 0)
    assert np.allclose(feature_frequencies(100, 100.0, {"n_bands": None}), np.arange(1, 51))


def test_augment_tilts_keeps_power_adds_line_and_drops_contacts():
    freqs = np.geomspace(1.0, 200.0, 16)
    x = np.random.default_rng(0).normal(size=(4, 10, 16)).astype(np.float32)
    tilted, keep = SiteAugment(["tilt"], freqs)(x, np.random.default_rng(1))
    assert keep.all() and not np.allclose(tilted, x)
    power = lambda a: np.exp(2 * a).sum(axis=(0, 2))  # noqa: E731
    np.testing.assert_allclose(power(tilted), power(x), rtol=1e-4)
    lined = [SiteAugment(["line"], freqs)(x, np.random.default_rng(s))[0] for s in range(6)]
    changed = [np.flatnonzero(np.abs(a - x).max(axis=(0, 1)) > 0) for a in lined]
    assert any(len(c) for c in changed) and all(set(c) <= set(range(16)) for c in changed)
    assert all((a >= x - 1e-6).all() for a in lined)  # residue only adds amplitude
    dropped, keep = SiteAugment(["dropout"], freqs)(x, np.random.default_rng(3))
    assert 2 <= keep.sum() < 10 and dropped.shape == (4, int(keep.sum()), 16)
    np.testing.assert_array_equal(dropped, x[:, keep])
    with pytest.raises(ValueError, match="unknown augmentation"):
        SiteAugment(["gain"], freqs)


def test_dataset_normalises_and_augments_reproducibly(tiny_store):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    items = np.array([[0, 2], [1, 0]])
    fc = {**FEATS, "norm": "robust"}
    ds = SequenceDataset(tiny_store, recs, items, seq_len=4, feature_config=fc)
    raw = spectral_features(store.read_clips(recs[0].recording_id, 2, 6), store.sfreq, **FEATS)
    expected = normalise(raw, "robust").transpose(1, 0, 2)
    torch.testing.assert_close(ds[0]["x"], torch.from_numpy(np.ascontiguousarray(expected)))
    cfg = TrainConfig(augment=AUGMENTS, n_bands=8)
    aug = site_augment(tiny_store, cfg, "dcgru")
    one = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc, augment=aug, augment_seed=7
    )
    two = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc, augment=aug, augment_seed=7
    )
    for i in range(len(items)):
        a, b = one[i], two[i]
        torch.testing.assert_close(a["x"], b["x"])
        assert a["x"].shape[0] == a["y"].shape[0] <= recs[items[i, 0]].n_channels
    other = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc, augment=aug, augment_seed=8
    )
    assert any(
        other[i]["x"].shape != one[i]["x"].shape or not torch.equal(other[i]["x"], one[i]["x"])
        for i in range(len(items))
    )
