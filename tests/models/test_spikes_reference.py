"""The spike detector against frozen results of the implementation before its speed-up.

``data/spikes_reference.npz`` holds the detections of :func:`models.spikes.detect_spikes` (and the
per-clip rates of :func:`models.features.clip_spike_rate`) that the code of main at 386edd9 (the
per-stage scipy implementation: ``resample_poly``, ``sosfiltfilt``, ``hilbert``, PCHIP) gave on the
seeded inputs of :func:`reference_cases`. Checkpoints and SVM feature caches depend on these
numbers, so a faster implementation must give the same spikes (channels and samples exactly) and
the same amplitudes and ratios to 1e-9. Regenerate the file only for an intended change of the
detector: ``python tests/models/test_spikes_reference.py`` (writes it from the current code).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import hilbert, resample_poly, sosfiltfilt

from models import spikes
from models.features import clip_spike_rate
from models.spikes import detect_spikes
from tests.models.test_spikes import simulate_spikes

REFERENCE = Path(__file__).parent / "data" / "spikes_reference.npz"


def reference_cases() -> Iterator[tuple[str, np.ndarray, float, dict]]:
    """``(name, signal, sfreq, detector kwargs)`` of every frozen case, all seeded.

    Long signals (several distribution windows, PCHIP path) at rates below, at and above 200 Hz,
    integer and non-integer resampling ratios, a line-noise notch, a flat channel, float32 input
    and clip-length rows with the clip settings of the SVM features (one window per clip).
    """
    for i, sfreq in enumerate((128.0, 200.0, 250.0, 256.0, 500.0, 512.0, 1000.0, 1024.0, 2048.0)):
        x, _ = simulate_spikes(sfreq, duration_s=20.0, n_chans=5, spiky=(0, 2), seed=10 + i)
        yield f"long{sfreq:g}", x, sfreq, {}
    x, _ = simulate_spikes(1000.0, duration_s=20.0, n_chans=4, spiky=(1,), seed=30)
    t = np.arange(x.shape[-1]) / 1000.0
    yield "notch1000", x + 2.0 * np.sin(2 * np.pi * 50.0 * t), 1000.0, {"line_freq": 50.0}
    x, _ = simulate_spikes(500.0, duration_s=12.0, n_chans=4, spiky=(0, 3), seed=31)
    x[1] = 3.0
    yield "flat500", x, 500.0, {"window_s": 4.0, "step_s": 0.5, "union_s": 0.2}
    x, _ = simulate_spikes(512.0, duration_s=15.0, n_chans=3, spiky=(2,), seed=32)
    yield "float32_512", x.astype(np.float32), 512.0, {"k1": 3.0}
    yield "short1000", x[:, :700].astype(np.float64), 512.0, {"edge_s": 0.1}


def clip_cases() -> Iterator[tuple[str, np.ndarray, float]]:
    """``(name, clips (n_clips, n_chans, n_samples), sfreq)``: 5-s clips of spiky recordings."""
    for i, sfreq in enumerate((250.0, 500.0, 512.0, 1000.0)):
        x, _ = simulate_spikes(
            sfreq, duration_s=40.0, n_chans=12, spiky=tuple(range(0, 12, 3)), rate_per_s=0.5,
            seed=40 + i,
        )  # fmt: skip
        n = int(5 * sfreq)
        yield f"clips{sfreq:g}", x.reshape(12, 8, n).transpose(1, 0, 2).copy(), sfreq


def compute() -> dict[str, np.ndarray]:
    """Every output of the current code on the reference cases, as flat named arrays."""
    out = {}
    for name, x, sfreq, kwargs in reference_cases():
        det = detect_spikes(x, sfreq, **kwargs)
        out[f"{name}/channel"] = det.channel
        out[f"{name}/sample"] = det.sample
        out[f"{name}/amplitude"] = det.amplitude
        out[f"{name}/ratio"] = det.ratio
        out[f"{name}/analysed_s"] = np.asarray(det.analysed_s)
    for name, clips, sfreq in clip_cases():
        out[f"{name}/rate"] = clip_spike_rate(clips, sfreq)
    return out


@pytest.fixture(scope="module")
def frozen() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def current() -> dict[str, np.ndarray]:
    return compute()


def test_reference_cases_detect_spikes(frozen):
    """The frozen cases are not trivial: most have spikes, the clips differ between contacts."""
    n_spikes = [frozen[k].size for k in frozen if k.endswith("/channel")]
    assert sum(n > 0 for n in n_spikes) >= len(n_spikes) - 1
    assert sum(n_spikes) > 100
    rates = [frozen[k] for k in frozen if k.endswith("/rate")]
    assert all(r.shape == (8, 12) and np.ptp(r) > 0 for r in rates)


def test_same_keys(frozen, current):
    assert sorted(frozen) == sorted(current)


@pytest.mark.parametrize("field", ["channel", "sample", "amplitude", "ratio", "analysed_s", "rate"])
def test_same_detections_as_frozen(frozen, current, field):
    """Spike channels, samples and per-clip rates exactly; amplitudes and ratios to 1e-9."""
    keys = [k for k in frozen if k.endswith(f"/{field}")]
    assert keys
    for key in keys:
        got, want = current[key], frozen[key]
        assert got.shape == want.shape, key
        if field in ("channel", "sample"):
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=key)


if __name__ == "__main__":
    np.savez_compressed(REFERENCE, **compute())
    print(f"wrote {REFERENCE}")


@pytest.mark.parametrize("sfreq", [250.0, 256.0, 500.0, 512.0, 1000.0, 1024.0, 2000.0, 2048.0])
@pytest.mark.parametrize("n_times", [600, 2500, 5001])
def test_stages_match_scipy(sfreq, n_times):
    """Each rewritten stage gives what the scipy call it replaces gives, to rounding."""
    rng = np.random.default_rng(int(sfreq) + n_times)
    x = rng.standard_normal((3, n_times))
    up, down = spikes._resampling_ratio(sfreq)
    want = resample_poly(x, up, down, axis=-1)
    got = spikes._to_detection_rate(x, up, down)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    fs = sfreq * up / down
    for stage in spikes._filters(fs, (10.0, 60.0), 50.0):
        np.testing.assert_allclose(stage(got), sosfiltfilt(stage.sos, got, axis=-1), atol=1e-12)
    np.testing.assert_allclose(
        spikes._envelope(got), np.abs(hilbert(got, axis=-1)), rtol=0, atol=1e-12
    )


def test_chunks_do_not_change_detections(monkeypatch, frozen):
    """Rows are independent: chunks of a few rows give the frozen detections too."""
    monkeypatch.setattr(spikes, "CHUNK_SAMPLES", 3 * 5000)
    name, clips, sfreq = list(clip_cases())[-1]
    np.testing.assert_array_equal(clip_spike_rate(clips, sfreq), frozen[f"{name}/rate"])
