"""The fixed EDF/BDF header, read from its bytes: declared size and per-signal calibration.

MNE parses these headers too, but forgivingly: a file shorter than its header declares is
silently shortened (with a warning), and a signal whose digital or physical range is degenerate
is given a made-up gain. The checks here read the header bytes themselves (EDF spec: 256 fixed
bytes, then per signal 16 label, 80 transducer, 8 unit, 8 physical minimum, 8 physical maximum,
8 digital minimum, 8 digital maximum, 80 prefilter, 8 samples per record, 32 reserved bytes) so
that :mod:`ingest.signals` can refuse a truncated file and the readers can drop channels whose
samples mean nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import RecordingError


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


_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


def degenerate_channels(
    path: str | os.PathLike, fmt: str, ch_names: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """Channels of an EDF/BDF file whose header calibration makes their samples meaningless.

    An EDF signal maps digital values ``[dmin, dmax]`` linearly onto ``[pmin, pmax]``. With
    ``dmin >= dmax`` the gain is undefined (MNE substitutes one and the samples come out at
    millions of microvolts, saturating a float16 store at 65504 uV); with ``pmin == pmax`` the
    gain is zero (a flat line whatever was recorded); an unreadable number is the same. These
    channels are reported so that the readers drop them as bad.

    Parameters
    ----------
    path : str | os.PathLike
        The EDF/BDF file.
    fmt : {"edf", "bdf"}
    ch_names : sequence of str
        MNE's channel names, in file order without the annotation signal (as
        :func:`read_header` gets them).

    Returns
    -------
    degenerate : tuple of (str, str)
        ``(channel, reason)``, in file order; empty for other formats.
    """
    if fmt not in ("edf", "bdf"):
        return ()
    with Path(path).open("rb") as f:
        fixed = f.read(256)
        try:
            ns = int(fixed[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return ()  # _edf_declared_size has already refused such a header
        head = f.read(ns * 256)

    def fields(offset: int) -> list[str]:
        base = offset * ns
        return [
            head[base + 8 * i : base + 8 * (i + 1)].decode("latin-1").strip() for i in range(ns)
        ]

    labels = [head[16 * i : 16 * (i + 1)].decode("latin-1").strip() for i in range(ns)]
    pmin, pmax, dmin, dmax = fields(104), fields(112), fields(120), fields(128)
    data = [i for i in range(ns) if labels[i] not in _ANNOTATION_LABELS]
    if len(data) != len(ch_names):  # MNE excluded or added signals: match by label instead
        by_label = {name: name for name in ch_names}
        names = [by_label.get(labels[i]) for i in data]
    else:
        names = list(ch_names)
    out = []
    for i, name in zip(data, names, strict=True):
        if name is None:
            continue
        try:
            p0, p1, d0, d1 = float(pmin[i]), float(pmax[i]), float(dmin[i]), float(dmax[i])
        except ValueError:
            out.append(
                (
                    name,
                    f"unreadable range: physical {pmin[i]!r}..{pmax[i]!r}, "
                    f"digital {dmin[i]!r}..{dmax[i]!r}",
                )
            )
            continue
        if d1 <= d0:
            out.append((name, f"digital minimum {dmin[i]} >= maximum {dmax[i]}"))
        elif p1 == p0:
            out.append((name, f"physical minimum = maximum = {pmin[i]}"))
    return tuple(out)


def check_edf_size(path: Path, fmt: str) -> None:
    """Raise a :class:`RecordingError` if an EDF/BDF file is shorter than its header declares."""
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
