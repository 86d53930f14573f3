"""Pure preprocessing functions: filter responses, resampling, scaling, storage error."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from ingest import preprocessing as pp
from ingest.config import IngestConfig
from ingest.errors import ConfigError


def _gain(h: np.ndarray, sfreq: float, freqs) -> np.ndarray:
    _, resp = scipy.signal.freqz(h.astype(np.float64), worN=np.asarray(freqs, float), fs=sfreq)
    return np.abs(resp)


def test_pure_module_imports_no_engine():
    for name in ("preprocessing", "clipping"):
        tree = ast.parse(Path(pp.__file__).with_name(f"{name}.py").read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m.split(".")[0] in ("apache_beam", "ray") for m in mods), name


@pytest.mark.parametrize(
    ("orig", "target", "expected"),
    [
        (1024.0, 1000.0, (125, 128)),
        (2048.0, 1000.0, (125, 256)),
        (500.0, 1000.0, (2, 1)),
        (1000.0, 1000.0, (1, 1)),
        (999.41, 1000.0, (1695, 1694)),
    ],
)
def test_rational_ratio(orig, target, expected):
    up, down = pp.rational_ratio(orig, target, max_denominator=2000)
    assert (up, down) == expected
    assert abs(up / down * orig / target - 1) < 5e-7


def test_combined_filter_response():
    h = pp.design_filter(1000.0, l_freq=0.5, h_freq=450.0, line_freq=60.0, trans_bandwidth=0.5)
    assert h.dtype == np.float32 and h.shape[0] % 2 == 1
    np.testing.assert_allclose(h, h[::-1])  # linear phase
    passband = _gain(h, 1000.0, [3.0, 10.0, 40.0, 100.0, 250.0, 400.0])
    np.testing.assert_allclose(passband, 1.0, atol=0.01)
    stop = _gain(h, 1000.0, [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 420.0, 495.0])
    assert (stop < 10 ** (-40 / 20)).all(), stop  # > 40 dB down at DC, harmonics, above h_freq


def test_fir_filter_equals_direct_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4000)).astype(np.float32)
    h = pp.design_filter(250.0, l_freq=1.0, line_freq=50.0, trans_bandwidth=2.0)
    got = pp.fir_filter(x, h)
    want = np.stack([np.convolve(row.astype(float), h.astype(float), mode="valid") for row in x])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    with pytest.raises(ValueError, match="must be >="):
        pp.fir_filter(x[:, :10], h)


def test_fir_filter_overlap_save_spans_segments():
    """A signal several overlap-save segments long gives the direct convolution throughout."""
    rng = np.random.default_rng(3)
    h = pp.design_filter(250.0, l_freq=1.0, line_freq=50.0, trans_bandwidth=1.0)
    x = rng.standard_normal((2, 60_000)).astype(np.float32)
    assert pp.overlap_save_length(h.shape[0], x.shape[1]) < x.shape[1] // 3  # >= 3 segments
    got = pp.fir_filter(x, h)
    want = np.stack([np.convolve(row.astype(float), h.astype(float), mode="valid") for row in x])
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def _cascade(x, up, down, h, start, n_out):
    hf = (h.shape[0] - 1) // 2
    return pp.fir_filter(pp.resample(x, up, down)[:, start - hf : start + n_out + hf], h)


@pytest.mark.parametrize(("fs_in", "fs_out"), [(1024.0, 1000.0), (500.0, 1000.0), (200.0, 250.0)])
def test_folded_resample_filter_equals_cascade_in_pass_band(fs_in, fs_out):
    """Resampling + FIR in one FFT step: same pass band as the polyphase cascade (<= 1e-3)."""
    up, down = pp.rational_ratio(fs_in, fs_out)
    h_freq = 0.45 * min(fs_in, fs_out)
    h = pp.design_filter(fs_out, l_freq=1.0, h_freq=h_freq, line_freq=50.0, trans_bandwidth=1.0)
    margin = pp.fold_half_length(up, down, n_taps=h.shape[0])
    start, n_out = margin + 3, int(20 * fs_out)
    t = np.arange(int((start + n_out + margin) * down / up) + 2) / fs_in
    freqs = [7.3, 0.3 * h_freq, 0.85 * h_freq]  # well inside the pass band
    x = np.stack([np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)
    folded = pp.resample_filter(x, up, down, h, start=start, n_out=n_out)
    cascade = _cascade(x, up, down, h, start, n_out)
    assert folded.dtype == np.float32 and folded.shape == (3, n_out)
    # the cascade aliases at its anti-aliasing stop band (Kaiser, -55 dB: ~2e-3 of a tone)
    np.testing.assert_allclose(folded, cascade, atol=3e-3)
    t_out = (start + np.arange(n_out)) / fs_out
    np.testing.assert_allclose(folded[0], np.sin(2 * np.pi * freqs[0] * t_out), atol=2e-3)


def test_folded_resample_filter_removes_the_cascade_alias():
    """1024 -> 1000 Hz: a 460 Hz tone aliases to 436 Hz (pass band) through the polyphase
    cascade at about -30 dB; the folded step leaves less than a tenth of that."""
    up, down = 125, 128
    h = pp.design_filter(1000.0, l_freq=0.5, h_freq=450.0, line_freq=60.0, trans_bandwidth=0.5)
    margin = pp.fold_half_length(up, down, n_taps=h.shape[0])
    start, n_out = margin, 20_000
    t = np.arange(int((start + n_out + margin) * 1.024) + 2) / 1024.0
    x = np.sin(2 * np.pi * 460.3 * t)[None].astype(np.float32)
    alias = np.abs(_cascade(x, up, down, h, start, n_out)).max()
    assert alias > 0.01  # the cascade's alias is real (not a vacuous comparison)
    assert np.abs(pp.resample_filter(x, up, down, h, start=start, n_out=n_out)).max() < alias / 10


def test_folded_resample_filter_is_split_invariant_and_checks_margins():
    """Two calls on adjacent output ranges equal one call (block-wise == one-shot, 1e-5)."""
    rng = np.random.default_rng(4)
    up, down = 125, 128
    h = pp.design_filter(1000.0, l_freq=0.5, line_freq=60.0, h_freq=450.0, trans_bandwidth=2.0)
    margin = pp.fold_half_length(up, down, n_taps=h.shape[0])
    n_out = 90_000
    x = rng.standard_normal((2, int((2 * margin + n_out) * 1.024) + 2)).astype(np.float32)
    whole = pp.resample_filter(x, up, down, h, start=margin, n_out=n_out)
    cut = 31_337
    parts = np.concatenate(
        [
            pp.resample_filter(x, up, down, h, start=margin, n_out=cut),
            pp.resample_filter(x, up, down, h, start=margin + cut, n_out=n_out - cut),
        ],
        axis=1,
    )
    assert np.abs(parts - whole).max() <= 1e-5 * np.sqrt(np.mean(whole**2))
    with pytest.raises(ValueError, match="samples of margin"):
        pp.resample_filter(x, up, down, h, start=margin - 1, n_out=10)
    with pytest.raises(ValueError, match="samples of margin"):
        pp.resample_filter(x, up, down, h, start=margin, n_out=n_out + 100)
    with pytest.raises(ValueError, match="nothing to resample"):
        pp.resample_filter(x, 2, 2, h, start=margin, n_out=10)


def test_resample_keeps_time_alignment():
    """A 7 Hz sine resampled 1024 -> 1000 Hz is the same sine at the new sample times."""
    fs_in, fs_out = 1024.0, 1000.0
    t_in = np.arange(4096) / fs_in
    x = np.sin(2 * np.pi * 7 * t_in)[None].astype(np.float32)
    up, down = pp.rational_ratio(fs_in, fs_out)
    y = pp.resample(x, up, down)
    t_out = np.arange(y.shape[1]) / fs_out
    interior = slice(200, y.shape[1] - 200)
    np.testing.assert_allclose(y[0, interior], np.sin(2 * np.pi * 7 * t_out[interior]), atol=2e-3)


def test_scaling_is_robust_and_safe():
    rng = np.random.default_rng(1)
    clips = rng.normal(0, 1, (20, 3, 5000)).astype(np.float32) * np.array([1, 10, 0])[None, :, None]
    clips[3, 0, :100] = 1e4  # an artefact must not move a robust scale
    std = pp.robust_std(clips)
    assert std.shape == (20, 3)
    scale = pp.channel_scale(std)
    np.testing.assert_allclose(scale[:2], [1.0, 10.0], rtol=0.05)
    assert scale[2] == 1.0  # flat channel: no division by zero
    scaled = pp.scale_clips(clips, scale)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(np.median(pp.robust_std(scaled), axis=0)[:2], 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        pp.scale_clips(clips, scale[:2])


def test_float16_storage_error_bound():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(100_000) * 10 ** rng.uniform(-2, 4, 100_000)).astype(np.float32)
    x[:3] = [7e4, -1e5, 65000.0]
    stored, n_sat = pp.to_storage(x, "float16")
    assert n_sat == 2 and stored.dtype == np.float16 and np.isfinite(stored).all()
    ok = np.abs(x) <= 65504
    err = np.abs(stored[ok].astype(np.float32) - x[ok])
    bound = IngestConfig(dtype="float16").max_relative_error * np.abs(x[ok]) + 2.0**-25
    assert (err <= bound).all()
    assert err.max() > 0  # the bound is not vacuous: float16 does round
    assert stored[0] == 65504 and stored[1] == -65504  # saturated, not inf
    same, n_same = pp.to_storage(x, "float32")
    assert same is x and n_same == 0  # no copy where there is no cast


def test_config_validation_and_round_trip():
    cfg = IngestConfig(sfreq=500.0, line_freq=50.0, num_workers=3)
    assert IngestConfig.from_dict(cfg.to_dict()) == cfg  # runner options do not compare
    assert "num_workers" not in cfg.to_dict()
    with pytest.raises(ConfigError, match="whole number of samples"):
        IngestConfig(sfreq=1000.0, clip_s=0.0005)
    with pytest.raises(ConfigError, match="l_freq=10.0 must be below self.h_freq=5.0"):
        IngestConfig(l_freq=10.0, h_freq=5.0)
    with pytest.raises(ConfigError, match="dtype"):
        IngestConfig(dtype="int8")
    with pytest.raises(ConfigError, match="unknown ingest config keys"):
        IngestConfig.from_dict({"sfreq": 1000.0, "bogus": 1})
