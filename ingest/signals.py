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

16-bit EDF (the common SEEG export) is decoded directly from its data records (:class:`~ingest.edf_records.EdfLayout`,
with the calibration MNE parsed, checked against MNE's own decoding of the first and last
records when the file is opened; any disagreement, BDF and other formats go through MNE's
``get_data``). Only the records' bytes of the channels asked for are read, into float32: no
float64 copy of the block, and a subset of channels costs only that subset
(:attr:`SignalReader.channel_subsets`), which lets block processing read channel groups one at a
time. Reading cost (one core, 128 channels at 1024 Hz, page cache warm; ``benchmarks/ingest.py``):
a 5-minute block takes ~0.05-0.08 s CPU directly against ~0.2-0.35 s through MNE's float64
blocks; opening reads the header only (~0.05 s). Memory: the block's float32 samples plus one
int16 copy of the records read, never the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from ingest.edf_header import check_edf_size, degenerate_channels
from ingest.edf_records import EdfLayout
from ingest.errors import RecordingError, name_list
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

#: Probe windows read when a header is opened, to find constant channels, and their length (s).
PROBE_WINDOWS = 3
PROBE_S = 2.0

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
    degenerate : tuple of (str, str)
        ``(channel, reason)`` of channels whose header makes their samples meaningless
        (EDF/BDF: digital minimum >= maximum, physical minimum = maximum, unreadable ranges;
        see :func:`ingest.edf_header.degenerate_channels`).
    constant : tuple of str
        Channels holding one constant value in each of the :data:`PROBE_WINDOWS` windows of
        :data:`PROBE_S` seconds (start, middle, end) read when the header was opened: a
        disconnected or zeroed channel. See :meth:`dead_channels`; the readers mark both bad.
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
    degenerate: tuple[tuple[str, str], ...] = ()
    constant: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_times / self.sfreq

    def dead_channels(self, contacts: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
        """Which of ``contacts`` carry no signal by the header or the probe, and why.

        Parameters
        ----------
        contacts : iterable of str
            The channels that would be kept (intracranial, not marked bad).

        Returns
        -------
        dead : frozenset of str
            Contacts with a degenerate header (:attr:`degenerate`) or one constant value in
            every probe window (:attr:`constant`): the readers mark them bad.
        notes : tuple of str
            One warning per kind, naming the contacts and why.
        """
        contacts = set(contacts)
        notes = []
        degenerate = [(n, why) for n, why in self.degenerate if n in contacts]
        if degenerate:
            shown = "; ".join(f"{n} ({why})" for n, why in degenerate[:12])
            more = f" and {len(degenerate) - 12} more" if len(degenerate) > 12 else ""
            notes.append(
                f"{len(degenerate)} contact(s) with a degenerate {self.fmt.upper()} header "
                f"dropped as bad: {shown}{more}. Their samples would be constant or saturated; "
                "re-export the file if they carry signal."
            )
        named = {n for n, _ in degenerate}
        constant = [n for n in self.constant if n in contacts and n not in named]
        if constant:
            shown = name_list(constant)
            notes.append(
                f"{len(constant)} contact(s) hold one constant value at the start, middle and "
                f"end of the file and were dropped as bad (flat): {shown}. Mark them bad in "
                "the sidecar if they are disconnected."
            )
        return frozenset(named | set(constant)), tuple(notes)


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
        check_edf_size(path, fmt)
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
        degenerate=degenerate_channels(path, fmt, raw.ch_names),
        constant=_constant_channels(raw),
    )


