"""Patient-wise cross-validation folds: no patient is ever in two of train / validation / test.

The test folds partition the patients (fold sizes differ by at most one); in each fold the
remaining patients are split into training and validation patients (85 / 15 by default), by
patient and seeded. With ``groups`` (patient -> cohort) both steps are stratified so that every
fold mixes the cohorts in about the proportions of the whole set.

A patient id is ``f"{cohort}/{subject}"`` (see :func:`patient_id`), so that two hospitals may both
have a ``sub-01`` without their recordings being merged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Fold", "cohort_groups", "patient_folds", "patient_id"]


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
        if groups is None:
            val = [rest[i] for i in rng.choice(len(rest), size=n_val, replace=False)]
        else:
            by_group: dict[str, list[str]] = {}
            for p in rest:
                by_group.setdefault(groups[p], []).append(p)
            quota = _allocate({g: len(m) for g, m in by_group.items()}, n_val)
            val = []
            for g in sorted(by_group):
                members = by_group[g]
                val.extend(members[i] for i in rng.choice(len(members), quota[g], replace=False))
        val_set = set(val)
        train = [p for p in rest if p not in val_set]
        folds.append(Fold(index=k, train=tuple(train), val=tuple(sorted(val)), test=tuple(test)))
        logger.debug(
            "fold %d: %d train, %d val, %d test patients", k, len(train), len(val), len(test)
        )
    return folds
