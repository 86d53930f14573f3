"""Clinical labels kept outside the signal: SOZ label sheets and free-text seizure annotations.

Label sheets (CSV or XLSX, one sheet, first row = column names, case and spaces ignored) come in
two layouts; :func:`read_label_sheet` recognises them by their columns:

- **shorthand**, one row per subject: ``participant_id`` (or ``subject``) and ``soz_contacts``
  in clinical shorthand, ``"TT1-6; AST1-2"`` (see :func:`expand_contacts`). An optional
  ``recording`` column restricts a row to one recording.
- **long** (the SPEC's layout), one row per contact: ``subject, recording, channel, soz`` with
  ``soz`` 0/1 (also ``yes``/``no``, ``true``/``false``). ``recording`` may be empty (all
  recordings of the subject).

Decisions on what a sheet can say:

- a subject whose cell is empty or ``n/a`` (shorthand) is **unknown** (``soz=None``), not
  "no SOZ": no row is the same as that row;
- a subject listed in the long layout with every ``soz`` 0 is labelled with no SOZ contact (an
  explicit statement) and the readers warn about it;
- an unparseable shorthand, an unknown ``soz`` value or a subject listed twice in the shorthand
  layout is a :class:`~ingest.errors.ConfigError` naming the sheet, row and value: a sheet is
  input the user fixes once, not a per-recording problem.

Seizure annotations: :func:`find_seizures` turns events (``events.tsv`` rows, EDF+ annotations)
into :class:`~ingest.recording.SeizureEvent` records. ds004100 writes ``sz onset`` / ``sz offset``;
ds003029 keeps the clinicians' free text, which differs by centre (NIH ``onset``, ``EEG onset``,
``1st change``, ``sz onset #18``...; JHH ``SZ EVENT # (PB SZ)``, ``Z ELECTROGRAPHIC ONS``; UMF
``eeg sz start``; UMMC ``sz onset``; offsets ``offset``, ``definite off``, ``sz end``,
``Z ELECTROGRAPHIC END``, ``Z SEIZURE OVER``, ``OVER``...). :data:`ONSET_PATTERN` and
:data:`OFFSET_PATTERN` were built from all 106 ds003029 ``events.tsv`` files: an onset is found
in 103 runs (sub-pt17 runs 01 and 03 hold no seizure label at all; sub-pt2 run-01 has only
``?onset ?TT1 then PST``, and questioned labels are not taken), an offset in 86. Clinical
onsets (``clinical onset``) and notes on a side (``off on left``, ``Z RIGHT OVER``) are not
electrographic onsets / offsets and are ignored.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError, RecordingError, name_list
from ingest.recording import SeizureEvent
from ingest.sidecars import read_text

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Contact shorthand

_RANGE = re.compile(
    r"^(?P<prefix>[A-Za-z][A-Za-z'_.]*?)?\s*(?P<first>\d+)"
    r"(?:\s*[-\u2013]\s*(?P<prefix2>[A-Za-z][A-Za-z'_.]*?)?\s*(?P<last>\d+))?$"
)
_NAME = re.compile(r"^(?P<shaft>.*?)(?P<num>\d+)$")


def expand_contacts(shorthand: str) -> list[str]:
    """Expand clinical contact shorthand into contact names.

    ``"TT1-6; AST1-2"`` -> ``TT1 .. TT6, AST1, AST2``. Items are separated by ``;``, ``,`` or
    ``/``; a range is ``PREFIXa-b`` (or ``PREFIXa-PREFIXb``, en dash allowed); a bare number or
    range continues the previous prefix (``"ATT1,2"`` -> ``ATT1, ATT2``; ``"G19-20, 27-29"``);
    a name without digits (``"PD"``) is kept as it is. Order is kept, duplicates dropped.

    Parameters
    ----------
    shorthand : str
        The cell text.

    Returns
    -------
    contacts : list of str

    Raises
    ------
    ValueError
        On an item that is none of the above, a reversed range, or a range whose two ends name
        different shafts.
    """
    out: list[str] = []
    prefix: str | None = None
    for item in re.split(r"[;,/]", shorthand):
        item = item.strip()
        if not item:
            continue
        m = _RANGE.match(item)
        if m is None:
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9'_.]*", item) and not item[-1].isdigit():
                out.append(item)  # a contact / shaft name without a number
                prefix = None
                continue
            raise ValueError(
                f"cannot read contact item {item!r} in {shorthand!r}; write contacts as "
                "'TT1-6; AST1-2' (shaft letters, then a number or a range)."
            )
        if m["prefix"]:
            prefix = m["prefix"]
        elif prefix is None:
            raise ValueError(
                f"item {item!r} in {shorthand!r} has a number but no shaft name before it; "
                "write e.g. 'TT1-6' instead of '1-6'."
            )
        if m["prefix2"] and m["prefix2"].upper() != prefix.upper():
            raise ValueError(
                f"range {item!r} in {shorthand!r} spans two shafts ({prefix} and "
                f"{m['prefix2']}); list each shaft separately."
            )
        first = int(m["first"])
        last = int(m["last"]) if m["last"] is not None else first
        if last < first:
            raise ValueError(
                f"range {item!r} in {shorthand!r} runs backwards ({first} > {last}); "
                f"write {prefix}{last}-{first}."
            )
        out.extend(f"{prefix}{k}" for k in range(first, last + 1))
    return list(dict.fromkeys(out))


def contact_key(name: str) -> str:
    """Normalised contact name for matching sheets to files: upper case, no spaces, ``TT01`` = ``TT1``."""
    name = re.sub(r"\s+", "", name).upper()
    m = _NAME.match(name)
    return f"{m['shaft']}{int(m['num'])}" if m else name


def match_contacts(
    names: Iterable[str], channels: Iterable[str]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Map label names onto a recording's channel names.

    Parameters
    ----------
    names : iterable of str
        Contact names from a label sheet.
    channels : iterable of str
        The recording's channel names.

    Returns
    -------
    matched : frozenset of str
        Channel names (as the file spells them) that a label names (see :func:`contact_key`).
    unmatched : tuple of str
        Label names matching no channel, sorted.
    """
    by_key = {contact_key(c): c for c in channels}
    matched, unmatched = set(), []
    for name in names:
        hit = by_key.get(contact_key(name))
        if hit is None:
            unmatched.append(name)
        else:
            matched.add(hit)
    return frozenset(matched), tuple(sorted(unmatched))


