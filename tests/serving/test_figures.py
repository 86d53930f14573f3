"""Report figures checked for what they draw (artists and their data), not only PNG bytes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from ingest.config import IngestConfig
from ingest.pipeline import commit_manifests
from ingest.store import ClipStore
from ingest.synthetic import synthetic_recording, write_recording_clips
from serving.figures import (
    bipolar_pairs,
    contact_intervals,
    intervals_figure,
    probability_heatmap_figure,
    read_segment,
    save,
    traces_figure,
)

CHANNELS = ["LA1", "LA2", "LA3", "LA5", "RH1", "RH2"]  # LA4 dropped as bad: LA3-LA5 is no pair


def test_bipolar_pairs_are_neighbours_of_one_shaft():
    pairs = bipolar_pairs(CHANNELS)
    assert [name for _, _, name in pairs] == ["LA1-LA2", "LA2-LA3", "RH1-RH2"]
    assert pairs[0][:2] == (0, 1)
    assert bipolar_pairs(["A'1", "A'2", "EKG"]) == [(0, 1, "A'1-A'2")]


def test_traces_draw_both_montages_and_highlight_each_contacts_windows():
    sfreq = 100.0
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10, (len(CHANNELS), 2000)).astype(np.float32)  # 20 s
    windows = {"LA2": [(105.0, 110.0, 1.0)], "RH1": [(112.0, 114.0, 0.2)]}
    fig = traces_figure(
        data, sfreq, CHANNELS, ["LA2", "RH1"], t0=100.0, windows=windows, onset_s=108.0,
        clinical=["LA2"],
    )  # fmt: skip
    ref, bip = fig.axes
    assert ref.get_label() == "referential" and bip.get_label() == "bipolar"
    assert [ln.get_label() for ln in ref.get_lines() if ln.get_label()[0] != "_"] == ["LA2", "RH1"]
    bip_names = [ln.get_label() for ln in bip.get_lines() if ln.get_label()[0] != "_"]
    assert bip_names == ["LA1-LA2", "LA2-LA3", "RH1-RH2"]
    # The bipolar trace is the difference of the two contacts (same scale as drawn).
    la12 = next(ln for ln in bip.get_lines() if ln.get_label() == "LA1-LA2")
    y = la12.get_ydata()
    diff = data[0] - data[1]
    assert np.corrcoef(y - y.mean(), -diff)[0, 1] > 0.999
    np.testing.assert_allclose(la12.get_xdata()[[0, -1]], [100.0, 100.0 + 1999 / sfreq])
    # Highlights sit on the rows of their own contact, span the given window, shade = weight.
    rects = [p for p in ref.patches if isinstance(p, Rectangle) and p.get_gid()]
    by = {p.get_gid(): p for p in rects}
    assert set(by) == {"LA2", "RH1"}
    assert by["LA2"].get_x() == 105.0 and by["LA2"].get_width() == 5.0
    assert abs(by["LA2"].get_y() + 0.48) < 1e-9  # row 0
    assert abs(by["RH1"].get_y() - (1 - 0.48)) < 1e-9  # row 1
    assert by["LA2"].get_alpha() > by["RH1"].get_alpha()
    # LA2's window shows on both bipolar traces it takes part in.
    assert sorted(round(p.get_y()) for p in bip.patches if p.get_gid() == "LA2") == [0, 1]
    assert any(ln.get_xdata()[0] == 108.0 for ln in ref.get_lines() if ln.get_linestyle() == "--")
    plt.close(fig)
    with pytest.raises(ValueError, match="not among"):
        traces_figure(data, sfreq, CHANNELS, ["XX9"])


def test_heatmap_holds_the_probabilities_and_marks_onset(tmp_path):
    starts = np.arange(10) * 20.0
    probs = np.random.default_rng(1).uniform(size=(10, len(CHANNELS)))
    fig = probability_heatmap_figure(probs, starts, 20.0, CHANNELS, onsets_s=[60.0])
    ax = fig.axes[0]
    (im,) = [a for a in ax.get_images() if isinstance(a, AxesImage)]
    np.testing.assert_array_equal(im.get_array(), probs.T)
    assert im.get_extent()[:2] == [0.0, 200.0]
    (onset,) = [ln for ln in ax.get_lines() if ln.get_gid() == "onset"]
    assert onset.get_xdata()[0] == 60.0
    png = save(fig, tmp_path / "h.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="must be"):
        probability_heatmap_figure(probs[:, :2], starts, 20.0, CHANNELS)


def test_intervals_flag_contacts_where_calls_disagree():
    folds = {
        "fold 0": np.array([0.9, 0.7, 0.1, 0.2, 0.1, 0.05]),
        "fold 1": np.array([0.8, 0.3, 0.2, 0.1, 0.1, 0.05]),
    }
    table = contact_intervals(folds, {"fold 0": 0.5, "fold 1": 0.5}, CHANNELS)
    assert table.loc[0, "low"] == 0.8 and table.loc[0, "high"] == 0.9
    assert list(table["disagree"]) == [False, True, False, False, False, False]
    models = {"sozformer": folds["fold 0"], "svm": np.array([0.2, 0.6, 0.1, 0.9, 0.0, 0.0])}
    fig, tables = intervals_figure(
        {"across fold models": (folds, {"fold 0": 0.5, "fold 1": 0.5}),
         "across models": (models, {"sozformer": 0.5, "svm": 0.5})},
        CHANNELS, top_n=4,
    )  # fmt: skip
    assert list(tables["across models"]["disagree"]) == [True, False, False, True, False, False]
    ax_f, ax_m = fig.axes
    labels = [t.get_text() for t in ax_f.get_yticklabels()]
    assert labels == ["LA1", "LA2 !", "LA3", "LA5"]  # top 4 by mean over folds
    red = [t.get_text() for t in ax_m.get_yticklabels() if t.get_color() == "#c1121f"]
    assert red == ["LA1 !", "LA5 !"]
    segs = ax_f.collections[0].get_segments()  # one interval line per shown contact
    np.testing.assert_allclose([s[:, 0] for s in segs][1], [0.3, 0.7])
    plt.close(fig)


def test_read_segment_joins_clips_from_a_real_store(tmp_path):
    cfg = IngestConfig(sfreq=128.0, block_clips=4, line_freq=50.0)
    store = ClipStore.open(tmp_path / "store", "a", config=cfg)
    rec = synthetic_recording("sim", "p1", "ictal", channels=CHANNELS, soz=["LA1"], n_clips=6,
                              config=cfg, seizure=(12.0, 20.0))  # fmt: skip
    clips = np.random.default_rng(2).normal(0, 50, (6, len(CHANNELS), cfg.clip_samples))
    commit_manifests(store, [("rows", write_recording_clips(store, rec, clips))])
    store = ClipStore.open(tmp_path / "store")
    data, sfreq, t0, chans = read_segment(store, rec.recording_id, 7.0, 16.0)
    assert chans == CHANNELS and sfreq == 128.0 and t0 == 5.0
    assert data.shape == (len(CHANNELS), 3 * cfg.clip_samples)  # clips 1, 2, 3
    np.testing.assert_allclose(data[:, : cfg.clip_samples], clips[1], rtol=2e-3, atol=0.05)
    np.testing.assert_allclose(data[:, cfg.clip_samples :][:, : cfg.clip_samples], clips[2],
                               rtol=2e-3, atol=0.05)  # fmt: skip
