"""Probabilities that mean what they say: calibration fitted on held-out patients, and its measures.

A fold's model ranks contacts; its raw probability need not be the SOZ frequency (a network
trained with a weighted loss over-calls, an SVM's Platt scaling saw other patients). A
:class:`Calibrator` maps the raw probability onto the SOZ frequency observed on the fold's
**validation** patients (never its test patients): isotonic regression (a monotone step
function), Platt scaling (a logistic curve on the logit), or the identity. :func:`fit_calibrator`
fits both and keeps the one whose Brier score is lowest on patients it was not fitted on
(leave-one-validation-patient-out), the identity when neither helps. Every map is **strictly**
increasing (the isotonic steps get a slope of :data:`TIE_SLOPE`, so no two raw scores become a
tie), so the channel ranking and the ROC-AUC do not change, and a call ``raw >= t`` is exactly
the call ``calibrated >= calibrated(t)``: serving reports the threshold calibrated too.

A calibrator is a small JSON object (:meth:`Calibrator.to_dict`), kept per fold in the run
directory (:meth:`trainer.rundir.RunDir.write_calibration`) and applied by serving to every
result (:class:`EnsembleCalibration`, the mean over the folds' maps as the scores are the
mean over the folds' models).

Also here: :func:`reliability_curve` and :func:`brier_skill_score` (1 - Brier / Brier of the
constant prediction at the prevalence: > 0 is better than knowing the prevalence only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "TIE_SLOPE",
    "Calibrator",
    "EnsembleCalibration",
    "brier_skill_score",
    "fit_calibrator",
    "reliability_curve",
]

#: Calibration maps; ``"auto"`` (the default of :func:`fit_calibrator`) picks one of them.
METHODS = ("identity", "platt", "isotonic")
_EPS = 1e-6
#: Weight of the raw score blended into an isotonic map: keeps it strictly increasing.
TIE_SLOPE = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from a model's raw probability to a calibrated one.

    Parameters
    ----------
    method : {"identity", "platt", "isotonic"}
    params : dict
        ``platt``: ``a``, ``b`` (``p = sigmoid(a * logit(raw) + b)``, ``a >= 0``);
        ``isotonic``: ``x``, ``y`` (increasing knots, linear in between, flat outside).
    info : dict
        How it was chosen (validation channels, cross-fitted Brier of every method ...).
    """

    method: str = "identity"
    params: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is not one of {METHODS}.")
        if self.method == "platt" and (
            not {"a", "b"} <= set(self.params) or not float(self.params["a"]) > 0
        ):
            raise ValueError(f"a Platt calibrator needs a > 0 and b; got {dict(self.params)}.")
        if self.method == "isotonic":
            x, y = self.params.get("x"), self.params.get("y")
            if not x or y is None or len(x) != len(y):
                raise ValueError("an isotonic calibrator needs knots x and y of equal length.")

    def __call__(self, p) -> np.ndarray:
        """Calibrated probabilities of raw probabilities ``p`` (any shape)."""
        p = np.asarray(p, dtype=float)
        if self.method == "platt":
            z = float(self.params["a"]) * _logit(p) + float(self.params["b"])
            return 1.0 / (1.0 + np.exp(-z))
        if self.method == "isotonic":
            step = np.interp(p, self.params["x"], self.params["y"])
            return (1.0 - TIE_SLOPE) * step + TIE_SLOPE * np.clip(p, 0.0, 1.0)
        return p.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": dict(self.params), "info": dict(self.info)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        return cls(str(d.get("method", "identity")), dict(d.get("params") or {}),
                   dict(d.get("info") or {}))  # fmt: skip


