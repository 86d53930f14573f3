"""Epileptogenicity Index and interictal ranking on simulated seizures and spikes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from models.baseline import (
    energy_ratio,
    epileptogenicity_index,
    ictal_score,
    interictal_ranking,
    page_hinkley,
)
from tests.models.test_spikes import colored_noise, simulate_spikes

SFREQ = 512.0
ONSET_S = 50.0


def simulate_seizure(
    seed: int, *, delay_b_s: float = 6.0, duration_s: float = 90.0
) -> tuple[np.ndarray, np.ndarray]:
    """1/f^2 background; low-voltage fast activity (30-90 Hz) starts on channel 0 at the onset,
    on channel 1 ``delay_b_s`` later; channel 3 gets a slow 5 Hz discharge (involved late, no
    fast activity); channels 2 and 4 are not involved. Returns (signal, channel gains)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SFREQ)
    t = np.arange(n) / SFREQ
    x = colored_noise(rng, 5, n, exponent=2.0)
    sos = butter(4, (30.0, 90.0), btype="bandpass", fs=SFREQ, output="sos")
    fast = sosfiltfilt(sos, rng.standard_normal((2, n)), axis=-1)
    fast /= fast.std(axis=-1, keepdims=True)
    for c, start in ((0, ONSET_S), (1, ONSET_S + delay_b_s)):
        ramp = np.clip((t - start) / 2.0, 0.0, 1.0)
        x[c] = x[c] * (1 - 0.7 * ramp) + 0.5 * ramp * fast[c]  # voltage drops, fast rises
    x[3] += np.where(t > ONSET_S + 6.0, 2.0 * np.sin(2 * np.pi * 5.0 * t), 0.0)
    return x, rng.uniform(0.01, 100.0, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ei_orders_early_fast_channels_first(seed):
    x, _ = simulate_seizure(seed)
    ei = epileptogenicity_index(x, SFREQ, ONSET_S)
    print(f"{seed=}: EI = {ei.round(3)}")
    assert ei.shape == (5,)
    assert np.all((ei >= 0) & (ei <= 1)) and ei.max() == 1.0
    assert ei[0] == 1.0
    assert ei[0] > ei[1] > max(ei[2], ei[3], ei[4])
    assert max(ei[2], ei[3], ei[4]) < 0.05


def test_ei_detection_times_follow_the_fast_activity():
    """Channel 0 is detected near the onset, channel 1 about its 6 s delay later (the ramp
    takes 2 s), the uninvolved channels not at all; times from the start of the signal."""
    x, _ = simulate_seizure(0)
    ei, det = epileptogenicity_index(x, SFREQ, ONSET_S, return_detection=True)
    np.testing.assert_array_equal(ei, epileptogenicity_index(x, SFREQ, ONSET_S))
    assert abs(det[0] - ONSET_S) < 3.0
    assert 3.0 < det[1] - det[0] < 9.0
    assert np.isnan(det[2]) == (ei[2] == 0) and np.isnan(det[4]) == (ei[4] == 0)


def test_ei_ignores_channel_scaling():
    x, gains = simulate_seizure(0)
    ref = epileptogenicity_index(x, SFREQ, ONSET_S)
    np.testing.assert_allclose(epileptogenicity_index(x * gains[:, None], SFREQ, ONSET_S), ref)


def test_ei_analysis_window():
    """Cropping to the analysed window gives the same EI as passing the whole recording."""
    x, _ = simulate_seizure(1)
    ref = epileptogenicity_index(x, SFREQ, ONSET_S, baseline_s=30.0, post_s=30.0)
    first = int((ONSET_S - 30.0) * SFREQ)
    cropped = x[:, first : int((ONSET_S + 30.0) * SFREQ)]
    np.testing.assert_allclose(
        epileptogenicity_index(cropped, SFREQ, 30.0, baseline_s=None, post_s=None), ref
    )


def test_ei_without_detection_is_zero():
    x = colored_noise(np.random.default_rng(3), 4, int(40 * SFREQ), exponent=2.0)
    np.testing.assert_array_equal(epileptogenicity_index(x, SFREQ, 20.0), np.zeros(4))


def test_ei_validation_messages():
    x, _ = simulate_seizure(0, duration_s=30.0)
    with pytest.raises(ValueError, match="outside the signal"):
        epileptogenicity_index(x, SFREQ, 45.0)
    with pytest.raises(ValueError, match="outside the signal"):
        epileptogenicity_index(x, SFREQ, -1.0)
    with pytest.raises(ValueError, match="tau_s="):
        epileptogenicity_index(x, SFREQ, 10.0, tau_s=0.0)
    with pytest.raises(ValueError, match="baseline_s="):
        epileptogenicity_index(x, SFREQ, 10.0, baseline_s=-5.0)
    with pytest.raises(ValueError, match="Nyquist"):
        epileptogenicity_index(x[:, ::4], SFREQ / 4, 10.0)  # 128 Hz cannot hold 97 Hz gamma
    with pytest.raises(ValueError, match=r"shape \(n_chans, n_times\)"):
        epileptogenicity_index(x[0], SFREQ, 10.0)


def test_energy_ratio_tracks_fast_activity():
    t = np.arange(int(10 * SFREQ)) / SFREQ
    x = np.stack([np.sin(2 * np.pi * 6 * t), np.sin(2 * np.pi * 50 * t), np.zeros_like(t)])
    x[:2] += 0.01 * np.random.default_rng(0).standard_normal((2, t.size))
    times, er = energy_ratio(x, SFREQ)
    assert times.shape == (37,) and er.shape == (3, 37)  # (10 s - 1 s) / 0.25 s + 1
    np.testing.assert_allclose(times[[0, -1]], [0.5, 9.5])
    assert np.all(er[0] < 0.01) and np.all(er[1] > 100) and np.all(er[2] == 0)


def test_page_hinkley_finds_a_step():
    rng = np.random.default_rng(0)
    er = 0.4 + 0.1 * rng.standard_normal((3, 400))
    er[0, 200:] += 5.0
    er[1, 300:] += 5.0
    detection, alarm = page_hinkley(er)
    assert abs(detection[0] - 200) <= 1
    assert abs(detection[1] - 300) <= 1
    assert detection[2] == alarm[2] == -1
    assert np.all(alarm[:2] >= detection[:2])
    # a search start after the change still reports a change, not a negative index
    late, _ = page_hinkley(er, start=250)
    assert late[0] >= 250 and abs(late[1] - 300) <= 1


def slow_onset_seizure(seed: int) -> np.ndarray:
    """Spikes before the onset on channels 1 and 3, which then enter a high-voltage 4 Hz
    discharge without fast activity (what the Wendling family's seizures look like after a
    brief, barely visible fast onset); channel 0 gets fast activity at the onset, uninvolved
    otherwise; channels 2 and 4 are background."""
    x, _ = simulate_spikes(SFREQ, duration_s=90.0, n_chans=5, spiky=(1, 3), seed=seed)
    rng = np.random.default_rng(seed)
    t = np.arange(x.shape[1]) / SFREQ
    sos = butter(4, (30.0, 90.0), btype="bandpass", fs=SFREQ, output="sos")
    fast = sosfiltfilt(sos, rng.standard_normal(x.shape[1]))
    x[0] += np.clip((t - ONSET_S) / 2.0, 0.0, 1.0) * 2.0 * fast / fast.std()
    for c in (1, 3):
        x[c] += np.where(t > ONSET_S, 8.0 * np.sin(2 * np.pi * 4.0 * t), 0.0)
    return x


@pytest.mark.parametrize("seed", [3, 4])
def test_ictal_score_reads_the_preictal_spikes_beside_the_ei(seed):
    """The EI alone puts the fast-onset channel first and scores the spiking channels, whose
    seizure is slow, like the background; read with the pre-ictal spike ranking they stand
    out from the background and the fast-onset channel keeps its place beside them."""
    x = slow_onset_seizure(seed)
    ei = epileptogenicity_index(x, SFREQ, ONSET_S)
    print(f"{seed=}: EI = {ei.round(3)}")
    assert int(np.argmax(ei)) == 0 and max(ei[1], ei[3]) < 0.2
    np.testing.assert_array_equal(ictal_score(x, SFREQ, ONSET_S, preictal=None), ei)
    score = ictal_score(x, SFREQ, ONSET_S)
    print(f"{seed=}: EI + pre-ictal spikes = {score.round(3)}")
    assert np.all((score >= 0) & (score <= 1))
    assert min(score[1], score[3]) > max(score[2], score[4]) + 0.2
    assert score[0] == pytest.approx(0.5) and max(score[1], score[3]) >= 0.5
    # The pre-ictal part ends lead_s before the onset: the discharge after it is not read.
    pre = interictal_ranking(x[:, : int((ONSET_S - 5.0) * SFREQ)], SFREQ)
    np.testing.assert_allclose(score, 0.5 * (ei + pre))
    hf = ictal_score(x, SFREQ, ONSET_S, preictal="hf_power", ei_params={"lead_s": 8.0})
    pre = interictal_ranking(x[:, : int((ONSET_S - 8.0) * SFREQ)], SFREQ, method="hf_power")
    np.testing.assert_allclose(
        hf, 0.5 * (epileptogenicity_index(x, SFREQ, ONSET_S, lead_s=8.0) + pre)
    )


def test_ictal_score_without_enough_preictal_signal_is_the_ei():
    x = slow_onset_seizure(3)
    first = int((ONSET_S - 12.0) * SFREQ)  # 12 s before the onset, 7 s before onset - lead_s
    ei = epileptogenicity_index(x[:, first:], SFREQ, 12.0)
    np.testing.assert_array_equal(ictal_score(x[:, first:], SFREQ, 12.0), ei)
    longer = ictal_score(x[:, first:], SFREQ, 12.0, min_preictal_s=5.0)
    assert not np.array_equal(longer, ei)


def test_interictal_spike_rate_ranking():
    x, _ = simulate_spikes(SFREQ, duration_s=60.0, n_chans=5, spiky=(1, 3), seed=8)
    score = interictal_ranking(x, SFREQ)
    assert score.shape == (5,) and score.max() == 1.0 and score.min() >= 0.0
    assert set(np.argsort(score)[-2:]) == {1, 3}
    assert score[[0, 2, 4]].max() < 0.1


def test_interictal_hf_power_ranking():
    rng = np.random.default_rng(9)
    x = colored_noise(rng, 4, int(30 * SFREQ), exponent=2.0)
    sos = butter(4, (90.0, 200.0), btype="bandpass", fs=SFREQ, output="sos")
    x[2] += 0.3 * sosfiltfilt(sos, rng.standard_normal(x.shape[1]))
    x[3] = 0.0
    score = interictal_ranking(
        x * np.array([[1e-3], [1.0], [5.0], [1.0]]), SFREQ, method="hf_power"
    )
    assert int(np.argmax(score)) == 2 and score[2] == 1.0
    assert score[3] == 0.0 and score[[0, 1]].max() < 0.5


def test_interictal_validation():
    x = np.zeros((2, 2048))
    with pytest.raises(ValueError, match="method="):
        interictal_ranking(x, SFREQ, method="hfo")
    with pytest.raises(ValueError, match="hf_band="):
        interictal_ranking(x, 128.0, method="hf_power")  # 80 Hz >= Nyquist
    np.testing.assert_array_equal(interictal_ranking(x, SFREQ), np.zeros(2))
    np.testing.assert_array_equal(interictal_ranking(x, SFREQ, method="hf_power"), np.zeros(2))
