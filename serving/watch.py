"""``soz watch``: recordings that land in a drop folder are ingested, scored and reported.

Each poll lists the landing folders (:func:`ingest.landing.find_arrivals`) and takes every
recording that is complete (stable for ``stable_s``, EDF record count = file size, BIDS
sidecars present) and not yet in the journal under its fingerprint. A batch of them then goes
through the stages of the batch commands, each by their own entry point:

1. **ingest**: :func:`ingest.pipeline.ingest_recordings`, the Beam pipeline of ``soz ingest``
   (appended to the store, idempotent; unreadable files become rows of the store's failures
   table);
2. **score**: :class:`serving.bulk.ScoringWorker` actors, the workers of ``soz score``, loaded
   once when the watcher starts and kept across arrivals, scoring from the store's clips; the
   rows are merged into ``RESULTS`` (one row per recording x contact x model, replaced by key,
   the file rewritten atomically); rows of an older version of the same file are kept and
   marked ``superseded``;
3. **report**: :func:`serving.report.write_report` refreshes the patient's page (in a
   :class:`serving.watch_stage.PageWriter` actor), then the index page lists every arrival with
   its status.

The stages overlap: once a batch is ingested it is handed to the scoring stage, a thread of
its own (:class:`serving.watch_stage.BatchStage`) that scores it and hands it on to the report
stage, a third thread, while the loop lists the folders again and ingests the next batch. Each
hand-off is a queue of one (it waits for the batch before in that stage), so at most three
batches are in flight, one per stage, and batches finish in the order they were taken; the
next batch is scored as soon as this one is, without waiting for its pages. Only the scoring
stage writes the results and the failures beside them, only the report stage the pages and
the index, only the loop the store.

Every step is written to the journal (:mod:`serving.journal`) once done; on start the journal
is replayed so that a version left ``taken``, ``ingested`` or ``scored`` by a killed watcher is
carried on from there. That, with each step being idempotent, is the exactly-once guarantee;
it does not depend on which thread did the step (a kill -9 while one batch is reported, the
next scored and the one after ingested leaves them ``scored``, ``ingested`` and ``taken``: all
three are replayed).

After every poll the watcher's state is written beside the results (:mod:`serving.watch_status`,
what ``soz serve --watch``'s ``/health`` shows); its configuration, the job of one recording
version and the summary are in :mod:`serving.watch_config`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ingest.errors import RecordingError, SozkitError
from ingest.fileio import write_parquet, write_text
from ingest.landing import Arrival, RemoteLanding, find_arrivals, fingerprint, is_url, local_landing
from ingest.recording import Recording
from serving.journal import Journal, journal_path
from serving.results import RESULT_COLUMNS, failures_frame, failures_path
from serving.watch_config import Job, WatchConfig, WatchSummary
from serving.watch_outputs import (
    WATCH_COLUMNS,
    index_page,
    merge_results,
    page_name,
    patient_of,
    release_memory,
    scan_arrival,
    top_line,
    use_system_heap,
)
from serving.watch_stage import BatchStage, page_writer
from serving.watch_status import status_path, write_status

logger = logging.getLogger(__name__)


class Watcher:
    """The ``soz watch`` service: see the module docstring.

    Parameters
    ----------
    cfg : WatchConfig
    say : callable or None
        Receives one line per arrival, failure and replay (the CLI prints them).

    Ray must be initialised before :meth:`start` (the CLI's ``ray_session``).
    """

    def __init__(self, cfg: WatchConfig, *, say: Callable[[str], None] | None = None) -> None:
        from ingest.store import ClipStore
        from trainer.rundir import RunDir

        use_system_heap()  # a long-lived process: freed Arrow buffers go back to the system
        self.cfg = cfg
        self.say = say or (lambda line: None)
        self.ingest_cfg = RunDir.open(cfg.run_dir).ingest_config()
        # The run's preprocessing, so the stored clips are what its models were trained on;
        # creates the store, or refuses one built with other settings (ConfigError) now.
        ClipStore.open(cfg.store, "a", config=self.ingest_cfg)
        self.journal = Journal(journal_path(cfg.results))
        # fsspec URLs are mirrored into a local folder the readers open by path
        self._landings = [
            RemoteLanding(u, cfg.mirror(u)) if is_url(local_landing(u)) else local_landing(u)
            for u in cfg.landings
        ]
        self.summary = WatchSummary()
        self._told: dict[str, str] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._workers: list[Any] = []
        self._pages: Any = None  # the PageWriter actor
        self.models: tuple[str, ...] = ()
        self._lock = threading.Lock()  # the summary's counts, kept by both threads
        self._stage = BatchStage(self._score_stage, name="soz-watch-score")
        self._reports = BatchStage(self._report_stage, name="soz-watch-report")
        self._results: pd.DataFrame | None = None  # RESULTS as last written (the stage's)
        self._took = 0  # recordings the last poll took

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the scoring actors (the run's models loaded once, kept across arrivals)."""
        import ray

        from serving.bulk import ScoringWorker

        kwargs = {"batch_size": self.cfg.batch_size, "line_freq": self.ingest_cfg.line_freq}
        self._workers = [
            ScoringWorker.options(num_cpus=self.cfg.worker_cpus).remote(
                self.cfg.run_dir, "all", None, kwargs, 1
            )
            for _ in range(self.cfg.num_workers)
        ]
        self._pages = page_writer()
        self.models = tuple(ray.get(self._workers[0].models.remote()))

    def close(self) -> None:
        import ray

        self._stage.close()
        self._reports.close()
        for w in [*self._workers, *([self._pages] if self._pages is not None else [])]:
            ray.kill(w)
        self._workers, self._pages = [], None
        self.journal.close()

    def run(self, stop: threading.Event | None = None) -> WatchSummary:
        """Replay the journal, then poll until ``stop`` is set (or, with ``once``, until
        nothing complete or settling is left)."""
        stop = stop or threading.Event()
        t0 = time.perf_counter()
        state = "stopped"
        try:
            self._status("replaying")
            self.replay()
            while not stop.is_set():
                try:
                    settling = self.poll_once(stop)
                    self.summary.error = None
                except (KeyboardInterrupt, SozkitError):
                    raise
                except Exception as e:  # an engine failure: the batch stays in flight
                    if stop.is_set():
                        break  # Ctrl-C reached the engine's workers: redone on restart
                    self._engine_error(e, "retried at the next poll")
                    settling, self._took = 1, 0
                self.summary.polls += 1
                self.summary.last_poll_at = time.time()
                self._status("watching")
                if self.cfg.once and not settling and not self._took and self._drain():
                    break
                if not self._took:  # a poll that took recordings is followed by another at once
                    stop.wait(self.cfg.poll_s)
            self._drain("redone on the next start")  # the batch being scored is finished
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            state, self.summary.error = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            self.summary.seconds = time.perf_counter() - t0
            self.summary.interrupted = stop.is_set()
            self._status(state)
        return self.summary

    def _drain(self, then: str = "retried at the next poll") -> bool:
        """Wait for the batches being scored and reported; False (said, left to replay) if
        one failed."""
        try:
            self._wait_stages()
        except (KeyboardInterrupt, SozkitError):
            raise
        except Exception as e:  # an engine failure: the batch stays in flight in the journal
            self._engine_error(e, then)
            return False
        return True

    def _wait_stages(self) -> None:
        """Wait for the scoring stage, then for the report stage it hands its batches to
        (in this order: once the scoring stage is idle, nothing else submits reports)."""
        try:
            self._stage.wait()
        finally:
            self._reports.wait()

    def _engine_error(self, e: Exception, then: str) -> None:
        self.summary.error = f"{type(e).__name__}: {e}"
        self.say(f"error     {self.summary.error} ({then})")
        logger.debug("batch failed", exc_info=True)

    def _status(self, state: str) -> None:
        """Rewrite the state file ``/health`` reads (:mod:`serving.watch_status`)."""
        status = {**self.summary.status(state), "poll_s": self.cfg.poll_s}
        write_status(status_path(self.cfg.results), status)

    # ------------------------------------------------------------------ replay
    def replay(self) -> None:
        """Carry on every version a killed watcher left ``taken``, ``ingested`` or ``scored``.

        Also called at each poll for a batch an engine error left in flight; a version that
        fails :data:`MAX_ATTEMPTS` times is recorded ``failed`` with the error. Runs every
        stage in this thread, the scoring and report stages idle.
        """
        self._wait_stages()
        by_stage: dict[str, list[Job]] = {"taken": [], "ingested": [], "scored": []}
        for v in self.journal.pending():
            n = self._attempts[(v.key, v.fp)] = self._attempts.get((v.key, v.fp), 0) + 1
            if n > MAX_ATTEMPTS:
                self._failed(
                    Job.from_journal(v), v.state, f"failed {MAX_ATTEMPTS} times in a row", "see -v"
                )
                continue
            job = Job.from_journal(v)
            try:
                fp_now = fingerprint(job.arrival.files)
            except OSError:
                fp_now = None
            if v.state == "taken" and fp_now != v.fp:
                # replaced or removed before it was ingested: the new content is taken anew
                self.journal.append("superseded", v.key, v.fp, recording_id=v.recording_id)
                continue
            by_stage[v.state].append(job)
        n = sum(len(j) for j in by_stage.values())
        if not n:
            return
        self.summary.replayed += n
        self.say(
            f"replaying the journal: {len(by_stage['taken'])} to ingest, "
            f"{len(by_stage['ingested'])} to score, {len(by_stage['scored'])} to report"
        )
        for job in by_stage["taken"]:
            self._scan(job)
        ingested = self._ingest([j for j in by_stage["taken"]]) + by_stage["ingested"]
        self._report(self._score(ingested) + by_stage["scored"])
        release_memory()

    # ------------------------------------------------------------------ polling
    def poll_once(self, stop: threading.Event | None = None) -> int:
        """List the landing folders, take every new complete recording and ingest them, then
        hand them to the scoring stage (:meth:`process`); returns without waiting for it.

        Returns
        -------
        int
            Recordings still settling (changed less than ``stable_s`` ago).
        """
        self._took = 0
        if self._stage.idle:  # a batch scored (or reported) meanwhile: raises its engine error
            self._stage.wait()
            if self._reports.idle:  # nothing submits reports while the scoring stage is idle
                self._reports.wait()
        in_flight = {(j.key, j.fp) for j in (*self._stage.jobs, *self._reports.jobs)}
        if any((v.key, v.fp) not in in_flight for v in self.journal.pending()):
            self.replay()  # a batch an engine error left in flight
        now = time.time()
        arrivals: list[Arrival] = []
        remote_settling = 0  # files of landing URLs not copied yet
        for landing in self._landings:
            if isinstance(landing, RemoteLanding):
                folder = landing.sync(now=now, stable_s=self.cfg.stable_s)
                remote_settling += landing.settling
                landing = folder
            arrivals += find_arrivals(landing, now=now, stable_s=self.cfg.stable_s)
        jobs, settling = [], 0
        self.summary.waiting = {}
        for a in arrivals:
            if a.state == "settling":
                settling += 1
                continue
            if a.state == "waiting":
                if now - a.mtime < self.cfg.give_up_s:
                    self.summary.waiting[a.name] = a.detail
                    if self._told.get(a.key) != a.detail:
                        self.say(f"waiting   {a.name}: {a.detail}")
                        self._told[a.key] = a.detail
                    continue
                a = replace(a, fingerprint=fingerprint(a.files))  # stayed incomplete: give up
            if self.journal.get(a.key, a.fingerprint) is not None:
                continue  # this version was taken before (done, failed or replayed)
            jobs.append(Job(a, self.journal.next_version(a.key)))
            self._told.pop(a.key, None)
        if jobs:
            self._took = len(jobs)
            self.process(jobs)
        return settling + remote_settling

    def process(self, jobs: Sequence[Job]) -> None:
        """Take and ingest a batch of new recording versions, then hand it to the scoring
        stage (once the batch before is scored and reported), which scores and reports it."""
        for job in jobs:
            self._scan(job)
            rid = None
            if job.rec is not None:
                rid = job.rec.recording_id
                if job.version > 1:
                    rid = f"{rid}.v{job.version}"
                job.rec = replace(job.rec, recording_id=rid)
                job.recording_id = rid
            a = job.arrival
            self.journal.append(
                "taken", job.key, job.fp, version=job.version, recording_id=rid,
                landing=a.landing, kind=a.kind, files=list(a.files), complete_at=a.mtime,
            )  # fmt: skip
        ingested = self._ingest(list(jobs))
        if ingested:
            self._stage.submit(ingested)
        else:
            release_memory()

    def _score_stage(self, jobs: Sequence[Job]) -> None:
        """The scoring stage's work: score ``jobs``, then hand them to the report stage (once
        the batch before is reported) and go on to the next batch without waiting for it."""
        scored = self._score(list(jobs))
        if scored:
            self._reports.submit(scored)

    def _report_stage(self, jobs: Sequence[Job]) -> None:
        """The report stage's work: the pages of ``jobs``' patients, the index, the journal."""
        self._report(list(jobs))
        release_memory()

    # ------------------------------------------------------------------ stages
    def _scan(self, job: Job) -> None:
        try:
            rec = scan_arrival(
                job.key, job.arrival.landing, job.arrival.kind, label_sheet=self.cfg.label_sheet,
                line_freq=self.cfg.line_freq or self.ingest_cfg.line_freq,
            )  # fmt: skip
        except RecordingError as e:
            job.problem = e
            return
        if job.recording_id is not None:  # replay: the id the journal gave this version
            rec = replace(rec, recording_id=job.recording_id)
        job.rec = rec
        job.patient = f"{rec.cohort}/{rec.subject}" if rec.cohort else rec.subject

    def _ingest(self, jobs: list[Job]) -> list[Job]:
        from ingest.pipeline import ingest_recordings
        from ingest.store import ClipStore, make_failure

        if not jobs:
            return []
        recs = [j.rec for j in jobs if j.rec is not None]
        scan_failures = [
            make_failure(
                recording_id=None,
                source=j.key,
                stage="scan",
                reason=j.problem.reason,
                fix=j.problem.fix,
            )  # fmt: skip
            for j in jobs
            if j.rec is None and j.problem is not None
        ]
        t0 = time.perf_counter()
        report = ingest_recordings(
            recs, self.cfg.store, self.ingest_cfg,
            extra_failures=scan_failures, pipeline_args=batch_pipeline_args(recs, self.cfg),
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        complete = ClipStore.open(self.cfg.store).complete_ids()
        failures = report.failures
        done = []
        for j in jobs:
            j.timings["ingest"] = elapsed
            if j.rec is not None and j.recording_id in complete:
                self.journal.append("ingested", j.key, j.fp, recording_id=j.recording_id)
                done.append(j)
                continue
            if j.problem is not None:
                stage, reason, fix = "scan", j.problem.reason, j.problem.fix
            else:
                rows = failures[failures["recording_id"] == j.recording_id]
                row = rows.iloc[0] if len(rows) else None
                stage = str(row["stage"]) if row is not None else "ingest"
                reason = str(row["reason"]) if row is not None else "not complete after ingest"
                fix = str(row["fix"]) if row is not None else ""
            self._failed(j, stage, reason, fix)
        return done

    def _failed(self, job: Job, stage: str, reason: str, fix: str) -> None:
        self.journal.append(
            "failed", job.key, job.fp, recording_id=job.recording_id, stage=stage,
            reason=reason, fix=fix,
        )  # fmt: skip
        with self._lock:
            self.summary.failed += 1
        self.say(f"FAILED    {job.name} [{stage}]: {reason} Fix: {fix}")

    def _score(self, jobs: list[Job]) -> list[Job]:
        import ray

        from serving.bulk import WorkItem

        if not jobs:
            return []
        existing = self._read_results()
        have = set(zip(existing["recording_id"], existing["model"], strict=True))
        todo = [j for j in jobs if any((j.recording_id, m) not in have for m in self.models)]
        items = [
            WorkItem(
                j.recording_id,
                f"{self.cfg.store}::{j.recording_id}",
                store_url=self.cfg.store,
                models=self.models,
            )  # fmt: skip
            for j in todo
        ]
        frames, failures = [], []
        t0 = time.perf_counter()
        elapsed: dict[str, float] = {}
        if items:
            pool = ray.util.ActorPool(self._workers)
            for frame, fails in pool.map_unordered(lambda w, it: w.score.remote(it), items):
                failures.extend(fails)
                if frame is not None and len(frame):
                    frames.append(frame)
                    elapsed[str(frame["recording_id"].iloc[0])] = time.perf_counter() - t0
        by_job = {j.recording_id: j for j in jobs}
        new = pd.concat(frames, ignore_index=True) if frames else None
        if new is not None:
            new["landing_path"] = new["recording_id"].map(lambda r: by_job[r].key)
            new["fingerprint"] = new["recording_id"].map(lambda r: by_job[r].fp)
            new["scored_at"] = pd.Timestamp(datetime.now(UTC))
            new["superseded"] = False
        merged = merge_results(existing, new)
        if new is not None:
            write_parquet(self.cfg.results, merged)
            self._results = merged
        fails_of: dict[str, list[dict[str, Any]]] = {}
        for f in failures:
            f["source_path"] = by_job[f["recording_id"]].key
            f["fix"] = f.get("fix") or SCORE_FIX
            fails_of.setdefault(f["recording_id"], []).append(f)
        if failures:  # before the journal's lines: a replay rewrites the same keys
            self._write_failures(failures)
        scored = []
        for j in jobs:
            rows = merged[merged["recording_id"] == j.recording_id]
            for f in fails_of.get(j.recording_id, []) if not rows.empty else []:
                self.say(f"warning   {j.name} [score {f['model']}]: {f['reason']} Fix: {f['fix']}")
            if j.recording_id in fails_of and rows.empty:
                f = fails_of[j.recording_id][0]
                self._failed(j, "score", str(f["reason"]), str(f["fix"]))
                continue
            j.timings["score"] = elapsed.get(j.recording_id, 0.0)
            j.patient = j.patient or patient_of(rows)
            j.top = top_line(rows, self.models, self.cfg.top_n)
            self.journal.append("scored", j.key, j.fp, recording_id=j.recording_id, rows=len(rows))
            for old in self.journal.versions_of(j.key):  # the older ones: a newer version
                if old.version >= j.version:  # may be ingested meanwhile, by the loop
                    break
                if old.state not in ("superseded", "failed"):
                    self.journal.append(
                        "superseded", old.key, old.fp, recording_id=old.recording_id,
                        by=j.recording_id,
                    )  # fmt: skip
                    with self._lock:
                        self.summary.superseded += 1
            scored.append(j)
        return scored

    def _write_failures(self, rows: list[dict[str, Any]]) -> None:
        """Merge scoring failures into ``RESULTS.failures.parquet`` (the table of ``soz score``),
        one row per recording x model x stage (a replayed step replaces its row)."""
        path = failures_path(self.cfg.results)
        old = pd.read_parquet(path) if Path(path).is_file() else failures_frame([])
        merged = pd.concat([old, failures_frame(rows)], ignore_index=True)
        merged = merged.drop_duplicates(["recording_id", "model", "stage"], keep="last")
        write_parquet(path, merged.reset_index(drop=True))

    def _read_results(self) -> pd.DataFrame:
        """RESULTS as this watcher last wrote it (read from the file the first time)."""
        if self._results is None:
            if Path(self.cfg.results).is_file():
                self._results = pd.read_parquet(self.cfg.results)
            else:
                return pd.DataFrame(columns=[*RESULT_COLUMNS, *WATCH_COLUMNS])
        return self._results

    def _report(self, jobs: list[Job]) -> None:
        import ray

        from serving.report import select_rows, write_report

        if not jobs:
            return
        results = self._read_results()
        current = results[~results["superseded"].astype(bool)]
        pages: dict[str, float] = {}
        todo: dict[str, pd.DataFrame] = {}
        for j in jobs:
            if j.patient is None:
                j.patient = patient_of(results[results["recording_id"] == j.recording_id])
            if j.patient is None or j.patient in pages or j.patient in todo:
                continue
            if self._pages is None:  # not started: in this process
                t0 = time.perf_counter()
                write_report(current, self.cfg.reports, by="patient", select=j.patient)
                pages[j.patient] = time.perf_counter() - t0
                continue
            todo[j.patient] = select_rows(current, "patient", j.patient)
        if todo:  # one call per batch: the writer hands its heap back once
            pages.update(ray.get(self._pages.write.remote(todo, self.cfg.reports)))
        t0 = time.perf_counter()
        self.write_index()
        t_index = time.perf_counter() - t0
        for j in jobs:
            j.timings["report"] = pages.get(j.patient, 0.0) + t_index
            self.journal.append(
                "reported", j.key, j.fp, recording_id=j.recording_id, page=page_name(j.patient)
            )
            with self._lock:
                self.summary.reported += 1
            t = j.timings
            self.say(
                f"{datetime.now().strftime('%H:%M:%S')} {j.name} -> {j.recording_id}: "
                f"ingest {t.get('ingest', 0):.1f} s, score {t.get('score', 0):.1f} s, "
                f"report {t.get('report', 0):.1f} s; top {j.top}"
            )

    def write_index(self) -> Path:
        """The index page: every arrival (newest first) with its status and report page."""
        index = Path(self.cfg.reports) / "index.html"
        write_text(index, index_page(self.journal))
        return index


#: The fix hint of a scoring failure whose reason carries none (an unexpected error).
SCORE_FIX = (
    "run `soz score` on this recording with -v to see the traceback; the recording stays in "
    "the store, so once fixed, `soz score STORE` scores it."
)

#: Times a version left in flight by an engine error is retried before it is ``failed``.
MAX_ATTEMPTS = 3

#: Channel-seconds of signal up to which a batch is ingested in the watcher's own process
#: (Beam's in-memory FnApiRunner, one core; the scoring stage has the others meanwhile). Worker
#: processes are started per batch and pay for themselves only on long batches: measured (load
#: 35-47), batches of three 5-min x 128-contact recordings cost 94 CPU-s per recording-hour
#: (watcher and its processes) with two worker processes, 47 in process.
IN_PROCESS_CHANNEL_S = 128 * 3600.0

#: Options of every batch's local pipeline: the graph is the one ``soz ingest`` builds (its
#: transforms carry no type hints to check) and is built again for each batch.
BATCH_ARGS = ("--no_pipeline_type_check",)


def batch_pipeline_args(recs: Sequence[Recording], cfg: WatchConfig) -> list[str]:
    """Beam options for one batch: ``cfg.pipeline_args`` when given, else the local runner,
    in-process up to :data:`IN_PROCESS_CHANNEL_S`, one worker per core above."""
    if cfg.pipeline_args:
        return list(cfg.pipeline_args)
    size = sum(r.duration_s * len(r.contacts) for r in recs)
    return [*BATCH_ARGS, *(["--direct_num_workers=1"] if size <= IN_PROCESS_CHANNEL_S else [])]
