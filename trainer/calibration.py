"""Probabilities that mean what they say: calibration fitted on held-out patients, and its measures.

A fold's model ranks contacts; its raw probability need not be the SOZ frequency (a network
trained with a weighted loss over-calls, an SVM's Platt scaling saw other patients). A
:class:`Calibrator` maps a score onto the SOZ frequency observed on the fold's **validation**
patients (never its test patients): isotonic regression (a monotone step function), Platt
scaling (a logistic curve on the logit), or the identity. Its input is either

- ``"raw"``: the raw probability itself, one map for every recording; or
- ``"relative"``: the contact's standing among its own recording's other contacts
  (:func:`relative_scores`: the robust z of its logit against the median and the scaled MAD of
  the logits of the recording's contacts that are not flat, through a sigmoid). A site whose
  scores all sit higher or lower than the training site's (another generator, montage,
  amplifier) gets the same probabilities; on the training side the unit is the patient (its
  aggregated contacts, :func:`trainer.metrics.aggregate_channel_scores`), in serving the
  recording (the same for a patient with one recording).

:func:`fit_calibrator` (``method="auto"``) fits every candidate of :data:`CANDIDATES` and keeps
the one whose Brier score is lowest on patients it was not fitted on
(leave-one-validation-patient-out), the identity when none helps. Every map is **strictly**
increasing in the score within a recording (the isotonic steps get a slope of
:data:`TIE_SLOPE`, so no two scores become a tie): a recording's ranking of its contacts never
changes, and a call ``raw >= t`` is exactly the call ``calibrated >= calibrated(t)`` with ``t``
taken against the same recording (serving reports the threshold calibrated too). A ``"raw"``
map also keeps the **pooled** ranking (and so the pooled ROC-AUC) over patients; a
``"relative"`` one re-orders contacts of different recordings, so the pooled ROC-AUC of the
calibrated probabilities (``roc_auc_calibrated`` in :func:`trainer.channel_metrics.channel_metrics`)
differs from that of the raw scores (``roc_auc``, the figure the summaries headline).

**Prior matching** (``prior="match"``, the default): after its map, a calibrator shifts the
logits of each recording's (patient's) contacts by one constant so that their mean probability,
over the contacts that are not flat, is the SOZ prevalence of the validation patients
(:attr:`Calibrator.prior`). A map fitted on one site reads another site's scores at that site's
own level: a model trained elsewhere may score every contact of the new site higher or lower, and
a map that is right at home then calls too many or too few (Brier worse than the constant
prevalence). Matching each recording to the prior keeps the map's shape within the recording
and its ranking (one constant per recording), and assumes instead that a recording holds about
the cohort's share of SOZ contacts: it under-states a patient whose SOZ is unusually large.
Chosen on three simulated cohorts across generators and checked on two others (README "Calls and
probabilities across generators"); ``prior="none"`` keeps the map alone (every run trained
before: a ``calibration.json`` without ``prior`` is applied as it was).

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

from trainer.call_rules import group_indices, reference_scores

__all__ = [
    "CALIBRATIONS",
    "CANDIDATES",
    "INPUTS",
    "METHODS",
    "PRIORS",
    "TIE_SLOPE",
    "Calibrator",
    "EnsembleCalibration",
    "brier_skill_score",
    "fit_calibrator",
    "match_prior",
    "relative_scores",
    "reliability_curve",
]

#: Calibration maps; ``"auto"`` (the default of :func:`fit_calibrator`) picks one of them.
METHODS = ("identity", "platt", "isotonic")
#: What a map reads: the raw probability, or the contact's standing in its recording.
INPUTS = ("raw", "relative")
#: The ``(input, method)`` pairs ``"auto"`` compares, in the order ties are broken.
CANDIDATES = (
    ("raw", "identity"),
    ("raw", "platt"),
    ("raw", "isotonic"),
    ("relative", "platt"),
    ("relative", "isotonic"),
)
#: What ``method`` of :func:`fit_calibrator` (and ``soz train --calibration``) accepts.
CALIBRATIONS = ("auto", *(m if i == "raw" else f"{i}-{m}" for i, m in CANDIDATES))
_EPS = 1e-6
#: The clip of the logits prior matching shifts: well below an isotonic map's floor (its
#: levels differ by TIE_SLOPE), so that the shift adds no ties.
_SHIFT_EPS = 1e-13
#: Weight of the raw score blended into an isotonic map: keeps it strictly increasing.
TIE_SLOPE = 1e-6
#: What ``prior`` of :func:`fit_calibrator` (and ``soz train --calibration-prior``) accepts.
PRIORS = ("match", "none")
#: Floor of a recording's logit spread (scaled MAD) in :func:`relative_scores`: a recording
#: whose contacts all score alike gets z near 0, not an exploding z.
MIN_SPREAD = 0.05


def _logit(p: np.ndarray, eps: float = _EPS) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def relative_scores(p, groups=None, *, flat=None, reference=None) -> np.ndarray:
    """Each score's standing among its recording's (or patient's) contacts, in (0, 1).

    ``sigmoid((logit(p) - median) / spread)`` with the median and the spread (1.4826 x MAD,
    at least :data:`MIN_SPREAD`) of the logits of the group's contacts that are not ``flat``
    (:func:`trainer.call_rules.reference_scores`, the contacts the relative call rule compares
    against). Strictly increasing in ``p`` within a group.

    Parameters
    ----------
    p : array-like of float, shape (n,)
        Raw probabilities.
    groups : array-like, shape (n,), optional
        Recording (or patient) of each score; ``None``: all of ``p`` is one recording.
    flat : array-like of bool, optional
        Contacts without signal, left out of their group's reference (shaped like
        ``reference`` when it is given).
    reference : array-like of float, optional
        The recording's scores to stand against instead of ``p``'s own (a threshold scored
        against its recording); only with ``groups=None``.

    Returns
    -------
    ndarray of float, shape (n,)
    """
    p = np.asarray(p, dtype=float)
    fl = None if flat is None else np.asarray(flat, dtype=bool)
    if reference is not None:
        if groups is not None:
            raise ValueError("a reference is one recording's scores: pass groups=None with it.")
        return _standing(p, reference_scores(reference, fl))
    if groups is None:
        return _standing(p, reference_scores(p, fl))
    out = np.empty_like(p)
    for idx in group_indices(groups):
        out[idx] = _standing(p[idx], reference_scores(p[idx], None if fl is None else fl[idx]))
    return out


def _standing(p: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``sigmoid`` of the robust z of ``logit(p)`` against the logits of ``reference``."""
    lr = _logit(reference)
    med = float(np.median(lr))
    spread = max(1.4826 * float(np.median(np.abs(lr - med))), MIN_SPREAD)
    return _sigmoid((_logit(p) - med) / spread)


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from a model's raw probability to a calibrated one.

    Parameters
    ----------
    method : {"identity", "platt", "isotonic"}
    params : dict
        ``platt``: ``a``, ``b`` (``p = sigmoid(a * logit(x) + b)``, ``a >= 0``);
        ``isotonic``: ``x``, ``y`` (increasing knots, linear in between, flat outside).
    info : dict
        How it was chosen (validation channels, cross-fitted Brier of every candidate ...).
    input : {"raw", "relative"}
        What ``x`` is: the raw probability, or :func:`relative_scores` of it within its
        recording (patient); the identity is always on the raw probability.
    prior : float, optional
        The prevalence each recording's (patient's) probabilities are matched to after the map
        (:func:`match_prior`); ``None``: the map alone.
    """

    method: str = "identity"
    params: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    input: str = "raw"
    prior: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is not one of {METHODS}.")
        if self.input not in INPUTS or (self.method == "identity" and self.input != "raw"):
            raise ValueError(
                f"calibration input {self.input!r} is not one of {INPUTS} (identity: raw only)."
            )
        if self.prior is not None and not 0.0 < float(self.prior) < 1.0:
            raise ValueError(f"a calibration prior must lie in (0, 1); got {self.prior!r}.")
        if self.method == "platt" and (
            not {"a", "b"} <= set(self.params) or not float(self.params["a"]) > 0
        ):
            raise ValueError(f"a Platt calibrator needs a > 0 and b; got {dict(self.params)}.")
        if self.method == "isotonic":
            x, y = self.params.get("x"), self.params.get("y")
            if not x or y is None or len(x) != len(y):
                raise ValueError("an isotonic calibrator needs knots x and y of equal length.")

    @property
    def name(self) -> str:
        """``"isotonic"``, ``"relative-platt"`` ...: the method, prefixed by a relative input."""
        return self.method if self.input == "raw" else f"{self.input}-{self.method}"

    def __call__(self, p, groups=None, *, flat=None, reference=None) -> np.ndarray:
        """Calibrated probabilities of raw probabilities ``p``.

        ``groups``, ``flat`` and ``reference`` say which recording each score stands in
        (:func:`relative_scores`); a ``"raw"`` map ignores them. Without them, all of ``p``
        is one recording. With a :attr:`prior`, each recording's mapped probabilities are
        shifted to it (:func:`match_prior`): with a ``reference``, by the shift of the
        reference's own (the threshold scored against its recording).
        """
        p = np.asarray(p, dtype=float)
        out = self._map(p, groups, flat, reference)
        if self.prior is None:
            return out
        if reference is not None:
            ref = np.asarray(reference, dtype=float)
            shift = _prior_shift(
                reference_scores(self._map(ref, None, flat, ref), flat), self.prior
            )
            return _sigmoid(_logit(out, _SHIFT_EPS) + shift)
        return match_prior(out, groups, self.prior, flat=flat)

    def _map(self, p: np.ndarray, groups, flat, reference) -> np.ndarray:
        if self.input == "raw":
            return self._apply(p, p)
        return self._apply(p, relative_scores(p, groups, flat=flat, reference=reference))

    def _apply(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The map of input ``x`` (``p`` itself, or its relative scores)."""
        if self.method == "identity":
            return p.copy()
        if self.method == "platt":
            return _sigmoid(float(self.params["a"]) * _logit(x) + float(self.params["b"]))
        step = np.interp(x, self.params["x"], self.params["y"])
        return (1.0 - TIE_SLOPE) * step + TIE_SLOPE * np.clip(x, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "input": self.input, "params": dict(self.params),
                "info": dict(self.info), "prior": self.prior}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        prior = d.get("prior")
        return cls(str(d.get("method", "identity")), dict(d.get("params") or {}),
                   dict(d.get("info") or {}), str(d.get("input", "raw")),
                   None if prior is None else float(prior))  # fmt: skip


