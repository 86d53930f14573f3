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
    save_edf(path, ch_names, data, sfreq, annotations=annotations)
    return data


def save_edf(
    path: str | Path,
    ch_names: list[str],
    data: np.ndarray,
    sfreq: float,
    *,
    annotations: list[tuple[float, float, str]] | None = None,
) -> None:
    """Write microvolt ``data`` (n_chans, n_times) as an SEEG EDF file (mne.export / edfio),
    with ``annotations`` as (onset_s, duration_s, description)."""
    info = mne.create_info(list(ch_names), sfreq, "seeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
    if annotations:
        onsets, durations, descs = zip(*annotations, strict=True)
        raw.set_annotations(mne.Annotations(onsets, durations, descs))
    mne.export.export_raw(str(path), raw, fmt="edf", overwrite=True, verbose="error")


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


def build_bids_copy(
    src: str | Path,
    dst: str | Path,
    subjects: list[str] | None = None,
    *,
    seconds: float = 4.0,
    rescale_events: bool = True,
) -> Path:
    """Copy real BIDS sidecars to ``dst`` and write a short signal file for every run.

    Each run gets an EDF (``_ieeg.edf``, ds004100) or BrainVision (``_ieeg.vhdr``, ds003029)
    file named as in ``scans.tsv``, with exactly the channels of its ``channels.tsv`` at its
    ``SamplingFrequency``, ``seconds`` long. With ``rescale_events`` the run's
    ``RecordingDuration`` is set to ``seconds`` and event onsets are scaled into the short file
    (so seizures keep their relative place); otherwise the sidecars are left unchanged.
    """
    import json
    import shutil

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and item.name != "annexed_files.tsv":
            shutil.copy2(item, dst / item.name)
    for sub in sorted(src.glob("sub-*")):
        if subjects is None or sub.name[4:] in subjects:
            shutil.copytree(sub, dst / sub.name, dirs_exist_ok=True)
    for meta_path in sorted(dst.glob("sub-*/**/ieeg/*_ieeg.json")):
        base = meta_path.name[: -len("_ieeg.json")]
        meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        sfreq = float(meta["SamplingFrequency"])
        lines = meta_path.with_name(f"{base}_channels.tsv").read_text(encoding="utf-8-sig")
        names = [line.split("\t")[0] for line in lines.splitlines()[1:] if line.strip()]
        scans = "".join(
            p.read_text(encoding="utf-8-sig") for p in meta_path.parents[1].glob("*_scans.tsv")
        )
        if f"{base}_ieeg.vhdr" in scans:
            write_brainvision(
                meta_path.with_name(f"{base}_ieeg.vhdr"), names, sfreq=sfreq, seconds=seconds
            )
        else:
            write_edf(meta_path.with_name(f"{base}_ieeg.edf"), names, sfreq=sfreq, seconds=seconds)
        if not rescale_events:
            continue
        factor = seconds / float(meta["RecordingDuration"])
        meta["RecordingDuration"] = int(round(seconds * sfreq)) / sfreq
        meta_path.write_text(json.dumps(meta, indent=4), encoding="utf-8")
        events = meta_path.with_name(f"{base}_events.tsv")
        if events.is_file():
            rows = events.read_text(encoding="utf-8-sig").splitlines()
            out = [rows[0]]
            for row in rows[1:]:
                cells = row.split("\t")
                cells[0] = f"{float(cells[0]) * factor:.6f}"
                out.append("\t".join(cells))
            events.write_text("\ufeff" + "\n".join(out) + "\n", encoding="utf-8")
    return dst
