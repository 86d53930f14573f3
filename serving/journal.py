"""The commit log of ``soz watch``: an append-only journal of what happened to each landed file.

One JSON object per line (``RESULTS`` without ``.parquet`` + ``.watch.jsonl``, beside the
results file), appended and ``fsync``-ed before the watcher goes on, so a line that is in the
file happened. Each line is one step of one recording version, keyed by the landing path
(``key``) and the content fingerprint (``fp``, :func:`ingest.landing.fingerprint`)::

    taken -> ingested -> scored -> reported        the normal life of a version
    failed                                         unreadable for good (this fingerprint)
    superseded                                     a newer version of the same key was scored

A kill -9 can cut the last line short; :class:`Journal` drops a torn last line when it opens
the file (that step is then simply redone). Replay on restart (:meth:`Journal.pending`): the
latest state of every key that is ``taken``, ``ingested`` or ``scored`` is carried on from
there; every step is idempotent (ingest skips complete recordings, scoring replaces the rows of
its ``(recording_id, model)`` pairs, a report page is rewritten whole), so redoing the step that
was in flight never adds a second copy.

The journal is shared by the watcher's two threads (ingest, and the scoring stage of
:mod:`serving.watch_stage`): a lock makes each append one whole line and lets the readers
(:meth:`Journal.pending`, iteration, :meth:`Journal.versions_of`) see consistent snapshots.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.fileio import json_safe

#: States a version passes through, in order; ``failed`` and ``superseded`` end it.
STATES = ("taken", "ingested", "scored", "reported", "failed", "superseded")
#: States replay carries on from.
IN_FLIGHT = ("taken", "ingested", "scored")


def journal_path(results: str | os.PathLike) -> Path:
    """The journal beside a results file: ``results.parquet`` -> ``results.watch.jsonl``."""
    results = Path(results)
    stem = results.name[: -len(".parquet")] if results.name.endswith(".parquet") else results.name
    return results.with_name(f"{stem}.watch.jsonl")


@dataclass
class Version:
    """One version (fingerprint) of a landed recording, as the journal last saw it."""

    key: str
    fp: str
    version: int
    recording_id: str | None = None
    state: str = "taken"
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_at(self) -> str:
        return self.events[0]["at"] if self.events else ""

    def last(self, state: str) -> dict[str, Any] | None:
        """The latest event of ``state`` of this version, if any."""
        for ev in reversed(self.events):
            if ev["state"] == state:
                return ev
        return None


class Journal:
    """The append-only commit log (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ``.jsonl`` file; created with its folder when absent.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.versions: dict[tuple[str, str], Version] = {}
        self.by_key: dict[str, list[Version]] = {}
        self.n_torn = 0
        self._lock = threading.Lock()
        self._load()
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open, closed in close()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line (killed mid-write): that step is redone
            self.n_torn = 1
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        for line in data[:end].decode("utf-8").splitlines():
            if line.strip():
                self._apply(json.loads(line))

    def _apply(self, ev: dict[str, Any]) -> Version:
        key, fp = ev["key"], ev["fp"]
        v = self.versions.get((key, fp))
        if v is None:
            versions = self.by_key.setdefault(key, [])
            v = Version(key=key, fp=fp, version=int(ev.get("version") or len(versions) + 1))
            self.versions[(key, fp)] = v
            versions.append(v)
        if ev.get("recording_id"):
            v.recording_id = ev["recording_id"]
        v.state = ev["state"]
        v.events.append(ev)
        return v

    def append(self, state: str, key: str, fp: str, **fields: Any) -> Version:
        """Record one step durably (written and fsync-ed before returning)."""
        if state not in STATES:
            raise ValueError(f"{state=} must be one of {STATES}.")
        ev = {"at": datetime.now(UTC).isoformat(), "state": state, "key": key, "fp": fp}
        ev.update(json_safe(fields))
        line = json.dumps(ev, allow_nan=False) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())
            return self._apply(ev)

    def get(self, key: str, fp: str) -> Version | None:
        return self.versions.get((key, fp))

    def latest(self, key: str) -> Version | None:
        """The newest version of ``key`` (``None`` if never seen)."""
        versions = self.by_key.get(key)
        return versions[-1] if versions else None

    def next_version(self, key: str) -> int:
        return len(self.by_key.get(key, ())) + 1

    def versions_of(self, key: str) -> list[Version]:
        """Every version of ``key``, oldest first (a snapshot)."""
        with self._lock:
            return list(self.by_key.get(key, ()))

    def pending(self) -> list[Version]:
        """Versions a killed watcher left in flight (the newest of their key only)."""
        with self._lock:
            return [vs[-1] for vs in self.by_key.values() if vs[-1].state in IN_FLIGHT]

    def __iter__(self) -> Iterator[Version]:
        with self._lock:
            return iter(list(self.versions.values()))

    def close(self) -> None:
        with self._lock:
            self._f.close()
