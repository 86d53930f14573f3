"""End-to-end ingest on Beam's real local runner (FnApiRunner): tiny EDF cohorts -> clip store."""

from __future__ import annotations

import math
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from ingest.config import IngestConfig
from ingest.driver import ingest_recordings
from ingest.errors import ConfigError
from ingest.pipeline import IngestRecordings, _local_runner, pipeline_options
from ingest.recording import SeizureEvent
from ingest.signals import open_signal
from ingest.store import ClipStore
from ingest.stream import process_recording
from tests.ingest.conftest import FAST, make_recording

IN_MEMORY = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _files(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in Path(root).rglob("*") if p.is_file()}


def test_cohort_end_to_end_with_testpipeline(tiny_cohort, tmp_path):
    store_url = str(tmp_path / "store")
    ClipStore.open(store_url, "a", config=FAST)
    with test_pipeline.TestPipeline(options=pipeline_options(FAST, IN_MEMORY)) as p:
        out = p | beam.Create(tiny_cohort) | IngestRecordings(store_url, FAST)
        assert_that(
            out,
            equal_to([{"recordings": 3, "clips": 4 + 6 + 2, "failures": 0}]),
        )
    store = ClipStore.open(store_url)
    rec = store.recordings().set_index("recording_id")
    for r in tiny_cohort:
        row = rec.loc[r.recording_id]
        # clip counts = floor(duration / 5)
        assert row["n_clips"] == math.floor(r.duration_s / 5.0)
        assert store.array(r.recording_id).shape == (row["n_clips"], len(r.contacts), 1250)
        ch = store.channels([r.recording_id])
        # bad contacts absent, order kept, SOZ labels equal the metadata's
        assert list(ch["name"]) == list(r.contacts)
        if r.soz is None:
            assert ch["soz"].isna().all()
        else:
            assert set(ch.loc[ch["soz"].astype(bool), "name"]) == set(r.soz)
        # block-wise (the store) equals one-shot processing, within the float16 bound
        with open_signal(r) as reader:
            one = process_recording(reader, r, FAST).clips
        stored = store.read_clips(r.recording_id, 0, row["n_clips"], scaled=False)
        assert np.all(np.abs(stored - one) <= 2.0**-11 * np.abs(one) + 1e-3 * one.std())
    assert "tiny__p1" in rec.index and "B1" not in set(store.channels(["tiny__p1"])["name"])
    # ictal clips match the events: seizure 7.0-12.5 s overlaps clips 1 and 2 ([5,10), [10,15))
    clips = store.clips(["tiny__p1"])
    assert list(clips["ictal"]) == [False, True, True, False]
    assert list(clips["seizure"].fillna(-1)) == [-1, 0, 0, -1]
    assert clips["seconds_from_onset"].tolist()[1:3] == [-2.0, 3.0]
    assert store.failures().empty