#: The fix of a refused empty SOZ (:func:`empty_soz_error`).
EMPTY_SOZ_FIX = (
    "check the contact names in the sheet against the recording's channels; pass "
    "--allow-empty-soz (allow_empty_soz=True) to accept an empty SOZ, every contact then "
    "trains as a negative."
)


def empty_soz_error(
    source: str | os.PathLike,
    *,
    recording_id: str,
    subject: str,
    names: Iterable[str],
    channels: Iterable[str],
    sheet: str | os.PathLike | None,
) -> RecordingError:
    """The error for a label sheet that would leave a recording with an empty SOZ.

    An empty SOZ makes every contact a negative in training; it is nearly always a sheet whose
    names do not match the file (another montage, ``TT1`` against ``T1``), so the readers refuse
    it unless ``allow_empty_soz`` is given.

    Parameters
    ----------
    source : str | os.PathLike
        The recording's file (the failure row's ``source``).
    recording_id, subject : str
    names : iterable of str
        The SOZ names the sheet gives (none: the sheet marks no SOZ contact).
    channels : iterable of str
        The recording's channel names.
    sheet : path or None
        The label sheet, named in the reason.
    """
    names, channels = sorted(names), list(channels)
    where = f"the label sheet {Path(sheet).name}" if sheet else "the label sheet"
    shown = name_list(channels, 8)
    if names:
        said = (
            f"names SOZ contact(s) {name_list(names)} "
            f"for sub-{subject}, and none matches a channel of this recording ({len(channels)} "
            f"channels: {shown})"
        )
    else:
        said = f"marks no SOZ contact for sub-{subject}"
    return RecordingError(
        str(source),
        f"{recording_id}: {where} {said}; its SOZ would be empty and every contact trained as a "
        "negative.",
        EMPTY_SOZ_FIX,
    )


