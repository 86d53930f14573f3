"""The ``Recording`` record: what every cohort reader returns (metadata only, no signal).

Every source of recordings (a BIDS iEEG dataset, a folder of EDF files with a label sheet, the
simulator's output read back) is turned into the same :class:`Recording` records. Later stages
(ingest, training, serving) only ever see this contract, never a reader's own conventions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.signals import SignalHeader

#: Channel types that carry intracranial signal. Everything else (EEG, ECG, EMG, misc, stim)
#: is dropped at ingest, as are contacts marked bad.
INTRACRANIAL_TYPES = ("seeg", "ecog", "dbs")

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def make_recording_id(cohort: str, subject: str, *entities: str | None) -> str:
    """Build a store-safe recording id from a cohort, a subject and BIDS-like entities.

    ``make_recording_id("ds004100", "HUP190", "presurgery", "ictal", "seeg", "01")``
    gives ``"ds004100__HUP190__presurgery__ictal__seeg__01"``. Characters outside
    ``[A-Za-z0-9_.-]`` become ``-`` so the id can name a Zarr array and a file.
    """
    parts = [cohort, subject, *(e for e in entities if e)]
    return "__".join(_SAFE_ID.sub("-", str(p).strip()) for p in parts)


@dataclass(frozen=True)
class SeizureEvent:
    """One seizure in a recording, times in seconds from the start of the recording.

    Parameters
    ----------
    onset_s : float
        Electrographic onset.
    offset_s : float | None
        End of the seizure; ``None`` where the sidecar marks no offset (the seizure is then
        taken to last until the end of the recording).
    label : str
        The annotation text the onset was read from (``"sz onset"``, ``"EEG onset"`` ...).
    """

    onset_s: float
    offset_s: float | None = None
    label: str = "sz onset"


@dataclass(frozen=True)
class Recording:
    """Metadata of one recording (one run of one subject), as every reader returns it.

    Channel lists are in the signal file's order. ``soz`` and ``resected`` are ``None`` when the
    source has no labels for this recording (unlabelled recordings can be ingested and scored,
    not trained on); an empty frozenset means "labelled, and no contact is SOZ".

    Parameters
    ----------
    recording_id : str
        Unique, store-safe id (see :func:`make_recording_id`).
    cohort : str
        Dataset / hospital cohort name (``"ds004100"``, ``"ds003029"``, ``"CHUL"``, ``"sim"``).
    subject : str
        Subject label without the ``sub-`` prefix, stripped of white space.
    path : str
        Path of the signal file (EDF, BrainVision ``.vhdr``, or any format MNE reads).
    sfreq : float
        Sampling frequency of the signal file in Hz.
    n_times : int
        Number of samples in the signal file.
    channels : tuple of str
        All channel names in file order.
    ch_types : tuple of str
        MNE channel type of each channel (``"seeg"``, ``"ecog"``, ``"eeg"``, ``"ecg"``, ``"misc"``...).
    bad : frozenset of str
        Channels marked bad (by the sidecar or the reader).
    soz, resected : frozenset of str or None
        Clinically marked seizure-onset-zone / resected contacts; ``None`` where unknown.
    seizures : tuple of SeizureEvent
        Seizures in this recording, sorted by onset.
    session, task, run, acquisition : str or None
        BIDS entities where the source has them. ``task`` is ``"ictal"`` or ``"interictal"``
        for the public cohorts.
    centre : str or None
        Recording site (``participants.tsv`` ``site`` column of ds003029, ...).
    line_freq : float or None
        Power-line frequency (50 or 60 Hz); ``None`` when unknown (ingest then needs it given).
    fmt : str
        Signal file format as MNE reads it (``"edf"``, ``"brainvision"``, ``"fif"``...).
    warnings : tuple of str
        Non-fatal problems the reader found (a SOZ name matching no contact...), kept so that
        ingest can report them next to the recording.
    """

    recording_id: str
    cohort: str
    subject: str
    path: str
    sfreq: float
    n_times: int
    channels: tuple[str, ...]
    ch_types: tuple[str, ...]
    bad: frozenset[str] = frozenset()
    soz: frozenset[str] | None = None
    resected: frozenset[str] | None = None
    seizures: tuple[SeizureEvent, ...] = ()
    session: str | None = None
    task: str | None = None
    run: str | None = None
    acquisition: str | None = None
    centre: str | None = None
    line_freq: float | None = None
    fmt: str = "edf"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.ch_types):
            raise ValueError(
                f"{self.recording_id}: {len(self.channels)} channel names but "
                f"{len(self.ch_types)} channel types; give one type per channel."
            )
        if self.sfreq <= 0 or self.n_times < 0:
            raise ValueError(
                f"{self.recording_id}: sfreq={self.sfreq} and n_times={self.n_times} must be "
                "positive; the signal file header is probably corrupt."
            )

    @classmethod
    def from_header(
        cls, header: SignalHeader, recording_id: str, cohort: str, subject: str, **labels: Any
    ) -> Recording:
        """The recording of a signal file: path, rate, length, channels and format from its
        header; ``labels`` are the other fields (``ch_types`` is required; ``fmt`` is the
        header's)."""
        h = header
        labels.setdefault("fmt", h.fmt)
        return cls(recording_id, cohort, subject, h.path, h.sfreq, h.n_times, h.ch_names, **labels)

    @property
    def duration_s(self) -> float:
        """Duration of the signal file in seconds."""
        return self.n_times / self.sfreq

    @property
    def is_ictal(self) -> bool:
        """Whether the recording contains at least one seizure."""
        return len(self.seizures) > 0

    @property
    def contacts(self) -> tuple[str, ...]:
        """The contacts ingest keeps: intracranial types, not bad, in file order."""
        return tuple(
            name
            for name, kind in zip(self.channels, self.ch_types, strict=True)
            if kind in INTRACRANIAL_TYPES and name not in self.bad
        )

    @property
    def labelled(self) -> bool:
        """Whether per-contact SOZ labels are known for this recording."""
        return self.soz is not None


def shaft_of(contact: str) -> str:
    """Electrode shaft of a contact name: the name without its trailing contact number.

    ``"LA12"`` -> ``"LA"``, ``"RH1"`` -> ``"RH"``, ``"L'A3"`` -> ``"L'A"``; a bipolar channel
    is on the shaft of its first contact (``"HL1-HL2"`` -> ``"HL"``); a name with no trailing
    digits is its own shaft.
    """
    pair = re.match(r"^(.*?\d+)-(.*?\d+)$", contact.strip())
    if pair:
        contact = pair.group(1)
    m = re.match(r"^(.*?)(\d+)$", contact.strip())
    return m.group(1) if m and m.group(1) else contact.strip()
