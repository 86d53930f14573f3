"""Sequences of clips over the Zarr clip store: what the neural models train and are evaluated on.

One example is a *sequence*: ``S`` consecutive 5-s clips x all channels of one recording, turned
into spectral features by :func:`models.spectral.spectral_features` (the very function serving
calls), with the recording's per-channel SOZ labels:

- ``x`` : float32, shape (n_chans, seq_len, n_feats)
- ``y`` : float32, shape (n_chans,)
- the recording (its index in the table) and the first clip, for aggregation per recording.

Epoch sampling (:func:`sample_training_sequences`) draws a fixed number of sequences per recording,
so a 20-hour recording weighs as much as a 3-minute one; recordings are weighted by the inverse
size of their cohort so that every cohort contributes equally; in ictal recordings a fraction of
the sequences is drawn to contain ictal clips. Each Ray worker takes its own share of an epoch's
sequences (:func:`shard`: equal counts on every rank, as DDP requires). Evaluation covers every
recording with sequences at a fixed stride (:func:`evaluation_sequences`).

Loading cost: reading ``S`` raw clips (decompression, scaling) and their FFTs cost about as much
as SOZFormer's training step on one CPU thread, so the features of every clip are precomputed once
per store and feature configuration (:mod:`trainer.feature_cache`, Ray tasks in
:func:`trainer.run.run_training`) and the loader reads those (kilobytes per clip instead of
megabytes). On top, features are kept per clip in an LRU bounded in bytes per dataset copy, so
overlapping sequences and later epochs reuse them; :class:`Prefetcher` overlaps loading with the
training step when no DataLoader worker processes are used.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ingest.errors import SozkitError
from models.site_norm import finish_features, n_features, split_stored, stored_features
from trainer.feature_cache import FeatureCacheReader
from trainer.splits import patient_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RecordingInfo:
    """What the sampler and the loader need to know about one stored recording.

    Parameters
    ----------
    recording_id : str
        Store id of the recording.
    patient : str
        Patient id ``"<cohort>/<subject>"`` (the unit of the cross-validation splits).
    cohort : str
        Cohort name.
    n_clips : int
        Clips stored for the recording.
    channels : tuple of str
        Channel names in store order.
    labels : ndarray, shape (n_chans,)
        SOZ label of each channel (float32 0/1).
    ictal_clips : ndarray, shape (n_ictal,)
        Indices of the recording's ictal clips (empty for interictal recordings).
    """

    recording_id: str
    patient: str
    cohort: str
    n_clips: int
    channels: tuple[str, ...]
    labels: np.ndarray
    ictal_clips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channels)

    @property
    def is_ictal(self) -> bool:
        """Whether the recording has ictal clips."""
        return self.ictal_clips.size > 0


def recording_table(
    store: Any, recording_ids: Sequence[str] | None = None, *, labelled_only: bool = True
) -> list[RecordingInfo]:
    """Read the manifests of a :class:`ingest.store.ClipStore` into :class:`RecordingInfo` rows.

    Parameters
    ----------
    store : ingest.store.ClipStore
        An open store.
    recording_ids : sequence of str, optional
        Restrict to these recordings (default: every complete recording).
    labelled_only : bool
        Skip (with a log message) recordings whose channels have no SOZ labels.

    Returns
    -------
    list of RecordingInfo
        In the order of the store's recordings manifest.
    """
    recs = store.recordings()
    if recording_ids is not None:
        wanted = set(recording_ids)
        missing = wanted - set(recs["recording_id"])
        if missing:
            raise SozkitError(
                f"recordings {sorted(missing)[:5]} are not complete in the store {store.url}; "
                "re-run `soz ingest` for them or leave them out."
            )
        recs = recs[recs["recording_id"].isin(wanted)]
    ids = list(recs["recording_id"])
    if not ids:
        return []
    chans = store.channels(ids).sort_values(["recording_id", "channel_index"])
    clips = store.clips(ids)
    ictal = clips[clips["ictal"].astype(bool)]
    ictal_by_rec = {
        rid: np.sort(g["clip_index"].to_numpy(np.int64)) for rid, g in ictal.groupby("recording_id")
    }
    chans_by_rec = dict(iter(chans.groupby("recording_id", sort=False)))
    out = []
    for row in recs.itertuples(index=False):
        rid = row.recording_id
        ch = chans_by_rec.get(rid)
        if ch is None or ch.empty:
            logger.warning("%s has no channels in the manifest; skipped", rid)
            continue
        soz = ch["soz"]
        if soz.isna().any():
            if labelled_only:
                logger.info("%s has no SOZ labels; not used for training or evaluation", rid)
                continue
            labels = np.full(len(ch), np.nan, np.float32)
        else:
            labels = soz.astype(bool).to_numpy().astype(np.float32)
        out.append(
            RecordingInfo(
                recording_id=rid,
                patient=patient_id(row.cohort, row.subject),
                cohort=str(row.cohort),
                n_clips=int(row.n_clips),
                channels=tuple(ch["name"].astype(str)),
                labels=labels,
                ictal_clips=ictal_by_rec.get(rid, np.zeros(0, np.int64)),
            )
        )
    return out


def sample_training_sequences(
    recordings: Sequence[RecordingInfo],
    *,
    seq_len: int,
    seqs_per_recording: int,
    ictal_fraction: float = 0.5,
    balance_cohorts: bool = True,
    seed: int = 0,
    epoch: int = 0,
) -> np.ndarray:
    """Draw one epoch of training sequences.

    Parameters
    ----------
    recordings : sequence of RecordingInfo
        The training recordings.
    seq_len : int
        Clips per sequence.
    seqs_per_recording : int
        Sequences per recording (the mean over recordings when ``balance_cohorts``).
    ictal_fraction : float
        In ictal recordings, the fraction of sequences drawn to contain an ictal clip.
    balance_cohorts : bool
        Give every cohort the same number of sequences (recordings weighted by
        ``n_recordings / (n_cohorts * n_recordings_in_cohort)``, rounded stochastically, >= 1).
    seed, epoch : int
        The draw is a deterministic function of ``(seed, epoch)``.

    Returns
    -------
    items : ndarray of int64, shape (n_sequences, 2)
        ``(recording index, first clip)`` pairs in random order. A recording shorter than
        ``seq_len`` clips gives start 0 (the loader pads it by repeating its last clip).
    """
    if seq_len < 1 or seqs_per_recording < 1:
        raise SozkitError(f"{seq_len=} and {seqs_per_recording=} must be >= 1.")
    if not recordings:
        raise SozkitError("no training recordings: check the store and the fold's patients.")
    rng = np.random.default_rng([seed, epoch])
    cohorts = pd.Series([r.cohort for r in recordings])
    if balance_cohorts:
        sizes = cohorts.map(cohorts.value_counts()).to_numpy(float)
        weights = len(recordings) / (cohorts.nunique() * sizes)
    else:
        weights = np.ones(len(recordings))
    expected = seqs_per_recording * weights
    counts = np.floor(expected).astype(np.int64)
    counts += rng.random(len(counts)) < (expected - counts)
    counts = np.maximum(counts, 1)
    items = []
    for i, (rec, n) in enumerate(zip(recordings, counts, strict=True)):
        max_start = max(rec.n_clips - seq_len, 0)
        n_ictal = int(round(ictal_fraction * n)) if rec.is_ictal else 0
        starts = rng.integers(0, max_start + 1, size=n)
        if n_ictal:
            # A start whose window [start, start + seq_len) holds the chosen ictal clip.
            anchor = rng.choice(rec.ictal_clips, size=n_ictal)
            lo = np.clip(anchor - seq_len + 1, 0, max_start)
            hi = np.clip(anchor, 0, max_start)
            starts[:n_ictal] = lo + (rng.random(n_ictal) * (hi - lo + 1)).astype(np.int64)
        items.append(np.stack([np.full(n, i, np.int64), starts], axis=1))
    out = np.concatenate(items)
    return out[rng.permutation(len(out))]


def evaluation_sequences(
    recordings: Sequence[RecordingInfo],
    *,
    seq_len: int,
    stride: int | None = None,
    max_per_recording: int | None = None,
) -> np.ndarray:
    """Every sequence of every recording at a fixed stride, for validation and test.

    Parameters
    ----------
    recordings : sequence of RecordingInfo
        Recordings to cover.
    seq_len : int
        Clips per sequence.
    stride : int, optional
        Clips between consecutive starts (default ``seq_len``: non-overlapping). The last
        sequence always ends at the recording's last clip, so no clip is left out.
    max_per_recording : int, optional
        Keep at most this many, evenly spaced.

    Returns
    -------
    items : ndarray of int64, shape (n_sequences, 2)
        ``(recording index, first clip)`` pairs, recording by recording.
    """
    stride = seq_len if stride is None else stride
    if stride < 1:
        raise SozkitError(f"{stride=} must be >= 1.")
    items = []
    for i, rec in enumerate(recordings):
        max_start = max(rec.n_clips - seq_len, 0)
        starts = np.arange(0, max_start + 1, stride, dtype=np.int64)
        if starts[-1] != max_start:
            starts = np.append(starts, max_start)
        if max_per_recording is not None and len(starts) > max_per_recording:
            keep = np.linspace(0, len(starts) - 1, max_per_recording).round().astype(np.int64)
            starts = starts[np.unique(keep)]
        items.append(np.stack([np.full(len(starts), i, np.int64), starts], axis=1))
    if not items:
        return np.zeros((0, 2), np.int64)
    return np.concatenate(items)


def shard(items: np.ndarray, rank: int, world_size: int, *, pad: bool = True) -> np.ndarray:
    """The share of ``items`` that worker ``rank`` of ``world_size`` reads.

    Parameters
    ----------
    items : ndarray, shape (n, 2)
        Sequences, as returned by the samplers.
    rank, world_size : int
        This worker's rank and the number of workers.
    pad : bool
        Repeat items from the start so every rank gets the same count (required for training:
        every DDP rank must take the same number of steps). Without it, ranks differ by <= 1.

    Returns
    -------
    ndarray, shape (n_rank, 2)
    """
    if not 0 <= rank < world_size:
        raise SozkitError(f"{rank=} must lie in [0, {world_size=}).")
    if pad and len(items) % world_size:
        extra = world_size - len(items) % world_size
        items = np.concatenate([items, items[np.arange(extra) % max(len(items), 1)]])
    return items[rank::world_size]


class SequenceDataset(torch.utils.data.Dataset):
    """Map-style dataset of sequences read from the clip store.

    Parameters
    ----------
    store_url : str
        URL or path of the clip store; each process (DataLoader worker, Ray worker) opens it
        on first use.
    recordings : sequence of RecordingInfo
        The table the items index into.
    items : ndarray, shape (n, 2)
        ``(recording index, first clip)`` pairs.
    seq_len : int
        Clips per sequence.
    feature_config : mapping
        ``n_bands``, ``fmin``, ``fmax`` for :func:`models.spectral.spectral_features`,
        ``norm`` (:func:`models.site_norm.normalise`, applied after ``augment``) and
        ``extras`` (per-clip measures appended relative to the sequence's contacts after
        ``augment``, :func:`models.site_norm.finish_features`).
    cache_mb : float
        Bound of the per-clip feature cache of this dataset copy (0 disables it).
    store : ClipStore, optional
        An already open store to use in this process.
    feature_cache : str, optional
        URL of precomputed clip features (:mod:`trainer.feature_cache`); recordings it holds
        complete are read from it instead of being computed from their clips.
    augment : SiteAugment, optional
        Training-time site augmentation (:mod:`trainer.site_augment`) of every sequence,
        drawn from ``augment_seed`` and the item (reproducible); contacts it leaves out are
        left out of ``y`` too.
    augment_seed : int

    Notes
    -----
    ``dataset[i]`` is a dict: ``x`` Tensor (n_chans, seq_len, n_feats) float32, ``y`` Tensor
    (n_chans,) float32, ``rec`` int, ``start`` int.
    """

    def __init__(
        self,
        store_url: str,
        recordings: Sequence[RecordingInfo],
        items: np.ndarray,
        *,
        seq_len: int,
        feature_config: Mapping[str, Any],
        cache_mb: float = 256.0,
        store: Any = None,
        feature_cache: str | None = None,
        augment: Any = None,
        augment_seed: int = 0,
    ) -> None:
        items = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        if len(items) and (items[:, 0].min() < 0 or items[:, 0].max() >= len(recordings)):
            raise SozkitError(
                f"items index recordings up to {items[:, 0].max()}, but the table has "
                f"{len(recordings)}; build items from the same recordings list."
            )
        self.store_url = str(store_url)
        self.recordings = list(recordings)
        self.items = items
        self.seq_len = int(seq_len)
        self.feature_config = dict(feature_config)
        self.cache_bytes = int(cache_mb * 2**20)
        self._store = store
        self.feature_cache = feature_cache
        self.augment, self.augment_seed = augment, int(augment_seed)
        self._reader: FeatureCacheReader | None = None
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached_bytes = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_store"] = None  # re-opened in the receiving process
        state["_reader"] = None
        state["_cache"] = OrderedDict()
        state["_cached_bytes"] = 0
        return state

    def __len__(self) -> int:
        return len(self.items)

    @property
    def store(self) -> Any:
        """The open clip store (opened on first use in this process)."""
        if self._store is None:
            from ingest.store import ClipStore

            self._store = ClipStore.open(self.store_url)
        return self._store

    @property
    def n_feats(self) -> int:
        """Features per clip."""
        return n_features(self.store.clip_samples, self.store.sfreq, self.feature_config)

    def clip_features(self, rec_index: int, start: int, stop: int) -> np.ndarray:
        """Stored features of clips ``[start, stop)`` of a recording, through the cache
        (:func:`models.site_norm.stored_features`: the raw spectrum, then any extras' raw values).

        Returns
        -------
        ndarray, shape (stop - start, n_chans, n_stored), float32
        """
        keys = [(rec_index, c) for c in range(start, stop)]
        missing = [k[1] for k in keys if k not in self._cache]
        if missing:
            lo, hi = min(missing), max(missing) + 1
            feats = self._compute(self.recordings[rec_index].recording_id, lo, hi)
            fresh = {c: feats[c - lo] for c in range(lo, hi)}
            if self.cache_bytes <= 0:
                return np.stack([fresh[c] for c in range(start, stop)])
            for c, f in fresh.items():
                self._put((rec_index, c), f)
        out = []
        for k in keys:
            self._cache.move_to_end(k)
            out.append(self._cache[k])
        return np.stack(out)

    def _compute(self, rid: str, lo: int, hi: int) -> np.ndarray:
        """Features of clips ``[lo, hi)``: from the feature cache, else from the stored clips."""
        if self.feature_cache is not None:
            if self._reader is None:
                self._reader = FeatureCacheReader(self.feature_cache)
            if self._reader.has(rid):
                return self._reader.read(rid, lo, hi)
        try:
            clips = self.store.read_clips(rid, lo, hi)  # (n, C, clip_samples)
        except Exception as e:
            raise SozkitError(f"{rid}: reading clips [{lo}, {hi}) failed: {e}") from e
        return stored_features(clips, self.store.sfreq, self.feature_config)

    def _put(self, key: tuple[int, int], value: np.ndarray) -> None:
        if key in self._cache:
            return
        self._cache[key] = value
        self._cached_bytes += value.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec_index, start = (int(v) for v in self.items[i])
        rec = self.recordings[rec_index]
        stop = min(start + self.seq_len, rec.n_clips)
        feats = self.clip_features(rec_index, start, stop)  # (s, C, F)
        if len(feats) < self.seq_len:  # recording shorter than one sequence: repeat the last clip
            feats = np.concatenate([feats, np.repeat(feats[-1:], self.seq_len - len(feats), 0)])
        labels = rec.labels.copy()
        spectra, extras = split_stored(feats, self.feature_config)
        if self.augment is not None:  # on the spectra; the extras lose the same contacts
            rng = np.random.default_rng([self.augment_seed, rec_index, start, i])
            spectra, keep = self.augment(spectra, rng)
            extras, labels = extras[:, keep], labels[keep]
        feats = finish_features(spectra, extras, self.feature_config)
        x = np.ascontiguousarray(feats.transpose(1, 0, 2))  # (C, S, F)
        return {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(labels),
            "rec": rec_index,
            "start": start,
        }


def collate_sequences(batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack sequences of different channel counts, padding channels to the batch maximum.

    Returns
    -------
    dict
        ``x`` Tensor (B, C_max, S, F) float32 (zeros in padded slots), ``y`` Tensor (B, C_max)
        float32, ``mask`` BoolTensor (B, C_max) (True = real channel), ``rec`` and ``start``
        LongTensor (B,).
    """
    if not batch:
        raise SozkitError("cannot collate an empty batch.")
    n_chans = [b["x"].shape[0] for b in batch]
    c_max = max(n_chans)
    _, s, f = batch[0]["x"].shape
    x = torch.zeros(len(batch), c_max, s, f, dtype=torch.float32)
    y = torch.zeros(len(batch), c_max, dtype=torch.float32)
    mask = torch.zeros(len(batch), c_max, dtype=torch.bool)
    for i, (b, c) in enumerate(zip(batch, n_chans, strict=True)):
        x[i, :c] = b["x"]
        y[i, :c] = b["y"]
        mask[i, :c] = True
    return {
        "x": x,
        "y": y,
        "mask": mask,
        "rec": torch.as_tensor([int(b["rec"]) for b in batch], dtype=torch.long),
        "start": torch.as_tensor([int(b["start"]) for b in batch], dtype=torch.long),
    }


def make_loader(
    dataset: SequenceDataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    prefetch: int = 2,
) -> Iterable[dict[str, torch.Tensor]]:
    """A loader over ``dataset`` in item order (the samplers already shuffled the items).

    With ``num_workers > 0`` a :class:`torch.utils.data.DataLoader` with worker processes;
    with ``num_workers == 0`` the batches are built in a background thread (:class:`Prefetcher`)
    so that Zarr reads and FFTs (which release the GIL) overlap the training step.
    """
    if batch_size < 1:
        raise SozkitError(f"{batch_size=} must be >= 1.")
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_sequences,
        persistent_workers=False,
        prefetch_factor=prefetch if num_workers > 0 else None,
    )
    return loader if num_workers > 0 or prefetch <= 0 else Prefetcher(loader, depth=prefetch)


class Prefetcher:
    """Iterate an iterable in a background thread, keeping up to ``depth`` items ready."""

    _DONE = object()

    def __init__(self, iterable: Iterable[Any], *, depth: int = 2) -> None:
        self.iterable = iterable
        self.depth = max(int(depth), 1)

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def work() -> None:
            try:
                for item in self.iterable:
                    if stop.is_set():
                        return
                    q.put(item)
                q.put(self._DONE)
            except BaseException as e:  # re-raised in the consumer
                q.put(e)

        thread = threading.Thread(target=work, daemon=True, name="sozkit-prefetch")
        thread.start()
        try:
            while True:
                item = q.get()
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)
