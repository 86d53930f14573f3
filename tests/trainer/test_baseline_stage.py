"""Classical baseline on the store: EI on ictal recordings, interictal ranking, same folds."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import SozkitError
from ingest.store import ClipStore
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


def test_config_is_validated():
    with pytest.raises(SozkitError, match="pre_s"):
        BaselineConfig(pre_s=0)
