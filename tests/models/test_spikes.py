"""The Janca spike detector on simulated SEEG: spikes of realistic shape at known times."""

from __future__ import annotations

import numpy as np
import pytest

from models.spikes import SpikeDetections, detect_spikes


def colored_noise(
    rng: np.random.Generator, n_chans: int, n_times: int, exponent: float = 1.0
) -> np.ndarray:
    """Unit-variance noise with a ``1 / f**exponent`` power spectrum, shape (n_chans, n_times)."""
    spec = np.fft.rfft(rng.standard_normal((n_chans, n_times)), axis=-1)
    f = np.arange(spec.shape[-1], dtype=float)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n=n_times, axis=-1)
    return x / x.std(axis=-1, keepdims=True)


def spike_waveform(sfreq: float, amplitude: float) -> tuple[np.ndarray, int]:
    """An interictal spike: ~50 ms sharp negative component then a ~200 ms slow wave.

    Returns the waveform and the sample of its sharp peak.
    """
    t = np.arange(-0.1, 0.4, 1 / sfreq)
    sharp = -np.exp(-0.5 * (t / 0.012) ** 2)
    slow = 0.35 * np.exp(-0.5 * ((t - 0.12) / 0.05) ** 2)
    return amplitude * (sharp + slow), int(np.argmin(np.abs(t)))


