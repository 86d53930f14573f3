"""The ingest pipeline: Apache Beam PTransforms from ``Recording`` records to a clip store.

Steps (each a labelled PTransform over the pure functions of :mod:`ingest.stream`)::

    Recording --PlanBlocks--> (recording, block) --Reshuffle--> ProcessBlocks --> block summaries
        PlanBlocks: skip complete recordings, check the file against its metadata, write the
                    array template (metadata only) BEFORE any block of it is emitted
        ProcessBlocks: read -> resample -> filter -> clips -> one whole shard written
        (local store) the worker writing a recording's last block commits its manifest rows
    block summaries --FinalizeRecordings (group by recording)--> manifest rows of complete recordings
    rows + failures + warnings --CommitManifests (one element)--> Parquet manifests, replaced
        atomically (rows already committed recording by recording are not written again)

Elements are ``(recording, block)`` pairs reshuffled across workers, so one 20-hour recording keeps
every worker busy. A failing recording (unreadable, truncated, NaNs, no contacts, shorter than a
clip...) becomes a failures row (file, stage, reason, fix) and the rest of the cohort completes;
any other exception (a bug: :func:`ingest.manifests.is_recording_error` tells them apart) stops the
job, re-raised with the recording id and block. The pure manifest logic is
:mod:`ingest.manifests`; the scan of the sources :func:`ingest.sources.scan_sources`.

A run holds a lease on each recording it ingests and its local workers die with the driver
(:mod:`ingest.ownership`): a killed run leaves no writer behind, keeps every recording it
committed, and a re-run redoes the rest.
Counters, named after the transform that counts them: ``PlanBlocks/recordings``, ``skipped``,
``blocks``; ``ProcessBlocks/blocks``, ``clips``, ``bytes``, ``saturated``; ``failures`` in each.

Runner: by default Beam's ``FnApiRunner`` (multi-process, one worker per core), never the plain
``DirectRunner`` (it tries PrismRunner, which downloads a binary). Any Beam pipeline options
(``--runner=DataflowRunner --project ...``, ``--runner=FlinkRunner``...) override it and the same
transforms run unchanged; the store must then be a URL every worker can reach, and relative
paths are refused (:func:`check_worker_paths`). Tested on Beam's PortableRunner with an external
worker pool (:mod:`ingest.beam_services`): the same store as in process, bit for bit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics
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
from ingest.errors import ConfigError
from ingest.manifests import (
    ATTEMPTED,
    FAILURE,
    ROWS,
    WARNING,
    BlockSummary,
    clear_block_summaries,
    commit_manifests,
    committed_since,
    drop_empty_summaries,
    failure_row,
    finalize_recording,
    is_recording_error,
    load_block_summaries,
    manifest_rows,
    save_block_summary,
)
from ingest.ownership import RunContext, store_lock
from ingest.recording import Recording
from ingest.store import ClipStore
from ingest.stream import Block, plan_blocks, process_block, recording_plan

logger = logging.getLogger(__name__)

#: Runners that take the local ``direct_num_workers`` / ``direct_running_mode`` options.
_LOCAL_RUNNERS = {"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


def _bug(where: str, rec: Recording, err: Exception) -> RuntimeError:
    """The error that stops the job on a bug, naming the recording (and block)."""
    return RuntimeError(
        f"ingest bug in recording {rec.recording_id}, {where} ({rec.path}): "
        f"{type(err).__name__}: {err}"
    )


# ---------------------------------------------------------------------------------- PlanBlocks
class _PlanBlocksFn(beam.DoFn):
    def __init__(
        self, store_url: str, cfg: IngestConfig, skip_complete: bool, run: RunContext
    ) -> None:
        self.store_url, self.cfg, self.skip_complete, self.run = store_url, cfg, skip_complete, run
        self.recordings = Metrics.counter("PlanBlocks", "recordings")
        self.skipped = Metrics.counter("PlanBlocks", "skipped")
        self.blocks = Metrics.counter("PlanBlocks", "blocks")
        self.failures = Metrics.counter("PlanBlocks", "failures")

    def setup(self) -> None:
        self.run.watch()
        self.store = ClipStore.open(self.store_url, "a")
        self.complete = self.store.complete_ids() if self.skip_complete else set()

    def process(self, rec: Recording):
        from ingest.signals import open_signal

        self.recordings.inc()
        if rec.recording_id in self.complete:
            self.skipped.inc()
            return
        yield beam.pvalue.TaggedOutput(ATTEMPTED, rec.recording_id)
        try:
            plan = recording_plan(rec, self.cfg)
            blocks = plan_blocks(rec, self.cfg)
            with open_signal(rec):  # checks the file against the metadata (truncation, channels)
                pass
            self.run.before_write(self.store, rec.recording_id)
            clear_block_summaries(self.store, rec.recording_id)  # of a killed run's shards
            self.store.create_array(
                rec.recording_id, n_clips=plan.n_clips, n_channels=len(plan.contacts)
            )
        except Exception as e:
            if not is_recording_error(e):
                raise _bug("plan", rec, e) from e
            self.failures.inc()  # one bad recording must not stop the cohort
            yield beam.pvalue.TaggedOutput(FAILURE, failure_row("plan", rec, e))
            return
        self.blocks.inc(len(blocks))
        for block in blocks:
            yield rec, block, len(blocks)


class _Transform(beam.PTransform):
    """A PTransform declared as a dataclass (its fields are its arguments): the generated
    ``__init__`` does not call ``PTransform.__init__``, this does."""

    def __post_init__(self) -> None:
        super().__init__()


@dataclass
class PlanBlocks(_Transform):
    """``Recording`` -> ``(recording, block, n_blocks)``, after writing each array's template.

    Complete recordings are skipped; recordings that cannot be processed go to the
    ``"failure"`` output. Outputs: main, ``"failure"`` (rows), ``"attempted"`` (ids).
    """

    store_url: str
    cfg: IngestConfig
    skip_complete: bool = True
    run: RunContext = field(default_factory=RunContext)

    def expand(self, recordings):
        return recordings | "Plan" >> beam.ParDo(
            _PlanBlocksFn(self.store_url, self.cfg, self.skip_complete, self.run)
        ).with_outputs(FAILURE, ATTEMPTED, main="blocks")


# ------------------------------------------------------------------------------- ProcessBlocks
class _ProcessBlocksFn(beam.DoFn):
    def __init__(self, store_url: str, cfg: IngestConfig, run: RunContext) -> None:
        self.store_url, self.cfg, self.run = store_url, cfg, run
        self.blocks = Metrics.counter("ProcessBlocks", "blocks")
        self.clips = Metrics.counter("ProcessBlocks", "clips")
        self.bytes = Metrics.counter("ProcessBlocks", "bytes")
        self.saturated = Metrics.counter("ProcessBlocks", "saturated")
        self.failures = Metrics.counter("ProcessBlocks", "failures")
        self.committed = Metrics.counter("ProcessBlocks", "committed")
        self._reader = None

    def setup(self) -> None:
        self.run.watch()
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
            self.run.before_write(self.store, rec.recording_id)
            nbytes = self.store.write_block(rec.recording_id, block.clip_start, result.clips)
        except Exception as e:
            self.teardown()
            if not is_recording_error(e):
                raise _bug(f"block {block.index} (clips from {block.clip_start})", rec, e) from e
            self.failures.inc()
            yield beam.pvalue.TaggedOutput(FAILURE, failure_row(f"block {block.index}", rec, e))
            return
        self.blocks.inc()
        self.clips.inc(block.n_clips)
        self.bytes.inc(nbytes)
        self.saturated.inc(result.n_saturated)
        summary = BlockSummary(rec, n_blocks, block.index, result.clip_std, nbytes)
        if self.store.is_local:
            failure = self._commit_if_complete(summary)
            if failure is not None:
                yield beam.pvalue.TaggedOutput(FAILURE, failure)
        yield rec.recording_id, summary

    def _commit_if_complete(self, summary: BlockSummary) -> dict | None:
        """Commit the recording's manifest rows if this block was its last one to be written,
        so a kill later in the job keeps it. Returns a failure row if its rows fail."""
        rec = summary.recording
        save_block_summary(self.store, summary)
        clip_std = load_block_summaries(self.store, rec.recording_id, summary.n_blocks)
        if clip_std is None:
            return None
        try:
            rows = manifest_rows(rec, self.cfg, clip_std)
        except Exception as e:
            if not is_recording_error(e):
                raise _bug("finalize", rec, e) from e
            return failure_row("finalize", rec, e)
        with store_lock(self.store):
            fresh = ClipStore.open(self.store_url, "a")
            if rec.recording_id not in committed_since(fresh, self.run.started):
                self.run.before_write(fresh, rec.recording_id)
                commit_manifests(fresh, [(ROWS, rows), (ATTEMPTED, rec.recording_id)])
                self.committed.inc()
            clear_block_summaries(fresh, rec.recording_id)
        return None

    def teardown(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


@dataclass
class ProcessBlocks(_Transform):
    """``(recording, block, n_blocks)`` -> ``(recording_id, BlockSummary)``; each block's clips
    are computed and written as one whole shard. Reshuffled first so that the blocks of one
    long recording spread over every worker. On a local store, the worker that writes a
    recording's last block commits its manifest rows (under the store lock)."""

    store_url: str
    cfg: IngestConfig
    run: RunContext = field(default_factory=RunContext)

    def expand(self, blocks):
        return (
            blocks
            | "Spread" >> beam.Reshuffle()
            | "Process"
            >> beam.ParDo(_ProcessBlocksFn(self.store_url, self.cfg, self.run)).with_outputs(
                FAILURE, main="summaries"
            )
        )


