"""Leases per recording, stale-lease take-over, and local workers that die with their driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace

import pytest

from ingest.driver import ingest_recordings
from ingest.ownership import (
    LeaseLost,
    Owner,
    acquire_leases,
    check_lease,
    group_members,
    lease_holder,
    pid_alive,
    process_start,
)
from ingest.store import ClipStore
from tests.ingest.conftest import FAST

IN_MEMORY = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lease(store_url, rid: str, owner: Owner) -> None:
    folder = os.path.join(store_url, "leases")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{rid}.json"), "w") as f:
        json.dump({**asdict(owner), "recording_id": rid}, f)


def test_a_recording_leased_by_a_live_run_is_left_alone(tiny_cohort, tmp_path):
    store_url = str(tmp_path / "store")
    ClipStore.open(store_url, "a", config=FAST)
    other = Owner.this_process()  # alive (this test process), another run's token
    held = tiny_cohort[0].recording_id
    _write_lease(store_url, held, other)
    report = ingest_recordings(tiny_cohort, store_url, FAST, pipeline_args=IN_MEMORY)
    assert list(report.busy) == [held] and str(os.getpid()) in report.busy[held]
    assert report.n_ingested == 2
    store = ClipStore.open(store_url)
    assert held not in set(store.recordings()["recording_id"])
    assert not os.path.exists(os.path.join(store_url, "clips", held))  # not a shard written
    assert lease_holder(store, held) == other  # its lease untouched; ours released
    assert sorted(os.listdir(os.path.join(store_url, "leases"))) == [f"{held}.json"]


def test_a_dead_runs_lease_is_taken_over(tiny_cohort, tmp_path):
    store_url = str(tmp_path / "store")
    ClipStore.open(store_url, "a", config=FAST)
    dead = replace(Owner.this_process(), pid=_dead_pid())
    reused = replace(Owner.this_process(), proc_start="1")  # this pid, an earlier process
    _write_lease(store_url, tiny_cohort[0].recording_id, dead)
    _write_lease(store_url, tiny_cohort[1].recording_id, reused)
    assert not dead.alive() and not reused.alive()
    report = ingest_recordings(tiny_cohort, store_url, FAST, pipeline_args=IN_MEMORY)
    assert report.n_ingested == 3 and not report.busy
    assert not os.path.exists(os.path.join(store_url, "leases"))  # released, folder gone


def test_acquire_reports_live_owner_and_check_lease_guards_writes(tmp_path):
    store = ClipStore.open(tmp_path / "store", "a", config=FAST)
    mine, theirs = Owner.this_process(), Owner.this_process()
    assert acquire_leases(store, ["a", "b"], mine) == {}
    assert acquire_leases(store, ["a", "c"], theirs) == {"a": mine}
    check_lease(store, "a", mine.token)
    with pytest.raises(LeaseLost, match="not by this run"):
        check_lease(store, "a", theirs.token)
    with pytest.raises(LeaseLost, match="no run"):
        check_lease(store, "zzz", mine.token)
    assert pid_alive(os.getpid(), process_start(os.getpid()))


_WORKER = """
import sys, time
from ingest.ownership import process_start, watch_driver
import socket
driver = int(sys.argv[1])
watch_driver(driver, socket.gethostname(), process_start(driver), interval_s=0.05)
open(sys.argv[2], "w").write("watching")
time.sleep(120)
"""
_DRIVER = """
import subprocess, sys, time
# like Beam's local runner: the worker through `sh -c`, in the driver's process group
subprocess.Popen(f"{sys.executable} -c '{sys.argv[1]}' {__import__('os').getpid()} {sys.argv[2]}",
                 shell=True)
time.sleep(120)
"""


def test_a_worker_dies_with_its_killed_driver(tmp_path):
    ready = tmp_path / "ready"
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, textwrap.dedent(_WORKER).replace("'", '"'), str(ready)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.02)
    group = group_members(driver.pid)
    assert len(group) >= 2  # the driver and its worker (and maybe the sh between)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while group_members(driver.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_members(driver.pid), "the worker outlived its driver"
