"""Patient-wise cross-validation folds: no patient is ever in two of train / validation / test.

The test folds partition the patients (fold sizes differ by at most one); in each fold the
remaining patients are split into training and validation patients (85 / 15 by default), by
patient and seeded. With ``groups`` (patient -> cohort) both steps are stratified so that every
fold mixes the cohorts in about the proportions of the whole set.

:func:`group_folds` makes leave-one-group-out folds instead (``soz train --split centre``: each
centre once the test set; ``cohort``: each cohort, e.g. two simulator families, cross-generator);
:func:`make_folds` is what training calls for either.

A patient id is ``f"{cohort}/{subject}"`` (see :func:`patient_id`), so that two hospitals may both
have a ``sub-01`` without their recordings being merged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "Fold",
    "cohort_groups",
    "group_folds",
    "make_folds",
    "patient_folds",
    "patient_groups",
    "patient_id",
]


def patient_id(cohort: str, subject: str) -> str:
    """The patient id used by the splits, the metrics and the training card.

    ``patient_id("ds004100", "HUP190")`` gives ``"ds004100/HUP190"``.
    """
    return f"{cohort}/{subject}"


def cohort_groups(patients: Sequence[str]) -> dict[str, str]:
    """Map each ``"cohort/subject"`` patient id to its cohort, for stratified folds.

    Parameters
    ----------
    patients : sequence of str
        Patient ids as made by :func:`patient_id`.

    Returns
    -------
    groups : dict of str to str
        ``{patient: cohort}``.
    """
    groups = {}
    for p in patients:
        cohort, sep, subject = str(p).partition("/")
        if not sep or not cohort or not subject:
            raise ValueError(
                f"patient id {p!r} is not of the form 'cohort/subject'; build ids with "
                "trainer.splits.patient_id(cohort, subject) or pass groups explicitly."
            )
        groups[p] = cohort
    return groups


@dataclass(frozen=True)
class Fold:
    """The patients of one cross-validation fold.

    Parameters
    ----------
    index : int
        Fold number, from 0.
    train, val, test : tuple of str
        Patient ids of the training, validation (threshold, early stopping) and test sets,
        sorted. The three are disjoint.
    """

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            ids = getattr(self, name)
            if len(set(ids)) != len(ids):
                raise ValueError(f"fold {self.index}: {name} lists a patient twice: {ids}.")
        overlap = (
            (set(self.train) & set(self.val))
            | (set(self.train) & set(self.test))
            | (set(self.val) & set(self.test))
        )
        if overlap:
            raise ValueError(
                f"fold {self.index}: patients {sorted(overlap)} are in more than one of "
                "train/val/test; a patient must be in exactly one."
            )

    @property
    def patients(self) -> tuple[str, ...]:
        """All patients of the fold (train, then val, then test)."""
        return self.train + self.val + self.test

    def role_of(self, patient: str) -> str:
        """``"train"``, ``"val"`` or ``"test"``: where ``patient`` is in this fold."""
        for name in ("train", "val", "test"):
            if patient in getattr(self, name):
                return name
        raise KeyError(f"patient {patient!r} is not in fold {self.index}.")

    def to_dict(self) -> dict:
        """A JSON-serialisable copy (for the training card and checkpoints)."""
        return {
            "index": self.index,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Fold:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(d["index"]),
            train=tuple(d["train"]),
            val=tuple(d["val"]),
            test=tuple(d["test"]),
        )


def _stratified_order(
    patients: Sequence[str], groups: Mapping[str, str] | None, rng: np.random.Generator
) -> list[str]:
    """Patients shuffled within their group, groups concatenated (largest first)."""
    if groups is None:
        return [patients[i] for i in rng.permutation(len(patients))]
    by_group: dict[str, list[str]] = {}
    for p in patients:
        by_group.setdefault(groups[p], []).append(p)
    order = []
    # largest groups first, ties by name: the order does not depend on dict order
    for g in sorted(by_group, key=lambda g: (-len(by_group[g]), g)):
        members = by_group[g]
        order.extend(members[i] for i in rng.permutation(len(members)))
    return order


def _draw_validation(
    rest: list[str], n_val: int, groups: Mapping[str, str] | None, rng: np.random.Generator
) -> list[str]:
    """``n_val`` patients of ``rest``: drawn per group in proportion to its size, or plainly."""
    if groups is None:
        return [rest[i] for i in rng.choice(len(rest), size=n_val, replace=False)]
    by_group: dict[str, list[str]] = {}
    for p in rest:
        by_group.setdefault(groups[p], []).append(p)
    quota = _allocate({g: len(m) for g, m in by_group.items()}, n_val)
    val = []
    for g in sorted(by_group):
        members = by_group[g]
        val.extend(members[i] for i in rng.choice(len(members), quota[g], replace=False))
    return val


def _allocate(counts: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` among groups in proportion to ``counts`` (largest remainder)."""
    n = sum(counts.values())
    exact = {g: total * c / n for g, c in counts.items()}
    alloc = {g: int(np.floor(x)) for g, x in exact.items()}
    left = total - sum(alloc.values())
    for g in sorted(exact, key=lambda g: (-(exact[g] - alloc[g]), -counts[g], g))[:left]:
        alloc[g] += 1
    return alloc


