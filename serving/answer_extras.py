"""The ``uncertainty`` and ``explanation`` fields of a ``POST /score`` answer (schema and values).

- ``uncertainty`` (every answer of a fold ensemble): each contact's probability by each fold
  model (mean over the recording's sequences, as the ensemble's), their min, max and standard
  deviation, and the fold models' agreement: the share of folds whose own call (its probability
  at its own threshold) is the ensemble's call. A contact where the folds split is flagged
  (``disagree``). Computed from the probabilities the service already has: no extra model pass.
- ``explanation`` (opt-in, ``"explain": true``): per window of the recording, each requested
  contact's probability (mean over the fold models), and for the explained windows (those holding
  a seizure onset, else the highest-scoring ones) the occlusion attribution of each clip
  (:func:`models.attribution.occlusion`, via :func:`serving.explain.explain_sequences`): the drop
  of the contact's probability when that clip is replaced by the contact's mean clip. Cost: one
  more pass of the fold models over the sequences plus ``(seq_len + 1) x n_folds`` sequences per
  explained window. An aid to reading the traces, not a proof.

Pure (no Ray, no FastAPI): the app turns these dicts into its response models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field


class ContactUncertainty(BaseModel):
    channel: str
    fold_probabilities: list[float] = Field(description="Probability by each fold model.")
    min: float
    max: float
    std: float = Field(description="Standard deviation across the fold models (ddof 0).")
    agreement: float = Field(
        description="Share of fold models whose own call (own threshold) is the ensemble's."
    )
    disagree: bool = Field(description="The fold models' calls split on this contact.")


class Uncertainty(BaseModel):
    folds: list[int]
    fold_thresholds: list[float]
    n_disagree: int
    contacts: list[ContactUncertainty] = Field(description="In the order of ``contacts``.")


class ContactExplanation(BaseModel):
    channel: str
    window_probability: list[float] = Field(
        description="Probability in each window (mean over the fold models)."
    )
    attribution: list[list[float]] = Field(
        description="Per explained window, per clip: probability drop when the clip is occluded."
    )


class Explanation(BaseModel):
    method: str = "occlusion"
    baseline: str = "the contact's mean clip over the sequence"
    clip_s: float
    window_s: float
    window_start_s: list[float]
    explained_windows: list[int] = Field(description="Indices into ``window_start_s``.")
    onsets_s: list[float]
    seconds: float = Field(description="Wall time of the explanation.")
    contacts: list[ContactExplanation]


def uncertainty(
    channels: Sequence[str],
    fold_probs: np.ndarray,
    folds: Sequence[int],
    fold_thresholds: Sequence[float],
    threshold: float,
    order: Sequence[str] | None = None,
) -> dict:
    """The ``uncertainty`` field.

    Parameters
    ----------
    channels : sequence of str
        Contacts, in the order of ``fold_probs``' last axis.
    fold_probs : ndarray, shape (n_folds, n_contacts)
        Each fold model's probability per contact (mean over sequences).
    folds, fold_thresholds : sequences, length n_folds
    threshold : float
        The ensemble's threshold.
    order : sequence of str or None
        Contacts in the order of the answer (default ``channels``).
    """
    p = np.asarray(fold_probs, dtype=np.float64)
    thr = np.asarray(fold_thresholds, dtype=np.float64)[:, None]
    ensemble = p.mean(axis=0) >= threshold
    agree = ((p >= thr) == ensemble[None]).mean(axis=0)
    index = {c: i for i, c in enumerate(channels)}
    rows = []
    for ch in order if order is not None else channels:
        i = index[ch]
        rows.append({
            "channel": ch, "fold_probabilities": [float(v) for v in p[:, i]],
            "min": float(p[:, i].min()), "max": float(p[:, i].max()),
            "std": float(p[:, i].std()), "agreement": float(agree[i]),
            "disagree": bool(agree[i] < 1.0),
        })  # fmt: skip
    return Uncertainty(
        folds=[int(f) for f in folds], fold_thresholds=[float(t) for t in fold_thresholds],
        n_disagree=sum(r["disagree"] for r in rows), contacts=rows,
    ).model_dump()  # fmt: skip


def explanation(expl, contacts: Sequence[str]) -> dict:
    """The ``explanation`` field of a :class:`serving.explain.RecordingExplanation`.

    Parameters
    ----------
    expl : serving.explain.RecordingExplanation
    contacts : sequence of str
        The contacts to give (unknown names are left out by the caller's check).
    """
    mean = expl.window_probs.mean(axis=0)  # (W, C)
    out = []
    for ch in contacts:
        c = expl.channels.index(ch)
        out.append({
            "channel": ch, "window_probability": [round(float(v), 6) for v in mean[:, c]],
            "attribution": [[round(float(v), 6) for v in row] for row in expl.attribution[:, c]],
        })  # fmt: skip
    return Explanation(
        clip_s=float(expl.clip_s), window_s=float(expl.window_s),
        window_start_s=[float(s) for s in expl.window_start_s],
        explained_windows=[int(w) for w in expl.explained],
        onsets_s=[float(o) for o in expl.onsets_s], seconds=round(float(expl.seconds), 4),
        contacts=out,
    ).model_dump()  # fmt: skip


def explained_contacts(
    requested: Sequence[str] | None, ranked: Sequence[str], clinical: Sequence[str], top: int = 5
) -> list[str]:
    """Contacts to explain: the requested ones, else the ``top`` ranked and the clinical SOZ.

    Raises
    ------
    KeyError
        A requested contact is not among the scored ones (its name).
    """
    if requested:
        unknown = [c for c in requested if c not in ranked]
        if unknown:
            raise KeyError(", ".join(unknown))
        return list(dict.fromkeys(requested))
    return list(dict.fromkeys([*ranked[:top], *clinical]))
