"""What ``soz watch`` reads and writes besides the stages it calls.

Reading one landed file as ``soz ingest`` reads it (:func:`scan_arrival`), merging scored rows
into the results table with superseded versions marked (:func:`merge_results`), and the index
page of arrivals (:func:`index_page`), and handing the heap a batch freed back to the system
(:func:`release_memory`, :func:`use_system_heap`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ingest.errors import RecordingError
from ingest.recording import Recording
from serving.results import RESULT_COLUMNS

#: Columns the watcher adds to the results table (after :data:`RESULT_COLUMNS`).
WATCH_COLUMNS = ("landing_path", "fingerprint", "scored_at", "superseded")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def scan_arrival(
    arrival_key: str,
    landing: str,
    kind: str,
    *,
    label_sheet: str | None,
    line_freq: float | None,
) -> Recording:
    """The :class:`Recording` of one landed file, read as ``soz ingest LANDING`` reads it.

    Raises
    ------
    RecordingError
        The reader's reason (unreadable, truncated, sidecars contradicting the file ...).
    """
    from ingest.bids import read_bids
    from ingest.sources import SourceOptions, scan_source

    if kind == "bids":
        parts = Path(os.path.relpath(arrival_key, landing)).parts
        subject = next((p[4:] for p in parts if p.startswith("sub-")), None)
        options = SourceOptions(label_sheet=label_sheet, line_freq=line_freq)
        scan = read_bids(landing, options, subjects=[subject] if subject else None)
    else:
        options = SourceOptions(
            label_sheet=label_sheet, cohort=Path(landing).name, line_freq=line_freq
        )
        scan = scan_source(arrival_key, options)
    for rec in scan.recordings:
        if _same_file(rec.path, arrival_key):
            return rec
    base = Path(arrival_key).name.split("_ieeg")[0] if kind == "bids" else arrival_key
    for problem in scan.problems:
        if _same_file(problem.source, arrival_key) or base in os.path.basename(problem.source):
            raise problem
    raise RecordingError(
        arrival_key,
        "the reader found no recording in this file.",
        "check that it is a signal file sozkit reads (EDF, BDF, BrainVision, FIF) with SEEG "
        "contacts; BIDS runs need their _ieeg.json and _channels.tsv.",
    )


def index_page(journal) -> str:
    """HTML of the index page: every arrival of ``journal`` (newest first), its status and
    its patient's report page."""
    rows = []
    for v in sorted(journal, key=lambda v: v.first_at, reverse=True):
        rep = v.last("reported")
        fail = v.last("failed")
        status = v.state
        if fail is not None:
            status = f"failed [{fail.get('stage')}]: {fail.get('reason')}"
        link = f"<a href='{html.escape(rep['page'])}'>{html.escape(rep['page'])}</a>" if rep else ""
        rows.append(
            f"<tr><td>{html.escape(v.first_at[:19].replace('T', ' '))}</td>"
            f"<td>{html.escape(os.path.relpath(v.key, v.events[0].get('landing', '/')))}"
            f"</td><td>{v.version}</td><td>{html.escape(v.recording_id or '')}</td>"
            f"<td>{html.escape(status)}</td><td>{link}</td></tr>"
        )
    body = (
        "<h1>SOZ reports: arrivals</h1><table><tr><th>arrived (UTC)</th><th>file</th>"
        "<th>version</th><th>recording</th><th>status</th><th>patient page</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>SOZ arrivals</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
        "text-align:left}</style></head><body>" + body + "</body></html>"
    )
    return page


def page_name(patient: str | None) -> str:
    """The report page of a patient, as :func:`serving.report.write_report` names it."""
    from serving.report import _safe_name

    return f"{_safe_name(patient or 'unit')}.html"


def merge_results(existing: pd.DataFrame, new: pd.DataFrame | None) -> pd.DataFrame:
    """``existing`` with the rows of ``new`` replacing theirs by (recording_id, model).

    Rows of the same landing file under another recording version are marked ``superseded``
    (kept, not removed). Columns: :data:`RESULT_COLUMNS` then :data:`WATCH_COLUMNS`.
    """
    cols = [*RESULT_COLUMNS, *WATCH_COLUMNS]
    existing = existing.reindex(columns=cols)
    if new is None or new.empty:
        return existing.reset_index(drop=True)
    new = new.reindex(columns=cols)
    keys = pd.MultiIndex.from_frame(new[["recording_id", "model"]].astype(str))
    old_keys = pd.MultiIndex.from_frame(existing[["recording_id", "model"]].astype(str))
    keep = existing[~old_keys.isin(keys)] if len(existing) else existing
    merged = pd.concat([f for f in (keep, new) if len(f)], ignore_index=True)
    newest = new.groupby("landing_path")["recording_id"].first()
    land = merged["landing_path"].astype(str)
    current = land.map(newest)
    stale = current.notna() & (merged["recording_id"].astype(str) != current)
    merged["superseded"] = merged["superseded"].fillna(False).astype(bool) | stale
    merged["fold"] = merged["fold"].astype("Int64")
    merged["soz_label"] = merged["soz_label"].astype("boolean")
    return merged


def patient_of(rows: pd.DataFrame) -> str | None:
    if rows.empty:
        return None
    r = rows.iloc[0]
    cohort = "" if pd.isna(r["cohort"]) else str(r["cohort"])
    return f"{cohort}/{r['subject']}" if cohort else str(r["subject"])


def top_line(rows: pd.DataFrame, models: Sequence[str], top_n: int) -> str:
    for model in models:
        m = rows[rows["model"] == model]
        if len(m):
            top = m.sort_values("probability", ascending=False, kind="stable").head(top_n)
            contacts = ", ".join(
                f"{c} {p:.2f}" for c, p in zip(top["channel"], top["probability"], strict=True)
            )
            return f"{model}: {contacts}"
    return "-"


def use_system_heap() -> None:
    """Make pyarrow allocate from the C heap (``malloc``) instead of its own mimalloc pool.

    A watcher runs for months and every batch reads and writes Parquet (the store's manifests,
    the results). pyarrow's default mimalloc pool keeps the pages it frees (measured: +4.5 MB
    of RSS per arrival, 674 -> 720 MB over 12 arrivals of 5 min x 128 contacts), while with the
    system pool :func:`release_memory`'s ``malloc_trim`` hands them back (670 -> 675 MB).
    The same as ``ARROW_DEFAULT_MEMORY_POOL=system``, for the whole process.
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def release_memory() -> None:
    """Collect reference cycles, then give the C heap's free pages back to the system.

    A watcher runs for months: each batch's Beam pipeline and report pages allocate from
    many threads' malloc arenas, and glibc keeps what they free (the process's Python objects
    stay flat across arrivals while its RSS grows). ``malloc_trim`` returns it; a no-op where
    the C library is not glibc. pyarrow's pool is the C heap once :func:`use_system_heap` ran.

    The first call in a process also freezes what survives its collection (``gc.freeze``: the
    modules, models, Beam's and Ray's state after the first batch), so that later collections
    walk only what came since: a full collection of the watcher's heap was 0.19 of the 0.96
    CPU-s of a one-recording batch, frozen 0.68 CPU-s in all (cProfile, in-process probe).
    What the first batch left that becomes cyclic garbage later is never collected: a fixed
    cost, once.
    """
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    if not gc.get_freeze_count():
        gc.freeze()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
