"""Small real signal files for the reader tests: EDF (mne.export / edfio) and BrainVision.

BrainVision is written by hand here (the format is a text header, a text marker file and
multiplexed float32 samples) because pybv is not part of the stack.
"""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np


def make_data(n_chans: int, n_times: int, sfreq: float, seed: int = 0) -> np.ndarray:
    """Signals in microvolts, shape (n_chans, n_times): each row identifiable by its offset.

    Row ``i`` is ``10 * i`` microvolts plus a 7 Hz sine and a little noise, so a test can tell
    rows apart after a 16-bit EDF round trip.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    rows = 10.0 * np.arange(n_chans)[:, None] + 20.0 * np.sin(2 * np.pi * 7 * t)[None, :]
    return rows + rng.normal(0, 1.0, (n_chans, n_times))


def write_edf(
    path: str | Path,
    ch_names: list[str],
    *,
    sfreq: float = 256.0,
    seconds: float = 4.0,
    seed: int = 0,
    annotations: list[tuple[float, float, str]] | None = None,
) -> np.ndarray:
    """Write an EDF file; return the data written, microvolts, shape (n_chans, n_times)."""
    n_times = int(round(seconds * sfreq))
    data = make_data(len(ch_names), n_times, sfreq, seed)
    info = mne.create_info(list(ch_names), sfreq, "seeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
    if annotations:
        onsets, durations, descs = zip(*annotations, strict=True)
        raw.set_annotations(mne.Annotations(onsets, durations, descs))
    mne.export.export_raw(str(path), raw, fmt="edf", overwrite=True, verbose="error")
    return data


def write_brainvision(
    path: str | Path,
    ch_names: list[str],
    *,
    sfreq: float = 250.0,
    seconds: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """Write a BrainVision triplet (``path`` is the ``.vhdr``); return the data in microvolts."""
    path = Path(path)
    n_times = int(round(seconds * sfreq))
    data = make_data(len(ch_names), n_times, sfreq, seed)
    eeg, vmrk = path.with_suffix(".eeg"), path.with_suffix(".vmrk")
    data.T.astype("<f4").tofile(eeg)  # multiplexed: one sample of every channel after another
    channels = "\n".join(f"Ch{i + 1}={name},,1,µV" for i, name in enumerate(ch_names))
    path.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n"
        "[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={eeg.name}\nMarkerFile={vmrk.name}\n"
        "DataFormat=BINARY\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(ch_names)}\nSamplingInterval={1e6 / sfreq!r}\n"
        "[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n"
        f"[Channel Infos]\n{channels}\n",
        encoding="utf-8",
    )
    vmrk.write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={eeg.name}\n"
        "[Marker Infos]\nMk1=New Segment,,1,1,0\n",
        encoding="utf-8",
    )
    return data
