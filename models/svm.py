"""The per-channel SOZ classifier of the SVM stage: scaled features -> RBF SVM -> calibrated probability.

:class:`SOZSVM` is ``StandardScaler`` + ``SVC(kernel="rbf", class_weight="balanced")``, wrapped in
``CalibratedClassifierCV(..., ensemble=False)``: the SVM's decision values are mapped to
probabilities by a sigmoid (Platt) or isotonic calibrator fitted on out-of-fold decision values,
then the SVM is refitted on all the data. (``SVC(probability=True)`` does the same internally but
is deprecated in scikit-learn 1.9.) Balanced class weights matter: only ~10% of contacts are SOZ,
and an unweighted SVM mostly learns to say "not SOZ".

Calibration folds are stratified and, when ``groups`` (patient ids) are given to :meth:`SOZSVM.fit`,
grouped, so a patient's channels never calibrate the decision values of a model that saw them.

Features are first normalised **within each recording** (``normalise="zscore"``, the default, or
``"rank"``), as cross-patient iEEG work does: a channel is described relative to the other channels
of its own recording, so a site's absolute scale (amplifier gain, montage, reference, noise floor,
spike-detector sensitivity) cancels. The fitted model does it to every input, grouped by
``recordings``; without ``recordings`` the rows are one recording, which is what serving passes,
so training and serving normalise alike. ``normalise=None`` is the SVM on absolute features.

Pure scikit-learn: no Ray, no Beam, no torch.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ingest.fileio import atomic_write
from models.arrays import check_finite_rows

logger = logging.getLogger(__name__)

#: Version of the file layout :meth:`SOZSVM.save` writes.
_FORMAT = 1
#: Per-recording feature normalisations :class:`SOZSVM` knows (``None``: absolute features).
NORMALISATIONS = ("zscore", "rank")


def normalise_within(
    X: np.ndarray, recordings: np.ndarray | None = None, mode: str = "zscore"
) -> np.ndarray:
    """Normalise each feature over the channels of each recording.

    Parameters
    ----------
    X : ndarray, shape (n_channels, n_feats)
        Feature rows (of one or several recordings).
    recordings : ndarray, shape (n_channels,) or None
        Recording of each row; ``None``: all rows are one recording.
    mode : {"zscore", "rank"}
        ``"zscore"``: ``(x - mean) / std`` over the recording's channels (0 where a feature is
        constant there); ``"rank"``: the channel's average rank in the recording scaled to
        [-1, 1] (0 for a single channel).

    Returns
    -------
    Z : ndarray, shape (n_channels, n_feats), float64
    """
    from scipy.stats import rankdata

    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise={mode!r} must be one of {NORMALISATIONS} or None.")
    X = np.asarray(X, dtype=np.float64)
    keys = np.zeros(X.shape[0], dtype=np.int64) if recordings is None else np.asarray(recordings)
    if keys.shape != (X.shape[0],):
        raise ValueError(
            f"recordings must have shape ({X.shape[0]},) like X's rows, got {keys.shape}."
        )
    out = np.empty_like(X)
    _, inverse = np.unique(keys, return_inverse=True)
    for g in range(int(inverse.max()) + 1 if inverse.size else 0):
        rows = inverse == g
        x = X[rows]
        if mode == "zscore":
            std = x.std(axis=0)
            out[rows] = np.where(std > 0, (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)
        else:
            n = x.shape[0]
            out[rows] = 0.0 if n < 2 else 2.0 * (rankdata(x, axis=0) - 1.0) / (n - 1) - 1.0
    return out


class SOZSVM:
    """RBF-kernel SVM with balanced class weights and calibrated SOZ probabilities.

    Parameters
    ----------
    C : float
        SVM regularisation (larger fits the training channels more closely). The default 0.1
        (1.0 before) ranked contacts of another simulator family better, both ways, at about
        the same in-family ROC-AUC (README, "The SVM's features"); a saved model keeps its own.
    gamma : float | {"scale", "auto"}
        RBF kernel coefficient; ``"scale"`` is ``1 / (n_feats * X.var())`` on the scaled features.
    calibration : {"sigmoid", "isotonic"}
        Calibrator of the decision values; isotonic needs many (~1000+) channels.
    n_calibration_folds : int
        Folds of the out-of-fold decision values the calibrator is fitted on.
    seed : int
        Seed of the fold shuffling (the only randomness: the SVM itself is deterministic).
    normalise : {"zscore", "rank"} | None
        Per-recording feature normalisation (:func:`normalise_within`) applied before the
        scaler, in :meth:`fit` and in every prediction; ``None`` keeps absolute features.
    """

    def __init__(
        self,
        *,
        C: float = 0.1,
        gamma: float | str = "scale",
        calibration: str = "sigmoid",
        n_calibration_folds: int = 3,
        seed: int = 0,
        normalise: str | None = "zscore",
    ) -> None:
        if not np.isfinite(C) or C <= 0:
            raise ValueError(f"{C=} must be a positive number.")
        if isinstance(gamma, str):
            if gamma not in ("scale", "auto"):
                raise ValueError(f"{gamma=} must be 'scale', 'auto' or a positive number.")
        elif not np.isfinite(gamma) or gamma <= 0:
            raise ValueError(f"{gamma=} must be 'scale', 'auto' or a positive number.")
        if calibration not in ("sigmoid", "isotonic"):
            raise ValueError(f"{calibration=} must be 'sigmoid' or 'isotonic'.")
        if int(n_calibration_folds) != n_calibration_folds or n_calibration_folds < 2:
            raise ValueError(f"{n_calibration_folds=} must be an integer >= 2.")
        if normalise is not None and normalise not in NORMALISATIONS:
            raise ValueError(f"{normalise=} must be one of {NORMALISATIONS} or None.")
        self.normalise = normalise
        self.C = float(C)
        self.gamma = gamma if isinstance(gamma, str) else float(gamma)
        self.calibration = calibration
        self.n_calibration_folds = int(n_calibration_folds)
        self.seed = int(seed)
        self._model: CalibratedClassifierCV | None = None
        self.feature_names: tuple[str, ...] | None = None
        self.n_features_in_: int | None = None

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, read off its signature (as scikit-learn does, so a new
        argument cannot be forgotten here): ``SOZSVM(**svm.get_params())`` makes an unfitted copy.
        """
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SOZSVM({args})"

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has given the model weights."""
        return self._model is not None

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n_channels, n_feats), got {X.shape}.")
        if self.n_features_in_ is not None and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}; "
                "compute features with the same models.features settings as at training."
            )
        check_finite_rows(
            X, "X", "rows", "drop those channels or fix their features before the SVM."
        )
        return X

    def _inputs(self, X: np.ndarray, recordings: np.ndarray | None) -> np.ndarray:
        """Checked rows, normalised within their recordings when the model does so."""
        X = self._check_X(X)
        return X if self.normalise is None else normalise_within(X, recordings, self.normalise)

    def _splits(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> list:
        k = self.n_calibration_folds
        n_pos = int(y.sum())
        if min(n_pos, y.size - n_pos) < k:
            raise ValueError(
                f"{n_pos} positive and {y.size - n_pos} negative channels: each class needs at "
                f"least {k} (one per calibration fold); pass more channels or "
                "lower n_calibration_folds."
            )
        if groups is None:
            splitter = StratifiedKFold(k, shuffle=True, random_state=self.seed)
        else:
            n_groups = np.unique(groups).size
            if n_groups < k:
                raise ValueError(
                    f"{n_groups} groups (patients) for {k} calibration folds; pass "
                    f"n_calibration_folds <= {n_groups} or fit without groups."
                )
            splitter = StratifiedGroupKFold(k, shuffle=True, random_state=self.seed)
        splits = list(splitter.split(X, y, groups))
        for i, (train, _) in enumerate(splits):
            if np.unique(y[train]).size < 2:
                raise ValueError(
                    f"calibration fold {i} has a single class in its training part (positives "
                    "sit in too few groups); lower n_calibration_folds or fit without groups."
                )
        return splits

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        groups: np.ndarray | None = None,
        recordings: np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> SOZSVM:
        """Fit the scaler, the SVM and its probability calibrator.

        Parameters
        ----------
        X : ndarray, shape (n_channels, n_feats)
            One feature vector per channel (e.g. the mean of :func:`models.features.clip_features`
            over a recording's clips).
        y : ndarray, shape (n_channels,)
            1 for SOZ channels, 0 otherwise.
        groups : ndarray, shape (n_channels,) | None
            Patient of each channel: calibration folds then never split a patient.
        recordings : ndarray, shape (n_channels,) | None
            Recording of each row, the unit of the feature normalisation (``None``: one
            recording; with several recordings pass it, or each is normalised against the
            others' channels).
        feature_names : sequence of str | None
            Column names, kept with the model (e.g. ``models.features.FEATURE_NAMES``).

        Returns
        -------
        self : SOZSVM
        """
        self.n_features_in_ = None
        X = self._check_X(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) like X's rows, got {y.shape}.")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"y must hold only 0 and 1, got values {np.unique(y)[:10].tolist()}.")
        y = y.astype(np.int64)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != y.shape:
                raise ValueError(f"groups must have shape {y.shape} like y, got {groups.shape}.")
        if feature_names is not None and len(feature_names) != X.shape[1]:
            raise ValueError(
                f"{len(feature_names)} feature_names for {X.shape[1]} columns of X; "
                "pass one name per column."
            )
        svc = SVC(kernel="rbf", C=self.C, gamma=self.gamma, class_weight="balanced")
        model = CalibratedClassifierCV(
            make_pipeline(StandardScaler(), svc),
            method=self.calibration,
            cv=self._splits(X, y, groups),
            ensemble=False,
        )
        model.fit(self._inputs(X, recordings), y)
        self._model = model
        self.n_features_in_ = X.shape[1]
        self.feature_names = None if feature_names is None else tuple(map(str, feature_names))
        logger.debug("fitted %r on %d channels (%d SOZ)", self, y.size, int(y.sum()))
        return self

    def _fitted(self) -> CalibratedClassifierCV:
        if self._model is None:
            raise RuntimeError("this SOZSVM is not fitted: call fit(X, y) or SOZSVM.load(path).")
        return self._model

    def predict_proba(self, X: np.ndarray, recordings: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probability that each channel is in the SOZ.

        Parameters
        ----------
        X : ndarray, shape (n_channels, n_feats)
            Rows of one recording, or of several with ``recordings``.
        recordings : ndarray, shape (n_channels,) | None
            Recording of each row (the unit of the normalisation); ``None``: one recording.

        Returns
        -------
        proba : ndarray, shape (n_channels,)
            Values in [0, 1].
        """
        model = self._fitted()
        return model.predict_proba(self._inputs(X, recordings))[:, 1]

    def decision_function(self, X: np.ndarray, recordings: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated SVM decision values (signed distance to the boundary), shape (n_channels,)."""
        model = self._fitted()
        estimator = model.calibrated_classifiers_[0].estimator
        return estimator.decision_function(self._inputs(X, recordings))

    def save(self, path: str | Path) -> Path:
        """Write the fitted model (joblib) to ``path`` and return the path.

        The file is a pickle: load only files you (or your training run) wrote.
        """
        model = self._fitted()
        path = Path(path)
        payload = {
            "format": _FORMAT,
            "sklearn": sklearn.__version__,
            "params": self.get_params(),
            "n_features_in": self.n_features_in_,
            "feature_names": self.feature_names,
            "model": model,
        }
        atomic_write(path, lambda f: joblib.dump(payload, f))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SOZSVM:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str | Path
            File written by :meth:`save` (a pickle: only load trusted files).

        Returns
        -------
        svm : SOZSVM
            Fitted, with the saved hyper-parameters and feature names.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no SOZSVM file at {str(path)!r}; check the checkpoint path.")
        payload = joblib.load(path)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a SOZSVM file of format {_FORMAT}; "
                "write it with SOZSVM.save()."
            )
        if payload["sklearn"] != sklearn.__version__:
            logger.warning(
                "%s was saved with scikit-learn %s, running %s: re-fit if results differ",
                path,
                payload["sklearn"],
                sklearn.__version__,
            )
        # Files written before per-recording normalisation existed used absolute features.
        svm = cls(**{"normalise": None, **payload["params"]})
        svm._model = payload["model"]
        svm.n_features_in_ = payload["n_features_in"]
        svm.feature_names = payload["feature_names"]
        return svm
