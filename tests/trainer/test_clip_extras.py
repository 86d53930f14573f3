"""Per-clip extra measures in the training config, the feature cache and the training loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ingest.errors import ConfigError
from ingest.store import ClipStore
from models.clip_extras import extra_values, relative_extras
from models.site_norm import clip_features
from models.spectral import spectral_features
from serving.commands.options import comma_list
from trainer.config import TrainConfig
from trainer.datasets import SequenceDataset, recording_table
from trainer.feature_cache import FeatureCacheReader, cache_key, write_recording_features
from trainer.fold_data import site_augment

FEATS = {"n_bands": 8, "fmin": 0.5, "fmax": None}
EXTRAS = ["spikes", "linelength"]


def test_config_records_the_extras_only_when_given():
    assert "extras" not in TrainConfig().feature_config()  # the default: as runs before it
    cfg = TrainConfig(clip_extras=["spikes"], feature_norm="median")
    assert cfg.clip_extras == ("spikes",)
    assert cfg.feature_config() == {
        "n_bands": 64, "fmin": 0.5, "fmax": None, "norm": "median", "extras": ["spikes"]
    }  # fmt: skip
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="clip_extras"):
        TrainConfig(clip_extras=("kurtosis",))
    with pytest.raises(ConfigError, match="clip_extras"):
        TrainConfig(clip_extras=("spikes", "spikes"))
    assert comma_list("spikes, linelength") == ("spikes", "linelength")
    assert comma_list("none") == comma_list("") == ()


def test_soz_train_flag_reaches_the_config():
    import argparse

    from serving.commands.options import config_from_args
    from serving.commands.train import add_arguments, site_options

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["S", "--out", "R", "--clip-extras", "spikes,linelength"])
    assert config_from_args(TrainConfig, args, **site_options(args)).clip_extras == tuple(EXTRAS)
    off = p.parse_args(["S", "--out", "R", "--clip-extras", "none"])
    assert config_from_args(TrainConfig, off, **site_options(off)) == TrainConfig()


def test_cache_is_keyed_by_the_extras(tiny_store, tmp_path):
    assert cache_key(FEATS) == "nb8-fmin0.5-fmaxNone"  # unchanged: old caches stay valid
    assert cache_key({**FEATS, "norm": "median"}) == cache_key(FEATS)
    fc = {**FEATS, "extras": EXTRAS}
    assert cache_key(fc) == "nb8-fmin0.5-fmaxNone-x-spikes+linelength"
    assert cache_key({**fc, "norm": "robust"}) == cache_key(fc)
    store = ClipStore.open(tiny_store)
    rid = recording_table(store)[0].recording_id
    url = str(tmp_path / "cache")
    assert write_recording_features(store, rid, {**fc, "norm": "robust"}, url=url)
    assert not write_recording_features(store, rid, fc, url=url)  # complete: skipped
    cached = FeatureCacheReader(url).read(rid, 0, 5)
    clips = store.read_clips(rid, 0, 5)
    np.testing.assert_array_equal(cached[..., :8], spectral_features(clips, store.sfreq, **FEATS))
    np.testing.assert_allclose(cached[..., 8:], extra_values(clips, store.sfreq, EXTRAS))


def test_loader_gives_the_serving_features_cached_or_not(tiny_store, tmp_path):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    items = np.array([[0, 2], [1, 0]])
    fc = {**FEATS, "norm": "median", "extras": EXTRAS}
    url = str(tmp_path / "cache")
    for r in recs[:2]:
        write_recording_features(store, r.recording_id, fc, url=url)
    cached = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc, feature_cache=url
    )
    direct = SequenceDataset(tiny_store, recs, items, seq_len=4, feature_config=fc, cache_mb=0)
    assert cached.n_feats == direct.n_feats == 10
    for i, (rec, start) in enumerate(items):
        served = clip_features(
            store.read_clips(recs[rec].recording_id, start, start + 4), store.sfreq, fc
        ).transpose(1, 0, 2)
        torch.testing.assert_close(cached[i]["x"], torch.from_numpy(np.ascontiguousarray(served)))
        torch.testing.assert_close(direct[i]["x"], cached[i]["x"])


def test_augmentation_leaves_the_extras_and_drops_their_contacts(tiny_store):
    """Tilt and line change the spectra only; a dropped contact leaves the extras' reference."""
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    items = np.array([[0, 2], [1, 0], [2, 1], [3, 0]])
    fc = {**FEATS, "extras": EXTRAS}
    cfg = TrainConfig(augment=("tilt", "line", "dropout"), n_bands=8, clip_extras=EXTRAS)
    ds = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc,
        augment=site_augment(tiny_store, cfg), augment_seed=3,
    )  # fmt: skip
    saw_dropout = False
    for i, (rec, start) in enumerate(items):
        clips = store.read_clips(recs[rec].recording_id, start, start + 4)
        raw = extra_values(clips, store.sfreq, EXTRAS)  # (S, C, 2)
        x = ds[i]["x"].numpy()  # (C_kept, S, F + 2)
        rng = np.random.default_rng([3, rec, start, i])
        _, keep = ds.augment(spectral_features(clips, store.sfreq, **FEATS), rng)
        assert x.shape[0] == keep.sum() == ds[i]["y"].shape[0]
        saw_dropout |= not keep.all()
        expected = relative_extras(raw[:, keep], EXTRAS).transpose(1, 0, 2)
        np.testing.assert_allclose(x[:, :, -2:], expected, atol=1e-6)
        plain = spectral_features(clips, store.sfreq, **FEATS)[:, keep].transpose(1, 0, 2)
        assert not np.allclose(x[:, :, :-2], plain)  # the spectra were tilted
    assert saw_dropout
