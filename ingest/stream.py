"""One recording as a stream of blocks: the block plan and one block end to end.

Shared by the Beam pipeline (:mod:`ingest.pipeline`) and by serving, so the clips a model is
trained on and the clips it scores come out of the very same code.

Block arithmetic
----------------
The stored signal is ``y = F(x)``: ``F`` resamples the source ``x`` by ``up / down`` and applies
the combined FIR (``2 Hf + 1`` taps at the stored rate; :func:`ingest.preprocessing.design_filter`)
in one frequency-domain step (:func:`ingest.preprocessing.resample_filter`). A stored sample
depends on the source within ``M`` stored samples of it
(:func:`ingest.preprocessing.fold_half_length`: ``Hf`` plus the anti-aliasing filter's half
length plus a short taper margin; ``M = Hf`` without resampling). Beyond its ends the source is
extended by even reflection (``numpy.pad(mode="reflect")``), so the high-pass sees no step at the
start or the end.

Block ``b`` covers clips ``[clip_start, clip_stop)``, i.e. stored samples ``[n0, n1)``. It reads
the source from ``src_start = anchor * down / up`` where ``anchor`` (a stored-rate index) is the
multiple of ``up`` at or before ``n0 - M`` (a multiple of ``up`` maps to a whole source sample,
so the output grid of every block is the recording's), up to ``(n1 + M) * down / up``. Every
stored sample of the block is thus computed from the same source samples as in one-shot
processing (one block covering the recording): the two differ by float32 rounding in FFTs of
different segmentations and the taper kernel's tail beyond ``M``, measured below 2e-6 of the
signal's RMS (``tests/ingest/test_stream.py`` asserts 1e-4).

Non-integer rate ratios (999.41 Hz -> 1000 Hz) are approximated by ``up / down`` with
``down <= resample_max_denominator`` (:func:`ingest.preprocessing.rational_ratio`): 1695 / 1694,
so anchors are 1695 stored samples apart (each block computes at most that many extra samples)
and the stored time axis is off by the ratio's relative error (3e-8: 2 ms after 20 hours).
The recording's ``up`` and ``down`` are written to ``recordings.parquet``.

Memory: a block is processed in groups of :data:`CHANNEL_GROUP` channels (read, resampled and
filtered, its statistics taken, cast to the storage dtype with ``process_block(dtype=...)``), so
beside the block's output only one group's float32 arrays exist; readers that decode channel
subsets cheaply (16-bit EDF) are read group by group too. Measured on a 5-minute block of 128
contacts (``benchmarks/ingest.py``): about 260 MB above the imports, Zarr write included, with
``dtype="float16"``; about 400 MB with float32 clips cast afterwards; 140 MB with 30-clip blocks.
The same whatever the recording's duration.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ingest import preprocessing as pp
from ingest.clipping import block_bounds, count_clips, label_clips
from ingest.config import IngestConfig
from ingest.errors import RecordingError, name_list
from ingest.recording import INTRACRANIAL_TYPES, Recording, shaft_of

logger = logging.getLogger(__name__)

#: Channels processed at once inside a block: bounds the float32 work arrays (read, resampled,
#: filtered) to this many rows of the block, ~20 MB each for a 5-min block at 1 kHz.
CHANNEL_GROUP = 16
#: Longest single read from the signal file, in source samples. MNE's EDF decoding slows down
#: several-fold on very large reads (measured: one 5-min read of 128 channels at 1024 Hz took
#: 4x as long as five 1-min reads), and a short read bounds MNE's float64 copy.
READ_SAMPLES = 65536


class SignalReader(Protocol):
    """What :func:`process_block` needs of a reader (see :class:`ingest.signals.SignalReader`)."""

    def read(self, start: int, stop: int, picks: list[str] | tuple[str, ...]) -> np.ndarray: ...


@dataclass(frozen=True)
class RecordingPlan:
    """How one recording is processed, resolved from its metadata and the config.

    Attributes
    ----------
    recording_id : str
    contacts : tuple of str
        The kept channels (intracranial, not bad), in file order: the stored channel axis.
    orig_sfreq : float
        Source rate in Hz.
    n_times : int
        Source samples.
    n_clips : int
        ``floor(duration_s / clip_s)``.
    up, down : int
        Resampling factors (``up == down == 1``: no resampling).
    line_freq : float or None
        The line frequency notched (the recording's, else the config's fallback).
    h_freq : float
        The low-pass edge used.
    """

    recording_id: str
    contacts: tuple[str, ...]
    orig_sfreq: float
    n_times: int
    n_clips: int
    up: int
    down: int
    line_freq: float | None
    h_freq: float

    def filter_taps(self, cfg: IngestConfig) -> np.ndarray:
        """The combined FIR of this recording at the stored rate, shape (n_taps,)."""
        return pp.design_filter(
            cfg.sfreq,
            l_freq=cfg.l_freq,
            h_freq=self.h_freq,
            line_freq=self.line_freq if cfg.notch else None,
            notch_width=cfg.notch_width,
            trans_bandwidth=cfg.trans_bandwidth,
        )


@dataclass(frozen=True)
class Block:
    """A contiguous run of clips of one recording: one unit of work, one Zarr shard.

    Attributes
    ----------
    recording_id : str
    index : int
        Block number (= shard number along the clip axis).
    clip_start, clip_stop : int
        Clips ``[clip_start, clip_stop)``.
    src_start, src_stop : int
        Source samples read, margins included; may reach beyond ``[0, n_times)`` (the source
        is then extended by reflection).
    anchor : int
        Stored-rate sample index corresponding to ``src_start``.
    """

    recording_id: str
    index: int
    clip_start: int
    clip_stop: int
    src_start: int
    src_stop: int
    anchor: int

    @property
    def n_clips(self) -> int:
        """Clips in this block."""
        return self.clip_stop - self.clip_start


@dataclass(frozen=True)
class BlockResult:
    """What one block yields.

    Attributes
    ----------
    block : Block
    clips : ndarray, shape (n_block_clips, n_contacts, clip_samples)
        Filtered and resampled, unscaled (microvolts); float32, or the storage dtype when
        :func:`process_block` was given one.
    clip_std : ndarray, shape (n_block_clips, n_contacts)
        float32 robust standard deviations (:func:`ingest.preprocessing.robust_std`), the
        statistic the channel scale is the median of.
    n_saturated : int
        Samples saturated by the storage cast (``process_block(..., dtype=...)``), else 0.
    """

    block: Block
    clips: np.ndarray
    clip_std: np.ndarray
    n_saturated: int = 0


def recording_plan(rec: Recording, cfg: IngestConfig) -> RecordingPlan:
    """Resolve how ``rec`` is processed; raise a :class:`RecordingError` if it cannot be.

    Raises
    ------
    RecordingError
        No contact left (all bad or non-intracranial), shorter than one clip, or no line
        frequency known while notching.
    """
    return _recording_plan(rec, cfg)


@functools.lru_cache(maxsize=256)
def _recording_plan(rec: Recording, cfg: IngestConfig) -> RecordingPlan:
    contacts = rec.contacts
    if not contacts:
        n_ieeg = sum(t in INTRACRANIAL_TYPES for t in rec.ch_types)
        raise RecordingError(
            rec.path,
            f"{rec.recording_id}: no contact left to ingest: {len(rec.channels)} channels, "
            f"{n_ieeg} intracranial, {len(rec.bad)} marked bad.",
            "check channels.tsv: intracranial contacts need type SEEG or ECOG and status good.",
        )
    n_clips = count_clips(rec.duration_s, cfg.clip_s)
    if n_clips < 1:
        raise RecordingError(
            rec.path,
            f"{rec.recording_id}: {rec.duration_s:.3f} s of signal is shorter than one "
            f"{cfg.clip_s:g}-s clip.",
            "nothing to ingest; drop the file or lower clip_s.",
        )
    line_freq = rec.line_freq if rec.line_freq else cfg.line_freq
    if cfg.notch and line_freq is None:
        raise RecordingError(
            rec.path,
            f"{rec.recording_id}: the power-line frequency is unknown (no PowerLineFrequency "
            "in the sidecar) and no fallback is configured.",
            "pass --line-freq 50 (Europe) or 60 (Americas), or set PowerLineFrequency in the "
            "_ieeg.json sidecar.",
        )
    up, down = pp.rational_ratio(rec.sfreq, cfg.sfreq, max_denominator=cfg.resample_max_denominator)
    return RecordingPlan(
        recording_id=rec.recording_id,
        contacts=contacts,
        orig_sfreq=float(rec.sfreq),
        n_times=int(rec.n_times),
        n_clips=n_clips,
        up=up,
        down=down,
        line_freq=float(line_freq) if line_freq else None,
        h_freq=cfg.resolved_h_freq(rec.sfreq),
    )


def plan_blocks(rec: Recording, cfg: IngestConfig) -> list[Block]:
    """The blocks of ``rec``: clip ranges plus the source ranges (with margins) they read.

    Raises
    ------
    RecordingError
        As :func:`recording_plan`.
    """
    plan = recording_plan(rec, cfg)
    cs = cfg.clip_samples
    margin = _margin(plan, cfg)
    blocks = []
    for index, (c0, c1) in enumerate(block_bounds(plan.n_clips, cfg.block_clips)):
        lo, hi = c0 * cs - margin, c1 * cs + margin  # stored samples the outputs depend on
        if plan.up == plan.down:
            anchor, src_start, src_stop = lo, lo, hi
        else:
            anchor = math.floor(lo / plan.up) * plan.up
            src_start = anchor // plan.up * plan.down
            src_stop = -(-hi * plan.down // plan.up) + 1
        blocks.append(Block(rec.recording_id, index, c0, c1, src_start, src_stop, anchor))
    return blocks


def _margin(plan: RecordingPlan, cfg: IngestConfig) -> int:
    """Stored samples on each side of a block that its outputs depend on."""
    n_taps = plan.filter_taps(cfg).shape[0]
    if plan.up == plan.down:
        return (n_taps - 1) // 2
    return pp.fold_half_length(plan.up, plan.down, n_taps=n_taps, half_taps=cfg.resample_half_taps)


def read_extended(
    reader: SignalReader, start: int, stop: int, *, n_times: int, picks: tuple[str, ...]
) -> np.ndarray:
    """Source samples ``[start, stop)``, the signal extended by even reflection beyond its ends.

    Parameters
    ----------
    reader : SignalReader
    start, stop : int
        May lie outside ``[0, n_times)``.
    n_times : int
        The source's length.
    picks : tuple of str
        Channel names.

    Returns
    -------
    x : ndarray, shape (n_picks, stop - start)
        float32 microvolts.
    """
    pad_left, pad_right = max(0, -start), max(0, stop - n_times)
    lo, hi = max(0, start), min(n_times, stop)
    if pad_left:  # reflection about sample 0 needs samples 1..pad_left
        hi = min(n_times, max(hi, pad_left + 1))
    if pad_right:  # reflection about the last sample needs pad_right samples before it
        lo = max(0, min(lo, n_times - 1 - pad_right))
    x = np.empty((len(picks), hi - lo), dtype=np.float32)
    for a in range(lo, hi, READ_SAMPLES):
        b = min(a + READ_SAMPLES, hi)
        part = reader.read(a, b, list(picks))
        if part.shape != (len(picks), b - a):
            raise RecordingError(
                getattr(getattr(reader, "recording", None), "path", "signal file"),
                f"asked for samples [{a}, {b}) of {len(picks)} channels, got shape {part.shape}.",
                "the file is shorter than its header says; re-export or re-copy it.",
            )
        x[:, a - lo : b - lo] = part
    if pad_left or pad_right:
        x = np.pad(x, ((0, 0), (pad_left, pad_right)), mode="reflect")
    begin = lo - pad_left
    return x[:, start - begin : stop - begin]


def _check_finite(
    x: np.ndarray, rec: Recording, plan: RecordingPlan, block: Block, names: tuple[str, ...]
) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    shown = [names[i] for i in bad_rows[:8]]
    t0 = max(block.src_start, 0) / plan.orig_sfreq
    raise RecordingError(
        rec.path,
        f"{rec.recording_id}: {int((~finite).sum())} NaN/inf samples in "
        f"{len(bad_rows)} channel(s) ({', '.join(shown)}) within "
        f"{t0:.1f}-{block.src_stop / plan.orig_sfreq:.1f} s.",
        "mark those channels bad in channels.tsv, or fill the gaps in the file.",
    )


def process_block(
    reader: SignalReader,
    rec: Recording,
    block: Block,
    cfg: IngestConfig,
    *,
    dtype: str | None = None,
) -> BlockResult:
    """Read one block and turn it into unscaled clips plus their scaling statistics.

    Channels go through resampling, filtering, statistics and (with ``dtype``) the storage
    cast in groups of :data:`CHANNEL_GROUP`, so only one group's float32 work arrays exist at
    a time. Readers whose ``channel_subsets`` attribute is true (the EDF fast path of
    :class:`ingest.signals.SignalReader`) are read one group at a time too; others once, whole.

    Parameters
    ----------
    reader : SignalReader
        Open reader of ``rec`` (:func:`ingest.signals.open_signal`).
    rec : Recording
    block : Block
        One of :func:`plan_blocks` ``(rec, cfg)``.
    cfg : IngestConfig
    dtype : {"float16", "float32"} or None
        ``None``: float32 clips. A storage dtype: clips already cast by
        :func:`ingest.preprocessing.to_storage` (what the store holds), saturated samples
        counted in :attr:`BlockResult.n_saturated`; the statistics are computed before the
        cast either way.

    Returns
    -------
    BlockResult
        ``clips`` of shape (n_block_clips, n_contacts, clip_samples).

    Raises
    ------
    RecordingError
        Non-finite samples in the block, or a short read.
    """
    plan = recording_plan(rec, cfg)
    cs = cfg.clip_samples
    taps = plan.filter_taps(cfg)
    n_block = block.n_clips * cs
    start = block.clip_start * cs - block.anchor  # the block's first stored sample in x
    n_chans = len(plan.contacts)

    def read(names: tuple[str, ...]) -> np.ndarray:
        x = read_extended(
            reader, block.src_start, block.src_stop, n_times=plan.n_times, picks=names
        )
        _check_finite(x, rec, plan, block, names)
        return x

    whole = None if getattr(reader, "channel_subsets", False) else read(plan.contacts)
    clips = np.empty((block.n_clips, n_chans, cs), dtype=dtype or np.float32)  # (n_clips, C, T)
    clip_std = np.empty((block.n_clips, n_chans), dtype=np.float32)
    n_saturated = 0
    for g in range(0, n_chans, CHANNEL_GROUP):
        rows = slice(g, g + CHANNEL_GROUP)
        x = read(plan.contacts[rows]) if whole is None else whole[rows]
        if plan.up == plan.down:  # x holds exactly the FIR's margins
            z = pp.fir_filter(x, taps)
        else:
            z = pp.resample_filter(
                x,
                plan.up,
                plan.down,
                taps,
                start=start,
                n_out=n_block,
                half_taps=cfg.resample_half_taps,
            )
        del x
        as_clips = (z.shape[0], block.n_clips, cs)  # (g, n_clips, T), transposed below
        std = pp.robust_std(
            z.reshape(as_clips).transpose(1, 0, 2), max_samples=cfg.robust_max_samples
        )
        clip_std[:, rows] = std
        if dtype is not None:  # cast while contiguous (several times faster than strided)
            z, n_sat = pp.to_storage(z, dtype)
            n_saturated += n_sat
        clips[:, rows, :] = z.reshape(as_clips).transpose(1, 0, 2)
        del z
    return BlockResult(block=block, clips=clips, clip_std=clip_std, n_saturated=n_saturated)


def process_recording(reader: SignalReader, rec: Recording, cfg: IngestConfig) -> BlockResult:
    """All of ``rec`` in one block (the one-shot reference; small recordings and tests only).

    Returns
    -------
    BlockResult
        ``clips`` of shape (n_clips, n_contacts, clip_samples).
    """
    one = plan_blocks(rec, IngestConfig(**{**cfg.to_dict(), "block_clips": 10**9}))[0]
    return process_block(reader, rec, one, cfg)


def clip_labels(rec: Recording, cfg: IngestConfig) -> pd.DataFrame:
    """The rows of ``clips.parquet`` for ``rec`` (see :mod:`ingest.clipping` for the labels).

    Returns
    -------
    DataFrame
        recording_id, clip_index, start_s, ictal, seizure (Int64, null if interictal),
        seconds_from_onset (Float64, null if interictal); one row per clip.
    """
    n_clips = count_clips(rec.duration_s, cfg.clip_s)
    lab = label_clips(n_clips, cfg.clip_s, rec.seizures, duration_s=rec.duration_s)
    seizure = pd.array(lab.seizure, dtype="Int64")
    seizure[~lab.ictal] = pd.NA
    from_onset = pd.array(lab.seconds_from_onset, dtype="Float64")
    from_onset[~lab.ictal] = pd.NA
    return pd.DataFrame(
        {
            "recording_id": pd.Series([rec.recording_id] * n_clips, dtype="string"),
            "clip_index": np.arange(n_clips, dtype=np.int64),
            "start_s": lab.start_s,
            "ictal": lab.ictal,
            "seizure": seizure,
            "seconds_from_onset": from_onset,
        }
    )


def plan_warnings(rec: Recording, cfg: IngestConfig) -> tuple[str, ...]:
    """Warnings about ``rec`` that depend on the config: seizures that no clip holds.

    A seizure whose onset lies in the tail shorter than one clip (``clip_s``), which ingest
    drops, gives no ictal clip: an ictal run that trains as interictal. The readers warn about
    onsets outside the file (:func:`ingest.labels.find_seizures`); this covers the tail.

    Returns
    -------
    warnings : tuple of str
        One per such seizure, with its onset, the recording's duration and the clips' end.
    """
    end_s = count_clips(rec.duration_s, cfg.clip_s) * cfg.clip_s
    return tuple(
        f"seizure at {sz.onset_s:g} s ({sz.label!r}) starts after the last whole "
        f"{cfg.clip_s:g}-s clip ends at {end_s:g} s of the {rec.duration_s:g} s recording: no "
        "clip is labelled ictal for it. Check the onset, or lower clip_s."
        for sz in rec.seizures
        if sz.onset_s >= end_s
    )


def scale_warnings(rec: Recording, clip_std: np.ndarray) -> tuple[str, ...]:
    """A warning naming ``rec``'s flat contacts (scale below :data:`~ingest.preprocessing.SCALE_FLOOR_UV`).

    Parameters
    ----------
    rec : Recording
    clip_std : ndarray, shape (n_clips, n_contacts)
        Per-clip robust standard deviations of ``rec.contacts`` (:attr:`BlockResult.clip_std`).

    Returns
    -------
    warnings : tuple of str
        Empty, or one line naming the flat contacts (their scale is set to 1.0 by
        :func:`ingest.preprocessing.channel_scale`, so their scaled clips are ~0).
    """
    flat = pp.flat_channels(clip_std)
    names = [c for c, f in zip(rec.contacts, flat, strict=True) if f]
    if not names:
        return ()
    shown = name_list(names)
    return (
        f"{len(names)} of {len(flat)} contacts are flat (scale below "
        f"{pp.SCALE_FLOOR_UV:g} uV): {shown}; their scaled clips are ~0. Mark them bad in "
        "channels.tsv if they are disconnected.",
    )


def channel_rows(
    rec: Recording, scale: np.ndarray, *, flat: np.ndarray | None = None
) -> pd.DataFrame:
    """The rows of ``channels.parquet`` for ``rec``'s stored contacts.

    Parameters
    ----------
    rec : Recording
    scale : ndarray, shape (n_contacts,)
        Per-channel scale (:func:`ingest.preprocessing.channel_scale`).
    flat : ndarray of bool, shape (n_contacts,), or None
        Contacts with no usable signal (:func:`ingest.preprocessing.flat_channels`: stored,
        scale 1.0, scaled clips ~0); ``None``: none.

    Returns
    -------
    DataFrame
        recording_id, channel_index, name, shaft, soz, resected (nullable booleans: null where
        the recording has no labels), scale, flat.
    """
    contacts = rec.contacts
    if len(scale) != len(contacts):
        raise ValueError(f"{len(scale)=} must equal the {len(contacts)} contacts of the recording.")
    flat = np.zeros(len(contacts), bool) if flat is None else np.asarray(flat, dtype=bool)
    if flat.shape != (len(contacts),):
        raise ValueError(f"{flat.shape=} must be ({len(contacts)},), one per contact.")

    def flags(marked: frozenset[str] | None) -> pd.arrays.BooleanArray:
        values = [None if marked is None else name in marked for name in contacts]
        return pd.array(values, dtype="boolean")

    return pd.DataFrame(
        {
            "recording_id": pd.Series([rec.recording_id] * len(contacts), dtype="string"),
            "channel_index": np.arange(len(contacts), dtype=np.int64),
            "name": pd.Series(contacts, dtype="string"),
            "shaft": pd.Series([shaft_of(c) for c in contacts], dtype="string"),
            "soz": flags(rec.soz),
            "resected": flags(rec.resected),
            "scale": np.asarray(scale, dtype=np.float32),
            "flat": pd.array(flat, dtype="boolean"),
        }
    )
