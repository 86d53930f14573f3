"""Calibration on held-out patients: lower Brier on a miscalibrated model, ranking unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from trainer.calibration import (
    Calibrator,
    EnsembleCalibration,
    brier_skill_score,
    fit_calibrator,
)
from trainer.metrics import evaluate_fold, summarise_folds
from trainer.rundir import RunDir


def _miscalibrated(n_patients: int, seed: int, prefix: str) -> pd.DataFrame:
    """Channels whose true SOZ rate is ``q`` but whose model says ``sigmoid(2 logit q + 4)``:
    over-confident and over-calling, as the issue measured at a new site."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_patients):
        z = rng.normal(-2.5, 1.2, size=60)
        q = 1 / (1 + np.exp(-z))
        y = rng.random(60) < q
        raw = 1 / (1 + np.exp(-(2 * z + 4)))
        rows += [
            {"cohort": "c", "patient": f"{prefix}{k}", "channel": f"ch{i}", "y_true": int(t),
             "score": float(s)}
            for i, (t, s) in enumerate(zip(y, raw, strict=True))
        ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["platt", "isotonic", "auto"])
def test_calibration_lowers_brier_and_keeps_the_ranking(method):
    val, test = _miscalibrated(6, 0, "v"), _miscalibrated(6, 1, "t")
    cal = fit_calibrator(val["y_true"], val["score"], val["patient"], method=method)
    assert cal.method != "identity"
    y, raw = test["y_true"].to_numpy(), test["score"].to_numpy()
    p = cal(raw)
    assert brier_score_loss(y, p) < 0.8 * brier_score_loss(y, raw)
    assert np.all(np.diff(p[np.argsort(raw, kind="stable")]) >= 0)  # monotone
    assert len(np.unique(p)) == len(np.unique(raw))  # strictly: no new ties, even isotonic
    assert roc_auc_score(y, p) == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again(raw), p)


def test_auto_keeps_the_identity_for_a_calibrated_model():
    rng = np.random.default_rng(3)
    q = rng.uniform(0.0, 1.0, size=600)
    y = (rng.random(600) < q).astype(int)
    cal = fit_calibrator(y, q, np.arange(600) % 6)
    cv = cal.info["cv_brier"]
    assert set(cv) == {"identity", "platt", "isotonic"}
    assert cv[cal.method] == min(cv.values())
    # identity is within noise of the best here: no method may do much better than the truth
    assert cv["identity"] - min(cv.values()) < 0.005


def test_brier_skill_score():
    assert brier_skill_score(0.084, 0.093) == pytest.approx(1 - 0.084 / (0.093 * 0.907))
    assert brier_skill_score(0.1, 0.0) is None and brier_skill_score(None, 0.5) is None


def test_evaluate_fold_reports_calibrated_brier_and_skill():
    val, test = _miscalibrated(6, 0, "v"), _miscalibrated(6, 1, "t")
    res = evaluate_fold(val, test)
    t = res["test"]
    assert t["brier"] < t["brier_raw"]
    assert t["bss"] == pytest.approx(1 - t["brier"] / (t["prevalence"] * (1 - t["prevalence"])))
    assert t["bss"] > 0 > brier_skill_score(t["brier_raw"], t["prevalence"])
    assert res["calibration"]["method"] in ("platt", "isotonic")
    raw = evaluate_fold(val, test, calibration="identity")
    assert raw["test"]["roc_auc"] == t["roc_auc"] and raw["test"]["tp"] == t["tp"]
    summary = summarise_folds([res])
    assert summary["pooled"]["brier"] == pytest.approx(t["brier"])
    assert summary["mean"]["bss"] == pytest.approx(t["bss"])


def test_run_dir_keeps_the_calibration(tmp_path, caplog):
    run = RunDir(tmp_path)
    cal = Calibrator("platt", {"a": 2.0, "b": -1.0})
    run.write_calibration("svm", 0, cal)
    assert run.calibrator("svm", 0) == Calibrator.from_dict(cal.to_dict())
    assert run.calibrator("svm", 1).method == "identity"  # a run from before calibration
    assert "raw probabilities" in caplog.text
    ens = EnsembleCalibration([cal, Calibrator()])
    assert ens.method == "platt+identity"
    np.testing.assert_allclose(ens(np.array([0.5])), [(1 / (1 + np.e) + 0.5) / 2])
    with pytest.raises(ValueError, match="a > 0"):
        Calibrator("platt", {"a": 0.0, "b": 1.0})
