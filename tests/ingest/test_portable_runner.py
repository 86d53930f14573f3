"""The ingest on Beam's portable runner: a job service and an external worker pool, each its
own process, so every DoFn and element is pickled across processes and the workers run in
another working directory. The store they write must equal the in-process runner's, bit for
bit: every Zarr file (metadata and shards) byte for byte, every Parquet manifest row for row,
except the run's wall-clock columns (``ingested_at``, ``failed_at``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ingest.beam_services import portable_services
from ingest.driver import ingest_recordings
from ingest.errors import ConfigError
from ingest.store import ClipStore
from tests.ingest.conftest import FAST, make_recording

IN_PROCESS = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
#: Columns that say when this run wrote a row: the only ones allowed to differ.
WALL_CLOCK = {"ingested_at", "failed_at"}


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        out |= {int(c) for c in text}
    return out | {g for c in list(out) for g in _children(c)}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def assert_same_store(a: str | Path, b: str | Path) -> None:
    """Store ``b`` equals ``a``: same files, Zarr bytes equal, manifests equal but for
    :data:`WALL_CLOCK`."""
    a, b = Path(a), Path(b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    n_zarr = 0
    for rel in files_a:
        if rel.suffix == ".parquet":
            ta, tb = pd.read_parquet(a / rel), pd.read_parquet(b / rel)
            assert set(WALL_CLOCK & set(ta.columns)) == set(WALL_CLOCK & set(tb.columns))
            keep = [c for c in ta.columns if c not in WALL_CLOCK]
            pd.testing.assert_frame_equal(ta[keep], tb[keep], check_exact=True, obj=str(rel))
        elif rel.name != ".lock":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
            n_zarr += 1
    assert n_zarr > 4  # group + arrays metadata and shards were compared


def test_portable_runner_store_equals_in_process_store(tiny_cohort, tmp_path):
    bad = make_recording(tmp_path / "cohort", "trunc", seconds=12.0)
    with open(bad.path, "r+b") as f:
        f.truncate(os.path.getsize(bad.path) - 1000)
    recs = [*tiny_cohort, bad]
    local = ingest_recordings(recs, tmp_path / "local", FAST, pipeline_args=IN_PROCESS)
    with portable_services(tmp_path / "beam-services") as services:
        portable = ingest_recordings(
            recs, str(tmp_path / "portable"), FAST, pipeline_args=services.pipeline_args()
        )
        workers = _children(services.procs[1].pid)
        # re-running skips every complete recording, on the portable runner too
        again = ingest_recordings(
            recs[:3], str(tmp_path / "portable"), FAST, pipeline_args=services.pipeline_args()
        )
        pids = {p.pid for p in services.procs} | workers | _children(services.procs[1].pid)
    assert workers, "the worker pool started no SDK worker process"
    assert os.getpid() not in pids
    assert not [pid for pid in pids if _alive(pid)], "a service or worker outlived the services"

    assert (portable.n_ingested, portable.n_failed) == (local.n_ingested, local.n_failed) == (3, 1)
    assert portable.n_clips == local.n_clips > 0
    assert portable.failures["recording_id"].tolist() == ["tiny__trunc"]
    assert portable.counters["ProcessBlocks/clips"] == local.counters["ProcessBlocks/clips"]
    assert_same_store(tmp_path / "local", tmp_path / "portable")
    assert ClipStore.open(tmp_path / "portable").complete_ids() == {
        "tiny__p1",
        "tiny__p2",
        "tiny__p3",
    }
    assert (again.n_skipped, again.n_ingested) == (3, 0)


def test_relative_paths_are_refused_before_anything_is_written(tiny_cohort, tmp_path):
    args = ["--runner=PortableRunner", "--job_endpoint=localhost:1"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(ConfigError, match="relative path 'store'.*absolute path"):
            ingest_recordings(tiny_cohort, "store", FAST, pipeline_args=args)
        assert not (tmp_path / "store").exists()
        rel = type(tiny_cohort[0])(
            **{**tiny_cohort[0].__dict__, "path": os.path.relpath(tiny_cohort[0].path)}
        )
        with pytest.raises(ConfigError, match="tiny__p1: relative path"):
            ingest_recordings([rel], str(tmp_path / "store"), FAST, pipeline_args=args)
        assert not (tmp_path / "store").exists()
        # the in-process runner shares this directory: relative paths are fine there
        assert ingest_recordings([rel], "store", FAST, pipeline_args=IN_PROCESS).n_ingested == 1
    finally:
        os.chdir(cwd)


def test_the_services_command_prints_its_options_and_stops_them_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.beam_services", str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("--beam-args '--runner=PortableRunner --job_endpoint=localhost:")
        services = _children(proc.pid)
        assert len(services) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not [pid for pid in services if _alive(pid)]