# -------------------------------------------------------------------------- FinalizeRecordings
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
            if not is_recording_error(e):
                raise _bug("finalize", summaries[0].recording, e) from e
            self.failures.inc()
            yield beam.pvalue.TaggedOutput(
                FAILURE, failure_row("finalize", summaries[0].recording, e)
            )
            return
        if done is not None:  # missing blocks already produced their failure rows
            self.recordings.inc()
            yield done


@dataclass
class FinalizeRecordings(_Transform):
    """``(recording_id, BlockSummary)`` -> manifest rows of each fully written recording."""

    cfg: IngestConfig

    def expand(self, summaries):
        return (
            summaries
            | "ByRecording" >> beam.GroupByKey()
            | "Rows" >> beam.ParDo(_FinalizeFn(self.cfg)).with_outputs(FAILURE, main="rows")
        )


# ----------------------------------------------------------------------------- CommitManifests
def _item_id(kind: str, payload) -> str | None:
    if kind == ROWS:
        return payload["recording"]["recording_id"]
    if kind == ATTEMPTED:
        return payload
    return payload["recording_id"]


class _CommitFn(beam.DoFn):
    def __init__(self, store_url: str, run: RunContext) -> None:
        self.store_url, self.run = store_url, run
        self.failures = Metrics.counter("CommitManifests", "failures")
        self.recordings = Metrics.counter("CommitManifests", "recordings")

    def process(self, items):
        self.run.watch()
        rows = [p for k, p in items if k == ROWS]
        with store_lock(ClipStore.open(self.store_url, "a")):
            store = ClipStore.open(self.store_url, "a")
            done = committed_since(store, self.run.started)  # committed recording by recording
            counts = commit_manifests(
                store, [(k, p) for k, p in items if _item_id(k, p) not in done]
            )
            for rid in {p for k, p in items if k == ATTEMPTED}:
                clear_block_summaries(store, rid)
            drop_empty_summaries(store)
        failed = {p["recording_id"] for k, p in items if k == FAILURE}
        counts["recordings"] = len({r["recording"]["recording_id"] for r in rows} - failed)
        counts["clips"] = sum(
            len(r["clips"]) for r in rows if r["recording"]["recording_id"] not in failed
        )
        self.recordings.inc(counts["recordings"])
        self.failures.inc(counts["failures"])
        yield counts


