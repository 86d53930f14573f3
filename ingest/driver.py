"""Running an ingest from a driver process: scan, leases, the Beam pipeline, the report.

:func:`run_ingest` is what ``soz ingest`` calls: it scans the sources
(:func:`ingest.sources.scan_sources`; one unreadable source is that source's failure, the rest
is ingested), takes the lease of each recording (:mod:`ingest.ownership`), runs
:func:`ingest.pipeline.build_pipeline` and reads back what this run did.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from apache_beam.metrics.metric import MetricsFilter

from ingest.config import IngestConfig
from ingest.errors import RecordingError, SozkitError
from ingest.manifests import recording_warnings, warning_row
from ingest.ownership import Owner, RunContext, acquire_leases, release_leases
from ingest.pipeline import build_pipeline, check_worker_paths, pipeline_options
from ingest.recording import Recording
from ingest.sources import SourceOptions, scan_sources
from ingest.store import ClipStore, make_failure, warnings_frame
from ingest.stream import plan_blocks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """Outcome of :func:`run_ingest`.

    Attributes
    ----------
    store_url : str
    n_recordings : int
        Recordings found in the sources.
    n_skipped : int
        Already complete in the store (not touched).
    n_ingested : int
        Completed by this run.
    n_failed : int
        Recordings, files or sources that failed in this run; see ``failures``.
    n_clips : int
        Clips written by this run.
    elapsed_s : float
    failures : DataFrame
        This run's failures (columns of :data:`ingest.store.FAILURES_SCHEMA`); a whole source
        that could not be read has no ``recording_id``.
    counters : dict of str to int
        Beam counters, ``"Transform/name"`` -> value (empty where the runner reports none).
    warnings : DataFrame
        The warnings of this run's recordings and sources
        (columns of :data:`ingest.store.WARNINGS_SCHEMA`).
    busy : dict of str to str
        Recordings left alone because another live run holds their lease -> that run.
    """

    store_url: str
    n_recordings: int
    n_skipped: int
    n_ingested: int
    n_failed: int
    n_clips: int
    elapsed_s: float
    failures: pd.DataFrame = field(repr=False)
    counters: dict[str, int] = field(default_factory=dict)
    warnings: pd.DataFrame = field(default_factory=lambda: warnings_frame(()), repr=False)
    busy: dict[str, str] = field(default_factory=dict)


def run_ingest(
    sources: Sequence[str | os.PathLike],
    store_url: str | os.PathLike,
    cfg: IngestConfig,
    *,
    label_sheet: str | os.PathLike | None = None,
    allow_empty_soz: bool = False,
    pipeline_args: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Scan ``sources`` (BIDS roots, folders or files) and ingest them into the store.

    A source that cannot be read (absent, empty) is a failure of that source (stage
    ``"source"``); the others are ingested (:func:`ingest.sources.scan_sources`). When no
    source can be read at all, a :class:`~ingest.errors.SozkitError` says why.

    Parameters
    ----------
    sources : sequence of path
    store_url : str | os.PathLike
        Local path or fsspec URL; created when absent, appended to otherwise (with the same
        config; a different one is a :class:`~ingest.errors.ConfigError`).
    cfg : IngestConfig
    label_sheet : path or None
        SOZ label sheet for non-BIDS sources.
    allow_empty_soz : bool
        Accept label-sheet entries that leave a recording no SOZ contact
        (:func:`ingest.sources.scan_source`).
    pipeline_args : sequence of str
        Beam pipeline options (``--runner=...``); see :func:`ingest.pipeline.pipeline_options`.
    progress : callable (done_blocks, total_blocks) or None
        Called about once a second while the pipeline runs (the CLI draws a bar with it).

    Returns
    -------
    IngestReport
    """
    options = SourceOptions(
        label_sheet=label_sheet, line_freq=cfg.line_freq, allow_empty_soz=allow_empty_soz
    )
    scan = scan_sources(sources, options)
    if not scan.recordings and len(scan.empty_sources) == len(scan.problems):
        raise SozkitError(  # nothing at all to ingest: say why, start no pipeline
            "\n".join(f"{p.reason} Fix: {p.fix}" for p in scan.problems) or "no source given."
        )
    failures = [
        make_failure(
            recording_id=p.recording_id,
            source=p.source,
            stage="source" if p.whole_source else "scan",
            reason=p.reason,
            fix=p.fix,
        )
        for p in scan.problems
    ]
    warnings = [warning_row(None, source, message) for source, message in scan.warnings]
    return ingest_recordings(
        scan.recordings,
        store_url,
        cfg,
        extra_failures=failures,
        extra_warnings=warnings,
        pipeline_args=pipeline_args,
        progress=progress,
    )


