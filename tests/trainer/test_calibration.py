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
    match_prior,
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
    assert set(cv) == {"identity", "platt", "isotonic", "relative-platt", "relative-isotonic"}
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


def _shifted_site(n_patients: int, seed: int, prefix: str, shift) -> pd.DataFrame:
    """Channels whose SOZ rate is ``q = sigmoid(z)``, scored ``sigmoid(z + shift)``: each
    patient's scores sit ``shift`` (a number, or one per patient) higher on the logit, as a
    site (generator, montage) moves every score of its recordings."""
    rng = np.random.default_rng(seed)
    shifts = np.broadcast_to(np.asarray(shift, dtype=float), (n_patients,))
    rows = []
    for k in range(n_patients):
        z = rng.normal(-2.5, 1.5, size=80)
        y = rng.random(80) < 1 / (1 + np.exp(-z))
        raw = 1 / (1 + np.exp(-(z + shifts[k])))
        rows += [
            {"cohort": "c", "patient": f"{prefix}{k}", "recording_id": f"{prefix}{k}_r",
             "channel": f"ch{i}", "y_true": int(t), "score": float(s)}
            for i, (t, s) in enumerate(zip(y, raw, strict=True))
        ]  # fmt: skip
    return pd.DataFrame(rows)


def test_relative_calibration_transfers_to_a_shifted_site_and_keeps_each_ranking():
    # validation patients each with their own offset; the test site far above all of them
    val = _shifted_site(8, 0, "v", np.linspace(-1.0, 1.0, 8))
    test = _shifted_site(8, 1, "t", 3.0)
    cal = fit_calibrator(val["y_true"], val["score"], val["patient"])
    cv = cal.info["cv_brier"]
    assert cal.input == "relative" and cal.name.startswith("relative-")
    assert min(cv["relative-platt"], cv["relative-isotonic"]) < min(cv["platt"], cv["isotonic"])
    raw_only = fit_calibrator(
        val["y_true"], val["score"], val["patient"], method="platt", prior="none"
    )
    y, s, g = test["y_true"].to_numpy(), test["score"].to_numpy(), test["patient"].to_numpy()
    prev = y.mean()
    p = cal(s, g)
    assert brier_skill_score(brier_score_loss(y, p), prev) > 0.05
    assert brier_skill_score(brier_score_loss(y, raw_only(s)), prev) < 0  # raw map: worse
    # ... unless each patient is matched to the validation prevalence after it
    matched = fit_calibrator(val["y_true"], val["score"], val["patient"], method="platt")
    assert matched.prior == pytest.approx(val["y_true"].mean())
    assert brier_skill_score(brier_score_loss(y, matched(s, g)), prev) > 0.05
    for pat in np.unique(g):  # each patient's ranking is kept, strictly
        own = g == pat
        order = np.argsort(s[own], kind="stable")
        assert np.all(np.diff(p[own][order]) > 0)
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again(s, g), p)
    # a relative map sees only the patient's own contacts: shifting them all changes nothing
    one = g == "t0"
    shifted = 1 / (1 + np.exp(-(np.log(s[one] / (1 - s[one])) - 2.0)))
    np.testing.assert_allclose(cal(shifted), p[one], rtol=1e-9)


def test_relative_calibration_in_evaluate_fold_reports_both_aucs():
    val = _shifted_site(8, 0, "v", np.linspace(-1.0, 1.0, 8))
    test = _shifted_site(8, 1, "t", np.linspace(-2.0, 3.0, 8))
    res = evaluate_fold(val, test, calibration="relative-platt", calibration_prior="none")
    t = res["test"]
    assert res["calibration"]["input"] == "relative"
    assert t["roc_auc_calibrated"] != pytest.approx(t["roc_auc"], abs=1e-6)  # pooled: re-ordered
    raw = evaluate_fold(val, test, calibration="platt", calibration_prior="none")
    assert raw["test"]["roc_auc_calibrated"] == pytest.approx(raw["test"]["roc_auc"], abs=1e-12)
    assert t["roc_auc"] == raw["test"]["roc_auc"] and t["bss"] > raw["test"]["bss"]
    assert {"calibrated", "calibrated_half"} <= set(res["calls"])
    summary = summarise_folds([res])
    assert summary["pooled"]["brier"] == pytest.approx(t["brier"])
    assert summary["pooled_calls"]["calibrated"] == res["calls"]["calibrated"]


