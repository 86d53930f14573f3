"""Manifest rows of ingested recordings and their commit into a store: pure logic, no Beam.

The Beam pipeline (:mod:`ingest.pipeline`), the synthetic test/benchmark stores
(:mod:`ingest.synthetic`) and anything else that fills a store build their Parquet rows here,
so every store reads alike. A commit takes ``(kind, payload)`` items:

========== ================================================================================
kind       payload
========== ================================================================================
rows       ``{"recording": dict, "channels": DataFrame, "clips": DataFrame,
           "warnings": list of dict}`` of a fully written recording (:func:`manifest_rows`)
failure    a ``failures.parquet`` row (:func:`ingest.store.make_failure`, :func:`failure_row`)
warning    a ``warnings.parquet`` row (:func:`warning_row`)
attempted  a recording id this run tried: its older rows (of a killed run) are replaced
========== ================================================================================

Which errors are a bad recording (a failures row, the cohort goes on) and which are a bug
(the job stops, the recording and block named) is decided once, by :func:`is_recording_error`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ingest.config import IngestConfig
from ingest.errors import RecordingError
from ingest.fileio import atomic_write
from ingest.preprocessing import channel_scale, flat_channels
from ingest.recording import Recording
from ingest.store import ClipStore, failures_frame, make_failure, warnings_frame
from ingest.stream import (
    channel_rows,
    clip_labels,
    plan_warnings,
    recording_plan,
    scale_warnings,
)

ROWS = "rows"
FAILURE = "failure"
WARNING = "warning"
ATTEMPTED = "attempted"

#: Errors that mean "this recording cannot be ingested" wherever they are raised.
_BAD_INPUT = (RecordingError, OSError, EOFError, UnicodeDecodeError)
#: Errors that mean it only when raised while a signal file is decoded (see is_recording_error).
_DECODING = (ValueError, RuntimeError)
_DECODER_MODULES = (
    f"{os.sep}mne{os.sep}",
    f"{os.sep}ingest{os.sep}signals.py",
    f"{os.sep}ingest{os.sep}bids.py",
    f"{os.sep}ingest{os.sep}folder.py",
)


@dataclass(frozen=True)
class BlockSummary:
    """What a written block tells the finalisation step (small: no samples).

    Attributes
    ----------
    recording : Recording
    n_blocks : int
        Blocks of the recording.
    index : int
        This block's index.
    clip_std : ndarray, shape (n_block_clips, n_contacts)
        Robust standard deviation of each clip and contact.
    nbytes : int
        Uncompressed bytes written.
    """

    recording: Recording
    n_blocks: int
    index: int
    clip_std: np.ndarray
    nbytes: int


def is_recording_error(err: BaseException) -> bool:
    """Whether ``err`` means a bad recording (report it, go on) rather than a bug (stop).

    A bad recording is a :class:`~ingest.errors.RecordingError`, an ``OSError`` (unreadable,
    vanished, disk full), an ``EOFError`` or ``UnicodeDecodeError`` (a cut or mis-encoded
    file), or a ``ValueError`` / ``RuntimeError`` raised while a file is decoded: by MNE or by
    sozkit's own readers (``ingest/signals.py``, ``bids.py``, ``folder.py``), i.e. with a frame
    of those in its traceback. Anything else (a ``TypeError``, a ``KeyError``, a
    ``ValueError`` from the arithmetic) is a bug.
    """
    if isinstance(err, _BAD_INPUT):
        return True
    if not isinstance(err, _DECODING):
        return False
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if any(m in filename for m in _DECODER_MODULES):
            return True
        tb = tb.tb_next
    return False


def failure_row(stage: str, rec: Recording | None, err: BaseException) -> dict:
    """The failures row of a recording that ``err`` (a bad-recording error) stopped."""
    if isinstance(err, RecordingError):
        source, reason, fix = err.source, err.reason, err.fix
    else:
        source = rec.path if rec is not None else "?"
        reason = f"{type(err).__name__}: {err}"
        fix = "the file could not be decoded; check that it opens in its own software."
    return make_failure(
        recording_id=rec.recording_id if rec is not None else None,
        source=source,
        stage=stage,
        reason=reason,
        fix=fix,
    )


_KIND_PREFIX = re.compile(r"^([A-Za-z][\w-]{0,23}):\s")
_KIND_WORDS = (
    ("labels", ("label sheet", "soz", "labelled", "unlabelled")),
    ("events", ("seizure", "onset", "event")),
    ("line-freq", ("powerlinefrequency", "line_freq", "line frequency")),
    ("channels", ("channel", "contact", "flat")),
)


def warning_kind(message: str) -> str:
    """A short kind for a reader's warning text, to group warnings by.

    A message starting ``"kind: ..."`` (one word, e.g. ``"MNE: ..."``) has that kind, lower
    case; otherwise the first of ``labels``, ``events``, ``line-freq``, ``channels`` whose
    words it mentions, else ``other``.
    """
    m = _KIND_PREFIX.match(message)
    if m:
        return m.group(1).lower()
    low = message.lower()
    for kind, words in _KIND_WORDS:
        if any(w in low for w in words):
            return kind
    return "other"


def warning_row(recording_id: str | None, source: str, message: str, kind: str = "") -> dict:
    """One ``warnings.parquet`` row (see :data:`ingest.store.WARNINGS_SCHEMA`)."""
    return {
        "recording_id": recording_id,
        "source": str(source),
        "kind": kind or warning_kind(message),
        "message": message,
    }


def recording_warnings(rec: Recording) -> list[dict]:
    """The warnings rows of one recording, from ``rec.warnings``."""
    return [warning_row(rec.recording_id, rec.path, w) for w in rec.warnings]


def manifest_rows(rec: Recording, cfg: IngestConfig, clip_std: np.ndarray) -> dict:
    """The manifest rows of a recording whose clips are all written.

    Parameters
    ----------
    rec : Recording
    cfg : IngestConfig
        The store's config.
    clip_std : ndarray, shape (n_clips, n_contacts)
        Robust standard deviation of every stored clip and contact
        (:func:`ingest.preprocessing.robust_std`); their median is the channel scale.

    Returns
    -------
    dict
        ``{"recording": row dict, "channels": DataFrame, "clips": DataFrame,
        "warnings": list of dict}``, as :func:`commit_manifests` takes them.
    """
    plan = recording_plan(rec, cfg)
    scale = channel_scale(clip_std, source=rec.path)
    row = {
        "recording_id": rec.recording_id,
        "subject": rec.subject,
        "session": rec.session,
        "task": rec.task,
        "run": rec.run,
        "acquisition": rec.acquisition,
        "cohort": rec.cohort,
        "centre": rec.centre,
        "source_path": rec.path,
        "sfreq": cfg.sfreq,
        "orig_sfreq": float(rec.sfreq),
        "resample_up": plan.up,
        "resample_down": plan.down,
        "line_freq": plan.line_freq,
        "n_channels": len(plan.contacts),
        "n_clips": plan.n_clips,
        "duration_s": rec.duration_s,
        "n_seizures": len(rec.seizures),
        "complete": True,
        "ingested_at": pd.Timestamp(datetime.now(UTC)),
    }
    return {
        "recording": row,
        "channels": channel_rows(rec, scale, flat=flat_channels(clip_std)),
        "clips": clip_labels(rec, cfg),
        "warnings": recording_warnings(rec) + ingest_warnings(rec, cfg, clip_std),
    }


def ingest_warnings(rec: Recording, cfg: IngestConfig, clip_std: np.ndarray) -> list[dict]:
    """The warnings rows ingest itself finds in ``rec`` (beyond the readers' own): seizures
    that no clip holds (:func:`ingest.stream.plan_warnings`, kind ``events``) and flat contacts
    (:func:`ingest.stream.scale_warnings`, kind ``flat``)."""
    rows = [warning_row(rec.recording_id, rec.path, w, "events") for w in plan_warnings(rec, cfg)]
    rows += [
        warning_row(rec.recording_id, rec.path, w, "flat") for w in scale_warnings(rec, clip_std)
    ]
    return rows


def finalize_recording(
    recording_id: str, summaries: Iterable[BlockSummary], cfg: IngestConfig
) -> dict | None:
    """Manifest rows of a recording whose blocks were all written; ``None`` if some are missing.

    Returns
    -------
    dict or None
        As :func:`manifest_rows`.
    """
    by_index = {s.index: s for s in summaries}
    if not by_index:
        return None
    first = next(iter(by_index.values()))
    if len(by_index) != first.n_blocks:
        return None
    clip_std = np.concatenate([by_index[i].clip_std for i in range(first.n_blocks)])
    return manifest_rows(first.recording, cfg, clip_std)


def commit_manifests(store: ClipStore, items: Sequence[tuple[str, object]]) -> dict[str, int]:
    """Write manifest rows, failures and warnings into ``store`` in one atomic commit.

    Parameters
    ----------
    store : ClipStore
        Opened with ``mode="a"``.
    items : sequence of (kind, payload)
        See the module docstring: ``("rows", dict)``, ``("failure", row)``,
        ``("warning", row)``, ``("attempted", recording_id)``.

    Returns
    -------
    dict
        ``{"recordings": n, "clips": n, "failures": n}`` committed.
    """
    rows = [p for k, p in items if k == ROWS]
    failures = [p for k, p in items if k == FAILURE]
    attempted = {p for k, p in items if k == ATTEMPTED}
    # One row per (recording or file, stage): a NaN in every block of a long file is one problem.
    grouped: dict[tuple, list[dict]] = {}
    for f in failures:
        key = (f["recording_id"] or f["source"], f["stage"].split()[0])
        grouped.setdefault(key, []).append(f)
    seen = {}
    for key, group in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        first = dict(min(group, key=lambda f: f["stage"]))
        if len(group) > 1:
            first["reason"] += f" ({len(group)} blocks failed alike)"
        seen[key] = first
    failed_ids = {f["recording_id"] for f in seen.values()}
    rows = [r for r in rows if r["recording"]["recording_id"] not in failed_ids]
    rows.sort(key=lambda r: r["recording"]["recording_id"])
    warns: dict[tuple, dict] = {}
    given = [p for k, p in items if k == WARNING]
    for w in given + [w for r in rows for w in r.get("warnings", ())]:
        warns.setdefault((w["recording_id"] or "", w["source"], w["kind"], w["message"]), w)
    recordings = pd.DataFrame([r["recording"] for r in rows])
    channels = _concat([r["channels"] for r in rows])
    clips = _concat([r["clips"] for r in rows])
    store.commit(
        recordings=recordings,
        channels=channels,
        clips=clips,
        failures=failures_frame(seen.values()),
        warnings=warnings_frame(warns[k] for k in sorted(warns)),
        attempted=attempted,
    )
    return {"recordings": len(rows), "clips": len(clips), "failures": len(seen)}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------- block summaries beside the store
#: Hidden folder of the store holding each written block's clip_std until its recording commits.
SUMMARIES = ".ingest"


def _store_path(store: ClipStore, rel: str) -> str:
    return f"{store.root}/{rel}" if store.is_local else f"{store.url.rstrip('/')}/{rel}"


def save_block_summary(store: ClipStore, summary: BlockSummary) -> None:
    """Keep a written block's ``clip_std`` beside the store (atomically), for its commit."""
    rid = summary.recording.recording_id
    path = _store_path(store, f"{SUMMARIES}/{rid}/{summary.index:06d}.npy")
    clip_std = np.ascontiguousarray(summary.clip_std, dtype=np.float32)
    atomic_write(path, lambda f: np.save(f, clip_std, allow_pickle=False))


def load_block_summaries(store: ClipStore, recording_id: str, n_blocks: int) -> np.ndarray | None:
    """The ``clip_std`` of a recording, shape (n_clips, n_contacts), once every block has one.

    Returns ``None`` while some block's summary is missing.
    """
    folder = f"{store.root}/{SUMMARIES}/{recording_id}"
    names = [f"{folder}/{i:06d}.npy" for i in range(n_blocks)]
    try:
        present = {p.rstrip("/") for p in store.fs.ls(folder, detail=False)}
    except FileNotFoundError:
        return None
    if not all(n in present for n in names):
        return None
    parts = []
    for name in names:
        with store.fs.open(name, "rb") as f:
            parts.append(np.load(f, allow_pickle=False))
    return np.concatenate(parts)


def clear_block_summaries(store: ClipStore, recording_id: str) -> None:
    """Drop a recording's block summaries (committed, or its array is being rewritten)."""
    folder = f"{store.root}/{SUMMARIES}/{recording_id}"
    if store.fs.exists(folder):
        store.fs.rm(folder, recursive=True)


def drop_empty_summaries(store: ClipStore) -> None:
    """Remove the summaries folder once no recording has any (the end of a run)."""
    folder = f"{store.root}/{SUMMARIES}"
    try:
        if not store.fs.ls(folder, detail=False):
            store.fs.rmdir(folder)
    except (FileNotFoundError, OSError):
        pass  # absent, or another run's summaries in it


def committed_since(store: ClipStore, since: pd.Timestamp) -> set[str]:
    """Ids of complete recordings whose rows were committed at or after ``since``."""
    rec = store.recordings()
    return set(rec.loc[rec["ingested_at"] >= since, "recording_id"])
