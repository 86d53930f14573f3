"""``soz ingest`` killed with SIGKILL at chosen moments (file events), then re-run.

Each kill is of a real ``python -m serving ingest`` process on the local multi-process Beam
runner, started in its own session so that its process group holds the driver and every worker
it spawned. After the kill: no process of that group survives, the recordings committed before
the kill are still in ``recordings.parquet``, and a re-run gives a store identical to the one an
uninterrupted run gives (every shard byte for byte, every manifest row but its timestamps).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.config import IngestConfig
from ingest.ownership import group_members
from ingest.store import ClipStore
from tests.ingest.conftest import make_recording

CLI = ["--sfreq", "250", "--block-clips", "2", "--l-freq", "1.0", "--line-freq", "50"]
CFG = IngestConfig(sfreq=250.0, block_clips=2, l_freq=1.0, line_freq=50.0, num_workers=2)
#: (name, seconds): three one-block recordings (commit early) and four of 12 blocks.
COHORT = [(f"s{i}", 10.0) for i in range(3)] + [(f"l{i}", 120.0) for i in range(4)]
TIMESTAMPS = {"ingested_at", "failed_at"}


def _ingest(source: Path, store: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serving", "ingest", str(source), "--out", str(store)]
    cmd += [*CLI, "--workers", "2", "--no-progress"]
    return subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _kill_and_check_group(
    proc: subprocess.Popen, timeout_s: float = 20.0, *, whole_group: bool = False
) -> None:
    """SIGKILL the driver only (or, ``whole_group``, every process of the ingest at once, as
    the OOM killer or a lost machine would), then require its whole process group gone."""
    pgid = proc.pid
    workers = [p for p in group_members(pgid) if p != pgid]
    if whole_group:
        os.killpg(pgid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + timeout_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = group_members(pgid)
    assert workers, "the ingest had no worker processes when it was killed"
    assert not survivors, f"processes {survivors} outlived their killed driver"


def _shards(store: Path) -> int:
    return sum(1 for p in (store / "clips").glob("*/c/**/*") if p.is_file())


def _complete(store: Path) -> set[str]:
    path = store / "recordings.parquet"
    if not path.exists():
        return set()
    return set(pq.read_table(path).column("recording_id").to_pylist())


def _snapshot(store: Path) -> dict:
    """Everything a reader sees: shard and metadata bytes, manifests without timestamps."""
    out = {}
    for p in sorted(store.rglob("*")):
        rel = str(p.relative_to(store))
        if not p.is_file() or rel == ".lock":
            continue
        if p.suffix == ".parquet":
            table = pq.read_table(p)
            out[rel] = table.drop([c for c in table.column_names if c in TIMESTAMPS]).to_pylist()
        else:
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("killcohort")
    for i, (name, seconds) in enumerate(COHORT):
        make_recording(folder, name, seconds=seconds, sfreq=250.0, seed=i, soz=None)
    return folder


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory) -> dict:
    """The store of an uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = _ingest(cohort, tmp / "store", tmp / "log.txt")
    assert proc.wait(timeout=300) == 0, (tmp / "log.txt").read_text()
    snap = _snapshot(tmp / "store")
    assert len(_complete(tmp / "store")) == len(COHORT)
    return snap


def _rerun_matches(cohort: Path, store: Path, reference: dict) -> None:
    log = store.parent / "rerun.txt"
    proc = _ingest(cohort, store, log)
    assert proc.wait(timeout=300) == 0, log.read_text()
    assert _complete(store) == _complete_ids(reference)
    snap = _snapshot(store)
    assert sorted(snap) == sorted(reference)  # no stray lease, summary or temporary left
    for rel, content in reference.items():
        assert snap[rel] == content, rel


def _complete_ids(snapshot: dict) -> set[str]:
    return {row["recording_id"] for row in snapshot["recordings.parquet"]}


@pytest.mark.slow
def test_kill_mid_ingest_leaves_no_worker_and_keeps_finished_recordings(
    cohort, reference, tmp_path
):
    store = tmp_path / "store"
    proc = _ingest(cohort, store, tmp_path / "log.txt")
    deadline = time.monotonic() + 240
    # the moment: some recordings committed, the 12th shard on disk
    while not (_complete(store) and _shards(store) >= 12):
        assert proc.poll() is None, (tmp_path / "log.txt").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = _complete(store)
    _kill_and_check_group(proc)
    after = _complete(store)
    assert before <= after, "recordings committed before the kill were lost"
    assert len(after) < len(COHORT), "the ingest finished before the kill: nothing was tested"
    # the killed run is no complete store: half-written recordings do not read as complete
    reader = ClipStore.open(store)
    assert set(reader.recordings()["recording_id"]) == after
    frozen = _shards(store)
    time.sleep(0.5)
    assert _shards(store) == frozen, "shards still being written after the kill"
    _rerun_matches(cohort, store, reference)


# ------------------------------------------------------------- a kill inside a manifest commit
_IN_MOVED_TO = 0x80
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _watch(folder: Path) -> int:
    fd = _libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0 or _libc.inotify_add_watch(fd, str(folder).encode(), _IN_MOVED_TO) < 0:
        pytest.skip("no inotify on this system")
    return fd


def _renamed(fd: int, timeout_s: float) -> list[str]:
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return []
    data, names, i = os.read(fd, 65536), [], 0
    while i < len(data):
        _, _, _, length = struct.unpack_from("iIII", data, i)
        names.append(data[i + 16 : i + 16 + length].rstrip(b"\0").decode())
        i += 16 + length
    return names


@pytest.mark.slow
def test_kill_during_a_manifest_commit_then_rerun_is_identical(cohort, reference, tmp_path):
    """Killed right after a commit replaced channels.parquet, before recordings.parquet.

    The committing process is a worker, so the whole process group is killed at once (a
    driver-only kill gives the worker its watchdog's 0.1 s, enough to finish the commit)."""
    for attempt in range(4):  # the kill must land inside a commit; retry on a fresh store
        store = tmp_path / f"store{attempt}"
        ClipStore.open(store, "a", config=CFG)  # exists, so its folder can be watched
        fd = _watch(store)
        proc = _ingest(cohort, store, tmp_path / f"log{attempt}.txt")
        try:
            deadline = time.monotonic() + 240
            while "channels.parquet" not in _renamed(fd, 1.0):
                assert proc.poll() is None and time.monotonic() < deadline
            _kill_and_check_group(proc, whole_group=True)
        finally:
            os.close(fd)
        channels = set(pq.read_table(store / "channels.parquet").column("recording_id").to_pylist())
        complete = _complete(store)
        if channels - complete:  # rows of a recording whose commit the kill cut short
            break
    else:
        pytest.fail("no kill landed inside a manifest commit in 4 tries")
    reader = ClipStore.open(store)
    cut = sorted(channels - complete)
    assert not set(cut) & set(reader.recordings()["recording_id"])
    assert reader.channels().query("recording_id in @cut").empty  # half-committed: not visible
    with pytest.raises(KeyError, match="not a complete recording"):
        reader.read_clips(cut[0], 0, 1)
    _rerun_matches(cohort, store, reference)
