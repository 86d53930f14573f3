"""The BIDS reader on the real sidecars (ds004100, ds003029) paired with short signal files."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ingest.bids import read_bids, read_participants, read_tsv
from ingest.errors import ConfigError
from ingest.recording import SeizureEvent
from ingest.sources import SourceOptions, scan_source
from tests.conftest import REPO, SHARED_DATA, SIDECARS
from tests.ingest.signal_files import build_bids_copy, write_edf

SHEET = REPO / "tests" / "data" / "label-sheets" / "ds003029-example.csv"
HUP190 = "sub-HUP190/ses-presurgery/ieeg/sub-HUP190_ses-presurgery"


@pytest.fixture(scope="module")
def ds004100(tmp_path_factory):
    return build_bids_copy(SIDECARS / "ds004100", tmp_path_factory.mktemp("b") / "ds004100")


@pytest.fixture(scope="module")
def ds003029(tmp_path_factory):
    return build_bids_copy(SIDECARS / "ds003029", tmp_path_factory.mktemp("b") / "ds003029")


@pytest.fixture
def hup190(tmp_path):
    """A fresh copy of sub-HUP190 alone, for tests that break it."""
    return build_bids_copy(SIDECARS / "ds004100", tmp_path / "ds004100", ["HUP190"])


def _run(root, task="ictal", run="01"):
    return f"{root}/{HUP190}_task-{task}_acq-seeg_run-{run}"


def test_ds004100_seeg_subject(ds004100):
    scan = read_bids(ds004100)
    assert scan.problems == ()
    assert scan.subjects == ("HUP070", "HUP190")
    recs = [r for r in scan.recordings if r.subject == "HUP190"]
    assert [r.recording_id for r in recs] == [
        "ds004100__HUP190__presurgery__ictal__seeg__01",
        "ds004100__HUP190__presurgery__ictal__seeg__02",
        "ds004100__HUP190__presurgery__ictal__seeg__03",
        "ds004100__HUP190__presurgery__interictal__seeg__01",
        "ds004100__HUP190__presurgery__interictal__seeg__02",
    ]
    rows = read_tsv(f"{_run(ds004100)}_channels.tsv")
    want_soz = {r["name"] for r in rows if "soz" in r["status_description"]}
    want_resect = {r["name"] for r in rows if "resect" in r["status_description"]}
    for rec in recs:
        assert rec.cohort == "ds004100" and rec.fmt == "edf" and rec.warnings == ()
        assert rec.sfreq == 1024.0 and rec.n_times == 4096 and rec.line_freq == 60.0
        assert rec.channels == tuple(r["name"] for r in rows) and len(rec.channels) == 162
        assert set(rec.ch_types) == {"seeg"}
        # scalp / EKG channels are typed SEEG but bad, so ingest drops them
        assert {"C3", "C4", "CZ", "EKG1"} <= rec.bad
        assert not {"C3", "EKG1"} & set(rec.contacts)
        assert rec.soz == want_soz and len(want_soz) == 12
        assert rec.resected == want_resect
    ictal = recs[0]
    # 120.0 s onset / 213.999 s offset of a 273.999 s run, rescaled into the 4 s file
    assert ictal.seizures == (
        SeizureEvent(
            pytest.approx(120 * 4 / 273.9990234375),
            pytest.approx(213.9990234375 * 4 / 273.9990234375),
            "sz onset",
        ),
    )
    assert all(not r.seizures for r in recs if r.task == "interictal")


def test_subjects_filter_reads_only_those_subjects(ds004100):
    whole = read_bids(ds004100)
    one = read_bids(ds004100, subjects=["HUP070"])
    assert one.subjects == ("HUP070",) and one.problems == ()
    assert one.recordings == tuple(r for r in whole.recordings if r.subject == "HUP070")


def test_ds004100_ecog_subject(ds004100):
    recs = [r for r in read_bids(ds004100).recordings if r.subject == "HUP070"]
    assert len(recs) == 7 and {r.acquisition for r in recs} == {"ecog"}
    assert all(set(r.ch_types) == {"ecog"} and r.sfreq == 512.0 for r in recs)
    assert all(len(r.soz) == 10 for r in recs)


def test_participants_trailing_space_and_bom():
    rows = read_participants(SIDECARS / "ds004100")
    assert "HUP151" in rows and "HUP151 " not in rows
    assert len(rows) == 58
    site = read_participants(SIDECARS / "ds003029")
    assert {site[s]["site"] for s in ("pt01", "ummc001", "jh101", "umf001")} == {
        "NIH",
        "UMMC",
        "JHH",
        "UMF",
    }


def test_quoted_cells_are_unquoted(tmp_path):
    path = tmp_path / "channels.tsv"
    path.write_text('\ufeffname\tstatus_description\r\nLI04\t"resect,soz"\r\nLI05\tn/a\r\n')
    assert read_tsv(path) == [
        {"name": "LI04", "status_description": "resect,soz"},
        {"name": "LI05", "status_description": "n/a"},
    ]


def test_ds003029_with_label_sheet(ds003029):
    scan = scan_source(ds003029, SourceOptions(label_sheet=SHEET))
    assert scan.problems == ()
    assert len(scan) == 12 and scan.subjects == ("jh101", "pt01", "umf001", "ummc001")
    by_subject = {}
    for rec in scan.recordings:
        by_subject.setdefault(rec.subject, []).append(rec)
        assert rec.fmt == "brainvision" and rec.path.endswith(".vhdr")
        assert set(rec.ch_types) <= {"ecog", "misc", "eeg", "ecg"}
        assert len(rec.seizures) == 1
    pt01 = by_subject["pt01"]
    want = {"ATT1", "ATT2", "AD1", "AD2", "AD3", "AD4", "PD1", "PD2", "PD3", "PD4"}
    assert all(r.soz == want and r.warnings == () for r in pt01)
    assert {r.centre for r in pt01} == {"NIH"}
    assert {by_subject[s][0].centre for s in ("jh101", "umf001", "ummc001")} == {
        "JHH",
        "UMF",
        "UMMC",
    }
    for s in ("jh101", "umf001", "ummc001"):
        for rec in by_subject[s]:
            assert rec.soz is None and rec.resected is None
            assert rec.warnings == (
                f"sub-{s} is not in the label sheet ds003029-example.csv; unlabelled.",
            )
    assert by_subject["jh101"][0].seizures[0].label == "SZ EVENT # (EEG SZ)"
    # excel-file-labeled rows are status=bad
    assert all(r.bad for r in by_subject["pt01"])


def test_ds003029_without_sheet_is_unlabelled(ds003029):
    scan = read_bids(ds003029)
    assert len(scan) == 12 and not any(r.labelled for r in scan.recordings)
    assert scan.recordings[0].cohort == "ds003029"
    assert (
        read_bids(ds003029, SourceOptions(cohort="EIIMD"))
        .recordings[0]
        .recording_id.startswith("EIIMD__")
    )


def test_sidecar_lists_channels_the_file_lacks(hup190):
    names = [r["name"] for r in read_tsv(f"{_run(hup190)}_channels.tsv")]
    write_edf(f"{_run(hup190)}_ieeg.edf", names[:-2], sfreq=1024.0)
    scan = read_bids(hup190)
    assert len(scan) == 4 and len(scan.problems) == 1
    err = scan.problems[0]
    assert err.source.endswith("task-ictal_acq-seeg_run-01_ieeg.edf")
    assert f"lists 2 channel(s) the signal file lacks: {names[-2]}, {names[-1]}" in err.reason
    assert "channels.tsv" in err.fix


def test_file_has_channels_the_sidecar_lacks(hup190):
    names = [r["name"] for r in read_tsv(f"{_run(hup190)}_channels.tsv")]
    write_edf(f"{_run(hup190)}_ieeg.edf", [*names, "EXTRA1"], sfreq=1024.0)
    (err,) = read_bids(hup190).problems
    assert "lists 162 channels, the signal file has 163; not in the metadata: EXTRA1" in err.reason


def test_sampling_rate_mismatch(hup190):
    names = [r["name"] for r in read_tsv(f"{_run(hup190)}_channels.tsv")]
    write_edf(f"{_run(hup190)}_ieeg.edf", names, sfreq=512.0)
    (err,) = read_bids(hup190).problems
    assert (
        "SamplingFrequency 1024 Hz in" in err.reason and "512 Hz in the signal file" in err.reason
    )


def test_missing_and_truncated_signal_files(hup190):
    os.remove(f"{_run(hup190)}_ieeg.edf")
    path = f"{_run(hup190, 'interictal', '02')}_ieeg.edf"
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10_000)
    scan = read_bids(hup190)
    assert len(scan) == 3
    reasons = sorted(p.reason for p in scan.problems)
    assert reasons[0].startswith("the signal file does not exist")
    assert reasons[1].startswith("truncated EDF file")


def test_onset_past_the_end_is_dropped_with_a_warning(tmp_path):
    root = build_bids_copy(SIDECARS / "ds004100", tmp_path / "d", ["HUP190"], rescale_events=False)
    rec = read_bids(root).recordings[0]
    assert rec.task == "ictal" and rec.seizures == ()
    assert any("'sz onset' at 120 s lies outside the recording (0-4 s)" in w for w in rec.warnings)
    assert any(
        "RecordingDuration 273.999 s in the sidecar, 4 s in the signal file" in w
        for w in rec.warnings
    )
    assert any("task-ictal run with no recognisable seizure onset" in w for w in rec.warnings)


def test_runs_disagreeing_on_soz_take_the_union(hup190):
    path = f"{_run(hup190, 'interictal', '02')}_channels.tsv"
    lines = open(path, encoding="utf-8-sig").read().splitlines()
    marked = [i for i, line in enumerate(lines) if line.endswith("\tresect,soz")]
    for i in marked[:3]:  # three SOZ contacts left unmarked in one run
        lines[i] = lines[i][: -len("resect,soz")] + "resect"
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    recs = read_bids(hup190).recordings
    assert len({r.soz for r in recs}) == 1 and len(recs[0].soz) == 12
    msg = (
        "the runs of sub-HUP190 disagree on SOZ: task-interictal_run-02 leaves 3 unmarked of the 12"
    )
    assert all(any(msg in w for w in r.warnings) for r in recs)


def test_subject_without_soz_is_unlabelled_with_a_warning(tmp_path):
    root = build_bids_copy(SIDECARS / "ds004100", tmp_path / "d", ["HUP190", "HUP070"])
    for path in root.glob("sub-HUP070/**/*_channels.tsv"):
        text = (
            path.read_text(encoding="utf-8-sig")
            .replace("resect,soz", "resect")
            .replace("\tsoz", "\tn/a")
        )
        path.write_text(text, encoding="utf-8")
    recs = [r for r in read_bids(root).recordings if r.subject == "HUP070"]
    assert all(r.soz is None and r.resected is not None for r in recs)
    assert all(
        "sub-HUP070 has no contact marked soz in any channels.tsv" in r.warnings[0] for r in recs
    )


def test_soz_name_matching_no_contact_is_a_warning(ds003029, tmp_path):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text('participant_id,soz_contacts\nsub-pt01,"ATT1-2; XQ1-2"\numf001,\n')
    scan = read_bids(ds003029, SourceOptions(label_sheet=sheet))
    pt01 = [r for r in scan.recordings if r.subject == "pt01"]
    assert all(r.soz == {"ATT1", "ATT2"} for r in pt01)
    assert all(
        any("SOZ name(s) XQ1, XQ2 of sub-pt01 match no contact" in w for w in r.warnings)
        for r in pt01
    )
    umf = [r for r in scan.recordings if r.subject == "umf001"]
    assert umf[0].soz is None  # empty cell = unknown


def test_every_contact_bad_is_an_error(hup190):
    path = f"{_run(hup190)}_channels.tsv"
    text = open(path, encoding="utf-8-sig").read().replace("\tgood\t", "\tbad\t")
    open(path, "w", encoding="utf-8").write(text)
    (err,) = read_bids(hup190).problems
    assert "all 162 intracranial contacts are status=bad" in err.reason
    assert err.source.endswith("run-01_ieeg.json")


def test_missing_channels_tsv_and_bad_json(hup190):
    os.remove(f"{_run(hup190)}_channels.tsv")
    open(f"{_run(hup190, run='02')}_ieeg.json", "w").write("{not json")
    scan = read_bids(hup190)
    assert len(scan) == 3
    assert sorted(p.reason[:20] for p in scan.problems) == [
        "invalid JSON: Expect",
        "no channels.tsv besi",
    ]


def test_sidecars_only_mode(tmp_path):
    root = tmp_path / "ds004100"
    shutil.copytree(SIDECARS / "ds004100", root)
    scan = read_bids(root, SourceOptions(check_signals=False))
    assert scan.problems == () and len(scan) == 12
    rec = scan.by_id("ds004100__HUP190__presurgery__ictal__seeg__01")
    assert rec.n_times == round(273.9990234375 * 1024) and rec.seizures[0].onset_s == 120.0
    assert rec.path.endswith("sub-HUP190_ses-presurgery_task-ictal_acq-seeg_run-01_ieeg.edf")


def test_not_a_bids_root(tmp_path):
    with pytest.raises(ConfigError, match="no dataset_description.json, so it is not a BIDS root"):
        read_bids(tmp_path)


def test_missing_line_frequency_is_a_warning(hup190):
    meta_path = f"{_run(hup190)}_ieeg.json"
    meta = json.load(open(meta_path))
    meta["PowerLineFrequency"] = "n/a"
    json.dump(meta, open(meta_path, "w"))
    rec = read_bids(hup190).recordings[0]
    assert rec.line_freq is None and "no PowerLineFrequency" in rec.warnings[-1]
    assert read_bids(hup190, SourceOptions(line_freq=50)).recordings[0].line_freq == 50


@pytest.mark.skipif(not (SHARED_DATA / "bids-sidecars").is_dir(), reason="shared sidecars absent")
def test_all_subjects_of_both_datasets():
    hup = read_bids(SHARED_DATA / "bids-sidecars" / "ds004100", SourceOptions(check_signals=False))
    assert hup.problems == ()
    assert len(hup.subjects) == 57 and len(hup) == 319
    assert sum(r.task == "ictal" for r in hup.recordings) == 208
    assert sum(len(r.seizures) for r in hup.recordings) == 208
    assert all(r.labelled and r.soz for r in hup.recordings)  # SOZ present for all
    assert all(r.seizures[0].onset_s == 120.0 for r in hup.recordings if r.seizures)
    assert {r.acquisition for r in hup.recordings} == {"seeg", "ecog"}
    warned = {r.subject for r in hup.recordings if r.warnings}
    assert warned == {"HUP180"}  # the only real SOZ disagreement (HUP188 is a quoting quirk)

    eiimd = read_bids(
        SHARED_DATA / "bids-sidecars" / "ds003029",
        SourceOptions(
            check_signals=False, label_sheet=SHARED_DATA / "label-sheets" / "ds003029-example.csv"
        ),
    )
    assert eiimd.problems == ()
    assert len(eiimd.subjects) == 35 and len(eiimd) == 106
    assert sum(bool(r.seizures) for r in eiimd.recordings) == 103
    assert [r.subject for r in eiimd.recordings if r.labelled] == ["pt01"] * 4
    centres = {}
    for r in eiimd.recordings:
        centres.setdefault(r.centre, set()).add(r.subject)
    assert {k: len(v) for k, v in centres.items()} == {"NIH": 14, "UMMC": 9, "JHH": 7, "UMF": 5}
