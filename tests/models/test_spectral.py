"""Spectral features: bin layout, band averaging, dtype and shape, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from models.spectral import (
    AMPLITUDE_FLOOR,
    band_edges,
    n_spectral_features,
    spectral_features,
)

SFREQ = 1000.0


def _sine(freq: float, *, amplitude: float = 1.0, n_samples: int = 5000, sfreq: float = SFREQ):
    t = np.arange(n_samples) / sfreq
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_bin_count_for_five_seconds_at_1000_hz():
    assert n_spectral_features(5000, SFREQ) == 2500
    feats = spectral_features(np.zeros((2, 3, 5000), np.float32), SFREQ)
    assert feats.shape == (2, 3, 2500)
    assert n_spectral_features(5000, SFREQ, fmax=100.0) == 500
    assert spectral_features(np.zeros(5000), SFREQ, fmax=100.0).shape == (500,)


@pytest.mark.parametrize("freq", [0.2, 7.0, 37.0, 123.4, 499.8])
def test_sinusoid_peaks_in_its_bin_with_its_amplitude(freq):
    feats = spectral_features(_sine(freq, amplitude=3.0), SFREQ)
    # Bin j (0-based output index j - 1) is at j * 0.2 Hz.
    assert np.argmax(feats) == round(freq / 0.2) - 1
    np.testing.assert_allclose(np.exp(feats.max()) - AMPLITUDE_FLOOR, 3.0, rtol=1e-3)


def test_sinusoid_peaks_in_its_band():
    n_bands = 40
    edges = band_edges(n_bands, fmin=0.5, fmax=500.0)
    for freq in (3.0, 50.0, 210.0):
        feats = spectral_features(_sine(freq), SFREQ, n_bands=n_bands)
        expected = np.searchsorted(edges, freq, side="right") - 1
        assert np.argmax(feats) == expected, freq


def test_band_edges_log_spaced_and_monotone():
    edges = band_edges(100, fmin=0.5, fmax=500.0)
    assert edges.shape == (101,)
    assert np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges[[0, -1]], [0.5, 500.0])
    np.testing.assert_allclose(np.diff(np.log(edges)), np.log(1000) / 100)


def test_nyquist_cosine_reads_its_amplitude():
    x = 2.0 * np.cos(np.pi * np.arange(1000)).astype(np.float32)  # +2, -2, ...: 500 Hz at 1 kHz
    feats = spectral_features(x, SFREQ)
    np.testing.assert_allclose(np.exp(feats[-1]) - AMPLITUDE_FLOOR, 2.0, rtol=1e-5)
    top_band = spectral_features(x, SFREQ, n_bands=3, fmin=100.0)[-1]
    # The top band [~215, 500] Hz holds only the Nyquist bin's half interval (0.5 Hz wide) of
    # amplitude 2 among ~285 Hz of zeros.
    assert 0 < np.exp(top_band) < 0.01


def test_band_is_the_mean_amplitude_of_the_bins_it_covers():
    # df = 1 Hz: a band [9.5, 20.5) covers bins 10 .. 20 exactly.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1000)).astype(np.float32)
    band = spectral_features(x, SFREQ, n_bands=1, fmin=9.5, fmax=20.5)
    amp = 2 * np.abs(np.fft.rfft(x.astype(np.float64), axis=-1)) / 1000
    expected = np.log(amp[:, 10:21].mean(axis=-1) + AMPLITUDE_FLOOR)
    np.testing.assert_allclose(band[:, 0], expected, rtol=1e-5)


def test_flat_spectrum_gives_equal_bands_even_narrower_than_a_bin():
    # An impulse has a flat amplitude spectrum; 100 bands over 0.5-500 Hz at 1 Hz resolution
    # makes the lowest bands much narrower than a bin: none may be empty or biased.
    x = np.zeros(1000, np.float32)
    x[0] = 1.0
    # (fmax below the Nyquist bin, whose one-sided amplitude is half.)
    bands = spectral_features(x, SFREQ, n_bands=100, fmax=499.0)
    np.testing.assert_allclose(bands, np.log(2 / 1000 + AMPLITUDE_FLOOR), rtol=1e-5)


def test_dtype_shape_and_silence():
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 500))  # float64 in
    for n_bands in (None, 12):
        feats = spectral_features(x, 250.0, n_bands=n_bands)
        assert feats.dtype == np.float32
        assert feats.shape == (3, 2, 4, n_spectral_features(500, 250.0, n_bands=n_bands))
    silent = spectral_features(np.zeros((2, 500), np.float32), 250.0)
    np.testing.assert_allclose(silent, np.log(AMPLITUDE_FLOOR), rtol=1e-6)


def test_bands_match_bins_float64_reference():
    x = np.random.default_rng(2).standard_normal((5, 5000)).astype(np.float32)
    feats = spectral_features(x, SFREQ)
    amp = 2 * np.abs(np.fft.rfft(x.astype(np.float64)))[:, 1:] / 5000
    amp[:, -1] /= 2  # Nyquist
    ref = np.log(amp + AMPLITUDE_FLOOR)
    np.testing.assert_allclose(feats, ref, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fmax=600.0), "Nyquist"),
        (dict(n_bands=0), "n_bands=0"),
        (dict(n_bands=10, fmin=50.0, fmax=20.0), "fmin=50.0"),
        (dict(n_bands=10, fmin=0.0), "fmin=0.0"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spectral_features(np.zeros((2, 1000), np.float32), SFREQ, **kwargs)
    with pytest.raises(ValueError, match=match):
        n_spectral_features(1000, SFREQ, **kwargs)


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="n_samples=1"):
        spectral_features(np.zeros((3, 1)), SFREQ)
    with pytest.raises(ValueError, match="real array"):
        spectral_features(np.zeros(100, complex), SFREQ)
    with pytest.raises(ValueError, match="sfreq=-1"):
        spectral_features(np.zeros(100), -1.0)
