"""Per-recording normalisation of the neural models' clip features, against a site's scale.

A new hospital's amplifier gain, reference, electrode impedance and cabling shift every
contact's log-amplitude spectrum (:func:`models.spectral.spectral_features`) by a site-wide
offset and tilt. These normalisations express each clip's spectrum relative to the other
contacts of the same recording at the same moment, so that offset cancels; what is left is how
a contact stands out among its neighbours, which is what the SOZ is.

``feature_config["norm"]`` (``TrainConfig.feature_norm``, recorded in every checkpoint) names
the normalisation; training (:class:`trainer.datasets.SequenceDataset`) and serving
(:class:`serving.engine.Preprocessing`) both go through :func:`clip_features` /
:func:`normalise`, so the two cannot differ. A configuration without ``"norm"`` (every run
trained before it existed) gives the features unchanged.

- ``"median"``: subtract, per clip and band, the median over the recording's contacts
  (whitening by the recording's median spectrum).
- ``"robust"``: also divide by the contacts' spread (1.4826 x median absolute deviation, floored
  at :data:`MIN_SPREAD`): a robust z-score over the recording's contacts.
- ``"detrend"``: remove from each clip and contact the straight line fitted (least squares) to
  its spectrum over the feature index, which is log-frequency for the log-spaced bands of
  ``n_bands``: the contact's level and spectral tilt go, its spectral shape (peaks, knees) and
  how it changes from clip to clip stay. A tilt is what a site's filters and electrodes change,
  and in the Wendling family it is most of what marks a SOZ contact (README "Calls and
  probabilities across generators").

Both act on one clip at a time, so the streaming scorer needs no second pass over a recording.

``feature_config["extras"]`` (``TrainConfig.clip_extras``) appends per-clip time-domain
measures relative to the recording's other contacts (:mod:`models.clip_extras`) after the
normalised spectrum: :func:`stored_features` is what the feature cache holds (the raw spectrum,
then the raw measures), :func:`finish_features` turns its two parts into the model's input
(training augments the spectral part in between), and :func:`clip_features` is the two in one,
as serving calls it. Without ``"extras"`` every function gives what it gave before.
Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.clip_extras import check_extras, extra_values, relative_extras
from models.spectral import n_spectral_features, spectral_features

__all__ = [
    "NORMS",
    "MIN_SPREAD",
    "clip_features",
    "feature_extras",
    "finish_features",
    "n_features",
    "normalise",
    "spectral_kwargs",
    "split_stored",
    "stored_features",
]

#: Normalisations ``feature_config["norm"]`` may name (``None``: none).
NORMS = ("median", "robust", "detrend")
#: Floor of the contacts' spread (log-amplitude units) in ``"robust"``: a clip where every
#: contact reads the same (padding, a flat recording) gives zeros instead of a division by 0.
MIN_SPREAD = 0.05


def spectral_kwargs(feature_config: Mapping[str, Any]) -> dict[str, Any]:
    """``feature_config`` without ``"norm"`` and ``"extras"``: the keyword arguments of the
    spectral functions."""
    return {k: v for k, v in dict(feature_config).items() if k not in ("norm", "extras")}


def feature_extras(feature_config: Mapping[str, Any]) -> tuple[str, ...]:
    """The per-clip measures ``feature_config["extras"]`` appends (:mod:`models.clip_extras`);
    ``()`` when it names none (every checkpoint before the option)."""
    return check_extras(feature_config.get("extras") or ())


def n_features(n_samples: int, sfreq: float, feature_config: Mapping[str, Any]) -> int:
    """Features per clip the model sees: the spectral features, then one per extra measure."""
    n_spec = n_spectral_features(n_samples, sfreq, **spectral_kwargs(feature_config))
    return n_spec + len(feature_extras(feature_config))


def normalise(feats: np.ndarray, norm: str | None) -> np.ndarray:
    """Features of each clip relative to the recording's other contacts.

    Parameters
    ----------
    feats : ndarray, shape (..., n_chans, n_feats)
        Log-amplitude features (``(n_clips, n_chans, n_feats)`` in training and serving).
    norm : str or None
        One of :data:`NORMS`; ``None`` returns ``feats`` itself.

    Returns
    -------
    ndarray, shape (..., n_chans, n_feats), float32
    """
    if norm is None:
        return feats
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} must be one of {NORMS} or None.")
    x = np.asarray(feats, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"feats must have shape (..., n_chans, n_feats), got {x.shape}.")
    if norm == "detrend":
        t = np.arange(x.shape[-1], dtype=np.float32)
        t -= t.mean()
        resid = x - x.mean(axis=-1, keepdims=True)
        slope = (resid @ t) / max(float(t @ t), 1.0)
        return (resid - slope[..., None] * t).astype(np.float32, copy=False)
    centre = np.median(x, axis=-2, keepdims=True)
    out = x - centre
    if norm == "robust":
        spread = 1.4826 * np.median(np.abs(out), axis=-2, keepdims=True)
        out /= np.maximum(spread, np.float32(MIN_SPREAD))
    return out.astype(np.float32, copy=False)


def stored_features(
    clips: np.ndarray, sfreq: float, feature_config: Mapping[str, Any]
) -> np.ndarray:
    """What the feature cache holds of clips: the raw log-amplitude spectrum, then the raw
    values of the extra measures (none without ``"extras"``: the spectrum alone, as before).

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, clip_samples)
    sfreq : float
    feature_config : mapping

    Returns
    -------
    ndarray, shape (n_clips, n_chans, n_spectral + n_extras), float32
    """
    feats = spectral_features(clips, sfreq, **spectral_kwargs(feature_config))
    extras = feature_extras(feature_config)
    if not extras:
        return feats
    return np.concatenate([feats, extra_values(clips, sfreq, extras)], axis=-1)


def split_stored(
    stored: np.ndarray, feature_config: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stored_features` back into the spectrum ``(..., n_spectral)`` and the raw extra
    values ``(..., n_extras)`` (an empty last axis without ``"extras"``)."""
    n_extras = len(feature_extras(feature_config))
    cut = stored.shape[-1] - n_extras
    return stored[..., :cut], stored[..., cut:]


