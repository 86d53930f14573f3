"""Label sheets (CSV/XLSX, shorthand and long), contact shorthand, seizure-label recognition."""

from __future__ import annotations

import csv
import glob

import pytest

from ingest.bids import read_tsv
from ingest.errors import ConfigError
from ingest.labels import (
    contact_key,
    expand_contacts,
    find_seizures,
    match_contacts,
    read_label_sheet,
)
from tests.conftest import REPO, SHARED_DATA

SHEETS = REPO / "tests" / "data" / "label-sheets"
SIDECARS_3029 = REPO / "tests" / "data" / "bids-sidecars" / "ds003029"


@pytest.mark.parametrize(
    ("shorthand", "expected"),
    [
        ("TT1-6; AST1-2", ["TT1", "TT2", "TT3", "TT4", "TT5", "TT6", "AST1", "AST2"]),
        (
            "ATT1-2; AD1-4; PD1-4",
            ["ATT1", "ATT2", *(f"AD{i}" for i in range(1, 5)), *(f"PD{i}" for i in range(1, 5))],
        ),
        ("AD1-4, ATT1,2", ["AD1", "AD2", "AD3", "AD4", "ATT1", "ATT2"]),
        ("G19-20, 27-29", ["G19", "G20", "G27", "G28", "G29"]),
        ("PST1/2", ["PST1", "PST2"]),
        ("LAT1-LAT3", ["LAT1", "LAT2", "LAT3"]),
        ("L'A1\u20132", ["L'A1", "L'A2"]),
        ("TT 3", ["TT3"]),
        ("PD; TT1; TT1", ["PD", "TT1"]),
        ("  ", []),
    ],
)
def test_expand_contacts(shorthand, expected):
    assert expand_contacts(shorthand) == expected


@pytest.mark.parametrize(
    ("shorthand", "message"),
    [
        ("TT6-1", r"runs backwards \(6 > 1\); write TT1-6"),
        ("1-6", "has a number but no shaft name"),
        ("TT1-AST3", "spans two shafts"),
        ("TT1 & AST2", "cannot read contact item"),
    ],
)
def test_expand_contacts_errors(shorthand, message):
    with pytest.raises(ValueError, match=message):
        expand_contacts(shorthand)


def test_contact_matching_is_forgiving_but_exact():
    assert contact_key(" tt 01 ") == "TT1" == contact_key("TT1")
    matched, unmatched = match_contacts(["tt1", "AD01", "XYZ9"], ["TT1", "AD1", "AD10"])
    assert matched == {"TT1", "AD1"} and unmatched == ("XYZ9",)


def test_real_pt01_sheet_names_its_10_contacts_in_the_real_sidecars():
    sheet = read_label_sheet(SHEETS / "ds003029-example.csv")
    assert list(sheet) == ["pt01"]
    soz = sheet["pt01"].soz
    assert len(soz) == 10
    for path in sorted(SIDECARS_3029.glob("sub-pt01/ses-presurgery/ieeg/*_channels.tsv")):
        names = [row["name"] for row in read_tsv(path)]
        matched, unmatched = match_contacts(soz, names)
        assert len(matched) == 10 and unmatched == ()


def test_xlsx_and_csv_read_the_same(tmp_path):
    import openpyxl

    rows = [
        ("Participant ID", "SOZ contacts"),
        ("sub-pt01", "ATT1-2; AD1-4; PD1-4"),
        ("pt2 ", "TT1-6; AST1-2"),
        ("sub-pt3", "n/a"),
    ]
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(tmp_path / "sheet.xlsx")
    with open(tmp_path / "sheet.csv", "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows(rows)
    for name in ("sheet.xlsx", "sheet.csv"):
        sheet = read_label_sheet(tmp_path / name)
        assert sorted(sheet) == ["pt01", "pt2", "pt3"]
        assert len(sheet["pt2"].soz) == 8
        assert sheet["pt3"].soz is None  # n/a = unknown, not "no SOZ"


def test_long_layout_per_recording(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "subject,recording,channel,soz\n"
        "CHUL01,night1,LA1,1\nCHUL01,night1,LA2,0\nCHUL01,night2,LA2,yes\n"
        "CHUL02,,RH1,0\nCHUL02,,RH2,0\n"
    )
    sheet = read_label_sheet(path)
    assert sheet["CHUL01"].soz_for("night1") == {"LA1"}
    assert sheet["CHUL01"].soz_for("night2.edf") == {"LA2"}
    assert sheet["CHUL01"].soz_for("night3") is None
    assert sheet["CHUL02"].soz == frozenset()  # listed, every soz 0: labelled, no SOZ
    assert sheet["CHUL01"].recordings == ("night1", "night2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject,recording,channel,soz\nS1,r,LA1,maybe\n", r"soz='maybe' for S1/LA1; write 1"),
        ("participant_id,soz_contacts\nS1,TT1\nsub-S1,TT2\n", "subject 'S1' is listed twice"),
        ("participant_id,soz_contacts\nS1,TT9-1\n", r"row 2: range 'TT9-1'"),
        ("name,contacts\nS1,TT1\n", "no subject column"),
        ("subject,notes\nS1,TT1\n", "neither the shorthand layout"),
        ("participant_id,soz_contacts\n", "has no rows"),
        ("participant_id,soz_contacts\n,TT1\n", "empty participant_id"),
    ],
)
def test_sheet_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_label_sheet(path)


