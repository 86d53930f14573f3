"""Per-clip time-domain evidence appended to the neural models' spectral features.

The neural models see each clip as its log-amplitude spectrum
(:func:`models.spectral.spectral_features`). What marks a seizure-onset contact in every
simulator family and kind of recording alike is its **interictal spike rate** (README "Why
Wendling -> Epileptor ranks poorly"); a spike is a transient, a few tens of milliseconds in a 5-s
clip, and barely moves the clip's amplitude spectrum. ``feature_config["extras"]``
(``TrainConfig.clip_extras``, recorded in every checkpoint) names time-domain measures of each
clip that are appended to its spectral features, every one expressed **relative to the
recording's other contacts at the same moment** (a robust z-score over the contacts of the
clip), so a site's overall spike rate or signal character cancels and what is left is how a
contact stands out among its neighbours:

- ``"spikes"``: interictal spikes per minute found in the clip by the Janca detector
  (:func:`models.features.clip_spike_rate`, the SVM's per-clip spike rate);
- ``"linelength"``: ``log10`` line length of the clip (:func:`models.features.clip_log_line_length`).

Two steps, so that the cached features (:mod:`trainer.feature_cache`) hold what never changes:
:func:`extra_values` (the raw per-clip, per-contact values, cached beside the spectra) and
:func:`relative_extras` (the z-score over the contacts, applied after the cache is read and after
any training-time contact dropout, so the reference is always the contacts the model sees).
Both act on one clip at a time, so the streaming scorer needs no second pass. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.features import clip_log_line_length, clip_spike_rate

__all__ = ["EXTRAS", "MAX_Z", "SPREAD_FLOOR", "check_extras", "extra_values", "relative_extras"]

#: Measures ``feature_config["extras"]`` may name, in the order they are appended.
EXTRAS = ("spikes", "linelength")
#: Floor of the contacts' spread (1.4826 x median absolute deviation) of each measure: most
#: clips have no spike on most contacts (spread 0), so the floor sets the scale of a spike
#: (10 per minute: about one spike in a 5-s clip reads z = 1.3 over a median of 0).
SPREAD_FLOOR = {"spikes": 10.0, "linelength": 0.05}
#: The relative values are clipped to ``[-MAX_Z, MAX_Z]`` (a burst on one contact of a quiet
#: recording would otherwise give a token far outside the spectra's range).
MAX_Z = 8.0


def check_extras(extras: Iterable[str]) -> tuple[str, ...]:
    """``extras`` as a tuple, each one of :data:`EXTRAS` at most once (else ``ValueError``)."""
    extras = tuple(extras)
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown or len(set(extras)) != len(extras):
        raise ValueError(f"extras={extras!r}: name each of {EXTRAS} at most once.")
    return extras


def extra_values(clips: np.ndarray, sfreq: float, extras: Iterable[str]) -> np.ndarray:
    """Raw per-clip, per-contact values of ``extras`` (what the feature cache holds).

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, n_samples)
        Scaled clips of the store or of the serving stream (finite).
    sfreq : float
    extras : iterable of str
        Names of :data:`EXTRAS`, in the order of the output columns.

    Returns
    -------
    ndarray, shape (n_clips, n_chans, len(extras)), float32
    """
    extras = check_extras(extras)
    clips = np.asarray(clips)
    if clips.ndim != 3:
        raise ValueError(f"clips must have shape (n_clips, n_chans, n_samples), got {clips.shape}.")
    measures = {"spikes": clip_spike_rate, "linelength": clip_log_line_length}
    out = np.zeros((*clips.shape[:2], len(extras)), dtype=np.float32)
    for j, name in enumerate(extras):
        out[..., j] = measures[name](clips, sfreq)
    return out


def relative_extras(values: np.ndarray, extras: Iterable[str]) -> np.ndarray:
    """Each clip's values as a robust z-score over the contacts of the same clip.

    Parameters
    ----------
    values : ndarray, shape (..., n_chans, len(extras))
        :func:`extra_values` of the clips (a sequence's ``(n_clips, n_chans, n_extras)``).
    extras : iterable of str
        The names of the columns.

    Returns
    -------
    ndarray, shape (..., n_chans, len(extras)), float32
        ``(v - median) / max(1.4826 MAD, SPREAD_FLOOR[name])`` over the contacts, clipped to
        ``[-MAX_Z, MAX_Z]``.
    """
    extras = check_extras(extras)
    x = np.asarray(values, dtype=np.float32)
    if x.ndim < 2 or x.shape[-1] != len(extras):
        raise ValueError(
            f"values must have shape (..., n_chans, {len(extras)}) for {extras=}, got {x.shape}."
        )
    if not extras:
        return x
    out = x - np.median(x, axis=-2, keepdims=True)
    spread = 1.4826 * np.median(np.abs(out), axis=-2, keepdims=True)
    floor = np.asarray([SPREAD_FLOOR[e] for e in extras], dtype=np.float32)
    out /= np.maximum(spread, floor)
    return np.clip(out, -MAX_Z, MAX_Z).astype(np.float32, copy=False)
