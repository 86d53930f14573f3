"""Bulk scoring on a real local Ray: Parquet rows, failures recorded, re-runs skip finished work."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from ingest.errors import ConfigError
from serving.bulk import collect_work, run_bulk
from serving.config import BulkConfig
from serving.results import FAILURE_COLUMNS, RESULT_COLUMNS

from .conftest import CONTACTS, write_edf


@pytest.fixture(scope="module")
def archive(tmp_path_factory, serving_data):
    """A folder of two good EDFs (one too short for SOZFormer) and a truncated one."""
    folder = tmp_path_factory.mktemp("archive") / "hospital"
    folder.mkdir()
    write_edf(folder / "p1_night.edf", seconds=45.0, seed=3)
    write_edf(folder / "p2_day.edf", seconds=30.0, seed=4)
    write_edf(folder / "p3_tiny.edf", seconds=12.0, seed=5)  # < 4 clips: too short
    broken = folder / "p4_broken.edf"
    shutil.copy(serving_data["long_edf"], broken)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a truncated copy
    return folder


def _cfg(serving_data, archive, out, **kw) -> BulkConfig:
    kw = {"num_workers": 2, "line_freq": 50.0, **kw}
    return BulkConfig(
        run_dir=str(serving_data["run_dir"]), inputs=(str(archive),), out=str(out), **kw
    )


def test_collect_work_reports_unreadable_files(archive):
    items, failures = collect_work([str(archive)], line_freq=50.0)
    assert sorted(i.recording_id.split("__")[-1] for i in items) == [
        "p1_night",
        "p2_day",
        "p3_tiny",
    ]
    assert len(failures) == 1 and "p4_broken" in failures[0]["source_path"]


def test_bulk_scores_records_failures_and_resumes(ray_local, tmp_path, serving_data, archive):
    out = tmp_path / "results.parquet"
    seen = []
    report = run_bulk(_cfg(serving_data, archive, out), progress=lambda d, t: seen.append((d, t)))
    # p3_tiny is too short for SOZFormer (4 clips) but not for the SVM (1 clip)
    assert report.n_recordings == 3 and report.n_scored == 3 and report.n_skipped == 0
    assert seen[-1] == (3, 3)

    res = pd.read_parquet(out)
    assert tuple(res.columns) == RESULT_COLUMNS
    # (2 recordings x 2 models + 1 x svm) x 8 contacts (the folder reader keeps BAD1: no
    # sidecar marks it bad)
    n_contacts = len(CONTACTS) + 1
    assert len(res) == 5 * n_contacts
    assert set(res["model"]) == {"sozformer", "svm"}
    assert res.groupby(["recording_id", "model"]).size().eq(n_contacts).all()
    assert res["probability"].between(0, 1).all()
    assert (res["soz_call"] == (res["probability"] >= res["threshold"])).all()
    assert res["soz_label"].isna().all()  # no label sheet: unlabelled
    assert res["fold"].isna().all() and set(res["folds"]) == {"0,1"}
    assert "EKG" not in set(res["channel"])

    fails = pd.read_parquet(report.failures_path)
    assert tuple(fails.columns) == FAILURE_COLUMNS
    reasons = dict(
        zip(fails["source_path"].str.rsplit("/", n=1).str[-1], fails["reason"], strict=True)
    )
    assert set(reasons) == {"p3_tiny.edf", "p4_broken.edf"}
    assert fails.loc[fails["source_path"].str.endswith("p3_tiny.edf"), "model"].item() == (
        "sozformer"
    )
    assert "fewer than the 4 clips" in reasons["p3_tiny.edf"]
    assert "shorter" in reasons["p4_broken.edf"] or "truncated" in reasons["p4_broken.edf"]

    again = run_bulk(_cfg(serving_data, archive, out))
    assert again.n_skipped == 2 and again.n_scored == 0  # p3_tiny's sozformer is retried
    after = pd.read_parquet(out)
    pd.testing.assert_frame_equal(after, res)


def test_bulk_one_model_then_all_appends(ray_local, tmp_path, serving_data, archive):
    out = tmp_path / "svm_first.parquet"
    first = run_bulk(_cfg(serving_data, archive, out, model="svm", num_workers=1))
    assert first.n_scored == 3  # the SVM needs one clip: the 12-s recording is scored too
    assert set(pd.read_parquet(out)["model"]) == {"svm"}
    both = run_bulk(_cfg(serving_data, archive, out, model="all", num_workers=1))
    assert both.n_scored == 2 and both.n_skipped == 0  # sozformer was still missing
    res = pd.read_parquet(out)
    assert res.groupby("model").size().to_dict() == {"sozformer": 16, "svm": 24}
    fails = pd.read_parquet(both.failures_path)
    assert set(fails["model"].dropna()) == {"sozformer"}
    svm_before = pd.read_parquet(out).query("model == 'svm'")["probability"].to_numpy()
    assert np.all(np.isfinite(svm_before))


def test_bulk_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="must be a .parquet"):
        BulkConfig(run_dir="r", inputs=("x",), out=str(tmp_path / "out.csv"))
    with pytest.raises(ConfigError, match="inputs is empty"):
        BulkConfig(run_dir="r", inputs=(), out="o.parquet")
    with pytest.raises(ConfigError, match="num_workers=0"):
        BulkConfig(run_dir="r", inputs=("x",), out="o.parquet", num_workers=0)
    assert BulkConfig(run_dir="r", inputs=("x",), out="a/o.parquet").failures_path == (
        "a/o.failures.parquet"
    )


def test_soz_score_cli(ray_local, tmp_path, serving_data, capsys):
    from serving.cli import main

    out = tmp_path / "cli.parquet"
    argv = [
        "score", str(serving_data["run_dir"]), str(serving_data["long_edf"]), "--out", str(out),
        "--model", "svm", "--workers", "1", "--line-freq", "50", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "1 recording(s) scored" in capsys.readouterr().out
    assert set(pd.read_parquet(out)["model"]) == {"svm"}


@pytest.mark.slow
def test_soz_score_killed_mid_way_resumes_without_duplicates(tmp_path, serving_data):
    """A real `soz score` process group, kill -9 once its results file first appears, re-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(6):
        write_edf(folder / f"p{i}_night.edf", seconds=30.0, seed=20 + i)
    out = tmp_path / "results.parquet"
    argv = [
        sys.executable, "-m", "serving", "score", str(serving_data["run_dir"]), str(folder),
        "--out", str(out), "--workers", "1", "--flush-every", "1", "--line-freq", "50",
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while not out.exists():  # the first flush: one recording's rows are on disk
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "soz score wrote no results in 300 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-way
    finally:
        proc.wait(timeout=60)
    first = pd.read_parquet(out)  # the atomic rewrite leaves a whole table, never a torn one
    done_first = set(first["recording_id"])
    assert 1 <= len(done_first) < 6, done_first

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{6 - len(done_first)} recording(s) scored, {len(done_first)} already done" in (
        again.stdout
    )
    res = pd.read_parquet(out)
    assert not res.duplicated(["recording_id", "model", "channel"]).any()
    assert res["recording_id"].nunique() == 6
    n_contacts = len(CONTACTS) + 1  # the folder reader keeps BAD1
    assert res.groupby(["recording_id", "model"]).size().eq(n_contacts).all()
    assert set(res["model"]) == {"sozformer", "svm"}
    # what the killed run had finished is kept as it was
    kept = res[res["recording_id"].isin(done_first)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first.reset_index(drop=True))


def test_bulk_scores_the_baseline_into_the_same_schema(ray_local, tmp_path, serving_data, archive):
    import json

    from trainer.rundir import RunDir

    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    for fold in (0, 1):
        d = RunDir(run_dir).fold_dir("baseline", fold)
        d.mkdir(parents=True)
        (d / "threshold.json").write_text(json.dumps({"threshold": 0.5}))
        (d / "metrics.json").write_text(json.dumps({"threshold": 0.5}))
    out = tmp_path / "baseline.parquet"
    cfg = BulkConfig(run_dir=str(run_dir), inputs=(str(archive),), out=str(out), model="baseline",
                     num_workers=1, line_freq=50.0)  # fmt: skip
    report = run_bulk(cfg)
    assert report.n_scored == 3  # the baseline needs one clip: p3_tiny is scored too
    res = pd.read_parquet(out)
    assert tuple(res.columns) == RESULT_COLUMNS and set(res["model"]) == {"baseline"}
    assert res["probability"].between(0, 1).all() and set(res["folds"]) == {"0,1"}
    with pytest.raises(Exception, match="no servable model 'baseline'"):
        run_bulk(_cfg(serving_data, archive, tmp_path / "x.parquet", model="baseline"))
