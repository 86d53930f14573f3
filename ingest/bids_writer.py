"""Write simulated SEEG runs as a BIDS iEEG dataset, the way OpenNeuro ds004100 is written.

Layout (``sub-<id>/ses-presurgery/ieeg/``)::

    sub-sim001_ses-presurgery_task-ictal_acq-seeg_run-01_ieeg.edf       signals, physical unit uV
    sub-sim001_ses-presurgery_task-ictal_acq-seeg_run-01_ieeg.json      SamplingFrequency, PowerLineFrequency...
    sub-sim001_ses-presurgery_task-ictal_acq-seeg_run-01_channels.tsv   status good/bad, status_description soz/resect
    sub-sim001_ses-presurgery_task-ictal_acq-seeg_run-01_events.tsv     sz onset / sz offset (ictal runs only)
    sub-sim001_ses-presurgery_acq-seeg_space-fsaverage_electrodes.tsv   contact coordinates (mm)
    sub-sim001_ses-presurgery_acq-seeg_space-fsaverage_coordsystem.json

plus ``participants.tsv`` (with ``site``), ``dataset_description.json`` and the ground truth in
``derivatives/sozkit-truth/sub-<id>/``: ``*_desc-truth_channels.tsv`` (true SOZ vs clinical
label per contact), ``*_desc-truth_regions.tsv`` (EZ/PZ roles, excitability, onset per ictal run)
and one ``*_desc-truth_events.tsv`` per run (region onsets, interictal spikes, ripples,
artefacts, why a contact is bad). Everything is deterministic: no clock is read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import edfio
import numpy as np

from ingest.fileio import write_text

if TYPE_CHECKING:
    from ingest.implant import Anatomy, Implantation

logger = logging.getLogger(__name__)

SESSION = "presurgery"
ACQUISITION = "seeg"
SPACE = "fsaverage"
TRUTH_DIR = Path("derivatives") / "sozkit-truth"
_START = dt.datetime(2020, 1, 6, 9, 0, 0)


@dataclass
class SubjectData:
    """One simulated subject: who, where, what was implanted, and the truth."""

    subject: str
    site: str
    line_freq: float
    naming: str
    sfreq: float
    anatomy: Anatomy
    implantation: Implantation
    gain: np.ndarray  # (n_contacts, n_regions)
    role: tuple[str, ...]  # per region: "ez" | "pz" | "healthy"
    x0_rest: np.ndarray
    x0_ictal: np.ndarray
    soz_true: np.ndarray  # (n_contacts,) bool
    soz_label: np.ndarray
    resected: np.ndarray
    age: int
    sex: str
    hand: str
    contact_gain: np.ndarray
    contact_exponent: np.ndarray
    line_amp: np.ndarray
    difficulty: float
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``S`` (seizure free) when the resection covers every true SOZ contact, else ``F``."""
        return "S" if np.all(self.resected[self.soz_true]) else "F"


@dataclass(frozen=True)
class RunData:
    """Signals and annotations of one run.

    Parameters
    ----------
    data : ndarray, shape (n_channels, n_times), float32, µV
    events : tuple of (onset_s, trial_type, value)
    truth_events : tuple of (onset_s, kind, where)
    region_onsets, region_offsets : ndarray, shape (n_regions,) or None
    """

    task: str
    run: int
    sfreq: float
    names: tuple[str, ...]
    data: np.ndarray
    bad: frozenset[str]
    events: tuple[tuple[float, str, int], ...]
    truth_events: tuple[tuple[float, str, str], ...]
    region_onsets: np.ndarray | None
    region_offsets: np.ndarray | None

    def summary(self) -> dict[str, Any]:
        """What the subject keeps of a run once its signals are written."""
        return {
            "task": self.task,
            "run": self.run,
            "region_onsets": self.region_onsets,
            "region_offsets": self.region_offsets,
        }


def bids_stem(subject: str, task: str | None = None, run: int | None = None) -> str:
    """``sub-X_ses-presurgery[_task-T]_acq-seeg[_run-NN]``."""
    parts = [f"sub-{subject}", f"ses-{SESSION}"]
    if task:
        parts.append(f"task-{task}")
    parts.append(f"acq-{ACQUISITION}")
    if run is not None:
        parts.append(f"run-{run:02d}")
    return "_".join(parts)


