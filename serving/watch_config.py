"""What ``soz watch`` is configured with and keeps track of: :class:`WatchConfig`, the
:class:`Job` of one recording version going through the stages, the :class:`WatchSummary`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ConfigError, RecordingError
from ingest.landing import Arrival, RemoteLanding, is_url, local_landing
from ingest.recording import Recording
from serving.journal import Version


@dataclass(frozen=True)
class WatchConfig:
    """Configuration of :class:`Watcher` (``soz watch``).

    Parameters
    ----------
    landings : tuple of str
        Landing folders (BIDS roots or folders of plain recordings), local or fsspec URLs
        (``file://``, ``memory://``, ``gs://`` ... : mirrored locally, see
        :class:`ingest.landing.RemoteLanding`).
    store : str
        The clip store recordings are ingested into (created with the run's ingest config).
    run_dir : str
        Training run whose models score every arrival.
    results : str
        The results ``.parquet``; the journal is written beside it.
    reports : str
        Folder of the report pages and the index of arrivals.
    label_sheet : str or None
        SOZ label sheet for plain recordings.
    line_freq : float or None
        Power-line frequency of recordings that state none (default: the run's store's).
    poll_s : float
        Seconds between two listings of the landing folders.
    stable_s : float
        Seconds a recording's files must stay unchanged before it is taken.
    once : bool
        Take what is complete now (waiting for files still settling), then stop.
    give_up_s : float
        A recording that stays incomplete (truncated EDF, missing sidecar) this long after its
        last change is taken anyway, so the reader's reason lands in the failures table.
    pipeline_args : tuple of str
        Beam pipeline options (``--beam-args``).
    num_workers : int
        Scoring actors.
    worker_cpus : float
        CPUs Ray reserves for each scoring actor (``soz serve --watch`` gives less than one
        where the Serve replicas hold every CPU).
    batch_size : int
        Sequences per forward pass.
    top_n : int
        Contacts named on each arrival's progress line.
    """

    landings: tuple[str, ...]
    store: str
    run_dir: str
    results: str
    reports: str
    label_sheet: str | None = None
    line_freq: float | None = None
    poll_s: float = 5.0
    stable_s: float = 30.0
    once: bool = False
    give_up_s: float = 600.0
    pipeline_args: tuple[str, ...] = ()
    num_workers: int = 1
    worker_cpus: float = 1.0
    batch_size: int = 8
    top_n: int = 3

    def __post_init__(self) -> None:
        if not self.landings:
            raise ConfigError("give at least one landing folder to watch.")
        if self.poll_s <= 0:
            raise ConfigError(f"poll_s={self.poll_s} must be > 0 seconds.")
        if self.stable_s < 0 or self.give_up_s < self.stable_s:
            raise ConfigError(
                f"stable_s={self.stable_s} must be >= 0 and give_up_s={self.give_up_s} >= it."
            )
        if not str(self.results).endswith(".parquet"):
            raise ConfigError(f"results={self.results!r} must be a .parquet file.")
        if self.num_workers < 1 or self.top_n < 1 or self.worker_cpus < 0:
            raise ConfigError(
                f"{self.num_workers=} and {self.top_n=} must be >= 1, {self.worker_cpus=} >= 0."
            )
        for landing in self.landings:
            if is_url(local_landing(landing)):
                if not RemoteLanding(landing, ".").exists():
                    raise ConfigError(f"landing URL {landing} is not a folder; create it first.")
            elif not Path(local_landing(landing)).is_dir():
                raise ConfigError(f"landing folder {landing} does not exist; create it first.")

    def mirror(self, url: str) -> Path:
        """The local copy of a landing URL, beside the results (``r.landing/<url>``)."""
        proto, _, rest = url.partition("://")
        rest = re.sub(r"[^A-Za-z0-9._/-]+", "_", rest).strip("/")  # keeps the folder's name
        return Path(str(self.results)[: -len(".parquet")] + ".landing") / proto / rest


@dataclass
class Job:
    """One recording version going through the stages: the landed files (an
    :class:`ingest.landing.Arrival`, or one rebuilt from the journal on replay) and what the
    stages learn about it."""

    arrival: Arrival
    version: int
    recording_id: str | None = None
    rec: Recording | None = None
    patient: str | None = None
    problem: RecordingError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    top: str = ""

    @classmethod
    def from_journal(cls, v: Version) -> Job:
        """The job of a version a killed watcher left in flight (its ``taken`` line)."""
        ev = v.events[0]
        arrival = Arrival(
            key=v.key, landing=ev["landing"], kind=ev.get("kind") or "file",
            files=tuple(ev.get("files") or [v.key]), state="complete", fingerprint=v.fp,
            mtime=float(ev.get("complete_at") or 0.0),
        )  # fmt: skip
        return cls(arrival, v.version, recording_id=v.recording_id)

    @property
    def key(self) -> str:
        return self.arrival.key

    @property
    def fp(self) -> str:
        return self.arrival.fingerprint

    @property
    def name(self) -> str:
        return os.path.relpath(self.key, self.arrival.landing)


@dataclass
class WatchSummary:
    """What a watcher did, for the exit line."""

    reported: int = 0
    failed: int = 0
    superseded: int = 0
    replayed: int = 0
    waiting: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    polls: int = 0
    last_poll_at: float | None = None
    error: str | None = None

    def line(self) -> str:
        waiting = f", {len(self.waiting)} waiting" if self.waiting else ""
        return (
            f"watch: {self.reported} recording(s) ingested, scored and reported, "
            f"{self.failed} failed, {self.superseded} superseded by a new version"
            f"{waiting} ({self.replayed} carried on from the journal), in {self.seconds:.0f} s"
            + (" (stopped by Ctrl-C)" if self.interrupted else "")
        )

    def status(self, state: str) -> dict:
        """The watcher's state as ``soz serve --watch``'s ``/health`` shows it."""
        return {
            "state": state, "polls": self.polls, "last_poll_at": self.last_poll_at,
            "reported": self.reported, "failed": self.failed, "superseded": self.superseded,
            "replayed": self.replayed, "waiting": sorted(self.waiting), "error": self.error,
        }  # fmt: skip