# ----------------------------------------------------------------------------------------------
# Label sheets


@dataclass(frozen=True)
class LabelEntry:
    """What a label sheet says about one subject.

    Parameters
    ----------
    subject : str
        Subject label without ``sub-``.
    soz : frozenset of str or None
        SOZ contacts named for every recording of the subject; ``None`` if the sheet gives no
        subject-wide labels (unknown).
    by_recording : mapping of str to frozenset of str
        SOZ contacts of single recordings (key: the ``recording`` column, a file stem or BIDS
        run name). Overrides ``soz`` for that recording.
    source : str
        ``"sheet.csv:row 3"``, for messages.
    """

    subject: str
    soz: frozenset[str] | None
    by_recording: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str = ""

    def soz_for(self, recording: str | None = None) -> frozenset[str] | None:
        """SOZ contacts the sheet gives for ``recording`` (falling back to the subject's)."""
        if recording is not None:
            for key in (recording, Path(recording).stem):
                if key in self.by_recording:
                    return self.by_recording[key]
        return self.soz

    @property
    def recordings(self) -> tuple[str, ...]:
        """Recording names the sheet lists for this subject."""
        return tuple(self.by_recording)


def _strip_sub(subject: str) -> str:
    subject = subject.strip()
    return subject[4:] if subject.lower().startswith("sub-") else subject


def _sheet_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as e:  # zipfile.BadZipFile, KeyError, InvalidFileException...
            raise ConfigError(
                f"label sheet {path}: not a readable Excel workbook ({type(e).__name__}: {e}); "
                "save it again from Excel as .xlsx, or export it as CSV."
            ) from e
        try:
            rows = list(book.worksheets[0].iter_rows(values_only=True))
        finally:
            book.close()
        if not rows:
            return []
        header = ["" if h is None else str(h) for h in rows[0]]
        body = [["" if v is None else str(v) for v in r] for r in rows[1:]]
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        try:
            text = read_text(path)
        except RecordingError as e:  # not UTF-8: a sheet is fixed once, for the whole scan
            raise ConfigError(f"label sheet {e}") from e
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            table = list(csv.reader(text.splitlines(), delimiter=delimiter))
        except csv.Error as e:
            raise ConfigError(
                f"label sheet {path}: not a readable {path.suffix} table ({e}); save it again "
                "as plain UTF-8 CSV."
            ) from e
        if not table:
            return []
        header, body = table[0], table[1:]
    else:
        raise ConfigError(
            f"label sheet {path}: unsupported type {path.suffix!r}; give a .csv, .tsv or .xlsx file."
        )
    keys = [re.sub(r"\s+", "_", h.strip().lower()) for h in header]
    return [
        dict(zip(keys, (v.strip() for v in row), strict=False))
        for row in body
        if any(str(v).strip() for v in row)
    ]


_YES = {"1", "1.0", "yes", "y", "true", "soz"}
_NO = {"0", "0.0", "no", "n", "false", ""}
_UNKNOWN = {"", "n/a", "na", "nan", "none", "unknown", "?"}


