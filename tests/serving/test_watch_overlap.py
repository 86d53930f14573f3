"""``soz watch``'s stages overlap: a poll hands its ingested batch to the scoring stage and
returns, so the next batch is taken and ingested while the first is scored and reported; both
end up once in the store, once per model and contact in the results, reported once each.
A real in-process watcher (real Beam ingest, real Ray scoring actors) on a real landing folder,
its polls driven by hand so that each recording is a batch of its own."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import datetime

import pandas as pd
import pytest

from ingest.store import ClipStore
from serving.watch import WatchConfig, Watcher
from serving.watch_stage import BatchStage
from tests.serving.conftest import CONTACTS, make_run_dir, write_edf


def _land(path, seed: int) -> str:
    write_edf(path, seconds=30.0, seed=seed)
    old = time.time() - 60  # complete at the next poll
    os.utime(path, (old, old))
    return str(path)


def _at(watcher: Watcher, key: str, state: str) -> float:
    (v,) = watcher.journal.versions_of(key)
    return datetime.fromisoformat(v.last(state)["at"]).timestamp()


def test_the_next_batch_is_ingested_while_one_is_scored(tmp_path, ray_local):
    run_dir = make_run_dir(tmp_path, svm=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    results = tmp_path / "res.parquet"
    cfg = WatchConfig(
        landings=(str(landing),), store=str(tmp_path / "store"), run_dir=str(run_dir),
        results=str(results), reports=str(tmp_path / "reports"), stable_s=1.0, poll_s=0.2,
    )  # fmt: skip
    lines: list[str] = []
    watcher = Watcher(cfg, say=lines.append)
    watcher.start()
    try:
        a = _land(landing / "a.edf", seed=0)
        watcher.poll_once()
        # handed over: ingested, and not waited for (its scoring and report take ~1 s)
        assert watcher.journal.latest(a).state in ("ingested", "scored"), lines
        b = _land(landing / "b.edf", seed=1)
        # takes and ingests b, then waits for a's scoring (not its report) before handing b over
        watcher.poll_once()
        assert watcher.journal.latest(a).state in ("scored", "reported"), lines
        assert watcher.journal.latest(b).state in ("ingested", "scored", "reported"), lines
        watcher.cfg = replace(cfg, once=True)
        summary = watcher.run()  # nothing new: waits for b's batch, then stops
        assert _at(watcher, b, "taken") < _at(watcher, a, "reported")  # the stages overlapped
        assert _at(watcher, a, "reported") < _at(watcher, b, "reported")  # in the order taken
    finally:
        watcher.close()
    assert (summary.reported, summary.failed) == (2, 0), lines
    assert [line.split()[1] for line in lines if "->" in line] == ["a.edf", "b.edf"], lines
    assert sorted(ClipStore.open(cfg.store).complete_ids()) == ["landing__a", "landing__b"]
    res = pd.read_parquet(results)
    per = res.groupby(["recording_id", "model", "channel"]).size()
    assert (per == 1).all() and set(res["recording_id"]) == {"landing__a", "landing__b"}
    assert (res.groupby("recording_id").size() >= len(CONTACTS)).all()
    assert not res["superseded"].any()


def test_a_batch_is_scored_while_the_one_before_is_reported():
    """The watcher's two chained stages: scoring hands each batch to the report stage and goes
    on, so batch 2 is scored while batch 1's pages are still being written, and the hand-off
    of batch 2 waits for batch 1's report (batches are reported in order). A report's error
    reaches the loop through the scoring stage's next hand-off."""
    release = threading.Event()
    done: list[tuple[str, tuple]] = []

    def report(jobs: tuple) -> None:
        if jobs == ("boom",):
            raise RuntimeError("page failed")
        release.wait(30)
        done.append(("reported", jobs))

    reports = BatchStage(report, name="test-report")

    def score(jobs: tuple) -> None:
        done.append(("scored", jobs))
        reports.submit(jobs)

    scoring = BatchStage(score, name="test-score")
    try:
        scoring.submit((1,))
        scoring.wait()  # batch 1 scored and handed over; its report is held
        scoring.submit((2,))
        deadline = time.time() + 30
        while ("scored", (2,)) not in done and time.time() < deadline:
            time.sleep(0.01)
        assert done == [("scored", (1,)), ("scored", (2,))]  # batch 1 not reported yet
        assert not scoring.idle  # batch 2's hand-off waits for batch 1's report
        release.set()
        scoring.wait()
        reports.wait()
        assert done[2:] == [("reported", (1,)), ("reported", (2,))]
        scoring.submit(("boom",))
        scoring.wait()  # handed over; the report fails in its own thread
        scoring.submit((3,))  # its hand-off meets the error
        with pytest.raises(RuntimeError, match="page failed"):
            scoring.wait()
    finally:
        release.set()
        scoring.close()
        reports.close()
