"""SignalReader on real EDF and BrainVision files: values, units, order, clipping, every error."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ingest.errors import RecordingError
from ingest.recording import Recording
from ingest.signals import (
    SignalReader,
    check_header,
    format_of,
    open_signal,
    read_header,
)
from tests.ingest.signal_files import write_brainvision, write_edf

NAMES = ["LA1", "LA2", "LA3", "RH1", "RH2"]


def _rec(path, *, sfreq=256.0, n_times=1024, channels=NAMES, fmt="edf") -> Recording:
    return Recording(
        recording_id="test__S1",
        cohort="test",
        subject="S1",
        path=str(path),
        sfreq=sfreq,
        n_times=n_times,
        channels=tuple(channels),
        ch_types=("seeg",) * len(channels),
        fmt=fmt,
    )


@pytest.fixture
def edf(tmp_path):
    path = tmp_path / "rec.edf"
    data = write_edf(path, NAMES, sfreq=256.0, seconds=4.0)
    return path, data


def test_edf_blocks_in_microvolts_in_pick_order(edf):
    path, data = edf
    with open_signal(_rec(path)) as reader:
        assert reader.sfreq == 256.0 and reader.n_times == 1024
        assert reader.ch_names == NAMES
        picks = ["RH2", "LA1", "LA3"]
        block = reader.read(100, 612, picks)
        assert block.dtype == np.float32 and block.shape == (3, 512)
        # 16-bit EDF quantisation of a ~100 uV range: well under 0.1 uV
        np.testing.assert_allclose(block, data[[4, 0, 2], 100:612], atol=0.1)
        assert reader._raw.preload is False  # never loads the whole file


def test_read_clips_bounds_and_repeats(edf):
    path, data = edf
    with SignalReader(_rec(path)) as reader:
        head = reader.read(-50, 10, ["LA2"])
        assert head.shape == (1, 10)
        tail = reader.read(1000, 5000, ["LA2"])
        assert tail.shape == (1, 24)
        assert reader.read(2000, 3000, ["LA2"]).shape == (1, 0)
        assert reader.read(10, 5, NAMES).shape == (5, 0)
        again = [reader.read(0, 1024, NAMES) for _ in range(3)]
        for block in again[1:]:
            np.testing.assert_array_equal(block, again[0])
        # block-wise reading equals one read
        pieces = np.concatenate([reader.read(s, s + 300, NAMES) for s in range(0, 1024, 300)], 1)
        np.testing.assert_array_equal(pieces, again[0])


def test_brainvision_exact(tmp_path):
    path = tmp_path / "rec.vhdr"
    data = write_brainvision(path, NAMES, sfreq=250.0, seconds=2.0)
    rec = _rec(path, sfreq=250.0, n_times=500, fmt="brainvision")
    with open_signal(rec) as reader:
        np.testing.assert_allclose(reader.read(0, 500, NAMES[::-1]), data[::-1], rtol=1e-6)


def test_edf_direct_decoding_equals_mne(tmp_path):
    """16-bit EDF is decoded from the data records directly, to MNE's values (float32 rounding),
    for any range and pick order, with an EDF+ annotation signal interleaved in the records."""
    import dataclasses

    import mne

    path = tmp_path / "direct.edf"
    write_edf(path, NAMES, sfreq=256.0, seconds=6.0, annotations=[(1.0, 0.0, "x")])
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    with open_signal(_rec(path, n_times=1536)) as reader:
        assert reader.channel_subsets  # the direct path is on
        for start, stop, picks in [
            (0, 1536, NAMES),
            (255, 257, ["RH2"]),  # across a record boundary
            (300, 1100, ["LA3", "LA1", "RH1"]),
            (1535, 1536, NAMES[::-1]),
        ]:
            got = reader.read(start, stop, picks)
            idx = [NAMES.index(p) for p in picks]
            want = raw.get_data(picks=idx, start=start, stop=stop) * 1e6
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
        assert reader._edf_agrees_with_mne()
        wrong = dataclasses.replace(reader._edf, scale=reader._edf.scale * 1.001)
        reader._edf = wrong  # what a changed MNE internal would look like: refused
        assert not reader._edf_agrees_with_mne()


def test_edf_truncated_after_opening_is_a_recording_error(edf):
    path, _ = edf
    with open_signal(_rec(path)) as reader:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 3000)
        with pytest.raises(RecordingError, match="the file ended while reading"):
            reader.read(0, 1024, NAMES)


def test_brainvision_reads_through_mne(tmp_path):
    path = tmp_path / "rec.vhdr"
    write_brainvision(path, NAMES, sfreq=250.0, seconds=2.0)
    with open_signal(_rec(path, sfreq=250.0, n_times=500, fmt="brainvision")) as reader:
        assert not reader.channel_subsets


def test_read_header_and_annotations(tmp_path):
    path = tmp_path / "ann.edf"
    write_edf(path, NAMES, seconds=4.0, annotations=[(1.5, 0.0, "sz onset")])
    header = read_header(path)
    assert header.fmt == "edf" and header.ch_names == tuple(NAMES)
    assert header.duration_s == pytest.approx(4.0)
    assert header.annotations == ((1.5, 0.0, "sz onset"),)


def test_truncated_edf_is_a_clear_error(edf):
    path, _ = edf
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 3000)
    with pytest.raises(
        RecordingError, match=r"truncated EDF file: the header declares 4 data"
    ) as e:
        read_header(path)
    assert e.value.source == str(path)
    assert "copy or download the file again" in e.value.fix
    with pytest.raises(RecordingError, match="truncated"):
        SignalReader(_rec(path))


def test_corrupt_header(tmp_path):
    path = tmp_path / "junk.edf"
    path.write_bytes(b"this is not an EDF file at all" * 20)
    with pytest.raises(RecordingError, match="corrupt EDF header") as e:
        read_header(path)
    assert "not a valid EDF file" in e.value.fix


def test_unparseable_file_wrapped(tmp_path):
    path = tmp_path / "bad.vhdr"
    path.write_text("not a brainvision header\n")
    with pytest.raises(RecordingError, match="MNE cannot read this brainvision file"):
        read_header(path)


def test_missing_file_and_annex_placeholder(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        read_header(tmp_path / "nope.edf")
    link = tmp_path / "sub-01_ieeg.edf"
    link.symlink_to("../../.git/annex/objects/Xx/MD5E-s1--abc.edf/MD5E-s1--abc.edf")
    with pytest.raises(RecordingError, match="git-annex placeholder") as e:
        read_header(link)
    assert "datalad get" in e.value.fix


def test_unknown_extension(tmp_path):
    with pytest.raises(RecordingError, match=r"unknown signal file type '\.mat'"):
        format_of(tmp_path / "x.mat")
    assert format_of("a/b/sub-01_ieeg.VHDR") == "brainvision"
    assert format_of("x.fif.gz") == "fif"


def test_metadata_lists_channels_file_lacks(edf):
    path, _ = edf
    rec = _rec(path, channels=[*NAMES[:3], "XX1", "XX2"])
    with pytest.raises(
        RecordingError, match=r"lists 2 channel\(s\) the signal file lacks: XX1, XX2"
    ):
        SignalReader(rec)


def test_channel_count_mismatch(edf):
    path, _ = edf
    with pytest.raises(RecordingError, match=r"lists 4 channels, the signal file has 5.*RH2"):
        SignalReader(_rec(path, channels=NAMES[:4]))


def test_sfreq_and_length_mismatch(edf):
    path, _ = edf
    with pytest.raises(RecordingError, match=r"sampling rate 512 Hz in the metadata, 256 Hz"):
        SignalReader(_rec(path, sfreq=512.0, n_times=2048))
    with pytest.raises(RecordingError, match=r"2000 samples .* in the metadata, 1024"):
        SignalReader(_rec(path, n_times=2000))
    # one sample of rounding is tolerated (durations in sidecars are rounded)
    check_header(_rec(path, n_times=1023), read_header(path))


def test_bad_picks_and_closed_reader(edf):
    path, _ = edf
    reader = open_signal(_rec(path))
    with pytest.raises(ValueError, match=r"picks \['C3'\] are not channels"):
        reader.read(0, 10, ["LA1", "C3"])
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="the reader is closed"):
        reader.read(0, 10, ["LA1"])


def test_block_read_cost(tmp_path):
    """Print what a 10 s block of 64 channels costs (the figure in the module docstring)."""
    names = [f"C{i}" for i in range(1, 65)]
    path = tmp_path / "cost.edf"
    write_edf(path, names, sfreq=1024.0, seconds=60.0)
    rec = _rec(path, sfreq=1024.0, n_times=61440, channels=names)
    with open_signal(rec) as reader:
        reader.read(0, 1024, names)
        t0 = time.perf_counter()
        for start in range(0, 61440 - 10240, 10240):
            reader.read(start, start + 10240, names)
        per_block = (time.perf_counter() - t0) / 5
    print(f"10 s x 64 ch block at 1024 Hz: {per_block * 1e3:.1f} ms")
    assert per_block < 1.0
