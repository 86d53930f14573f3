"""Each plot writes a valid, non-trivial PNG from the structures trainer.metrics produces."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.figures import check_png as _check_png
from trainer.metrics import channel_metrics, roc_curve_by_cohort
from trainer.plots import (
    plot_confusion,
    plot_pr,
    plot_reliability,
    plot_roc_by_cohort,
    plot_roc_through_training,
    plot_training_curves,
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.15).astype(int)
    score = 1 / (1 + np.exp(-(1.5 * y - 1.5 + rng.normal(size=n))))
    cohort = rng.choice(["HUP", "EIIMD", "CHUL"], size=n)
    return pd.DataFrame({"cohort": cohort, "y_true": y, "score": score})


def test_roc_by_cohort_from_tuples_and_json(tmp_path, table):
    curves = roc_curve_by_cohort(table, include_all=True)
    _check_png(plot_roc_by_cohort(curves, tmp_path / "roc.png"))
    as_json = json.loads(
        json.dumps(
            {k: {"fpr": f.tolist(), "tpr": t.tolist(), "auc": a} for k, (f, t, a) in curves.items()}
        )
    )
    _check_png(plot_roc_by_cohort(as_json, tmp_path / "sub" / "roc_json.png"))
    with pytest.raises(ValueError, match="PNG"):
        plot_roc_by_cohort(curves, tmp_path / "roc.pdf")


def test_pr_and_reliability_and_confusion(tmp_path, table):
    _check_png(
        plot_pr(table["y_true"], table["score"], tmp_path / "pr.png", groups=table["cohort"])
    )
    m = channel_metrics(table["y_true"], table["score"], 0.3)
    _check_png(plot_reliability(m["reliability"], tmp_path / "rel.png", brier=m["brier"]))
    a = _check_png(plot_confusion(m, tmp_path / "cm.png"), min_bytes=5_000)
    b = _check_png(plot_confusion([[90, 10], [3, 7]], tmp_path / "cm2.png"), min_bytes=5_000)
    # the drawing follows the data: other counts, other pixels (same canvas)
    assert a.shape == b.shape and not np.array_equal(a, b)
    again = _check_png(plot_confusion([[90, 10], [3, 7]], tmp_path / "cm3.png"), min_bytes=5_000)
    np.testing.assert_array_equal(again, b)
    with pytest.raises(ValueError, match="2 x 2"):
        plot_confusion([[1, 2, 3]], tmp_path / "bad.png")


def test_training_curves_single_and_per_fold(tmp_path):
    hist = [
        {
            "epoch": e,
            "train_loss": 1 / (e + 1),
            "val_loss": 1.2 / (e + 1),
            "val_auc": 0.5 + 0.04 * e,
        }
        for e in range(8)
    ]
    _check_png(plot_training_curves(hist, tmp_path / "curves.png"))
    folds = {"fold 0": hist, "fold 1": [dict(h, val_auc=h["val_auc"] - 0.05) for h in hist]}
    _check_png(plot_training_curves(folds, tmp_path / "curves_folds.png"))
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([], tmp_path / "none.png")


def test_roc_through_training(tmp_path, table):
    rng = np.random.default_rng(1)
    per_epoch = {}
    for e in range(5):
        noisy = table.assign(
            score=table["score"] + rng.normal(scale=0.3 / (e + 1), size=len(table))
        )
        per_epoch[e] = roc_curve_by_cohort(noisy, include_all=True)
    _check_png(plot_roc_through_training(per_epoch, tmp_path / "roc_epochs.png"))
    with pytest.raises(ValueError, match="no ROC curves"):
        plot_roc_through_training({0: {}}, tmp_path / "empty.png")
