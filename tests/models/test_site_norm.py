"""Per-recording normalisation of the neural inputs: what a site shifts cancels, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from models.site_norm import NORMS, clip_features, normalise, spectral_kwargs
from models.spectral import spectral_features

SFREQ = 256.0
FC = {"n_bands": 12, "fmin": 1.0, "fmax": None}


def _clips(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(3, 6, 512)), axis=-1)  # (n, C, T)
    x[:, 0] += 4 * np.sin(2 * np.pi * 10 * np.arange(512) / SFREQ)  # contact 0 stands out
    return x.astype(np.float32)


def test_without_norm_the_features_are_the_spectral_ones():
    clips = _clips()
    np.testing.assert_array_equal(
        clip_features(clips, SFREQ, FC), spectral_features(clips, SFREQ, **FC)
    )
    feats = spectral_features(clips, SFREQ, **FC)
    assert normalise(feats, None) is feats


@pytest.mark.parametrize("norm", ["median", "robust"])
def test_a_site_wide_spectral_shift_cancels(norm):
    """A filter applied to every contact (an offset per band in log amplitude) changes nothing."""
    clips = _clips()
    feats = spectral_features(clips, SFREQ, **FC)
    tilt = np.linspace(-1.0, 2.0, feats.shape[-1], dtype=np.float32)
    a = normalise(feats, norm)
    b = normalise(feats + tilt, norm)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(np.median(a, axis=-2)).max() < 1e-5  # each band centred on the contacts' median
    # contact 0's 10 Hz band still stands out among the contacts
    band = int(np.argmax(feats[:, 0].mean(0) - feats[:, 1:].mean((0, 1))))
    assert (a[:, 0, band] > a[:, 1:, band].max(axis=-1)).all()
    np.testing.assert_allclose(clip_features(clips, SFREQ, {**FC, "norm": norm}), a, atol=1e-6)


def test_detrend_removes_each_contacts_level_and_tilt_and_keeps_its_peaks():
    """A tilt of its own on every contact (other electrodes, filters) changes nothing."""
    clips = _clips()
    feats = spectral_features(clips, SFREQ, **FC)
    t = np.arange(feats.shape[-1], dtype=np.float32)
    rng = np.random.default_rng(2)
    slopes = rng.normal(0, 0.5, size=(1, feats.shape[1], 1)).astype(np.float32)
    levels = rng.normal(0, 2.0, size=(1, feats.shape[1], 1)).astype(np.float32)
    a = normalise(feats, "detrend")
    np.testing.assert_allclose(normalise(feats + levels + slopes * t, "detrend"), a, atol=1e-4)
    # what is left of each clip and contact has no level and no tilt
    np.testing.assert_allclose(a.mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(a @ (t - t.mean()), 0.0, atol=1e-3)
    # but a contact's 10 Hz peak still stands out among the contacts
    band = int(np.argmax(feats[:, 0].mean(0) - feats[:, 1:].mean((0, 1))))
    assert (a[:, 0, band] > a[:, 1:, band].max(axis=-1)).all()
    assert "detrend" in NORMS
    np.testing.assert_allclose(clip_features(clips, SFREQ, {**FC, "norm": "detrend"}), a, atol=1e-6)


def test_robust_divides_by_the_contacts_spread_and_survives_identical_contacts():
    feats = np.random.default_rng(1).normal(size=(2, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        normalise(3 * feats, "robust"), normalise(feats, "robust"), rtol=1e-4
    )
    same = np.ones((2, 5, 4), np.float32)
    assert np.array_equal(normalise(same, "robust"), np.zeros_like(same))
    with pytest.raises(ValueError, match="norm="):
        normalise(feats, "zscore")


def test_spectral_kwargs_drops_only_norm():
    assert spectral_kwargs({**FC, "norm": "median"}) == FC