def test_rerun_is_idempotent_and_new_cohort_appends(tiny_cohort, tmp_path):
    store_url = tmp_path / "store"
    calls = []
    first = ingest_recordings(
        tiny_cohort[:2],
        store_url,
        FAST,
        pipeline_args=IN_MEMORY,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (5, 5)  # 2 + 3 blocks
    assert (first.n_ingested, first.n_failed, first.n_clips) == (2, 0, 10)
    assert first.counters["ProcessBlocks/clips"] == 10
    assert first.counters["ProcessBlocks/bytes"] > 0
    before = _files(store_url)
    again = ingest_recordings(tiny_cohort[:2], store_url, FAST, pipeline_args=IN_MEMORY)
    assert (again.n_skipped, again.n_ingested) == (2, 0)
    assert _files(store_url) == before  # nothing rewritten
    # a new cohort appends without touching what is there
    more = ingest_recordings(tiny_cohort, store_url, FAST, pipeline_args=IN_MEMORY)
    assert (more.n_skipped, more.n_ingested) == (2, 1)
    after = _files(store_url)
    shards = [k for k in before if "/clips/" in k]
    assert shards and all(after[k] == before[k] for k in shards)
    assert set(ClipStore.open(store_url).recordings()["recording_id"]) == {
        r.recording_id for r in tiny_cohort
    }
    with pytest.raises(ConfigError, match="different ingest config"):
        ingest_recordings(
            tiny_cohort, store_url, IngestConfig(sfreq=500.0), pipeline_args=IN_MEMORY
        )


def test_half_written_recording_is_redone(tiny_cohort, tmp_path):
    store_url = tmp_path / "store"
    rec = tiny_cohort[1]
    # a killed run: the template and one shard written, no manifest rows
    store = ClipStore.open(store_url, "a", config=FAST)
    store.create_array(rec.recording_id, n_clips=6, n_channels=len(rec.contacts))
    store.write_block(rec.recording_id, 2, np.ones((2, len(rec.contacts), 1250), "float16"))
    reader = ClipStore.open(store_url)
    assert reader.recordings().empty
    with pytest.raises(KeyError, match="not a complete recording"):
        reader.read_clips(rec.recording_id, 0, 1)
    report = ingest_recordings([rec], store_url, FAST, pipeline_args=IN_MEMORY)
    assert report.n_ingested == 1
    stored = ClipStore.open(store_url).read_clips(rec.recording_id, 0, 6, scaled=False)
    with open_signal(rec) as reader:
        one = process_recording(reader, rec, FAST).clips
    assert (stored[2:4] != 1.0).mean() > 0.99  # the stale shard was replaced ...
    np.testing.assert_allclose(stored, one, rtol=2.0**-11, atol=1e-3 * one.std())  # ... rightly


def test_failures_reported_while_the_rest_completes(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    good = make_recording(folder, "good", seconds=12.0)
    short = make_recording(folder, "short", seconds=3.0)
    all_bad = make_recording(folder, "allbad", seconds=12.0, bad=("A1", "B1", "C1", "D1"))
    no_line = make_recording(folder, "noline", seconds=12.0, line_freq=None)
    truncated = make_recording(folder, "trunc", seconds=12.0)
    size = os.path.getsize(truncated.path)
    with open(truncated.path, "r+b") as f:
        f.truncate(size - 1000)
    contradicts = make_recording(folder, "contra", seconds=12.0)
    contradicts = type(contradicts)(
        **{
            **contradicts.__dict__,
            "channels": ("A1", "B1", "C1", "X9"),
            "recording_id": "tiny__contra",
        }
    )
    nan = _brainvision_with_nan(folder)
    recs = [good, short, all_bad, no_line, truncated, contradicts, nan]
    report = ingest_recordings(recs, tmp_path / "store", FAST, pipeline_args=IN_MEMORY)
    assert report.n_ingested == 1
    f = report.failures.set_index("recording_id")
    expected = {
        "tiny__short": "shorter than one",
        "tiny__allbad": "no contact left",
        "tiny__noline": "power-line frequency is unknown",
        "tiny__trunc": "truncated EDF",
        "tiny__contra": "lacks: X9",
        "tiny__nan": "NaN/inf samples",
    }
    assert set(f.index) == set(expected)
    for rid, text in expected.items():
        assert text in f.loc[rid, "reason"], (rid, f.loc[rid, "reason"])
        assert f.loc[rid, "fix"]
        assert f.loc[rid, "source"].endswith((".edf", ".vhdr"))
    assert list(ClipStore.open(tmp_path / "store").recordings()["recording_id"]) == ["tiny__good"]


def _brainvision_with_nan(folder: Path):
    from ingest.recording import Recording
    from tests.ingest.signal_files import write_brainvision

    vhdr = folder / "nan.vhdr"
    data = write_brainvision(vhdr, ["A1", "A2"], sfreq=250.0, seconds=12.0)
    raw = np.fromfile(vhdr.with_suffix(".eeg"), "<f4").reshape(-1, 2)
    raw[1000:1010, 1] = np.nan
    raw.tofile(vhdr.with_suffix(".eeg"))
    return Recording(
        recording_id="tiny__nan",
        cohort="tiny",
        subject="nan",
        path=str(vhdr),
        sfreq=250.0,
        n_times=data.shape[1],
        channels=("A1", "A2"),
        ch_types=("seeg", "seeg"),
        line_freq=50.0,
        fmt="brainvision",
        seizures=(SeizureEvent(1.0, 2.0),),
    )


def test_default_options_are_the_local_multiprocess_runner():
    cfg = IngestConfig(**FAST.to_dict(), num_workers=2)
    opts = pipeline_options(cfg).get_all_options()
    assert opts["runner"] == "FnApiRunner"
    assert (opts["direct_num_workers"], opts["direct_running_mode"]) == (2, "multi_processing")
    given = pipeline_options(cfg, ["--runner=DataflowRunner", "--project=p"]).get_all_options()
    assert given["runner"] == "DataflowRunner" and given["project"] == "p"


def _worker_log_level(options) -> str | None:
    runner = _local_runner(options)
    if runner is None:
        return None
    worker_options = runner._provision_info.provision_info.pipeline_options
    return worker_options["beam:option:default_sdk_harness_log_level:v1"]


def test_local_worker_processes_are_told_the_harness_log_level():
    cfg = IngestConfig(**FAST.to_dict(), num_workers=2)
    assert _worker_log_level(pipeline_options(cfg)) == "WARNING"
    given = ["--default_sdk_harness_log_level=DEBUG"]
    assert _worker_log_level(pipeline_options(cfg, given)) == "DEBUG"
    # one in-process worker, or another runner: Beam's own runner, untouched
    assert _local_runner(pipeline_options(IngestConfig(**FAST.to_dict(), num_workers=1))) is None
    assert _local_runner(pipeline_options(cfg, ["--runner=DataflowRunner"])) is None


@pytest.mark.slow  # ~25 s: two worker processes import the whole stack
def test_local_runner_multiprocess(tiny_cohort, tmp_path, capfd):
    cfg = IngestConfig(**FAST.to_dict(), num_workers=2)
    report = ingest_recordings(tiny_cohort[:2], tmp_path / "store", cfg)
    assert report.n_ingested == 2 and report.n_failed == 0
    assert report.counters["ProcessBlocks/clips"] == 10
    # the worker processes' start-up chatter stays off the terminal
    assert "INFO:apache_beam.runners.worker.sdk_worker" not in capfd.readouterr().err


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from ingest.simulate import simulate_cohort
    from tests.cohorts import smallest_cohort

    cfg = smallest_cohort(n_interictal_runs=0, onset_window_s=(5.0, 6.0), n_centres=1)
    return simulate_cohort(tmp_path_factory.mktemp("sim"), cfg)


def test_soz_ingest_cli_on_simulated_cohort(simulated, tmp_path, capsys):
    from ingest.sources import scan_source
    from serving.cli import main

    store_url = tmp_path / "store"
    argv = ["ingest", str(simulated), "--out", str(store_url), "--sfreq", "250"]
    argv += ["--block-clips", "4", "--workers", "1", "--no-progress", "--line-freq", "50"]
    assert main(argv) == 0
    assert "1 recordings ingested (15 clips)" in capsys.readouterr().out
    store = ClipStore.open(store_url)
    (rec,) = scan_source(simulated).recordings
    row = store.recordings().iloc[0]
    assert row["n_clips"] == math.floor(rec.duration_s / 5.0) == 15
    ch = store.channels()
    assert list(ch["name"]) == list(rec.contacts)
    assert set(ch.loc[ch["soz"].astype(bool), "name"]) == set(rec.soz) & set(rec.contacts)
    (sz,) = rec.seizures
    clips = store.clips()
    starts = clips["start_s"].to_numpy()
    expect = (starts < (sz.offset_s or rec.duration_s)) & (starts + 5.0 > sz.onset_s)
    assert (clips["ictal"].to_numpy() == expect).all() and expect.any()
    assert main(argv) == 0  # re-run: everything already complete
    assert "0 recordings ingested (0 clips), 1 already complete" in capsys.readouterr().out
