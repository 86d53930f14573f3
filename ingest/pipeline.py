"""The ingest pipeline: Apache Beam PTransforms from ``Recording`` records to a clip store.

Steps (each a labelled PTransform over the pure functions of :mod:`ingest.stream`)::

    Recording --PlanBlocks--> (recording, block) --Reshuffle--> ProcessBlocks --> block summaries
        PlanBlocks: skip complete recordings, check the file against its metadata, write the
                    array template (metadata only) BEFORE any block of it is emitted
        ProcessBlocks: read -> resample -> filter -> clips -> one whole shard written
    block summaries --FinalizeRecordings (group by recording)--> manifest rows of complete recordings
    rows + failures --CommitManifests (one element)--> Parquet manifests, replaced atomically

Elements are ``(recording, block)`` pairs reshuffled across workers, so one 20-hour recording keeps
every worker busy. A failing recording (unreadable, truncated, NaNs, no contacts, shorter than a
clip...) becomes a failures row (file, stage, reason, fix) and the rest of the cohort completes.
Counters, named after the transform that counts them: ``PlanBlocks/recordings``, ``skipped``,
``blocks``; ``ProcessBlocks/blocks``, ``clips``, ``bytes``, ``saturated``; ``failures`` in each.

Runner: by default Beam's ``FnApiRunner`` (multi-process, one worker per core), never the plain
``DirectRunner`` (it tries PrismRunner, which downloads a binary). Any Beam pipeline options
(``--runner=DataflowRunner --project ...``, ``--runner=FlinkRunner``...) override it and the same
transforms run unchanged; the store must then be a URL every worker can reach.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
from google.protobuf import struct_pb2

from ingest.config import IngestConfig
from ingest.errors import RecordingError
from ingest.preprocessing import channel_scale
from ingest.recording import Recording
from ingest.store import ClipStore, failures_frame, make_failure
from ingest.stream import (
    Block,
    channel_rows,
    clip_labels,
    plan_blocks,
    process_block,
    recording_plan,
)

logger = logging.getLogger(__name__)

_FAILURE = "failure"
_ATTEMPTED = "attempted"

#: Runners that take the local ``direct_num_workers`` / ``direct_running_mode`` options.
_LOCAL_RUNNERS = {"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


@dataclass(frozen=True)
class BlockSummary:
    """What a written block tells the finalisation step (small: no samples)."""

    recording: Recording
    n_blocks: int
    index: int
    clip_std: np.ndarray  # (n_block_clips, n_contacts)
    nbytes: int


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
        Recordings (or files) that failed in this run; see ``failures``.
    n_clips : int
        Clips written by this run.
    elapsed_s : float
    failures : DataFrame
        This run's failures (columns of :data:`ingest.store.FAILURES_SCHEMA`).
    counters : dict of str to int
        Beam counters, ``"Transform/name"`` -> value (empty where the runner reports none).
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


def _failure_output(stage: str, rec: Recording | None, err: Exception) -> beam.pvalue.TaggedOutput:
    if isinstance(err, RecordingError):
        source, reason, fix = err.source, err.reason, err.fix
    else:
        source = rec.path if rec is not None else "?"
        reason = f"{type(err).__name__}: {err}"
        fix = "unexpected error; run with -vv and report it with this message."
    row = make_failure(
        recording_id=rec.recording_id if rec is not None else None,
        source=source,
        stage=stage,
        reason=reason,
        fix=fix,
    )
    return beam.pvalue.TaggedOutput(_FAILURE, row)


# ---------------------------------------------------------------------------------- PlanBlocks
class _PlanBlocksFn(beam.DoFn):
    def __init__(self, store_url: str, cfg: IngestConfig, skip_complete: bool) -> None:
        self.store_url, self.cfg, self.skip_complete = store_url, cfg, skip_complete
        self.recordings = Metrics.counter("PlanBlocks", "recordings")
        self.skipped = Metrics.counter("PlanBlocks", "skipped")
        self.blocks = Metrics.counter("PlanBlocks", "blocks")
        self.failures = Metrics.counter("PlanBlocks", "failures")

    def setup(self) -> None:
        self.store = ClipStore.open(self.store_url, "a")
        self.complete = self.store.complete_ids() if self.skip_complete else set()

    def process(self, rec: Recording):
        from ingest.signals import open_signal

        self.recordings.inc()
        if rec.recording_id in self.complete:
            self.skipped.inc()
            return
        yield beam.pvalue.TaggedOutput(_ATTEMPTED, rec.recording_id)
        try:
            plan = recording_plan(rec, self.cfg)
            blocks = plan_blocks(rec, self.cfg)
            with open_signal(rec):  # checks the file against the metadata (truncation, channels)
                pass
            self.store.create_array(
                rec.recording_id, n_clips=plan.n_clips, n_channels=len(plan.contacts)
            )
        except Exception as e:  # one bad recording must not stop the cohort
            self.failures.inc()
            yield _failure_output("plan", rec, e)
            return
        self.blocks.inc(len(blocks))
        for block in blocks:
            yield rec, block, len(blocks)


@dataclass
class PlanBlocks(beam.PTransform):
    """``Recording`` -> ``(recording, block, n_blocks)``, after writing each array's template.

    Complete recordings are skipped; recordings that cannot be processed go to the
    ``"failure"`` output. Outputs: main, ``"failure"`` (rows), ``"attempted"`` (ids).
    """

    store_url: str
    cfg: IngestConfig
    skip_complete: bool = True

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, recordings):
        return recordings | "Plan" >> beam.ParDo(
            _PlanBlocksFn(self.store_url, self.cfg, self.skip_complete)
        ).with_outputs(_FAILURE, _ATTEMPTED, main="blocks")


# ------------------------------------------------------------------------------- ProcessBlocks
class _ProcessBlocksFn(beam.DoFn):
    def __init__(self, store_url: str, cfg: IngestConfig) -> None:
        self.store_url, self.cfg = store_url, cfg
        self.blocks = Metrics.counter("ProcessBlocks", "blocks")
        self.clips = Metrics.counter("ProcessBlocks", "clips")
        self.bytes = Metrics.counter("ProcessBlocks", "bytes")
        self.saturated = Metrics.counter("ProcessBlocks", "saturated")
        self.failures = Metrics.counter("ProcessBlocks", "failures")
        self._reader = None

    def setup(self) -> None:
        self.store = ClipStore.open(self.store_url, "a")

    def _open(self, rec: Recording):
        from ingest.signals import open_signal

        if self._reader is None or self._reader.recording != rec:
            self.teardown()
            self._reader = open_signal(rec)
        return self._reader

    def process(self, element: tuple[Recording, Block, int]):
        rec, block, n_blocks = element
        try:
            # Cast to the storage dtype channel group by channel group inside process_block:
            # the float32 block never exists whole (a third less memory per worker).
            result = process_block(self._open(rec), rec, block, self.cfg, dtype=self.cfg.dtype)
            n_sat = result.n_saturated
            nbytes = self.store.write_block(rec.recording_id, block.clip_start, result.clips)
        except Exception as e:
            self.failures.inc()
            self.teardown()
            yield _failure_output(f"block {block.index}", rec, e)
            return
        self.blocks.inc()
        self.clips.inc(block.n_clips)
        self.bytes.inc(nbytes)
        self.saturated.inc(n_sat)
        yield rec.recording_id, BlockSummary(rec, n_blocks, block.index, result.clip_std, nbytes)

    def teardown(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


@dataclass
class ProcessBlocks(beam.PTransform):
    """``(recording, block, n_blocks)`` -> ``(recording_id, BlockSummary)``; each block's clips
    are computed and written as one whole shard. Reshuffled first so that the blocks of one
    long recording spread over every worker."""

    store_url: str
    cfg: IngestConfig

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, blocks):
        return (
            blocks
            | "Spread" >> beam.Reshuffle()
            | "Process"
            >> beam.ParDo(_ProcessBlocksFn(self.store_url, self.cfg)).with_outputs(
                _FAILURE, main="summaries"
            )
        )


# -------------------------------------------------------------------------- FinalizeRecordings
def finalize_recording(
    recording_id: str, summaries: Iterable[BlockSummary], cfg: IngestConfig
) -> dict | None:
    """Manifest rows of a recording whose blocks were all written; ``None`` if some are missing.

    Returns
    -------
    dict or None
        ``{"recording": row dict, "channels": DataFrame, "clips": DataFrame}``.
    """
    by_index = {s.index: s for s in summaries}
    if not by_index:
        return None
    first = next(iter(by_index.values()))
    if len(by_index) != first.n_blocks:
        return None
    clip_std = np.concatenate([by_index[i].clip_std for i in range(first.n_blocks)])
    return manifest_rows(first.recording, cfg, clip_std)


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
        ``{"recording": row dict, "channels": DataFrame, "clips": DataFrame}``, as
        :func:`commit_manifests` takes them.
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
    return {"recording": row, "channels": channel_rows(rec, scale), "clips": clip_labels(rec, cfg)}


class _FinalizeFn(beam.DoFn):
    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.recordings = Metrics.counter("FinalizeRecordings", "recordings")
        self.failures = Metrics.counter("FinalizeRecordings", "failures")

    def process(self, element):
        recording_id, summaries = element
        summaries = list(summaries)
        try:
            done = finalize_recording(recording_id, summaries, self.cfg)
        except Exception as e:
            self.failures.inc()
            yield _failure_output("finalize", summaries[0].recording, e)
            return
        if done is not None:  # missing blocks already produced their failure rows
            self.recordings.inc()
            yield done


@dataclass
class FinalizeRecordings(beam.PTransform):
    """``(recording_id, BlockSummary)`` -> manifest rows of each fully written recording."""

    cfg: IngestConfig

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, summaries):
        return (
            summaries
            | "ByRecording" >> beam.GroupByKey()
            | "Rows" >> beam.ParDo(_FinalizeFn(self.cfg)).with_outputs(_FAILURE, main="rows")
        )


# ----------------------------------------------------------------------------- CommitManifests
def commit_manifests(store: ClipStore, items: Sequence[tuple[str, object]]) -> dict[str, int]:
    """Write this run's manifest rows and failures into ``store`` in one atomic commit.

    Parameters
    ----------
    store : ClipStore
        Opened with ``mode="a"``.
    items : sequence of (kind, payload)
        ``("rows", dict)`` from :func:`finalize_recording` or :func:`manifest_rows`,
        ``("failure", row dict)`` and ``("attempted", recording_id)``.

    Returns
    -------
    dict
        ``{"recordings": n, "clips": n, "failures": n}`` committed by this run.
    """
    rows = [p for k, p in items if k == "rows"]
    failures = [p for k, p in items if k == _FAILURE]
    attempted = {p for k, p in items if k == _ATTEMPTED}
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
    recordings = pd.DataFrame([r["recording"] for r in rows])
    channels = _concat([r["channels"] for r in rows])
    clips = _concat([r["clips"] for r in rows])
    store.commit(
        recordings=recordings,
        channels=channels,
        clips=clips,
        failures=failures_frame(seen.values()),
        attempted=attempted,
    )
    return {"recordings": len(rows), "clips": len(clips), "failures": len(seen)}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class _CommitFn(beam.DoFn):
    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.failures = Metrics.counter("CommitManifests", "failures")
        self.recordings = Metrics.counter("CommitManifests", "recordings")

    def process(self, items):
        counts = commit_manifests(ClipStore.open(self.store_url, "a"), items)
        self.recordings.inc(counts["recordings"])
        self.failures.inc(counts["failures"])
        yield counts


@dataclass
class CommitManifests(beam.PTransform):
    """All ``(kind, payload)`` items -> one commit of the Parquet manifests (a single element)."""

    store_url: str

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, items):
        return (
            items
            | "Gather" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self.store_url))
        )


# ------------------------------------------------------------------------------ IngestRecordings
@dataclass
class IngestRecordings(beam.PTransform):
    """``PCollection[Recording]`` -> the store at ``store_url`` updated; outputs one dict of
    counts (``{"recordings", "clips", "failures"}``) once the manifests are committed.

    ``extra_failures`` are failure rows found before the pipeline (cohort scan problems).
    The store must exist (:meth:`ClipStore.open` with ``mode="a"`` and a config).
    """

    store_url: str
    cfg: IngestConfig
    extra_failures: Sequence[dict] = ()
    skip_complete: bool = True

    def __post_init__(self) -> None:
        super().__init__()

    def expand(self, recordings):
        planned = recordings | "PlanBlocks" >> PlanBlocks(
            self.store_url, self.cfg, self.skip_complete
        )
        processed = planned.blocks | "ProcessBlocks" >> ProcessBlocks(self.store_url, self.cfg)
        finalized = processed.summaries | "FinalizeRecordings" >> FinalizeRecordings(self.cfg)
        pipeline = recordings.pipeline
        tagged = [
            finalized.rows | "TagRows" >> beam.Map(lambda r: ("rows", r)),
            planned[_ATTEMPTED] | "TagAttempted" >> beam.Map(lambda r: (_ATTEMPTED, r)),
            pipeline | "ScanFailures" >> beam.Create([(_FAILURE, f) for f in self.extra_failures]),
        ]
        for name, pc in [
            ("Plan", planned[_FAILURE]),
            ("Process", processed[_FAILURE]),
            ("Finalize", finalized[_FAILURE]),
        ]:
            tagged.append(pc | f"Tag{name}Failures" >> beam.Map(lambda r: (_FAILURE, r)))
        return (
            tagged | "All" >> beam.Flatten() | "CommitManifests" >> CommitManifests(self.store_url)
        )


# ------------------------------------------------------------------------------------ driver
def pipeline_options(cfg: IngestConfig, pipeline_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options: ``pipeline_args`` as given, defaulting to the local multi-process runner.

    Without ``--runner`` the runner is ``cfg.runner`` (``FnApiRunner``) with
    ``direct_num_workers = cfg.num_workers`` (0: one per core) in ``multi_processing`` mode;
    options given explicitly are never overridden.
    """
    opts = PipelineOptions(list(pipeline_args))
    std = opts.view_as(StandardOptions)
    if std.runner is None:
        std.runner = cfg.runner
    runner = std.runner if isinstance(std.runner, str) else type(std.runner).__name__
    if runner in _LOCAL_RUNNERS:
        direct = opts.view_as(DirectOptions)
        given = " ".join(pipeline_args)
        if "direct_num_workers" not in given:
            direct.direct_num_workers = cfg.num_workers or os.cpu_count() or 1
        if "direct_running_mode" not in given:
            direct.direct_running_mode = (
                "multi_processing" if direct.direct_num_workers > 1 else "in_memory"
            )
    return opts


