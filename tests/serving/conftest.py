"""Fixtures of the serving tests: a tiny training run (real checkpoints) and real EDF recordings.

The run directory is written through :func:`trainer.checkpoint.save_checkpoint` with untrained
SOZFormer weights (two folds, different seeds and thresholds), at small sizes so every test is
fast: a stored rate of 512 Hz, 4-clip sequences (20 s), 16 spectral bands.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mne
import numpy as np
import pytest
import torch

from ingest.config import IngestConfig
from ingest.recording import Recording
from models.registry import build_model
from models.site_norm import n_features
from models.svm import SOZSVM
from tests.ingest.signal_files import save_edf
from trainer.checkpoint import save_checkpoint
from trainer.svm_stage import feature_columns

SEQ_LEN = 4
FEATURES = {"n_bands": 16, "fmin": 1.0, "fmax": None}
INGEST = IngestConfig(sfreq=512.0, block_clips=4, line_freq=50.0, trans_bandwidth=1.0, l_freq=1.0)
CONTACTS = ("LA1", "LA2", "LA3", "LA4", "RH1", "RH2", "RH3")
ALL_CHANNELS = (*CONTACTS, "BAD1", "EKG")
SOZ = frozenset({"LA1", "LA2"})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(cfg, name: str) -> Iterator:
    """The Serve app of ``cfg`` running as ``name``; an HTTP client of it; shut down after."""
    import httpx
    from ray import serve

    from serving.app import start

    start(cfg, name=name)
    client = httpx.Client(base_url=f"http://127.0.0.1:{cfg.port}", timeout=120)
    try:
        yield client
    finally:
        client.close()
        serve.shutdown()


@contextmanager
def soz_process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``python -m serving ARGS`` (the ``soz`` command) running, its output appended to ``log``;
    killed on the way out if it still runs."""
    from tests.conftest import REPO

    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", *args], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    """Ctrl-C (SIGINT) ``proc``, which must then exit 0; the text of its log."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    return log.read_text()


def write_edf(
    path: Path, *, seconds: float, sfreq: float = 1024.0, seed: int = 0, channels=ALL_CHANNELS
) -> Path:
    """A real EDF: pink-ish noise, a 12 Hz burst on the SOZ contacts, 50 Hz line noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    t = np.arange(n) / sfreq
    data = np.cumsum(rng.normal(0, 1, (len(channels), n)), axis=1)
    data -= np.linspace(data[:, :1], data[:, -1:], n, axis=1)[..., 0]
    data = 5 * data / data.std(axis=1, keepdims=True) + 3 * np.sin(2 * np.pi * 50 * t)
    for i, ch in enumerate(channels):
        if ch in SOZ:
            data[i] += 20 * np.sin(2 * np.pi * 12 * t)
    save_edf(path, list(channels), data, sfreq)
    return path


def make_recording(path: Path, *, rid: str = "test__p1__ictal", subject: str = "p1") -> Recording:
    """A hand-made :class:`Recording` of an EDF written by :func:`write_edf`."""
    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    return Recording(
        recording_id=rid,
        cohort="test",
        subject=subject,
        path=str(path),
        sfreq=float(raw.info["sfreq"]),
        n_times=int(raw.n_times),
        channels=tuple(raw.ch_names),
        ch_types=tuple("ecg" if c == "EKG" else "seeg" for c in raw.ch_names),
        bad=frozenset({"BAD1"}),
        soz=SOZ,
        task="ictal",
        line_freq=50.0,
    )


def make_run_dir(
    root: Path, *, folds=(0, 1), thresholds=(0.45, 0.55), svm: bool = True, features=FEATURES
) -> Path:
    """A training run as ``soz train`` writes it (:mod:`trainer.rundir`): untrained SOZFormer
    checkpoints (of ``features``) and fitted SVMs, one per fold, each fold's ``metrics.json``
    written last."""
    run_dir = root / "run"
    n_feats = n_features(INGEST.clip_samples, INGEST.sfreq, features)
    for fold, thr in zip(folds, thresholds, strict=True):
        torch.manual_seed(fold)
        net = build_model(
            "sozformer", n_feats=n_feats, seq_len=SEQ_LEN, d_model=16, n_heads=2,
            n_temporal_layers=1, n_spatial_layers=1, dim_feedforward=32, dropout=0.0,
        )  # fmt: skip
        save_checkpoint(
            run_dir / "sozformer" / f"fold_{fold}" / "checkpoint.pt", net,
            model_name="sozformer", threshold=thr, feature_config=features,
            sfreq=INGEST.sfreq, clip_samples=INGEST.clip_samples,
            ingest_config=INGEST.to_dict(), fold=fold,
        )  # fmt: skip
        d = run_dir / "sozformer" / f"fold_{fold}"
        (d / "threshold.json").write_text(json.dumps({"threshold": thr}))
        (d / "metrics.json").write_text(json.dumps({"threshold": thr}))  # finished marker, last
    (run_dir / "card.json").write_text(json.dumps({"config": {"eval_stride": None}}))
    if svm:
        add_svm(run_dir, folds=folds, thresholds=thresholds)
    return run_dir


def add_svm(run_dir: Path, *, folds=(0, 1), thresholds=(0.45, 0.55)) -> None:
    """Fitted SVMs (on synthetic channel features) as ``soz train`` writes them."""
    for fold, thr in zip(folds, thresholds, strict=True):
        rng = np.random.default_rng(fold)
        names = feature_columns(INGEST.sfreq)  # the bands a 512-Hz store holds
        X = rng.normal(size=(60, len(names)))
        y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0.8).astype(int)
        svm = SOZSVM(seed=fold).fit(X, y, groups=np.arange(60) % 6, feature_names=names)
        d = run_dir / "svm" / f"fold_{fold}"
        d.mkdir(parents=True, exist_ok=True)
        svm.save(d / "svm.pkl")
        (d / "threshold.json").write_text(json.dumps({"threshold": thr}))
        (d / "metrics.json").write_text(json.dumps({"threshold": thr}))  # finished marker, last


@pytest.fixture(scope="session")
def serving_data(tmp_path_factory) -> dict:
    """A run directory and recordings: 60 s (12 clips = 3 sequences), 10 s (too short)."""
    root = tmp_path_factory.mktemp("serving")
    data = root / "data"
    data.mkdir()
    long_edf = write_edf(data / "p1_ictal.edf", seconds=60.0)
    short_edf = write_edf(data / "short.edf", seconds=10.0, seed=1)
    return {
        "root": root,
        "data": data,
        "run_dir": make_run_dir(root),
        "long_edf": long_edf,
        "short_edf": short_edf,
        "long_rec": make_recording(long_edf),
    }


@pytest.fixture(scope="session")
def ingested(tmp_path_factory) -> dict:
    """The long recording ingested by the real Beam pipeline with the run's ingest config."""
    from ingest.driver import run_ingest

    folder = tmp_path_factory.mktemp("ingest") / "cohort"
    folder.mkdir()
    write_edf(folder / "p1_ictal.edf", seconds=60.0)  # same bytes as serving_data's long_edf
    store = tmp_path_factory.mktemp("store") / "store.zarr"
    report = run_ingest([str(folder)], str(store), INGEST)
    assert report.n_failed == 0 and report.n_ingested == 1, report.failures
    return {"store": str(store), "folder": folder}