def write_subject(root: Path, s: SubjectData) -> None:
    """Write the per-subject files that do not depend on runs (electrodes, coordsystem, truth)."""
    ieeg = root / f"sub-{s.subject}" / f"ses-{SESSION}" / "ieeg"
    ieeg.mkdir(parents=True, exist_ok=True)
    imp = s.implantation
    rows = [
        [n, *(f"{v:.3f}" for v in p), "n/a"] for n, p in zip(imp.names, imp.positions, strict=True)
    ]
    rows += [[n, "n/a", "n/a", "n/a", "n/a"] for n in ("C3", "EKG1")]
    stem = f"sub-{s.subject}_ses-{SESSION}_acq-{ACQUISITION}_space-{SPACE}"
    _write_tsv(ieeg / f"{stem}_electrodes.tsv", ["name", "x", "y", "z", "size"], rows)
    _write_json(
        ieeg / f"{stem}_coordsystem.json",
        {
            "iEEGCoordinateSystem": SPACE,
            "iEEGCoordinateSystemDescription": "Synthetic head frame of the sozkit simulator "
            "(x left to right, y posterior to anterior, z inferior to superior), fsaverage-sized.",
            "iEEGCoordinateUnits": "mm",
        },
    )
    truth = root / TRUTH_DIR / f"sub-{s.subject}"
    truth.mkdir(parents=True, exist_ok=True)
    ez = [i for i, r in enumerate(s.role) if r == "ez"]
    ez_gain = s.gain[:, ez].sum(axis=1)
    dominant = s.gain.argmax(axis=1)
    rows = [
        [
            name, shaft, int(s.soz_true[c]), int(s.soz_label[c]), int(s.resected[c]),
            f"{ez_gain[c]:.4f}", f"{ez_gain[c] / s.gain[c].sum():.4f}",
            f"region-{dominant[c]:02d}", s.role[dominant[c]],
        ]
        for c, (name, shaft) in enumerate(zip(imp.names, imp.shafts, strict=True))
    ]  # fmt: skip
    _write_tsv(
        truth / f"sub-{s.subject}_desc-truth_channels.tsv",
        ["name", "shaft", "soz_true", "soz_label", "resected", "ez_gain", "ez_share",
         "dominant_region", "dominant_role"],
        rows,
    )  # fmt: skip


def write_run(root: Path, s: SubjectData, run: RunData) -> Path:
    """Write the EDF and the sidecars of one run; returns the EDF path."""
    ieeg = root / f"sub-{s.subject}" / f"ses-{SESSION}" / "ieeg"
    stem = bids_stem(s.subject, run.task, run.run)
    edf_path = ieeg / f"{stem}_ieeg.edf"
    _write_edf(edf_path, run, s)
    n_times = run.data.shape[1]
    # ds004100 (written by mne-bids) records the time of the last sample as the duration.
    duration = (n_times - 1) / run.sfreq
    n_contacts = s.implantation.n_contacts
    _write_json(
        ieeg / f"{stem}_ieeg.json",
        {
            "TaskName": run.task,
            "Manufacturer": "sozkit-simulator",
            "PowerLineFrequency": s.line_freq,
            "SamplingFrequency": run.sfreq,
            "SoftwareFilters": "n/a",
            "RecordingDuration": duration,
            "RecordingType": "continuous",
            "iEEGReference": "n/a",
            "ECOGChannelCount": 0,
            "SEEGChannelCount": len(run.names),
            "EEGChannelCount": 0,
            "EOGChannelCount": 0,
            "ECGChannelCount": 0,
            "EMGChannelCount": 0,
            "MiscChannelCount": 0,
            "TriggerChannelCount": 0,
        },
    )
    rows = []
    for i, name in enumerate(run.names):
        desc = []
        if i < n_contacts and s.resected[i]:
            desc.append("resect")
        if i < n_contacts and s.soz_label[i]:
            desc.append("soz")
        rows.append(
            [name, "SEEG", "µV", "0.0", f"{run.sfreq / 2:.1f}", "StereoEEG", f"{run.sfreq:.1f}",
             "bad" if name in run.bad else "good", ",".join(desc) or "n/a"]
        )  # fmt: skip
    _write_tsv(
        ieeg / f"{stem}_channels.tsv",
        ["name", "type", "units", "low_cutoff", "high_cutoff", "description",
         "sampling_frequency", "status", "status_description"],
        rows,
    )  # fmt: skip
    if run.events:
        _write_tsv(
            ieeg / f"{stem}_events.tsv",
            ["onset", "duration", "trial_type", "value", "sample"],
            [[_num(on), "0.0", kind, str(value), str(int(round(on * run.sfreq)))]
             for on, kind, value in run.events],
        )  # fmt: skip
    truth = root / TRUTH_DIR / f"sub-{s.subject}"
    _write_tsv(
        truth / f"{stem}_desc-truth_events.tsv",
        ["onset", "duration", "trial_type", "channel"],
        [[f"{on:.4f}", "0.0", kind, where] for on, kind, where in run.truth_events],
    )
    return edf_path