def simulate_spikes(
    sfreq: float,
    *,
    duration_s: float = 60.0,
    n_chans: int = 6,
    spiky: tuple[int, ...] = (0, 1, 2),
    amplitude: float = 10.0,
    rate_per_s: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Pink noise with spikes at known times on the ``spiky`` channels.

    ``amplitude`` is in units of the broadband noise SD (pink noise: about 20x the SD of the
    10-60 Hz band the detector looks at). Spikes are >= 0.8 s apart, 2 s from the edges, with
    +-20% amplitude jitter. Returns the signal (n_chans, n_times) and the true peak samples.
    """
    rng = np.random.default_rng(seed)
    n_times = int(duration_s * sfreq)
    x = colored_noise(rng, n_chans, n_times)
    wave, peak = spike_waveform(sfreq, amplitude)
    grid = np.arange(2.0, duration_s - 2.5, 0.8)
    truth = {}
    for c in spiky:
        n_spk = int(rate_per_s * duration_s)
        times = np.sort(rng.choice(grid, size=n_spk, replace=False)) + rng.uniform(0, 0.3, n_spk)
        samples = np.round(times * sfreq).astype(int)
        for s in samples:
            x[c, s - peak : s - peak + wave.size] += wave * rng.uniform(0.8, 1.2)
        truth[c] = samples
    return x, truth


def match(
    det: SpikeDetections, truth: dict[int, np.ndarray], tol_s: float = 0.06
) -> tuple[int, int, int]:
    """True positives, false positives and false negatives (one match per true spike)."""
    tp = fp = fn = 0
    tol = tol_s * det.sfreq
    for c, found in enumerate(det.per_channel()):
        true = truth.get(c, np.array([], dtype=int))
        used = np.zeros(true.size, dtype=bool)
        for s in found:
            dist = np.where(used, np.inf, np.abs(true - s)) if true.size else np.array([np.inf])
            if dist.min() <= tol:
                used[np.argmin(dist)] = True
                tp += 1
            else:
                fp += 1
        fn += int((~used).sum())
    return tp, fp, fn


@pytest.mark.parametrize("sfreq", [256.0, 512.0, 1000.0, 2048.0])
def test_sensitivity_and_precision_across_rates(sfreq):
    x, truth = simulate_spikes(sfreq, amplitude=10.0, seed=int(sfreq))
    det = detect_spikes(x, sfreq)
    tp, fp, fn = match(det, truth)
    sensitivity, precision = tp / (tp + fn), tp / max(tp + fp, 1)
    print(
        f"{sfreq=:g}: sensitivity={sensitivity:.2f} precision={precision:.2f} ({tp=} {fp=} {fn=})"
    )
    assert sensitivity >= 0.9
    assert precision >= 0.9
    counts = det.counts()
    assert counts[3:].sum() <= 1, f"spike-free channels fired: {counts}"
    assert det.sample.max() < x.shape[1] and det.channel.max() < x.shape[0]


def test_low_snr_loses_sensitivity_not_precision():
    x, truth = simulate_spikes(1000.0, amplitude=5.0, seed=3)
    tp, fp, fn = match(detect_spikes(x, 1000.0), truth)
    assert tp / (tp + fn) < 0.9  # the detector is not a trivially permissive one
    assert tp / max(tp + fp, 1) >= 0.9


def test_pure_noise_false_positive_rate():
    rng = np.random.default_rng(7)
    sfreq = 512.0
    for exponent in (1.0, 2.0):
        x = colored_noise(rng, 8, int(120 * sfreq), exponent)
        det = detect_spikes(x, sfreq)
        rate = det.rate_per_minute()
        print(f"1/f^{exponent:g} noise: {rate.mean():.3f} false spikes / min / channel")
        assert rate.mean() <= 0.5


def test_thresholds_are_scale_free():
    x, _ = simulate_spikes(512.0, duration_s=30.0, seed=1)
    gains = np.array([1e-6, 1.0, 250.0, 3e4, 1e-3, 7.0])[:, np.newaxis]
    ref = detect_spikes(x, 512.0)
    scaled = detect_spikes(x * gains, 512.0)
    np.testing.assert_array_equal(ref.channel, scaled.channel)
    np.testing.assert_array_equal(ref.sample, scaled.sample)
    np.testing.assert_allclose(ref.ratio, scaled.ratio, rtol=1e-6)
    np.testing.assert_allclose(scaled.amplitude, ref.amplitude * gains[ref.channel, 0], rtol=1e-6)


def test_rows_are_independent():
    """A stack of clips reshaped to rows gives the same spikes as each row alone."""
    x, _ = simulate_spikes(1000.0, duration_s=20.0, seed=2)
    both = detect_spikes(x, 1000.0, edge_s=0.25)
    for c in (0, 4):
        alone = detect_spikes(x[c : c + 1], 1000.0, edge_s=0.25)
        np.testing.assert_array_equal(alone.sample, both.per_channel()[c])


def test_flat_and_short_signals():
    sfreq = 1000.0
    x, _ = simulate_spikes(sfreq, duration_s=20.0, n_chans=3, spiky=(0,), seed=4)
    x[1] = 0.0
    x[2] = 3.5
    det = detect_spikes(x, sfreq)
    assert det.counts()[0] > 0
    assert det.counts()[1:].tolist() == [0, 0]

    short = detect_spikes(x[:, :1500], sfreq)  # 1.5 s: all inside the 1-s edges
    assert short.n_spikes == 0 and short.analysed_s == 0
    np.testing.assert_array_equal(short.rate_per_minute(), np.zeros(3))


def test_rate_is_per_analysed_minute():
    sfreq = 512.0
    x, truth = simulate_spikes(sfreq, duration_s=60.0, spiky=(0,), rate_per_s=0.5, seed=5)
    det = detect_spikes(x, sfreq)
    assert det.analysed_s == pytest.approx(58.0, abs=0.01)
    assert det.rate_per_minute()[0] == pytest.approx(len(truth[0]) * 60 / 58.0, rel=0.15)


def test_line_noise_notch():
    sfreq = 1000.0
    x, truth = simulate_spikes(sfreq, duration_s=30.0, seed=6)
    t = np.arange(x.shape[1]) / sfreq
    hum = 3.0 * np.sin(2 * np.pi * 50.0 * t)
    tp, fp, fn = match(detect_spikes(x + hum, sfreq, line_freq=50.0), truth)
    assert tp / (tp + fn) >= 0.8 and tp / max(tp + fp, 1) >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"band": (10.0, 120.0)}, "band="),
        ({"k1": 0.0}, "k1="),
        ({"step_s": 6.0}, "step_s <= window_s"),
        ({"line_freq": 150.0}, "line_freq="),
    ],
)
def test_parameter_validation(kwargs, message):
    x = np.zeros((2, 2000))
    with pytest.raises(ValueError, match=message):
        detect_spikes(x, 1000.0, **kwargs)


def test_input_validation():
    with pytest.raises(ValueError, match=r"shape \(n_chans, n_times\)"):
        detect_spikes(np.zeros(1000), 500.0)
    with pytest.raises(ValueError, match="sfreq="):
        detect_spikes(np.zeros((1, 1000)), -1.0)
    x = np.zeros((3, 1000))
    x[2, 10] = np.nan
    with pytest.raises(ValueError, match=r"channels \[2\]"):
        detect_spikes(x, 500.0)