def finish_features(
    spectra: np.ndarray, extras: np.ndarray, feature_config: Mapping[str, Any]
) -> np.ndarray:
    """The model's input: the spectra normalised as ``"norm"`` says, then the extra measures
    relative to the contacts of each clip (:func:`models.clip_extras.relative_extras`).

    Parameters
    ----------
    spectra : ndarray, shape (..., n_chans, n_spectral)
    extras : ndarray, shape (..., n_chans, n_extras)
        Raw values of ``feature_config["extras"]`` (:func:`split_stored`).
    feature_config : mapping

    Returns
    -------
    ndarray, shape (..., n_chans, n_spectral + n_extras), float32
        Without ``"extras"``: :func:`normalise` of ``spectra``, exactly as before the option.
    """
    feats = normalise(spectra, feature_config.get("norm"))
    names = feature_extras(feature_config)
    if not names:
        return feats
    return np.concatenate([feats, relative_extras(extras, names)], axis=-1).astype(
        np.float32, copy=False
    )


def clip_features(clips: np.ndarray, sfreq: float, feature_config: Mapping[str, Any]) -> np.ndarray:
    """The model's input features of clips: :func:`finish_features` of :func:`stored_features`
    (the one function serving calls).

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, clip_samples)
    sfreq : float
    feature_config : mapping
        ``n_bands``, ``fmin``, ``fmax`` of :func:`models.spectral.spectral_features`, and
        optionally ``norm`` (:data:`NORMS`) and ``extras`` (:data:`models.clip_extras.EXTRAS`).

    Returns
    -------
    ndarray, shape (n_clips, n_chans, n_feats), float32
    """
    stored = stored_features(clips, sfreq, feature_config)
    return finish_features(*split_stored(stored, feature_config), feature_config)