@dataclass
class CommitManifests(_Transform):
    """All ``(kind, payload)`` items -> one commit of the Parquet manifests (a single element).

    Rows the workers already committed recording by recording are not written again.
    """

    store_url: str
    run: RunContext = field(default_factory=RunContext)

    def expand(self, items):
        return (
            items
            | "Gather" >> beam.combiners.ToList()
            | "Commit" >> beam.ParDo(_CommitFn(self.store_url, self.run))
        )


# ------------------------------------------------------------------------------ IngestRecordings
@dataclass
class IngestRecordings(_Transform):
    """``PCollection[Recording]`` -> the store at ``store_url`` updated; outputs one dict of
    counts (``{"recordings", "clips", "failures"}``) once the manifests are committed.

    ``extra_failures`` / ``extra_warnings`` are failure and warning rows found before the
    pipeline (the scan's). The store must exist (:meth:`ClipStore.open` with ``mode="a"`` and
    a config).
    """

    store_url: str
    cfg: IngestConfig
    extra_failures: Sequence[dict] = ()
    skip_complete: bool = True
    extra_warnings: Sequence[dict] = ()
    run: RunContext = field(default_factory=RunContext)

    def expand(self, recordings):
        planned = recordings | "PlanBlocks" >> PlanBlocks(
            self.store_url, self.cfg, self.skip_complete, self.run
        )
        processed = planned.blocks | "ProcessBlocks" >> ProcessBlocks(
            self.store_url, self.cfg, self.run
        )
        finalized = processed.summaries | "FinalizeRecordings" >> FinalizeRecordings(self.cfg)
        pipeline = recordings.pipeline
        found = [(FAILURE, f) for f in self.extra_failures]
        found += [(WARNING, w) for w in self.extra_warnings]
        tagged = [
            finalized.rows | "TagRows" >> beam.Map(lambda r: (ROWS, r)),
            planned[ATTEMPTED] | "TagAttempted" >> beam.Map(lambda r: (ATTEMPTED, r)),
            pipeline | "ScanFindings" >> beam.Create(found),
        ]
        for name, pc in [
            ("Plan", planned[FAILURE]),
            ("Process", processed[FAILURE]),
            ("Finalize", finalized[FAILURE]),
        ]:
            tagged.append(pc | f"Tag{name}Failures" >> beam.Map(lambda r: (FAILURE, r)))
        return (
            tagged
            | "All" >> beam.Flatten()
            | "CommitManifests" >> CommitManifests(self.store_url, self.run)
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


class _LocalRunner(FnApiRunner):
    """FnApiRunner whose worker processes start through :mod:`ingest.beam_worker`.

    In ``multi_processing`` mode FnApiRunner writes its stock worker command into the pipeline's
    environment; this swaps it for :func:`ingest.beam_worker.worker_command` (Beam's worker
    with logging set up before Beam's import-time warnings), so no worker prints on the terminal.
    """

    def run_via_runner_api(self, pipeline_proto, options):
        from apache_beam.portability import python_urns

        from ingest.beam_worker import worker_command

        for env in pipeline_proto.components.environments.values():
            if env.urn == python_urns.SUBPROCESS_SDK and env.payload.endswith(
                b"-m apache_beam.runners.worker.sdk_worker_main"
            ):
                env.payload = worker_command().encode("utf-8")
        return super().run_via_runner_api(pipeline_proto, options)


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
    return _LocalRunner(
        provision_info=ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(
                pipeline_options=worker_options, retrieval_token="unused-retrieval-token"
            )
        )
    )