def _prior_shift(q: np.ndarray, prior: float) -> float:
    """The constant ``c`` with ``mean(sigmoid(logit(q) + c)) == prior`` (bisection: the mean
    is increasing in ``c``)."""
    lq = _logit(q, _SHIFT_EPS)
    if not lq.size:
        return 0.0
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.mean(_sigmoid(lq + mid))) > prior:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def match_prior(q, groups=None, prior: float = 0.1, *, flat=None) -> np.ndarray:
    """Probabilities ``q`` shifted, one logit constant per group, to a mean of ``prior``.

    The mean is taken over each group's contacts that are not ``flat``
    (:func:`trainer.call_rules.reference_scores`); the flat ones get the same shift. Strictly
    increasing in ``q`` within a group.

    Parameters
    ----------
    q : array-like of float, shape (n,)
    groups : array-like, shape (n,), optional
        Recording (patient) of each probability; ``None``: one recording.
    prior : float
        In (0, 1).
    flat : array-like of bool, shape (n,), optional

    Returns
    -------
    ndarray of float, shape (n,)
    """
    q = np.asarray(q, dtype=float)
    fl = None if flat is None else np.asarray(flat, dtype=bool)
    out = np.empty_like(q)
    for idx in group_indices(np.zeros(q.size) if groups is None else groups):
        ref = reference_scores(q[idx], None if fl is None else fl[idx])
        out[idx] = _sigmoid(_logit(q[idx], _SHIFT_EPS) + _prior_shift(ref, prior))
    return out


