"""Training-time augmentation for what a new site changes, on a sequence's clip features.

Applied by :class:`trainer.datasets.SequenceDataset` to training sequences only (never to
validation, test or serving), on the log-amplitude features before the per-recording
normalisation (:mod:`models.site_norm`), so it works from the feature cache as well as from
the clips. ``TrainConfig.augment`` names the kinds (the training card records them):

- ``"tilt"``: a spectral tilt, ``slope * log(f / f_ref)`` added to each contact's spectrum (one
  slope for the recording plus one per contact): other amplifiers, filters, electrode sizes.
  Each contact's total power is kept, as ingest's per-channel scaling
  (:func:`ingest.preprocessing.scale_clips`) would keep it.
- ``"line"``: line-noise residue at 50 or 60 Hz and its harmonics that a notch left behind, a
  random amplitude per contact, in half the sequences.
- ``"dropout"``: each contact left out with probability :data:`DROPOUT` (at least two kept): a
  site records a different subset of contacts.

A per-contact gain is not among them: ingest already divides every contact by its own scale,
so a site's gain never reaches the features. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from models.site_norm import spectral_kwargs
from models.spectral import band_edges

__all__ = ["AUGMENTS", "DROPOUT", "SiteAugment", "feature_frequencies"]

#: Augmentations ``TrainConfig.augment`` may name.
AUGMENTS = ("tilt", "line", "dropout")
#: Probability that a contact is left out of a training sequence (``"dropout"``).
DROPOUT = 0.15
#: Standard deviations of the tilt's slope (log-amplitude per log-frequency): recording, contact.
TILT_SD = (0.3, 0.15)


def feature_frequencies(clip_samples: int, sfreq: float, feature_config: Mapping[str, Any]):
    """Centre frequency in Hz of each feature of :func:`models.spectral.spectral_features`.

    Returns
    -------
    ndarray, shape (n_feats,)
    """
    fc = {"n_bands": None, "fmin": 0.5, "fmax": None, **spectral_kwargs(feature_config)}
    fmax = sfreq / 2.0 if fc["fmax"] is None else float(fc["fmax"])
    if fc["n_bands"] is None:
        df = sfreq / clip_samples
        j_max = min(int(np.floor(fmax / df + 1e-9)), clip_samples // 2)
        return np.arange(1, j_max + 1) * df
    edges = band_edges(int(fc["n_bands"]), fmin=float(fc["fmin"]), fmax=fmax)
    return np.sqrt(edges[:-1] * edges[1:])


class SiteAugment:
    """Random site changes of one training sequence's features.

    Parameters
    ----------
    kinds : iterable of str
        Which of :data:`AUGMENTS` to apply.
    freqs : ndarray, shape (n_feats,)
        Centre frequency of each feature (:func:`feature_frequencies`).
    """

    def __init__(self, kinds: Iterable[str], freqs: np.ndarray) -> None:
        self.kinds = tuple(kinds)
        unknown = [k for k in self.kinds if k not in AUGMENTS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTS}.")
        self.freqs = np.asarray(freqs, dtype=np.float64)
        self._logf = np.log(self.freqs / np.exp(np.log(self.freqs).mean())).astype(np.float32)

    def __call__(
        self, feats: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augmented features and the contacts kept.

        Parameters
        ----------
        feats : ndarray, shape (n_clips, n_chans, n_feats)
            Log-amplitude features of one sequence.
        rng : numpy Generator

        Returns
        -------
        feats : ndarray, shape (n_clips, n_kept, n_feats), float32
        keep : ndarray of bool, shape (n_chans,)
        """
        x = np.array(feats, dtype=np.float32)
        n_chans = x.shape[1]
        keep = np.ones(n_chans, dtype=bool)
        if "tilt" in self.kinds:
            slope = rng.normal(0.0, TILT_SD[0]) + rng.normal(0.0, TILT_SD[1], size=n_chans)
            before = np.log(np.exp(2.0 * x).sum(axis=(0, 2)))  # (C,) log power per contact
            x += slope.astype(np.float32)[None, :, None] * self._logf[None, None, :]
            after = np.log(np.exp(2.0 * x).sum(axis=(0, 2)))
            x -= (0.5 * (after - before)).astype(np.float32)[None, :, None]
        if "line" in self.kinds and rng.random() < 0.5:
            base = float(rng.choice([50.0, 60.0]))
            level = np.median(x, axis=(0, 2))  # (C,) typical log amplitude per contact
            amp = np.exp(level) * rng.uniform(0.5, 5.0, size=n_chans)
            for h in range(1, 6):
                f = base * h
                if f > self.freqs[-1] or f < self.freqs[0]:
                    continue
                j = int(np.argmin(np.abs(np.log(self.freqs / f))))
                x[:, :, j] = np.log(np.exp(x[:, :, j]) + amp[None, :].astype(np.float32))
        if "dropout" in self.kinds and n_chans > 2:
            keep = rng.random(n_chans) >= DROPOUT
            if keep.sum() < 2:
                keep[rng.choice(n_chans, size=2, replace=False)] = True
            x = x[:, keep]
        return x, keep
