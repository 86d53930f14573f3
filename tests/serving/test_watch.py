"""``soz watch``: a real watcher process on real landing folders, killed with SIGKILL mid-way.

The test copies recordings in while the watcher runs (one slowly in pieces, one truncated and
completed later, one corrupt for good, a BIDS run whose sidecars come after its signal file, one
replaced by a new version), kills the watcher while one recording is being scored and the next
one ingested (the moment read from its journal), restarts it with ``--once``, and checks that
every good recording is once in the store and once per model in the results, the corrupt one
once in the failures table.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from ingest.landing import edf_state, find_arrivals, fingerprint
from ingest.ownership import descendants
from ingest.store import ClipStore
from serving.journal import Journal
from serving.watch import merge_results
from tests.conftest import REPO
from tests.serving.conftest import (
    ALL_CHANNELS,
    CONTACTS,
    ctrl_c,
    make_run_dir,
    soz_process,
    write_edf,
)

STABLE_S = 1.0


# ------------------------------------------------------------------------------ pure parts
def test_edf_state_and_fingerprint(tmp_path):
    edf = write_edf(tmp_path / "a.edf", seconds=8.0)
    data = edf.read_bytes()
    assert edf_state(edf) == ("complete", "")
    part = tmp_path / "part.edf"
    part.write_bytes(data[: len(data) // 2])
    state, detail = edf_state(part)
    assert state == "waiting" and "data records" in detail
    part.write_bytes(data[:100])
    assert edf_state(part)[0] == "waiting"
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"not an edf " * 40)
    assert edf_state(bad)[0] == "corrupt"
    fp = fingerprint([edf])
    assert fp == fingerprint([edf])
    write_edf(edf, seconds=8.0, seed=5)  # same name and size, new content
    assert fingerprint([edf]) != fp


def test_find_arrivals_states(tmp_path):
    edf = write_edf(tmp_path / "rec.edf", seconds=8.0)
    now = time.time()
    (arrival,) = find_arrivals(tmp_path, now=now, stable_s=60.0)
    assert arrival.state == "settling"
    (arrival,) = find_arrivals(tmp_path, now=now + 61, stable_s=60.0)
    assert arrival.state == "complete" and arrival.fingerprint
    (tmp_path / ".rec2.edf.part").write_bytes(edf.read_bytes())  # hidden partial download
    assert len(find_arrivals(tmp_path, now=now + 61, stable_s=60.0)) == 1
    bids_edf = tmp_path / "sub-x" / "ieeg" / "sub-x_task-ictal_ieeg.edf"
    bids_edf.parent.mkdir(parents=True)
    write_edf(bids_edf, seconds=8.0)
    run = next(a for a in find_arrivals(tmp_path, now=now + 61, stable_s=60.0) if a.kind == "bids")
    assert run.state == "waiting"
    for name in ("dataset_description.json", "_ieeg.json", "_channels.tsv", "_events.tsv"):
        assert name in run.detail


def test_journal_drops_a_torn_line(tmp_path):
    path = tmp_path / "r.watch.jsonl"
    j = Journal(path)
    j.append("taken", "/x.edf", "fp1", version=1, recording_id="r1", landing="/", kind="file")
    j.append("ingested", "/x.edf", "fp1", recording_id="r1")
    j.close()
    with open(path, "a") as f:
        f.write('{"at": "2026", "state": "sco')  # killed in the middle of a line
    j = Journal(path)
    assert j.n_torn == 1 and j.latest("/x.edf").state == "ingested"
    assert [v.recording_id for v in j.pending()] == ["r1"]
    j.append("scored", "/x.edf", "fp1", recording_id="r1")
    j.close()
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_merge_results_replaces_by_key_and_marks_superseded():
    def rows(rid, landing, p):
        return pd.DataFrame(
            {"recording_id": rid, "model": "m", "channel": ["A1", "A2"], "probability": p,
             "landing_path": landing, "superseded": False, "fold": pd.NA, "soz_label": pd.NA}
        )  # fmt: skip

    first = merge_results(pd.DataFrame(), rows("r", "/l/a.edf", 0.1))
    again = merge_results(first, rows("r", "/l/a.edf", 0.2))  # a replayed scoring step
    assert len(again) == 2 and (again["probability"] == 0.2).all()
    v2 = merge_results(again, rows("r.v2", "/l/a.edf", 0.3))
    assert len(v2) == 4
    assert v2.groupby("recording_id")["superseded"].all().to_dict() == {"r": True, "r.v2": False}


def test_watch_mistakes_are_one_clear_line(tmp_path, capsys):
    from serving.cli import main

    common = ["--store", str(tmp_path / "s"), "--run", str(tmp_path), "--reports", "r"]
    assert main(["watch", str(tmp_path / "nope"), *common, "--results", "r.parquet"]) == 2
    assert "landing folder" in capsys.readouterr().err
    assert main(["watch", str(tmp_path), *common, "--results", "r.csv"]) == 2
    assert "must be a .parquet file" in capsys.readouterr().err
    assert main(["watch", "s3://bucket/in", *common, "--results", "r.parquet"]) == 2
    assert "Install s3fs" in capsys.readouterr().err  # no s3fs here: a clear line, no traceback
    # soz serve --watch takes the same options, and needs the same outputs
    assert main(["serve", str(tmp_path), "--watch", str(tmp_path), "--results", "r.parquet"]) == 2
    assert "--watch needs --store, --reports too" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the process
def _bids_root(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "watch", "BIDSVersion": "1.8.0"}')
    (root / "participants.tsv").write_text("participant_id\nsub-p9\n")
    return root


def _bids_sidecars(edf: Path) -> None:
    base = edf.name[: -len("_ieeg.edf")]
    meta = {"TaskName": "interictal", "SamplingFrequency": 1024, "PowerLineFrequency": 50}
    edf.with_name(f"{base}_ieeg.json").write_text(json.dumps(meta))
    lines = ["name\ttype\tunits\tstatus\tstatus_description"]
    for ch in ALL_CHANNELS:
        kind = "ECG" if ch == "EKG" else "SEEG"
        lines.append(f"{ch}\t{kind}\tuV\t{'bad' if ch == 'BAD1' else 'good'}\t"
                     f"{'soz' if ch in ('LA1', 'LA2') else 'n/a'}")  # fmt: skip
    edf.with_name(f"{base}_channels.tsv").write_text("\n".join(lines) + "\n")


def _wait(cond, what: str, proc=None, timeout: float = 90.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the watcher exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return out


def _state(journal: Path, name: str, state: str) -> bool:
    return any(e["key"].endswith(name) and e["state"] == state for e in _events(journal))


def _copy_slowly(src: bytes, dst: Path, pieces: int, pause_s: float) -> None:
    step = len(src) // pieces + 1
    with open(dst, "wb") as f:
        for i in range(0, len(src), step):
            f.write(src[i : i + step])
            f.flush()
            time.sleep(pause_s)


# In the default suite: each round's files land at once (3 batches, not 7); what is left is the
# two watcher start-ups. Measured on 2 cores: 42.5 s at load ~5-10, 66 s at load ~15, 113 s at
# load ~30 (the previous round-by-round version: 134-143 s under load).
def test_watch_process_exactly_once_across_kill(tmp_path, ray_local):
    run_dir = make_run_dir(tmp_path, svm=True)
    plain = tmp_path / "landing"
    plain.mkdir()
    bids = _bids_root(tmp_path / "bidsland")
    store, results, reports = tmp_path / "store", tmp_path / "res.parquet", tmp_path / "reports"
    journal = tmp_path / "res.watch.jsonl"
    log = tmp_path / "watch.log"
    src = tmp_path / "src"
    src.mkdir()
    blobs = {
        name: write_edf(src / f"{name}.edf", seconds=30.0, seed=i).read_bytes()
        for i, name in enumerate(["slow", "trunc", "rep", "rep2", "kill", "kill2"])
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env["RAY_ADDRESS"] = ray_local.get_runtime_context().gcs_address
    cmd = [
        "watch", str(plain), str(bids),
        "--store", str(store), "--run", str(run_dir), "--results", str(results),
        "--reports", str(reports), "--stable-s", str(STABLE_S), "--poll-s", "0.3",
    ]  # fmt: skip

    with soz_process(cmd, log, env) as proc:
        _wait(lambda: "watching" in log.read_text(), "the watcher to start", proc, 120)
        # Everything of the first round lands at once: a corrupt file, a truncated one (its
        # first 60 %, completed later), a file replaced later, a BIDS run's signal file before
        # its sidecars, and a file copied slowly in pieces (pauses shorter than the window).
        (plain / "corrupt.edf").write_bytes(b"\x00garbage" * 512)
        (plain / "trunc.edf").write_bytes(blobs["trunc"][: int(len(blobs["trunc"]) * 0.6)])
        (plain / "rep.edf").write_bytes(blobs["rep"])
        bids_edf = bids / "sub-p9" / "ieeg" / "sub-p9_task-interictal_run-01_ieeg.edf"
        bids_edf.parent.mkdir(parents=True)
        bids_edf.write_bytes(blobs["slow"])
        _copy_slowly(blobs["slow"], plain / "slow.edf", pieces=6, pause_s=STABLE_S / 3)
        _wait(lambda: _state(journal, "slow.edf", "reported"), "slow.edf reported", proc)
        _wait(lambda: _state(journal, "rep.edf", "reported"), "rep.edf v1 reported", proc)
        _wait(lambda: _state(journal, "corrupt.edf", "failed"), "corrupt.edf failed", proc)
        _wait(lambda: "waiting   trunc.edf" in log.read_text(), "trunc.edf waiting", proc)
        _wait(lambda: "waiting   sub-p9" in log.read_text(), "the BIDS run waiting", proc)
        # nothing from the truncated file while it is incomplete, nor from the BIDS run
        # before its sidecars
        assert not any(e["key"].endswith("trunc.edf") for e in _events(journal))
        assert not any("trunc" in r for r in ClipStore.open(store).complete_ids())
        assert not pd.read_parquet(results)["recording_id"].str.contains("trunc").any()
        assert not _state(journal, "run-01_ieeg.edf", "taken")
        # the second round: the truncated file completes, the sidecars come, rep.edf is replaced
        with open(plain / "trunc.edf", "ab") as f:
            f.write(blobs["trunc"][int(len(blobs["trunc"]) * 0.6) :])
        _bids_sidecars(bids_edf)
        (plain / "rep.edf").write_bytes(blobs["rep2"])
        _wait(lambda: _state(journal, "trunc.edf", "reported"), "trunc.edf reported", proc)
        _wait(lambda: _state(journal, "run-01_ieeg.edf", "reported"), "BIDS run reported", proc)
        _wait(lambda: _state(journal, "rep.edf", "superseded"), "rep.edf v2 superseding v1", proc)
        # kill -9 while kill.edf is being scored or reported (the scoring or the report
        # stage's thread) and kill2.edf, landed once kill.edf was ingested, is being
        # ingested (the loop's)
        (plain / "kill.edf").write_bytes(blobs["kill"])
        _wait(lambda: _state(journal, "kill.edf", "ingested"), "kill.edf ingested", proc)
        (plain / "kill2.edf").write_bytes(blobs["kill2"])
        old = time.time() - 10 * STABLE_S  # complete at once: taken at the next poll
        os.utime(plain / "kill2.edf", (old, old))
        _wait(lambda: _state(journal, "kill2.edf", "taken"), "kill2.edf taken", proc)
        family = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    for pid in family:  # Beam / Ray children it may have started
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in ("kill.edf", "kill2.edf"):  # both in flight, in two stages, at the kill
        kill_events = [e for e in _events(journal) if e["key"].endswith(name)]
        assert kill_events[-1]["state"] != "reported", f"{name}: the kill came too late"

    with soz_process([*cmd, "--once"], log, env) as proc:
        assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "replaying the journal" in text

    # every good recording once in the store ...
    ids = sorted(ClipStore.open(store).complete_ids())
    assert ids == sorted(
        ["bidsland__p9__interictal__01", "landing__kill", "landing__kill2", "landing__rep",
         "landing__rep.v2", "landing__slow", "landing__trunc"]
    ), ids  # fmt: skip
    # ... once per model and contact in the results, the first version of rep.edf superseded
    res = pd.read_parquet(results)
    assert set(res["model"]) == {"sozformer", "svm"}
    per = res.groupby(["recording_id", "model", "channel"]).size()
    assert (per == 1).all(), per[per > 1]
    counts = res.groupby(["recording_id", "model"]).size()
    assert len(counts) == 2 * len(ids)
    assert (counts.xs("sozformer", level="model") >= len(CONTACTS)).all()
    sup = res.groupby("recording_id")["superseded"].all()
    assert sup["landing__rep"] and not sup.drop("landing__rep").any()
    # the corrupt file once in the store's failures table, not in the results
    failures = ClipStore.open(store).failures()
    assert (failures["source"].str.endswith("corrupt.edf")).sum() == 1
    assert not res["landing_path"].str.endswith("corrupt.edf").any()
    # the journal ends every version, the index lists every arrival
    last = {}
    for e in _events(journal):
        last[(e["key"], e["fp"])] = e["state"]
    assert sorted(last.values()).count("reported") == 6  # rep.edf's first version: superseded
    assert sorted(last.values()).count("failed") == 1
    assert sorted(last.values()).count("superseded") == 1
    index = (reports / "index.html").read_text()
    assert "corrupt.edf" in index and "landing__rep.v2" in index
    assert (reports / "bidsland-p9.html").is_file()


@pytest.mark.slow
def test_watch_ctrl_c_finishes_the_recording_in_flight(tmp_path, ray_local):
    run_dir = make_run_dir(tmp_path, svm=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    log, journal = tmp_path / "watch.log", tmp_path / "res.watch.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env["RAY_ADDRESS"] = ray_local.get_runtime_context().gcs_address
    cmd = [
        "watch", str(landing), "--store", str(tmp_path / "s"),
        "--run", str(run_dir), "--results", str(tmp_path / "res.parquet"),
        "--reports", str(tmp_path / "rep"), "--stable-s", "0.5", "--poll-s", "0.2",
    ]  # fmt: skip
    with soz_process(cmd, log, env) as proc:
        _wait(lambda: "watching" in log.read_text(), "the watcher to start", proc, 120)
        write_edf(landing / "a.edf", seconds=30.0)
        _wait(lambda: _state(journal, "a.edf", "taken"), "a.edf taken", proc)
        text = ctrl_c(proc, log)
    assert "stopped by Ctrl-C" in text and "1 recording(s) ingested, scored and reported" in text
    assert _state(journal, "a.edf", "reported")
