"""Leave-one-centre-out folds and the by-site / by-run-kind figures of every run's summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ingest.errors import ConfigError, SozkitError
from tests.trainer.conftest import TINY_HPARAMS, build_store
from trainer.calibration import Calibrator
from trainer.config import TrainConfig
from trainer.run import run_training
from trainer.sites import site_figures
from trainer.splits import group_folds, make_folds, patient_groups

#: Nine patients in two cohorts, spread over three centres (centre != cohort on purpose).
PATIENTS = [("simA", f"P{i}", f"site{'XYZ'[i % 3]}") for i in range(5)]
PATIENTS += [("simB", f"Q{i}", f"site{'XYZ'[i % 3]}") for i in range(4)]


def _store(url, patients=PATIENTS) -> str:
    """Six contacts a patient, 12 ictal clips (a 16-s seizure) and 8 interictal ones."""
    return build_store(
        url, seed=7, patients=patients, n_ictal_clips=12, n_inter_clips=8, n_chans=6, seizure_s=16.0
    )


@pytest.fixture(scope="module")
def centre_store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("sites") / "store.zarr")


def test_group_folds_hold_out_each_group_once():
    groups = {f"c/p{i}": "ABC"[i % 3] for i in range(10)}
    folds = group_folds(groups, val_fraction=0.25, seed=3)
    assert [f.index for f in folds] == [0, 1, 2]
    for fold, name in zip(folds, "ABC", strict=True):
        assert {groups[p] for p in fold.test} == {name}
        assert sorted(fold.test) == sorted(p for p, g in groups.items() if g == name)
        assert name not in {groups[p] for p in fold.train + fold.val}
        assert len(fold.val) == round(0.25 * len(fold.train + fold.val))
        assert {groups[p] for p in fold.val} == set("ABC") - {name}  # stratified
    assert folds == group_folds(groups, val_fraction=0.25, seed=3)
    assert folds != group_folds(groups, val_fraction=0.25, seed=4)
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_folds({"c/p0": "A", "c/p1": "A"})
    with pytest.raises(ValueError, match="leaves 1 patient"):
        group_folds({"c/p0": "A", "c/p1": "A", "c/p2": "B"})


def test_patient_groups_from_the_manifest():
    recs = pd.DataFrame(
        {
            "cohort": ["a", "a", "a", "b"],
            "subject": ["1", "1", "2", "1"],
            "centre": ["X", "X", None, "Y"],
        }
    )
    assert patient_groups(recs, "centre") == {"a/1": "X", "a/2": "a:unknown", "b/1": "Y"}
    assert patient_groups(recs, "cohort") == {"a/1": "a", "a/2": "a", "b/1": "b"}
    recs.loc[1, "centre"] = "Z"
    with pytest.raises(ValueError, match="centres 'X' and 'Z'"):
        patient_groups(recs, "centre")
    with pytest.raises(ValueError, match="needs the store"):
        make_folds(["a/1", "b/1"], split="centre")


def test_split_is_validated():
    with pytest.raises(ConfigError, match="split"):
        TrainConfig(split="site")


def _two_patients() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of two patients (2 channels, 2 runs each: ictal then interictal) and the
    recordings table; ictal runs rank the SOZ channel first, interictal runs the other way round."""
    preds = pd.DataFrame(
        {
            "cohort": "c",
            "patient": ["c/1"] * 4 + ["c/2"] * 4,
            "recording_id": ["r1", "r1", "r2", "r2", "r3", "r3", "r4", "r4"],
            "channel": ["a", "b"] * 4,
            "y_true": [1, 0] * 4,
            "score": [0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.4, 0.6],
        }
    )
    recs = pd.DataFrame({"recording_id": ["r1", "r2", "r3", "r4"], "n_seizures": [1, 0, 2, 0]})
    return preds, recs


def test_site_figures_split_ictal_from_interictal():
    preds, recs = _two_patients()
    figs = site_figures(preds, recs, {"c/1": "X", "c/2": "Y"})
    assert figs["ictal"]["roc_auc"] == 1.0 and figs["interictal"]["roc_auc"] == 0.0
    assert figs["ictal"]["n_channels"] == 4 and figs["all"]["n_patients"] == 2
    assert set(figs["by_centre"]) == {"X", "Y"}
    assert figs["by_centre"]["X"]["all"]["n_channels"] == 2
    with pytest.raises(ValueError, match="not in the store"):
        site_figures(preds, recs.iloc[:2], {})


def test_site_figures_report_calls_and_calibrated_brier_by_run_kind():
    preds, recs = _two_patients()
    preds.insert(0, "fold", [0] * 4 + [1] * 4)
    halve = Calibrator("isotonic", {"x": [0.0, 1.0], "y": [0.0, 0.5]})
    figs = site_figures(preds, recs, {}, {0: (0.5, Calibrator()), 1: (0.5, halve)})
    # ictal: both patients' SOZ contact called and nothing else
    assert figs["ictal"]["macro_precision"] == 1.0 and figs["ictal"]["macro_recall"] == 1.0
    # interictal: only the non-SOZ contacts are called
    assert figs["interictal"]["macro_precision"] == 0.0
    p = np.array([0.9, 0.1, 0.35, 0.15])  # ictal scores, fold 1's halved
    brier = float(np.mean((p - np.array([1, 0, 1, 0])) ** 2))
    assert figs["ictal"]["brier"] == pytest.approx(brier, rel=1e-5)
    assert figs["ictal"]["bss"] == pytest.approx(1 - brier / 0.25, rel=1e-5)
    assert "bss" not in site_figures(preds, recs, {})["all"]


def test_leave_one_centre_out_run(ray_local, centre_store, tmp_path):
    cfg = TrainConfig(
        models=("svm", "baseline"),
        split="centre",
        model_hparams={"baseline": TINY_HPARAMS["baseline"]},
        max_eval_seqs=4,
    )
    run_dir = tmp_path / "run"
    out = run_training(centre_store, run_dir, cfg)
    folds = json.loads((run_dir / "folds.json").read_text())
    centre = {f"{c}/{s}": site for c, s, site in PATIENTS}
    assert len(folds) == 3
    assert [sorted({centre[p] for p in f["test"]}) for f in folds] == [
        ["siteX"],
        ["siteY"],
        ["siteZ"],
    ]
    for f in folds:
        assert centre[f["test"][0]] not in {centre[p] for p in f["train"] + f["val"]}
    sites = json.loads((run_dir / "sites.json").read_text())
    for model in ("svm", "baseline"):
        assert set(sites[model]["by_centre"]) == {"siteX", "siteY", "siteZ"}
        assert sites[model]["all"]["n_patients"] == len(PATIENTS)
        assert sites[model]["ictal"]["n_channels"] == sites[model]["interictal"]["n_channels"]
        assert out["models"][model]["n_folds"] == 3
    summary = (run_dir / "summary.md").read_text()
    assert "## By site and run kind (split: centre)" in summary
    assert "leave-one-centre-out" in summary and "siteZ (interictal)" in summary
    # A store whose patients are all at one centre cannot be split by centre.
    one = _store(tmp_path / "one.zarr", [(c, s, "siteX") for c, s, _ in PATIENTS[:3]])
    with pytest.raises(SozkitError, match="cannot be split by centre"):
        run_training(one, tmp_path / "run1", cfg)
