"""Serving gives each SVM the feature columns it was fitted on, old (v1) and new (v2) alike."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.errors import SozkitError
from models.features import RecordingFeatureMean, clip_features, select_features, svm_bands
from models.svm import SOZSVM
from serving.svm_scorer import SVMScorer
from tests.serving.conftest import INGEST


def _fit(names, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, len(names)))
    y = (X[:, 0] + X[:, -1] + 0.5 * rng.normal(size=60) > 0.8).astype(int)
    return SOZSVM(seed=seed).fit(X, y, groups=np.arange(60) % 6, feature_names=names)


def test_a_v1_and_a_v2_svm_each_score_their_own_columns():
    sfreq = INGEST.sfreq
    computed = RecordingFeatureMean(sfreq).names
    v1, v2 = _fit(select_features(computed, "v1"), 0), _fit(list(computed), 1)
    assert len(v1.feature_names) < len(v2.feature_names)
    scorer = SVMScorer([v1, v2], [0.5, 0.5], [0, 1], ingest_config=INGEST)
    assert scorer.feature_names == computed
    rng = np.random.default_rng(2)
    clips = rng.standard_normal((6, 4, INGEST.clip_samples))
    acc = RecordingFeatureMean(sfreq)
    acc.add(clips)
    # the v1 SVM sees exactly what it saw before the accumulator grew: the clips' mean features
    old = clip_features(clips, sfreq, bands=svm_bands(sfreq)).mean(axis=0)
    expected = (v1.predict_proba(old) + v2.predict_proba(acc.mean())) / 2
    np.testing.assert_allclose(scorer.predict(acc.mean()), expected, rtol=1e-10)
    alone = SVMScorer([v1], [0.5], [0], ingest_config=INGEST)
    assert alone.feature_names == tuple(v1.feature_names)


def test_an_svm_fitted_on_features_serving_lacks_is_refused():
    odd = _fit(["spike_rate", "wp_log_power_gamma", "peak_wp_log_power_theta"], 0)
    with pytest.raises(SozkitError, match="peak_wp_log_power_theta.*retrain"):
        SVMScorer([odd], [0.5], [0], ingest_config=INGEST)
