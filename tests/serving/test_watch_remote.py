"""``soz watch`` on landing URLs: a ``memory://`` folder (fsspec, mirrored into a local folder
beside the results once its files have settled) and a ``file://`` one, with a real in-process
watcher (real Beam ingest, real Ray scoring); a restarted watcher takes nothing twice."""

from __future__ import annotations

import os
import time

import fsspec
import pandas as pd
import pytest

from ingest.errors import ConfigError
from ingest.landing import RemoteLanding
from ingest.store import ClipStore
from serving.watch import WatchConfig, Watcher
from tests.serving.conftest import make_run_dir, write_edf


def test_remote_landing_copies_a_file_once_it_has_settled(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/settle/a.edf", b"x" * 100)
    fs.pipe("/settle/.b.edf.part", b"y")  # a partial upload: never copied
    remote = RemoteLanding("memory://settle", tmp_path / "mirror")
    now = time.time()
    remote.sync(now=now, stable_s=5.0)
    assert remote.settling == 1 and not (tmp_path / "mirror" / "a.edf").exists()
    with fs.open("/settle/a.edf", "ab") as f:  # still growing: the clock starts again
        f.write(b"x" * 50)
    remote.sync(now=now + 4.0, stable_s=5.0)
    remote.sync(now=now + 8.0, stable_s=5.0)
    assert remote.settling == 1 and not (tmp_path / "mirror" / "a.edf").exists()
    remote.sync(now=now + 9.5, stable_s=5.0)
    copy = tmp_path / "mirror" / "a.edf"
    assert remote.settling == 0 and copy.read_bytes() == b"x" * 150
    assert sorted(p.name for p in (tmp_path / "mirror").iterdir()) == ["a.edf"]
    st = copy.stat()
    again = RemoteLanding("memory://settle", tmp_path / "mirror")  # a restarted watcher
    again.sync(now=now + 20.0, stable_s=5.0)
    again.sync(now=now + 30.0, stable_s=5.0)
    assert copy.stat().st_mtime_ns == st.st_mtime_ns  # same copy: same fingerprint
    fs.rm("/settle", recursive=True)


def test_watch_config_checks_landing_urls(tmp_path):
    common = {"store": "s", "run_dir": "r", "results": str(tmp_path / "r.parquet"), "reports": "p"}
    with pytest.raises(ConfigError, match="not a folder"):
        WatchConfig(landings=("memory://nowhere-at-all",), **common)
    with pytest.raises(ConfigError, match="does not exist"):
        WatchConfig(landings=(f"file://{tmp_path}/nope",), **common)
    with pytest.raises(ConfigError, match="s3fs"):
        WatchConfig(landings=("s3://bucket/in",), **common)
    cfg = WatchConfig(landings=(f"file://{tmp_path}",), **common)
    assert cfg.mirror("gs://b/exports/emu") == tmp_path / "r.landing" / "gs" / "b/exports/emu"


def test_watch_memory_and_file_urls_once_each_across_a_restart(tmp_path, ray_local):
    run_dir = make_run_dir(tmp_path, svm=False)
    fs = fsspec.filesystem("memory")
    fs.pipe("/emu/night1.edf", write_edf(tmp_path / "n1.edf", seconds=30.0).read_bytes())
    local = tmp_path / "ward"
    local.mkdir()
    write_edf(local / "day1.edf", seconds=30.0, seed=2)
    old = time.time() - 60
    os.utime(local / "day1.edf", (old, old))
    results = tmp_path / "res.parquet"
    cfg = WatchConfig(
        landings=("memory://emu", f"file://{local}"), store=str(tmp_path / "store"),
        run_dir=str(run_dir), results=str(results), reports=str(tmp_path / "reports"),
        stable_s=1.0, poll_s=0.3, once=True,
    )  # fmt: skip
    lines: list[str] = []
    for expected in (2, 0):  # the second watcher: a restart, nothing new
        watcher = Watcher(cfg, say=lines.append)
        watcher.start()
        try:
            summary = watcher.run()
        finally:
            watcher.close()
        assert (summary.reported, summary.failed, summary.superseded) == (expected, 0, 0), lines
    assert sorted(ClipStore.open(cfg.store).complete_ids()) == ["emu__night1", "ward__day1"]
    res = pd.read_parquet(results)
    assert set(res["recording_id"]) == {"emu__night1", "ward__day1"}
    assert res.groupby(["recording_id", "channel"]).size().max() == 1
    assert (tmp_path / "res.landing" / "memory" / "emu" / "night1.edf").is_file()
    fs.rm("/emu", recursive=True)
