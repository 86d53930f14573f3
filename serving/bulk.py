"""Bulk scoring of archived recordings on Ray: ``soz score RUN_DIR INPUT... --out results.parquet``.

Inputs are BIDS roots, folders of recordings, single files (read by
:func:`ingest.sources.scan_source`) or clip stores (Zarr groups written by ``soz ingest``, scored
from their stored clips). Recordings are scored in parallel by an actor pool: ``num_workers``
:class:`ScoringWorker` actors, one CPU each, that load the run's models once and score one
recording at a time with :func:`serving.engine.score_recording` (every model of the run in one
pass over the recording).

Output
------
``--out results.parquet``: one row per recording x contact x model, columns
:data:`serving.results.RESULT_COLUMNS` (``recording_id``, ``subject``, ``channel``, ``model``,
``fold``, ``probability``, ``soz_call``, ``soz_label`` where labels exist, ...).
``results.failures.parquet`` beside it: one row per recording (and model) that could not be
scored, with the stage, the reason and the fix (:data:`serving.results.FAILURE_COLUMNS`); it
describes the latest run (a failure that succeeds on a re-run leaves it).

Re-running skips every (recording_id, model) pair already in ``--out`` and appends the new rows.
The table is rewritten atomically (temporary file, then rename) every ``flush_every`` recordings,
so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray

from ingest.errors import RecordingError, SozkitError
from ingest.fileio import write_parquet
from ingest.recording import Recording
from serving.config import BulkConfig
from serving.results import RESULT_COLUMNS, failures_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One recording to score: from a signal file (``rec``) or from a clip store."""

    recording_id: str
    source: str
    rec: Recording | None = None
    store_url: str | None = None
    models: tuple[str, ...] = ()


