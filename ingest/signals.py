"""Lazy, block-wise access to one recording's signal file, checked against its ``Recording``.

Every stage that needs samples (ingest's ``ReadBlocks``, serving's scorer, the tests) goes through
:class:`SignalReader`: it opens the file with MNE (``preload=False``), checks that the file is the
one the :class:`~ingest.recording.Recording` describes, and returns ``float32`` blocks in
**microvolts**, rows in the order asked for. The whole file is never loaded: a multi-hour
recording costs the memory of one block.

Formats are chosen by :attr:`Recording.fmt` (see :data:`FORMATS`); :func:`format_of` guesses it
from a file name. :func:`read_header` opens a file without a ``Recording`` (the cohort readers use
it to learn channel names, sampling rate and length, and to catch broken files at scan time).

Checks on open, each a :class:`~ingest.errors.RecordingError` naming the file, what is wrong and
the fix:

- the file is missing, is a git-annex / DataLad placeholder, or MNE cannot parse it;
- an EDF/BDF file is shorter than its header declares (a truncated copy). MNE itself only warns
  and silently shortens the recording ("Number of records from the header does not match the
  file size"), which would hide a broken transfer, so the size is checked here first;
- the ``Recording`` lists channels the file lacks (they are named), or the file holds channels
  the ``Recording`` does not list;
- the sampling rate differs (relative tolerance :data:`SFREQ_RTOL`) or the length differs by more
  than one sample.

Reading cost (measured on one core, 128 channels at 1024 Hz, a 10-minute 157 MB EDF; run
``tests/ingest/test_signals.py::test_block_read_cost`` for a small version): opening reads only
the header (~0.05 s); a 60 s block takes ~0.04 s from the page cache (~0.3 s on the first, cold
call), wherever it starts in the file; a 5 s block ~0.007 s. Peak memory is a few times one
block (float64 from MNE, then the float32 copy), ~170 MB for that 60 s block, never the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from ingest.errors import RecordingError
from ingest.recording import Recording

logger = logging.getLogger(__name__)

#: Formats MNE reads that :class:`SignalReader` opens, by ``Recording.fmt``.
FORMATS = {
    "edf": mne.io.read_raw_edf,
    "bdf": mne.io.read_raw_bdf,
    "gdf": mne.io.read_raw_gdf,
    "brainvision": mne.io.read_raw_brainvision,
    "fif": mne.io.read_raw_fif,
    "eeglab": mne.io.read_raw_eeglab,
}

#: File name endings -> format (the signal file itself, not its companions: a BrainVision
#: recording is opened by its ``.vhdr`` header, which names the ``.eeg`` / ``.vmrk`` files).
EXTENSIONS = {
    ".edf": "edf",
    ".bdf": "bdf",
    ".gdf": "gdf",
    ".vhdr": "brainvision",
    ".fif": "fif",
    ".fif.gz": "fif",
    ".set": "eeglab",
}

#: Relative tolerance between the sampling rate a ``Recording`` states and the file's.
SFREQ_RTOL = 1e-3

_TO_MICROVOLTS = 1e6  # MNE returns SI units (volts) for every data channel


def format_of(path: str | os.PathLike) -> str:
    """Signal format of a file from its name (``"edf"``, ``"brainvision"``...).

    Raises
    ------
    RecordingError
        If the extension is not one of :data:`EXTENSIONS`.
    """
    name = Path(path).name.lower()
    for ext, fmt in sorted(EXTENSIONS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return fmt
    raise RecordingError(
        str(path),
        f"unknown signal file type {Path(path).suffix!r}.",
        f"convert it to one of {sorted(EXTENSIONS)} (MNE can export EDF and BrainVision).",
    )


@dataclass(frozen=True)
class SignalHeader:
    """What a signal file's header says (no samples read).

    Parameters
    ----------
    path : str
        The signal file.
    fmt : str
        Its format (a key of :data:`FORMATS`).
    sfreq : float
        Sampling frequency in Hz.
    n_times : int
        Number of samples per channel.
    ch_names : tuple of str
        Channel names in file order (MNE renames duplicates ``X-0``, ``X-1``).
    ch_types : tuple of str
        Channel types as MNE reads them; EDF/BrainVision store none, so MNE says ``"eeg"``.
    line_freq : float or None
        Power-line frequency where the format stores it (FIF), else ``None``.
    annotations : tuple of (float, float, str)
        ``(onset_s, duration_s, description)`` of the file's annotations (EDF+ TAL, markers),
        onsets in seconds from the first sample.
    warnings : tuple of str
        What MNE warned about while opening the file.
    """

    path: str
    fmt: str
    sfreq: float
    n_times: int
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    line_freq: float | None = None
    annotations: tuple[tuple[float, float, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_times / self.sfreq


def _check_present(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        if ".git/annex" in target or "annex/objects" in target:
            raise RecordingError(
                str(path),
                "the signal file is a git-annex placeholder whose content was never fetched.",
                f"fetch it: `datalad get {path.name}` or `git annex get {path.name}` in the "
                "dataset.",
            )
        raise RecordingError(
            str(path), f"the signal file is a broken symlink (to {target!r}).", "restore it."
        )
    if not path.is_file():
        raise RecordingError(
            str(path),
            "the signal file does not exist.",
            "check the path (BIDS: the file named in scans.tsv must sit beside its sidecars).",
        )


def _edf_declared_size(path: Path, fmt: str) -> tuple[int, int, float] | None:
    """Return (bytes the EDF/BDF header declares, n_records, record_s); None if open-ended."""
    with path.open("rb") as f:
        fixed = f.read(256)
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            record_s = float(fixed[244:252].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as e:
            raise RecordingError(
                str(path),
                f"corrupt {fmt.upper()} header: the fixed 256-byte header does not hold the "
                f"numbers the format requires ({e}).",
                f"this is not a valid {fmt.upper()} file; re-export it from the recording system.",
            ) from e
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise RecordingError(
                str(path),
                f"corrupt {fmt.upper()} header: {n_signals} signals but a header of "
                f"{header_bytes} bytes (expected {256 * (n_signals + 1)}).",
                f"re-export the file; its header was damaged or it is not {fmt.upper()}.",
            )
        f.seek(256 + n_signals * 216)
        raw = f.read(n_signals * 8)
    try:
        samples = [int(raw[i * 8 : (i + 1) * 8].decode("ascii").strip()) for i in range(n_signals)]
    except (UnicodeDecodeError, ValueError) as e:
        raise RecordingError(
            str(path),
            f"corrupt {fmt.upper()} header: unreadable samples-per-record fields ({e}).",
            "re-export the file from the recording system.",
        ) from e
    if n_records < 0:  # -1: the recorder did not close the file; MNE infers from the size
        return None
    per_sample = 3 if fmt == "bdf" else 2
    return header_bytes + n_records * sum(samples) * per_sample, n_records, record_s


def _check_edf_size(path: Path, fmt: str) -> None:
    declared = _edf_declared_size(path, fmt)
    if declared is None:
        return
    expected, n_records, record_s = declared
    actual = path.stat().st_size
    if actual < expected:
        record_bytes = (expected - 256) / max(n_records, 1)
        have = max(0.0, (actual - (expected - n_records * record_bytes)) / record_bytes)
        raise RecordingError(
            str(path),
            f"truncated {fmt.upper()} file: the header declares {n_records} data records "
            f"({n_records * record_s:g} s, {expected} bytes) but the file has {actual} bytes "
            f"(~{have:.1f} records, ~{have * record_s:g} s).",
            "copy or download the file again (compare its size or checksum with the source); "
            "if the recording really stopped early, rewrite the header's record count "
            "(e.g. with edfio) so that it matches the data.",
        )


def _open_raw(path: str | os.PathLike, fmt: str) -> tuple[mne.io.BaseRaw, tuple[str, ...]]:
    """Open a signal file lazily; return the raw and what MNE warned about."""
    path = Path(path)
    if fmt not in FORMATS:
        raise RecordingError(
            str(path),
            f"unsupported signal format {fmt=}.",
            f"use one of {sorted(FORMATS)}, or convert the file to EDF.",
        )
    _check_present(path)
    if fmt in ("edf", "bdf"):
        _check_edf_size(path, fmt)
    kwargs = {"preload": False, "verbose": "warning"}
    # Record MNE's warnings (kept on the header) instead of letting them escape; note that
    # catch_warnings is process-global, so this is meant for opening files, not hot loops.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = FORMATS[fmt](path, **kwargs)
        except Exception as e:  # MNE raises many types on bad files; one clear error out
            raise RecordingError(
                str(path),
                f"MNE cannot read this {fmt} file: {type(e).__name__}: {e}",
                "check that the file is complete and really is "
                f"{fmt} (BrainVision needs its .vhdr, .vmrk and .eeg side by side).",
            ) from e
    messages = tuple(dict.fromkeys(str(w.message) for w in caught))
    return raw, messages


def _annotations(raw: mne.io.BaseRaw) -> tuple[tuple[float, float, str], ...]:
    ann = raw.annotations
    shift = raw.first_time if ann.orig_time is not None else 0.0
    return tuple(
        (float(o) - shift, float(d), str(desc))
        for o, d, desc in zip(ann.onset, ann.duration, ann.description, strict=True)
    )


def read_header(path: str | os.PathLike, fmt: str | None = None) -> SignalHeader:
    """Open a signal file's header (no samples) and check the file is whole.

    Parameters
    ----------
    path : str | os.PathLike
        The signal file (``.edf``, ``.vhdr``...).
    fmt : str | None
        Its format; guessed from the name by :func:`format_of` when ``None``.

    Returns
    -------
    header : SignalHeader

    Raises
    ------
    RecordingError
        If the file is missing, truncated, corrupt or of an unknown type.
    """
    fmt = fmt or format_of(path)
    raw, messages = _open_raw(path, fmt)
    line_freq = raw.info.get("line_freq")
    return SignalHeader(
        path=str(path),
        fmt=fmt,
        sfreq=float(raw.info["sfreq"]),
        n_times=int(raw.n_times),
        ch_names=tuple(raw.ch_names),
        ch_types=tuple(raw.get_channel_types()),
        line_freq=float(line_freq) if line_freq else None,
        annotations=_annotations(raw),
        warnings=messages,
    )


def check_header(rec: Recording, header: SignalHeader) -> None:
    """Raise a :class:`RecordingError` where ``rec`` and the file's header disagree.

    Parameters
    ----------
    rec : Recording
        What the cohort's metadata says.
    header : SignalHeader
        What the file says (:func:`read_header`).
    """
    file_names = set(header.ch_names)
    missing = [c for c in rec.channels if c not in file_names]
    if missing:
        shown = ", ".join(missing[:12]) + (" ..." if len(missing) > 12 else "")
        raise RecordingError(
            header.path,
            f"{rec.recording_id}: the metadata lists {len(missing)} channel(s) the signal file "
            f"lacks: {shown} (metadata {len(rec.channels)} channels, file "
            f"{len(header.ch_names)}).",
            "make channels.tsv (or the label sheet) name exactly the file's channels, or "
            "re-export the signal file with all channels.",
        )
    if len(header.ch_names) != len(rec.channels):
        extra = [c for c in header.ch_names if c not in set(rec.channels)]
        raise RecordingError(
            header.path,
            f"{rec.recording_id}: the metadata lists {len(rec.channels)} channels, the signal "
            f"file has {len(header.ch_names)}; not in the metadata: "
            f"{', '.join(extra[:12]) or '(duplicate names)'}.",
            "add the missing rows to channels.tsv (status=bad for non-brain channels) or "
            "remove those channels from the file.",
        )
    if not np.isclose(rec.sfreq, header.sfreq, rtol=SFREQ_RTOL, atol=0.0):
        raise RecordingError(
            header.path,
            f"{rec.recording_id}: sampling rate {rec.sfreq:g} Hz in the metadata, "
            f"{header.sfreq:g} Hz in the signal file.",
            "correct SamplingFrequency in the _ieeg.json sidecar (the file's header is what "
            "the samples follow).",
        )
    if abs(rec.n_times - header.n_times) > 1:
        raise RecordingError(
            header.path,
            f"{rec.recording_id}: {rec.n_times} samples ({rec.duration_s:g} s) in the metadata, "
            f"{header.n_times} ({header.duration_s:g} s) in the signal file.",
            "correct RecordingDuration in the _ieeg.json sidecar, or restore the full file.",
        )


class SignalReader:
    """Lazy block reader of one recording's signal file (MNE, ``preload=False``).

    Parameters
    ----------
    rec : Recording
        The recording; its ``path`` and ``fmt`` name the file, which is checked against it
        (:func:`check_header`) on open.

    Attributes
    ----------
    sfreq : float
        Sampling frequency of the file in Hz.
    n_times : int
        Samples per channel.
    ch_names : list of str
        Channel names in file order.

    Raises
    ------
    RecordingError
        If the file is missing, unreadable, truncated or disagrees with ``rec``.

    Examples
    --------
    >>> with SignalReader(rec) as reader:  # doctest: +SKIP
    ...     block = reader.read(0, 5 * int(reader.sfreq), rec.contacts)
    """

    def __init__(self, rec: Recording) -> None:
        self.recording = rec
        self._raw, messages = _open_raw(rec.path, rec.fmt)
        header = SignalHeader(
            path=rec.path,
            fmt=rec.fmt,
            sfreq=float(self._raw.info["sfreq"]),
            n_times=int(self._raw.n_times),
            ch_names=tuple(self._raw.ch_names),
            ch_types=tuple(self._raw.get_channel_types()),
            warnings=messages,
        )
        check_header(rec, header)
        self.sfreq: float = header.sfreq
        self.n_times: int = header.n_times
        self.ch_names: list[str] = list(header.ch_names)
        self._index = {name: i for i, name in enumerate(self.ch_names)}

    def read(self, start: int, stop: int, picks: Sequence[str]) -> np.ndarray:
        """Read samples ``[start, stop)`` of the channels ``picks``.

        Parameters
        ----------
        start, stop : int
            Sample indices; clipped to ``[0, n_times]`` (an empty block when ``stop <= start``).
        picks : sequence of str
            Channel names; the rows come back in this order.

        Returns
        -------
        data : ndarray, shape (n_picks, n_samples), dtype float32
            Microvolts. ``n_samples = min(stop, n_times) - max(start, 0)``.

        Raises
        ------
        ValueError
            If a pick is not a channel of the file.
        """
        if self._raw is None:
            raise ValueError(
                f"{self.recording.recording_id}: the reader is closed; open a new one."
            )
        unknown = [p for p in picks if p not in self._index]
        if unknown:
            raise ValueError(
                f"{self.recording.recording_id}: picks {unknown[:8]} are not channels of "
                f"{self.recording.path}; pick from reader.ch_names."
            )
        start = min(max(int(start), 0), self.n_times)
        stop = min(max(int(stop), start), self.n_times)
        if stop == start or not picks:
            return np.zeros((len(picks), stop - start), dtype=np.float32)
        idx = [self._index[p] for p in picks]
        data = self._raw.get_data(picks=idx, start=start, stop=stop)  # volts, rows as idx
        return (data * _TO_MICROVOLTS).astype(np.float32, copy=False)

    def close(self) -> None:
        """Release the file (safe to call twice)."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def __enter__(self) -> SignalReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._raw is None else f"{len(self.ch_names)} ch, {self.sfreq:g} Hz"
        return f"<SignalReader {self.recording.recording_id} ({state})>"


def open_signal(rec: Recording) -> SignalReader:
    """Open ``rec``'s signal file for block reads (see :class:`SignalReader`)."""
    return SignalReader(rec)
