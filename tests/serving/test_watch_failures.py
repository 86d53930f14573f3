"""``soz watch``: a recording that is ingested but cannot be scored lands in the failures table
beside the results once, named, with a fix hint, and the watcher goes on with the next one.
A real in-process watcher (real Beam ingest, real Ray scoring actors) on a real landing folder."""

from __future__ import annotations

import os
import time

import pandas as pd

from ingest.store import ClipStore
from serving.journal import Journal, journal_path
from serving.watch import WatchConfig, Watcher
from tests.serving.conftest import CONTACTS, make_run_dir, write_edf


def _run_once(cfg: WatchConfig, lines: list[str]):
    watcher = Watcher(cfg, say=lines.append)
    watcher.start()
    try:
        return watcher.run()
    finally:
        watcher.close()


def test_a_recording_that_fails_to_score_is_one_failure_row_and_the_watch_goes_on(
    tmp_path, ray_local
):
    run_dir = make_run_dir(tmp_path, svm=False)  # SOZFormer: sequences of 4 clips of 5 s
    landing = tmp_path / "landing"
    landing.mkdir()
    write_edf(landing / "short.edf", seconds=10.0)  # 2 clips: ingested, too short to score
    write_edf(landing / "good.edf", seconds=30.0, seed=1)
    old = time.time() - 60
    for f in landing.iterdir():
        os.utime(f, (old, old))
    results = tmp_path / "res.parquet"
    cfg = WatchConfig(
        landings=(str(landing),), store=str(tmp_path / "store"), run_dir=str(run_dir),
        results=str(results), reports=str(tmp_path / "reports"), stable_s=1.0, poll_s=0.2,
        once=True,
    )  # fmt: skip
    lines: list[str] = []
    summary = _run_once(cfg, lines)
    assert (summary.reported, summary.failed) == (1, 1), lines
    # ingested: the store holds both recordings, the results only the good one
    assert sorted(ClipStore.open(cfg.store).complete_ids()) == ["landing__good", "landing__short"]
    res = pd.read_parquet(results)
    assert set(res["recording_id"]) == {"landing__good"}
    assert len(res) >= len(CONTACTS)
    # one failure row, naming the landing file, with the reason and a fix
    fails = pd.read_parquet(tmp_path / "res.failures.parquet")
    assert len(fails) == 1, fails
    row = fails.iloc[0]
    assert row["recording_id"] == "landing__short" and row["stage"] == "score"
    assert row["source_path"] == str(landing / "short.edf")
    assert row["model"] == "sozformer" and "20" in row["reason"] and row["fix"], row.to_dict()
    (line,) = [x for x in lines if x.startswith("FAILED")]
    assert "short.edf [score]" in line and "Fix:" in line
    assert "short.edf" in (tmp_path / "reports" / "index.html").read_text()
    # a second watcher over the same folder: nothing retried, nothing added
    lines2: list[str] = []
    summary = _run_once(cfg, lines2)
    assert (summary.reported, summary.failed) == (0, 0), lines2
    assert len(pd.read_parquet(tmp_path / "res.failures.parquet")) == 1
    assert pd.read_parquet(results).equals(res)
    states = [v.state for v in Journal(journal_path(results)).by_key[str(landing / "short.edf")]]
    assert states == ["failed"]
