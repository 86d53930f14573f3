"""BIDS iEEG datasets -> :class:`~ingest.recording.Recording` records (metadata only).

Reads the conventions of the two public cohorts (see ``shared/data/bids-sidecars/README.md``)
and of datasets written the same way (the simulator's):

- **runs**: every ``*_ieeg.json`` under ``sub-*/[ses-*/]ieeg/``; entities parsed by mne-bids.
  Its signal file is the sibling ``*_ieeg.edf|.vhdr|.bdf|.fif|.set`` (the name ``scans.tsv``
  gives when the file is absent and signals are not checked).
- **channels** (``channels.tsv``, read as UTF-8 with or without BOM): ``type`` mapped to MNE types
  (``SEEG`` -> ``seeg``...); ``status=bad`` -> bad. Scalp / EKG channels that ds004100 types
  ``SEEG`` are kept as written: they are marked bad there, so ingest drops them.
- **SOZ / resected** (ds004100): a contact is SOZ iff the comma-separated
  ``status_description`` contains ``soz``, resected iff it contains ``resect``.
- **SOZ from a label sheet** (ds003029 has none in its sidecars): the sheet's names are matched
  to channels case-insensitively, ``TT01`` = ``TT1`` (:func:`ingest.labels.match_contacts`).
- **seizures** from ``events.tsv`` (:func:`ingest.labels.find_seizures`); ``task-ictal`` /
  ``task-interictal`` kept as ``Recording.task``.
- ``PowerLineFrequency`` from ``_ieeg.json``; ``site`` of ``participants.tsv`` -> ``centre``;
  participant ids are stripped (ds004100 has ``"sub-HUP151 "``).

Contradictions: an **error** makes the recording a ``CohortScan.problems`` entry (the scan goes
on); a **warning** is kept in ``Recording.warnings`` and the recording stays usable.

============================================================  ======================================
case                                                          decision
============================================================  ======================================
a malformed sidecar: not UTF-8, invalid JSON or not an        error naming file, field, value and
object, a missing column / cell, a value that is no number    fix (:mod:`ingest.sidecars`); a
(``"12,5"``, ``"abc"``, a list, ``true``, <= 0 where a rate)  ``participants.tsv`` one: a warning
channels.tsv names channels the signal file lacks             error (names them)
channels.tsv and the file have different channel counts       error
``SamplingFrequency`` differs from the file's (> 0.1 %)       error
``RecordingDuration`` differs from the file's by > 1 s        warning (the file's length is used)
signal file missing / truncated / unreadable                  error (:mod:`ingest.signals`)
no channels.tsv, or no SEEG/ECoG/DBS channel in it            error
every intracranial contact is bad                             error: nothing to ingest
a contact with a degenerate EDF header (digital min >= max,  marked bad, with a warning
physical min = max) or one constant value in every probe      (:meth:`ingest.signals.SignalHeader.dead_channels`);
window (start, middle, end of the file)                       error if no contact is left
a subject's runs disagree on SOZ (ds004100 sub-HUP180)        warning; the **union** over the runs
                                                              is used for every run: SOZ is a
                                                              property of the patient, and a
                                                              shorter list is an omission
a label-sheet SOZ name matches no contact                     warning, naming the names
the label sheet leaves a recording with no SOZ contact        error (every contact would train as
                                                              a negative); a warning with
                                                              ``allow_empty_soz=True``
label sheet and sidecar SOZ differ                            warning; the sheet wins
a subject with no SOZ in a dataset that marks SOZ in sidecars warning; ``soz=None`` (unlabelled):
                                                              a surgical candidate always has a
                                                              clinical SOZ, so none means a missing
                                                              annotation, and training on it would
                                                              teach that onset contacts are normal
seizure onset at/after the end of the recording               warning; that seizure is dropped
seizure offset past the end                                   warning; the seizure lasts to the end
``task-ictal`` run with no recognisable onset                 warning (ds003029 sub-pt17 ...)
no ``PowerLineFrequency`` (and no ``line_freq`` given)        warning; ingest must be given it
============================================================  ======================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mne_bids import get_bids_path_from_fname

from ingest.errors import ConfigError, RecordingError, unexpected_error
from ingest.labels import LabelEntry, empty_soz_error, find_seizures, match_contacts
from ingest.recording import INTRACRANIAL_TYPES, Recording, make_recording_id
from ingest.sidecars import (
    is_na,
    json_number,
    read_json_object,
    read_tsv,
    require_columns,
    tsv_float,
)
from ingest.signals import EXTENSIONS, SFREQ_RTOL, check_channels, format_of, read_header
from ingest.sources import CohortScan, SourceOptions

logger = logging.getLogger(__name__)

#: BIDS ``channels.tsv`` ``type`` -> MNE channel type (unknown types become ``misc``).
BIDS_TYPES = {
    "SEEG": "seeg",
    "ECOG": "ecog",
    "DBS": "dbs",
    "EEG": "eeg",
    "ECG": "ecg",
    "EKG": "ecg",
    "EMG": "emg",
    "EOG": "eog",
    "VEOG": "eog",
    "HEOG": "eog",
    "MISC": "misc",
    "TRIG": "stim",
    "REF": "misc",
    "RESP": "resp",
}

#: Tolerated difference between ``RecordingDuration`` and the signal file's length, seconds.
DURATION_TOL_S = 1.0


def _na(value: object) -> bool:
    return is_na(value)


def _tokens(description: str) -> set[str]:
    return {t.strip().lower() for t in description.replace(";", ",").split(",") if t.strip()}


@dataclass
class _Run:
    """Sidecar facts of one run, before the subject-wide decisions."""

    json_path: Path
    entities: dict[str, str | None]
    subject: str
    signal: Path
    names: tuple[str, ...]
    types: tuple[str, ...]
    bad: frozenset[str]
    sidecar_soz: frozenset[str]
    sidecar_resect: frozenset[str]
    meta: dict
    events: list[tuple[float, str]]


def _run_name(run: _Run) -> str:
    ent = run.entities
    parts = [
        f"task-{ent['task']}" if ent["task"] else "",
        f"run-{ent['run']}" if ent["run"] else "",
    ]
    return "_".join(p for p in parts if p) or run.json_path.name


def _signal_path(json_path: Path) -> Path:
    base = json_path.name[: -len("_ieeg.json")]
    for ext in EXTENSIONS:
        candidate = json_path.with_name(f"{base}_ieeg{ext}")
        if candidate.exists() or candidate.is_symlink():
            return candidate
    # not on disk: the name scans.tsv gives, else EDF
    for scans in json_path.parent.parent.glob("*_scans.tsv"):
        for row in read_tsv(scans):
            name = row.get("filename", "")
            if Path(name).name.startswith(f"{base}_ieeg"):
                return json_path.parent.parent / name
    return json_path.with_name(f"{base}_ieeg.edf")


def _read_run(json_path: Path) -> _Run:
    try:
        bp = get_bids_path_from_fname(json_path, check=False)
    except Exception as e:  # mne-bids raises ValueError/RuntimeError on odd names
        raise RecordingError(
            str(json_path),
            f"the file name is not a BIDS name ({type(e).__name__}: {e}).",
            "name it sub-<label>[_ses-<label>]_task-<label>[_run-<index>]_ieeg.json.",
        ) from e
    channels_tsv = json_path.with_name(json_path.name.replace("_ieeg.json", "_channels.tsv"))
    if not channels_tsv.is_file():
        raise RecordingError(
            str(json_path),
            "no channels.tsv beside this _ieeg.json.",
            f"add {channels_tsv.name} (BIDS requires it for iEEG).",
        )
    rows = read_tsv(channels_tsv)
    require_columns(
        rows,
        ("name", "type"),
        channels_tsv,
        fix="write the BIDS columns name, type, units, status.",
    )
    names = tuple(r["name"] for r in rows)
    types = tuple(BIDS_TYPES.get(r["type"].upper(), "misc") for r in rows)
    bad = frozenset(r["name"] for r in rows if r.get("status", "").lower() == "bad")
    soz = frozenset(r["name"] for r in rows if "soz" in _tokens(r.get("status_description", "")))
    resect = frozenset(
        r["name"] for r in rows if "resect" in _tokens(r.get("status_description", ""))
    )
    meta = read_json_object(json_path)
    events_tsv = json_path.with_name(json_path.name.replace("_ieeg.json", "_events.tsv"))
    events = []
    if events_tsv.is_file():
        for line, row in enumerate(read_tsv(events_tsv), start=2):
            text = row.get("trial_type") or row.get("value") or ""
            onset = tsv_float(row, "onset", events_tsv, line=line)
            if onset is not None:
                events.append((onset, text))
    entities = {
        "session": bp.session,
        "task": bp.task,
        "acquisition": bp.acquisition,
        "run": None if bp.run is None else str(bp.run),
    }
    return _Run(
        json_path=json_path,
        entities=entities,
        subject=bp.subject,
        signal=_signal_path(json_path),
        names=names,
        types=types,
        bad=bad,
        sidecar_soz=soz,
        sidecar_resect=resect,
        meta=meta,
        events=events,
    )


def read_participants(root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Rows of ``participants.tsv`` by subject label (``sub-`` and white space stripped)."""
    path = Path(root) / "participants.tsv"
    if not path.is_file():
        return {}
    out = {}
    for row in read_tsv(path):
        pid = row.get("participant_id", "").strip()
        if pid:
            out[pid[4:] if pid.startswith("sub-") else pid] = row
    return out


