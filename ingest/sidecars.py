"""Checked reading of sidecar files: text, TSV tables, JSON objects and the values in them.

Every value a cohort reader takes from a sidecar (``_ieeg.json``, ``channels.tsv``,
``events.tsv``, ``scans.tsv``, ``participants.tsv``) goes through one of these functions, so a
malformed value is a :class:`~ingest.errors.RecordingError` naming the file, the field, the
value and the fix, and it fails only the recording it belongs to, never the cohort:

- :func:`read_text`: UTF-8 with or without BOM; other encodings (UTF-16 with its BOM, latin-1
  bytes) are refused with the byte offset and how to convert the file;
- :func:`read_tsv`: a BIDS TSV (LF or CRLF, cells stripped, whole-cell quotes removed) as one
  dict per row; :func:`require_columns` checks the columns a reader needs;
- :func:`read_json_object`: a JSON file that must hold an object (``{...}``);
- :func:`json_number` (a JSON field that must be a finite number, ``n/a`` / absent -> ``None``),
  :func:`tsv_float` (a TSV cell that must be a number, ``n/a`` -> ``None``).

Numbers are strict: ``"12,5"`` (a decimal comma) is refused with the fix ``write 12.5``, not
read as 125 or as 12; a JSON string holding a plain number (``"1024"``) is accepted, a list or
``true`` is not.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ingest.errors import RecordingError

#: Cell / field texts meaning "no value" (BIDS writes ``n/a``).
NA_VALUES = frozenset({"", "n/a", "na", "nan", "none", "null"})

_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def is_na(value: object) -> bool:
    """Whether a sidecar value means "no value" (``None``, empty, ``n/a``, ``NaN``)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in NA_VALUES


def read_text(path: str | os.PathLike) -> str:
    """The text of a sidecar: UTF-8, with or without a byte-order mark.

    Raises
    ------
    RecordingError
        If the file cannot be read or is not UTF-8 (UTF-16, latin-1...), naming the first
        offending byte and how to convert the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RecordingError(
            str(path),
            f"cannot read the file: {e.strerror or e}.",
            "check that it exists and is readable.",
        ) from e
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise RecordingError(
            str(path),
            "the file is UTF-16 text (it starts with a UTF-16 byte-order mark); BIDS sidecars "
            "are UTF-8.",
            f"convert it to UTF-8, e.g. `iconv -f UTF-16 -t UTF-8 {path.name}`.",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        raise RecordingError(
            str(path),
            f"the file is not UTF-8: byte 0x{bad.hex()} at offset {e.start} "
            f"(near {data[max(0, e.start - 20) : e.start + 5]!r}); probably latin-1 / "
            "Windows-1252 text.",
            f"convert it to UTF-8, e.g. `iconv -f latin1 -t UTF-8 {path.name}`.",
        ) from e


def _cell(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # ds004100 quotes some: "resect,soz"
        text = text[1:-1].replace('""', '"').strip()
    return text


def read_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a BIDS TSV: UTF-8 with or without BOM, LF or CRLF, cells stripped and unquoted.

    ``n/a`` is kept as text. Quotes are removed only around a whole cell (sub-HUP188 run-01 of
    ds004100 writes ``"resect,soz"`` where its other runs write ``resect,soz``). A row with
    fewer cells than the header lacks the missing columns' keys (check them with
    :func:`require_columns` or read them with ``row.get``).

    Raises
    ------
    RecordingError
        If the file is unreadable or not UTF-8 (:func:`read_text`).
    """
    lines = read_text(path).splitlines()
    if not lines:
        return []
    header = [_cell(h) for h in lines[0].split("\t")]
    return [
        dict(zip(header, (_cell(c) for c in line.split("\t")), strict=False))
        for line in lines[1:]
        if line.strip()
    ]


