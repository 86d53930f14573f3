"""Labels are never lost silently (issue 13, item 2).

A label sheet whose names match no contact of a subject used to replace its SOZ with an empty
set (every contact trained as a negative, exit 0, nothing printed). Now the subject's recordings
are refused, naming the sheet, the names and the fix, unless ``allow_empty_soz`` /
``--allow-empty-soz`` is given, and then the loss is a warning on each recording. Real sheets,
real BIDS sidecars with BrainVision files, real EDF folders and a real ``soz ingest`` process.
"""

from __future__ import annotations

import pytest

from ingest.config import IngestConfig
from ingest.driver import ingest_recordings
from ingest.recording import SeizureEvent
from ingest.sources import SourceOptions, scan_source
from ingest.store import ClipStore
from ingest.stream import plan_warnings
from serving.cli import main
from tests.conftest import QUICK_INGEST, SIDECARS, run_soz
from tests.ingest.conftest import make_recording
from tests.ingest.signal_files import build_bids_copy, write_edf


@pytest.fixture(scope="module")
def ds003029(tmp_path_factory):
    return build_bids_copy(SIDECARS / "ds003029", tmp_path_factory.mktemp("l") / "ds003029")


@pytest.fixture
def wrong_sheet(tmp_path):
    """The pt01 sheet with names of another montage (none is a pt01 contact)."""
    sheet = tmp_path / "wrong-montage.csv"
    sheet.write_text('participant_id,soz_contacts\nsub-pt01,"XQ1-4; ZZ2"\n', encoding="utf-8")
    return sheet


def test_sheet_matching_no_contact_refuses_the_subject(ds003029, wrong_sheet):
    scan = scan_source(ds003029, SourceOptions(label_sheet=wrong_sheet))
    assert len(scan.problems) == 4  # the four pt01 runs
    assert {r.subject for r in scan.recordings} == {"jh101", "umf001", "ummc001"}
    for p in scan.problems:
        assert "sub-pt01" in p.source and p.source.endswith("_ieeg.json")
        assert "the label sheet wrong-montage.csv names SOZ contact(s) XQ1, XQ2" in p.reason
        assert "none matches a channel of this recording" in p.reason
        assert "--allow-empty-soz" in p.fix and "check the contact names" in p.fix

    allowed = scan_source(ds003029, SourceOptions(label_sheet=wrong_sheet, allow_empty_soz=True))
    assert allowed.problems == ()
    pt01 = [r for r in allowed.recordings if r.subject == "pt01"]
    assert len(pt01) == 4
    for rec in pt01:
        assert rec.soz == frozenset()
        assert any(
            "XQ1, XQ2, XQ3, XQ4, ZZ2 of sub-pt01 match no contact" in w for w in rec.warnings
        )
        assert any("labelled with no SOZ contact" in w for w in rec.warnings)


def test_soz_scan_shows_the_refusal_and_the_flag_turns_it_into_warnings(
    ds003029, wrong_sheet, capsys
):
    assert main(["scan", str(ds003029), "--label-sheet", str(wrong_sheet)]) == 0
    out = capsys.readouterr().out
    assert "4 unreadable" in out and out.count("--allow-empty-soz") == 4
    args = ["scan", str(ds003029), "--label-sheet", str(wrong_sheet), "--recordings"]
    assert main([*args, "--allow-empty-soz"]) == 0
    out = capsys.readouterr().out
    assert "0 unreadable" in out
    assert out.count("label sheet SOZ name(s) XQ1, XQ2, XQ3, XQ4, ZZ2") == 4  # grouped, once each


def _ingest(folder, sheet, store, *extra):
    args = ["--label-sheet", sheet, "--line-freq", "50", *QUICK_INGEST, *extra]
    return run_soz("ingest", folder, "--out", store, *args)


def test_soz_ingest_refuses_an_empty_soz_unless_allowed(tmp_path):
    folder = tmp_path / "CHUL"
    folder.mkdir()
    names = ["LA1", "LA2", "LA3", "RH1", "RH2"]
    write_edf(folder / "CHUL01_night1.edf", names, seconds=4.0)
    write_edf(folder / "CHUL02_night1.edf", names, seconds=4.0, seed=1)
    sheet = tmp_path / "labels.csv"
    sheet.write_text(
        'participant_id,soz_contacts\nCHUL01,"LA1-2"\nCHUL02,"T1-3"\n', encoding="utf-8"
    )
    store = tmp_path / "store"

    refused = _ingest(folder, sheet, store)
    assert "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert refused.returncode == 1, (refused.stdout, refused.stderr[-2000:])
    assert "1 recordings ingested" in refused.stdout and "1 failed" in refused.stdout
    failed = ClipStore.open(str(store)).failures()
    assert len(failed) == 1 and failed.loc[0, "source"].endswith("CHUL02_night1.edf")
    assert "names SOZ contact(s) T1, T2, T3 for sub-CHUL02" in failed.loc[0, "reason"]
    assert "--allow-empty-soz" in failed.loc[0, "fix"]
    assert ClipStore.open(str(store)).complete_ids() == {"CHUL__CHUL01__CHUL01_night1"}

    allowed = _ingest(folder, sheet, store, "--allow-empty-soz")
    assert allowed.returncode == 0, (allowed.stdout, allowed.stderr[-2000:])
    clips = ClipStore.open(str(store))
    assert clips.complete_ids() == {"CHUL__CHUL01__CHUL01_night1", "CHUL__CHUL02__CHUL02_night1"}
    channels = clips.channels()
    chul02 = channels[channels["recording_id"] == "CHUL__CHUL02__CHUL02_night1"]
    assert len(chul02) == 5 and not chul02["soz"].any()  # accepted: labelled, no SOZ


def test_a_seizure_no_clip_can_hold_is_a_warning(tmp_path):
    """Onset inside the file but in the tail shorter than a clip: 0 ictal clips, said so."""
    cfg = IngestConfig(sfreq=250.0, clip_s=5.0, block_clips=2, trans_bandwidth=1.0, l_freq=1.0)
    rec = make_recording(tmp_path, "p1", seconds=23.0, seizures=(SeizureEvent(21.0, 22.5),))
    (note,) = plan_warnings(rec, cfg)
    assert "seizure at 21 s" in note and "23 s recording" in note
    assert "the last whole 5-s clip ends at 20 s" in note and "no clip is labelled ictal" in note
    fine = make_recording(tmp_path, "p2", seconds=23.0, seizures=(SeizureEvent(7.0, 12.5),))
    assert plan_warnings(fine, cfg) == ()

    # ingest keeps it in the store's warnings table (kind events), not only printed
    store = tmp_path / "store"
    report = ingest_recordings(
        [rec, fine], store, cfg, pipeline_args=["--direct_running_mode=in_memory"]
    )
    assert report.n_ingested == 2
    stored = ClipStore.open(store).warnings()
    events = stored[stored["kind"] == "events"]
    assert list(events["recording_id"]) == [rec.recording_id]
    assert list(events["message"]) == [note]
    assert note in set(report.warnings["message"])
