"""Block plan and block processing: block-wise equals one-shot, bounded reads, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ingest import stream
from ingest.config import IngestConfig
from ingest.errors import RecordingError
from ingest.recording import Recording, SeizureEvent
from ingest.signals import open_signal
from tests.ingest.conftest import FAST, ArrayReader, make_recording, signal

NAMES = ["A1", "A2", "B1", "B2", "C1"]


def _rec(sfreq: float, seconds: float, **kw) -> Recording:
    n = int(round(sfreq * seconds))
    kw.setdefault("line_freq", 50.0)
    return Recording("c__s", "c", "s", "mem", sfreq, n, tuple(NAMES), ("seeg",) * 5, **kw)


@pytest.mark.parametrize("sfreq", [1024.0, 999.41, 250.0, 200.0, 2048.0])
def test_blockwise_equals_one_shot(sfreq):
    """Stated tolerance: max |block-wise - one-shot| <= 1e-4 x RMS (measured ~1e-5, float32)."""
    rec = _rec(sfreq, 47.3)
    reader = ArrayReader(signal(5, rec.n_times, sfreq), NAMES)
    one = stream.process_recording(reader, rec, FAST)
    blocks = stream.plan_blocks(rec, FAST)
    assert [b.n_clips for b in blocks] == [2, 2, 2, 2, 1]
    parts = [stream.process_block(reader, rec, b, FAST) for b in blocks]
    clips = np.concatenate([p.clips for p in parts])
    assert clips.shape == one.clips.shape == (9, 5, 1250)
    rms = np.sqrt(np.mean(one.clips**2))
    assert np.abs(clips - one.clips).max() <= 1e-4 * rms
    np.testing.assert_allclose(np.concatenate([p.clip_std for p in parts]), one.clip_std, rtol=1e-3)


def test_blockwise_equals_one_shot_on_edf(tmp_path):
    rec = make_recording(tmp_path, "edf", sfreq=512.0, seconds=31.0)
    with open_signal(rec) as reader:
        one = stream.process_recording(reader, rec, FAST).clips
        parts = [
            stream.process_block(reader, rec, b, FAST).clips for b in stream.plan_blocks(rec, FAST)
        ]
    clips = np.concatenate(parts)
    assert np.abs(clips - one).max() <= 1e-4 * np.sqrt(np.mean(one**2))


def test_channel_groups_and_storage_dtype(tmp_path):
    """More contacts than CHANNEL_GROUP, read group by group from EDF: the same clips as one
    whole read; ``dtype=`` gives exactly ``to_storage`` of the float32 clips, statistics alike."""
    from ingest.preprocessing import to_storage

    n_chans = 2 * stream.CHANNEL_GROUP + 3
    rec = make_recording(tmp_path, "wide", n_chans=n_chans, sfreq=512.0, seconds=21.0)
    with open_signal(rec) as reader:
        assert reader.channel_subsets
        block = stream.plan_blocks(rec, FAST)[1]
        grouped = stream.process_block(reader, rec, block, FAST)
        whole = reader.read(block.src_start, block.src_stop, list(rec.contacts))
        stored = stream.process_block(reader, rec, block, FAST, dtype="float16")
    names = list(rec.contacts)
    at_once = stream.process_block(
        ArrayReader(np.pad(whole, ((0, 0), (block.src_start, 0))), names), rec, block, FAST
    )
    assert grouped.clips.shape == (2, n_chans, 1250)
    np.testing.assert_allclose(grouped.clips, at_once.clips, rtol=1e-5, atol=1e-4)
    want, n_sat = to_storage(grouped.clips, "float16")
    assert stored.clips.dtype == np.float16 and stored.n_saturated == n_sat == 0
    np.testing.assert_array_equal(stored.clips, want)
    np.testing.assert_array_equal(stored.clip_std, grouped.clip_std)


def test_preprocessing_removes_line_noise_and_dc():
    rec = _rec(1024.0, 40.0)
    x = signal(5, rec.n_times, 1024.0)  # 50 Hz line noise of 30 uV and a 200 uV offset
    cfg = IngestConfig(sfreq=1000.0, block_clips=3, line_freq=None)
    out = stream.process_recording(ArrayReader(x, NAMES), rec, cfg).clips
    spec = np.abs(np.fft.rfft(out[2:6].reshape(-1, 5, 5000), axis=-1)).mean(axis=(0, 1))
    freqs = np.fft.rfftfreq(5000, 1 / 1000.0)
    line = spec[np.argmin(np.abs(freqs - 50.0))]
    near = np.median(spec[(freqs > 40) & (freqs < 48)])
    assert line < near  # the 50 Hz peak is gone (it was ~100x above the floor)
    assert abs(out.mean()) < 1.0  # the 200 uV offset is gone


def test_plan_margins_and_anchor_alignment():
    cfg = IngestConfig(block_clips=60)
    rec = _rec(1024.0, 3600.0)
    blocks = stream.plan_blocks(rec, cfg)
    assert len(blocks) == 12 and blocks[-1].clip_stop == 720
    for b in blocks:
        assert b.anchor % 125 == 0 and b.src_start == b.anchor // 125 * 128
        span = b.src_stop - b.src_start
        assert span < 1.03 * b.n_clips * 5 * 1024  # margins stay a few % of a 5-min block


def test_reads_are_bounded_by_the_block():
    """A long recording never reads more than one block (+ margins) at a time."""

    class Counting(ArrayReader):
        widest = 0

        def read(self, start, stop, picks):
            Counting.widest = max(Counting.widest, stop - start)
            return super().read(start, stop, picks)

    rec = _rec(250.0, 120.0)
    reader = Counting(signal(5, rec.n_times, 250.0), NAMES)
    for b in stream.plan_blocks(rec, FAST):
        stream.process_block(reader, rec, b, FAST)
    assert Counting.widest <= 2 * 5 * 250 + 2 * 1000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bad": frozenset(NAMES)}, "no contact left"),
        ({"seconds": 4.0}, "shorter than one"),
        ({"line_freq": None}, "power-line frequency is unknown"),
    ],
)
def test_unprocessable_recordings_raise(kwargs, match):
    seconds = kwargs.pop("seconds", 20.0)
    rec = _rec(250.0, seconds, **kwargs)
    with pytest.raises(RecordingError, match=match) as info:
        stream.plan_blocks(rec, FAST)
    assert info.value.fix


def test_nan_block_is_a_recording_error():
    rec = _rec(250.0, 20.0)
    x = signal(5, rec.n_times, 250.0)
    x[3, 500:510] = np.nan  # at 2 s: in block 0 (0-10 s), beyond block 1's margin (8.3 s)
    blocks = stream.plan_blocks(rec, FAST)
    reader = ArrayReader(x, NAMES)
    stream.process_block(reader, rec, blocks[1], FAST)  # 2 clips away: margins do not reach
    with pytest.raises(RecordingError, match=r"10 NaN/inf samples in 1 channel\(s\) \(B2\)"):
        stream.process_block(reader, rec, blocks[0], FAST)


def test_clip_and_channel_rows():
    rec = _rec(
        250.0, 23.0, bad=frozenset({"A2"}), soz=frozenset({"A1"}), seizures=(SeizureEvent(6, 9),)
    )
    clips = stream.clip_labels(rec, FAST)
    assert clips["clip_index"].tolist() == [0, 1, 2, 3]
    assert clips["ictal"].tolist() == [False, True, False, False]
    assert clips["seizure"].isna().tolist() == [True, False, True, True]
    ch = stream.channel_rows(rec, np.array([1, 2, 3, 4], np.float32))
    assert ch["name"].tolist() == ["A1", "B1", "B2", "C1"]
    assert ch["shaft"].tolist() == ["A", "B", "B", "C"]
    assert ch["soz"].tolist() == [True, False, False, False]
    assert ch["resected"].isna().all()