def ingest_recordings(
    recordings: Sequence[Recording],
    store_url: str | os.PathLike,
    cfg: IngestConfig,
    *,
    extra_failures: Sequence[dict] = (),
    extra_warnings: Sequence[dict] = (),
    pipeline_args: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest already-scanned ``recordings`` (see :func:`run_ingest`).

    The run takes the lease of every recording it ingests (:mod:`ingest.ownership`);
    recordings another live run holds are left alone and listed in ``IngestReport.busy``.
    """
    t0 = time.perf_counter()
    store_url = os.fspath(store_url)
    check_worker_paths(pipeline_options(cfg, pipeline_args), store_url, recordings)  # no lease yet
    store = ClipStore.open(store_url, "a", config=cfg)
    complete = store.complete_ids()
    owner = Owner.this_process()
    run = RunContext.of(owner)
    wanted = [r for r in recordings if r.recording_id not in complete]
    busy = acquire_leases(store, [r.recording_id for r in wanted], owner)
    todo = [r for r in wanted if r.recording_id not in busy]
    recordings = [r for r in recordings if r.recording_id not in busy]
    warnings = [w for r in todo for w in recording_warnings(r)] + list(extra_warnings)
    total = 0
    for rec in todo:
        try:
            total += len(plan_blocks(rec, cfg))
        except RecordingError:
            pass  # reported by the pipeline
    p = build_pipeline(
        recordings,
        store_url,
        cfg,
        extra_failures=extra_failures,
        extra_warnings=warnings,
        pipeline_args=pipeline_args,
        run=run,
    )
    stop = threading.Event()
    watcher = None
    if progress is not None:
        ids = [r.recording_id for r in todo]

        def watch() -> None:
            while not stop.wait(1.0):
                progress(min(store.written_blocks(ids), total), total)

        watcher = threading.Thread(target=watch, name="ingest-progress", daemon=True)
        watcher.start()
    try:
        result = p.run()
        result.wait_until_finish()
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        release_leases(store, [r.recording_id for r in todo], owner)
    if progress is not None:
        progress(total, total)
    counters = _counters(result)
    after = ClipStore.open(store_url)
    new_ids = after.complete_ids() - complete
    attempted = {r.recording_id for r in todo}
    failures = after.failures()
    failures = failures[
        failures["recording_id"].isin(attempted)
        | failures["source"].isin([f["source"] for f in extra_failures])
    ].reset_index(drop=True)
    found = after.warnings()
    found = found[
        found["recording_id"].isin(attempted)
        | (found["recording_id"].isna() & found["source"].isin([w["source"] for w in warnings]))
    ].reset_index(drop=True)
    rec_df = after.recordings()
    return IngestReport(
        store_url=store_url,
        n_recordings=len(recordings) + len(busy),
        n_skipped=len(recordings) - len(todo),
        n_ingested=len(new_ids),
        n_failed=len(failures),
        n_clips=int(rec_df[rec_df["recording_id"].isin(new_ids)]["n_clips"].sum()),
        elapsed_s=time.perf_counter() - t0,
        failures=failures,
        counters=counters,
        warnings=found,
        busy={rid: o.describe() for rid, o in busy.items()},
    )


def _counters(result) -> dict[str, int]:
    try:
        found = result.metrics().query(MetricsFilter())["counters"]
    except Exception:  # some runners report no metrics
        return {}
    out: dict[str, int] = {}
    for c in found:
        key = f"{c.key.metric.namespace}/{c.key.metric.name}"
        out[key] = out.get(key, 0) + int(c.committed or c.attempted or 0)
    return out
