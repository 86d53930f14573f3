"""What a user sees: `soz ingest` and `soz train` (real subprocesses, real Beam workers, a real
local Ray) print their own progress and results; engine logs (Beam, Ray, Ray Train) only with -v."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.ingest.signal_files import write_edf
from tests.trainer.conftest import TINY_HPARAMS, build_store

#: Lines only an engine prints (Beam and its workers, Ray, Ray Train's controller and workers).
ENGINE = re.compile(
    r"apitools|semi_persistent|GCSFileSystem|Checkpoint successfully|Reporting training result"
    r"|Failed to query Ray|\(\w+ pid=\d+\)|apache_beam|\bray[._:]|local Ray instance|\bBeam\b",
    re.IGNORECASE,
)
#: The progress line of `soz train` (one per finished fold).
TRAIN_PROGRESS = re.compile(r"^\[\s*\d+ s\] \d+/\d+ sozformer fold \d: test ROC-AUC \S+$")


def _soz(*args, timeout=600):
    # Ray Train's controller polls its workers every 0.2 s instead of 2 s (a faster test).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "serving", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _engine_lines(text):
    return [line for line in text.splitlines() if ENGINE.search(line)]


@pytest.fixture(scope="module")
def edf_cohort(tmp_path_factory):
    """Two subjects' EDF files and a label sheet (a folder source, as a clinic exports it)."""
    root = tmp_path_factory.mktemp("terminal") / "cohort"
    root.mkdir()
    names = ["LA1", "LA2", "LA3", "RH1", "RH2", "RH3"]
    for i, subject in enumerate(("S01", "S02")):
        write_edf(root / f"{subject}_night1.edf", names, sfreq=250.0, seconds=12.0, seed=i)
    sheet = root.parent / "labels.csv"
    sheet.write_text("subject,recording,channel,soz\nS01,,LA1,1\nS02,,RH2,1\n")
    return root, sheet


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "-v"])
def test_ingest_terminal_shows_engine_logs_only_with_v(edf_cohort, tmp_path, verbose):
    root, sheet = edf_cohort
    args = [
        "ingest", root, "--label-sheet", sheet, "--out", tmp_path / "store.zarr",
        "--sfreq", 250, "--clip-s", 2, "--block-clips", 2, "--line-freq", 50, "--workers", 2,
        "--no-progress",
    ]  # fmt: skip
    proc = _soz(*(["-v"] if verbose else []), *args)
    assert "2 recordings ingested" in proc.stdout, proc.stdout
    if verbose:
        # Beam's own warnings, from the driver and relayed from the two worker processes.
        assert _engine_lines(proc.stderr), proc.stderr
        assert "semi_persistent" in proc.stderr
    else:
        assert _engine_lines(proc.stdout + proc.stderr) == []
        assert proc.stderr == ""  # --no-progress: nothing else to say on a clean cohort


@pytest.mark.parametrize(
    "verbose", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["quiet", "-v"]
)
def test_train_terminal_shows_engine_logs_only_with_v(tmp_path_factory, verbose):
    store = build_store(tmp_path_factory.mktemp("terminal") / "store.zarr", n_ictal_clips=8)
    out = tmp_path_factory.mktemp("terminal") / "run"
    hparams = {"sozformer": TINY_HPARAMS["sozformer"]}
    args = [
        "train", store, "--model", "sozformer", "--out", out, "--folds", 2, "--epochs", 2,
        "--seqs-per-recording", 2, "--n-bands", 8, "--hparams", json.dumps(hparams),
    ]  # fmt: skip
    proc = _soz(*(["-v"] if verbose else []), *args)
    assert "sozformer  channel ROC-AUC" in proc.stdout and "wrote" in proc.stdout, proc.stdout
    if verbose:
        assert any("pid=" in line for line in _engine_lines(proc.stderr)), proc.stderr
    else:
        assert _engine_lines(proc.stdout + proc.stderr) == []
        lines = proc.stderr.splitlines()
        assert len(lines) == 2 and all(TRAIN_PROGRESS.match(line) for line in lines), lines
