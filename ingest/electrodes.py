"""Contact coordinates from BIDS ``*_electrodes.tsv`` + ``*_coordsystem.json`` (metadata only).

A BIDS iEEG session may hold ``sub-X_ses-Y[_acq-A][_space-S]_electrodes.tsv`` (columns ``name``,
``x``, ``y``, ``z``, optional ``size``...) and, beside it, ``..._coordsystem.json`` whose
``iEEGCoordinateSystem`` names the space (``fsaverage``, ``MNI152NLin2009aSym``, ``ACPC``,
``Other``...) and ``iEEGCoordinateUnits`` the unit (``m``, ``mm``, ``cm``, ``pixels``, ``n/a``).

Values are checked where they are read:

- a coordinate that is ``n/a``, empty or not a number leaves that contact without a position
  (NaN) and a warning names it (contacts the caller does not ask about, such as the scalp and
  ECG channels ds004100 lists with ``n/a``, are not warned about);
- the declared unit is checked against the values' magnitude. A human brain spans about 0.2 m,
  so coordinates in metres are all below 0.3 and coordinates in millimetres reach tens.
  ds004100 declares ``m`` but its values are millimetres (|x| up to ~100): such values are read as
  millimetres and a warning says so. Values are always returned in millimetres.

:func:`find_electrodes` locates the sidecars of one recording (its ``_ieeg`` file's folder, same
subject / session / acquisition); :func:`read_electrodes` reads a pair.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.errors import RecordingError

logger = logging.getLogger(__name__)

#: Factor from a declared unit to millimetres.
UNIT_TO_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}
#: Largest |coordinate| in metres a head can have (a brain is ~0.2 m across): above it, values
#: declared in metres are taken to be millimetres.
MAX_HEAD_M = 0.3
#: Spaces whose frame is (close to) the MNI template the glass brain is drawn in.
TEMPLATE_SPACES = ("fsaverage", "mni305", "mni152lin", "mni152nlin6sym", "mni152nlin6asym",
                   "mni152nlin2009asym", "mni152nlin2009bsym", "mni152nlin2009csym",
                   "mni152nlin2009aasym", "mni152nlin2009asym", "icbm452airspace")  # fmt: skip
_ENTITY = re.compile(r"(sub|ses|acq|space)-([A-Za-z0-9]+)")
_MISSING = {"", "n/a", "na", "nan"}


@dataclass(frozen=True)
class Electrodes:
    """Contact positions of one implantation, in millimetres.

    Parameters
    ----------
    names : tuple of str
        Contact names as the TSV lists them.
    positions : ndarray, shape (n_contacts, 3), float64
        x, y, z in mm; a row of NaN for a contact without a (valid) coordinate.
    space : str
        ``iEEGCoordinateSystem`` (or the file name's ``space-`` entity; ``"n/a"`` if neither).
    units : str
        Always ``"mm"`` (values are converted).
    declared_units : str
        ``iEEGCoordinateUnits`` as the sidecar states it (``"n/a"`` without one).
    source : str
        The ``electrodes.tsv`` read.
    warnings : tuple of str
        Problems found while reading (unit mismatch, unreadable values).
    """

    names: tuple[str, ...]
    positions: np.ndarray
    space: str
    units: str
    declared_units: str
    source: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def in_template_space(self) -> bool:
        """True when the space is a template (MNI-like) frame a glass brain can show."""
        return self.space.lower() in TEMPLATE_SPACES

    def for_channels(self, channels: list[str] | tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
        """Positions of ``channels`` (matched by name, then ignoring case and spaces).

        Parameters
        ----------
        channels : sequence of str
            Contact names of a recording.

        Returns
        -------
        positions : ndarray, shape (n_channels, 3)
            mm; NaN rows for contacts without a coordinate.
        warnings : list of str
            One line per problem: contacts absent from the TSV, contacts whose coordinate was
            ``n/a`` or unreadable (grouped, with names).
        """
        exact = {n: i for i, n in enumerate(self.names)}
        loose = {_key(n): i for i, n in enumerate(self.names)}
        out = np.full((len(channels), 3), np.nan)
        absent, empty = [], []
        for c, ch in enumerate(channels):
            i = exact.get(ch, loose.get(_key(ch)))
            if i is None:
                absent.append(ch)
                continue
            out[c] = self.positions[i]
            if not np.all(np.isfinite(out[c])):
                empty.append(ch)
        warnings = []
        if absent:
            warnings.append(
                f"{self.source}: {len(absent)} contact(s) not listed, so not placed: "
                f"{_names(absent)}"
            )
        if empty:
            warnings.append(
                f"{self.source}: {len(empty)} contact(s) with no valid coordinate (n/a or not "
                f"a number), so not placed: {_names(empty)}"
            )
        return out, warnings


def read_electrodes(
    tsv: str | os.PathLike, coordsystem: str | os.PathLike | None = None
) -> Electrodes:
    """Read an ``electrodes.tsv`` (and its ``coordsystem.json``), checking every value.

    Parameters
    ----------
    tsv : path-like
        ``*_electrodes.tsv`` (UTF-8, a BOM is allowed).
    coordsystem : path-like or None
        ``*_coordsystem.json``; ``None`` looks for the one with the same stem.

    Returns
    -------
    Electrodes

    Raises
    ------
    RecordingError
        The TSV is missing, has no ``name``/``x``/``y``/``z`` column, or the JSON is unreadable.
    """
    tsv = Path(tsv)
    if not tsv.is_file():
        raise RecordingError(str(tsv), "electrodes file not found", "check the path")
    text = tsv.read_text(encoding="utf-8-sig")
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    missing = [c for c in ("name", "x", "y", "z") if c not in header]
    if missing:
        raise RecordingError(
            str(tsv),
            f"electrodes.tsv lacks the column(s) {missing} (header: {header})",
            "BIDS requires tab-separated columns name, x, y, z",
        )
    cols = [header.index(c) for c in ("name", "x", "y", "z")]
    names: list[str] = []
    rows: list[list[float]] = []
    bad: list[str] = []
    for ln in lines[1:]:
        cells = ln.split("\t")
        cells += [""] * (len(header) - len(cells))
        name = cells[cols[0]].strip()
        xyz = []
        for c in cols[1:]:
            v = _number(cells[c])
            if v is None and cells[c].strip().lower() not in _MISSING:
                bad.append(f"{name} ({header[c]}={cells[c].strip()!r})")
            xyz.append(np.nan if v is None else v)
        names.append(name)
        rows.append(xyz if all(np.isfinite(xyz)) else [np.nan] * 3)
    positions = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    warnings = []
    if bad:
        warnings.append(f"{tsv}: coordinate(s) that are not numbers, contact not placed: "
                        f"{_names(bad)}")  # fmt: skip
    json_path = Path(coordsystem) if coordsystem is not None else _coordsystem_of(tsv)
    space, declared = _entities(tsv.name).get("space", "n/a"), "n/a"
    if json_path is not None and json_path.is_file():
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:
            raise RecordingError(
                str(json_path), f"coordsystem.json is not valid JSON ({e})", "fix the file"
            ) from e
        space = str(meta.get("iEEGCoordinateSystem", space))
        declared = str(meta.get("iEEGCoordinateUnits", "n/a"))
    else:
        warnings.append(f"{tsv}: no coordsystem.json beside it; space from the file name "
                        f"({space}), units guessed from the values")  # fmt: skip
    positions, unit_warning = _to_mm(positions, declared, tsv)
    if unit_warning:
        warnings.append(unit_warning)
    for w in warnings:
        logger.debug(w)
    return Electrodes(
        names=tuple(names), positions=positions, space=space, units="mm",
        declared_units=declared, source=str(tsv), warnings=tuple(warnings),
    )  # fmt: skip


def find_electrodes(recording_path: str | os.PathLike) -> Path | None:
    """The ``electrodes.tsv`` of a BIDS recording, or ``None`` when its folder has none.

    Looks in the folder of ``recording_path`` (``sub-X/ses-Y/ieeg/``) for
    ``sub-X[_ses-Y][_acq-A][_space-S]_electrodes.tsv`` whose subject, session and acquisition do
    not contradict the recording's; with several spaces, a template space (fsaverage, MNI) wins,
    then the first by name.

    Parameters
    ----------
    recording_path : path-like
        A BIDS ``*_ieeg.<ext>`` file (it need not exist: only its folder is listed).
    """
    path = Path(recording_path)
    folder = path.parent
    if not folder.is_dir():
        return None
    want = _entities(path.name)
    hits = []
    for cand in sorted(folder.glob("*_electrodes.tsv")):
        ent = _entities(cand.name)
        if any(k in want and k in ent and ent[k] != want[k] for k in ("sub", "ses", "acq")):
            continue
        if "sub" in want and "sub" not in ent:
            continue
        hits.append(cand)
    if not hits:
        return None
    hits.sort(key=lambda p: (_entities(p.name).get("space", "").lower() not in TEMPLATE_SPACES,
                             p.name))  # fmt: skip
    return hits[0]


def electrodes_for_recording(
    recording_path: str | os.PathLike, channels: list[str] | tuple[str, ...]
) -> tuple[np.ndarray | None, Electrodes | None, list[str]]:
    """Positions of a recording's contacts from its BIDS sidecars, and why some are missing.

    Parameters
    ----------
    recording_path : path-like
        The recording's signal file in its BIDS tree (``recordings.parquet`` ``source_path``).
    channels : sequence of str
        Its contacts.

    Returns
    -------
    positions : ndarray, shape (n_channels, 3) or None
        mm, NaN rows for contacts without coordinates; ``None`` when there is no sidecar.
    electrodes : Electrodes or None
    notes : list of str
        Why there are no (or incomplete) coordinates; the reader's warnings.
    """
    tsv = find_electrodes(recording_path)
    if tsv is None:
        return None, None, [f"no *_electrodes.tsv beside {recording_path}"]
    try:
        elec = read_electrodes(tsv)
    except RecordingError as e:
        return None, None, [str(e)]
    pos, notes = elec.for_channels(list(channels))
    return pos, elec, [*elec.warnings, *notes]


def _to_mm(positions: np.ndarray, declared: str, tsv: Path) -> tuple[np.ndarray, str | None]:
    finite = positions[np.all(np.isfinite(positions), axis=1)]
    peak = float(np.abs(finite).max()) if finite.size else 0.0
    unit = declared.strip().lower()
    if unit == "m" and peak > MAX_HEAD_M:
        return positions, (
            f"{tsv}: coordsystem.json declares units 'm' but |coordinate| reaches {peak:.1f}, "
            "millimetre magnitude (a head is ~0.2 m): read as mm"
        )
    if unit in UNIT_TO_MM:
        return positions * UNIT_TO_MM[unit], None
    # Undeclared (n/a, pixels, missing): guess from the magnitude.
    if finite.size and peak <= MAX_HEAD_M:
        return positions * 1000.0, (
            f"{tsv}: units {declared!r}; |coordinate| <= {peak:.3f}, metre magnitude: read as m"
        )
    return positions, (f"{tsv}: units {declared!r}; values read as mm (|coordinate| up to "
                       f"{peak:.1f})")  # fmt: skip


def _coordsystem_of(tsv: Path) -> Path | None:
    cand = tsv.with_name(tsv.name.replace("_electrodes.tsv", "_coordsystem.json"))
    if cand.is_file():
        return cand
    # BIDS allows one coordsystem for several electrodes files of the same space.
    ent = _entities(tsv.name)
    for other in sorted(tsv.parent.glob("*_coordsystem.json")):
        if _entities(other.name).get("space") == ent.get("space"):
            return other
    return None


def _entities(name: str) -> dict[str, str]:
    return {k: v for k, v in _ENTITY.findall(name)}


def _number(text: str) -> float | None:
    try:
        v = float(text.strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _key(name: str) -> str:
    return re.sub(r"\s+", "", name).upper()


def _names(items: list[str], limit: int = 12) -> str:
    more = f" ... (+{len(items) - limit})" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