def read_bids(
    root: str | os.PathLike,
    options: SourceOptions = SourceOptions(),
    *,
    subjects: Sequence[str] | None = None,
) -> CohortScan:
    """Read a BIDS iEEG dataset into :class:`~ingest.recording.Recording` records.

    Parameters
    ----------
    root : str | os.PathLike
        The dataset root (holds ``dataset_description.json``).
    options : SourceOptions
        Label sheet, cohort (default: the root folder's name), line frequency for runs whose
        ``_ieeg.json`` has none, whether to check the signal files, empty-SOZ labels.
    subjects : sequence of str or None
        Only these subjects (labels without ``sub-``); default every subject. Subject-wide
        rules (the SOZ union over a subject's runs) apply as when the whole dataset is read.

    Returns
    -------
    scan : CohortScan
        Decisions on contradictions: see the module docstring.

    Raises
    ------
    ConfigError
        If ``root`` is not a BIDS root or the label sheet is invalid.
    """
    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise ConfigError(
            f"{root} has no dataset_description.json, so it is not a BIDS root; give the "
            "dataset's top folder, or use read_folder for plain recordings."
        )
    label_sheet = options.label_sheet
    cohort = options.cohort or root.resolve().name
    sheet = options.read_sheet()
    dataset_notes: list[str] = []
    try:
        participants = read_participants(root)
    except RecordingError as e:  # only the centres come from it: a warning, not a failure
        participants = {}
        dataset_notes.append(f"participants.tsv unreadable, centres unknown: {e}")

    runs: list[_Run] = []
    problems: list[RecordingError] = []
    patterns = ["sub-*"] if subjects is None else [f"sub-{s}" for s in sorted(set(subjects))]
    json_paths = sorted(p for pat in patterns for p in root.glob(f"{pat}/**/ieeg/*_ieeg.json"))
    for json_path in json_paths:
        try:
            runs.append(_read_run(json_path))
        except RecordingError as e:
            problems.append(e)
        except Exception as e:  # a reader bug must not sink the cohort: report it, go on
            problems.append(unexpected_error(json_path, e))
    if not runs and not problems:
        logger.warning("no *_ieeg.json under %s", root)

    dataset_marks_soz = any(run.sidecar_soz for run in runs)
    dataset_marks_resect = any(run.sidecar_resect for run in runs)
    by_subject: dict[str, list[_Run]] = {}
    for run in runs:
        by_subject.setdefault(run.subject, []).append(run)

    recordings = []
    for subject, subject_runs in sorted(by_subject.items()):
        subject_notes = list(dataset_notes)
        soz_union = frozenset().union(*(r.sidecar_soz for r in subject_runs))
        resect_union = frozenset().union(*(r.sidecar_resect for r in subject_runs))
        # a run disagrees when it has a channel another run marks soz, unmarked
        short = {
            _run_name(r): len((soz_union & set(r.names)) - r.sidecar_soz)
            for r in subject_runs
            if (soz_union & set(r.names)) - r.sidecar_soz
        }
        if short:
            subject_notes.append(
                f"the runs of sub-{subject} disagree on SOZ: "
                f"{', '.join(f'{k} leaves {n} unmarked' for k, n in short.items())} of the "
                f"{len(soz_union)} contacts other runs mark soz; using the union for every run."
            )
        for run in subject_runs:
            try:
                rec = _recording(
                    run,
                    cohort=cohort,
                    participant=participants.get(subject, {}),
                    sheet_entry=sheet.get(subject),
                    options=options,
                    soz_union=soz_union,
                    resect_union=resect_union,
                    dataset_marks_soz=dataset_marks_soz,
                    dataset_marks_resect=dataset_marks_resect,
                    notes=subject_notes,
                )
            except RecordingError as e:
                problems.append(e)
                continue
            except Exception as e:  # as above
                problems.append(unexpected_error(run.json_path, e))
                continue
            for note in rec.warnings:
                logger.debug("%s: %s", rec.recording_id, note)
            recordings.append(rec)
    return CohortScan.collect(
        recordings, problems, sheet=sheet, subjects=by_subject, label_sheet=label_sheet
    )


