"""Builders of the malformed cohorts of issue 13, shared by ``tests/adversarial`` and
``benchmarks/abuse.py``: one malformed file per class (sidecars), and real EDF files whose header
or data bytes are patched into physically impossible signals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.ingest.signal_files import write_edf

RUNS = (
    ("ictal", "01"),
    ("ictal", "02"),
    ("ictal", "03"),
    ("interictal", "01"),
    ("interictal", "02"),
)


def run_base(root: Path, subject: str, task: str, run: str) -> Path:
    """Path prefix of one run's files (``..._acq-seeg_run-01``)."""
    return (
        root
        / f"sub-{subject}/ses-presurgery/ieeg"
        / f"sub-{subject}_ses-presurgery_task-{task}_acq-seeg_run-{run}"
    )


def clone_subject(root: Path, src: str, dst: str) -> None:
    """Copy ``sub-<src>`` to ``sub-<dst>``: file names and scans.tsv renamed, contents kept."""
    shutil.copytree(root / f"sub-{src}", root / f"sub-{dst}")
    for path in sorted((root / f"sub-{dst}").rglob(f"*{src}*")):
        new = path.with_name(path.name.replace(f"sub-{src}", f"sub-{dst}"))
        path.rename(new)
        if new.name.endswith("_scans.tsv"):
            new.write_text(new.read_text("utf-8-sig").replace(src, dst), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The malformations: each rewrites one file of one run.


def edit_json(path: Path, **fields) -> None:
    meta = json.loads(path.read_text("utf-8-sig"))
    meta.update(fields)
    path.write_text(json.dumps(meta), encoding="utf-8")


def _edit_first_onset(path: Path, value: str) -> None:
    lines = path.read_text("utf-8-sig").splitlines()
    cells = lines[1].split("\t")
    cells[0] = value
    lines[1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _drop_column(path: Path, column: str) -> None:
    rows = [line.split("\t") for line in path.read_text("utf-8-sig").splitlines()]
    k = rows[0].index(column)
    path.write_text("\n".join("\t".join(r[:k] + r[k + 1 :]) for r in rows) + "\n", "utf-8")


def _short_row(path: Path) -> None:
    lines = path.read_text("utf-8-sig").splitlines()
    lines[4] = lines[4].split("\t")[0]  # line 5 of the file: the name only
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def reencode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text("utf-8-sig").encode(encoding))


@dataclass(frozen=True)
class Malformation:
    name: str
    suffix: str  # the file of the run that is broken
    apply: Callable[[Path], None]
    reason: tuple[str, ...]  # substrings the reason must hold (field, value)
    fix: str  # a substring of the fix


MALFORMATIONS = (
    Malformation(
        "events-decimal-comma",
        "_events.tsv",
        lambda p: _edit_first_onset(p, "1,75"),
        ("line 2, column 'onset'", "'1,75' is not a number"),
        "write 1.75 (a decimal point, not a comma)",
    ),
    Malformation(
        "events-onset-text",
        "_events.tsv",
        lambda p: _edit_first_onset(p, "soon"),
        ("column 'onset'", "'soon' is not a number"),
        "or n/a",
    ),
    Malformation(
        "json-sfreq-text",
        "_ieeg.json",
        lambda p: edit_json(p, SamplingFrequency="abc"),
        ("SamplingFrequency is 'abc'", "not a number"),
        '"SamplingFrequency": 1024',
    ),
    Malformation(
        "json-sfreq-list",
        "_ieeg.json",
        lambda p: edit_json(p, SamplingFrequency=[1024]),
        ("SamplingFrequency is [1024]",),
        "plain number in Hz",
    ),
    Malformation(
        "json-sfreq-zero",
        "_ieeg.json",
        lambda p: edit_json(p, SamplingFrequency=0),
        ("SamplingFrequency is 0", "above 0"),
        "plain number in Hz",
    ),
    Malformation(
        "json-linefreq-unit",
        "_ieeg.json",
        lambda p: edit_json(p, PowerLineFrequency="60 Hz"),
        ("PowerLineFrequency is '60 Hz'", "not a number"),
        "PowerLineFrequency",
    ),
    Malformation(
        "json-duration-bool",
        "_ieeg.json",
        lambda p: edit_json(p, RecordingDuration=True),
        ("RecordingDuration is true",),
        "plain number in s",
    ),
    Malformation(
        "json-list",
        "_ieeg.json",
        lambda p: p.write_text('[{"SamplingFrequency": 1024}]', encoding="utf-8"),
        ("the JSON holds a list",),
        "one JSON object",
    ),
    Malformation(
        "json-number",
        "_ieeg.json",
        lambda p: p.write_text("1024", encoding="utf-8"),
        ("the JSON holds a number (1024)",),
        "one JSON object",
    ),
    Malformation(
        "json-invalid",
        "_ieeg.json",
        lambda p: p.write_text('{"SamplingFrequency": 1024,', encoding="utf-8"),
        ("invalid JSON", "line 1"),
        "syntax",
    ),
    Malformation(
        "channels-utf16",
        "_channels.tsv",
        lambda p: reencode(p, "utf-16"),
        ("UTF-16",),
        "iconv -f UTF-16 -t UTF-8",
    ),
    Malformation(
        "channels-latin1",
        "_channels.tsv",
        lambda p: reencode(p, "latin-1"),
        ("not UTF-8: byte 0xb5",),  # the micro sign of the units column
        "iconv -f latin1",
    ),
    Malformation(
        "channels-no-type-column",
        "_channels.tsv",
        lambda p: _drop_column(p, "type"),
        ("lacks the column(s) 'type'",),
        "name, type, units, status",
    ),
    Malformation(
        "channels-short-row",
        "_channels.tsv",
        _short_row,
        ("line 5 has no value in column(s) 'type'",),
        "name, type, units, status",
    ),
)


# ---------------------------------------------------------------------------------------------
# Impossible signals: real EDF files (MNE) with patched header fields or samples.

NAMES = ["LA1", "LA2", "LA3", "LA4"]
#: Bytes per signal before each field of the EDF signal header (after the 256 fixed bytes).
FIELDS = {"physical_min": 104, "physical_max": 112, "digital_min": 120, "digital_max": 128}


def n_signals(data: bytes | bytearray) -> int:
    return int(data[252:256].decode("ascii"))


def set_field(path: Path, signal: int, field: str, value: str) -> None:
    """Overwrite one 8-byte field of one signal's header in place."""
    data = bytearray(path.read_bytes())
    at = 256 + FIELDS[field] * n_signals(data) + 8 * signal
    data[at : at + 8] = value.ljust(8).encode("ascii")
    path.write_bytes(bytes(data))


def get_field(path: Path, signal: int, field: str) -> str:
    data = path.read_bytes()
    at = 256 + FIELDS[field] * n_signals(data) + 8 * signal
    return data[at : at + 8].decode("ascii").strip()


def make_constant(
    path: Path, value: int = 1234, *, blips: bool = False, only: set[str] | None = None
) -> None:
    """Set every sample of every data signal (not the annotations; ``only`` those named) to
    one digital value.

    With ``blips`` the first, middle and last samples are one quantum off (so the probe at
    scan time sees a non-constant channel, and only the scale floor can tell it is flat).
    """
    data = bytearray(path.read_bytes())
    ns = n_signals(data)
    labels = [data[256 + 16 * i : 256 + 16 * (i + 1)].decode().strip() for i in range(ns)]
    spr = [int(data[256 + 216 * ns + 8 * i : 256 + 216 * ns + 8 * (i + 1)]) for i in range(ns)]
    n_records = int(data[236:244])
    record = sum(spr)
    offset = 256 * (ns + 1)
    samples = np.frombuffer(data, dtype="<i2", offset=offset, count=n_records * record).copy()
    samples = samples.reshape(n_records, record)
    start = 0
    for label, n in zip(labels, spr, strict=True):
        if label != "EDF Annotations" and (only is None or label in only):
            samples[:, start : start + n] = value
            if blips:
                total = n_records * n
                for idx in (0, total // 2, total - 1):
                    samples[idx // n, start + idx % n] = value + 1
        start += n
    data[offset : offset + samples.nbytes] = samples.tobytes()
    path.write_bytes(bytes(data))


def degenerate_file(path: Path) -> Path:
    """LA2: digital min = max; LA3: physical min = max; LA1 and LA4 intact."""
    write_edf(path, NAMES, seconds=8.0)
    set_field(path, 1, "digital_min", get_field(path, 1, "digital_max"))
    set_field(path, 2, "physical_max", get_field(path, 2, "physical_min"))
    return path


def write_flat_cohort(folder: Path) -> Path:
    """One folder of impossible signals beside an intact recording.

    ``good`` intact, ``degenerate`` (:func:`degenerate_file`), ``flat`` every contact constant,
    ``nearflat`` constant but for three blips, ``oneflat`` only LA2 near-constant (only the
    scale floor sees it). Returns ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_edf(folder / "good.edf", NAMES, seconds=8.0)
    degenerate_file(folder / "degenerate.edf")
    write_edf(folder / "flat.edf", NAMES, seconds=8.0, seed=2)
    make_constant(folder / "flat.edf")
    write_edf(folder / "nearflat.edf", NAMES, seconds=8.0, seed=3)
    make_constant(folder / "nearflat.edf", blips=True)
    write_edf(folder / "oneflat.edf", NAMES, seconds=8.0, seed=4)
    make_constant(folder / "oneflat.edf", blips=True, only={"LA2"})
    return folder
