"""Physically impossible signals are never stored or scored as valid (issue 13, item 3).

Real EDF files are written with MNE, then their header or data bytes are patched: a channel with
digital minimum = maximum (MNE decodes it to millions of microvolts, stored saturated at 65504),
one with physical minimum = maximum (zero gain), a file whose every channel is degenerate, and a
file with a valid header whose samples are all one constant (filtered, its scale was 5e-12 and
its scaled clips reached 3e6). A real ``soz ingest`` process and a real ``Scorer`` check them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.errors import RecordingError
from ingest.folder import recording_from_file
from ingest.preprocessing import SCALE_FLOOR_UV, channel_scale
from ingest.sources import scan_source
from ingest.store import ClipStore
from ingest.stream import scale_warnings
from serving.scoring import Scorer
from tests.conftest import QUICK_INGEST, run_soz
from tests.ingest.signal_files import write_edf
from tests.serving.conftest import make_run_dir

NAMES = ["LA1", "LA2", "LA3", "LA4"]
#: Bytes per signal before each field of the EDF signal header (after the 256 fixed bytes).
FIELDS = {"physical_min": 104, "physical_max": 112, "digital_min": 120, "digital_max": 128}


def _n_signals(data: bytes | bytearray) -> int:
    return int(data[252:256].decode("ascii"))


def set_field(path: Path, signal: int, field: str, value: str) -> None:
    """Overwrite one 8-byte field of one signal's header in place."""
    data = bytearray(path.read_bytes())
    at = 256 + FIELDS[field] * _n_signals(data) + 8 * signal
    data[at : at + 8] = value.ljust(8).encode("ascii")
    path.write_bytes(bytes(data))


def get_field(path: Path, signal: int, field: str) -> str:
    data = path.read_bytes()
    at = 256 + FIELDS[field] * _n_signals(data) + 8 * signal
    return data[at : at + 8].decode("ascii").strip()


