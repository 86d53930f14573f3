"""The patient-relative call rule: shift-proof calls, chosen on validation, reported beside Youden's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.call_rules import fit_relative_k, relative_threshold, relative_thresholds
from trainer.metrics import evaluate_fold, summarise_folds


def _patients(prefix: str, n: int, seed: int, shift=0.0) -> pd.DataFrame:
    """Two SOZ of ten contacts per patient; patient ``i``'s scores all sit ``shift * i`` higher
    (a site effect), so one absolute threshold cannot suit them all."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = np.zeros(10, int)
        y[:2] = 1
        s = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.03, 10) + shift * i, 0, 1)
        rows += [{"cohort": "c", "patient": f"{prefix}{i}", "channel": f"ch{j}",
                  "y_true": int(y[j]), "score": float(s[j])} for j in range(10)]  # fmt: skip
    return pd.DataFrame(rows)


def test_relative_threshold_follows_the_patient():
    s = np.array([0.1, 0.2, 0.3, 0.9])
    assert relative_threshold(s, 1.0) == pytest.approx(s.mean() + s.std())
    assert relative_threshold(s, 10.0) == 0.9  # the top contact is always called
    t = relative_thresholds(np.r_[s, s + 0.05], ["a"] * 4 + ["b"] * 4, 1.0)
    np.testing.assert_allclose(t[4:], t[:4] + 0.05)


def test_relative_rule_survives_a_site_shift_that_breaks_youden():
    val = _patients("v", 6, 0)  # the training site: no shift
    test = _patients("t", 6, 1, shift=0.12)  # a new site: every patient shifted up
    k = fit_relative_k(val["y_true"], val["score"], val["patient"])
    assert 0.0 < k < 3.0
    res = evaluate_fold(val, test, call_rule="relative")
    youden, relative = res["calls"]["youden"], res["calls"]["relative"]
    assert relative["macro_precision"] == 1.0 and relative["macro_recall"] == 1.0
    assert youden["macro_precision"] < 0.7  # shifted patients: every contact over the bar
    assert res["macro"]["precision"]["mean"] == relative["macro_precision"]  # the rule in use
    assert res["test"]["roc_auc"] == evaluate_fold(val, test)["test"]["roc_auc"]
    pooled = summarise_folds([res])["pooled_calls"]
    assert pooled["relative"]["macro_precision"] == 1.0
    assert pooled["youden"]["n_calls"] == youden["n_calls"]
    with pytest.raises(ValueError, match="call_rule"):
        evaluate_fold(val, test, call_rule="top3")


def test_summary_sets_both_rules_side_by_side():
    from trainer.summary import render_summary

    val, test = _patients("v", 6, 0), _patients("t", 6, 1, shift=0.12)
    res = summarise_folds([evaluate_fold(val, test, call_rule="relative")])
    text = render_summary({"svm": res})
    section = text.split("## Call rules")[1].split("##")[0]
    row = next(line for line in section.splitlines() if line.startswith("| `svm`"))
    assert "| relative |" in row and "1.000" in row
    assert "Brier skill" in text and "calibrated" in text