def _constant_channels(raw: mne.io.BaseRaw) -> tuple[str, ...]:
    """Channels whose samples are one value in every probe window (start, middle, end).

    Any recorded channel, however quiet, has amplifier noise of several quanta; exactly equal
    samples over three windows of :data:`PROBE_S` seconds mean a disconnected or zeroed channel.
    Costs three short reads (a few records of an EDF), not the file.
    """
    n = int(raw.n_times)
    width = min(n, max(2, int(PROBE_S * raw.info["sfreq"])))
    if n < 2:
        return ()
    starts = sorted({0, (n - width) // 2, n - width})[:PROBE_WINDOWS]
    constant = np.ones(len(raw.ch_names), dtype=bool)
    try:
        for start in starts:
            x = raw.get_data(picks=range(len(raw.ch_names)), start=start, stop=start + width)
            constant &= np.ptp(x, axis=1) == 0
    except Exception as e:  # an unreadable block is reported when the data are read
        logger.debug("%s: probe read failed (%s)", raw.filenames, e)
        return ()
    return tuple(name for name, c in zip(raw.ch_names, constant, strict=True) if c)


def check_header(rec: Recording, header: SignalHeader) -> None:
    """Raise a :class:`RecordingError` where ``rec`` and the file's header disagree.

    Parameters
    ----------
    rec : Recording
        What the cohort's metadata says.
    header : SignalHeader
        What the file says (:func:`read_header`).
    """
    check_channels(rec.recording_id, rec.channels, header)
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


def check_channels(recording_id: str, channels: Sequence[str], header: SignalHeader) -> None:
    """Raise a :class:`RecordingError` unless the file has exactly the metadata's channels.

    Parameters
    ----------
    recording_id : str
        Named in the error.
    channels : sequence of str
        The channel names the metadata lists.
    header : SignalHeader
        What the file says (:func:`read_header`).
    """
    file_names = set(header.ch_names)
    missing = [c for c in channels if c not in file_names]
    if missing:
        shown = name_list(missing)
        raise RecordingError(
            header.path,
            f"{recording_id}: the metadata lists {len(missing)} channel(s) the signal file "
            f"lacks: {shown} (metadata {len(channels)} channels, file "
            f"{len(header.ch_names)}).",
            "make channels.tsv (or the label sheet) name exactly the file's channels, or "
            "re-export the signal file with all channels.",
        )
    if len(header.ch_names) != len(channels):
        extra = [c for c in header.ch_names if c not in set(channels)]
        raise RecordingError(
            header.path,
            f"{recording_id}: the metadata lists {len(channels)} channels, the signal "
            f"file has {len(header.ch_names)}; not in the metadata: "
            f"{', '.join(extra[:12]) or '(duplicate names)'}.",
            "add the missing rows to channels.tsv (status=bad for non-brain channels) or "
            "remove those channels from the file.",
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
        self._edf = EdfLayout.from_raw(self._raw, rec.path) if rec.fmt == "edf" else None
        if self._edf is not None and not self._edf_agrees_with_mne():
            logger.warning("%s: direct EDF decoding disagrees with MNE; using MNE", rec.path)
            self._edf = None

    def _edf_agrees_with_mne(self) -> bool:
        """Decode the first data record both ways (guards against changes in MNE's internals)."""
        idx = [i for i in range(len(self.ch_names)) if self._edf.covers([i])]
        if not idx:
            return False
        stop = min(self.n_times, self._edf.spr)
        ours = self._edf.read(0, stop, idx)
        mne_uv = self._raw.get_data(picks=idx, start=0, stop=stop) * _TO_MICROVOLTS
        tol = 1e-5 * (
            np.abs(mne_uv).max(axis=1, keepdims=True) + np.abs(self._edf.shift[idx, None])
        )
        return bool((np.abs(ours - mne_uv) <= tol + 1e-6).all())

    @property
    def channel_subsets(self) -> bool:
        """True when reading a few channels costs only those channels (16-bit EDF, read
        directly); block processing then reads channel groups one at a time."""
        return self._edf is not None

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
        if self._edf is not None and self._edf.covers(idx):
            return self._edf.read(start, stop, idx)
        data = self._raw.get_data(picks=idx, start=start, stop=stop)  # volts, rows as idx
        data *= _TO_MICROVOLTS
        return data.astype(np.float32)

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
