"""What a synthetic cohort is: :class:`SimulationConfig`, the generator families and centres.

Shared by both generator families (:mod:`ingest.simulate`, :mod:`ingest.wendling_cohort`) and
re-exported by :mod:`ingest.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.epileptor import EpileptorParams
from ingest.errors import ConfigError

#: Generator families ``simulate_cohort(generator=...)`` / ``soz simulate --generator`` know.
GENERATORS = ("epileptor", "wendling")

#: Simulated centres: (site, line frequency, naming style, preferred sampling rates).
CENTRES = (
    ("centreA", 60.0, "padded", (512.0, 1024.0, 500.0, 256.0)),
    ("centreB", 50.0, "plain", (1000.0, 2048.0, 512.0)),
    ("centreC", 50.0, "prime", (1024.0, 500.0, 2048.0, 256.0, 1000.0)),
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a synthetic cohort (validated on construction).

    Parameters
    ----------
    n_subjects : int
        Number of subjects; each is seeded independently (``SeedSequence(seed).spawn``).
    seed : int
        Master seed: same seed, same bytes.
    n_ictal_runs, n_interictal_runs : int
        Runs per subject (``task-ictal`` / ``task-interictal``).
    ictal_duration_s, interictal_duration_s : float
        Run durations in whole seconds.
    onset_window_s : tuple of float
        Range of the electrographic seizure onset within an ictal run (seconds).
    min_postictal_s : float
        Shortest time between the seizure offset and the end of an ictal run.
    sfreqs : tuple of float
        Sampling rates a subject may get (drawn per subject, preferring its centre's rates).
    n_centres : int
        Number of centres (1-3) the subjects are spread over.
    n_regions : tuple of int
        Range of the number of brain regions (network nodes) per subject.
    n_shafts, contacts_per_shaft : tuple of int
        Ranges (inclusive) per subject / per shaft.
    difficulty : float
        0 (easy) .. 1 (hard). Raises the spread speed (coupling), the propagation zone's size
        and its fast activity and spiking (PZ contacts look like onset contacts), lowers the EZ's
        fast activity and the contrast of interictal spike rates, and adds noise.
    label_agreement : float or None
        Dice agreement of the clinical SOZ labels with the true onset contacts; ``None`` takes
        ``1 - 0.4 * difficulty`` (0.8 at the default difficulty, the reported inter-rater
        agreement).
    epileptor : EpileptorParams
        Neural-mass parameters (the coupling strength is set from ``difficulty``).
    """

    n_subjects: int = 6
    seed: int = 0
    n_ictal_runs: int = 2
    n_interictal_runs: int = 1
    ictal_duration_s: float = 180.0
    interictal_duration_s: float = 300.0
    onset_window_s: tuple[float, float] = (40.0, 90.0)
    min_postictal_s: float = 30.0
    sfreqs: tuple[float, ...] = (256.0, 500.0, 512.0, 1000.0, 1024.0, 2048.0)
    n_centres: int = 3
    n_regions: tuple[int, int] = (24, 36)
    n_shafts: tuple[int, int] = (5, 8)
    contacts_per_shaft: tuple[int, int] = (8, 12)
    difficulty: float = 0.5
    label_agreement: float | None = None
    epileptor: EpileptorParams = field(default_factory=EpileptorParams)

    def __post_init__(self) -> None:
        if self.n_subjects < 1:
            raise ConfigError(f"n_subjects={self.n_subjects} must be >= 1.")
        if self.n_ictal_runs < 0 or self.n_interictal_runs < 0:
            raise ConfigError(
                f"n_ictal_runs={self.n_ictal_runs} and n_interictal_runs="
                f"{self.n_interictal_runs} must be >= 0."
            )
        if self.n_ictal_runs + self.n_interictal_runs == 0:
            raise ConfigError("n_ictal_runs + n_interictal_runs is 0: ask for at least one run.")
        for name in ("ictal_duration_s", "interictal_duration_s"):
            value = getattr(self, name)
            if value <= 0 or float(value) != int(value):
                raise ConfigError(
                    f"{name}={value} must be a positive whole number of seconds (EDF data "
                    "records are 1 s long)."
                )
        lo, hi = self.onset_window_s
        if not 0 < lo <= hi:
            raise ConfigError(f"onset_window_s={self.onset_window_s} must satisfy 0 < lo <= hi.")
        needed = hi + 60.0 + self.min_postictal_s
        if self.n_ictal_runs and self.ictal_duration_s < needed:
            raise ConfigError(
                f"ictal_duration_s={self.ictal_duration_s} is too short for an onset up to "
                f"{hi} s, a seizure of up to 60 s and min_postictal_s={self.min_postictal_s}: "
                f"use ictal_duration_s >= {needed:g} or an earlier onset_window_s."
            )
        if not self.sfreqs or any(s < 200 for s in self.sfreqs):
            raise ConfigError(
                f"sfreqs={self.sfreqs} must be non-empty and each >= 200 Hz (the line-noise "
                "and fast ictal activity need it)."
            )
        if any(float(s) != int(s) for s in self.sfreqs):
            raise ConfigError(f"sfreqs={self.sfreqs} must be whole numbers of Hz.")
        if not 1 <= self.n_centres <= len(CENTRES):
            raise ConfigError(f"n_centres={self.n_centres} must be in 1..{len(CENTRES)}.")
        for name, low in (("n_regions", 8), ("n_shafts", 2), ("contacts_per_shaft", 4)):
            a, b = getattr(self, name)
            if not low <= a <= b:
                raise ConfigError(
                    f"{name}={(a, b)} must be a range (lo, hi) with {low} <= lo <= hi."
                )
        if self.n_shafts[1] > 20:
            raise ConfigError(f"n_shafts={self.n_shafts}: at most 20 shafts per subject.")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ConfigError(f"difficulty={self.difficulty} must be in [0, 1].")
        if self.label_agreement is not None and not 0.0 < self.label_agreement <= 1.0:
            raise ConfigError(f"label_agreement={self.label_agreement} must be in (0, 1].")

    @property
    def agreement(self) -> float:
        """The label agreement in effect (``label_agreement`` or its difficulty default)."""
        if self.label_agreement is not None:
            return self.label_agreement
        return 1.0 - 0.4 * self.difficulty
