"""``soz ingest`` over several sources: an empty one is reported and the rest ingested; the
readers' warnings are printed grouped by kind and kept in the store's warnings table."""

from __future__ import annotations

import pandas as pd

from ingest.store import ClipStore
from serving.cli import main
from tests.ingest.conftest import make_recording

ARGS = ["--sfreq", "250", "--block-clips", "2", "--l-freq", "1.0", "--line-freq", "50"]
ARGS += ["--workers", "1", "--no-progress", "--beam-args=--direct_running_mode=in_memory"]


def test_an_empty_source_is_reported_and_the_good_one_ingested(tmp_path, capsys):
    good, empty = tmp_path / "good", tmp_path / "empty"
    good.mkdir()
    empty.mkdir()
    (empty / "notes.txt").write_text("no recording here")
    make_recording(good, "g1", seconds=12.0, sfreq=250.0)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("participant_id,soz_contacts\nsomeone_else,A1\n")
    store = tmp_path / "store"
    argv = ["ingest", str(empty), str(good), "--out", str(store), "--label-sheet", str(sheet)]
    code = main([*argv, *ARGS])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 recordings ingested" in out
    line = next(ln for ln in out.splitlines() if "SOURCE NOT INGESTED" in ln)
    assert str(empty) in line and "no signal file" in line and "Fix:" in line
    s = ClipStore.open(store)
    assert list(s.recordings()["recording_id"]) == ["good__g1"]
    f = s.failures()
    assert list(f["stage"]) == ["source"] and list(f["source"]) == [str(empty)]
    # the warnings soz scan shows (subject absent from the sheet; a sheet subject matching no
    # recording, a warning about the whole source) are printed grouped and stored
    w = s.warnings().sort_values("message").reset_index(drop=True)
    assert list(w["kind"]) == ["labels", "labels"]
    assert pd.isna(w.loc[0, "recording_id"])
    assert w.loc[0, "source"] == str(good)
    assert "1 of its 1 subject(s) match no recording" in w.loc[0, "message"]
    assert "someone_else" in w.loc[0, "message"]
    assert "not in the label sheet" in w.loc[1, "message"]
    assert "2 warnings: labels 2" in out
    assert all(m in out for m in w["message"])
    assert main(["scan", str(good), "--label-sheet", str(sheet), "--line-freq", "50"]) == 0
    scanned = capsys.readouterr().out
    assert "2 warnings: labels 2" in scanned and all(m in scanned for m in w["message"])


def test_nothing_ingestible_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["ingest", str(empty), "--out", str(tmp_path / "store"), *ARGS])
    assert code == 2
    assert "no signal file" in capsys.readouterr().err
