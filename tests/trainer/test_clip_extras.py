"""Per-clip extra measures in the training config, the feature cache and the training loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ingest.errors import ConfigError
from ingest.store import ClipStore
from models.clip_extras import extra_values, relative_extras
from models.site_norm import clip_features
from models.spectral import spectral_features
from serving.commands.options import comma_list
from trainer.config import (
    DEFAULT_AUGMENT,
    DEFAULT_CLIP_EXTRAS,
    NEURAL_MODELS,
    TrainConfig,
    per_model_text,
)
from trainer.datasets import SequenceDataset, recording_table
from trainer.feature_cache import FeatureCacheReader, cache_key, write_recording_features
from trainer.fold_data import site_augment

FEATS = {"n_bands": 8, "fmin": 0.5, "fmax": None}
EXTRAS = ["spikes", "linelength"]


def test_config_gives_each_model_its_inputs():
    cfg = TrainConfig()  # the defaults: spikes for both, tilt for SOZFormer only
    assert cfg.feature_config("sozformer")["extras"] == ["spikes"]
    assert cfg.feature_config("dcgru")["extras"] == ["spikes"]
    assert cfg.augment_for("sozformer") == ("tilt",) and cfg.augment_for("dcgru") == ()
    assert cfg.clip_extras == dict(DEFAULT_CLIP_EXTRAS) and cfg.augment == dict(DEFAULT_AUGMENT)
    assert "extras" not in TrainConfig(clip_extras=()).feature_config("dcgru")  # as before
    glob = TrainConfig(clip_extras=["spikes"], feature_norm="median")
    assert glob.extras_for("sozformer") == glob.extras_for("dcgru") == ("spikes",)
    assert glob.feature_config("dcgru") == {
        "n_bands": 64, "fmin": 0.5, "fmax": None, "norm": "median", "extras": ["spikes"]
    }  # fmt: skip
    per = TrainConfig(clip_extras={"dcgru": ("linelength",)}, augment={"sozformer": ()})
    assert per.extras_for("dcgru") == ("linelength",) and per.augment_for("sozformer") == ()
    assert per.extras_for("sozformer") == ("spikes",)  # not named: its default
    for c in (cfg, glob, per):
        assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert cfg.to_dict()["augment"] == {"sozformer": ["tilt"], "dcgru": []}
    bad = [
        ({"clip_extras": ("kurtosis",)}, "clip_extras of sozformer"),
        ({"clip_extras": ("spikes", "spikes")}, "clip_extras"),
        ({"clip_extras": {"dcgru": ("spikes", "spikes")}}, "clip_extras of dcgru"),
        ({"clip_extras": {"svm": ("spikes",)}}, "not neural models"),
        ({"augment": {"sozfomer": ("tilt",)}}, "not neural models"),
        ({"clip_extras": "spikes"}, "must be a tuple of names"),
        ({"augment": {"dcgru": "tilt"}}, "must be a tuple of names"),
    ]
    for kw, match in bad:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**kw)
    with pytest.raises(ConfigError, match="neural model's input"):
        cfg.feature_config("svm")
    assert comma_list("spikes, linelength") == ("spikes", "linelength")
    assert comma_list("none") == comma_list("") == ()


def test_an_old_config_keeps_the_inputs_it_was_trained_with():
    """Cards before per-model inputs: a global list is every model's; [] or no key is none,
    never today's defaults."""
    old = TrainConfig.from_dict({"clip_extras": ["spikes"], "augment": ["tilt"]})
    assert old.extras_for("dcgru") == ("spikes",) and old.augment_for("dcgru") == ("tilt",)
    for none in ({"clip_extras": [], "augment": []}, {"epochs": 3}):
        cfg = TrainConfig.from_dict(none)
        assert all(cfg.extras_for(m) == cfg.augment_for(m) == () for m in NEURAL_MODELS)
        assert "extras" not in cfg.feature_config("sozformer")


def _parse(*argv):
    import argparse

    from serving.commands.train import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p, p.parse_args(["S", "--out", "R", *argv])


def _cfg(args, recorded=None):
    from serving.commands.options import config_from_args
    from serving.commands.train import site_options

    return config_from_args(TrainConfig, args, **site_options(args, recorded))


def test_soz_train_flags_reach_the_config_for_every_model_or_one():
    p, args = _parse("--clip-extras", "spikes,linelength")
    cfg = _cfg(args)
    assert cfg.extras_for("sozformer") == cfg.extras_for("dcgru") == tuple(EXTRAS)
    assert cfg.augment == dict(DEFAULT_AUGMENT)  # not given: the defaults
    _, per = _parse(
        "--clip-extras", "none", "--clip-extras", "sozformer=spikes", "--augment", "dcgru=dropout"
    )  # fmt: skip
    cfg = _cfg(per)
    assert cfg.extras_for("sozformer") == ("spikes",) and cfg.extras_for("dcgru") == ()
    assert cfg.augment_for("sozformer") == ("tilt",) and cfg.augment_for("dcgru") == ("dropout",)
    _, off = _parse("--clip-extras", "none", "--augment", "none")
    assert _cfg(off) == TrainConfig(clip_extras=(), augment=())
    assert _cfg(_parse()[1]) == TrainConfig()
    with pytest.raises(ConfigError, match="not neural models"):
        _cfg(_parse("--clip-extras", "svm=spikes")[1])
    shown = " ".join(p.format_help().split())  # the defaults, from the config
    assert f"default {per_model_text(DEFAULT_CLIP_EXTRAS)};" in shown
    assert f"default {per_model_text(DEFAULT_AUGMENT)};" in shown
    assert per_model_text(DEFAULT_AUGMENT) == "sozformer=tilt dcgru=none"


def test_soz_train_resume_reads_the_inputs_from_the_card(tmp_path):
    """``--resume`` without the options: the run's own inputs (an old card's ``[]``: none)."""
    from trainer.card import write_card
    from trainer.run import recorded_inputs

    assert recorded_inputs(tmp_path) is None
    write_card({"config": {"clip_extras": [], "augment": ["dropout"]}}, tmp_path / "card.json")
    recorded = recorded_inputs(tmp_path)
    cfg = _cfg(_parse("--resume")[1], recorded)
    assert all(cfg.extras_for(m) == () for m in NEURAL_MODELS)
    assert all(cfg.augment_for(m) == ("dropout",) for m in NEURAL_MODELS)
    cfg = _cfg(_parse("--resume", "--clip-extras", "dcgru=spikes")[1], recorded)
    assert cfg.extras_for("dcgru") == ("spikes",) and cfg.extras_for("sozformer") == ()
    assert cfg.augment_for("sozformer") == ("dropout",)  # not given: the card's


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
    assert cfg.feature_config("sozformer") == fc
    ds = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=fc,
        augment=site_augment(tiny_store, cfg, "sozformer"), augment_seed=3,
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