def _fit(method: str, y: np.ndarray, x: np.ndarray, input: str = "raw") -> Calibrator:
    """One method fitted on all of ``(y, x)`` (``x``: the map's input)."""
    if method == "identity" or y.min() == y.max():
        return Calibrator("identity")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e4).fit(_logit(x)[:, None], y)
        a = float(lr.coef_[0, 0])
        if not a > 0:  # a flat or negative slope would tie or invert the ranking
            return Calibrator("identity")
        return Calibrator("platt", {"a": a, "b": float(lr.intercept_[0])}, input=input)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return Calibrator(
        "isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()},
        input=input,
    )  # fmt: skip


def _candidate(name: str) -> tuple[str, str]:
    """``"relative-platt"`` -> ``("relative", "platt")``; ``"isotonic"`` -> ``("raw", ...)``."""
    return tuple(name.split("-", 1)) if "-" in name else ("raw", name)  # type: ignore[return-value]


def fit_calibrator(
    y_true,
    y_prob,
    groups=None,
    *,
    method: str = "auto",
    flat=None,
    candidates=CANDIDATES,
    prior: str = "match",
) -> Calibrator:
    """Fit the calibration of a fold on its validation channels.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
        0/1 SOZ labels of the validation channels.
    y_prob : array-like of float, shape (n_channels,)
        Their raw probabilities.
    groups : array-like, shape (n_channels,), optional
        Patient of each channel: ``"auto"`` compares the candidates leaving one patient out at
        a time (needs >= 2 patients; otherwise the in-sample Brier decides, isotonic excluded);
        a relative input stands each channel against its own patient's channels.
    method : {"auto", "identity", "platt", "isotonic", "relative-platt", "relative-isotonic"}
    flat : array-like of bool, shape (n_channels,), optional
        Channels without signal, out of their patient's reference (:func:`relative_scores`).
    candidates : sequence of (input, method)
        What ``"auto"`` compares (:data:`CANDIDATES`; ``CANDIDATES[:3]``: the raw maps only,
        the calibration before the relative input existed).
    prior : {"match", "none"}
        ``"match"``: the map is followed by matching each recording to the validation
        prevalence (:attr:`Calibrator.prior`; none when the validation channels are all one
        class); ``"none"``: the map alone. ``"auto"`` chooses the map without it.

    Returns
    -------
    Calibrator
        ``info`` holds ``n_channels``, ``n_patients``, ``brier_raw`` and, for ``"auto"``,
        ``cv_brier`` per candidate (:attr:`Calibrator.name`).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(y_prob, dtype=float), 0.0, 1.0)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"{y.shape=} and {p.shape=} must be equal, 1-D and non-empty.")
    names = [m if i == "raw" else f"{i}-{m}" for i, m in candidates]
    if method != "auto" and method not in names:
        raise ValueError(f"{method=} must be 'auto' or one of {names}.")
    if prior not in PRIORS:
        raise ValueError(f"{prior=} must be one of {PRIORS}.")
    g = np.asarray(groups) if groups is not None else np.zeros(y.size)
    inputs = {"raw": p, "relative": relative_scores(p, g, flat=flat)}
    info: dict[str, Any] = {
        "n_channels": int(y.size),
        "n_patients": int(len(np.unique(g))),
        "brier_raw": float(np.mean((p - y) ** 2)),
    }
    if method == "auto":
        patients = np.unique(g)
        cv = {}
        for name in names:
            inp, m = _candidate(name)
            x = inputs[inp]
            if len(patients) < 2:
                if m == "isotonic":
                    continue  # in-sample isotonic always "wins": not a fair comparison
                out = _fit(m, y, x, inp)._apply(p, x)
            else:
                out = np.empty_like(p)
                for pat in patients:
                    held = g == pat
                    out[held] = _fit(m, y[~held], x[~held], inp)._apply(p[held], x[held])
            cv[name] = float(np.mean((out - y) ** 2))
        info["cv_brier"] = cv
        method = min(cv, key=lambda m: (round(cv[m], 12), names.index(m)))
    inp, m = _candidate(method)
    cal = _fit(m, y, inputs[inp], inp)
    prevalence = float(y.mean())
    matched = prevalence if prior == "match" and 0.0 < prevalence < 1.0 else None
    return Calibrator(cal.method, cal.params, info, cal.input, matched)


class EnsembleCalibration:
    """The calibration of a fold ensemble: the mean of the folds' maps (still monotone within
    a recording).

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
        """The folds' maps joined (``"isotonic"``, ``"platt+relative-isotonic"`` ...), then
        the mean prior they match each recording to (``"isotonic, prior 0.093"``), if any."""
        maps = "+".join(dict.fromkeys(c.name for c in self.calibrators))
        priors = [c.prior for c in self.calibrators if c.prior is not None]
        return f"{maps}, prior {np.mean(priors):.3f}" if priors else maps

    @property
    def is_identity(self) -> bool:
        return all(c.method == "identity" and c.prior is None for c in self.calibrators)

    def __call__(self, p, groups=None, *, flat=None, reference=None) -> np.ndarray:
        return np.mean(
            [c(p, groups, flat=flat, reference=reference) for c in self.calibrators], axis=0
        )


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
