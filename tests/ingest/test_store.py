"""The clip store contract: layout, manifests, completion marker, scaling, atomic commits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from ingest.config import IngestConfig
from ingest.errors import ConfigError, SozkitError
from ingest.preprocessing import scale_clips
from ingest.recording import Recording
from ingest.store import ClipStore, failures_frame, make_failure
from ingest.stream import channel_rows, clip_labels

CFG = IngestConfig(sfreq=250.0, block_clips=2)
NAMES = ("A1", "A2", "B1")


def _rec(rid: str) -> Recording:
    return Recording(
        rid, "c", "s", f"/{rid}.edf", 250.0, 250 * 26, NAMES, ("seeg",) * 3, soz=frozenset({"A2"})
    )


def _row(rec: Recording, n_clips: int) -> dict:
    return {
        "recording_id": rec.recording_id,
        "subject": rec.subject,
        "session": None,
        "task": None,
        "run": None,
        "acquisition": None,
        "cohort": rec.cohort,
        "centre": None,
        "source_path": rec.path,
        "sfreq": 250.0,
        "orig_sfreq": 250.0,
        "resample_up": 1,
        "resample_down": 1,
        "line_freq": 50.0,
        "n_channels": 3,
        "n_clips": n_clips,
        "duration_s": rec.duration_s,
        "n_seizures": 0,
        "complete": True,
        "ingested_at": pd.Timestamp.now(tz="UTC"),
    }


def _ingest(store: ClipStore, rid: str, data: np.ndarray, scale) -> None:
    rec = _rec(rid)
    store.create_array(rid, n_clips=data.shape[0], n_channels=3)
    for start in range(0, data.shape[0], CFG.block_clips):
        store.write_block(rid, start, data[start : start + CFG.block_clips].astype("float16"))
    store.commit(
        recordings=pd.DataFrame([_row(rec, data.shape[0])]),
        channels=channel_rows(rec, np.asarray(scale, np.float32)),
        clips=clip_labels(rec, CFG),
        failures=failures_frame([]),
    )


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(0, 50, (5, 3, 1250)).astype(np.float32)


def test_layout_and_read_back(tmp_path, data):
    url = tmp_path / "store"
    _ingest(ClipStore.open(url, "a", config=CFG), "c__r1", data, [1.0, 2.0, 4.0])
    store = ClipStore.open(url)
    assert (store.sfreq, store.clip_samples, store.ingest_config) == (250.0, 1250, CFG)
    meta = json.loads((url / "zarr.json").read_text())["attributes"]["sozkit"]
    assert meta["ingest_config"] == CFG.to_dict()
    arr = zarr.open_array(url / "clips" / "c__r1", mode="r")
    assert arr.shape == (5, 3, 1250) and arr.dtype == np.float16
    assert arr.shards == (2, 3, 1250) and arr.chunks == (1, 3, 1250)
    assert sorted(p.name for p in url.glob("*.parquet")) == [
        "channels.parquet",
        "clips.parquet",
        "recordings.parquet",
    ]
    raw = store.read_clips("c__r1", 1, 4, scaled=False)
    assert raw.dtype == np.float32 and raw.shape == (3, 3, 1250)
    np.testing.assert_array_equal(raw, data[1:4].astype(np.float16).astype(np.float32))
    scaled = store.read_clips("c__r1", 1, 4)
    np.testing.assert_array_equal(scaled, scale_clips(raw, np.array([1, 2, 4], np.float32)))
    ch = store.channels()
    assert ch["soz"].dtype == "boolean" and ch["soz"].tolist() == [False, True, False]
    assert ch["resected"].isna().all()
    assert store.clips(["c__r1"])["seizure"].dtype == "Int64"
    with pytest.raises(IndexError, match="start=3, stop=9"):
        store.read_clips("c__r1", 3, 9)


def test_half_written_is_not_complete_and_append_keeps_others(tmp_path, data):
    url = tmp_path / "store"
    store = ClipStore.open(url, "a", config=CFG)
    _ingest(store, "c__r1", data, [1, 1, 1])
    store.create_array("c__r2", n_clips=5, n_channels=3)  # killed after one block
    store.write_block("c__r2", 0, data[:2].astype("float16"))
    reader = ClipStore.open(url)
    assert reader.recordings()["recording_id"].tolist() == ["c__r1"]
    with pytest.raises(KeyError, match="not a complete recording"):
        reader.read_clips("c__r2", 0, 1)
    with pytest.raises(KeyError, match="not complete recordings"):
        reader.channels(["c__r2"])
    first_clips = (url / "clips.parquet").stat().st_mtime_ns
    _ingest(ClipStore.open(url, "a"), "c__r2", data * 2, [2, 2, 2])  # redone, appended
    store = ClipStore.open(url)
    assert store.recordings()["recording_id"].tolist() == ["c__r1", "c__r2"]
    assert len(store.clips()) == 10 and len(store.channels()) == 6
    assert (url / "clips.parquet").stat().st_mtime_ns != first_clips
    np.testing.assert_array_equal(
        store.read_clips("c__r1", 0, 5, scaled=False), data.astype(np.float16).astype(np.float32)
    )


def test_failures_replaced_by_retry(tmp_path, data):
    url = tmp_path / "store"
    store = ClipStore.open(url, "a", config=CFG)
    fail = make_failure(
        recording_id="c__r1", source="/c__r1.edf", stage="plan", reason="x", fix="y"
    )
    store.commit(
        recordings=pd.DataFrame(),
        channels=pd.DataFrame(),
        clips=pd.DataFrame(),
        failures=failures_frame([fail]),
        attempted={"c__r1"},
    )
    assert ClipStore.open(url).failures()["reason"].tolist() == ["x"]
    _ingest(ClipStore.open(url, "a"), "c__r1", data, [1, 1, 1])  # retried and done
    assert ClipStore.open(url).failures().empty


def test_open_errors(tmp_path):
    with pytest.raises(SozkitError, match="no clip store"):
        ClipStore.open(tmp_path / "none")
    ClipStore.open(tmp_path / "s", "a", config=CFG)
    with pytest.raises(ConfigError, match=r"'block_clips': \(2, 60\)"):
        ClipStore.open(tmp_path / "s", "a", config=IngestConfig(sfreq=250.0))
    zarr.open_group(tmp_path / "other", mode="w")
    with pytest.raises(SozkitError, match="not a sozkit clip store"):
        ClipStore.open(tmp_path / "other")
    ro = ClipStore.open(tmp_path / "s")
    with pytest.raises(SozkitError, match="read-only"):
        ro.create_array("x", n_clips=1, n_channels=1)


def test_block_writes_must_be_whole_shards(tmp_path, data):
    store = ClipStore.open(tmp_path / "s", "a", config=CFG)
    store.create_array("c__r1", n_clips=5, n_channels=3)
    with pytest.raises(ValueError, match="multiple of block=2"):
        store.write_block("c__r1", 1, data[1:3].astype("float16"))
    with pytest.raises(ValueError, match="must hold 2 clips"):
        store.write_block("c__r1", 2, data[2:3].astype("float16"))
    store.write_block("c__r1", 4, data[4:5].astype("float16"))  # the short last shard


def test_memory_fsspec_url(data):
    url = "memory://sozkit-test-store"
    _ingest(ClipStore.open(url, "a", config=CFG), "c__r1", data, [1, 1, 1])
    store = ClipStore.open(url)
    assert store.recordings()["n_clips"].tolist() == [5]
    assert store.read_clips("c__r1", 0, 5).shape == (5, 3, 1250)


def test_warnings_table_replaced_per_recording_and_per_source(tmp_path, data):
    from ingest.manifests import warning_kind, warning_row
    from ingest.store import warnings_frame

    store = ClipStore.open(tmp_path / "s", "a", config=CFG)
    _ingest(store, "r1", data, [1.0, 1.0, 1.0])

    def commit(rows, attempted=()):
        store.commit(
            recordings=pd.DataFrame(),
            channels=pd.DataFrame(),
            clips=pd.DataFrame(),
            failures=failures_frame([]),
            warnings=warnings_frame(rows),
            attempted=attempted,
        )

    commit(
        [
            warning_row("r1", "/r1.edf", "subject 's' is not in the label sheet; unlabelled."),
            warning_row("r1", "/r1.edf", "MNE: Channel names are not unique"),
            warning_row(None, "/cohort", "participants.tsv lists 3 subjects without recordings"),
        ],
        attempted=["r1"],
    )
    w = ClipStore.open(tmp_path / "s").warnings()
    assert sorted(w["kind"]) == ["labels", "mne", "other"]
    # a re-run of r1 and of the source replaces their warnings, never duplicates them
    commit([warning_row("r1", "/r1.edf", "MNE: Channel names are not unique")], attempted=["r1"])
    commit([warning_row(None, "/cohort", "one new source warning")])
    w = ClipStore.open(tmp_path / "s").warnings()
    w = w.astype(object).where(w.notna(), None)
    assert w[["recording_id", "message"]].values.tolist() == [
        ["r1", "MNE: Channel names are not unique"],
        [None, "one new source warning"],
    ]
    assert list(w.columns) == ["recording_id", "source", "kind", "message"]
    assert warning_kind("seizure onset at 90 s lies past the end") == "events"
    assert warning_kind("no PowerLineFrequency in the sidecar") == "line-freq"
