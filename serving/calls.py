"""How a served fold ensemble calls SOZ: one :class:`CallRules` for every scorer.

A fold ensemble (neural, SVM or baseline) calls a contact SOZ when its probability reaches the
ensemble's threshold, the mean of the folds' (chosen on their validation patients). Two rules of
the run directory change that: the folds' calibration (``calibration.json``,
:mod:`trainer.calibration`) maps the probabilities and the threshold onto calibrated ones, and a
run trained with the patient-relative rule (``relative_k`` in ``threshold.json``,
:mod:`trainer.call_rules`) calls each recording against its own contacts, flat ones left out
(:func:`trainer.call_rules.relative_threshold`). :meth:`CallRules.from_run` reads the three
once; :meth:`CallRules.apply` is the one place they act on a recording's raw probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.calibration import EnsembleCalibration
from trainer.call_rules import relative_threshold
from trainer.rundir import RunDir

__all__ = ["CallRules", "load_calibration", "load_relative_k"]


def load_calibration(run: RunDir, model: str, folds: Sequence[int]) -> EnsembleCalibration:
    """The calibration of a fold ensemble: each fold's ``calibration.json``, averaged."""
    return EnsembleCalibration([run.calibrator(model, k) for k in folds])


def load_relative_k(run: RunDir, model: str, folds: Sequence[int]) -> float | None:
    """The ensemble's relative-rule ``k`` (mean over the folds), ``None`` when it calls with
    the Youden threshold (any fold trained with it)."""
    ks = [run.relative_k(model, k) for k in folds]
    return None if any(k is None for k in ks) else float(np.mean(ks))


@dataclass(frozen=True)
class CallRules:
    """How a fold ensemble calls SOZ on one recording.

    Parameters
    ----------
    threshold : float
        The folds' mean threshold on the raw probabilities.
    calibration : trainer.calibration.EnsembleCalibration, optional
        Applied to the probabilities and the threshold (strictly increasing within the
        recording, so the calls do not change; a map on the relative input stands them against
        the recording's non-flat contacts); ``None`` reports the raw probabilities.
    relative_k : float, optional
        The patient-relative rule's ``k``: each recording's threshold comes from its own
        contacts' raw probabilities; ``None`` calls at ``threshold``.
    """

    threshold: float
    calibration: EnsembleCalibration | None = None
    relative_k: float | None = None

    @classmethod
    def from_run(
        cls, run: RunDir, model: str, folds: Sequence[int], threshold: float | None = None
    ) -> CallRules:
        """The rules of ``model``'s ``folds`` in ``run``: ``threshold`` (default: the mean of
        the folds' ``threshold.json``), their calibration and relative-rule ``k``."""
        folds = list(folds)
        if threshold is None:
            threshold = float(np.mean([run.threshold(model, k) for k in folds]))
        return cls(
            float(threshold),
            load_calibration(run, model, folds),
            load_relative_k(run, model, folds),
        )

    def apply(
        self, probabilities: np.ndarray, flat: np.ndarray | None = None
    ) -> tuple[np.ndarray, float, dict[str, Any]]:
        """The probabilities and threshold a result reports for a recording's raw ones.

        Parameters
        ----------
        probabilities : ndarray, shape (n_chans,)
            The ensemble's raw probabilities of the recording's contacts.
        flat : ndarray of bool, shape (n_chans,), optional
            Contacts left out of the relative rule's threshold.

        Returns
        -------
        probabilities : ndarray, shape (n_chans,), float64
        threshold : float
        raw : dict
            With a calibration, ``raw_probabilities``, ``raw_threshold`` and ``calibration``
            (the method) of :class:`serving.results.ScoreResult`; empty otherwise.
        """
        probs = np.asarray(probabilities, dtype=np.float64)
        threshold = self.threshold
        if self.relative_k is not None:
            threshold = relative_threshold(probs, self.relative_k, flat)
        cal = self.calibration
        if cal is None:
            return probs, float(threshold), {}
        raw = {
            "raw_probabilities": probs,
            "raw_threshold": float(threshold),
            "calibration": cal.method,
        }
        # A map on the relative input stands each contact, and the threshold, against this
        # recording's contacts that are not flat, as training stood them against their
        # patient's (trainer.calibration.relative_scores).
        ref = {"reference": probs, "flat": flat}
        return cal(probs, flat=flat), float(cal(np.array([threshold]), **ref)[0]), raw