def _local_runner(options: PipelineOptions) -> FnApiRunner | None:
    """The local multi-process FnApiRunner, its worker processes told the harness log level.

    Beam's FnApiRunner hands its worker processes no pipeline options, so each one logs its
    start-up at INFO (some twenty lines per worker on the terminal of ``soz ingest``). Handing
    them ``default_sdk_harness_log_level`` (WARNING unless given) leaves their warnings only.
    ``None`` (Beam picks the runner from the options) for any other runner or mode.
    """
    runner = options.view_as(StandardOptions).runner
    mode = options.view_as(DirectOptions).direct_running_mode
    if runner != "FnApiRunner" or mode != "multi_processing":
        return None
    level = options.view_as(WorkerOptions).default_sdk_harness_log_level or "WARNING"
    worker_options = struct_pb2.Struct()
    worker_options.update({"beam:option:default_sdk_harness_log_level:v1": level})
    return FnApiRunner(
        provision_info=ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(
                pipeline_options=worker_options, retrieval_token="unused-retrieval-token"
            )
        )
    )


def build_pipeline(
    recordings: Sequence[Recording],
    store_url: str,
    cfg: IngestConfig,
    *,
    extra_failures: Sequence[dict] = (),
    pipeline_args: Sequence[str] = (),
) -> beam.Pipeline:
    """An un-run Beam pipeline ingesting ``recordings`` into the store at ``store_url``.

    Creates the store (with ``cfg``) if absent, or checks ``cfg`` against it.
    """
    ClipStore.open(store_url, "a", config=cfg)
    options = pipeline_options(cfg, pipeline_args)
    p = beam.Pipeline(runner=_local_runner(options), options=options)
    _ = (
        p
        | "Recordings" >> beam.Create(list(recordings), reshuffle=False)
        | "Ingest" >> IngestRecordings(store_url, cfg, extra_failures=tuple(extra_failures))
    )
    return p


