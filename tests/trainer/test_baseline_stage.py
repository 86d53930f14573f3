"""Classical baseline on the store: EI on ictal recordings, interictal ranking, same folds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ingest.errors import SozkitError
from ingest.store import ClipStore
from models.baseline import epileptogenicity_index, ictal_score
from tests.trainer.conftest import PATIENTS
from trainer.baseline_stage import (
    BaselineConfig,
    fold_predictions,
    recording_scores,
    score_recordings,
)
from trainer.datasets import recording_table
from trainer.metrics import evaluate_fold
from trainer.splits import cohort_groups, patient_folds

CFG = BaselineConfig(pre_s=24.0, post_s=24.0, interictal_clips=8)


def test_baseline_scores_every_channel_and_finds_the_fast_onset(ray_local, tiny_store):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    scores = score_recordings(tiny_store, recs, CFG)
    assert len(scores) == sum(r.n_channels for r in recs)
    assert scores["score"].between(0, 1).all()
    ictal = scores[scores["recording_id"].str.contains("__ictal__")]
    # The tiny cohort's SOZ contacts carry a 40 Hz onset: their EI is higher on average.
    assert (
        ictal.loc[ictal["y_true"] == 1, "score"].mean()
        > ictal.loc[ictal["y_true"] == 0, "score"].mean()
    )
    # The Ray tasks give what the pure per-recording function gives.
    np.testing.assert_allclose(
        recording_scores(store, recs[0].recording_id, CFG),
        scores.loc[scores["recording_id"] == recs[0].recording_id, "score"].to_numpy(),
    )
    patients = sorted(f"{c}/{s}" for c, s in PATIENTS)
    for fold in patient_folds(patients, n_folds=2, groups=cohort_groups(patients)):
        val, test = fold_predictions(scores, fold)
        assert set(val["patient"]) == set(fold.val) and set(test["patient"]) == set(fold.test)
        result = evaluate_fold(val, test)
        assert 0 <= result["threshold"] <= 1 and result["test"]["tp"] + result["test"]["fn"] > 0


def test_preictal_option_scores_seizures_with_the_preictal_ranking(tiny_store):
    """``preictal``: each seizure's window scored by models.baseline.ictal_score, the onset
    clamped into the window as for the EI alone."""
    store = ClipStore.open(tiny_store)
    rec = next(r for r in recording_table(store) if "__ictal__" in r.recording_id)
    both = dataclasses.replace(CFG, preictal=True)
    s_ei, s_both = (recording_scores(store, rec.recording_id, c) for c in (CFG, both))
    assert s_both.shape == s_ei.shape and np.all((s_both >= 0) & (s_both <= 1))
    x = np.random.default_rng(0).standard_normal((3, 40 * 256))
    np.testing.assert_array_equal(
        both.seizure_score(x, 256.0, 30.0), ictal_score(x, 256.0, 30.0, preictal="spike_rate")
    )
    np.testing.assert_array_equal(
        CFG.seizure_score(x, 256.0, 45.0), epileptogenicity_index(x, 256.0, 40.0 - 1 / 256.0)
    )


def test_config_is_validated():
    with pytest.raises(SozkitError, match="pre_s"):
        BaselineConfig(pre_s=0)