def patient_folds(
    patients: Sequence[str],
    *,
    n_folds: int = 5,
    val_fraction: float = 0.15,
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
) -> list[Fold]:
    """Patient-wise K-fold cross-validation with a validation split inside each fold.

    Parameters
    ----------
    patients : sequence of str
        Unique patient ids (``"cohort/subject"``, see :func:`patient_id`). Their order does not
        matter: the folds depend only on the set of ids and ``seed``.
    n_folds : int
        Number of folds (>= 2). The test sets of the folds partition ``patients``; their sizes
        differ by at most one.
    val_fraction : float
        Fraction of each fold's non-test patients held out for validation, in (0, 1). The
        number is ``round(val_fraction * n_rest)``, at least 1, leaving at least 1 for training.
    seed : int
        Seed of the shuffles; the same seed gives the same folds.
    groups : mapping of str to str, optional
        ``{patient: cohort}``. When given, the test folds and each validation set are
        stratified by group: each fold gets every cohort's patients in as equal shares as the
        numbers allow. :func:`cohort_groups` builds it from ``"cohort/subject"`` ids.

    Returns
    -------
    folds : list of Fold
        ``n_folds`` folds, ``folds[k].index == k``.

    Raises
    ------
    ValueError
        On duplicate ids, a patient missing from ``groups``, invalid ``n_folds`` /
        ``val_fraction``, or too few patients to leave one training and one validation patient
        in every fold.
    """
    patients = [str(p) for p in patients]
    if len(set(patients)) != len(patients):
        dups = sorted({p for p in patients if patients.count(p) > 1})
        raise ValueError(f"patient ids must be unique; repeated: {dups}.")
    if not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ValueError(f"{n_folds=} must be an integer >= 2.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{val_fraction=} must be in (0, 1).")
    n = len(patients)
    if n < n_folds or n - -(-n // n_folds) < 2:
        need = next(m for m in range(n_folds, 4 * n_folds + 4) if m - -(-m // n_folds) >= 2)
        raise ValueError(
            f"{n} patients are too few for {n_folds=}: every fold needs at least 1 test, "
            f"1 training and 1 validation patient; use at least {need} patients or fewer folds."
        )
    if groups is not None:
        missing = [p for p in patients if p not in groups]
        if missing:
            raise ValueError(
                f"groups has no cohort for patients {missing[:5]}{'...' if len(missing) > 5 else ''}; "
                "give every patient a group (trainer.splits.cohort_groups builds it from ids)."
            )

    rng = np.random.default_rng(seed)
    # sort first: the folds depend on the set of patients, not on the order they came in
    order = _stratified_order(sorted(patients), groups, rng)
    # deal round-robin from a random fold: sizes differ by <= 1 and each group is spread evenly
    start = int(rng.integers(n_folds))
    test_of = {p: (start + i) % n_folds for i, p in enumerate(order)}

    folds = []
    for k in range(n_folds):
        test = sorted(p for p in patients if test_of[p] == k)
        rest = sorted(p for p in patients if test_of[p] != k)
        n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
        val = _draw_validation(rest, n_val, groups, rng)
        val_set = set(val)
        train = [p for p in rest if p not in val_set]
        folds.append(Fold(index=k, train=tuple(train), val=tuple(sorted(val)), test=tuple(test)))
        logger.debug(
            "fold %d: %d train, %d val, %d test patients", k, len(train), len(val), len(test)
        )
    return folds


#: The ways ``soz train --split`` holds patients out: patient-wise K-fold, leave one centre
#: out, leave one cohort out (two cohorts from two simulator families: cross-generator).
SPLITS = ("patient", "centre", "cohort")


def group_folds(
    groups: Mapping[str, str],
    *,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> list[Fold]:
    """Leave-one-group-out folds: each group (centre, cohort) is once the whole test set.

    The training and validation patients of a fold both come from the other groups, split by
    patient (``val_fraction``, seeded, stratified by group), so the threshold and early stopping
    are chosen without seeing the held-out site: the test figure is the one a new site gets.

    Parameters
    ----------
    groups : mapping of str to str
        ``{patient: group}`` for every patient (e.g. from :func:`patient_groups`).
    val_fraction : float
        Fraction of each fold's other patients held out for validation, in (0, 1); at least 1,
        leaving at least 1 for training.
    seed : int
        Seed of the validation draws.

    Returns
    -------
    folds : list of Fold
        One fold per group, in sorted group order (``folds[k].index == k``).

    Raises
    ------
    ValueError
        Fewer than 2 groups, or fewer than 2 patients outside some group.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{val_fraction=} must be in (0, 1).")
    names = sorted(set(groups.values()))
    if len(names) < 2:
        raise ValueError(
            f"leave-one-group-out needs at least 2 groups; every patient is in {names}. "
            "Use --split patient, or add patients from another centre / cohort."
        )
    rng = np.random.default_rng(seed)
    folds = []
    for k, name in enumerate(names):
        test = sorted(p for p, g in groups.items() if g == name)
        rest = sorted(p for p, g in groups.items() if g != name)
        if len(rest) < 2:
            raise ValueError(
                f"holding out group {name!r} leaves {len(rest)} patient(s): a fold needs at "
                "least 1 training and 1 validation patient from the other groups."
            )
        n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
        val = _draw_validation(rest, n_val, groups, rng)
        train = [p for p in rest if p not in set(val)]
        folds.append(Fold(index=k, train=tuple(train), val=tuple(sorted(val)), test=tuple(test)))
    return folds


def patient_groups(recordings, by: str) -> dict[str, str]:
    """``{patient: centre}`` or ``{patient: cohort}`` from a store's recordings manifest.

    Parameters
    ----------
    recordings : pandas.DataFrame
        ``ClipStore.recordings()``: columns ``cohort``, ``subject`` and ``centre``.
    by : str
        ``"centre"`` or ``"cohort"``. A patient without a centre is in the centre
        ``"<cohort>:unknown"``; a patient recorded at two centres is an error.

    Returns
    -------
    dict of str to str
    """
    if by not in ("centre", "cohort"):
        raise ValueError(f"{by=} must be 'centre' or 'cohort'.")
    out: dict[str, str] = {}
    for row in recordings.itertuples(index=False):
        pid = patient_id(row.cohort, row.subject)
        centre = getattr(row, "centre", None)
        if by == "cohort":
            group = str(row.cohort)
        elif centre is None or centre != centre or str(centre) in ("", "n/a"):  # None / NaN
            group = f"{row.cohort}:unknown"
        else:
            group = str(centre)
        if out.setdefault(pid, group) != group:
            raise ValueError(
                f"patient {pid} has recordings from centres {out[pid]!r} and {group!r}; a "
                "leave-one-centre-out split needs one centre per patient (fix participants.tsv)."
            )
    return out


def make_folds(
    patients: Sequence[str],
    *,
    split: str = "patient",
    n_folds: int = 5,
    val_fraction: float = 0.15,
    seed: int = 0,
    recordings=None,
) -> list[Fold]:
    """The folds of ``soz train --split``: patient-wise K-fold or leave-one-group-out.

    Parameters
    ----------
    patients : sequence of str
        The labelled patients to split.
    split : str
        One of :data:`SPLITS`.
    n_folds, val_fraction, seed
        As in :func:`patient_folds` (``n_folds`` is ignored by the group splits: one fold per
        centre / cohort).
    recordings : pandas.DataFrame, optional
        The store's recordings manifest (needed by ``"centre"`` / ``"cohort"``).

    Returns
    -------
    list of Fold
    """
    if split == "patient":
        return patient_folds(
            patients,
            n_folds=n_folds,
            val_fraction=val_fraction,
            seed=seed,
            groups=cohort_groups(patients),
        )
    if split not in SPLITS:
        raise ValueError(f"{split=} must be one of {SPLITS}.")
    if recordings is None:
        raise ValueError(f"split={split!r} needs the store's recordings manifest.")
    groups = patient_groups(recordings, split)
    return group_folds({p: groups[p] for p in patients}, val_fraction=val_fraction, seed=seed)
