"""Spectral-tilt augmentation of the SVM's training rows (trainer.svm_augment)."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import RecordingFeatureMean
from trainer.svm_augment import TILT_SD, band_centres, tilt_augment, tilt_shift

SFREQ = 500.0


def _features(clips: np.ndarray) -> tuple[np.ndarray, list[str]]:
    acc = RecordingFeatureMean(SFREQ)
    acc.add(clips)
    return acc.mean(), list(acc.names)


def _tilt_signal(clips: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Each channel's amplitude spectrum times ``f ** slope``, its power kept (as ingest scales)."""
    n = clips.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / SFREQ)
    gain = np.maximum(f, f[1])[None, :] ** slope[:, None]  # (C, n_freqs)
    out = np.fft.irfft(np.fft.rfft(clips, axis=-1) * gain, n, axis=-1)
    power = np.mean(clips**2, axis=(0, 2)) / np.mean(out**2, axis=(0, 2))
    return out * np.sqrt(power)[None, :, None]


def test_the_shift_is_what_a_real_tilted_signal_gives():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 6, int(5 * SFREQ)))  # (n_clips, n_chans, n_samples)
    f = np.fft.rfftfreq(noise.shape[-1], 1.0 / SFREQ)
    clips = np.fft.irfft(np.fft.rfft(noise) * (f >= 1.0), noise.shape[-1])  # high-passed, as ingest
    slope = np.array([-0.3, -0.15, 0.0, 0.1, 0.2, 0.3])
    before, names = _features(clips)
    after, _ = _features(_tilt_signal(clips, slope))
    predicted = before + tilt_shift(before, names, slope)
    actual_shift = after - before
    moved = [n for n in names if "spike" not in n]  # the band powers, line length, energy ratio
    cols = [names.index(n) for n in moved]
    assert np.abs(actual_shift[:, cols]).max() > 0.5  # up to 0.95 log10 (delta, slope 0.3)
    # the model is a first-order one (band centres, wavelet leakage, the EI's band edges): within
    # 20 % of the true shift, where a wrong sign or factor would be off by 100 %
    error = np.abs(predicted - after)[:, cols]
    assert (error <= 0.2 * np.abs(actual_shift[:, cols]) + 0.01).all(), error.max()
    for name in ("log_line_length", "peak_log_line_length", "log_energy_ratio"):
        assert np.abs(actual_shift[:, names.index(name)]).max() > 0.05, name
    # the spike rate is left alone by design
    assert not tilt_shift(before, names, slope)[:, names.index("spike_rate")].any()


def test_band_powers_move_by_the_slope_it_says_and_keep_the_total():
    rng = np.random.default_rng(1)
    _, names = _features(rng.standard_normal((1, 2, int(5 * SFREQ))))
    X = rng.normal(-1.0, 0.5, size=(5, len(names)))
    slope = np.array([-0.2, -0.05, 0.0, 0.15, 0.4])
    shift = tilt_shift(X, names, slope)
    centres = band_centres(names)
    cols = [names.index(n) for n in centres]
    logf = np.log(list(centres.values()))
    # log10 power of band b against band 0: 2 * slope * (ln f_b - ln f_0) / ln 10
    expected = 2.0 * slope[:, None] * (logf - logf[0])[None, :] / np.log(10.0)
    np.testing.assert_allclose(shift[:, cols] - shift[:, cols[:1]], expected, atol=1e-12)
    total = (10.0 ** (X[:, cols] + shift[:, cols])).sum(axis=1)
    np.testing.assert_allclose(total, (10.0 ** X[:, cols]).sum(axis=1), rtol=1e-12)
    assert not shift[2].any()  # slope 0: nothing moves
    assert centres["wp_log_power_theta"] == pytest.approx(np.sqrt(32.0))


def test_augmentation_is_seeded_and_keeps_the_rows_it_was_given():
    rng = np.random.default_rng(2)
    _, names = _features(rng.standard_normal((1, 2, int(5 * SFREQ))))
    X = rng.normal(-1.0, 0.5, size=(7, len(names)))
    recs = np.array(["a"] * 4 + ["b"] * 3)
    Xa, ra, source = tilt_augment(X, names, recs, copies=2, seed=3)
    assert Xa.shape == (21, len(names))
    np.testing.assert_array_equal(Xa[:7], X)  # the rows themselves, unchanged
    np.testing.assert_array_equal(source, np.tile(np.arange(7), 3))
    assert list(ra[:7]) == list(recs) and set(ra[7:14]) == {"a~tilt1", "b~tilt1"}
    again = tilt_augment(X, names, recs, copies=2, seed=3)
    np.testing.assert_array_equal(again[0], Xa)
    other = tilt_augment(X, names, recs, copies=2, seed=4)[0]
    assert not np.allclose(other[7:], Xa[7:])
    # the copies differ from the rows by tilts whose slopes have about the default spread
    many = tilt_augment(np.repeat(X[:1], 2000, axis=0), names, np.zeros(2000), copies=1, seed=5)
    d = many[0][2000:] - many[0][:2000]
    c = [names.index(n) for n in band_centres(names)]
    logf = np.log(list(band_centres(names).values()))
    slopes = (d[:, c[-1]] - d[:, c[0]]) * np.log(10.0) / (2.0 * (logf[-1] - logf[0]))
    assert abs(slopes.std() - TILT_SD) < 0.01 and abs(slopes.mean()) < 0.01
    np.testing.assert_array_equal(tilt_augment(X, names, recs, copies=0)[0], X)
    with pytest.raises(ValueError, match="copies"):
        tilt_augment(X, names, recs, copies=-1)
    with pytest.raises(ValueError, match="sd"):
        tilt_augment(X, names, recs, sd=-0.1)
    with pytest.raises(ValueError, match="recordings"):
        tilt_augment(X, names, recs[:3])
