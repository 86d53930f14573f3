"""Bad recordings are failure rows, bugs stop the job: on Beam's real local runner."""

from __future__ import annotations

import os

import pytest

import ingest.pipeline
from ingest.driver import ingest_recordings
from ingest.errors import RecordingError
from ingest.manifests import is_recording_error
from ingest.signals import SignalReader
from ingest.store import ClipStore
from tests.ingest.conftest import FAST

IN_MEMORY = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def test_a_reader_error_mid_recording_is_a_failure_row_and_the_rest_completes(
    tiny_cohort, tmp_path, monkeypatch
):
    victim = tiny_cohort[1]  # 3 blocks: the file is cut once the first block has been read
    read = SignalReader.read
    cut = []

    def read_then_cut(self, start, stop, picks):
        out = read(self, start, stop, picks)
        if self.recording.recording_id == victim.recording_id and not cut:
            size = os.path.getsize(victim.path)
            with open(victim.path, "r+b") as f:
                f.truncate(size // 2)
            cut.append(size)
        return out

    monkeypatch.setattr(SignalReader, "read", read_then_cut)
    report = ingest_recordings(tiny_cohort, tmp_path / "store", FAST, pipeline_args=IN_MEMORY)
    assert cut  # the fault really happened, inside the real reader
    assert report.n_ingested == 2
    f = report.failures
    assert list(f["recording_id"]) == [victim.recording_id]
    assert f.loc[0, "stage"].startswith("block") and "ended while reading" in f.loc[0, "reason"]
    done = set(ClipStore.open(tmp_path / "store").recordings()["recording_id"])
    assert done == {r.recording_id for r in tiny_cohort} - {victim.recording_id}


@pytest.mark.parametrize("error", [TypeError, KeyError, ValueError])
def test_a_bug_in_a_block_stops_the_job_naming_the_recording_and_block(
    tiny_cohort, tmp_path, monkeypatch, error
):
    victim = tiny_cohort[0]
    process_block = ingest.pipeline.process_block

    def buggy(reader, rec, block, cfg, **kw):
        if rec.recording_id == victim.recording_id and block.index == 1:
            raise error("an injected programming error")
        return process_block(reader, rec, block, cfg, **kw)

    monkeypatch.setattr(ingest.pipeline, "process_block", buggy)
    with pytest.raises(Exception, match=rf"{victim.recording_id}.*block 1") as info:
        ingest_recordings(tiny_cohort, tmp_path / "store", FAST, pipeline_args=IN_MEMORY)
    assert "injected programming error" in str(info.value)
    assert error.__name__ in str(info.value)
    # not recorded as a bad recording
    assert ClipStore.open(tmp_path / "store").failures().empty


def _raised_in(filename: str, exc: Exception) -> Exception:
    code = compile("raise exc", filename, "exec")
    try:
        exec(code, {"exc": exc})
    except Exception as e:
        return e
    raise AssertionError("not raised")


def test_is_recording_error_tells_bad_input_from_bugs():
    assert is_recording_error(RecordingError("f.edf", "cut", "copy it again"))
    assert is_recording_error(OSError("disk full"))
    assert is_recording_error(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))
    # a ValueError counts only when a decoder raised it
    decoder = os.path.join(os.sep, "x", "site-packages", "mne", "io", "edf", "edf.py")
    assert is_recording_error(_raised_in(decoder, ValueError("bad header field")))
    signals = os.path.join(os.sep, "src", "ingest", "signals.py")
    assert is_recording_error(_raised_in(signals, ValueError("bad record")))
    assert not is_recording_error(_raised_in(__file__, ValueError("shapes do not match")))
    assert not is_recording_error(_raised_in(decoder, TypeError("a bug, even in a decoder")))
    assert not is_recording_error(KeyError("x"))
    assert not is_recording_error(ZeroDivisionError())
