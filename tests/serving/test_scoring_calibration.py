"""Serving applies the run's calibration: calibrated probability and threshold, raw kept, same calls."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from serving.results import ScoreResult
from serving.scoring import Scorer
from serving.svm_scorer import SVMScorer
from trainer.calibration import Calibrator
from trainer.call_rules import relative_threshold
from trainer.rundir import RunDir


@pytest.fixture(scope="module")
def calibrated_run(serving_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    run = RunDir(run_dir)
    for model in ("sozformer", "svm"):
        run.write_calibration(model, 0, Calibrator("platt", {"a": 2.0, "b": -1.5}))
        run.write_calibration(model, 1, Calibrator("isotonic", {"x": [0.0, 1.0], "y": [0.0, 0.5]}))
    return run_dir


@pytest.mark.parametrize("cls", [Scorer, SVMScorer])
def test_scores_are_calibrated_and_calls_unchanged(cls, serving_data, calibrated_run):
    rec = serving_data["long_rec"]
    raw = cls.from_run(serving_data["run_dir"]).score(rec)  # no calibration.json: identity
    assert raw.calibration == "identity"
    np.testing.assert_allclose(raw.probabilities, raw.p_raw)
    cal = cls.from_run(calibrated_run).score(rec)
    assert cal.calibration == "platt+isotonic"
    np.testing.assert_allclose(cal.p_raw, raw.probabilities, rtol=1e-6)
    a, b = 2.0, -1.5
    z = a * np.log(raw.probabilities / (1 - raw.probabilities)) + b
    expected = (1 / (1 + np.exp(-z)) + (1 - 1e-6) * 0.5 * raw.probabilities
                + 1e-6 * raw.probabilities) / 2  # fmt: skip
    np.testing.assert_allclose(cal.probabilities, expected, rtol=1e-6)
    assert cal.raw_threshold == pytest.approx(raw.threshold)
    assert cal.threshold != pytest.approx(raw.threshold)
    np.testing.assert_array_equal(cal.soz_calls, raw.soz_calls)
    np.testing.assert_array_equal(cal.ranks, raw.ranks)
    answer = cal.to_dict()
    assert answer["calibration"] == "platt+isotonic"
    assert answer["threshold_raw"] == pytest.approx(raw.threshold)
    top = answer["contacts"][0]
    assert top["p_raw"] == pytest.approx(raw.probabilities.max(), rel=1e-6)
    back = ScoreResult.from_dict(answer)
    np.testing.assert_allclose(back.p_raw, cal.p_raw)
    assert back.calibration == cal.calibration and back.raw_threshold == cal.raw_threshold
    frame = cal.to_frame()
    np.testing.assert_allclose(frame["p_raw"], cal.p_raw)
    assert (frame["calibration"] == "platt+isotonic").all()
    assert (frame["soz_call"] == (frame["probability"] >= frame["threshold"])).all()


def test_relative_call_rule_thresholds_each_recording_against_itself(serving_data, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    for fold, k in ((0, 0.5), (1, 1.5)):
        (run_dir / "svm" / f"fold_{fold}" / "threshold.json").write_text(
            json.dumps({"threshold": 0.5, "call_rule": "relative", "relative_k": k})
        )
    res = SVMScorer.from_run(run_dir).score(serving_data["long_rec"])
    t = relative_threshold(res.p_raw, 1.0)  # the mean of the folds' k
    assert res.threshold == pytest.approx(t)  # identity calibration: raw = calibrated
    assert res.soz_calls.sum() >= 1
    np.testing.assert_array_equal(res.soz_calls, res.p_raw >= t)


@pytest.mark.parametrize("cls", [Scorer, SVMScorer])
def test_relative_threshold_leaves_out_flat_contacts(cls, serving_data, tmp_path):
    from tests.adversarial.cohorts import make_constant
    from tests.serving.conftest import make_recording, write_edf

    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    model = "sozformer" if cls is Scorer else "svm"
    for fold in (0, 1):
        (run_dir / model / f"fold_{fold}" / "threshold.json").write_text(
            json.dumps({"threshold": 0.5, "call_rule": "relative", "relative_k": 0.5})
        )
    edf = write_edf(tmp_path / "p1_ictal.edf", seconds=60.0)
    make_constant(edf, blips=True, only={"RH3"})
    res = cls.from_run(run_dir).score(make_recording(edf))
    assert "RH3" not in res.channels and any("RH3" in w for w in res.warnings)
    # the threshold is that of the scored contacts alone: the flat one does not count
    assert res.threshold == pytest.approx(relative_threshold(res.p_raw, 0.5))


@pytest.mark.parametrize("cls", [Scorer, SVMScorer])
def test_serving_calibrates_a_recording_as_training_does(cls, serving_data, tmp_path):
    """A relative calibration, fitted like training fits it, gives the served recording the
    probabilities the training side (:func:`trainer.metrics.evaluate_fold`) gives the same
    recording's raw scores; a flat contact is out of the reference on both sides."""
    import pandas as pd

    from tests.adversarial.cohorts import make_constant
    from tests.serving.conftest import SOZ, make_recording, write_edf
    from tests.trainer.test_calibration import _shifted_site
    from trainer.calibration import fit_calibrator
    from trainer.metrics import evaluate_fold, with_flat

    run_dir = tmp_path / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    model = "sozformer" if cls is Scorer else "svm"
    val = _shifted_site(6, 0, "v", np.linspace(-1.0, 1.0, 6))
    cals = [
        fit_calibrator(val["y_true"], val["score"], val["patient"], method=m)
        for m in ("relative-isotonic", "relative-platt")
    ]
    for fold, cal in enumerate(cals):
        RunDir(run_dir).write_calibration(model, fold, cal)
    edf = write_edf(tmp_path / "p1_ictal.edf", seconds=60.0)
    make_constant(edf, blips=True, only={"RH3"})
    served = cls.from_run(run_dir).score(make_recording(edf))
    assert "RH3" not in served.channels
    prior = np.mean([c.prior for c in cals])  # each fold matches a recording to its prior
    assert served.calibration == f"relative-isotonic+relative-platt, prior {prior:.3f}"
    test = pd.DataFrame({
        "cohort": "c", "patient": "p1", "recording_id": "p1_ictal",
        "channel": [*served.channels, "RH3"],
        "y_true": [int(c in SOZ) for c in (*served.channels, "RH3")],
        "score": [*served.p_raw, 0.0],  # a flat contact's score: anything
    })  # fmt: skip
    channels = pd.DataFrame({"recording_id": "p1_ictal", "name": test["channel"],
                             "flat": test["channel"] == "RH3"})  # fmt: skip
    test = with_flat(test, channels)
    per_fold = []
    for cal in cals:  # each fold's map on the training side; serving averages the folds' maps
        table = pd.DataFrame(evaluate_fold(val, test, calibrator=cal)["test_table"])
        per_fold.append(table.set_index("channel").loc[list(served.channels), "probability"])
    np.testing.assert_allclose(served.probabilities, np.mean(per_fold, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(served.soz_calls, served.p_raw >= served.raw_threshold)
    np.testing.assert_array_equal(  # the recording's ranking is kept
        np.argsort(-served.probabilities, kind="stable"), np.argsort(-served.p_raw, kind="stable")
    )
