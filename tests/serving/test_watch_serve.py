"""``soz serve RUN_DIR --watch LANDING``: the watcher of ``soz watch`` inside the HTTP service.

A real ``soz serve`` process (Serve on the tests' local Ray, the watcher in a thread), a real EDF
copied into its landing folder: the recording is ingested, scored and reported as ``soz watch``
would, ``/health`` shows the watcher's state, and Ctrl-C stops both cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import httpx
import pandas as pd

from ingest.store import ClipStore
from tests.conftest import REPO
from tests.serving.conftest import (
    CONTACTS,
    ctrl_c,
    free_port,
    make_run_dir,
    soz_process,
    write_edf,
)


def _health(port: int) -> dict | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _wait(cond, what: str, proc, log, timeout: float = 150.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(
                f"soz serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


# A real soz serve (Serve start-up, two deployments) and its watcher on the session's Ray: on
# 2 cores 25.5 s at load ~3, 65 s at load ~30 (116-142 s at load 30-48).
def test_serve_watch_ingests_scores_and_reports_what_lands(tmp_path, ray_local):
    run_dir = make_run_dir(tmp_path, svm=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    results, reports, store = tmp_path / "res.parquet", tmp_path / "reports", tmp_path / "store"
    (tmp_path / "src").mkdir()
    edf = write_edf(tmp_path / "src" / "night1.edf", seconds=30.0)
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env["RAY_ADDRESS"] = ray_local.get_runtime_context().gcs_address  # the session's Ray
    cmd = [
        "serve", str(run_dir), "--port", str(port),
        "--cpus-per-replica", "0.5", "--watch", str(landing), "--store", str(store),
        "--results", str(results), "--reports", str(reports), "--stable-s", "0.5",
        "--poll-s", "0.2",
    ]  # fmt: skip
    with soz_process(cmd, log, env) as proc:
        health = _wait(
            lambda: (h := _health(port)) and h.get("watch", {}).get("state") == "watching" and h,
            "/health to show the watcher watching", proc, log,
        )  # fmt: skip
        assert health["status"] == "ok" and health["watch"]["reported"] == 0
        shutil.copy(edf, landing / "night1.edf")  # an export lands
        health = _wait(
            lambda: (h := _health(port)) and h["watch"]["reported"] == 1 and h,
            "the recording reported", proc, log,
        )  # fmt: skip
        assert health["watch"]["failed"] == 0 and not health["watch"]["stale"]
        text = ctrl_c(proc, log)
    assert "night1.edf -> landing__night1" in text  # the watcher's arrival line
    assert "1 recording(s) ingested, scored and reported" in text
    assert set(ClipStore.open(store).complete_ids()) == {"landing__night1"}
    res = pd.read_parquet(results)
    assert set(res["recording_id"]) == {"landing__night1"} and set(res["model"]) == {"sozformer"}
    assert set(CONTACTS) <= set(res["channel"]) and res["probability"].between(0, 1).all()
    assert (reports / "index.html").is_file() and (reports / "landing-night1.html").is_file()
    status = json.loads((tmp_path / "res.watch.status.json").read_text())
    assert status["state"] == "stopped" and status["reported"] == 1