def make_constant(path: Path, value: int = 1234, *, blips: bool = False) -> None:
    """Set every sample of every data signal (not the annotations) to one digital value.

    With ``blips`` the first, middle and last samples are one quantum off (so the probe at
    scan time sees a non-constant channel, and only the scale floor can tell it is flat).
    """
    data = bytearray(path.read_bytes())
    ns = _n_signals(data)
    labels = [data[256 + 16 * i : 256 + 16 * (i + 1)].decode().strip() for i in range(ns)]
    spr = [int(data[256 + 216 * ns + 8 * i : 256 + 216 * ns + 8 * (i + 1)]) for i in range(ns)]
    n_records = int(data[236:244])
    record = sum(spr)
    offset = 256 * (ns + 1)
    samples = np.frombuffer(data, dtype="<i2", offset=offset, count=n_records * record).copy()
    samples = samples.reshape(n_records, record)
    start = 0
    for label, n in zip(labels, spr, strict=True):
        if label != "EDF Annotations":
            samples[:, start : start + n] = value
            if blips:
                total = n_records * n
                for idx in (0, total // 2, total - 1):
                    samples[idx // n, start + idx % n] = value + 1
        start += n
    data[offset : offset + samples.nbytes] = samples.tobytes()
    path.write_bytes(bytes(data))


def degenerate_file(path: Path) -> Path:
    """LA2: digital min = max; LA3: physical min = max; LA1 and LA4 intact."""
    write_edf(path, NAMES, seconds=8.0)
    set_field(path, 1, "digital_min", get_field(path, 1, "digital_max"))
    set_field(path, 2, "physical_max", get_field(path, 2, "physical_min"))
    return path


def test_degenerate_header_channels_are_marked_bad_with_a_warning(tmp_path):
    rec = recording_from_file(degenerate_file(tmp_path / "p.edf"), line_freq=50)
    assert rec.bad == {"LA2", "LA3"} and rec.contacts == ("LA1", "LA4")
    (note,) = [w for w in rec.warnings if "degenerate EDF header" in w]
    assert "LA2 (digital minimum 32767 >= maximum 32767)" in note
    assert "LA3 (physical minimum = maximum = " in note and "dropped as bad" in note


def test_every_channel_degenerate_is_a_failure(tmp_path):
    path = tmp_path / "all.edf"
    write_edf(path, NAMES, seconds=8.0)
    for i in range(len(NAMES)):
        set_field(path, i, "physical_max", get_field(path, i, "physical_min"))
    scan = scan_source(path, line_freq=50)
    assert scan.recordings == ()
    (err,) = scan.problems
    assert err.source == str(path) and "no intracranial contact carries signal" in err.reason
    assert "4 contact(s) with a degenerate EDF header" in err.reason
    assert "valid digital and physical ranges" in err.fix


def test_constant_contacts_are_marked_bad_and_an_all_constant_file_fails(tmp_path):
    path = tmp_path / "p.edf"
    write_edf(path, NAMES, seconds=8.0)
    data = bytearray(path.read_bytes())  # LA4: every sample 0 (a disconnected contact)
    ns, spr = _n_signals(data), 256
    n_records = int(data[236:244])
    record = int(
        sum(int(data[256 + 216 * ns + 8 * i : 256 + 216 * ns + 8 * i + 8]) for i in range(ns))
    )
    for r in range(n_records):
        at = 256 * (ns + 1) + 2 * (r * record + 3 * spr)
        data[at : at + 2 * spr] = bytes(2 * spr)
    path.write_bytes(bytes(data))
    rec = recording_from_file(path, line_freq=50)
    assert rec.bad == {"LA4"} and rec.contacts == ("LA1", "LA2", "LA3")
    assert any("1 contact(s) hold one constant value" in w and "LA4" in w for w in rec.warnings)
    make_constant(path)
    with pytest.raises(RecordingError, match="no intracranial contact carries signal"):
        recording_from_file(path, line_freq=50)  # what serving builds for an upload: a 422


def test_channel_scale_floor():
    std = np.full((6, 3), 20.0, dtype=np.float32)
    std[:, 1] = 5e-12  # the residue of filtering a constant
    scale = channel_scale(std)
    assert scale.tolist() == [20.0, 1.0, 20.0]
    with pytest.raises(RecordingError, match=r"every one of its 3 channels is flat.*0\.01 uV"):
        channel_scale(np.full((6, 3), 5e-12, dtype=np.float32), source="x.edf")
    assert SCALE_FLOOR_UV == 0.01


def test_flat_contacts_are_named(tmp_path):
    rec = recording_from_file(degenerate_file(tmp_path / "p.edf"), line_freq=50)
    std = np.ones((4, 2), dtype=np.float32)
    assert scale_warnings(rec, std) == ()
    std[:, 1] = 0.0
    (note,) = scale_warnings(rec, std)
    assert note.startswith("1 of 2 contacts are flat (scale below 0.01 uV): LA4;")


def test_ingest_drops_degenerate_channels_and_fails_flat_recordings(tmp_path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    write_edf(folder / "good.edf", NAMES, seconds=8.0)
    degenerate_file(folder / "degenerate.edf")
    write_edf(folder / "flat.edf", NAMES, seconds=8.0, seed=2)
    make_constant(folder / "flat.edf")
    write_edf(folder / "nearflat.edf", NAMES, seconds=8.0, seed=3)
    make_constant(folder / "nearflat.edf", blips=True)
    store = tmp_path / "store"
    proc = run_soz("ingest", folder, "--out", store, "--line-freq", "50", *QUICK_INGEST)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1 and "2 recordings ingested" in proc.stdout, proc.stdout
    clips = ClipStore.open(str(store))
    assert clips.complete_ids() == {"cohort__good", "cohort__degenerate"}
    channels = clips.channels(["cohort__degenerate"])
    assert channels["name"].tolist() == ["LA1", "LA4"]
    stored = clips.read_clips("cohort__degenerate", 0, 8, scaled=False)
    assert np.abs(np.asarray(stored, dtype=np.float32)).max() < 1000  # nothing saturated
    failures = {row.source: row for row in clips.failures().itertuples()}
    assert set(failures) == {str(folder / "flat.edf"), str(folder / "nearflat.edf")}
    flat = failures[str(folder / "flat.edf")]  # found at scan time by the probe
    assert flat.stage == "scan" and "4 contact(s) hold one constant value" in flat.reason
    near = failures[str(folder / "nearflat.edf")]  # found by the scale floor
    assert near.stage == "finalize" and near.recording_id == "cohort__nearflat"
    assert "every one of its 4 channels is flat" in near.reason
    assert "below the 0.01 uV floor" in near.reason


def test_scoring_an_all_flat_recording_raises(tmp_path):
    path = tmp_path / "flat.edf"
    write_edf(path, NAMES, sfreq=1024.0, seconds=30.0)
    make_constant(path, blips=True)
    rec = recording_from_file(path, line_freq=50)
    scorer = Scorer.from_run(make_run_dir(tmp_path, svm=False))
    with pytest.raises(RecordingError, match="every one of its 4 channels is flat") as info:
        scorer.score(rec)
    assert "no signal to score" in info.value.reason
