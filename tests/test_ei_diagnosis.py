"""benchmarks.ei_diagnosis on constructed seizures whose SOZ has a fast onset."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ei_diagnosis import family_figures
from tests.models.test_baseline import ONSET_S, SFREQ, simulate_seizure


def test_family_figures_see_a_fast_onset_where_it_is():
    soz = np.array([True, True, False, False, False])  # fast activity at 0 s and 6 s
    recs = [(simulate_seizure(seed)[0], ONSET_S, soz) for seed in (0, 1)]
    f = family_figures(iter(recs), SFREQ, grid=((0.5, 15.0), (0.1, 1.0)))
    print(f)
    assert f["recordings"] == 2 and f["contacts"] == {"soz": 4, "non_soz": 6}
    assert f["alarmed"]["soz"] == 1.0
    rise = f["ph_max_rise_quartiles"]
    assert rise["soz"][1] > 15.0 > rise["non_soz"][1]
    er = f["er_median"]
    assert er["soz"]["0-5 s"] > 2 * er["soz"]["pre"]
    assert abs(f["detection_from_onset_quartiles"]["soz"][0]) < 3.0
    assert f["roc_auc_ei"]["bias 0.5, threshold 15.0"] == pytest.approx(1.0)
    assert set(f["roc_auc_ei"]) == {"bias 0.5, threshold 15.0", "bias 0.1, threshold 1.0"}