def _fit(method: str, y: np.ndarray, p: np.ndarray) -> Calibrator:
    """One method fitted on all of ``(y, p)``."""
    if method == "identity" or y.min() == y.max():
        return Calibrator("identity")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(_logit(p)[:, None], y)
        a = float(lr.coef_[0, 0])
        if not a > 0:  # a flat or negative slope would tie or invert the ranking
            return Calibrator("identity")
        return Calibrator("platt", {"a": a, "b": float(lr.intercept_[0])})
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return Calibrator(
        "isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    )


def fit_calibrator(y_true, y_prob, groups=None, *, method: str = "auto") -> Calibrator:
    """Fit the calibration of a fold on its validation channels.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        0/1 SOZ labels of the validation channels.
    y_prob : array-like of float, shape (n_channels,)
        Their raw probabilities.
    groups : array-like, shape (n_channels,), optional
        Patient of each channel: ``"auto"`` compares the methods leaving one patient out at a
        time (needs >= 2 patients; otherwise the in-sample Brier decides, isotonic excluded).
    method : {"auto", "identity", "platt", "isotonic"}

    Returns
    -------
    Calibrator
        ``info`` holds ``n_channels``, ``n_patients``, ``brier_raw`` and, for ``"auto"``,
        ``cv_brier`` per method.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(y_prob, dtype=float), 0.0, 1.0)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"{y.shape=} and {p.shape=} must be equal, 1-D and non-empty.")
    if method != "auto" and method not in METHODS:
        raise ValueError(f"{method=} must be 'auto' or one of {METHODS}.")
    g = np.asarray(groups) if groups is not None else np.zeros(y.size)
    info: dict[str, Any] = {
        "n_channels": int(y.size),
        "n_patients": int(len(np.unique(g))),
        "brier_raw": float(np.mean((p - y) ** 2)),
    }
    if method == "auto":
        patients = np.unique(g)
        cv = {}
        for m in METHODS:
            if len(patients) < 2:
                if m == "isotonic":
                    continue  # in-sample isotonic always "wins": not a fair comparison
                out = _fit(m, y, p)(p)
            else:
                out = np.empty_like(p)
                for pat in patients:
                    held = g == pat
                    out[held] = _fit(m, y[~held], p[~held])(p[held])
            cv[m] = float(np.mean((out - y) ** 2))
        info["cv_brier"] = cv
        method = min(cv, key=lambda m: (round(cv[m], 12), METHODS.index(m)))
    cal = _fit(method, y, p)
    return Calibrator(cal.method, cal.params, info)


class EnsembleCalibration:
    """The calibration of a fold ensemble: the mean of the folds' maps (still monotone).

    Parameters
    ----------
    calibrators : sequence of Calibrator
        One per fold (identity where a fold has none).
    """

    def __init__(self, calibrators: Sequence[Calibrator]) -> None:
        if not calibrators:
            raise ValueError("an ensemble calibration needs at least one calibrator.")
        self.calibrators = tuple(calibrators)

    @property
    def method(self) -> str:
        """The folds' methods joined (``"isotonic"``, ``"platt+isotonic"`` ...)."""
        return "+".join(dict.fromkeys(c.method for c in self.calibrators))

    @property
    def is_identity(self) -> bool:
        return all(c.method == "identity" for c in self.calibrators)

    def __call__(self, p) -> np.ndarray:
        return np.mean([c(p) for c in self.calibrators], axis=0)


def brier_skill_score(brier: float | None, prevalence: float | None) -> float | None:
    """``1 - brier / (prevalence * (1 - prevalence))``; None where the reference is 0."""
    if brier is None or prevalence is None:
        return None
    ref = float(prevalence) * (1.0 - float(prevalence))
    return 1.0 - float(brier) / ref if ref > 0 else None


def reliability_curve(y_true, y_score, *, n_bins: int = 10) -> list[dict]:
    """Calibration bins: mean predicted probability vs observed SOZ fraction.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
    y_score : array-like of float, shape (n_channels,)
        Probabilities in [0, 1].
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    bins : list of dict
        One dict per bin: ``lower``, ``upper``, ``count``, ``mean_score`` and ``fraction_positive``
        (None for an empty bin). The last bin includes 1.0.
    """
    if n_bins < 1:
        raise ValueError(f"{n_bins=} must be >= 1.")
    y_true = np.asarray(y_true, dtype=int)
    y_score = np.asarray(y_score, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, y_score, side="right") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        mean = float(y_score[sel].mean()) if n else None
        frac = float(y_true[sel].mean()) if n else None
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "mean_score": mean if mean is None or math.isfinite(mean) else None,
                "fraction_positive": frac,
            }
        )
    return bins
