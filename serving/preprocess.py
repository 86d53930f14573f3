"""A recording as scaled clips, streamed through ingest's own code path, in bounded memory.

Serving must see exactly the clips a model was trained on. The store holds, per recording, the
clips of :func:`ingest.stream.process_block` rounded to the storage dtype
(:func:`ingest.preprocessing.to_storage`), and ``read_clips(scaled=True)`` divides them by the
channel scale (:func:`ingest.preprocessing.scale_clips`), which is the median over *all* the
recording's clips of their robust standard deviations (:func:`ingest.preprocessing.channel_scale`).
The scale therefore needs the whole recording before the first scaled clip exists. Strategy:

1. **Pass 1**: every block of :func:`ingest.stream.plan_blocks` is processed; only the per-clip
   statistics (``n_clips x n_contacts`` floats: 7 MB for 20 h of 128 contacts) are kept, plus
   the storage-rounded clips themselves while they fit in ``cache_bytes``.
2. **Pass 2**: blocks are scaled and yielded. When pass 1 could keep every clip (the default
   budget, 1 GiB, holds 70 min of 128 contacts at 1 kHz in the default float16) they come from
   that cache; otherwise each block is processed again (twice the filtering cost, but memory
   stays one block whatever the duration).

Peak memory is thus about ``cache_bytes + 3 blocks``: one block of 60 clips x 128 contacts at
1 kHz is 150 MB in float32. A 20-hour recording streams in the same memory as a 1-hour one.
Measured (``benchmarks/serving.py``, 2 loaded cores): a 1-hour 128-contact 1024-Hz EDF scores in
27 s in one pass (peak RSS 1.7 GB, imports included) and in 41 s in two passes (1.2 GB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ingest import preprocessing as pp
from ingest.config import IngestConfig
from ingest.errors import ConfigError, RecordingError
from ingest.recording import Recording
from ingest.signals import open_signal
from ingest.stream import plan_blocks, process_block, recording_plan

logger = logging.getLogger(__name__)

#: Default memory budget for keeping pass-1 clips (bytes).
DEFAULT_CACHE_BYTES = 1024**3


@dataclass
class StreamTimings:
    """Seconds spent reading + preprocessing, per pass."""

    pass1: float = 0.0
    pass2: float = 0.0
    cached: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"preprocess_pass1": self.pass1, "preprocess_pass2": self.pass2, **self.extra}


class RecordingStream:
    """Scaled clips of one recording, block by block, exactly as the clip store would hold them.

    Parameters
    ----------
    rec : Recording
        The recording (its signal file is opened when iterating).
    cfg : IngestConfig
        The ingest configuration of the store the model was trained on.
    cache_bytes : int
        Keep pass-1 clips in memory up to this many bytes (then pass 2 reuses them); ``0``
        always processes twice.

    Attributes
    ----------
    contacts : tuple of str
        Channels of the clips (the recording's kept contacts, file order).
    n_clips : int
        Clips in the recording.
    scale : ndarray, shape (n_contacts,) or None
        Channel scale, known after pass 1 (:meth:`compute_scale`).
    """

    def __init__(
        self, rec: Recording, cfg: IngestConfig, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        if cache_bytes < 0:
            raise ConfigError(f"{cache_bytes=} must be >= 0.")
        self.rec = rec
        self.cfg = self.ingest_config = cfg
        self.source = rec.path
        self.cache_bytes = int(cache_bytes)
        plan = recording_plan(rec, cfg)  # raises RecordingError: no contacts, < 1 clip ...
        self.contacts: tuple[str, ...] = plan.contacts
        self.n_clips: int = plan.n_clips
        self.blocks = plan_blocks(rec, cfg)
        self.scale: np.ndarray | None = None
        #: Contacts with no usable signal (set by pass 1, :func:`ingest.preprocessing.flat_channels`).
        self.flat: np.ndarray | None = None
        self.timings = StreamTimings()
        self._cache: dict[int, np.ndarray] | None = None

    @property
    def clip_bytes(self) -> int:
        """Bytes of the whole recording's clips in the storage dtype."""
        itemsize = np.dtype(self.cfg.dtype).itemsize
        return self.n_clips * len(self.contacts) * self.cfg.clip_samples * itemsize

    def compute_scale(self) -> np.ndarray:
        """Pass 1: the channel scale, shape (n_contacts,); caches clips within the budget."""
        if self.scale is not None:
            return self.scale
        t0 = time.perf_counter()
        keep = self.clip_bytes <= self.cache_bytes
        cache: dict[int, np.ndarray] = {}
        stds = np.empty((self.n_clips, len(self.contacts)), dtype=np.float32)
        with open_signal(self.rec) as reader:
            for block in self.blocks:
                res = process_block(reader, self.rec, block, self.cfg, dtype=self.cfg.dtype)
                stds[block.clip_start : block.clip_stop] = res.clip_std
                if keep:
                    cache[block.index] = res.clips
                del res
        self.scale = pp.channel_scale(stds)
        self.flat = pp.flat_channels(stds)
        self._cache = cache if keep else None
        self.timings.pass1 = time.perf_counter() - t0
        self.timings.cached = keep
        logger.debug(
            "%s: scale from %d clips in %.2fs (clips %s)",
            self.rec.recording_id,
            self.n_clips,
            self.timings.pass1,
            "cached" if keep else "recomputed in pass 2",
        )
        return self.scale

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """Pass 2: ``(clip_start, clips)`` per block, clips scaled, shape (n, n_contacts, T)."""
        scale = self.compute_scale()
        t_pass = 0.0
        if self._cache is not None:
            cache, self._cache = self._cache, None  # hand over: freed block by block
            for block in self.blocks:
                t0 = time.perf_counter()
                clips = pp.scale_clips(cache.pop(block.index), scale)
                t_pass += time.perf_counter() - t0
                yield block.clip_start, clips
        else:
            with open_signal(self.rec) as reader:
                for block in self.blocks:
                    t0 = time.perf_counter()
                    res = process_block(reader, self.rec, block, self.cfg, dtype=self.cfg.dtype)
                    clips = pp.scale_clips(res.clips, scale)
                    del res
                    t_pass += time.perf_counter() - t0
                    yield block.clip_start, clips
        self.timings.pass2 = t_pass


def check_length(rec: Recording, n_clips: int, seq_len: int, clip_s: float) -> None:
    """Raise when ``rec`` has fewer clips than one sequence of the model.

    Raises
    ------
    RecordingError
        With the recording's duration and the minimum the model needs.
    """
    if n_clips < seq_len:
        raise RecordingTooShort(
            rec.path,
            f"{rec.recording_id}: {rec.duration_s:.1f} s gives {n_clips} clips of {clip_s:g} s, "
            f"fewer than the {seq_len} clips of one model sequence "
            f"({seq_len * clip_s:g} s).",
            f"score a recording of at least {seq_len * clip_s:g} s.",
        )


class RecordingTooShort(RecordingError):
    """The recording is shorter than one model sequence."""


class StoredRecordingStream:
    """Scaled clips of a recording already in a clip store (``soz ingest`` output), by block.

    Same interface as :class:`RecordingStream` (``contacts``, ``n_clips``, ``timings``,
    ``ingest_config``, ``source``, iteration over ``(clip_start, clips)``), reading :meth:`ingest.store.ClipStore.read_clips`
    with ``scaled=True``: the exact arrays training read.

    Parameters
    ----------
    store : ingest.store.ClipStore
        The open store.
    recording_id : str
        A complete recording of the store.
    block_clips : int
        Clips read at a time.
    """

    def __init__(self, store, recording_id: str, *, block_clips: int = 60) -> None:
        if block_clips < 1:
            raise ConfigError(f"{block_clips=} must be >= 1.")
        self.store = store
        self.ingest_config = store.ingest_config
        self.source = str(store.url)
        self.recording_id = recording_id
        chans = store.channels([recording_id]).sort_values("channel_index")
        self.contacts: tuple[str, ...] = tuple(chans["name"].astype(str))
        # null in stores written before the column: no contact known flat
        self.flat = chans["flat"].fillna(False).to_numpy(dtype=bool)
        self.n_clips: int = int(store.array(recording_id).shape[0])
        self.block_clips = int(block_clips)
        self.timings = StreamTimings(cached=True)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        t_read = 0.0
        for start in range(0, self.n_clips, self.block_clips):
            t0 = time.perf_counter()
            clips = self.store.read_clips(
                self.recording_id, start, min(start + self.block_clips, self.n_clips)
            )
            t_read += time.perf_counter() - t0
            yield start, clips
        self.timings.pass2 = t_read


def stored_recording(store, recording_id: str) -> Recording:
    """A :class:`Recording` describing a stored recording (metadata for results and reports).

    Channels are the stored contacts (typed ``seeg``); ``path``, ``sfreq`` and ``n_times``
    describe the source file it was ingested from.
    """
    recs = store.recordings()
    row = recs.loc[recs["recording_id"] == recording_id]
    if row.empty:
        raise RecordingError(
            f"{store.url}::{recording_id}",
            "not a complete recording of the store.",
            "list the store's recordings (ClipStore.recordings()) or re-run soz ingest.",
        )
    r = row.iloc[0]
    chans = store.channels([recording_id]).sort_values("channel_index")
    names = tuple(chans["name"].astype(str))
    soz_col = chans["soz"]
    soz = (
        None
        if soz_col.isna().any()
        else frozenset(n for n, s in zip(names, soz_col, strict=True) if s)
    )

    def opt(col: str) -> str | None:
        v = r.get(col)
        return None if v is None or pd.isna(v) else str(v)

    orig = float(r["orig_sfreq"])
    return Recording(
        recording_id=recording_id,
        cohort=str(r["cohort"]),
        subject=str(r["subject"]),
        path=str(r["source_path"]),
        sfreq=orig,
        n_times=int(round(float(r["duration_s"]) * orig)),
        channels=names,
        ch_types=("seeg",) * len(names),
        soz=soz,
        session=opt("session"),
        task=opt("task"),
        run=opt("run"),
        acquisition=opt("acquisition"),
        centre=opt("centre"),
    )
