"""Sequence sampling and loading over the clip store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from ingest.errors import SozkitError
from ingest.store import ClipStore
from models.spectral import spectral_features
from trainer.datasets import (
    Prefetcher,
    RecordingInfo,
    SequenceDataset,
    collate_sequences,
    evaluation_sequences,
    make_loader,
    recording_table,
    sample_training_sequences,
    shard,
)
from trainer.feature_cache import FeatureCacheReader, cache_url, write_recording_features

FEATS = {"n_bands": 8, "fmin": 0.5, "fmax": None}


def _rec(i, cohort, n_clips, ictal=()):
    return RecordingInfo(
        recording_id=f"r{i}",
        patient=f"{cohort}/p{i}",
        cohort=cohort,
        n_clips=n_clips,
        channels=("A1", "A2", "A3"),
        labels=np.array([1, 0, 0], np.float32),
        ictal_clips=np.asarray(ictal, np.int64),
    )


def test_recording_table_reads_labels_patients_and_ictal_clips(tiny_store):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    assert len(recs) == 12 and {r.cohort for r in recs} == {"simA", "simB"}
    for r in recs:
        assert r.patient.startswith(r.cohort + "/") and r.labels.sum() == 2
        assert r.is_ictal == ("__ictal__" in r.recording_id)
    with pytest.raises(SozkitError, match="not complete"):
        recording_table(store, ["nope"])


def test_every_recording_gets_the_same_share_whatever_its_length():
    recs = [_rec(0, "A", 14400), _rec(1, "A", 36), _rec(2, "A", 20)]  # 20 h vs minutes
    items = sample_training_sequences(recs, seq_len=4, seqs_per_recording=10, seed=1)
    counts = np.bincount(items[:, 0], minlength=3)
    assert counts.tolist() == [10, 10, 10]
    assert (items[:, 1] >= 0).all() and (
        items[:, 1] + 4 <= np.array([14400, 36, 20])[items[:, 0]]
    ).all()


def test_cohorts_are_balanced_and_ictal_clips_oversampled():
    recs = [_rec(i, "big", 50) for i in range(6)] + [_rec(6, "small", 50, ictal=range(30, 33))]
    items = sample_training_sequences(
        recs, seq_len=5, seqs_per_recording=20, ictal_fraction=0.5, seed=0
    )
    per_cohort = np.bincount((items[:, 0] == 6).astype(int))
    assert abs(per_cohort[0] - per_cohort[1]) <= 6  # 70 expected sequences each
    small = items[items[:, 0] == 6, 1]
    covers_ictal = ((small <= 32) & (small + 5 > 30)).mean()
    assert covers_ictal >= 0.5  # half drawn on ictal clips, plus chance hits
    again = sample_training_sequences(
        recs, seq_len=5, seqs_per_recording=20, ictal_fraction=0.5, seed=0
    )
    other = sample_training_sequences(
        recs, seq_len=5, seqs_per_recording=20, ictal_fraction=0.5, seed=0, epoch=1
    )
    assert np.array_equal(items, again) and not np.array_equal(items, other)


def test_evaluation_covers_every_clip_and_short_recordings():
    recs = [_rec(0, "A", 23), _rec(1, "A", 2)]
    items = evaluation_sequences(recs, seq_len=5)
    starts = items[items[:, 0] == 0, 1]
    assert starts.tolist() == [0, 5, 10, 15, 18]
    assert items[items[:, 0] == 1, 1].tolist() == [0]
    capped = evaluation_sequences(recs, seq_len=5, stride=1, max_per_recording=3)
    assert capped[capped[:, 0] == 0, 1].tolist() == [0, 9, 18]


def test_shards_are_disjoint_equal_and_cover_everything():
    items = np.stack([np.zeros(11, np.int64), np.arange(11)], axis=1)
    parts = [shard(items, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded: every DDP rank takes the same steps
    assert set(np.concatenate(parts)[:, 1]) == set(range(11))
    unpadded = [shard(items, r, 3, pad=False) for r in range(3)]
    assert sorted(np.concatenate(unpadded)[:, 1].tolist()) == list(range(11))
    with pytest.raises(SozkitError, match="rank=3"):
        shard(items, 3, 3)


def test_dataset_features_equal_spectral_features_of_the_stored_clips(tiny_store):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    items = np.array([[0, 2], [1, 0], [0, 2]])
    ds = SequenceDataset(tiny_store, recs, items, seq_len=4, feature_config=FEATS)
    item = ds[0]
    expected = spectral_features(store.read_clips(recs[0].recording_id, 2, 6), store.sfreq, **FEATS)
    torch.testing.assert_close(item["x"], torch.from_numpy(expected.transpose(1, 0, 2)))
    assert item["x"].shape == (recs[0].n_channels, 4, 8) and item["x"].dtype == torch.float32
    assert torch.equal(item["y"], torch.from_numpy(recs[0].labels))
    torch.testing.assert_close(ds[2]["x"], item["x"])  # from the cache
    uncached = SequenceDataset(tiny_store, recs, items, seq_len=4, feature_config=FEATS, cache_mb=0)
    torch.testing.assert_close(uncached[0]["x"], item["x"])


def test_collate_pads_channels_and_masks_them(tiny_store):
    recs = recording_table(ClipStore.open(tiny_store))
    n = [r.n_channels for r in recs]
    a, b = int(np.argmin(n)), int(np.argmax(n))
    assert n[a] < n[b]
    ds = SequenceDataset(
        tiny_store, recs, np.array([[a, 0], [b, 0]]), seq_len=4, feature_config=FEATS
    )
    batch = collate_sequences([ds[0], ds[1]])
    assert batch["x"].shape == (2, n[b], 4, 8)
    assert batch["mask"].sum(1).tolist() == [n[a], n[b]]
    assert (batch["x"][0, n[a] :] == 0).all() and (batch["y"][0, n[a] :] == 0).all()
    assert batch["rec"].tolist() == [a, b]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_yields_every_item_in_order(tiny_store, num_workers):
    recs = recording_table(ClipStore.open(tiny_store))
    items = evaluation_sequences(recs[:3], seq_len=4)
    ds = SequenceDataset(tiny_store, recs, items, seq_len=4, feature_config=FEATS)
    batches = list(make_loader(ds, batch_size=3, num_workers=num_workers))
    starts = torch.cat([b["start"] for b in batches]).tolist()
    assert starts == items[:, 1].tolist()


def test_prefetcher_reraises_worker_errors():
    def gen():
        yield 1
        raise RuntimeError("boom")

    it = iter(Prefetcher(gen(), depth=1))
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(it)


def test_feature_cache_round_trip_and_loader_reads_it(tiny_store, tmp_path):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    url = str(tmp_path / "features")
    rid = recs[0].recording_id
    assert write_recording_features(store, rid, FEATS, url=url) is True
    assert write_recording_features(store, rid, FEATS, url=url) is False  # complete: skipped
    reader = FeatureCacheReader(url)
    assert reader.has(rid) and not reader.has(recs[1].recording_id)
    cached = reader.read(rid, 3, 9)
    expected = spectral_features(store.read_clips(rid, 3, 9), store.sfreq, **FEATS)
    np.testing.assert_allclose(cached, expected, rtol=1e-6)
    # An incomplete array (a killed task) is not used.
    arr = zarr.open_group(url, mode="a")[rid]
    arr.attrs["complete"] = False
    assert not FeatureCacheReader(url).has(rid)
    arr.attrs["complete"] = True
    arr[0] = 0.0  # mark: the loader must take clip 0 from the cache, not recompute it
    items = np.array([[0, 0], [1, 0]])
    ds = SequenceDataset(
        tiny_store, recs, items, seq_len=4, feature_config=FEATS, feature_cache=url
    )
    assert (ds[0]["x"][:, 0] == 0).all() and (ds[0]["x"][:, 1] != 0).any()
    direct = spectral_features(store.read_clips(recs[1].recording_id, 0, 4), store.sfreq, **FEATS)
    torch.testing.assert_close(ds[1]["x"], torch.from_numpy(direct.transpose(1, 0, 2)))
    assert cache_url("s3://b/st/", FEATS).startswith("s3://b/st/features/spectral-v1-nb8-")
    assert not FeatureCacheReader(str(tmp_path / "none")).has(rid)


def test_a_normalised_run_reads_the_cache_written_without_normalisation(tiny_store, tmp_path):
    """``--feature-norm`` is applied after the cache: a median run reuses the cache of a plain one."""
    import shutil

    from trainer.config import TrainConfig

    url = str(tmp_path / "store.zarr")
    shutil.copytree(tiny_store, url)
    store = ClipStore.open(url)
    recs = recording_table(store)
    rid = recs[0].recording_id
    # The spectra alone (clip_extras=()): the norm's part of the cache key, nothing else.
    plain = TrainConfig(clip_extras=()).feature_config("sozformer")
    median = TrainConfig(clip_extras=(), feature_norm="median").feature_config("sozformer")
    assert "norm" in median and "norm" not in plain
    assert write_recording_features(store, rid, plain) is True
    assert cache_url(url, median) == cache_url(url, plain)
    assert write_recording_features(store, rid, median) is False  # reused
    zarr.open_group(cache_url(url, plain), mode="a")[rid][0] = 0.0  # a mark
    ds = SequenceDataset(
        url, recs, np.array([[0, 0]]), seq_len=4, feature_config=median,
        feature_cache=cache_url(url, median),
    )  # fmt: skip
    x = ds[0]["x"]  # (C, S, F): clip 0 from the cache (0 stays 0 after the median), clip 1 not
    assert (x[:, 0] == 0).all() and (x[:, 1] != 0).any()


def _cache_after_barrier(store_url, rid, url, barrier, errors) -> None:
    barrier.wait()  # every process opens the new cache at the same moment
    try:
        write_recording_features(ClipStore.open(store_url), rid, FEATS, url=url)
    except Exception as e:  # reported to the test, which names it
        errors.put(f"{rid}: {type(e).__name__}: {e}")


def test_recordings_cached_at_once_all_land_in_a_new_cache(tiny_store, tmp_path):
    # Training caches every recording in a Ray task of its own; the first tasks find the cache
    # missing together, and zarr creates a group exclusively (ContainsGroupError for the others).
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    rids = [r.recording_id for r in recording_table(ClipStore.open(tiny_store))]
    assert len(rids) >= 4
    for trial in range(4):
        url = str(tmp_path / f"cache{trial}" / "features")
        barrier, errors = ctx.Barrier(len(rids)), ctx.Queue()
        procs = [
            ctx.Process(target=_cache_after_barrier, args=(tiny_store, rid, url, barrier, errors))
            for rid in rids
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * len(procs)
        failed = [errors.get() for _ in range(errors.qsize())]
        assert not failed, failed
        assert all(FeatureCacheReader(url).has(rid) for rid in rids)
