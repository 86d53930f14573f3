"""Non-BIDS cohorts: a folder of recordings (any format MNE reads) plus a SOZ label sheet.

This is how private hospital cohorts arrive (CHUL: EDF files of up to 20 hours and a sheet).

- **Files**: every file under the folder (recursively) whose name ends in one of
  :data:`ingest.signals.EXTENSIONS` (a BrainVision recording by its ``.vhdr``); hidden files
  and folders are skipped. The recording name is the path relative to the folder without the
  extension (``night1``, ``CHUL07/night1``).
- **Subject**: the label sheet's ``recording`` column when it names the file (stem or name);
  else a sheet subject equal to the file stem or to its first ``_``/``-``/``.``-separated part
  (``CHUL07_night1.edf`` -> ``CHUL07``; ``sub-`` prefixes ignored); else the file stem.
- **Channel types**: EDF, BDF and BrainVision store none (MNE says ``eeg`` for all), so the
  rule of :func:`infer_channel_type` applies: names of the 10-20 scalp system and ``EKG``/
  ``ECG``/``EMG``/``EOG``/``DC``/trigger/annotation-like names get their non-intracranial type,
  **every other channel is SEEG**. FIF files carry real types, which are kept.
- **SOZ**: from the sheet (matched as in BIDS, case-insensitive, ``TT01`` = ``TT1``); names
  matching no channel are a warning; a sheet entry that leaves the file with no SOZ contact is an
  error unless ``allow_empty_soz`` (then a warning); a file with no sheet entry is unlabelled
  (``soz=None``).
- **Seizures**: from the file's own annotations (EDF+ TAL, BrainVision markers), recognised by
  :func:`ingest.labels.find_seizures`.
- **Dead channels**: contacts whose EDF/BDF header range is degenerate (digital minimum >=
  maximum, physical minimum = maximum: :func:`ingest.edf_header.degenerate_channels`) or whose
  samples are one constant value in every probe window
  (:meth:`ingest.signals.SignalHeader.dead_channels`) are marked bad with a warning; a file with
  no intracranial contact left is an error.
- **Line frequency**: the file's (FIF stores it) or the ``line_freq`` argument; a recording
  with neither is an error (``problems``): notch filtering the wrong frequency ruins a cohort
  silently, so it is never guessed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

from ingest.errors import ConfigError, RecordingError, unexpected_error
from ingest.labels import LabelEntry, empty_soz_error, find_seizures, match_contacts
from ingest.recording import INTRACRANIAL_TYPES, Recording, make_recording_id
from ingest.signals import EXTENSIONS, format_of, read_header
from ingest.sources import CohortScan, SourceOptions

logger = logging.getLogger(__name__)

#: Scalp EEG (10-20 / 10-10 names, upper case) that clinical SEEG recordings carry alongside.
SCALP_NAMES = frozenset(
    "FP1 FP2 FPZ AF3 AF4 AF7 AF8 AFZ F1 F2 F3 F4 F5 F6 F7 F8 F9 F10 FZ FC1 FC2 FC3 FC4 FC5 FC6 "
    "FCZ FT7 FT8 FT9 FT10 C1 C2 C3 C4 C5 C6 CZ CP1 CP2 CP3 CP4 CP5 CP6 CPZ T3 T4 T5 T6 T7 T8 T9 "
    "T10 TP7 TP8 TP9 TP10 P1 P2 P3 P4 P5 P6 P7 P8 P9 P10 PZ PO3 PO4 PO7 PO8 POZ O1 O2 OZ A1 A2 "
    "M1 M2".split()
)
_NON_BRAIN = (
    (re.compile(r"^(EKG|ECG)\d*$"), "ecg"),
    (re.compile(r"^EMG\d*$"), "emg"),
    (re.compile(r"^(EOG|LOC|ROC)\d*$"), "eog"),
    (re.compile(r"^(DC|TRIG|STI|STIM|EVENT|STATUS|MARK|PHOTIC|ANNOTATIONS?)\d*$"), "stim"),
    (re.compile(r"^(RESP|SPO2|PULSE|PLETH|OSAT|PR|HR|BP|TEMP)\d*$"), "misc"),
)


def infer_channel_type(name: str) -> str:
    """MNE channel type of a channel from a file that stores none (EDF, BrainVision).

    Scalp 10-20 names -> ``"eeg"``; ``EKG1``/``ECG`` -> ``"ecg"``; ``EMG``, ``EOG``,
    ``DC1``/trigger/annotation -> ``"emg"``/``"eog"``/``"stim"``; physiological monitors ->
    ``"misc"``; everything else ``"seeg"``. Prefixes like ``"EEG "`` and reference suffixes
    like ``"-REF"`` are ignored when matching.
    """
    key = re.sub(r"^(EEG|POL|SEEG)\s+", "", name.strip().upper())
    key = re.sub(r"[-_ ]?(REF|LE|AVG|AR)$", "", key).replace(" ", "")
    if key in SCALP_NAMES:
        return "eeg"
    for pattern, kind in _NON_BRAIN:
        if pattern.match(key):
            return kind
    return "seeg"


def _subject_for(stem: str, rel: str, sheet: dict[str, LabelEntry]) -> str:
    for entry in sheet.values():
        if rel in entry.by_recording or stem in entry.by_recording:
            return entry.subject
    lowered = {s.lower(): s for s in sheet}
    bare = stem[4:] if stem.lower().startswith("sub-") else stem
    if bare.lower() in lowered:
        return lowered[bare.lower()]
    first = re.split(r"[_.\-]", bare, maxsplit=1)[0]
    if first.lower() in lowered:
        return lowered[first.lower()]
    return bare


def recording_from_file(
    path: str | os.PathLike,
    *,
    cohort: str | None = None,
    subject: str | None = None,
    line_freq: float | None = None,
    soz: frozenset[str] | set[str] | list[str] | None = None,
    name: str | None = None,
    allow_empty_soz: bool = False,
    label_sheet: str | os.PathLike | None = None,
) -> Recording:
    """Describe one signal file as a :class:`~ingest.recording.Recording`.

    Parameters
    ----------
    path : str | os.PathLike
        The signal file (``.edf``, ``.bdf``, ``.vhdr``, ``.fif``...).
    cohort : str | None
        Cohort name; defaults to the parent folder's name.
    subject : str | None
        Subject label; defaults to the file stem.
    line_freq : float | None
        Power-line frequency; required unless the file stores it (FIF).
    soz : collection of str | None
        SOZ contact names (matched to the file's channels, see
        :func:`ingest.labels.match_contacts`); ``None`` = unlabelled.
    name : str | None
        Recording name used in the id; defaults to the file stem.
    allow_empty_soz : bool
        Accept a ``soz`` that matches no channel (or is empty), with a warning; by default that
        is a :class:`RecordingError` (:func:`ingest.labels.empty_soz_error`): every contact
        would train as a negative.
    label_sheet : path or None
        Where ``soz`` came from, named in messages.

    Returns
    -------
    rec : Recording

    Raises
    ------
    RecordingError
        If the file cannot be read, has no intracranial channel, or no line frequency is known.
    """
    path = Path(path)
    header = read_header(path, format_of(path))
    cohort = cohort or path.resolve().parent.name
    stem = path.name[: -len(next(e for e in EXTENSIONS if path.name.lower().endswith(e)))]
    subject = (subject or stem).strip()
    name = name or stem
    recording_id = make_recording_id(cohort, subject, None if name == subject else name)
    lf = line_freq if line_freq is not None else header.line_freq
    if lf is None:
        raise RecordingError(
            str(path),
            f"{recording_id}: the power-line frequency is unknown (this {header.fmt} file does "
            "not store it).",
            "pass line_freq=50 (Europe, most of Asia/Africa) or 60 (the Americas) to the "
            "reader (`--line-freq` on the command line).",
        )
    if header.fmt == "fif":
        types = header.ch_types
    else:
        types = tuple(infer_channel_type(c) for c in header.ch_names)
    intracranial = [
        n for n, t in zip(header.ch_names, types, strict=True) if t in INTRACRANIAL_TYPES
    ]
    bad, dead_notes = header.dead_channels(intracranial)
    if intracranial and all(n in bad for n in intracranial):
        raise RecordingError(
            str(path),
            f"{recording_id}: no intracranial contact carries signal: " + " ".join(dead_notes),
            "re-export the file from the recording system (valid digital and physical ranges, "
            "connected contacts).",
        )
    if not any(t in INTRACRANIAL_TYPES for t in types):
        raise RecordingError(
            str(path),
            f"{recording_id}: none of the {len(types)} channels looks intracranial "
            f"({', '.join(header.ch_names[:8])} ...).",
            "rename the contacts (shaft letters + number, e.g. LA1) or convert the file to FIF "
            "with channel types set to seeg.",
        )
    notes = [f"MNE: {w}" for w in header.warnings]
    notes.extend(dead_notes)
    matched = None
    if soz is not None:
        matched, unmatched = match_contacts(soz, header.ch_names)
        if unmatched:
            notes.append(
                f"SOZ name(s) {', '.join(unmatched)} match no channel of this file; check the "
                "label sheet's spelling."
            )
        if not matched:
            if not allow_empty_soz:
                raise empty_soz_error(
                    path,
                    recording_id=recording_id,
                    subject=subject,
                    names=soz,
                    channels=header.ch_names,
                    sheet=label_sheet,
                )
            notes.append("labelled with no SOZ contact: all contacts count as negatives.")
    seizures, sz_notes = find_seizures(
        [(onset, text) for onset, _, text in header.annotations], duration_s=header.duration_s
    )
    notes.extend(sz_notes)
    return Recording.from_header(
        header,
        recording_id,
        cohort,
        subject,
        ch_types=types,
        bad=bad,
        soz=matched,
        seizures=seizures,
        run=None if name == subject else name,
        line_freq=float(lf),
        warnings=tuple(notes),
    )


def _signal_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if any(path.name.lower().endswith(ext) for ext in EXTENSIONS):
            files.append(path)
    return files


def read_folder(root: str | os.PathLike, options: SourceOptions = SourceOptions()) -> CohortScan:
    """Read a folder of recordings (or one file) and its label sheet.

    Parameters
    ----------
    root : str | os.PathLike
        Folder searched recursively, or a single signal file.
    options : SourceOptions
        Label sheet, cohort (default: the folder's name), the line frequency of every file
        that does not store it, empty-SOZ labels (``check_signals`` does not apply: every
        file is opened).

    Returns
    -------
    scan : CohortScan
        Rules and decisions: see the module docstring.

    Raises
    ------
    ConfigError
        If ``root`` does not exist, holds no signal file, or the sheet is invalid.
    """
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"{root} does not exist; give a folder of recordings or one file.")
    label_sheet, line_freq = options.label_sheet, options.line_freq
    if line_freq is not None and line_freq <= 0:
        raise ConfigError(f"{line_freq=} must be positive (50 or 60 Hz).")
    base = root.parent if root.is_file() else root
    cohort = options.cohort or base.resolve().name
    sheet = options.read_sheet()
    files = _signal_files(root)
    if not files:
        raise ConfigError(
            f"{root} holds no signal file ({', '.join(sorted(EXTENSIONS))}); check the path."
        )
    recordings, problems, seen, subjects = [], [], {}, set()
    for path in files:
        ext = next(e for e in EXTENSIONS if path.name.lower().endswith(e))
        rel = str(path.relative_to(base))[: -len(ext)]
        stem = path.name[: -len(ext)]
        subject = _subject_for(stem, rel, sheet)
        subjects.add(subject)
        entry = sheet.get(subject)
        soz = entry.soz_for(rel) if entry else None
        if entry is not None and entry.soz_for(stem) is not None:
            soz = entry.soz_for(stem)
        name = rel.replace(os.sep, "/")
        try:
            rec = recording_from_file(
                path,
                cohort=cohort,
                subject=subject,
                line_freq=line_freq,
                soz=soz,
                name=name,
                allow_empty_soz=options.allow_empty_soz,
                label_sheet=label_sheet,
            )
        except RecordingError as e:
            problems.append(e)
            continue
        except Exception as e:  # a reader bug must not sink the cohort: report it, go on
            problems.append(unexpected_error(path, e))
            continue
        if sheet and entry is None:
            rec = _with_note(rec, f"subject {subject!r} is not in the label sheet; unlabelled.")
        if rec.recording_id in seen:
            problems.append(
                RecordingError(
                    str(path),
                    f"recording id {rec.recording_id} is already taken by {seen[rec.recording_id]}.",
                    "rename one of the files (two formats of one recording?).",
                )
            )
            continue
        seen[rec.recording_id] = str(path)
        recordings.append(rec)
    return CohortScan.collect(
        recordings, problems, sheet=sheet, subjects=subjects, label_sheet=label_sheet
    )


def _with_note(rec: Recording, note: str) -> Recording:
    return replace(rec, warnings=(*rec.warnings, note))
