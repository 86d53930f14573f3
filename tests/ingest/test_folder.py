"""Folder reader: EDF/BrainVision files + label sheet (long and shorthand), types, line frequency."""

from __future__ import annotations

import pytest

from ingest.errors import ConfigError, RecordingError
from ingest.folder import infer_channel_type, read_folder, recording_from_file
from ingest.sources import SourceOptions, scan_source
from tests.ingest.signal_files import write_brainvision, write_edf

NAMES = ["LA1", "LA2", "LA3", "RH1", "RH2", "C3", "EKG1", "DC01"]


@pytest.fixture
def chul(tmp_path):
    root = tmp_path / "CHUL"
    (root / "CHUL02").mkdir(parents=True)
    write_edf(
        root / "CHUL01_night1.edf",
        NAMES,
        annotations=[(1.0, 0.0, "EEG onset"), (2.5, 0.0, "sz end")],
    )
    write_edf(root / "CHUL01_night2.edf", NAMES)
    write_brainvision(root / "CHUL02" / "day.vhdr", NAMES[:5], sfreq=500.0)
    (root / ".hidden.edf").write_bytes(b"")
    (root / "notes.txt").write_text("not a recording")
    sheet = tmp_path / "labels.csv"
    sheet.write_text(
        "subject,recording,channel,soz\n"
        "CHUL01,CHUL01_night1,LA1,1\nCHUL01,CHUL01_night1,LA2,1\nCHUL01,CHUL01_night1,RH1,0\n"
        "CHUL01,,LA1,1\n"
        "CHUL02,CHUL02/day,RH2,1\n"
    )
    return root, sheet


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("LA1", "seeg"), ("L'A12", "seeg"), ("TT1", "seeg"), ("G16", "seeg"),
        ("C3", "eeg"), ("Fp1", "eeg"), ("EEG Cz-Ref", "eeg"), ("T3", "eeg"),
        ("EKG1", "ecg"), ("ECG", "ecg"), ("EMG2", "emg"), ("LOC", "eog"),
        ("DC01", "stim"), ("Event", "stim"), ("SpO2", "misc"),
    ],
)  # fmt: skip
def test_infer_channel_type(name, kind):
    assert infer_channel_type(name) == kind


def test_folder_with_long_sheet(chul):
    root, sheet = chul
    scan = read_folder(root, SourceOptions(label_sheet=sheet, line_freq=50))
    assert scan.problems == ()
    ids = [r.recording_id for r in scan.recordings]
    assert ids == [
        "CHUL__CHUL01__CHUL01_night1",
        "CHUL__CHUL01__CHUL01_night2",
        "CHUL__CHUL02__CHUL02-day",
    ]
    night1, night2, day = scan.recordings
    assert night1.soz == {"LA1", "LA2"}  # the recording's own rows
    assert night2.soz == {"LA1"}  # the subject-wide rows
    assert day.soz == {"RH2"} and day.fmt == "brainvision" and day.sfreq == 500.0
    assert night1.ch_types == ("seeg",) * 5 + ("eeg", "ecg", "stim")
    assert night1.contacts == ("LA1", "LA2", "LA3", "RH1", "RH2")
    assert night1.line_freq == 50.0 and night1.cohort == "CHUL"
    assert [(s.onset_s, s.offset_s, s.label) for s in night1.seizures] == [(1.0, 2.5, "EEG onset")]
    assert night2.seizures == ()


def test_shorthand_sheet_and_unknown_subjects(chul, tmp_path):
    root, _ = chul
    sheet = tmp_path / "short.csv"
    sheet.write_text('participant_id,soz_contacts\nsub-CHUL01,"LA1-3; ZZ9"\n')
    scan = read_folder(root, SourceOptions(label_sheet=sheet, line_freq=60, cohort="chul"))
    night1, night2, day = scan.recordings
    assert night1.subject == "CHUL01" and night1.soz == {"LA1", "LA2", "LA3"}
    assert "SOZ name(s) ZZ9 match no channel" in night1.warnings[0]
    assert day.subject == "day" and day.soz is None
    assert day.warnings == ("subject 'day' is not in the label sheet; unlabelled.",)


def test_line_frequency_required(chul):
    root, _ = chul
    scan = read_folder(root)
    assert len(scan) == 0 and len(scan.problems) == 3
    err = scan.problems[0]
    assert "the power-line frequency is unknown (this edf file does not store it)" in err.reason
    assert "line_freq=50" in err.fix
    with pytest.raises(ConfigError, match="line_freq=-50 must be positive"):
        read_folder(root, SourceOptions(line_freq=-50))


def test_broken_file_is_one_problem(chul):
    root, _ = chul
    path = root / "CHUL01_night2.edf"
    path.write_bytes(path.read_bytes()[:-4000])
    scan = read_folder(root, SourceOptions(line_freq=50))
    assert len(scan) == 2 and len(scan.problems) == 1
    assert scan.problems[0].source == str(path) and "truncated EDF" in scan.problems[0].reason


def test_no_intracranial_channel(tmp_path):
    write_edf(tmp_path / "scalp.edf", ["Fp1", "Fp2", "C3", "EKG"])
    scan = read_folder(tmp_path, SourceOptions(line_freq=50))
    assert "none of the 4 channels looks intracranial" in scan.problems[0].reason


def test_single_file_and_scan_source(chul):
    root, _ = chul
    rec = recording_from_file(root / "CHUL01_night2.edf", line_freq=60, soz=["la2"])
    assert rec.subject == "CHUL01_night2" and rec.recording_id == "CHUL__CHUL01_night2"
    assert rec.soz == {"LA2"} and rec.run is None
    one = scan_source(root / "CHUL01_night2.edf", SourceOptions(line_freq=60))
    assert [r.recording_id for r in one.recordings] == ["CHUL__CHUL01_night2"]
    with pytest.raises(RecordingError, match="marks no SOZ contact .* --allow-empty-soz"):
        recording_from_file(root / "CHUL01_night2.edf", line_freq=60, soz=[])
    labelled_empty = recording_from_file(
        root / "CHUL01_night2.edf", line_freq=60, soz=[], allow_empty_soz=True
    )
    assert labelled_empty.soz == frozenset() and "no SOZ contact" in labelled_empty.warnings[0]


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="holds no signal file"):
        read_folder(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        scan_source(tmp_path / "nowhere")


def test_duplicate_recording_ids(tmp_path):
    write_edf(tmp_path / "p1.edf", NAMES)
    write_brainvision(tmp_path / "p1.vhdr", NAMES)
    scan = read_folder(tmp_path, SourceOptions(line_freq=50))
    assert len(scan) == 1 and "is already taken by" in scan.problems[0].reason