def _recording(
    run: _Run,
    *,
    cohort: str,
    participant: dict[str, str],
    sheet_entry: LabelEntry | None,
    options: SourceOptions,
    soz_union: frozenset[str],
    resect_union: frozenset[str],
    dataset_marks_soz: bool,
    dataset_marks_resect: bool,
    notes: list[str],
) -> Recording:
    label_sheet = options.label_sheet
    source = str(run.json_path)
    notes = list(notes)
    meta = run.meta
    ent = run.entities
    recording_id = make_recording_id(
        cohort, run.subject, ent["session"], ent["task"], ent["acquisition"], ent["run"]
    )
    intracranial = [n for n, t in zip(run.names, run.types, strict=True) if t in INTRACRANIAL_TYPES]
    if not intracranial:
        raise RecordingError(
            source,
            f"{recording_id}: channels.tsv has no SEEG/ECOG/DBS channel "
            f"(types: {sorted(set(run.types))}).",
            "type the intracranial contacts SEEG or ECOG in channels.tsv.",
        )
    if all(n in run.bad for n in intracranial):
        raise RecordingError(
            source,
            f"{recording_id}: all {len(intracranial)} intracranial contacts are status=bad; "
            "nothing is left to ingest.",
            "set status=good on the contacts that carry usable signal in channels.tsv.",
        )

    # sampling rate and length: the file's header when checked, else the sidecar's
    json_sfreq = json_number(meta, "SamplingFrequency", run.json_path, positive=True, unit="Hz")
    json_dur = json_number(meta, "RecordingDuration", run.json_path, positive=True, unit="s")
    fmt = format_of(run.signal)
    header_notes: tuple[str, ...] = ()
    bad = run.bad
    if options.check_signals:
        header = read_header(run.signal, fmt)
        header_notes = tuple(f"MNE: {w}" for w in header.warnings)
        dead, dead_notes = header.dead_channels(n for n in intracranial if n not in bad)
        if dead:
            bad = bad | dead
            header_notes = (*header_notes, *dead_notes)
            if all(n in bad for n in intracranial):
                raise RecordingError(
                    str(run.signal),
                    f"{recording_id}: no intracranial contact carries signal: "
                    + " ".join(dead_notes),
                    "re-export the signal file from the recording system (valid digital and "
                    "physical ranges, connected contacts).",
                )
        sfreq, n_times = header.sfreq, header.n_times
        check_channels(recording_id, run.names, header)  # sfreq/n_times are the file's own
        if json_sfreq is not None and not np.isclose(json_sfreq, sfreq, rtol=SFREQ_RTOL):
            raise RecordingError(
                str(run.signal),
                f"{recording_id}: SamplingFrequency {json_sfreq:g} Hz in {run.json_path.name}, "
                f"{sfreq:g} Hz in the signal file.",
                "correct SamplingFrequency in the _ieeg.json sidecar to the file's rate.",
            )
        if json_dur is not None and abs(json_dur - header.duration_s) > DURATION_TOL_S:
            notes.append(
                f"RecordingDuration {json_dur:g} s in the sidecar, {header.duration_s:g} s in "
                "the signal file; using the file's."
            )
    else:
        if json_sfreq is None or json_dur is None:
            raise RecordingError(
                source,
                f"{recording_id}: without the signal file, SamplingFrequency and "
                "RecordingDuration are needed, and the sidecar lacks one.",
                "add them to the _ieeg.json sidecar, or read with check_signals=True.",
            )
        sfreq, n_times = json_sfreq, int(round(json_dur * json_sfreq))

    # SOZ and resection
    channels = set(run.names)
    soz = soz_union & channels if soz_union else None
    resected = resect_union & channels if dataset_marks_resect else None
    sheet_soz = sheet_entry.soz_for(run.signal.name) if sheet_entry else None
    if sheet_soz is not None:
        matched, unmatched = match_contacts(sheet_soz, run.names)
        if unmatched:
            notes.append(
                f"label sheet SOZ name(s) {', '.join(unmatched)} of sub-{run.subject} match no "
                f"contact of this recording; check the spelling in {Path(label_sheet).name}."
            )
        if soz is not None and matched != soz:
            notes.append(
                f"the label sheet ({len(matched)} SOZ contacts) and channels.tsv "
                f"({len(soz)}) disagree; using the label sheet."
            )
        soz = matched
        if not matched:
            if not options.allow_empty_soz:
                raise empty_soz_error(
                    source,
                    recording_id=recording_id,
                    subject=run.subject,
                    names=sheet_soz,
                    channels=run.names,
                    sheet=label_sheet,
                )
            notes.append(
                f"sub-{run.subject} is labelled with no SOZ contact in this recording; all its "
                "contacts count as negatives in training."
            )
    elif soz is None and dataset_marks_soz:
        notes.append(
            f"sub-{run.subject} has no contact marked soz in any channels.tsv while this "
            "dataset marks SOZ for other subjects; treated as unlabelled (soz=None). Mark its "
            "SOZ in channels.tsv or give a label sheet."
        )
    elif soz is None and label_sheet is not None and sheet_entry is None:
        notes.append(
            f"sub-{run.subject} is not in the label sheet {Path(label_sheet).name}; unlabelled."
        )

    seizures, sz_notes = find_seizures(run.events, duration_s=n_times / sfreq)
    notes.extend(sz_notes)
    if ent["task"] == "ictal" and not seizures:
        labels = sorted({t for _, t in run.events if t[:1] not in "+-0123456789"})[:6]
        notes.append(
            f"task-ictal run with no recognisable seizure onset in events.tsv (labels: "
            f"{labels}); its clips will all be labelled interictal."
        )

    lf = json_number(meta, "PowerLineFrequency", run.json_path, positive=True, unit="Hz")
    lf = options.line_freq if lf is None else lf
    if lf is None:
        notes.append("no PowerLineFrequency in the sidecar; give line_freq to ingest.")

    centre = participant.get("site")
    return Recording(
        recording_id=recording_id,
        cohort=cohort,
        subject=run.subject,
        path=str(run.signal),
        sfreq=sfreq,
        n_times=n_times,
        channels=run.names,
        ch_types=run.types,
        bad=bad,
        soz=soz,
        resected=resected,
        seizures=seizures,
        session=ent["session"],
        task=ent["task"],
        run=ent["run"],
        acquisition=ent["acquisition"],
        centre=None if _na(centre) else centre,
        line_freq=lf,
        fmt=fmt,
        warnings=(*header_notes, *notes),
    )
