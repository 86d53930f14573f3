"""Pure index arithmetic of clips: how many, where they start, how they group into blocks, and
their ictal / interictal labels from a recording's seizure events.

A recording of ``duration_s`` seconds gives ``floor(duration_s / clip_s)`` clips; clip ``k`` covers
``[k * clip_s, (k + 1) * clip_s)`` seconds (the incomplete tail is dropped). A clip is **ictal**
when that interval overlaps a seizure ``[onset_s, offset_s)`` by more than zero seconds (a seizure
with no offset lasts to the end of the recording); it then carries the 0-based number of the first
seizure it overlaps and ``seconds_from_onset = start_s - onset_s`` (negative for the clip in which
the seizure starts). Interictal clips have no seizure number and no ``seconds_from_onset``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.recording import SeizureEvent


def count_clips(duration_s: float, clip_s: float) -> int:
    """Whole clips of ``clip_s`` seconds in ``duration_s`` seconds (``floor``, fuzz 1e-9 s)."""
    if duration_s < 0 or clip_s <= 0:
        raise ValueError(f"{duration_s=} must be >= 0 and {clip_s=} > 0.")
    return int(math.floor(duration_s / clip_s + 1e-9))


def block_bounds(n_clips: int, block_clips: int) -> list[tuple[int, int]]:
    """``[(clip_start, clip_stop), ...]`` covering ``range(n_clips)`` in blocks of ``block_clips``.

    Every block but the last has exactly ``block_clips`` clips, so block ``i`` is Zarr shard ``i``.
    """
    if block_clips < 1:
        raise ValueError(f"{block_clips=} must be >= 1.")
    return [(s, min(s + block_clips, n_clips)) for s in range(0, n_clips, block_clips)]


@dataclass(frozen=True)
class ClipLabels:
    """Labels of a recording's clips (arrays of length ``n_clips``).

    Attributes
    ----------
    start_s : ndarray of float64
        Clip start in seconds from the recording start.
    ictal : ndarray of bool
    seizure : ndarray of int64
        0-based seizure number, -1 for interictal clips.
    seconds_from_onset : ndarray of float64
        ``start_s - onset_s`` of that seizure, NaN for interictal clips.
    """

    start_s: np.ndarray
    ictal: np.ndarray
    seizure: np.ndarray
    seconds_from_onset: np.ndarray


def label_clips(
    n_clips: int, clip_s: float, seizures: Sequence[SeizureEvent], *, duration_s: float
) -> ClipLabels:
    """Ictal labels, seizure numbers and times from onset of ``n_clips`` consecutive clips.

    Parameters
    ----------
    n_clips : int
        Number of clips (see :func:`count_clips`).
    clip_s : float
        Clip length in seconds.
    seizures : sequence of SeizureEvent
        The recording's seizures; numbered in order of onset.
    duration_s : float
        Recording duration: the offset of a seizure with none.

    Returns
    -------
    ClipLabels
    """
    start = np.arange(n_clips, dtype=np.float64) * clip_s
    stop = start + clip_s
    ictal = np.zeros(n_clips, dtype=bool)
    seizure = np.full(n_clips, -1, dtype=np.int64)
    from_onset = np.full(n_clips, np.nan, dtype=np.float64)
    for number, ev in enumerate(sorted(seizures, key=lambda e: e.onset_s)):
        offset = duration_s if ev.offset_s is None else ev.offset_s
        if offset < ev.onset_s:
            raise ValueError(
                f"seizure {number} ends ({offset} s) before it starts ({ev.onset_s} s); "
                "fix the events sidecar."
            )
        # A zero-length event (onset == offset) marks its clip ictal too.
        hit = (start < max(offset, ev.onset_s + 1e-9)) & (stop > ev.onset_s) & (seizure < 0)
        ictal |= hit
        seizure[hit] = number
        from_onset[hit] = start[hit] - ev.onset_s
    return ClipLabels(start_s=start, ictal=ictal, seizure=seizure, seconds_from_onset=from_onset)