def test_a_threshold_is_calibrated_against_its_recording():
    val = _shifted_site(6, 0, "v", np.linspace(-1.0, 1.0, 6))
    cal = fit_calibrator(val["y_true"], val["score"], val["patient"], method="relative-isotonic")
    s = _shifted_site(1, 2, "t", 0.5)["score"].to_numpy()
    flat = np.zeros(s.size, bool)
    flat[:5] = True
    p = cal(s, flat=flat)
    for t in np.quantile(s, [0.5, 0.9, 0.97]):  # the raw call is the calibrated call
        ct = cal(np.array([t]), reference=s, flat=flat)[0]
        np.testing.assert_array_equal(p >= ct, s >= t)
    # the flat contacts are out of the reference: the others stand as without them
    np.testing.assert_allclose(p[5:], cal(s[5:]), rtol=1e-12)
    ens = EnsembleCalibration([cal, Calibrator()])
    assert ens.method == f"relative-isotonic+identity, prior {cal.prior:.3f}"
    np.testing.assert_allclose(ens(s, flat=flat), (p + s) / 2)
    with pytest.raises(ValueError, match="identity: raw only"):
        Calibrator("identity", input="relative")


def test_soz_train_chooses_the_calibration():
    import argparse

    from ingest.errors import ConfigError
    from serving.commands.options import config_from_args
    from serving.commands.train import add_arguments
    from trainer.config import TrainConfig

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["S", "--out", "R", "--calibration", "relative-isotonic"])
    assert config_from_args(TrainConfig, args).calibration == "relative-isotonic"
    assert TrainConfig().calibration == "auto"
    args = p.parse_args(["S", "--out", "R", "--calibration-prior", "none"])
    assert config_from_args(TrainConfig, args).calibration_prior == "none"
    assert TrainConfig().calibration_prior == "match"
    with pytest.raises(ConfigError, match="calibration_prior="):
        TrainConfig(calibration_prior="flat")
    with pytest.raises(ConfigError, match="calibration="):
        TrainConfig(calibration="beta")
    val = _shifted_site(4, 0, "v", 0.0)
    with pytest.raises(ValueError, match="relative-isotonic"):
        fit_calibrator(val["y_true"], val["score"], val["patient"], method="beta")


def test_prior_matching_sets_each_recording_mean_and_keeps_its_ranking():
    rng = np.random.default_rng(3)
    q = rng.beta(0.5, 3.0, size=300)
    g = np.repeat(["a", "b", "c"], 100)
    q[g == "b"] = 1 - (1 - q[g == "b"]) ** 4  # one recording scored far higher than the others
    flat = np.zeros(q.size, bool)
    flat[[0, 1, 2, 150]] = True
    flat_q = q.copy()
    flat_q[[0, 1, 2, 150]] = 0.999  # a flat contact's score must not move its recording's mean
    out = match_prior(flat_q, g, 0.1, flat=flat)
    for k in "abc":
        own = (g == k) & ~flat
        assert out[own].mean() == pytest.approx(0.1, abs=1e-9)
        order = np.argsort(flat_q[own], kind="stable")
        assert np.all(np.diff(out[own][order]) > 0)  # one shift per recording: strictly kept
        # the flat contacts are out of the reference: the others stand as without them
        np.testing.assert_allclose(out[own], match_prior(flat_q[own], prior=0.1), rtol=1e-12)
    with pytest.raises(ValueError, match=r"prior must lie in \(0, 1\)"):
        Calibrator("identity", prior=1.0)


def test_a_run_without_a_prior_is_applied_as_before():
    val = _shifted_site(6, 0, "v", np.linspace(-1.0, 1.0, 6))
    y, s, g = val["y_true"], val["score"], val["patient"]
    cal = fit_calibrator(y, s, g, method="platt")
    old = cal.to_dict()
    del old["prior"]  # a calibration.json written before prior matching
    before = Calibrator.from_dict(old)
    assert before.prior is None and cal.prior == pytest.approx(y.mean())
    unmatched = fit_calibrator(y, s, g, method="platt", prior="none")
    np.testing.assert_array_equal(before(s.to_numpy(), g), unmatched(s.to_numpy(), g))
    assert Calibrator.from_dict(cal.to_dict()) == cal
    assert fit_calibrator(y * 0, s, g, method="platt").prior is None  # one class: no prior
    with pytest.raises(ValueError, match="prior="):
        fit_calibrator(y, s, g, prior="flat")
