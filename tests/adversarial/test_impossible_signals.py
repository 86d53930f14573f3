"""Physically impossible signals are never stored or scored as valid (issue 13, item 3).

Real EDF files are written with MNE, then their header or data bytes are patched: a channel with
digital minimum = maximum (MNE decodes it to millions of microvolts, stored saturated at 65504),
one with physical minimum = maximum (zero gain), a file whose every channel is degenerate, and a
file with a valid header whose samples are all one constant (filtered, its scale was 5e-12 and
its scaled clips reached 3e6). A real ``soz ingest`` process and a real ``Scorer`` check them.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import RecordingError
from ingest.folder import recording_from_file
from ingest.preprocessing import SCALE_FLOOR_UV, channel_scale
from ingest.sources import SourceOptions, scan_source
from ingest.store import ClipStore
from ingest.stream import scale_warnings
from serving.scoring import Scorer
from tests.adversarial.cohorts import (
    NAMES,
    degenerate_file,
    get_field,
    make_constant,
    n_signals,
    set_field,
    write_flat_cohort,
)
from tests.conftest import QUICK_INGEST, run_soz
from tests.ingest.signal_files import write_edf
from tests.serving.conftest import make_run_dir


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
    scan = scan_source(path, SourceOptions(line_freq=50))
    assert scan.recordings == ()
    (err,) = scan.problems
    assert err.source == str(path) and "no intracranial contact carries signal" in err.reason
    assert "4 contact(s) with a degenerate EDF header" in err.reason
    assert "valid digital and physical ranges" in err.fix


def test_constant_contacts_are_marked_bad_and_an_all_constant_file_fails(tmp_path):
    path = tmp_path / "p.edf"
    write_edf(path, NAMES, seconds=8.0)
    data = bytearray(path.read_bytes())  # LA4: every sample 0 (a disconnected contact)
    ns, spr = n_signals(data), 256
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
    folder = write_flat_cohort(tmp_path / "cohort")
    store = tmp_path / "store"
    proc = run_soz("ingest", folder, "--out", store, "--line-freq", "50", *QUICK_INGEST)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1 and "3 recordings ingested" in proc.stdout, proc.stdout
    clips = ClipStore.open(str(store))
    assert clips.complete_ids() == {"cohort__good", "cohort__degenerate", "cohort__oneflat"}
    channels = clips.channels(["cohort__degenerate"])
    assert channels["name"].tolist() == ["LA1", "LA4"]
    assert not channels["flat"].any()
    # the almost-flat contact is stored, flagged in channels.parquet, named in warnings.parquet
    one = clips.channels(["cohort__oneflat"])
    assert one["flat"].tolist() == [False, True, False, False]
    assert float(one["scale"].iloc[1]) == 1.0
    # scoring from the store knows it too (soz score --store): no probability for LA2
    from serving.preprocess import StoredRecordingStream

    assert StoredRecordingStream(clips, "cohort__oneflat").flat.tolist() == [0, 1, 0, 0]
    warns = clips.warnings()
    (flat_note,) = warns[(warns["recording_id"] == "cohort__oneflat")]["message"]
    assert flat_note.startswith("1 of 4 contacts are flat (scale below 0.01 uV): LA2;")
    assert flat_note in proc.stdout
    # the contacts dropped as degenerate are named there with their reason
    dropped = " ".join(warns[warns["recording_id"] == "cohort__degenerate"]["message"])
    assert "LA2 (" in dropped and "LA3 (" in dropped and "dropped as bad" in dropped
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


def test_scoring_never_returns_a_probability_for_a_flat_contact(tmp_path):
    path = tmp_path / "oneflat.edf"
    write_edf(path, NAMES, sfreq=1024.0, seconds=30.0)
    make_constant(path, blips=True, only={"LA3"})
    rec = recording_from_file(path, line_freq=50)
    assert rec.contacts == tuple(NAMES)  # the scan-time probe cannot see it: the floor must
    result = Scorer.from_run(make_run_dir(tmp_path, svm=False)).score(rec)
    assert result.channels == ("LA1", "LA2", "LA4")
    assert result.probabilities.shape == (3,) and np.isfinite(result.probabilities).all()
    assert any(
        "1 flat contact(s) carry no signal and were not scored: LA3" in w for w in result.warnings
    )


def test_without_flat_drops_probability_label_and_says_so():
    from serving.engine import without_flat
    from serving.results import ScoreResult

    r = ScoreResult(
        recording_id="r", subject="s", cohort="c", model="m", folds=(0,), threshold=0.5,
        channels=("A1", "A2", "A3"), probabilities=np.array([0.1, 0.9, 0.4]),
        soz_labels=(False, True, False),
    )  # fmt: skip
    assert without_flat(r, np.zeros(3, bool)) is r and without_flat(r, None) is r
    out = without_flat(r, np.array([False, True, False]))
    assert out.channels == ("A1", "A3") and out.soz_labels == (False, False)
    np.testing.assert_array_equal(out.probabilities, [0.1, 0.4])
    assert out.warnings[-1] == "1 flat contact(s) carry no signal and were not scored: A2"