def write_dataset_files(root: Path, subjects: list[SubjectData], cfg: Any) -> None:
    """Write the dataset-level files: description, participants, scans, README, truth regions."""
    config = _jsonable(asdict(cfg))
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "sozkit synthetic SEEG cohort",
            "BIDSVersion": "1.8.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["sozkit simulator"],
            "GeneratedBy": [{"Name": "sozkit.ingest.simulate", "Description": json.dumps(config)}],
        },
    )
    write_text(
        root / "README",
        "Synthetic stereo-EEG cohort (Epileptor network + simulated SEEG implantation), written "
        "with the conventions of OpenNeuro ds004100. Clinical SOZ / resection labels are in "
        "channels.tsv status_description; the true onset contacts are in "
        "derivatives/sozkit-truth.\n",
    )
    _write_tsv(
        root / "participants.tsv",
        ["participant_id", "age", "sex", "hand", "outcome", "implant", "site"],
        [
            [f"sub-{s.subject}", str(s.age), s.sex, s.hand, s.outcome, "SEEG", s.site]
            for s in subjects
        ],
    )
    _write_json(
        root / "participants.json",
        {
            "participant_id": {"Description": "Unique participant identifier"},
            "age": {"Description": "Age of the participant", "Units": "years"},
            "sex": {"Description": "Biological sex", "Levels": {"F": "female", "M": "male"}},
            "hand": {"Description": "Handedness", "Levels": {"R": "right", "L": "left"}},
            "outcome": {
                "Description": "Simulated surgical outcome: S if the resection covers every true "
                "onset contact",
                "Levels": {"S": "seizure free", "F": "recurring seizures"},
            },
            "implant": {"Description": "Implantation type"},
            "site": {"Description": "Recording centre (line frequency, naming habits, rates)"},
        },
    )
    _write_json(
        root / TRUTH_DIR / "dataset_description.json",
        {
            "Name": "sozkit simulator ground truth",
            "BIDSVersion": "1.8.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "sozkit.ingest.simulate"}],
        },
    )
    for s in subjects:
        ses = root / f"sub-{s.subject}" / f"ses-{SESSION}"
        rows = []
        for j, r in enumerate(s.runs):
            name = f"ieeg/{bids_stem(s.subject, r['task'], r['run'])}_ieeg.edf"
            rows.append([name, _acq_time(s, j).strftime("%Y-%m-%dT%H:%M:%S")])
        _write_tsv(ses / f"sub-{s.subject}_ses-{SESSION}_scans.tsv", ["filename", "acq_time"], rows)
        header = ["region", "x", "y", "z", "role", "x0_rest", "x0_ictal"]
        ictal = [r for r in s.runs if r["task"] == "ictal"]
        for r in ictal:
            header += [f"run-{r['run']:02d}_onset_s", f"run-{r['run']:02d}_offset_s"]
        rows = []
        for i in range(s.anatomy.n_regions):
            row = [f"region-{i:02d}", *(f"{v:.3f}" for v in s.anatomy.positions[i]), s.role[i],
                   f"{s.x0_rest[i]:.4f}", f"{s.x0_ictal[i]:.4f}"]  # fmt: skip
            for r in ictal:
                row += [_num(r["region_onsets"][i]), _num(r["region_offsets"][i])]
            rows.append(row)
        _write_tsv(
            root / TRUTH_DIR / f"sub-{s.subject}" / f"sub-{s.subject}_desc-truth_regions.tsv",
            header,
            rows,
        )


def _write_edf(path: Path, run: RunData, s: SubjectData) -> None:
    """EDF+ with one signal per channel in µV; the physical range of each channel is its own
    peak rounded up, so nothing clips and the quantisation step stays far below the noise."""
    signals = []
    for name, x in zip(run.names, run.data, strict=True):
        peak = float(np.max(np.abs(x))) if x.size else 1.0
        top = float(np.ceil(max(peak * 1.02, 1.0)))
        signals.append(
            edfio.EdfSignal(
                x.astype(np.float64),
                run.sfreq,
                label=name,
                transducer_type="SEEG electrode",
                physical_dimension="uV",
                physical_range=(-top, top),
            )
        )
    start = _acq_time(s, len(s.runs))
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(code=s.subject, sex=s.sex),
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        data_record_duration=1.0,
    )
    edf.write(path)


def _acq_time(s: SubjectData, ordinal: int) -> dt.datetime:
    """Fixed, seed-independent acquisition time of a subject's ``ordinal``-th run."""
    return _START + dt.timedelta(days=int(s.subject[-3:]) - 1, minutes=10 * ordinal)


def _num(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else repr(round(float(v), 6))


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj, indent=4, ensure_ascii=False) + "\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
