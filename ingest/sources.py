"""One entry point for every cohort: a BIDS dataset, a folder of recordings, or one file.

:func:`scan_source` looks at what it is given and calls the matching reader
(:func:`ingest.bids.read_bids` or :func:`ingest.folder.read_folder`); both return a
:class:`CohortScan`: the recordings that could be read and, one per recording that could not,
the :class:`~ingest.errors.RecordingError` saying why. A bad recording never stops a scan.
:func:`scan_sources` scans several sources (what ``soz ingest`` and ``soz score`` are given):
a source that cannot be read at all is one problem, and the other sources are still scanned.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigError, RecordingError, SozkitError
from ingest.labels import LabelEntry, read_label_sheet, unused_sheet_warnings
from ingest.recording import Recording

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortScan:
    """What a reader found in a cohort.

    Parameters
    ----------
    recordings : tuple of Recording
        Readable recordings, sorted by ``recording_id``.
    problems : tuple of RecordingError
        Recordings that could not be read, one entry each (``source`` = the file).
    warnings : tuple of str
        Warnings about the cohort as a whole (a label sheet's subjects that match no
        recording); each recording's own are in ``Recording.warnings``.
    """

    recordings: tuple[Recording, ...]
    problems: tuple[RecordingError, ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        counts = Counter(r.recording_id for r in self.recordings)
        dupes = sorted(k for k, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(
                f"recording ids must be unique, got duplicates {dupes[:5]}; give the "
                "recordings distinct names (or cohorts)."
            )

    @classmethod
    def collect(
        cls,
        recordings: Iterable[Recording],
        problems: Iterable[RecordingError],
        *,
        sheet: Mapping[str, LabelEntry],
        subjects: Iterable[str],
        label_sheet: str | os.PathLike | None,
    ) -> CohortScan:
        """A reader's scan: ``recordings`` sorted by id, and a warning naming the ``sheet``'s
        subjects that none of the cohort's ``subjects`` is
        (:func:`ingest.labels.unused_sheet_warnings`)."""
        unused = unused_sheet_warnings(sheet, subjects, label_sheet) if sheet else ()
        recordings = sorted(recordings, key=lambda r: r.recording_id)
        return cls(recordings=tuple(recordings), problems=tuple(problems), warnings=unused)

    def __len__(self) -> int:
        return len(self.recordings)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subjects with at least one readable recording, sorted."""
        return tuple(sorted({r.subject for r in self.recordings}))

    def by_id(self, recording_id: str) -> Recording:
        """The recording with this id (``KeyError`` naming the known ids if absent)."""
        for rec in self.recordings:
            if rec.recording_id == recording_id:
                return rec
        raise KeyError(f"{recording_id!r} is not in this scan ({len(self)} recordings).")

    def summary(self) -> str:
        """A few lines for people: counts of subjects, recordings, labels, seizures, problems."""
        recs = self.recordings
        labelled = sum(r.labelled for r in recs)
        seizures = sum(len(r.seizures) for r in recs)
        hours = sum(r.duration_s for r in recs) / 3600
        warned = sum(bool(r.warnings) for r in recs)
        lines = [
            f"{len(self.subjects)} subjects, {len(recs)} recordings ({hours:.2f} h), "
            f"{labelled} with SOZ labels, {seizures} seizures, {warned} with warnings, "
            f"{len(self.problems)} unreadable"
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def is_bids_root(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a BIDS dataset root (a folder with ``dataset_description.json``)."""
    return (Path(path) / "dataset_description.json").is_file()


@dataclass(frozen=True)
class SourceOptions:
    """How a source is read: the same for :func:`scan_source`, :func:`scan_sources` and the
    readers (:func:`ingest.bids.read_bids`, :func:`ingest.folder.read_folder`).

    Parameters
    ----------
    label_sheet : str | os.PathLike | None
        SOZ label sheet (CSV/XLSX, :func:`ingest.labels.read_label_sheet`). A folder's
        recordings of subjects it does not list are unlabelled; in a BIDS dataset it is for
        sidecars that do not mark SOZ (ds003029), and where both exist the sheet wins (with a
        warning when they differ).
    cohort : str | None
        Cohort name; defaults to the folder's name (``"ds004100"``), or the file's parent
        folder name for a single file.
    line_freq : float | None
        Power-line frequency (50 or 60 Hz) for recordings that do not state it: every file of
        a folder that does not store it (EDF); in a BIDS dataset only the runs whose
        ``_ieeg.json`` has no ``PowerLineFrequency``.
    check_signals : bool
        BIDS: open every signal file's header and check it against the sidecars (default).
        When ``False`` (sidecars without signal files), ``sfreq`` and ``n_times`` come from
        ``SamplingFrequency`` and ``RecordingDuration``. A folder's files are always opened.
    allow_empty_soz : bool
        Accept a label sheet that leaves a recording with no SOZ contact (its names match none
        of the recording's channels, or it marks none), with a warning. By default such a
        recording is a problem (:func:`ingest.labels.empty_soz_error`): all its contacts would
        train as negatives.
    """

    label_sheet: str | os.PathLike | None = None
    cohort: str | None = None
    line_freq: float | None = None
    check_signals: bool = True
    allow_empty_soz: bool = False

    def read_sheet(self) -> dict[str, LabelEntry]:
        """The label sheet's entries by subject (:func:`ingest.labels.read_label_sheet`);
        empty without a sheet."""
        return read_label_sheet(self.label_sheet) if self.label_sheet else {}


def scan_source(source: str | os.PathLike, options: SourceOptions = SourceOptions()) -> CohortScan:
    """Read every recording of a cohort into :class:`~ingest.recording.Recording` records.

    Parameters
    ----------
    source : str | os.PathLike
        A BIDS root (has ``dataset_description.json``), a folder of recordings, or one
        recording file.
    options : SourceOptions
        Label sheet, cohort name, line frequency ...

    Returns
    -------
    scan : CohortScan
    """
    # The readers import CohortScan from this module, hence the imports here.
    from ingest.bids import read_bids
    from ingest.folder import read_folder

    source = Path(source)
    if not source.exists():
        raise ConfigError(f"source {source} does not exist; give a BIDS root, a folder or a file.")
    if is_bids_root(source):
        return read_bids(source, options)
    return read_folder(source, options)


@dataclass(frozen=True)
class SourceProblem:
    """Something of a source that cannot be ingested: one recording, or the whole source.

    Attributes
    ----------
    source : str
        The file (or, for ``whole_source``, the source as given).
    reason, fix : str
    recording_id : str or None
        The recording, where one is known.
    whole_source : bool
        The source itself could not be read (absent, empty, not a dataset).
    """

    source: str
    reason: str
    fix: str = ""
    recording_id: str | None = None
    whole_source: bool = False


@dataclass(frozen=True)
class SourcesScan:
    """What :func:`scan_sources` found in several sources.

    Attributes
    ----------
    recordings : tuple of Recording
        Readable recordings, each id once, in source order.
    problems : tuple of SourceProblem
        Unreadable recordings, repeated ids and unreadable sources.
    warnings : tuple of (source, message)
        Warnings about whole sources (the recordings' own are in ``Recording.warnings``).
    """

    recordings: tuple[Recording, ...]
    problems: tuple[SourceProblem, ...] = ()
    warnings: tuple[tuple[str, str], ...] = ()

    @property
    def empty_sources(self) -> tuple[SourceProblem, ...]:
        """Problems that are whole sources."""
        return tuple(p for p in self.problems if p.whole_source)


def scan_sources(
    sources: Sequence[str | os.PathLike], options: SourceOptions = SourceOptions()
) -> SourcesScan:
    """Scan several sources (:func:`scan_source` each); one bad source never stops the others.

    A source that cannot be read at all (absent, empty, an invalid dataset) becomes a
    ``whole_source`` problem; a recording id found in two sources is kept from the first and
    reported for the second.

    Parameters
    ----------
    sources : sequence of path
        BIDS roots, folders or files.
    options : SourceOptions
        How each source is read (the one label sheet, line frequency ... of all of them).

    Returns
    -------
    SourcesScan
    """
    recordings: list[Recording] = []
    problems: list[SourceProblem] = []
    warnings: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for source in sources:
        try:
            scan = scan_source(source, options)
        except SozkitError as e:
            reason, fix = str(e), "check the path, or leave this source out."
            if isinstance(e, RecordingError):
                reason, fix = e.reason, e.fix or fix
            elif " Fix: " in reason:
                reason, fix = reason.split(" Fix: ", 1)
            problems.append(SourceProblem(os.fspath(source), reason, fix, whole_source=True))
            continue
        warnings += [(os.fspath(source), w) for w in scan.warnings]
        problems += [SourceProblem(p.source, p.reason, p.fix) for p in scan.problems]
        for rec in scan.recordings:
            if rec.recording_id in seen:
                problems.append(
                    SourceProblem(
                        rec.path,
                        f"recording id {rec.recording_id!r} also given by {seen[rec.recording_id]}.",
                        "give each recording once, or give the cohorts distinct names.",
                        recording_id=rec.recording_id,
                    )
                )
                continue
            seen[rec.recording_id] = rec.path
            recordings.append(rec)
    return SourcesScan(tuple(recordings), tuple(problems), tuple(warnings))