def scan_sources(
    sources: Sequence[str | os.PathLike],
    *,
    label_sheet: str | os.PathLike | None = None,
    line_freq: float | None = None,
    allow_empty_soz: bool = False,
) -> tuple[list[Recording], list[dict]]:
    """Recordings of every source plus failure rows for what could not be read (or repeats)."""
    from ingest.sources import scan_source

    recordings: list[Recording] = []
    failures: list[dict] = []
    seen: set[str] = set()
    for source in sources:
        scan = scan_source(
            source, label_sheet=label_sheet, line_freq=line_freq, allow_empty_soz=allow_empty_soz
        )
        for err in scan.problems:
            failures.append(
                make_failure(
                    recording_id=None,
                    source=err.source,
                    stage="scan",
                    reason=err.reason,
                    fix=err.fix,
                )
            )
        for rec in scan.recordings:
            if rec.recording_id in seen:
                failures.append(
                    make_failure(
                        recording_id=rec.recording_id,
                        source=rec.path,
                        stage="scan",
                        reason=f"recording id {rec.recording_id!r} appears in two sources.",
                        fix="ingest each cohort once, or give the cohorts distinct names.",
                    )
                )
                continue
            seen.add(rec.recording_id)
            recordings.append(rec)
    return recordings, failures


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
        Accept label-sheet entries that leave a recording with no SOZ contact
        (:func:`ingest.sources.scan_source`).
    pipeline_args : sequence of str
        Beam pipeline options (``--runner=...``); see :func:`pipeline_options`.
    progress : callable (done_blocks, total_blocks) or None
        Called about once a second while the pipeline runs (the CLI draws a bar with it).

    Returns
    -------
    IngestReport
    """
    recordings, scan_failures = scan_sources(
        sources, label_sheet=label_sheet, line_freq=cfg.line_freq, allow_empty_soz=allow_empty_soz
    )
    return ingest_recordings(
        recordings,
        store_url,
        cfg,
        extra_failures=scan_failures,
        pipeline_args=pipeline_args,
        progress=progress,
    )


def ingest_recordings(
    recordings: Sequence[Recording],
    store_url: str | os.PathLike,
    cfg: IngestConfig,
    *,
    extra_failures: Sequence[dict] = (),
    pipeline_args: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest already-scanned ``recordings`` (see :func:`run_ingest`)."""
    t0 = time.perf_counter()
    store_url = os.fspath(store_url)
    store = ClipStore.open(store_url, "a", config=cfg)
    complete = store.complete_ids()
    todo = [r for r in recordings if r.recording_id not in complete]
    total = 0
    for rec in todo:
        try:
            total += len(plan_blocks(rec, cfg))
        except RecordingError:
            pass  # reported by the pipeline
    p = build_pipeline(
        recordings, store_url, cfg, extra_failures=extra_failures, pipeline_args=pipeline_args
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
    rec_df = after.recordings()
    return IngestReport(
        store_url=store_url,
        n_recordings=len(recordings),
        n_skipped=len(recordings) - len(todo),
        n_ingested=len(new_ids),
        n_failed=len(failures),
        n_clips=int(rec_df[rec_df["recording_id"].isin(new_ids)]["n_clips"].sum()),
        elapsed_s=time.perf_counter() - t0,
        failures=failures,
        counters=counters,
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