def test_sheet_missing_or_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_label_sheet(tmp_path / "none.csv")
    (tmp_path / "sheet.json").write_text("{}")
    with pytest.raises(ConfigError, match="unsupported type '.json'"):
        read_label_sheet(tmp_path / "sheet.json")


def _events(path):
    return [(float(r["onset"]), r["trial_type"]) for r in read_tsv(path)]


@pytest.mark.parametrize(
    ("subject_run", "onset", "offset", "label"),
    [
        (
            "sub-pt01/ses-presurgery/ieeg/sub-pt01_ses-presurgery_task-ictal_acq-ecog_run-01",
            74.71,
            161.82,
            "1st change",
        ),
        (
            "sub-jh101/ses-presurgery/ieeg/sub-jh101_ses-presurgery_task-ictal_acq-ecog_run-01",
            58.95,
            79.875,
            "SZ EVENT # (EEG SZ)",
        ),
        (
            "sub-umf001/ses-presurgery/ieeg/sub-umf001_ses-presurgery_task-ictal_acq-ecog_run-01",
            60.00027352941176,
            91.00049823529412,
            "eeg sz start",
        ),
        (
            "sub-ummc001/ses-presurgery/ieeg/sub-ummc001_ses-presurgery_task-ictal_acq-ecog_run-01",
            31.000159617647057,
            132.99991016386554,
            "sz onset",
        ),
    ],
)
def test_seizure_labels_of_each_centre(subject_run, onset, offset, label):
    seizures, notes = find_seizures(_events(SIDECARS_3029 / f"{subject_run}_events.tsv"))
    assert len(seizures) == 1 and notes == ()
    assert seizures[0].onset_s == pytest.approx(onset)
    assert seizures[0].offset_s == pytest.approx(offset)
    assert seizures[0].label == label


def test_find_seizures_pairs_and_bounds():
    events = [
        (10.0, "sz onset"),
        (12.0, "onset"),  # same seizure
        (20.0, "sz offset"),
        (25.0, "offset"),  # no open seizure: ignored
        (30.0, "clinical onset"),  # not electrographic
        (40.0, "off on left"),  # a side, not the seizure
        (50.0, "EEG onset"),
        (70.0, "Z ELECTROGRAPHIC END"),
        (90.0, "sz onset"),
    ]
    seizures, notes = find_seizures(events)
    assert [(s.onset_s, s.offset_s) for s in seizures] == [(10, 20), (50, 70), (90, None)]
    seizures, notes = find_seizures(events, duration_s=60.0)
    assert [(s.onset_s, s.offset_s) for s in seizures] == [(10, 20), (50, None)]
    assert any("offset at 70 s lies past the end (60 s)" in n for n in notes)
    assert any("'sz onset' at 90 s lies outside the recording (0-60 s)" in n for n in notes)


@pytest.mark.skipif(
    not (SHARED_DATA / "bids-sidecars" / "ds003029").is_dir(), reason="shared sidecars absent"
)
def test_recogniser_on_all_106_ds003029_runs():
    files = sorted(glob.glob(str(SHARED_DATA / "bids-sidecars/ds003029/sub-*/*/ieeg/*_events.tsv")))
    assert len(files) == 106
    found = {f: find_seizures(_events(f))[0] for f in files}
    with_onset = [f for f, s in found.items() if s]
    with_offset = [f for f, s in found.items() if s and s[0].offset_s is not None]
    assert len(with_onset) == 103
    assert len(with_offset) == 86
    missing = sorted(f.split("/")[-1][:30] for f in files if not found[f])
    assert missing == ["sub-pt17_ses-presurgery_task-i"] * 2 + ["sub-pt2_ses-presurgery_task-ic"]
    # one seizure per run (each run is a snapshot around one seizure); onsets 8-170 s in
    assert all(len(s) == 1 for s in found.values() if s)
    assert all(8 <= s[0].onset_s <= 170 for s in found.values() if s)


def test_sheet_in_another_encoding_or_corrupt_is_a_config_error(tmp_path):
    latin = tmp_path / "sheet.csv"
    latin.write_bytes(
        'participant_id,soz_contacts\nsub-pt01,"TT1-2"\nsub-pt02,"Hé1"\n'.encode("latin-1")
    )
    with pytest.raises(ConfigError, match=r"(?s)not UTF-8: byte 0xe9 .*iconv -f latin1"):
        read_label_sheet(latin)
    utf16 = tmp_path / "sheet16.csv"
    utf16.write_bytes('participant_id,soz_contacts\nsub-pt01,"TT1-2"\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match="UTF-16"):
        read_label_sheet(utf16)
    xlsx = tmp_path / "sheet.xlsx"
    xlsx.write_bytes(b"this is not a zip archive")
    with pytest.raises(ConfigError, match="not a readable Excel workbook"):
        read_label_sheet(xlsx)
