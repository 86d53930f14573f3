"""One entry point for every cohort: a BIDS dataset, a folder of recordings, or one file.

:func:`scan_source` looks at what it is given and calls the matching reader
(:func:`ingest.bids.read_bids` or :func:`ingest.folder.read_folder`); both return a
:class:`CohortScan`: the recordings that could be read and, one per recording that could not,
the :class:`~ingest.errors.RecordingError` saying why. A bad recording never stops a scan.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigError, RecordingError
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
    """

    recordings: tuple[Recording, ...]
    problems: tuple[RecordingError, ...] = ()

    def __post_init__(self) -> None:
        counts = Counter(r.recording_id for r in self.recordings)
        dupes = sorted(k for k, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(
                f"recording ids must be unique, got duplicates {dupes[:5]}; give the "
                "recordings distinct names (or cohorts)."
            )

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


def scan_source(
    source: str | os.PathLike,
    *,
    label_sheet: str | os.PathLike | None = None,
    cohort: str | None = None,
    line_freq: float | None = None,
    check_signals: bool = True,
    allow_empty_soz: bool = False,
) -> CohortScan:
    """Read every recording of a cohort into :class:`~ingest.recording.Recording` records.

    Parameters
    ----------
    source : str | os.PathLike
        A BIDS root (has ``dataset_description.json``), a folder of recordings, or one
        recording file.
    label_sheet : str | os.PathLike | None
        SOZ label sheet (CSV/XLSX, :func:`ingest.labels.read_label_sheet`).
    cohort : str | None
        Cohort name; defaults to the folder's name (``"ds004100"``), or the file's parent
        folder name for a single file.
    line_freq : float | None
        Power-line frequency for sources that do not state it (EDF folders); BIDS datasets
        take it from ``PowerLineFrequency`` and use this only where the sidecar lacks it.
    check_signals : bool
        Open every signal file's header and check it against the metadata (default). Turn off
        only to read sidecars without their signal files.
    allow_empty_soz : bool
        Accept a label sheet that leaves a recording with no SOZ contact (its names match none
        of the recording's channels, or it marks none), with a warning. By default such a
        recording is a problem (:func:`ingest.labels.empty_soz_error`): all its contacts would
        train as negatives.

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
        return read_bids(
            source,
            label_sheet=label_sheet,
            cohort=cohort,
            line_freq=line_freq,
            check_signals=check_signals,
            allow_empty_soz=allow_empty_soz,
        )
    return read_folder(
        source,
        label_sheet=label_sheet,
        cohort=cohort,
        line_freq=line_freq,
        allow_empty_soz=allow_empty_soz,
    )
