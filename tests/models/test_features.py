"""Wavelet-packet band powers and the SVM clip feature vector."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import (
    DEFAULT_BANDS,
    FEATURE_NAMES,
    PEAK_FEATURES,
    POWER_FLOOR,
    RecordingFeatureMean,
    clip_features,
    feature_names,
    has_energy_ratio,
    select_features,
    wavelet_band_power,
    wavelet_level,
)
from tests.models.test_spikes import colored_noise, simulate_spikes

SFREQ = 1000.0
N_SAMPLES = 5000  # one 5-s clip of the store


def test_names_and_shapes():
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((3, 4, N_SAMPLES))
    feats = clip_features(clips, SFREQ)
    assert feats.shape == (3, 4, len(FEATURE_NAMES))
    assert FEATURE_NAMES[:2] == ("spike_rate", "log_line_length")
    assert FEATURE_NAMES[2:] == tuple(f"wp_log_power_{b}" for b in DEFAULT_BANDS)
    assert np.all(np.isfinite(feats))
    few = {"slow": (1.0, 30.0), "fast": (30.0, 400.0)}
    assert clip_features(clips, SFREQ, bands=few).shape == (3, 4, len(feature_names(few)))


@pytest.mark.parametrize("band", list(DEFAULT_BANDS))
def test_band_limited_signal_lights_its_band(band):
    low, high = DEFAULT_BANDS[band]
    t = np.arange(N_SAMPLES) / SFREQ
    tone = np.sin(2 * np.pi * np.sqrt(low * high) * t)  # geometric centre of the band
    power = wavelet_band_power(tone[np.newaxis], SFREQ)[0]
    share = power / power.sum()
    names = list(DEFAULT_BANDS)
    assert names[int(np.argmax(share))] == band
    assert share[names.index(band)] >= 0.85, dict(zip(names, share.round(3), strict=True))


def test_band_powers_obey_parseval():
    rng = np.random.default_rng(1)
    x = colored_noise(rng, 5, N_SAMPLES) * 3.0
    tiling = {"low": (0.0, 40.0), "mid": (40.0, 200.0), "high": (200.0, 500.0)}
    power = wavelet_band_power(x, SFREQ, bands=tiling)
    np.testing.assert_allclose(power.sum(axis=-1), np.mean(x**2, axis=-1), rtol=1e-10)
    # pink noise: more power in the low band than the high one despite its narrower width
    assert np.all(power[:, 0] > power[:, 2])


def test_flat_channels_stay_finite():
    clips = np.zeros((2, 3, N_SAMPLES))
    clips[:, 1] = 5.0  # constant (DC only)
    clips[:, 2] = np.random.default_rng(2).standard_normal((2, N_SAMPLES))
    feats = clip_features(clips, SFREQ)
    assert np.all(np.isfinite(feats))
    zero = feats[0, 0]
    assert zero[0] == 0.0
    np.testing.assert_allclose(zero[1:], np.log10(POWER_FLOOR))
    assert feats[0, 1, 0] == 0.0  # no spikes on a constant
    np.testing.assert_allclose(feats[0, 1, 1:], np.log10(POWER_FLOOR), atol=1e-6)
    assert np.all(feats[:, 2, 1:] > np.log10(POWER_FLOOR) + 3)


def test_spike_rate_feature_separates_spiking_channels():
    x, truth = simulate_spikes(SFREQ, duration_s=60.0, n_chans=4, spiky=(0, 1), seed=3)
    clips = x[:, : 12 * N_SAMPLES].reshape(4, 12, N_SAMPLES).transpose(1, 0, 2)
    feats = clip_features(clips, SFREQ)
    rate = feats[..., FEATURE_NAMES.index("spike_rate")].mean(axis=0)
    print("mean spike rate per channel (/min):", rate.round(1))
    assert rate[:2].min() > 8.0  # 15 spikes per minute simulated
    assert rate[2:].max() < 1.0


def test_line_length_of_a_sine():
    """Mean |dx/dt| of ``a sin(2 pi f t)`` is ``4 a f`` per second."""
    t = np.arange(N_SAMPLES) / SFREQ
    clips = np.stack([2.0 * np.sin(2 * np.pi * 10.0 * t), 0.5 * np.sin(2 * np.pi * 40.0 * t)])
    feats = clip_features(clips[np.newaxis], SFREQ)
    line_length = 10 ** feats[0, :, FEATURE_NAMES.index("log_line_length")]
    np.testing.assert_allclose(line_length, [80.0, 80.0], rtol=5e-3)  # sampling: -0.3%


def test_features_are_per_clip():
    """Features of a chunk of clips are the rows of the whole: chunk means average exactly."""
    rng = np.random.default_rng(4)
    clips = colored_noise(rng, 6 * 2, N_SAMPLES).reshape(6, 2, N_SAMPLES)
    whole = clip_features(clips, SFREQ)
    parts = np.concatenate([clip_features(clips[:2], SFREQ), clip_features(clips[2:], SFREQ)])
    np.testing.assert_allclose(parts, whole)


def test_wavelet_level_follows_rate_and_length():
    assert wavelet_level(5000, 1000.0, wavelet="db10") == 8  # capped by the clip length
    assert wavelet_level(5000, 256.0, wavelet="db10") == 7  # 1 Hz leaves at 256 Hz
    assert wavelet_level(5000, 1000.0, wavelet="db10", resolution_hz=10.0) == 6
    with pytest.raises(ValueError, match="too short"):
        wavelet_level(16, 1000.0, wavelet="db10")


def test_validation_messages():
    clips = np.zeros((1, 2, N_SAMPLES))
    with pytest.raises(ValueError, match="above the Nyquist"):
        clip_features(clips, 256.0)  # fast ripples need >= 500 Hz
    with pytest.raises(ValueError, match="narrower than"):
        clip_features(clips, SFREQ, bands={"thin": (10.0, 10.5)})
    with pytest.raises(ValueError, match=r"shape \(n_clips, n_chans, n_samples\)"):
        clip_features(clips[0], SFREQ)
    bad = clips.copy()
    bad[0, 1, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        clip_features(bad, SFREQ)
    with pytest.raises(ValueError, match="level="):
        wavelet_band_power(clips, SFREQ, level=12)


def test_energy_ratio_is_fast_over_slow_activity():
    """Bartolomei's ratio: above 0 (log10) for beta / gamma activity, below for theta / alpha."""
    t = np.arange(N_SAMPLES) / SFREQ
    noise = 0.05 * np.random.default_rng(5).standard_normal((2, N_SAMPLES))
    clips = (np.stack([np.sin(2 * np.pi * 40 * t), np.sin(2 * np.pi * 6 * t)]) + noise)[None]
    feats = clip_features(clips, SFREQ, energy_ratio=True)
    names = feature_names(DEFAULT_BANDS, energy_ratio=True)
    assert names[-1] == "log_energy_ratio" and feats.shape[-1] == len(names)
    ratio = feats[0, :, -1]
    assert ratio[0] > 1.0 and ratio[1] < -1.0, ratio
    # the other columns are those without it
    np.testing.assert_allclose(feats[..., :-1], clip_features(clips, SFREQ))
    assert has_energy_ratio(200.0) and not has_energy_ratio(180.0)
    with pytest.raises(ValueError, match="194 Hz"):
        clip_features(clips[..., :900], 180.0, bands={"delta": (1.0, 4.0)}, energy_ratio=True)