def read_label_sheet(path: str | os.PathLike) -> dict[str, LabelEntry]:
    """Read a SOZ label sheet (CSV, TSV or XLSX; layouts in the module docstring).

    Parameters
    ----------
    path : str | os.PathLike
        The sheet.

    Returns
    -------
    entries : dict of str to LabelEntry
        By subject label (without ``sub-``, stripped).

    Raises
    ------
    ConfigError
        On a missing file, unknown columns, an unreadable shorthand or ``soz`` value, or a
        subject given twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"label sheet {path} does not exist; check the path.")
    rows = _sheet_rows(path)
    if not rows:
        raise ConfigError(f"label sheet {path} has no rows; fill it or leave it out.")
    cols = set(rows[0])
    subject_col = next((c for c in ("participant_id", "subject", "patient") if c in cols), None)
    if subject_col is None:
        raise ConfigError(
            f"label sheet {path}: no subject column in {sorted(cols)}; name it "
            "'participant_id' or 'subject'."
        )
    if {"channel", "soz"} <= cols:
        return _read_long(path, rows, subject_col)
    soz_col = next((c for c in ("soz_contacts", "soz", "soz_channels") if c in cols), None)
    if soz_col is None:
        raise ConfigError(
            f"label sheet {path}: columns {sorted(cols)} are neither the shorthand layout "
            "(participant_id, soz_contacts) nor the long layout (subject, recording, channel, "
            "soz); rename the columns."
        )
    return _read_shorthand(path, rows, subject_col, soz_col)


def _read_shorthand(
    path: Path, rows: list[dict[str, str]], subject_col: str, soz_col: str
) -> dict[str, LabelEntry]:
    subject_wide: dict[str, tuple[frozenset[str] | None, str]] = {}
    per_rec: dict[str, dict[str, frozenset[str]]] = {}
    for i, row in enumerate(rows, start=2):
        where = f"{path.name}:row {i}"
        subject = _strip_sub(row.get(subject_col, ""))
        if not subject:
            raise ConfigError(
                f"label sheet {where}: empty {subject_col}; fill it or delete the row."
            )
        cell = row.get(soz_col, "")
        if cell.lower() in _UNKNOWN:
            soz = None
        else:
            try:
                soz = frozenset(expand_contacts(cell))
            except ValueError as e:
                raise ConfigError(f"label sheet {where}: {e}") from e
        recording = row.get("recording", "")
        if recording:
            if soz is not None:
                per_rec.setdefault(subject, {})[recording] = soz
            continue
        if subject in subject_wide:
            raise ConfigError(
                f"label sheet {where}: subject {subject!r} is listed twice (first at "
                f"{subject_wide[subject][1]}); merge the rows."
            )
        subject_wide[subject] = (soz, where)
    subjects = list(dict.fromkeys([*subject_wide, *per_rec]))
    return {
        s: LabelEntry(
            subject=s,
            soz=subject_wide.get(s, (None, ""))[0],
            by_recording=per_rec.get(s, {}),
            source=subject_wide.get(s, (None, f"{path.name}"))[1],
        )
        for s in subjects
    }


def _read_long(path: Path, rows: list[dict[str, str]], subject_col: str) -> dict[str, LabelEntry]:
    # subject -> recording ("" = all) -> {channel: is_soz}
    table: dict[str, dict[str, dict[str, bool]]] = {}
    for i, row in enumerate(rows, start=2):
        where = f"{path.name}:row {i}"
        subject = _strip_sub(row.get(subject_col, ""))
        channel = row.get("channel", "").strip()
        if not subject or not channel:
            raise ConfigError(
                f"label sheet {where}: empty subject or channel ({row}); fill or delete the row."
            )
        value = row.get("soz", "").strip().lower()
        if value not in _YES | _NO:
            raise ConfigError(
                f"label sheet {where}: soz={row.get('soz')!r} for {subject}/{channel}; "
                "write 1 (SOZ) or 0 (not SOZ)."
            )
        recording = row.get("recording", "").strip()
        table.setdefault(subject, {}).setdefault(recording, {})[channel] = value in _YES
    entries = {}
    for subject, recs in table.items():
        by_rec = {
            r: frozenset(c for c, yes in chans.items() if yes) for r, chans in recs.items() if r
        }
        wide = recs.get("")
        entries[subject] = LabelEntry(
            subject=subject,
            soz=None if wide is None else frozenset(c for c, yes in wide.items() if yes),
            by_recording=by_rec,
            source=path.name,
        )
    return entries


# ----------------------------------------------------------------------------------------------
# Seizure annotations

#: Electrographic seizure-onset labels (matched on the stripped text, case-insensitive).
ONSET_PATTERN = re.compile(
    r"""^(?:
        (?:sz\s+|eeg\s+|ictal\s+|definite\s+|electrographic\s+)?onset\b.*   # onset, EEG onset, sz onset #18, onset TT3
      | (?:sz|seizure)\s*\#?\s*\d+\s+onset                                 # SEIZURE #17 ONSET, sz #12 onset
      | [A-Z]+\d+(?:-\d+)?\s+onset                                         # AD1-3 onset
      | eeg\s+sz\s+start | start | sz                                      # UMF / NIH bare markers
      | 1st\s+change
      | sz\s+event\s*\#.*                                                  # JHH SZ EVENT # (PB SZ)
      | z\s+electrographic\s+ons.*                                         # JHH, truncated to 20 chars
      | seizure\s+\#\s*\d+
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

#: Electrographic seizure-offset labels.
OFFSET_PATTERN = re.compile(
    r"""^(?:
        (?:sz\s+|eeg\s+sz\s+|seizure\s+|definite\s+|generalized\s+)?(?:offset|off|end)
            (?:\s+with\s+.*)?                                              # offset with attenuation
      | z\s+(?:electrographic\s+end|seizure\s+over|event\s+over|over)
      | over
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


def unused_sheet_warnings(
    sheet: dict[str, LabelEntry], subjects: Iterable[str], label_sheet: str | os.PathLike
) -> tuple[str, ...]:
    """A scan-level warning naming the sheet's subjects that no recording of the cohort has.

    Their SOZ labels are read and used nowhere: usually a misspelt subject (``HUP-190`` for
    ``HUP190``) that leaves that subject's recordings unlabelled.

    Returns
    -------
    warnings : tuple of str
        Empty, or one line naming them.
    """
    unused = sorted(set(sheet) - set(subjects))
    if not unused:
        return ()
    shown = name_list(unused)
    return (
        f"label sheet {Path(label_sheet).name}: {len(unused)} of its {len(sheet)} subject(s) "
        f"match no recording of the cohort, their labels are unused: {shown}. Check the "
        "subjects' spelling against the file or sub- folder names.",
    )


def find_seizures(
    events: Iterable[tuple[float, str]], *, duration_s: float | None = None
) -> tuple[tuple[SeizureEvent, ...], tuple[str, ...]]:
    """Seizures from annotation events.

    Onset-like labels (:data:`ONSET_PATTERN`) open a seizure; further onset labels before its
    offset belong to the same seizure (``1st change`` then ``onset`` then ``SEIZURE #1``); the
    first offset label (:data:`OFFSET_PATTERN`) after the onset closes it. An offset with no
    open seizure is ignored.

    Parameters
    ----------
    events : iterable of (float, str)
        ``(onset_s, text)`` of each annotation, seconds from the first sample.
    duration_s : float | None
        Length of the recording. When given, a seizure whose onset lies at or past the end is
        **dropped with a warning** (the rest of the recording stays usable), and an offset past
        the end becomes ``None`` (the seizure lasts to the end) with a warning.

    Returns
    -------
    seizures : tuple of SeizureEvent
        Sorted by onset.
    warnings : tuple of str
    """
    ordered = sorted(((float(t), str(text).strip()) for t, text in events), key=lambda e: e[0])
    seizures: list[SeizureEvent] = []
    notes: list[str] = []
    onset: tuple[float, str] | None = None
    for t, text in ordered:
        if ONSET_PATTERN.match(text):
            if onset is None:
                onset = (t, text)
        elif OFFSET_PATTERN.match(text) and onset is not None and t > onset[0]:
            seizures.append(SeizureEvent(onset[0], t, onset[1]))
            onset = None
    if onset is not None:
        seizures.append(SeizureEvent(onset[0], None, onset[1]))
    if duration_s is None:
        return tuple(seizures), ()
    kept = []
    for sz in seizures:
        if sz.onset_s >= duration_s or sz.onset_s < 0:
            notes.append(
                f"seizure onset {sz.label!r} at {sz.onset_s:g} s lies outside the recording "
                f"(0-{duration_s:g} s); the seizure was dropped. Check that the events belong "
                "to this signal file."
            )
            continue
        if sz.offset_s is not None and sz.offset_s > duration_s:
            notes.append(
                f"seizure offset at {sz.offset_s:g} s lies past the end ({duration_s:g} s); "
                "the seizure is taken to last to the end."
            )
            sz = SeizureEvent(sz.onset_s, None, sz.label)
        kept.append(sz)
    return tuple(kept), tuple(notes)
