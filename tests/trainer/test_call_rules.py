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


def test_training_leaves_flat_contacts_out_of_the_relative_threshold():
    """As serving does (serving/flat_contacts.py): a dead contact scored 0 must not pull its
    patient's threshold down and add calls. The flags come from the store's channels table."""
    from trainer.metrics import aggregate_channel_scores, with_flat

    val = _patients("v", 6, 0)
    rows = []
    for i in range(6):  # one SOZ contact on top, then non-SOZ ones, then the dead contact
        for j, (y, s) in enumerate(zip([1, 0, 0, 0, 0], [0.9, 0.6, 0.5, 0.4, 0.3], strict=True)):
            rows.append({"cohort": "c", "patient": f"t{i}", "recording_id": f"t{i}_r",
                         "channel": f"ch{j}", "y_true": y, "score": s + 0.01 * i})  # fmt: skip
    test = pd.DataFrame(rows)
    dead = test[test["channel"] == "ch4"].assign(channel="dead", score=0.0, y_true=0)
    both = pd.concat([test, dead], ignore_index=True)
    channels = both.loc[:, ["recording_id", "channel"]].rename(columns={"channel": "name"})
    channels["flat"] = channels["name"] == "dead"
    flagged = with_flat(both, channels)
    assert flagged["flat"].sum() == 6 and aggregate_channel_scores(flagged)["flat"].sum() == 6
    k = 0.5  # mean + 0.5 std: 0.64 over the five contacts, 0.59 with the dead one among them
    alone = evaluate_fold(val, test, call_rule="relative", relative_k=k)
    with_dead = evaluate_fold(val, flagged, call_rule="relative", relative_k=k)
    unflagged = evaluate_fold(val, both, call_rule="relative", relative_k=k)
    assert alone["calls"]["relative"]["n_calls"] == 6  # the SOZ contact of each patient
    assert with_dead["calls"]["relative"]["n_calls"] == 6
    assert unflagged["calls"]["relative"]["n_calls"] == 12  # the 0.6 contacts too: wrong
    assert with_dead["calls"]["relative"]["macro_precision"] == 1.0
    pooled = summarise_folds([with_dead])["pooled_calls"]["relative"]
    assert pooled["n_calls"] == 6
    # the threshold serving takes for that recording (its flat contact left out)
    one = flagged[flagged["patient"] == "t0"]
    t = relative_threshold(one["score"], k, one["flat"])
    assert t == pytest.approx(relative_threshold([0.9, 0.6, 0.5, 0.4, 0.3], k))
