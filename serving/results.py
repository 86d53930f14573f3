"""What scoring one recording returns: :class:`ScoreResult`, and its table form.

One :class:`ScoreResult` per (recording, model). Its table form (:meth:`ScoreResult.to_frame`,
columns :data:`RESULT_COLUMNS`, one row per contact) is the row format of ``soz score``'s Parquet
output and the input of ``soz report``; its JSON form (:meth:`ScoreResult.to_dict`) is the answer
of ``POST /score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ingest.fileio import json_safe
from ingest.recording import Recording, shaft_of

#: Columns of a results table, in order (one row per recording x contact x model).
RESULT_COLUMNS = (
    "recording_id",
    "subject",
    "cohort",
    "session",
    "task",
    "run",
    "centre",
    "channel",
    "shaft",
    "model",
    "fold",
    "folds",
    "probability",
    "p_raw",
    "threshold",
    "calibration",
    "soz_call",
    "soz_label",
    "rank",
    "n_contacts",
    "n_sequences",
    "duration_s",
    "sfreq",
    "source_path",
)

#: Columns of a failures table (one row per recording x model that could not be scored).
FAILURE_COLUMNS = ("recording_id", "source_path", "model", "stage", "reason", "fix")


@dataclass(frozen=True)
class ContactScore:
    """One contact of a scored recording: the one contact schema (``POST /score``'s
    ``contacts`` items, :meth:`ScoreResult.ranked`).

    Parameters
    ----------
    channel, shaft : str
        Contact name and its electrode shaft (:func:`ingest.recording.shaft_of`).
    probability : float
        SOZ probability (calibrated on the training run's validation patients where the run
        holds a calibration; :mod:`trainer.calibration`).
    soz_call : bool
        ``probability >= threshold``.
    rank : int
        1 = most likely SOZ.
    soz_label : bool or None
        Clinical SOZ label where the recording is labelled.
    index : int
        Position of the contact in the recording's (file-order) contacts.
    """

    channel: str
    shaft: str
    probability: float
    soz_call: bool
    rank: int
    soz_label: bool | None = None
    index: int = 0
    p_raw: float | None = None


@dataclass(frozen=True)
class ScoreResult:
    """Per-contact SOZ probabilities of one recording by one model (one fold or an ensemble).

    Parameters
    ----------
    recording_id, subject, cohort : str
        Identity of the recording (see :class:`ingest.recording.Recording`).
    model : str
        Model name (``"sozformer"``, ``"dcgru"``, ``"svm"``).
    folds : tuple of int
        Folds whose models were averaged (one entry when a single fold scored).
    threshold : float
        Decision threshold: ``probability >= threshold`` is a SOZ call (calibrated like the
        probabilities against this recording's contacts: the calibration is strictly
        increasing within a recording, so the call is the raw one).
    channels : tuple of str
        Scored contacts, in file order.
    probabilities : ndarray, shape (n_contacts,)
        SOZ probability per contact (mean over sequences, then over folds).
    soz_labels : tuple of bool or None
        Clinical SOZ label per contact where the recording is labelled.
    n_sequences : int
        Sequences the probabilities average over (``0`` for clip-feature models).
    duration_s, sfreq : float
        Duration and sampling rate of the source file.
    metadata : dict
        Session, task, run, centre, source path ... of the recording.
    timings : dict
        Seconds spent per stage (``read_preprocess``, ``features``, ``model``, ``total``).
    warnings : tuple of str
        Non-fatal problems (contacts dropped as bad, reader warnings ...).
    raw_probabilities : ndarray, shape (n_contacts,), optional
        The model's probabilities before calibration (``None``: not calibrated).
    raw_threshold : float, optional
        The threshold before calibration.
    calibration : str, optional
        The calibration method(s) of the folds (``"isotonic"``, ``"platt+isotonic"`` ...);
        ``None`` when the probabilities are the model's raw ones.
    """

    recording_id: str
    subject: str
    cohort: str
    model: str
    folds: tuple[int, ...]
    threshold: float
    channels: tuple[str, ...]
    probabilities: np.ndarray
    soz_labels: tuple[bool, ...] | None = None
    n_sequences: int = 0
    duration_s: float = 0.0
    sfreq: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    raw_probabilities: np.ndarray | None = None
    raw_threshold: float | None = None
    calibration: str | None = None

    def __post_init__(self) -> None:
        probs = np.asarray(self.probabilities, dtype=np.float64)
        if probs.shape != (len(self.channels),):
            raise ValueError(
                f"{self.recording_id}: {probs.shape=} must be ({len(self.channels)},), one "
                "probability per channel."
            )
        if self.soz_labels is not None and len(self.soz_labels) != len(self.channels):
            raise ValueError(
                f"{self.recording_id}: {len(self.soz_labels)} labels for {len(self.channels)} "
                "channels."
            )
        object.__setattr__(self, "probabilities", probs)
        if self.raw_probabilities is not None:
            raw = np.asarray(self.raw_probabilities, dtype=np.float64)
            if raw.shape != probs.shape:
                raise ValueError(f"{self.recording_id}: {raw.shape=} must be {probs.shape}.")
            object.__setattr__(self, "raw_probabilities", raw)

    @property
    def p_raw(self) -> np.ndarray:
        """Probabilities before calibration (the probabilities themselves when uncalibrated)."""
        return self.probabilities if self.raw_probabilities is None else self.raw_probabilities

    @property
    def soz_calls(self) -> np.ndarray:
        """ndarray of bool, shape (n_contacts,): ``probability >= threshold``."""
        return self.probabilities >= self.threshold

    @property
    def ranks(self) -> np.ndarray:
        """ndarray of int, shape (n_contacts,): 1 = most likely SOZ (ties keep file order)."""
        order = np.argsort(-self.probabilities, kind="stable")
        ranks = np.empty(len(order), dtype=np.int64)
        ranks[order] = np.arange(1, len(order) + 1)
        return ranks

    @property
    def fold(self) -> int | None:
        """The fold when one fold scored, ``None`` for an ensemble."""
        return self.folds[0] if len(self.folds) == 1 else None

    def ranked(self) -> list[ContactScore]:
        """Contacts from most to least likely SOZ."""
        calls, ranks = self.soz_calls, self.ranks
        out = [
            ContactScore(
                channel=ch,
                shaft=shaft_of(ch),
                probability=float(p),
                soz_call=bool(c),
                rank=int(r),
                soz_label=None if self.soz_labels is None else bool(self.soz_labels[i]),
                index=i,
                p_raw=float(q),
            )
            for i, (ch, p, q, c, r) in enumerate(
                zip(self.channels, self.probabilities, self.p_raw, calls, ranks, strict=True)
            )
        ]
        return sorted(out, key=lambda c: c.rank)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable answer (contacts ranked)."""
        return {
            "recording_id": self.recording_id,
            "subject": self.subject,
            "cohort": self.cohort,
            "model": self.model,
            "folds": list(self.folds),
            "threshold": float(self.threshold),
            "threshold_raw": float(
                self.threshold if self.raw_threshold is None else self.raw_threshold
            ),
            "calibration": self.calibration,
            "n_contacts": len(self.channels),
            "n_soz_calls": int(self.soz_calls.sum()),
            "n_sequences": int(self.n_sequences),
            "duration_s": float(self.duration_s),
            "sfreq": float(self.sfreq),
            "contacts": [asdict(c) for c in self.ranked()],
            "metadata": json_safe(dict(self.metadata)),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreResult:
        """Inverse of :meth:`to_dict` (e.g. a ``POST /score`` answer back into a result)."""
        contacts = sorted(d["contacts"], key=lambda c: c["index"])
        labels = [c.get("soz_label") for c in contacts]
        return cls(
            recording_id=d["recording_id"],
            subject=d["subject"],
            cohort=d["cohort"],
            model=d["model"],
            folds=tuple(d["folds"]),
            threshold=float(d["threshold"]),
            channels=tuple(c["channel"] for c in contacts),
            probabilities=np.array([c["probability"] for c in contacts], dtype=np.float64),
            soz_labels=None if any(v is None for v in labels) else tuple(map(bool, labels)),
            n_sequences=int(d.get("n_sequences", 0)),
            duration_s=float(d.get("duration_s", 0.0)),
            sfreq=float(d.get("sfreq", 0.0)),
            metadata=dict(d.get("metadata", {})),
            timings=dict(d.get("timings", {})),
            warnings=tuple(d.get("warnings", ())),
            raw_probabilities=None
            if d.get("calibration") is None
            else np.array([c.get("p_raw", c["probability"]) for c in contacts], dtype=np.float64),
            raw_threshold=d.get("threshold_raw"),
            calibration=d.get("calibration"),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per contact, columns :data:`RESULT_COLUMNS`."""
        n = len(self.channels)
        meta = self.metadata
        labels = (
            pd.array([None] * n, dtype="boolean")
            if self.soz_labels is None
            else pd.array(list(self.soz_labels), dtype="boolean")
        )
        frame = pd.DataFrame(
            {
                "recording_id": self.recording_id,
                "subject": self.subject,
                "cohort": self.cohort,
                "session": meta.get("session"),
                "task": meta.get("task"),
                "run": meta.get("run"),
                "centre": meta.get("centre"),
                "channel": list(self.channels),
                "shaft": [shaft_of(c) for c in self.channels],
                "model": self.model,
                "fold": pd.array([self.fold] * n, dtype="Int64"),
                "folds": ",".join(str(f) for f in self.folds),
                "probability": self.probabilities,
                "p_raw": self.p_raw,
                "threshold": float(self.threshold),
                "calibration": self.calibration,
                "soz_call": self.soz_calls,
                "soz_label": labels,
                "rank": self.ranks,
                "n_contacts": n,
                "n_sequences": int(self.n_sequences),
                "duration_s": float(self.duration_s),
                "sfreq": float(self.sfreq),
                "source_path": meta.get("source_path"),
            },
            index=pd.RangeIndex(n),
        )
        for col in ("session", "task", "run", "centre", "source_path", "calibration"):
            frame[col] = frame[col].astype("string")
        return frame[list(RESULT_COLUMNS)]


def recording_metadata(rec: Recording) -> dict[str, Any]:
    """The metadata of a recording a result carries (and a report shows)."""
    return {
        "session": rec.session,
        "task": rec.task,
        "run": rec.run,
        "acquisition": rec.acquisition,
        "centre": rec.centre,
        "line_freq": rec.line_freq,
        "n_channels_file": len(rec.channels),
        "n_seizures": len(rec.seizures),
        "source_path": rec.path,
    }


def empty_results() -> pd.DataFrame:
    """An empty results table with the right columns."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in RESULT_COLUMNS})


def failures_path(results: str) -> str:
    """The failures table beside a results file (``r.parquet`` -> ``r.failures.parquet``)."""
    return str(results)[: -len(".parquet")] + ".failures.parquet"


def failures_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Failures table (columns :data:`FAILURE_COLUMNS`) from a list of row dicts."""
    frame = pd.DataFrame([{c: row.get(c) for c in FAILURE_COLUMNS} for row in rows])
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype="string") for c in FAILURE_COLUMNS})
    return frame.astype("string")
