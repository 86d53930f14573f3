"""Per-clip time-domain measures of the neural tokens, relative to the recording's contacts."""

from __future__ import annotations

import numpy as np
import pytest

from models.clip_extras import MAX_Z, SPREAD_FLOOR, check_extras, extra_values, relative_extras
from models.features import clip_features as svm_clip_features
from models.features import svm_bands
from models.site_norm import (
    clip_features,
    finish_features,
    n_features,
    normalise,
    split_stored,
    stored_features,
)
from models.spectral import spectral_features

SFREQ = 250.0
FC = {"n_bands": 12, "fmin": 1.0, "fmax": None}
BOTH = ("spikes", "linelength")


def _clips(seed: int = 0, n_clips: int = 3, n_chans: int = 6, spiky: int = 2) -> np.ndarray:
    """Background noise; contact ``spiky`` carries a sharp transient every 0.8 s."""
    rng = np.random.default_rng(seed)
    n = int(5 * SFREQ)
    x = np.cumsum(rng.normal(size=(n_clips, n_chans, n)), axis=-1)
    x -= x.mean(axis=-1, keepdims=True)
    x /= x.std(axis=-1, keepdims=True)
    t = np.arange(n) / SFREQ
    for t0 in np.arange(0.4, 5.0, 0.8):
        x[:, spiky] += 12 * np.exp(-(((t - t0) / 0.012) ** 2))
    return x.astype(np.float32)


def test_raw_values_are_the_svm_clip_features():
    clips = _clips()
    raw = extra_values(clips, SFREQ, BOTH)
    svm = svm_clip_features(clips, SFREQ, bands=svm_bands(SFREQ))  # spike rate, line length, ...
    assert raw.shape == (3, 6, 2) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, svm[..., :2], rtol=1e-6)
    np.testing.assert_array_equal(extra_values(clips, SFREQ, ("linelength",))[..., 0], raw[..., 1])


def test_the_spiking_contact_stands_out_among_the_contacts():
    z = relative_extras(extra_values(_clips(), SFREQ, BOTH), BOTH)
    assert np.all(z[:, 2, 0] >= 1.0)  # a spike rate far above the others' median
    assert np.all(np.argmax(z[:, :, 0], axis=1) == 2)
    others = np.delete(z[..., 0], 2, axis=1)
    assert np.abs(np.median(others)) < 0.5
    assert np.abs(z).max() <= MAX_Z


def test_relative_values_ignore_a_site_wide_scale():
    """Every contact x 7 (another amplifier): raw line length moves, the relative values do not."""
    clips = _clips(seed=1)
    a, b = extra_values(clips, SFREQ, BOTH), extra_values(7.0 * clips, SFREQ, BOTH)
    np.testing.assert_allclose(b[..., 1] - a[..., 1], np.log10(7.0), atol=1e-5)
    np.testing.assert_allclose(relative_extras(a, BOTH), relative_extras(b, BOTH), atol=1e-4)


def test_spread_floor_sets_the_scale_where_no_contact_spikes():
    values = np.zeros((1, 5, 1), np.float32)
    values[0, 3, 0] = 20.0  # one contact with 20 spikes / min, the others none
    z = relative_extras(values, ("spikes",))
    np.testing.assert_allclose(z[0, :, 0], [0, 0, 0, 20.0 / SPREAD_FLOOR["spikes"], 0])


def test_check_extras_names():
    assert check_extras(["spikes"]) == ("spikes",)
    with pytest.raises(ValueError, match="at most once"):
        check_extras(["spikes", "spikes"])
    with pytest.raises(ValueError, match="at most once"):
        check_extras(["kurtosis"])
    with pytest.raises(ValueError, match="shape"):
        relative_extras(np.zeros((2, 4, 1)), BOTH)


def test_without_extras_every_function_gives_what_it_gave_before():
    clips = _clips(n_chans=4)
    spec = spectral_features(clips, SFREQ, **FC)
    for fc in (FC, {**FC, "extras": []}, {**FC, "norm": "median"}):
        assert n_features(clips.shape[-1], SFREQ, fc) == FC["n_bands"]
        stored = stored_features(clips, SFREQ, fc)
        np.testing.assert_array_equal(stored, spec)
        np.testing.assert_array_equal(
            clip_features(clips, SFREQ, fc), normalise(spec, fc.get("norm"))
        )


def test_extras_follow_the_normalised_spectrum():
    clips = _clips(n_chans=5)
    fc = {**FC, "norm": "robust", "extras": ["spikes", "linelength"]}
    stored = stored_features(clips, SFREQ, fc)
    assert (
        stored.shape == (3, 5, FC["n_bands"] + 2) == (*clips.shape[:2], n_features(1250, SFREQ, fc))
    )
    spectra, raw = split_stored(stored, fc)
    np.testing.assert_array_equal(spectra, spectral_features(clips, SFREQ, **FC))
    np.testing.assert_array_equal(raw, extra_values(clips, SFREQ, BOTH))
    out = clip_features(clips, SFREQ, fc)
    np.testing.assert_array_equal(out, finish_features(spectra, raw, fc))
    np.testing.assert_allclose(out[..., :-2], normalise(spectra, "robust"))
    np.testing.assert_allclose(out[..., -2:], relative_extras(raw, BOTH))
