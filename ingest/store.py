"""The clip store: a Zarr v3 group of clips plus Parquet manifests. The one contract between stages.

Layout of a store at ``STORE`` (a local path or any fsspec URL: ``s3://bucket/store``...)::

    STORE/
      zarr.json              root group; attributes["sozkit"] = {"format_version": 1,
                             "ingest_config": IngestConfig.to_dict()} (the exact preprocessing)
      clips/<recording_id>/  one array per recording, shape (n_clips, n_channels, clip_samples),
                             dtype float16 (or float32, see IngestConfig.dtype), unscaled microvolts
                             after resampling and filtering; sharded (block_clips, n_channels,
                             clip_samples): one shard = one block = what one Beam element writes;
                             inner chunks (1, n_channels, clip_samples) so a reader fetches a
                             sequence of clips without decoding whole shards; Blosc-zstd with
                             byte shuffle
      recordings.parquet     one row per COMPLETE recording (RECORDINGS_SCHEMA)
      channels.parquet       one row per stored channel, with SOZ / resected labels, the
                             per-channel ``scale`` and ``flat`` (no usable signal: scale set
                             to 1.0, scaled clips ~0; null in stores older than the column)
                             (CHANNELS_SCHEMA)
      clips.parquet          one row per clip: start, ictal, seizure number, time from onset
      failures.parquet       recordings that could not be ingested: file, stage, reason, fix
      warnings.parquet       what the readers warned about (WARNINGS_SCHEMA): recording_id (null
                             for a warning about a whole source), source, kind, message
      leases/<id>.json       the live run ingesting a recording (ingest.ownership); absent at rest

Scaling: ``read_clips(scaled=True)`` divides each channel by its ``scale`` (the median over the
recording's clips of the per-clip robust standard deviation) through
:func:`ingest.preprocessing.scale_clips`, the same function serving calls.

Storage error: float16 keeps 11 significant bits, so a stored sample differs from the float32
result by at most ``2**-11`` of its magnitude (0.05 %; microvolt signals are stored, so this is
~0.05 uV on a 100 uV signal, well under SEEG amplifier noise) and saturates beyond +-65504 uV
(counted in the ``saturated`` counter). float32 is exact to 2**-24.

Completion: a recording is complete only once every block of its array is written AND its
manifest rows are committed; ``recordings.parquet`` is written last and is the marker. A killed
run leaves arrays without a recordings row: they never read as complete and are rewritten on the
next run. Manifests are replaced atomically: on a local disk by writing a temporary file and
renaming it over the old one; on object stores (S3, GCS, Azure) a single object PUT is atomic, so
each file is written in one PUT. Rows are kept sorted by recording (and channel / clip), so a
store's files do not depend on the order its recordings finished in. On a local disk, commits
take the store's ``flock`` and each recording is committed as soon as its blocks are written;
leases keep two live runs off one recording (:mod:`ingest.ownership`). On object stores there is
no lock: two ingests into one store at the same time are not supported there.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zarr
import zarr.codecs
import zarr.storage

from ingest.config import IngestConfig
from ingest.errors import ConfigError, SozkitError
from ingest.fileio import write_parquet
from ingest.preprocessing import scale_clips
from ingest.store_tables import (  # noqa: F401  (re-exported: the store's public schemas)
    _NULLABLE,
    _NULLABLE_FLOAT,
    _SORT_KEYS,
    CHANNELS_SCHEMA,
    CLIPS_GROUP,
    CLIPS_SCHEMA,
    FAILURES_SCHEMA,
    FORMAT_VERSION,
    MANIFESTS,
    RECORDINGS_SCHEMA,
    WARNINGS_SCHEMA,
    _empty,
    _to_frame,
    _to_table,
)

logger = logging.getLogger(__name__)


class ClipStore:
    """A clip store opened for reading (``"r"``) or for ingest (``"a"``).

    Use :meth:`open`. Manifests are read once per instance (a snapshot); open the store again to
    see a later ingest.

    Attributes
    ----------
    url : str
        The store's URL or path.
    sfreq : float
        Stored (common) sampling rate in Hz.
    clip_samples : int
        Samples per clip at ``sfreq``.
    ingest_config : IngestConfig
        The configuration the store was built with.
    """

    def __init__(self, url: str, mode: Literal["r", "a"], config: IngestConfig) -> None:
        self.url = url
        self.mode = mode
        self.ingest_config = config
        self.sfreq = config.sfreq
        self.clip_samples = config.clip_samples
        self._fs, self._root = fsspec.core.url_to_fs(url)
        self._group = zarr.open_group(_zarr_store(url, mode), mode="r" if mode == "r" else "a")
        self._tables: dict[str, pa.Table] = {}
        self._scales: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        url: str | os.PathLike,
        mode: Literal["r", "a"] = "r",
        *,
        config: IngestConfig | None = None,
    ) -> ClipStore:
        """Open the store at ``url`` (a local path or an fsspec URL).

        Parameters
        ----------
        url : str | os.PathLike
        mode : {"r", "a"}
            ``"r"``: read an existing store. ``"a"``: open for ingest, creating the store when
            ``config`` is given and none exists yet.
        config : IngestConfig or None
            With ``mode="a"``: the config to create the store with, or to check an existing
            store against (a different config is a :class:`ConfigError`: one store holds one
            preprocessing).

        Raises
        ------
        SozkitError
            No store at ``url`` (and nothing to create it with).
        ConfigError
            ``config`` differs from the existing store's.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"{mode=} must be 'r' or 'a'.")
        url = os.fspath(url)
        fs, root = fsspec.core.url_to_fs(url)
        exists = fs.exists(f"{root}/zarr.json")
        if not exists:
            if mode == "r" or config is None:
                raise SozkitError(
                    f"no clip store at {url!r}. Fix: build one with `soz ingest SOURCE --out {url}`."
                )
            group = zarr.open_group(_zarr_store(url, "a"), mode="w-")
            group.attrs["sozkit"] = {
                "format_version": FORMAT_VERSION,
                "ingest_config": config.to_dict(),
            }
            group.require_group(CLIPS_GROUP)
            logger.info("created clip store %s", url)
            return cls(url, mode, config)
        group = zarr.open_group(_zarr_store(url, "r"), mode="r")
        meta = group.attrs.get("sozkit")
        if not isinstance(meta, dict) or "ingest_config" not in meta:
            raise SozkitError(
                f"{url!r} is a Zarr group but not a sozkit clip store (no 'sozkit' attribute). "
                "Fix: point to a store written by `soz ingest`, or pick an empty location."
            )
        if meta.get("format_version") != FORMAT_VERSION:
            raise SozkitError(
                f"{url!r} has store format {meta.get('format_version')}, this sozkit reads "
                f"{FORMAT_VERSION}. Fix: re-ingest with this version."
            )
        stored = IngestConfig.from_dict(
            meta["ingest_config"],
            **({"runner": config.runner, "num_workers": config.num_workers} if config else {}),
        )
        if config is not None and config != stored:
            diff = {
                k: (v, config.to_dict()[k])
                for k, v in stored.to_dict().items()
                if config.to_dict()[k] != v
            }
            raise ConfigError(
                f"the store {url!r} was built with a different ingest config "
                f"(key: (store, given)) {diff}. Fix: ingest with the store's config "
                "(omit those options) or into a new store."
            )
        return cls(url, mode, stored)

    def __repr__(self) -> str:
        return f"<ClipStore {self.url!r} ({self.mode}) {self.sfreq:g} Hz>"

    # ------------------------------------------------------------------ manifests
    def _table(self, name: str) -> pa.Table:
        if name not in self._tables:
            path = f"{self._root}/{name}.parquet"
            if self._fs.exists(path):
                with self._fs.open(path, "rb") as f:
                    self._tables[name] = pq.read_table(f, schema=MANIFESTS[name])
            else:
                self._tables[name] = _empty(MANIFESTS[name])
        return self._tables[name]

    def complete_ids(self) -> set[str]:
        """Ids of the complete recordings."""
        rec = self._table("recordings")
        done = rec.filter(pc.equal(rec["complete"], True))
        return set(done["recording_id"].to_pylist())

    def recordings(self) -> pd.DataFrame:
        """The complete recordings, one row each (columns of :data:`RECORDINGS_SCHEMA`)."""
        df = _to_frame(self._table("recordings"))
        return df[df["complete"]].reset_index(drop=True)

    def _rows(self, name: str, recording_ids: Sequence[str] | None) -> pd.DataFrame:
        table = self._table(name)
        ids = self.complete_ids() if recording_ids is None else set(recording_ids)
        if recording_ids is not None:
            unknown = sorted(ids - self.complete_ids())
            if unknown:
                raise KeyError(
                    f"recordings {unknown[:5]} are not complete recordings of {self.url!r}; "
                    "see ClipStore.recordings() (and failures())."
                )
        mask = pc.is_in(table["recording_id"], value_set=pa.array(sorted(ids), pa.string()))
        return _to_frame(table.filter(mask))

    def channels(self, recording_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Stored channels of complete recordings (columns of :data:`CHANNELS_SCHEMA`)."""
        return self._rows("channels", recording_ids)

    def clips(self, recording_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Clips of complete recordings (columns of :data:`CLIPS_SCHEMA`)."""
        return self._rows("clips", recording_ids)

    def failures(self) -> pd.DataFrame:
        """Recordings (or files) that could not be ingested, with stage, reason and fix."""
        return _to_frame(self._table("failures"))

    def warnings(self) -> pd.DataFrame:
        """The readers' warnings (columns of :data:`WARNINGS_SCHEMA`), of every recording
        ingested or tried and of whole sources (``recording_id`` null)."""
        return _to_frame(self._table("warnings"))

    @property
    def is_local(self) -> bool:
        """Whether the store is on a local (POSIX) file system."""
        return "file" in _protocols(self._fs)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The store's fsspec file system."""
        return self._fs

    @property
    def root(self) -> str:
        """The store's path on its file system (``fs_path`` of its URL)."""
        return self._root

    # ------------------------------------------------------------------ clips
    def scale(self, recording_id: str) -> np.ndarray:
        """Per-channel scale of a complete recording, shape (n_channels,), float32."""
        if recording_id not in self._scales:
            ch = self.channels([recording_id]).sort_values("channel_index")
            self._scales[recording_id] = ch["scale"].to_numpy(dtype=np.float32)
        return self._scales[recording_id]

    def array(self, recording_id: str) -> zarr.Array:
        """The Zarr array of a recording, shape (n_clips, n_channels, clip_samples)."""
        try:
            return self._group[f"{CLIPS_GROUP}/{recording_id}"]
        except KeyError as e:
            raise KeyError(
                f"no array for {recording_id!r} in {self.url!r}; see ClipStore.recordings()."
            ) from e

    def read_clips(
        self, recording_id: str, start: int, stop: int, *, scaled: bool = True
    ) -> np.ndarray:
        """Clips ``[start, stop)`` of a complete recording.

        Parameters
        ----------
        recording_id : str
        start, stop : int
            Clip indices, ``0 <= start <= stop <= n_clips``.
        scaled : bool
            Divide each channel by its ``scale`` (:func:`ingest.preprocessing.scale_clips`).

        Returns
        -------
        clips : ndarray, shape (stop - start, n_channels, clip_samples)
            float32.
        """
        if recording_id not in self.complete_ids():
            raise KeyError(
                f"{recording_id!r} is not a complete recording of {self.url!r} (half-written or "
                "absent); see ClipStore.recordings() and failures()."
            )
        arr = self.array(recording_id)
        n_clips = arr.shape[0]
        if not 0 <= start <= stop <= n_clips:
            raise IndexError(f"{start=}, {stop=} must satisfy 0 <= start <= stop <= {n_clips=}.")
        clips = np.asarray(arr[start:stop], dtype=np.float32)
        return scale_clips(clips, self.scale(recording_id)) if scaled else clips

    # ------------------------------------------------------------------ writing (ingest)
    def _check_writable(self) -> None:
        if self.mode != "a":
            raise SozkitError(f"{self.url!r} is open read-only; open it with mode='a' to ingest.")

    def create_array(self, recording_id: str, *, n_clips: int, n_channels: int) -> zarr.Array:
        """Write the (empty) array of a recording: the template the block writes fill.

        An existing array of the same id (a half-written recording) is replaced.
        """
        self._check_writable()
        cfg = self.ingest_config
        return zarr.create_array(
            self._group.store,
            name=f"{CLIPS_GROUP}/{recording_id}",
            shape=(n_clips, n_channels, cfg.clip_samples),
            shards=(cfg.block_clips, n_channels, cfg.clip_samples),
            chunks=(1, n_channels, cfg.clip_samples),
            dtype=cfg.dtype,
            compressors=zarr.codecs.BloscCodec(
                cname="zstd", clevel=cfg.zstd_level, shuffle="shuffle"
            ),
            fill_value=0.0,
            dimension_names=("clip", "channel", "time"),
            attributes={"recording_id": recording_id, "sfreq": cfg.sfreq, "units": "uV"},
            overwrite=True,
        )

    def write_block(self, recording_id: str, clip_start: int, clips: np.ndarray) -> int:
        """Write one block (exactly one shard) of a recording's array.

        Parameters
        ----------
        recording_id : str
        clip_start : int
            First clip; a multiple of ``block_clips``.
        clips : ndarray, shape (n_block_clips, n_channels, clip_samples)
            Already in the storage dtype.

        Returns
        -------
        nbytes : int
            Uncompressed bytes written.
        """
        self._check_writable()
        block = self.ingest_config.block_clips
        if clip_start % block:
            raise ValueError(
                f"{clip_start=} must be a multiple of {block=}: a block write must cover one "
                "whole shard (concurrent writes into one shard lose data)."
            )
        arr = self.array(recording_id)
        stop = clip_start + clips.shape[0]
        if stop != min(clip_start + block, arr.shape[0]):
            raise ValueError(
                f"{recording_id}: a block write at {clip_start=} must hold "
                f"{min(block, arr.shape[0] - clip_start)} clips, got {clips.shape[0]}."
            )
        arr[clip_start:stop] = clips
        return int(clips.nbytes)

    def written_blocks(self, recording_ids: Iterable[str]) -> int:
        """Shards present on storage for these recordings (progress display)."""
        n = 0
        for rid in recording_ids:
            path = f"{self._root}/{CLIPS_GROUP}/{rid}/c"
            if self._fs.exists(path):
                n += len(self._fs.find(path))
        return n

    def commit(
        self,
        *,
        recordings: pd.DataFrame,
        channels: pd.DataFrame,
        clips: pd.DataFrame,
        failures: pd.DataFrame,
        warnings: pd.DataFrame | None = None,
        attempted: Iterable[str] = (),
    ) -> None:
        """Merge new manifest rows into the store, each file replaced atomically.

        Rows of recordings in ``attempted`` (this run's recordings, done or failed) replace
        whatever an earlier, killed or failed, run left for them; so do failures of the same
        source file, and warnings about the same whole source. A recording committed complete
        supersedes the failures an earlier run left without an id for its files (a malformed
        sidecar of its run, its source folder): :func:`superseded_failures`.
        ``recordings.parquet`` is written last: it marks completion.
        """
        self._check_writable()
        attempted = set(attempted) | (set(recordings["recording_id"]) if len(recordings) else set())
        warnings = warnings_frame(()) if warnings is None else warnings
        new_sources = set(failures["source"]) if len(failures) else set()
        if len(warnings):
            whole = warnings[warnings["recording_id"].isna()]
            new_sources |= set(whole["source"])
        done_paths = list(recordings["source_path"]) if len(recordings) else []
        new = {
            "channels": channels,
            "clips": clips,
            "failures": failures,
            "warnings": warnings,
            "recordings": recordings,
        }
        for name, schema in MANIFESTS.items():
            old = self._table(name)
            keep = pc.invert(
                pc.is_in(old["recording_id"], value_set=pa.array(sorted(attempted), pa.string()))
            )
            keep = pc.fill_null(keep, True)
            if name in ("failures", "warnings") and new_sources:
                other = pc.invert(
                    pc.is_in(old["source"], value_set=pa.array(sorted(new_sources), pa.string()))
                )
                if name == "warnings":  # only warnings about a whole source go by source
                    other = pc.or_(other, pc.is_valid(old["recording_id"]))
                keep = pc.and_(keep, other)
            if name == "failures" and done_paths:
                stale = superseded_failures(old.to_pandas(), done_paths)
                keep = pc.and_(keep, pa.array(~stale.to_numpy(dtype=bool)))
            merged = pa.concat_tables([old.filter(keep), _to_table(new[name], schema)])
            # Sorted, so a store's files do not depend on the order its recordings finished in.
            merged = merged.sort_by([(k, "ascending") for k in _SORT_KEYS[name]])
            if merged.equals(old):
                continue  # nothing changed: leave the file alone (re-runs rewrite nothing)
            self._write_table(name, merged)
            self._tables[name] = merged
        self._scales.clear()

    def _write_table(self, name: str, table: pa.Table) -> None:
        if self.is_local:
            write_parquet(f"{self._root}/{name}.parquet", table, compression="zstd")
            return
        # Object stores: one PUT of the whole object is atomic (a rename would be copy + delete).
        with self._fs.open(f"{self._root}/{name}.parquet", "wb") as f:
            pq.write_table(table, f, compression="zstd")


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _zarr_store(url: str, mode: str) -> zarr.abc.store.Store:
    fs, root = fsspec.core.url_to_fs(url)
    read_only = mode == "r"
    if "file" in _protocols(fs):
        return zarr.storage.LocalStore(root, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(url, read_only=read_only)


def _run_stem(path: str) -> str:
    """The part of a file name that names its run: ``sub-01_task-x_run-1`` of
    ``sub-01_task-x_run-1_ieeg.json`` (BIDS: the entities before the suffix), else the name
    without its extension."""
    name = posixpath.basename(path.rstrip("/"))
    if name.startswith("sub-") and "_" in name:
        return name.rsplit("_", 1)[0]
    return name.split(".", 1)[0]


def superseded_failures(failures: pd.DataFrame, done_paths: Iterable[str]) -> pd.Series:
    """Which ``failures`` rows a complete recording of ``done_paths`` supersedes.

    A row without a recording id (a file the scan could not read) is stale once a recording
    of the same run commits: its source is the recording's signal file, a sidecar of the same
    run (same folder and run stem), or a folder holding it (a source that once failed whole).

    Returns
    -------
    Series of bool, aligned with ``failures``
    """
    done = [str(p) for p in done_paths]
    runs = {(posixpath.dirname(p), _run_stem(p)) for p in done}

    def stale(row) -> bool:
        if isinstance(row.recording_id, str):
            return False  # rows with an id are replaced by the id (``attempted``)
        src = str(row.source).rstrip("/")
        if (posixpath.dirname(src), _run_stem(src)) in runs:
            return True
        return any(p.startswith(src + "/") for p in done)

    if not len(failures):
        return pd.Series([], dtype=bool)
    return pd.Series([stale(r) for r in failures.itertuples()], index=failures.index, dtype=bool)


def make_failure(
    *, recording_id: str | None, source: str, stage: str, reason: str, fix: str = ""
) -> dict:
    """One ``failures.parquet`` row as a dict (see :data:`FAILURES_SCHEMA`)."""
    return {
        "recording_id": recording_id,
        "source": str(source),
        "stage": stage,
        "reason": reason,
        "fix": fix,
        "failed_at": pd.Timestamp(datetime.now(UTC)),
    }


def failures_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """A failures DataFrame from :func:`make_failure` rows (possibly none)."""
    rows = list(rows)
    if not rows:
        return _to_frame(_empty(FAILURES_SCHEMA))
    return pd.DataFrame(rows, columns=FAILURES_SCHEMA.names)


def warnings_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """A warnings DataFrame (columns of :data:`WARNINGS_SCHEMA`) from row dicts (possibly none)."""
    rows = list(rows)
    if not rows:
        return _to_frame(_empty(WARNINGS_SCHEMA))
    return pd.DataFrame(rows, columns=WARNINGS_SCHEMA.names)


def describe(url: str | os.PathLike) -> str:
    """A short JSON summary of a store (recordings, clips, failures), for the CLI."""
    store = ClipStore.open(url)
    rec = store.recordings()
    return json.dumps(
        {
            "store": store.url,
            "recordings": len(rec),
            "clips": int(rec["n_clips"].sum()) if len(rec) else 0,
            "failures": len(store.failures()),
            "warnings": len(store.warnings()),
        }
    )
