"""Metrics against scikit-learn and hand-made cases; aggregation order; folds pooled."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from tests.trainer.conftest import brute_force_youden, channel_table
from trainer.metrics import (
    aggregate_channel_scores,
    channel_metrics,
    evaluate_fold,
    patient_macro_metrics,
    reliability_curve,
    roc_curve_by_cohort,
    summarise_folds,
    youden_threshold,
)


def _preds(patients, *, seed=0, n_chans=10, n_recs=2, n_seqs=3, signal=1.5):
    """A prediction table: per sequence x channel, scores separating SOZ a little."""
    rng = np.random.default_rng(seed)
    rows = []
    for cohort, patient in patients:
        soz = set(rng.choice(n_chans, size=2, replace=False).tolist())
        for r in range(n_recs):
            for s in range(n_seqs):
                for c in range(n_chans):
                    y = int(c in soz)
                    logit = signal * y - 1.5 + rng.normal()
                    rows.append(
                        {
                            "cohort": cohort,
                            "patient": f"{cohort}/{patient}",
                            "recording_id": f"{cohort}__{patient}__run{r}",
                            "channel": f"A{c + 1}",
                            "y_true": y,
                            "score": float(1 / (1 + np.exp(-logit))),
                            "sequence": s,
                        }
                    )
    return pd.DataFrame(rows)


def test_aggregation_is_mean_of_recording_means():
    # one patient, one channel: recording r1 has 3 sequences, r2 has 1. The mean of means
    # is (0.2 + 0.8) / 2 = 0.5; a flat mean over 4 sequences would be 0.35.
    preds = pd.DataFrame(
        {
            "cohort": ["c"] * 4,
            "patient": ["c/p"] * 4,
            "recording_id": ["r1", "r1", "r1", "r2"],
            "channel": ["A1"] * 4,
            "y_true": [1, 1, 1, 1],
            "score": [0.1, 0.2, 0.3, 0.8],
        }
    )
    table = aggregate_channel_scores(preds)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["score"] == pytest.approx(0.5)
    assert row["n_recordings"] == 2 and row["n_sequences"] == 4
    assert row["y_true"] == 1
    # the same recordings as partial means with their sequence counts (two workers' shares of
    # r1, r2 whole) give the same result: partial means are combined weighted
    partial = preds.iloc[[0, 2, 3]].assign(score=[0.15, 0.3, 0.8], n_sequences=[2, 1, 1])
    again = aggregate_channel_scores(partial).iloc[0]
    assert again["score"] == pytest.approx(0.5)
    assert again["n_sequences"] == 4
    with pytest.raises(ValueError, match="positive count"):
        aggregate_channel_scores(partial.assign(n_sequences=[2, 0, 1]))


def test_aggregation_label_or_across_recordings_and_errors(caplog):
    preds = pd.DataFrame(
        {
            "cohort": ["c"] * 4,
            "patient": ["c/p"] * 4,
            "recording_id": ["r1", "r1", "r2", "r2"],
            "channel": ["A1", "A2", "A1", "A2"],
            "y_true": [1, 0, 0, 0],
            "score": [0.9, 0.1, 0.7, 0.2],
        }
    )
    with caplog.at_level("WARNING", logger="trainer.metrics"):
        table = aggregate_channel_scores(preds)
    assert table.set_index("channel")["y_true"].to_dict() == {"A1": 1, "A2": 0}
    assert "counted as SOZ" in caplog.text
    bad = preds.copy()
    bad.loc[1, "recording_id"] = "r1"
    bad.loc[1, "channel"] = "A1"  # two rows of (r1, A1) with labels 1 and 0
    with pytest.raises(ValueError, match="different labels"):
        aggregate_channel_scores(bad)
    with pytest.raises(ValueError, match="missing columns"):
        aggregate_channel_scores(preds.drop(columns="recording_id"))
    nan = preds.copy()
    nan.loc[0, "score"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        aggregate_channel_scores(nan)


def _two_step_table(preds: pd.DataFrame) -> pd.DataFrame:
    per_rec = preds.groupby(["patient", "recording_id", "channel"], as_index=False).agg(
        y_true=("y_true", "max"), score=("score", "mean")
    )
    return channel_table(per_rec)


def test_brute_force_youden_knows_the_hand_made_answer():
    # scores 0.2 0.4 0.5 0.7 0.9, labels 0 1 0 1 1: J at 0.7 = 2/3 - 0, at 0.4 = 1 - 1/2
    assert brute_force_youden([0, 1, 0, 1, 1], [0.2, 0.4, 0.5, 0.7, 0.9]) == 0.7


def test_youden_threshold_equals_brute_force_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(4, 30))
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        s = np.round(rng.random(n) * 0.5 + 0.3 * y, 1)  # rounded: many tied scores
        assert youden_threshold(y, s) == pytest.approx(brute_force_youden(y, s)), (y, s)


def test_youden_threshold_hand_made():
    # perfect separation: the lowest positive score gives TPR 1, FPR 0
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8]) == pytest.approx(0.6)
    # scores  0.1  0.4  0.35  0.8  0.9  labels 0 0 1 1 1
    # threshold 0.8: TPR 2/3, FPR 0 -> J 0.667; 0.35: TPR 1, FPR 1/2 -> J 0.5
    assert youden_threshold([0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.9]) == pytest.approx(0.8)
    # ties: 0.6 and 0.3 give J = 1/2 - 0 and 1 - 1/2; the higher threshold wins
    assert youden_threshold([0, 1, 0, 1], [0.1, 0.3, 0.5, 0.6]) == pytest.approx(0.6)
    # inverted scores: no score beats J = 0, the lowest (all called, J = 0) is returned, not +inf
    assert youden_threshold([1, 1, 0, 0], [0.1, 0.2, 0.7, 0.9]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="SOZ and non-SOZ"):
        youden_threshold([0, 0, 0], [0.1, 0.2, 0.3])


def test_channel_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(int)
    s = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    t = 0.5
    m = channel_metrics(y, s, t)
    pred = (s >= t).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["confusion"] == [[tn, fp], [fn, tp]]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s))
    assert m["brier"] == pytest.approx(brier_score_loss(y, s))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["prevalence"] == pytest.approx(y.mean())
    assert m["threshold"] == t
    assert sum(b["count"] for b in m["reliability"]) == 300
    json.dumps(m, allow_nan=False)  # plain JSON, no NaN


def test_channel_metrics_edge_cases():
    m = channel_metrics([0, 0, 0], [0.1, 0.2, 0.9], 0.95)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["recall"] is None
    assert m["precision"] == 0.0  # nothing called: zero_division = 0
    assert m["specificity"] == 1.0
    # per-channel thresholds (pooled folds)
    m2 = channel_metrics([1, 0, 1], [0.5, 0.5, 0.2], [0.4, 0.6, 0.1])
    assert (m2["tp"], m2["fp"], m2["tn"]) == (2, 0, 1) and m2["threshold"] is None
    with pytest.raises(ValueError, match="probabilities"):
        channel_metrics([0, 1], [-2.0, 3.0], 0.0)
    with pytest.raises(ValueError, match="0/1"):
        channel_metrics([0, 2], [0.1, 0.2], 0.5)


def test_reliability_bins_hand_made():
    bins = reliability_curve([0, 1, 1, 0, 1], [0.05, 0.15, 0.95, 0.12, 1.0], n_bins=2)
    assert [b["count"] for b in bins] == [3, 2]
    assert bins[0]["fraction_positive"] == pytest.approx(1 / 3)
    assert bins[0]["mean_score"] == pytest.approx((0.05 + 0.15 + 0.12) / 3)
    assert bins[1]["fraction_positive"] == 1.0
    empty = reliability_curve([0, 1], [0.01, 0.02], n_bins=4)
    assert empty[3]["count"] == 0 and empty[3]["mean_score"] is None


def test_patient_macro_metrics_hand_made():
    # threshold 0.5
    # p1: 4 channels, SOZ A,B; called A, C     -> tp1 fp1 fn1 tn1: R .5 S .5 P .5 F1 .5
    # p2: 3 channels, SOZ A;   called nothing  -> tp0 fp0 fn1 tn2: R 0  S 1  P 0 (zero div) F1 0
    # p3: 2 channels, no SOZ;  called B        -> tp0 fp1 fn0 tn1: R -  S .5 P 0 F1 -
    table = pd.DataFrame(
        {
            "cohort": ["x"] * 9,
            "patient": ["p1"] * 4 + ["p2"] * 3 + ["p3"] * 2,
            "channel": ["A", "B", "C", "D", "A", "B", "C", "A", "B"],
            "y_true": [1, 1, 0, 0, 1, 0, 0, 0, 0],
            "score": [0.9, 0.2, 0.7, 0.1, 0.4, 0.3, 0.2, 0.1, 0.6],
        }
    )
    m = patient_macro_metrics(table, 0.5)
    assert m["n_patients"] == 3
    per = {r["patient"]: r for r in m["per_patient"]}
    assert per["p1"]["recall"] == 0.5 and per["p1"]["precision"] == 0.5
    assert per["p2"]["precision"] == 0.0 and per["p2"]["f1"] == 0.0
    assert per["p3"]["recall"] is None and per["p3"]["f1"] is None
    assert m["recall"] == {"mean": 0.25, "std": pytest.approx(0.25), "n": 2}
    assert m["specificity"]["mean"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["specificity"]["std"] == pytest.approx(np.std([0.5, 1, 0.5]))
    assert m["precision"]["mean"] == pytest.approx(0.5 / 3) and m["precision"]["n"] == 3
    assert m["f1"]["mean"] == pytest.approx(0.25)
    json.dumps(m, allow_nan=False)


def test_roc_curve_by_cohort_skips_single_class():
    table = pd.DataFrame(
        {
            "cohort": ["a", "a", "a", "b", "b"],
            "y_true": [0, 1, 1, 0, 0],
            "score": [0.2, 0.8, 0.1, 0.3, 0.4],
        }
    )
    curves = roc_curve_by_cohort(table, include_all=True)
    assert set(curves) == {"a", "all"}
    fpr, tpr, auc = curves["a"]
    assert auc == pytest.approx(roc_auc_score([0, 1, 1], [0.2, 0.8, 0.1]))
    assert fpr[0] == 0 and tpr[-1] == 1


def test_evaluate_and_summarise_folds():
    patients = [("HUP", f"P{i}") for i in range(6)] + [("EIIMD", f"S{i}") for i in range(4)]
    preds = _preds(patients, seed=1)
    folds = [
        (["HUP/P0", "EIIMD/S0"], ["HUP/P1", "HUP/P2", "EIIMD/S1"]),
        (["HUP/P3", "EIIMD/S1"], ["HUP/P4", "HUP/P5", "EIIMD/S2", "EIIMD/S3"]),
    ]
    results = []
    for val_p, test_p in folds:
        val = preds[preds["patient"].isin(val_p)]
        test = preds[preds["patient"].isin(test_p)]
        r = evaluate_fold(val, test)
        # the threshold is Youden's on the validation patients, recomputed by brute force from
        # a channel table aggregated here (two-step mean: sequences, then recordings)
        table = _two_step_table(val)
        assert r["threshold"] == pytest.approx(brute_force_youden(table["y_true"], table["score"]))
        test_table = aggregate_channel_scores(test)
        assert r["test"]["roc_auc"] == pytest.approx(
            roc_auc_score(test_table["y_true"], test_table["score"])
        )
        assert r["n_test_patients"] == len(test_p)
        assert {"HUP", "EIIMD", "all"} <= set(r["roc_by_cohort"])
        # round trip through JSON, as the engine stores it
        results.append(json.loads(json.dumps(r, allow_nan=False)))
    s = summarise_folds(results)
    json.dumps(s, allow_nan=False)
    assert s["n_folds"] == 2
    aucs = [r["test"]["roc_auc"] for r in results]
    assert s["mean"]["roc_auc"] == pytest.approx(np.mean(aucs))
    assert s["std"]["roc_auc"] == pytest.approx(np.std(aucs))
    assert s["pooled"]["n_channels"] == sum(r["test"]["n_channels"] for r in results)
    assert s["pooled"]["tp"] == sum(r["test"]["tp"] for r in results)  # per-fold thresholds
    assert s["pooled_macro"]["n_patients"] == 7
    # the same patient in two test folds is refused
    with pytest.raises(ValueError, match="several folds"):
        summarise_folds([results[0], results[0]])
    with pytest.raises(ValueError, match="both the validation and the test"):
        evaluate_fold(preds, preds)


def test_evaluate_fold_accepts_aggregated_tables():
    patients = [("sim", f"P{i}") for i in range(4)]
    table = aggregate_channel_scores(_preds(patients, seed=2))
    val = table[table["patient"].isin(["sim/P0", "sim/P1"])]
    test = table[table["patient"].isin(["sim/P2", "sim/P3"])]
    r = evaluate_fold(val, test)
    assert r["test"]["n_channels"] == len(test)
    fixed = evaluate_fold(val, test, threshold=0.5)
    assert fixed["threshold"] == 0.5
    assert fixed["test"]["tp"] == int(((test["score"] >= 0.5) & (test["y_true"] == 1)).sum())
