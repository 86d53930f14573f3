"""Who may write what in a store while an ingest runs, and workers that die with their driver.

Three guards make a killed ingest safe to re-run:

* **Leases.** The driver of a run holds ``STORE/leases/<recording_id>.json`` for each recording
  it ingests: ``{"pid", "host", "proc_start", "started_at", "token"}``. A second run leaves a
  recording alone while its lease names a live process, and takes over a lease whose owner is
  dead (no such pid, a zombie, or a pid reused by a process started later). Before every shard
  write a worker checks that the lease still carries its run's token, so a straggler of a dead
  run never overwrites the shard of the run that took over.
* **The store lock** (:func:`store_lock`): ``flock`` on ``STORE/.lock`` serialises lease
  changes and manifest commits between processes. The kernel drops it when its holder dies,
  so a kill never leaves it held. Local stores only: on object stores there is no lock, and
  two runs into one store at once are not supported (the last commit wins).
* **Workers die with their driver** (:func:`watch_driver`): the local runner's worker processes
  are children (through ``sh -c``) of the driver; each starts a thread that kills its own
  process once the driver is gone, and checks again before each write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pandas as pd

from ingest.fileio import write_json
from ingest.store import ClipStore

logger = logging.getLogger(__name__)

LEASES = "leases"
_LOCK = ".lock"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children...), from /proc; [] elsewhere."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        fields = _proc_stat(int(entry)) if entry.isdigit() else None
        if fields and len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc; [] elsewhere."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        fields = _proc_stat(int(entry)) if entry.isdigit() else None
        if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (``""`` where /proc has none)."""
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else ""


