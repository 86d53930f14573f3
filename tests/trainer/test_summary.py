"""summary.md lists every model side by side, the reference figures apart, and links the plots."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from trainer.metrics import evaluate_fold, summarise_folds
from trainer.plots import plot_roc_by_cohort
from trainer.summary import REFERENCE, render_summary, write_summary


def _model_result(signal: float, seed: int) -> dict:
    """Two folds of a fake model whose SOZ separation grows with ``signal``."""
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, n in (("HUP", 6), ("EIIMD", 4)):
        for i in range(n):
            for c in range(12):
                y = int(c < 2)
                s = 1 / (1 + np.exp(-(signal * y - 1.5 + rng.normal())))
                rows.append((cohort, f"{cohort}/P{i}", f"A{c}", y, s))
    table = pd.DataFrame(rows, columns=["cohort", "patient", "channel", "y_true", "score"])
    patients = sorted(table["patient"].unique())
    halves = (patients[::2], patients[1::2])
    results = []
    for k in range(2):
        test_p = halves[k]
        val_p = halves[1 - k][:3]
        results.append(
            evaluate_fold(table[table["patient"].isin(val_p)], table[table["patient"].isin(test_p)])
        )
    return summarise_folds(results)


@pytest.fixture(scope="module")
def results() -> dict:
    return {
        "sozformer": _model_result(2.5, 0),
        "dcgru": _model_result(1.5, 1),
        "svm": _model_result(1.0, 2),
        "baseline": _model_result(0.0, 3),
    }


def test_summary_has_every_model_and_reference(tmp_path, results):
    roc = results["sozformer"]["pooled_roc_by_cohort"]
    plot_roc_by_cohort(roc, tmp_path / "sozformer" / "roc_by_cohort.png")
    path = write_summary(tmp_path, results)
    assert path == tmp_path / "summary.md"
    text = path.read_text()
    cv = text.split("## Cross-validation")[1].split("##")[0]
    rows = [line for line in cv.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", r).group(1) for r in rows] == list(results)
    soz_row = rows[0]
    mean, std = results["sozformer"]["mean"]["roc_auc"], results["sozformer"]["std"]["roc_auc"]
    assert f"{mean:.3f} ± {std:.3f}" in soz_row
    # the strongest fake model has the best AUC, in bold
    assert f"**{mean:.3f} ± {std:.3f}**" in soz_row
    assert "Reference: the original work on real data" in text
    assert "0.75-0.80" in text and "not comparable" in text
    assert len(REFERENCE) == 3
    # plots found under RUN_DIR/<model> and linked relatively
    assert "[roc_by_cohort](sozformer/roc_by_cohort.png)" in text
    pooled = text.split("## Pooled")[1].split("##")[0]
    assert sum(line.startswith("| `") for line in pooled.splitlines()) == 4
    by_cohort = text.split("## Pooled channel ROC-AUC by cohort")[1].split("##")[0]
    assert "| model | EIIMD | HUP |" in by_cohort
    auc_hup = results["dcgru"]["pooled_roc_by_cohort"]["HUP"]["auc"]
    assert "| `dcgru` | " in by_cohort and f"{auc_hup:.3f}" in by_cohort


def test_explicit_plot_links_and_errors(tmp_path, results):
    res = dict(results["svm"], plots={"ROC": tmp_path / "x" / "roc.png"})
    text = render_summary({"svm": res}, run_dir=tmp_path)
    assert "[ROC](x/roc.png)" in text
    with pytest.raises(ValueError, match="summarise_folds"):
        render_summary({"svm": {"mean": {}}})
    with pytest.raises(ValueError, match="no model results"):
        render_summary({})