@dataclass
class BulkReport:
    """What a bulk run did."""

    out: str
    failures_path: str
    n_recordings: int = 0
    n_scored: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_rows: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: Recordings handled per Ray node id (a cluster spreads the workers over its nodes).
    by_node: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI."""
        nodes = ""
        if len(self.by_node) > 1:
            per = ", ".join(f"{n[:12]}: {k}" for n, k in sorted(self.by_node.items()))
            nodes = f" on {len(self.by_node)} Ray nodes ({per})"
        return (
            f"{self.n_scored} recording(s) scored, {self.n_skipped} already done, "
            f"{self.n_failed} failed, in {self.seconds:.1f} s{nodes} -> {self.out}"
            + (f" (failures: {self.failures_path})" if self.n_failed else "")
        )


def _is_store(path: str) -> bool:
    import json

    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return "sozkit" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False


def collect_work(
    inputs: Sequence[str], *, label_sheet: str | None = None, line_freq: float | None = None
) -> tuple[list[WorkItem], list[dict[str, Any]]]:
    """Every recording of the inputs, and the ones the readers rejected (failure rows).

    Parameters
    ----------
    inputs : sequence of str
        BIDS roots, folders, files, or clip stores.
    label_sheet : str | None
        SOZ label sheet for folder inputs.
    line_freq : float | None
        Line frequency of recordings that do not state one.

    Returns
    -------
    items : list of WorkItem
    failures : list of dict
        Rows of :data:`serving.results.FAILURE_COLUMNS` (stage ``"scan"``).
    """
    from ingest.sources import SourceOptions, scan_sources

    items: list[WorkItem] = []
    failures: list[dict[str, Any]] = []
    files: list[str] = []
    for source in inputs:
        if _is_store(source):
            from ingest.store import ClipStore

            store = ClipStore.open(source)
            for rid in store.recordings()["recording_id"].astype(str):
                items.append(WorkItem(rid, f"{source}::{rid}", store_url=str(source)))
        else:
            files.append(source)
    # scoring trains nothing: a sheet leaving a recording no SOZ only affects its report
    scan = scan_sources(
        files, SourceOptions(label_sheet=label_sheet, line_freq=line_freq, allow_empty_soz=True)
    )
    items += [WorkItem(rec.recording_id, rec.path, rec=rec) for rec in scan.recordings]
    for problem in scan.problems:
        row = {"source_path": problem.source, "stage": "scan", "reason": problem.reason}
        if problem.recording_id is not None:
            row["recording_id"] = problem.recording_id
        failures.append({**row, "fix": problem.fix})
    seen: dict[str, str] = {}
    unique = []
    for item in items:  # a store's recording may also come from a signal file
        if item.recording_id in seen:
            failures.append(
                {
                    "recording_id": item.recording_id,
                    "source_path": item.source,
                    "stage": "scan",
                    "reason": f"recording id also given by {seen[item.recording_id]}",
                    "fix": "give each recording once (or use distinct cohort folder names).",
                }
            )
            continue
        seen[item.recording_id] = item.source
        unique.append(item)
    return unique, failures


@ray.remote(num_cpus=1)
class ScoringWorker:
    """A Ray actor holding a run's scorers; scores one recording per call.

    Parameters
    ----------
    run_dir : str
    model : str
        One model or ``"all"``.
    fold : int | None
    scorer_kwargs : dict
        ``batch_size``, ``line_freq``, ``cache_bytes``, ``allow_incomplete``.
    torch_threads : int
        Intra-op threads of torch in this actor.
    """

    def __init__(
        self,
        run_dir: str,
        model: str,
        fold: int | None,
        scorer_kwargs: dict[str, Any],
        torch_threads: int,
    ) -> None:
        import torch

        from serving.scoring import load_scorers

        torch.set_num_threads(int(torch_threads))
        self.scorers = load_scorers(run_dir, model, fold, **scorer_kwargs)
        self._stores: dict[str, Any] = {}

    def models(self) -> list[str]:
        return [s.name for s in self.scorers]

    def score_on_node(self, item: WorkItem) -> tuple[pd.DataFrame | None, list, str]:
        """:meth:`score` and the id of the Ray node it ran on."""
        return (*self.score(item), ray.get_runtime_context().get_node_id())

    def score(self, item: WorkItem) -> tuple[pd.DataFrame | None, list[dict[str, Any]]]:
        """Score ``item`` with the models it still needs; return (rows, failure rows)."""
        from ingest.stream import recording_plan
        from serving.engine import score_recording
        from serving.preprocess import StoredRecordingStream, check_length, stored_recording

        scorers = [s for s in self.scorers if s.name in item.models]
        failures: list[dict[str, Any]] = []
        try:
            if item.store_url is not None:
                from ingest.store import ClipStore

                store = self._stores.get(item.store_url)
                if store is None or item.recording_id not in store.complete_ids():
                    # a snapshot taken before a later ingest (a long-lived worker of soz watch)
                    store = self._stores[item.store_url] = ClipStore.open(item.store_url)
                rec = stored_recording(store, item.recording_id)
                stream = StoredRecordingStream(
                    store, item.recording_id, block_clips=store.ingest_config.block_clips
                )
                n_clips, clip_s = stream.n_clips, store.ingest_config.clip_s
            else:
                rec, stream = item.rec, None
                n_clips = recording_plan(rec, scorers[0].ingest_config).n_clips
                clip_s = scorers[0].ingest_config.clip_s
            usable = []
            for s in scorers:  # a model needing longer sequences fails alone
                try:
                    check_length(rec, n_clips, s.seq_len, clip_s)
                    usable.append(s)
                except RecordingError as e:
                    failures.append(_failure(item, [s], "score", e.reason, e.fix))
            if not usable:
                return None, failures
            results = score_recording(rec, [s.consumer() for s in usable], stream=stream)
        except RecordingError as e:
            return None, [*failures, _failure(item, scorers, "score", e.reason, e.fix)]
        except Exception as e:  # a worker must report, not die: keep the reason
            logger.exception("%s: scoring failed", item.recording_id)
            reason = f"{type(e).__name__}: {e}"
            return None, [*failures, _failure(item, scorers, "score", reason, "")]
        return pd.concat([r.to_frame() for r in results], ignore_index=True), failures


def _failure(item: WorkItem, scorers, stage: str, reason: str, fix: str) -> dict[str, Any]:
    return {
        "recording_id": item.recording_id,
        "source_path": item.source,
        "model": ",".join(s.name for s in scorers),
        "stage": stage,
        "reason": reason,
        "fix": fix,
    }


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[list(RESULT_COLUMNS)].copy()
    frame["fold"] = frame["fold"].astype("Int64")
    frame["soz_label"] = frame["soz_label"].astype("boolean")
    return frame


def run_bulk(cfg: BulkConfig, *, progress: Callable[[int, int], None] | None = None) -> BulkReport:
    """Score every recording of ``cfg.inputs`` with the run's model(s) on Ray.

    Starts a local Ray (no dashboard) when none is running; the CLI joins ``RAY_ADDRESS``.

    Parameters
    ----------
    cfg : BulkConfig
    progress : callable (done, total) or None
        Called after each recording (the CLI draws a progress bar with it).

    Returns
    -------
    BulkReport
    """
    from serving.scoring import run_models
    from trainer.rundir import REFERENCE_MODELS, RunDir

    t0 = time.perf_counter()
    available = [m for m in run_models(cfg.run_dir) if m not in REFERENCE_MODELS]
    wanted = available if cfg.model == "all" else [cfg.model]
    if cfg.model == "baseline" and RunDir.open(cfg.run_dir).fold_indices("baseline"):
        available = [*available, "baseline"]  # no model file: the run's thresholds
    if not wanted or any(m not in available for m in wanted):
        raise SozkitError(
            f"{cfg.run_dir} has no servable model {cfg.model!r}; it holds {available or 'none'}."
        )
    report = BulkReport(out=cfg.out, failures_path=cfg.failures_path)
    existing = pd.DataFrame(columns=list(RESULT_COLUMNS))
    if cfg.resume and Path(cfg.out).is_file():
        existing = pd.read_parquet(cfg.out)
    elif not cfg.resume and Path(cfg.out).is_file():
        Path(cfg.out).unlink()
    done_pairs = set(zip(existing["recording_id"], existing["model"], strict=True))

    items, scan_failures = collect_work(
        cfg.inputs, label_sheet=cfg.label_sheet, line_freq=cfg.line_freq
    )
    report.n_recordings = len(items)
    todo = []
    for item in items:
        missing = tuple(m for m in wanted if (item.recording_id, m) not in done_pairs)
        if missing:
            todo.append(WorkItem(item.recording_id, item.source, item.rec, item.store_url, missing))
        else:
            report.n_skipped += 1
    failures = list(scan_failures)
    new_frames: list[pd.DataFrame] = []
    if todo:
        if not ray.is_initialized():
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        n_workers = max(1, min(cfg.num_workers, len(todo)))
        kwargs = {
            "batch_size": cfg.batch_size,
            "line_freq": cfg.line_freq,
            "allow_incomplete": cfg.allow_incomplete,
        }
        workers = [
            ScoringWorker.remote(cfg.run_dir, cfg.model, cfg.fold, kwargs, cfg.torch_threads)
            for _ in range(n_workers)
        ]
        pool = ray.util.ActorPool(workers)
        flushed = 0
        for done, (frame, fails, node) in enumerate(
            pool.map_unordered(lambda w, it: w.score_on_node.remote(it), todo), start=1
        ):
            report.by_node[node] = report.by_node.get(node, 0) + 1
            if frame is not None:
                new_frames.append(frame)
                report.n_scored += 1
            failures.extend(fails)
            if progress is not None:
                progress(done, len(todo))
            if done - flushed >= cfg.flush_every:
                write_parquet(cfg.out, _merge(existing, new_frames))
                flushed = done
        for w in workers:
            ray.kill(w)
    merged = _merge(existing, new_frames)
    write_parquet(cfg.out, merged)
    write_parquet(cfg.failures_path, failures_frame(failures))
    report.n_failed = len({(f.get("recording_id"), f.get("source_path")) for f in failures})
    report.failures = failures
    report.n_rows = len(merged)
    report.seconds = time.perf_counter() - t0
    logger.info(report.summary())
    return report


def _merge(existing: pd.DataFrame, new_frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in (existing, *new_frames) if not f.empty]
    if not frames:
        from serving.results import empty_results

        return empty_results()
    return _normalise(pd.concat([_normalise(f) for f in frames], ignore_index=True))
