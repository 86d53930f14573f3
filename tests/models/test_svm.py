"""SOZSVM: balanced RBF SVM with calibrated probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from models.features import FEATURE_NAMES
from models.svm import SOZSVM, normalise_within


def channels(
    n: int, *, pos_rate: float = 0.1, shift: float = 2.0, n_feats: int = 9, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel features: SOZ channels shifted on 3 of the features, on wildly different scales."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    X = rng.standard_normal((n, n_feats))
    X[y == 1, :3] += shift
    X *= np.logspace(-3, 3, n_feats)  # the scaler must undo this
    groups = rng.integers(0, 15, n)  # patients
    return X, y, groups


def test_separable_data_high_auc():
    X, y, groups = channels(500, shift=3.0)
    Xt, yt, _ = channels(500, shift=3.0, seed=1)
    svm = SOZSVM().fit(X, y, groups=groups)
    auc = roc_auc_score(yt, svm.predict_proba(Xt))
    print(f"held-out AUC {auc:.3f}")
    assert auc >= 0.97


def test_balanced_class_weights_matter():
    """On 10% positives an unweighted SVM rarely calls SOZ; the balanced one finds most."""
    X, y, groups = channels(600, shift=1.0, seed=2)
    Xt, yt, _ = channels(2000, shift=1.0, seed=3)
    balanced = SOZSVM().fit(X, y, groups=groups)
    recall_balanced = np.mean(balanced.decision_function(Xt)[yt == 1] > 0)
    plain = make_pipeline(StandardScaler(), SVC(kernel="rbf")).fit(X, y)
    recall_plain = np.mean(plain.decision_function(Xt)[yt == 1] > 0)
    print(
        f"recall of SOZ at the SVM boundary: balanced {recall_balanced:.2f}, plain {recall_plain:.2f}"
    )
    assert recall_balanced >= 0.55
    assert recall_balanced > recall_plain + 0.35


def test_calibrated_probabilities():
    X, y, groups = channels(800, shift=1.5, seed=4)
    Xt, yt, _ = channels(4000, shift=1.5, seed=5)
    p = SOZSVM().fit(X, y, groups=groups).predict_proba(Xt)
    assert p.shape == (4000,)
    assert np.all((p >= 0) & (p <= 1))
    # calibrated: mean predicted probability near the base rate, and high bins are mostly SOZ
    assert p.mean() == pytest.approx(yt.mean(), abs=0.04)
    assert yt[p > 0.5].mean() > 0.5
    assert yt[p < 0.05].mean() < 0.05


def test_deterministic_with_seed():
    X, y, groups = channels(300, shift=1.0, seed=6)
    Xt, _, _ = channels(200, seed=7)
    a = SOZSVM(seed=3).fit(X, y, groups=groups).predict_proba(Xt)
    b = SOZSVM(seed=3).fit(X, y, groups=groups).predict_proba(Xt)
    c = SOZSVM(seed=4).fit(X, y, groups=groups).predict_proba(Xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the seed drives the calibration folds


def test_save_load_round_trip(tmp_path):
    X, y, groups = channels(300, seed=8)
    svm = SOZSVM(C=3.0, gamma=0.05, seed=1).fit(X, y, groups=groups, feature_names=FEATURE_NAMES)
    path = svm.save(tmp_path / "svm.joblib")
    loaded = SOZSVM.load(path)
    assert loaded.get_params() == svm.get_params() == SOZSVM(**svm.get_params()).get_params()
    assert loaded.feature_names == FEATURE_NAMES
    np.testing.assert_array_equal(loaded.predict_proba(X), svm.predict_proba(X))
    np.testing.assert_array_equal(loaded.decision_function(X), svm.decision_function(X))


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SOZSVM file"):
        SOZSVM.load(tmp_path / "missing.joblib")
    import joblib

    joblib.dump({"weights": [1, 2]}, tmp_path / "other.joblib")
    with pytest.raises(ValueError, match="not a SOZSVM file"):
        SOZSVM.load(tmp_path / "other.joblib")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"C": 0.0}, "C="),
        ({"gamma": "wide"}, "gamma="),
        ({"gamma": -1.0}, "gamma="),
        ({"calibration": "beta"}, "calibration="),
        ({"n_calibration_folds": 1}, "n_calibration_folds="),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SOZSVM(**kwargs)


def test_fit_and_predict_validation():
    X, y, groups = channels(200, seed=9)
    svm = SOZSVM()
    with pytest.raises(RuntimeError, match="not fitted"):
        svm.predict_proba(X)
    with pytest.raises(ValueError, match="only 0 and 1"):
        svm.fit(X, y * 2)
    with pytest.raises(ValueError, match=r"y must have shape \(200,\)"):
        svm.fit(X, y[:-1])
    with pytest.raises(ValueError, match="feature_names"):
        svm.fit(X, y, feature_names=["a", "b"])
    bad = X.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite values in 1 rows"):
        svm.fit(bad, y)
    with pytest.raises(ValueError, match="each class needs at least 3"):
        svm.fit(X, np.r_[np.ones(2, int), np.zeros(198, int)])
    with pytest.raises(ValueError, match="2 groups"):
        svm.fit(X, y, groups=np.arange(200) % 2)
    svm.fit(X, y, groups=groups)
    with pytest.raises(ValueError, match="fitted on 9"):
        svm.predict_proba(X[:, :4])


def recordings(n_recs: int, *, seed: int, scale=(1.0, 1.0), offset=(0.0, 0.0)):
    """Recordings of 40 channels (10 % SOZ, shifted on 3 features), each at its own site scale:
    every feature multiplied by a per-recording gain and shifted by a per-recording offset."""
    rng = np.random.default_rng(seed)
    X, y, rec = [], [], []
    for r in range(n_recs):
        yr = np.zeros(40, int)
        yr[rng.choice(40, 4, replace=False)] = 1
        xr = rng.standard_normal((40, 6))
        xr[yr == 1, :3] += 2.5
        xr = xr * rng.uniform(*scale, 6) + rng.uniform(*offset, 6)
        X.append(xr)
        y.append(yr)
        rec += [f"rec{seed}-{r}"] * 40
    return np.concatenate(X), np.concatenate(y), np.asarray(rec)


def test_normalise_within_each_recording():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [30.0, 2.0], [20.0, 1.0]])
    rec = np.array(["a", "a", "b", "b", "b"])
    z = normalise_within(X, rec, "zscore")
    assert np.allclose(z[:2], [[-1.0, 0.0], [1.0, 0.0]])  # constant feature -> 0
    assert np.allclose(z[2:].mean(axis=0), 0.0) and np.allclose(z[2:].std(axis=0), 1.0)
    r = normalise_within(X, rec, "rank")
    assert np.allclose(r[2:, 0], [-1.0, 1.0, 0.0])
    assert np.allclose(normalise_within(X[:1], None, "rank"), 0.0)  # one channel
    # a site's gain and offset cancel
    assert np.allclose(normalise_within(7.0 * X[2:] - 3.0, None), z[2:])
    with pytest.raises(ValueError, match="normalise"):
        normalise_within(X, rec, "minmax")


def test_per_recording_normalisation_survives_a_site_shift():
    """Trained at one site, tested where every recording has its own gain and offset: absolute
    features lose the ranking, features normalised within the recording keep it."""
    X, y, rec = recordings(12, seed=0)
    Xt, yt, rect = recordings(12, seed=1, scale=(0.2, 5.0), offset=(-4.0, 4.0))
    groups = np.array([r.split("-")[1] for r in rec])
    auc = {}
    for mode in (None, "zscore", "rank"):
        svm = SOZSVM(normalise=mode).fit(X, y, groups=groups, recordings=rec)
        auc[mode] = roc_auc_score(yt, svm.predict_proba(Xt, recordings=rect))
    print(f"cross-site AUC: {auc}")
    assert auc["zscore"] >= 0.9 and auc["rank"] >= 0.9
    assert auc[None] < auc["zscore"] - 0.1
    # Serving passes one recording at a time: the same scores as the grouped call.
    svm = SOZSVM().fit(X, y, groups=groups, recordings=rec)
    grouped = svm.predict_proba(Xt, recordings=rect)
    one_by_one = np.concatenate([svm.predict_proba(Xt[rect == r]) for r in np.unique(rect)])
    order = np.concatenate([np.flatnonzero(rect == r) for r in np.unique(rect)])
    assert np.allclose(grouped[order], one_by_one)


def test_files_from_before_normalisation_load_with_absolute_features(tmp_path):
    import joblib

    X, y, groups = channels(200, shift=3.0)
    svm = SOZSVM(normalise=None).fit(X, y, groups=groups)
    path = svm.save(tmp_path / "old.pkl")
    payload = joblib.load(path)
    del payload["params"]["normalise"]  # what a file written before the option holds
    joblib.dump(payload, path)
    old = SOZSVM.load(path)
    assert old.normalise is None
    assert np.allclose(old.predict_proba(X), svm.predict_proba(X))
    assert SOZSVM.load(SOZSVM().fit(X, y, groups=groups).save(tmp_path / "n.pkl")).normalise == (
        "zscore"
    )


def test_files_from_before_the_new_default_c_keep_their_own(tmp_path):
    """An SVM fitted with C=1.0 (the default before 0.1) scores after loading exactly as before."""
    X, y, groups = channels(200, shift=1.0)
    old = SOZSVM(C=1.0).fit(X, y, groups=groups)
    loaded = SOZSVM.load(old.save(tmp_path / "c1.pkl"))
    assert loaded.C == 1.0 and SOZSVM().C == 0.1
    np.testing.assert_array_equal(loaded.decision_function(X), old.decision_function(X))
    # the default really is another model: its decision values differ on overlapping classes
    new = SOZSVM().fit(X, y, groups=groups)
    assert not np.allclose(new.decision_function(X), old.decision_function(X), atol=1e-3)