def pid_alive(pid: int, proc_start: str = "") -> bool:
    """Whether ``pid`` is a live (not zombie) process, started at ``proc_start`` if given."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust the signal check
    if fields[0] in ("Z", "X"):
        return False
    return not proc_start or process_start(pid) == proc_start


@dataclass(frozen=True)
class Owner:
    """The run holding a lease: its driver process and a token unique to the run."""

    pid: int
    host: str
    proc_start: str
    started_at: str
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        """An owner for a new run driven by this process."""
        pid = os.getpid()
        return cls(
            pid=pid,
            host=socket.gethostname(),
            proc_start=process_start(pid),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            token=uuid.uuid4().hex,
        )

    def alive(self) -> bool:
        """Whether the owning process still runs (an owner on another host counts as alive)."""
        if self.host != socket.gethostname():
            return True
        return pid_alive(self.pid, self.proc_start)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started_at}"


@contextlib.contextmanager
def store_lock(store: ClipStore) -> Iterator[None]:
    """Hold the store's exclusive lock (``flock`` on ``STORE/.lock``; no-op off local disks)."""
    if not store.is_local:
        yield
        return
    import fcntl

    os.makedirs(store.root, exist_ok=True)
    fd = os.open(os.path.join(store.root, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _lease_path(store: ClipStore, recording_id: str) -> str:
    return f"{store.root}/{LEASES}/{recording_id}.json"


def lease_holder(store: ClipStore, recording_id: str) -> Owner | None:
    """The owner named by a recording's lease, or ``None`` when it has none (or it is unreadable)."""
    try:
        with store.fs.open(_lease_path(store, recording_id), "rb") as f:
            held = json.loads(f.read())
        return Owner(**{k: held[k] for k in Owner.__dataclass_fields__})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def acquire_leases(
    store: ClipStore, recording_ids: Iterable[str], owner: Owner
) -> dict[str, Owner]:
    """Take the leases of ``recording_ids`` for ``owner``; return those held by live runs.

    Leases of dead runs are removed first, of whatever recording (a killed run leaves them).

    Returns
    -------
    dict of str to Owner
        Recording id -> the live owner that keeps it (these are not taken).
    """
    busy: dict[str, Owner] = {}
    with store_lock(store):
        _drop_stale(store)
        for rid in recording_ids:
            held = lease_holder(store, rid)
            if held is not None and held.token != owner.token:
                if held.alive():
                    busy[rid] = held
                    continue
                logger.info("%s: taking over the lease of a dead run (%s)", rid, held.describe())
            url = _lease_path(store, rid) if store.is_local else f"{store.url}/{LEASES}/{rid}.json"
            write_json(url, {**asdict(owner), "recording_id": rid})
    return busy


_TMP = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")  # ingest.fileio's temporaries


def _drop_stale(store: ClipStore) -> None:
    """Remove the leases of dead runs (of any recording) and the temporaries that writers
    killed mid-write left in the store's root and lease folders."""
    for folder in (store.root, f"{store.root}/{LEASES}"):
        try:
            paths = store.fs.ls(folder, detail=False)
        except FileNotFoundError:
            continue
        for path in paths:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            tmp = _TMP.match(name)
            if tmp is not None:
                stale = not pid_alive(int(tmp.group(1)))
            elif folder != store.root and name.endswith(".json"):
                held = lease_holder(store, name[: -len(".json")])
                stale = held is not None and not held.alive()
            else:
                continue
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.rm(path)


def release_leases(store: ClipStore, recording_ids: Iterable[str], owner: Owner) -> None:
    """Remove the leases of ``recording_ids`` that ``owner`` still holds."""
    with store_lock(store):
        for rid in recording_ids:
            held = lease_holder(store, rid)
            if held is not None and held.token == owner.token:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.rm(_lease_path(store, rid))
        folder = f"{store.root}/{LEASES}"
        with contextlib.suppress(OSError):
            if store.fs.exists(folder) and not store.fs.ls(folder, detail=False):
                store.fs.rmdir(folder)


class LeaseLost(RuntimeError):
    """A worker's run no longer holds the lease of the recording it was about to write."""


def check_lease(store: ClipStore, recording_id: str, token: str) -> None:
    """Raise :class:`LeaseLost` unless the lease of ``recording_id`` carries ``token``."""
    held = lease_holder(store, recording_id)
    if held is None or held.token != token:
        raise LeaseLost(
            f"{recording_id}: the lease is held by "
            f"{held.describe() if held else 'no run'}, not by this run; not writing."
        )


# ------------------------------------------------------------------ workers die with the driver
_watched: set[int] = set()
_watch_lock = threading.Lock()


def _is_ancestor(pid: int) -> bool:
    cur = os.getppid()
    for _ in range(8):
        if cur == pid:
            return True
        fields = _proc_stat(cur)
        if not fields or cur <= 1:
            return False
        cur = int(fields[1])
    return False


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def driver_gone(driver_pid: int, driver_start: str) -> bool:
    """Whether this worker's driver has died (False in the driver itself)."""
    return driver_pid != os.getpid() and not pid_alive(driver_pid, driver_start)


def watch_driver(driver_pid: int, driver_host: str, driver_start: str, interval_s: float = 0.1):
    """In a local worker process of ``driver_pid``: kill this process once the driver is gone.

    Does nothing in the driver itself, on another host, or in a process the driver did not
    start (a remote runner's worker). Starts one daemon thread per process.
    """
    if driver_pid == os.getpid() or driver_host != socket.gethostname():
        return
    with _watch_lock:
        if driver_pid in _watched or not _is_ancestor(driver_pid):
            return
        _watched.add(driver_pid)

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(interval_s):
            if not pid_alive(driver_pid, driver_start):
                _die()

    threading.Thread(target=watch, name="sozkit-driver-watch", daemon=True).start()


def die_if_driver_gone(driver_pid: int, driver_start: str) -> None:
    """Kill this worker process now if its (watched) driver is gone (called before each write)."""
    if driver_pid in _watched and driver_gone(driver_pid, driver_start):
        _die()


# ------------------------------------------------------------------ what a run's workers carry
@dataclass(frozen=True)
class RunContext:
    """What the workers of one run know about it: the run's lease token and its driver.

    Attributes
    ----------
    started : Timestamp
        When the run started (UTC); rows committed since then are this run's.
    token : str or None
        The run's lease token (this module); ``None``: no leases (tests that run
        the transforms on their own), nothing is checked before a write.
    driver_pid, driver_host, driver_start : int, str, str
        The driver process; local workers die with it (:func:`watch_driver`).
    """

    started: pd.Timestamp = field(default_factory=lambda: pd.Timestamp(datetime.now(UTC)))
    token: str | None = None
    driver_pid: int = field(default_factory=os.getpid)
    driver_host: str = field(default_factory=socket.gethostname)
    driver_start: str = field(default_factory=lambda: process_start(os.getpid()))

    @classmethod
    def of(cls, owner: Owner) -> RunContext:
        return cls(
            token=owner.token,
            driver_pid=owner.pid,
            driver_host=owner.host,
            driver_start=owner.proc_start,
        )

    def watch(self) -> None:
        """In a worker: die with the driver (see :func:`watch_driver`)."""
        watch_driver(self.driver_pid, self.driver_host, self.driver_start)

    def before_write(self, store: ClipStore, recording_id: str) -> None:
        """Stop a worker whose driver died, or whose run lost the recording's lease."""
        die_if_driver_gone(self.driver_pid, self.driver_start)
        if self.token is not None:
            check_lease(store, recording_id, self.token)
