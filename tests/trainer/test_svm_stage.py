"""SVM stage: per-recording features by Ray tasks, cached beside the store; one SVM per fold."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ingest.errors import SozkitError
from ingest.store import ClipStore
from models.features import select_features
from tests.trainer.conftest import PATIENTS
from trainer.datasets import recording_table
from trainer.splits import cohort_groups, patient_folds
from trainer.svm_stage import (
    FEATURE_VERSION,
    compute_features,
    feature_cache_dir,
    feature_columns,
    recording_features,
    train_svm_fold,
)


def test_features_are_computed_in_parallel_cached_and_reused(ray_local, tiny_store, tmp_path):
    store = ClipStore.open(tiny_store)
    recs = recording_table(store)
    ids = [r.recording_id for r in recs]
    cache = str(tmp_path / "cache")
    seen = []
    feats = compute_features(
        tiny_store, ids, cache_dir=cache, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(ids), len(ids))
    files = sorted(os.listdir(cache))
    assert files == sorted(f"{rid}.parquet" for rid in ids)
    mtimes = [os.path.getmtime(os.path.join(cache, f)) for f in files]
    again = compute_features(tiny_store, ids, cache_dir=cache)
    assert [os.path.getmtime(os.path.join(cache, f)) for f in files] == mtimes  # not recomputed
    pd.testing.assert_frame_equal(feats, again)
    assert len(feats) == sum(r.n_channels for r in recs)
    cols = feature_columns(store.sfreq)
    assert "fast_ripple" not in " ".join(cols)  # above the 128 Hz Nyquist of the tiny store
    assert np.isfinite(feats[cols].to_numpy()).all()
    # A task's result equals the direct computation (the chunked mean over clips).
    direct = recording_features(store, ids[0], chunk_clips=3)
    np.testing.assert_allclose(
        direct[cols].to_numpy(), feats[feats["recording_id"] == ids[0]][cols].to_numpy(), rtol=1e-6
    )
    assert feature_cache_dir("s3://b/store/").endswith(f"/store/features/{FEATURE_VERSION}")


def _features_and_folds(tiny_store, tmp_path):
    """The tiny store's recordings, their SVM features and two patient-wise folds."""
    recs = recording_table(ClipStore.open(tiny_store))
    feats = compute_features(tiny_store, [r.recording_id for r in recs], cache_dir=str(tmp_path))
    patients = sorted(f"{c}/{s}" for c, s in PATIENTS)
    return recs, feats, patient_folds(patients, n_folds=2, groups=cohort_groups(patients))


def test_one_svm_per_fold_scores_its_val_and_test_patients(ray_local, tiny_store, tmp_path):
    recs, feats, folds = _features_and_folds(tiny_store, tmp_path)
    aucs = []
    for fold in folds:
        res = train_svm_fold(feats, recs, fold, seed=0)
        assert sorted(res.test_predictions["patient"].unique()) == sorted(fold.test)
        assert sorted(res.val_predictions["patient"].unique()) == sorted(fold.val)
        assert res.test_predictions["score"].between(0, 1).all()
        t = res.test_predictions
        aucs.append(roc_auc_score(t["y_true"], t["score"]))
    # SOZ contacts spike: the spike-count features separate them on unseen patients.
    assert np.mean(aucs) > 0.7, aucs
    # the default feature set is v1; v2 adds the energy ratio and the peaks; each model says which
    cols = feature_columns(ClipStore.open(tiny_store).sfreq)
    assert res.model.feature_names == tuple(select_features(cols, "v1"))
    v2 = train_svm_fold(feats, recs, folds[0], seed=0, hparams={"features": "v2"})
    assert v2.model.feature_names == tuple(cols)
    assert {"log_energy_ratio", "peak_spike_rate"} <= set(cols) - set(res.model.feature_names)
    no_soz = [dataclasses.replace(r, labels=np.zeros_like(r.labels)) for r in recs]
    with pytest.raises(SozkitError, match="only one class"):
        train_svm_fold(feats, no_soz, folds[0])


def test_a_tilt_augmented_fold_learns_and_its_untilted_copies_fit_the_same_svm(
    ray_local, tiny_store, tmp_path
):
    recs, feats, folds = _features_and_folds(tiny_store, tmp_path)
    aucs = []
    for fold in folds:
        res = train_svm_fold(feats, recs, fold, seed=0, hparams={"augment": "tilt"})
        t = res.test_predictions
        aucs.append(roc_auc_score(t["y_true"], t["score"]))
        plain = train_svm_fold(feats, recs, fold, seed=0)
        assert res.model.feature_names == plain.model.feature_names  # serving sees no change
        assert res.model.C == pytest.approx(plain.model.C / 4)  # C shared by a contact's 4 rows
    assert np.mean(aucs) > 0.7, aucs
    # copies with no tilt are the rows again, and with C shared they fit the same SVM
    test = plain.test_predictions
    rows = test[["recording_id", "channel"]].merge(feats, on=["recording_id", "channel"])
    X, rec = rows[list(plain.model.feature_names)].to_numpy(), rows["recording_id"].to_numpy()
    flat = train_svm_fold(feats, recs, fold, seed=0, hparams={"augment": "tilt", "tilt_sd": 0.0})
    np.testing.assert_allclose(
        flat.model.decision_function(X, rec),
        plain.model.decision_function(X, rec),
        atol=2e-3,
    )
    # a tilt moves the model (the copies are not the rows)
    tilted = res.model.decision_function(X, rec)
    assert not np.allclose(tilted, plain.model.decision_function(X, rec), atol=1e-2)
    with pytest.raises(SozkitError, match="augment='gain'"):
        train_svm_fold(feats, recs, folds[0], hparams={"augment": "gain"})
