"""The stages of ``soz watch`` after ingest: one batch scored, and the one before reported, each
on a thread of its own, while the watcher's loop lists the landing folders and ingests the next.

:class:`BatchStage` runs ``work(jobs)`` for one batch at a time on a daemon thread. Handing it
a batch (:meth:`BatchStage.submit`) first waits for the batch before it, so at most one batch is
in each stage (a queue of one: ingest never runs more than one batch ahead of scoring, scoring
more than one ahead of the reports, and batches finish in the order they were taken). The
watcher chains two: the scoring stage's ``work`` ends by submitting its batch to the report
stage. An exception of ``work`` is raised in the thread that next calls
:meth:`~BatchStage.wait` (or :meth:`~BatchStage.submit`): the watcher's loop for the scoring
stage, the scoring stage (then the loop) or the loop's drain for the report stage; the batch's
recordings then stay in flight in the journal and are replayed
(:meth:`serving.watch.Watcher.replay`).

The report pages are drawn by a :class:`PageWriter` actor (:func:`page_writer`), a process of
their own on the watcher's node, so that they do not hold the watcher's interpreter lock while
its loop ingests the next batch in process; one call per batch, its heap handed back once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

#: Seconds between two checks of a stop signal while waiting for the stage (the wait stays
#: interruptible by a second Ctrl-C).
WAIT_SLICE_S = 0.2


class BatchStage:
    """``work(jobs)`` for one batch at a time, on a daemon thread (see the module docstring).

    Parameters
    ----------
    work : callable
        Called with each submitted batch, in the order submitted.
    name : str
        The thread's name.
    """

    def __init__(self, work: Callable[[Sequence[Any]], None], *, name: str) -> None:
        self._work = work
        self._name = name
        self._todo: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        #: The batch handed over and not yet waited for (the watcher's thread reads it).
        self.jobs: tuple[Any, ...] = ()

    @property
    def idle(self) -> bool:
        """No batch is being worked on (the last one may still have to be :meth:`wait`-ed)."""
        return self._idle.is_set()

    def submit(self, jobs: Sequence[Any]) -> None:
        """Wait for the batch before (raising its error, if any), then start on ``jobs``."""
        self.wait()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        self.jobs = tuple(jobs)
        self._idle.clear()
        self._todo.put(self.jobs)

    def wait(self) -> None:
        """Block until the batch handed over is done; raise what its ``work`` raised."""
        while not self._idle.wait(WAIT_SLICE_S):
            pass
        self.jobs = ()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Let the thread end once its batch is done (it is a daemon: it never holds up exit)."""
        try:
            self._todo.put_nowait(None)
        except queue.Full:
            pass

    def _loop(self) -> None:
        while True:
            jobs = self._todo.get()
            if jobs is None:
                return
            try:
                self._work(jobs)
            except BaseException as e:  # handed to the watcher's thread by wait()
                self._error = e
            finally:
                self._idle.set()


class PageWriter:
    """Writes report pages off the watcher's process (a Ray actor of :func:`page_writer`).

    A patient page is matplotlib figures drawn from Python: in the watcher's process they would
    hold its interpreter lock while the loop ingests the next batch there, so they run here.
    """

    def __init__(self) -> None:
        from serving import report  # noqa: F401 - imported once, when the watcher starts
        from serving.watch_outputs import use_system_heap

        use_system_heap()

    def write(self, pages: dict[str, pd.DataFrame], out_dir: str) -> dict[str, float]:
        """``write_report(rows, out_dir, by="patient", select=patient)`` for every
        ``patient: rows`` of one batch; returns each page's seconds.

        The heap is handed back once per batch, not per page: a full ``gc.collect`` of this
        process (matplotlib's objects) cost ~15 % of its time when run after every page.
        """
        from serving.report import write_report
        from serving.watch_outputs import release_memory

        seconds = {}
        for patient, rows in pages.items():
            t0 = time.perf_counter()
            write_report(rows, out_dir, by="patient", select=patient)
            seconds[patient] = time.perf_counter() - t0
        release_memory()
        return seconds


def page_writer() -> Any:
    """A :class:`PageWriter` actor on this node (the report folder is this node's), taking no
    CPU from the scoring actors' reservation."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(num_cpus=0)(PageWriter)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        .remote()
    )
