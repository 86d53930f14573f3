"""Fixtures of the ingest tests: tiny real EDF / BrainVision recordings and their ``Recording``s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.config import IngestConfig
from ingest.recording import Recording, SeizureEvent, make_recording_id
from ingest.signals import read_header
from tests.ingest.signal_files import save_edf

#: A small, fast config: 250 Hz stored, 2-clip blocks, 1 Hz transitions (short filters).
FAST = IngestConfig(sfreq=250.0, block_clips=2, trans_bandwidth=1.0, l_freq=1.0, num_workers=1)


def signal(n_chans: int, n_times: int, sfreq: float, *, seed: int = 0) -> np.ndarray:
    """SEEG-like test signal in microvolts, shape (n_chans, n_times).

    Pink-ish noise (integrated white noise, high-passed by differencing the mean) scaled per
    channel by ``10 * (i + 1)`` so channel scales differ, a 50-Hz line component and a DC offset.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    white = rng.normal(0.0, 1.0, (n_chans, n_times))
    walk = np.cumsum(white, axis=1) * 0.1
    walk -= np.linspace(walk[:, :1], walk[:, -1:], n_times, axis=1)[..., 0]
    gains = 10.0 * (np.arange(n_chans)[:, None] + 1)
    line = 30.0 * np.sin(2 * np.pi * 50.0 * t)
    return gains * (walk + white) + line[None, :] + 200.0


def make_recording(
    folder: Path,
    name: str,
    *,
    n_chans: int = 4,
    sfreq: float = 256.0,
    seconds: float = 23.0,
    ch_types: tuple[str, ...] | None = None,
    bad: tuple[str, ...] = (),
    soz: tuple[str, ...] | None = ("A1",),
    seizures: tuple[SeizureEvent, ...] = (),
    line_freq: float | None = 50.0,
    cohort: str = "tiny",
    seed: int = 0,
) -> Recording:
    """Write a tiny EDF recording and return its ``Recording`` (metadata from the file header)."""
    shafts = ["A", "B", "C", "D"]
    names = [f"{shafts[i % 4]}{i // 4 + 1}" for i in range(n_chans)]
    path = Path(folder) / f"{name}.edf"
    save_edf(path, names, signal(n_chans, int(round(seconds * sfreq)), sfreq, seed=seed), sfreq)
    header = read_header(path)
    return Recording.from_header(
        header,
        make_recording_id(cohort, name),
        cohort,
        name,
        ch_types=ch_types or ("seeg",) * n_chans,
        bad=frozenset(bad),
        soz=None if soz is None else frozenset(soz),
        seizures=seizures,
        line_freq=line_freq,
        task="ictal" if seizures else "interictal",
    )


class ArrayReader:
    """In-memory reader over an array (unit tests of the block arithmetic, no file)."""

    def __init__(self, data: np.ndarray, names: list[str]) -> None:
        self.data = np.asarray(data, dtype=np.float32)
        self.index = {n: i for i, n in enumerate(names)}

    def read(self, start, stop, picks):
        start, stop = max(0, start), min(self.data.shape[1], stop)
        return self.data[[self.index[p] for p in picks], start:stop]


@pytest.fixture
def fast_cfg() -> IngestConfig:
    return FAST


@pytest.fixture
def tiny_cohort(tmp_path) -> list[Recording]:
    """Three recordings: two sources rates, a seizure, a bad contact, an unlabelled one."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    return [
        make_recording(
            folder,
            "p1",
            seconds=23.0,
            bad=("B1",),
            seizures=(SeizureEvent(7.0, 12.5),),
            soz=("A1", "C1"),
        ),
        make_recording(folder, "p2", sfreq=200.0, seconds=31.0, n_chans=5, soz=(), seed=1),
        make_recording(folder, "p3", sfreq=512.0, seconds=11.0, soz=None, seed=2),
    ]