def require_columns(
    rows: list[dict[str, str]], columns: Iterable[str], path: str | os.PathLike, *, fix: str
) -> None:
    """Check that ``rows`` is not empty and every row has a value in each of ``columns``.

    Raises
    ------
    RecordingError
        Naming the missing columns (or the first row that lacks a cell of one) and ``fix``.
    """
    columns = list(columns)
    name = Path(path).name
    if not rows:
        raise RecordingError(str(path), f"{name} has no rows.", fix)
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise RecordingError(
            str(path),
            f"{name} lacks the column(s) {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(repr(c) for c in rows[0])}).",
            fix,
        )
    for line, row in enumerate(rows, start=2):
        short = [c for c in columns if not row.get(c, "")]
        if short:
            raise RecordingError(
                str(path),
                f"{name} line {line} has no value in column(s) "
                f"{', '.join(repr(c) for c in short)} (a row with too few tab-separated cells?).",
                fix,
            )


def read_json_object(path: str | os.PathLike) -> dict:
    """Read a JSON sidecar that must hold an object (``{"SamplingFrequency": ...}``).

    Raises
    ------
    RecordingError
        If the file is not UTF-8, not valid JSON, or holds something else than an object.
    """
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordingError(
            str(path),
            f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}.",
            "fix the sidecar's syntax (a JSON object of key: value pairs).",
        ) from e
    if not isinstance(value, dict):
        raise RecordingError(
            str(path),
            f"the JSON holds {_KINDS.get(type(value), 'a value')} ({_shown(value)}), not an "
            "object.",
            'write the sidecar as one JSON object, {"SamplingFrequency": 1024, ...}.',
        )
    return value


_KINDS = {list: "a list", int: "a number", float: "a number", str: "a string", bool: "a boolean"}
_KINDS[type(None)] = "null"


def _shown(value: object, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_number(
    obj: Mapping, field: str, path: str | os.PathLike, *, positive: bool = False, unit: str = ""
) -> float | None:
    """A JSON field that must be a finite number; ``None`` when absent or ``n/a``.

    Parameters
    ----------
    obj : mapping
        The parsed JSON object (:func:`read_json_object`).
    field : str
        The key.
    path : str | os.PathLike
        The file, for the error.
    positive : bool
        Also require ``> 0``.
    unit : str
        Unit named in the fix (``"Hz"``).

    Raises
    ------
    RecordingError
        If the value is text that is no number, a list, an object, a boolean, infinite, or
        (with ``positive``) not above zero.
    """
    value = obj.get(field)
    if is_na(value):
        return None
    example = f'"{field}": 1024' if unit == "Hz" else f'"{field}": 60'
    number: float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value.strip())
    fix = f"write {field} as a plain number{f' in {unit}' if unit else ''} ({example})."
    if isinstance(value, str) and "," in value:
        fix = (
            f"write {field} with a decimal point, {value.strip().replace(',', '.')!r}, as a number."
        )
    if number is None or not math.isfinite(number):
        raise RecordingError(str(path), f"{field} is {_shown(value)}, which is not a number.", fix)
    if positive and number <= 0:
        raise RecordingError(str(path), f"{field} is {_shown(value)}; it must be above 0.", fix)
    return number


def tsv_float(
    row: Mapping[str, str], column: str, path: str | os.PathLike, *, line: int
) -> float | None:
    """A TSV cell that must be a finite number; ``None`` when absent or ``n/a``.

    Parameters
    ----------
    row : mapping
        One row of :func:`read_tsv`.
    column : str
        The column.
    path : str | os.PathLike
        The file, for the error.
    line : int
        The row's line number in the file (the header is line 1).

    Raises
    ------
    RecordingError
        Naming the file, line, column and value; a decimal comma gets the corrected number in
        the fix.
    """
    value = row.get(column)
    if is_na(value):
        return None
    text = value.strip()
    if _NUMBER.match(text):
        number = float(text)
        if math.isfinite(number):
            return number
    if "," in text and _NUMBER.match(text.replace(",", ".")):
        fix = f"write {text.replace(',', '.')} (a decimal point, not a comma), or n/a."
    else:
        fix = f"write the {column} as a plain number (e.g. 12.5), or n/a."
    raise RecordingError(
        str(path),
        f"{Path(path).name} line {line}, column {column!r}: {text!r} is not a number.",
        fix,
    )