def test_recording_features_are_clip_means_then_peaks_whatever_the_chunks():
    rng = np.random.default_rng(6)
    clips = colored_noise(rng, 5 * 3, N_SAMPLES).reshape(5, 3, N_SAMPLES)
    clips[3, 1] += 3 * np.sin(2 * np.pi * 40 * np.arange(N_SAMPLES) / SFREQ)  # one fast clip
    whole, parts = RecordingFeatureMean(SFREQ), RecordingFeatureMean(SFREQ)
    whole.add(clips)
    parts.add(clips[:2])
    parts.add(clips[2:])
    np.testing.assert_allclose(parts.mean(), whole.mean())
    per_clip = clip_features(clips, SFREQ, energy_ratio=True)
    clip_names = feature_names(DEFAULT_BANDS, energy_ratio=True)
    assert whole.names == (*clip_names, *(f"peak_{n}" for n in PEAK_FEATURES))
    np.testing.assert_allclose(whole.mean()[:, : len(clip_names)], per_clip.mean(axis=0))
    peaks = [clip_names.index(n) for n in PEAK_FEATURES]
    np.testing.assert_allclose(whole.mean()[:, len(clip_names) :], per_clip[..., peaks].max(0))
    # the fast clip lifts contact 1's peak energy ratio well above its mean
    er, peak = clip_names.index("log_energy_ratio"), whole.names.index("peak_log_energy_ratio")
    assert whole.mean()[1, peak] - whole.mean()[1, er] > 0.5


def test_feature_sets_select_their_columns():
    names = RecordingFeatureMean(SFREQ).names
    assert select_features(names, "v2") == list(names)
    assert select_features(names, "v1") == list(FEATURE_NAMES)
    # a store too slow for the energy ratio has neither it nor its peak
    slow = RecordingFeatureMean(180.0).names
    assert "log_energy_ratio" not in slow and "peak_log_energy_ratio" not in slow
    assert "peak_spike_rate" in slow
    with pytest.raises(ValueError, match="feature set"):
        select_features(names, "v3")
