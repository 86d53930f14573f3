"""Contacts that carry no signal: left out of a result, and out of their recording's call rule.

A flat contact (:func:`ingest.preprocessing.flat_channels`, found by the stream's first pass)
gets no probability (:func:`without_flat`), and its score does not count among the contacts
the patient-relative call threshold and the relative calibration compare against
(:func:`trainer.call_rules.reference_scores`, the one function training and serving share): a
recording with one dead contact calls the same contacts as the recording without it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ingest.errors import name_list
from serving.results import ScoreResult

__all__ = ["without_flat"]


def without_flat(result: Any, flat: np.ndarray | None) -> Any:
    """``result`` without the contacts that carry no signal: no probability is returned for a
    flat contact (:func:`ingest.preprocessing.flat_channels`), a warning names them instead.

    Results other than :class:`ScoreResult` (explanations ...) are returned as they are.
    """
    if not isinstance(result, ScoreResult) or flat is None or not np.any(flat):
        return result
    flat = np.asarray(flat, dtype=bool)
    keep = ~flat
    names = [c for c, f in zip(result.channels, flat, strict=True) if f]
    shown = name_list(names)
    labels = result.soz_labels
    return replace(
        result,
        channels=tuple(c for c, k in zip(result.channels, keep, strict=True) if k),
        probabilities=np.asarray(result.probabilities)[keep],
        raw_probabilities=(
            None if result.raw_probabilities is None else result.raw_probabilities[keep]
        ),
        soz_labels=None if labels is None else tuple(np.asarray(labels)[keep].tolist()),
        warnings=(
            *result.warnings,
            f"{len(names)} flat contact(s) carry no signal and were not scored: {shown}",
        ),
    )
