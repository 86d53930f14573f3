"""Clip counts, block bounds and ictal labels from seizure events."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.clipping import block_bounds, count_clips, label_clips
from ingest.recording import SeizureEvent


@pytest.mark.parametrize(
    ("duration", "expected"), [(0.0, 0), (4.999, 0), (5.0, 1), (23.0, 4), (3600.0, 720)]
)
def test_count_clips_is_floor(duration, expected):
    assert count_clips(duration, 5.0) == expected


def test_block_bounds_cover_every_clip_once():
    bounds = block_bounds(7, 3)
    assert bounds == [(0, 3), (3, 6), (6, 7)]
    assert block_bounds(0, 3) == []
    with pytest.raises(ValueError, match="block_clips=0"):
        block_bounds(5, 0)


def test_ictal_labels_from_events():
    seizures = (SeizureEvent(23.0, 31.0), SeizureEvent(7.0, 10.0), SeizureEvent(50.0, None))
    lab = label_clips(12, 5.0, seizures, duration_s=60.0)
    np.testing.assert_array_equal(lab.start_s, np.arange(12) * 5.0)
    # numbered by onset: 7-10 s is seizure 0 (clip 1), 23-31 s seizure 1 (clips 4-6),
    # 50 s to the end (no offset) seizure 2 (clips 10-11)
    assert np.flatnonzero(lab.ictal).tolist() == [1, 4, 5, 6, 10, 11]
    assert lab.seizure.tolist() == [-1, 0, -1, -1, 1, 1, 1, -1, -1, -1, 2, 2]
    assert lab.seconds_from_onset[[1, 4, 6, 10]].tolist() == [-2.0, -3.0, 7.0, 0.0]
    assert np.isnan(lab.seconds_from_onset[~lab.ictal]).all()


def test_touching_edges_and_zero_length_events():
    # a seizure ending exactly at a clip start does not make that clip ictal
    lab = label_clips(3, 5.0, (SeizureEvent(5.0, 10.0),), duration_s=15.0)
    assert lab.ictal.tolist() == [False, True, False]
    lab = label_clips(3, 5.0, (SeizureEvent(12.0, 12.0),), duration_s=15.0)
    assert lab.ictal.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="ends .* before it starts"):
        label_clips(3, 5.0, (SeizureEvent(12.0, 2.0),), duration_s=15.0)
