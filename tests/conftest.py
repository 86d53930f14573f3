"""Fixtures shared by every test package."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real BIDS sidecars of ds004100 / ds003029 (a small subset, copied unchanged; CC0).
SIDECARS = REPO / "tests" / "data" / "bids-sidecars"
#: Every sidecar of both datasets (all but electrodes/coordsystem files), unchanged, xz-packed.
SIDECARS_ARCHIVE = REPO / "tests" / "data" / "bids-sidecars-all.tar.xz"
#: Options of a small, quick ``soz ingest`` in a test: 256 Hz, 1-s clips, 4 per block, 1 worker.
QUICK_INGEST = ["--sfreq", "256", "--clip-s", "1", "--block-clips", "4", "--l-freq", "1"]
QUICK_INGEST += ["--workers", "1", "--no-progress"]


def run_soz(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``soz ARGS`` (``python -m serving``) in a child process on this checkout, output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "serving", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


def _full_sidecars() -> Path:
    """A folder with ``bids-sidecars/`` (every run of both datasets) and ``label-sheets/``,
    unpacked once from the repository's archive into the temporary folder (keyed by its hash)."""
    if "SOZKIT_SHARED_DATA" in os.environ:
        return Path(os.environ["SOZKIT_SHARED_DATA"])
    digest = hashlib.sha256(SIDECARS_ARCHIVE.read_bytes()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"sozkit-test-sidecars-{digest}"
    if not (target / "bids-sidecars").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".sozkit-sidecars-", dir=target.parent))
        with tarfile.open(SIDECARS_ARCHIVE) as tar:
            tar.extractall(tmp, filter="data")
        shutil.copytree(REPO / "tests" / "data" / "label-sheets", tmp / "label-sheets")
        try:
            tmp.rename(target)
        except OSError:  # another session unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


#: The full sidecars: the repository's archive (or ``$SOZKIT_SHARED_DATA`` when set).
SHARED_DATA = _full_sidecars()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session: 2 CPUs, no dashboard, no auth token."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
