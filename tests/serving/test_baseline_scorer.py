"""``soz score --model baseline``: EI on ictal runs, interictal ranking otherwise, in the results schema."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from ingest.errors import SozkitError
from ingest.recording import SeizureEvent
from models.baseline import epileptogenicity_index, ictal_score, interictal_ranking
from serving.baseline_scorer import BaselineScorer
from serving.preprocess import RecordingStream
from serving.results import RESULT_COLUMNS
from serving.scoring import load_scorers
from trainer.baseline_stage import BaselineConfig
from trainer.calibration import Calibrator
from trainer.rundir import RunDir

from .conftest import CONTACTS


@pytest.fixture(scope="module")
def baseline_run(serving_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    shutil.copytree(serving_data["run_dir"], run_dir)
    run = RunDir(run_dir)
    for fold, thr in ((0, 0.4), (1, 0.6)):
        d = run.fold_dir("baseline", fold)
        d.mkdir(parents=True)
        (d / "threshold.json").write_text(json.dumps({"threshold": thr}))
        run.write_calibration("baseline", fold, Calibrator("platt", {"a": 1.0, "b": -1.0}))
        (d / "metrics.json").write_text(json.dumps({"threshold": thr}))
    return run_dir


def _signal(rec, cfg, lo, hi):
    clips = np.concatenate([c for _, c in RecordingStream(rec, cfg)])
    return np.concatenate(list(clips[lo:hi]), axis=-1)


def test_interictal_and_ictal_runs_are_scored_like_training(serving_data, baseline_run):
    (scorer,) = load_scorers(baseline_run, "baseline")
    assert isinstance(scorer, BaselineScorer) and scorer.folds == (0, 1)
    cfg, rec = scorer.ingest_config, serving_data["long_rec"]
    res = scorer.score(rec)  # no seizure annotated: the interictal ranking
    assert res.model == "baseline" and res.channels == CONTACTS
    n = int(rec.duration_s // cfg.clip_s)
    expected = interictal_ranking(_signal(rec, cfg, 0, n), cfg.sfreq, method="spike_rate")
    np.testing.assert_allclose(res.p_raw, expected, rtol=1e-6, atol=1e-9)
    assert res.calibration == "platt" and res.raw_threshold == pytest.approx(0.5)
    np.testing.assert_array_equal(res.soz_calls, res.p_raw >= 0.5)
    assert list(res.to_frame().columns) == list(RESULT_COLUMNS)

    ictal = dataclasses.replace(rec, seizures=(SeizureEvent(onset_s=22.0),))
    res = scorer.score(ictal)
    ei = epileptogenicity_index(_signal(rec, cfg, 0, n), cfg.sfreq, 22.0)
    np.testing.assert_allclose(res.p_raw, ei, rtol=1e-6, atol=1e-9)

    # model_hparams["baseline"]["preictal"]: the EI read with the ranking of the 17 s before
    # onset - lead_s, as training scores it (BaselineConfig.seizure_score); this recording has
    # no spikes, so the high-frequency power ranks its pre-ictal part.
    both = BaselineScorer(
        BaselineConfig(preictal=True, method="hf_power"), scorer.folds, scorer.rules,
        ingest_config=cfg,
    )  # fmt: skip
    assert both.describe()["config"]["preictal"] is True
    expected = ictal_score(_signal(rec, cfg, 0, n), cfg.sfreq, 22.0, preictal="hf_power")
    assert not np.allclose(expected, ei)
    np.testing.assert_allclose(both.score(ictal).p_raw, expected, rtol=1e-6, atol=1e-9)


def test_a_run_without_baseline_folds_says_how_to_get_them(serving_data):
    with pytest.raises(SozkitError, match="soz train --model baseline"):
        BaselineScorer.from_run(serving_data["run_dir"])


def test_whole_recording_scorers_describe_their_folds_threshold_and_inputs(
    serving_data, baseline_run
):
    from serving.svm_scorer import SVMScorer

    base = BaselineScorer.from_run(baseline_run)
    d = base.describe()
    assert list(d) == ["model", "kind", "folds", "threshold", "config", "ingest_config"]
    assert d["model"] == d["kind"] == "baseline" and d["folds"] == [0, 1]
    assert d["threshold"] == pytest.approx(0.5)  # mean of the folds' 0.4 and 0.6
    assert d["config"]["method"] == base.cfg.method
    assert d["ingest_config"] == base.ingest_config.to_dict()
    svm = SVMScorer.from_run(serving_data["run_dir"])
    d = svm.describe()
    assert list(d) == ["model", "kind", "folds", "threshold", "features", "ingest_config"]
    assert d["model"] == d["kind"] == "svm" and d["folds"] == list(svm.folds)
    assert d["features"] == list(svm.feature_names) and len(d["features"]) > 0