def check_worker_paths(
    options: PipelineOptions, store_url: str, recordings: Sequence[Recording]
) -> None:
    """Refuse relative paths when the workers are not this process's children.

    The local runners' workers share the driver's working directory; a portable, Flink, Spark
    or Dataflow worker does not, so a relative store or signal path would name another place
    there (a store at the job server's directory, a file not found). Raises
    :class:`~ingest.errors.ConfigError` naming the path; ``soz ingest`` makes paths absolute.
    """
    runner = options.view_as(StandardOptions).runner
    runner = runner if isinstance(runner, str) else type(runner).__name__
    if runner in _LOCAL_RUNNERS:
        return
    paths = [("store", store_url)] + [(r.recording_id, r.path) for r in recordings]
    for what, path in paths:
        if "://" not in path and not os.path.isabs(path):
            raise ConfigError(
                f"{what}: relative path {path!r} with --runner={runner}: that runner's workers "
                f"do not share this process's working directory. Fix: give an absolute path "
                f"({os.path.abspath(path)!r}) on storage every worker can reach."
            )


def build_pipeline(
    recordings: Sequence[Recording],
    store_url: str,
    cfg: IngestConfig,
    *,
    extra_failures: Sequence[dict] = (),
    extra_warnings: Sequence[dict] = (),
    pipeline_args: Sequence[str] = (),
    run: RunContext | None = None,
) -> beam.Pipeline:
    """An un-run Beam pipeline ingesting ``recordings`` into the store at ``store_url``.

    Creates the store (with ``cfg``) if absent, or checks ``cfg`` against it. ``run`` carries
    the run's lease token and driver (default: no leases, this process as the driver).
    """
    options = pipeline_options(cfg, pipeline_args)
    check_worker_paths(options, store_url, recordings)
    ClipStore.open(store_url, "a", config=cfg)
    p = beam.Pipeline(runner=_local_runner(options), options=options)
    _ = (
        p
        | "Recordings" >> beam.Create(list(recordings), reshuffle=False)
        | "Ingest"
        >> IngestRecordings(
            store_url,
            cfg,
            extra_failures=tuple(extra_failures),
            extra_warnings=tuple(extra_warnings),
            run=run or RunContext(),
        )
    )
    return p


_MOVED = {"IngestReport", "run_ingest", "ingest_recordings"}


def __getattr__(name: str):
    """``run_ingest``, ``ingest_recordings`` and ``IngestReport`` live in :mod:`ingest.driver`;
    they still import from here."""
    if name in _MOVED:
        from ingest import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
