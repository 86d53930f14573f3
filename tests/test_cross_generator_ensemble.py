"""benchmarks.cross_generator_ensemble: the within-recording rank mean of several models."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.cross_generator_ensemble import combine, pooled_auc


def _preds(scores_by_recording: dict[str, list[float]], soz: list[bool]) -> pd.DataFrame:
    rows = [
        {"cohort": "c", "patient": "c/p1", "recording_id": rec, "channel": f"A{i + 1}",
         "y_true": int(soz[i]), "score": s, "n_sequences": 1, "flat": False}
        for rec, scores in scores_by_recording.items() for i, s in enumerate(scores)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_combination_is_the_mean_rank_within_each_recording():
    soz = [True, False, False, False]
    # each model ties the SOZ contact A1 with another contact (a with A2, b with A3), and their
    # scales differ by 1000x; the mean within-recording rank separates A1 from both
    a = _preds({"r1": [0.9, 0.8, 0.1, 0.2], "r2": [0.8, 0.9, 0.1, 0.2]}, soz)
    b = _preds({"r1": [300.0, 100.0, 400.0, 200.0], "r2": [400.0, 100.0, 300.0, 200.0]}, soz)
    both = combine({"a": a, "b": b}, ("a", "b"))
    score = both.set_index(["recording_id", "channel"])["score"]
    # ranks of 4: a r1 4, 3, 1, 2 and r2 3, 4, 1, 2; b r1 3, 1, 4, 2 and r2 4, 1, 3, 2
    assert score["r1"].tolist() == pytest.approx([7 / 8, 4 / 8, 5 / 8, 4 / 8])
    assert score["r2"].tolist() == pytest.approx([7 / 8, 5 / 8, 4 / 8, 4 / 8])
    assert pooled_auc(a) == pytest.approx(2.5 / 3)
    assert pooled_auc(b) == pytest.approx(2.5 / 3)
    assert pooled_auc(both) == pytest.approx(1.0)


def test_models_over_different_contacts_are_refused():
    a = _preds({"r1": [0.9, 0.1, 0.2, 0.3]}, [True, False, False, False])
    with pytest.raises(ValueError, match="not over"):
        combine({"a": a, "b": a.iloc[:3]}, ("a", "b"))
