"""Patient-wise folds: partition, disjointness, proportions, seeds, stratification, errors."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.splits import Fold, cohort_groups, patient_folds, patient_id


def _cohort(n_a: int = 12, n_b: int = 8, n_c: int = 0) -> list[str]:
    ids = [patient_id("HUP", f"P{i:02d}") for i in range(n_a)]
    ids += [patient_id("EIIMD", f"S{i:02d}") for i in range(n_b)]
    ids += [patient_id("CHUL", f"C{i:02d}") for i in range(n_c)]
    return ids


@pytest.mark.parametrize("n_patients,n_folds", [(20, 5), (23, 5), (7, 3), (4, 2), (101, 5)])
def test_test_folds_partition_patients(n_patients, n_folds):
    patients = [f"sim/sub{i:03d}" for i in range(n_patients)]
    folds = patient_folds(patients, n_folds=n_folds, seed=3)
    assert [f.index for f in folds] == list(range(n_folds))
    tests = [t for f in folds for t in f.test]
    assert sorted(tests) == sorted(patients)  # every patient exactly once
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        assert set(f.train) | set(f.val) | set(f.test) == set(patients)
        assert not set(f.train) & set(f.val)
        assert not set(f.train) & set(f.test)
        assert not set(f.val) & set(f.test)
        assert len(f.train) >= 1 and len(f.val) >= 1


def test_val_fraction_is_85_15_by_patient():
    patients = [f"sim/sub{i:03d}" for i in range(100)]
    for f in patient_folds(patients, n_folds=5, seed=0):
        n_rest = len(f.train) + len(f.val)
        assert n_rest == 80
        assert len(f.val) == 12  # round(0.15 * 80)
    for f in patient_folds(patients, n_folds=5, val_fraction=0.3, seed=0):
        assert len(f.val) == 24


def test_seeded_determinism_and_order_independence():
    patients = _cohort()
    a = patient_folds(patients, seed=7)
    b = patient_folds(list(reversed(patients)), seed=7)
    assert a == b
    c = patient_folds(patients, seed=8)
    assert [f.test for f in a] != [f.test for f in c]
    assert [f.val for f in a] != [f.val for f in c]


def test_stratified_folds_mix_cohorts():
    patients = _cohort(12, 8, 5)
    groups = cohort_groups(patients)
    assert groups["HUP/P00"] == "HUP"
    for seed in range(5):
        folds = patient_folds(patients, n_folds=4, seed=seed, groups=groups)
        for f in folds:
            counts = Counter(groups[p] for p in f.test)
            # 12 HUP, 8 EIIMD, 5 CHUL over 4 folds: 3, 2 and 1-2 per fold
            assert counts["HUP"] == 3
            assert counts["EIIMD"] == 2
            assert counts["CHUL"] in (1, 2)
            # validation draws from each cohort in proportion (largest remainder)
            n_val = len(f.val)
            val_counts = Counter(groups[p] for p in f.val)
            assert n_val == round(0.15 * (25 - len(f.test)))
            assert val_counts["HUP"] >= 1
        sizes = [len(f.test) for f in folds]
        assert max(sizes) - min(sizes) <= 1


def test_unstratified_can_cluster_a_cohort_stratified_cannot():
    # 10 HUP + 10 EIIMD over 2 folds: stratified always 5/5
    patients = _cohort(10, 10)
    groups = cohort_groups(patients)
    for seed in range(10):
        for f in patient_folds(patients, n_folds=2, seed=seed, groups=groups):
            assert Counter(groups[p] for p in f.test) == {"HUP": 5, "EIIMD": 5}


@pytest.mark.parametrize("n_patients,n_folds", [(3, 2), (2, 2), (4, 5), (1, 2)])
def test_too_few_patients_is_a_clear_error(n_patients, n_folds):
    patients = [f"sim/sub{i}" for i in range(n_patients)]
    with pytest.raises(ValueError, match="too few"):
        patient_folds(patients, n_folds=n_folds)


def test_bad_arguments():
    patients = _cohort()
    with pytest.raises(ValueError, match="n_folds=1"):
        patient_folds(patients, n_folds=1)
    with pytest.raises(ValueError, match="val_fraction"):
        patient_folds(patients, val_fraction=1.0)
    with pytest.raises(ValueError, match="unique"):
        patient_folds(patients + patients[:1])
    with pytest.raises(ValueError, match="no cohort"):
        patient_folds(patients, groups={"HUP/P00": "HUP"})
    with pytest.raises(ValueError, match="cohort/subject"):
        cohort_groups(["noslash"])


def test_fold_roundtrip_and_overlap_check():
    f = patient_folds(_cohort(), seed=1)[0]
    assert Fold.from_dict(f.to_dict()) == f
    assert f.role_of(f.test[0]) == "test"
    assert sorted(f.patients) == sorted(_cohort())
    with pytest.raises(ValueError, match="more than one"):
        Fold(index=0, train=("a/1",), val=("a/1",), test=("a/2",))
