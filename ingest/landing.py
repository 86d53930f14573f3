"""What has landed in a drop folder, and whether each recording there is complete.

Hospitals export recordings to a landing folder while a watcher (``soz watch``) takes them.
A recording must be taken only once it is **complete**, never half-copied. This module decides
that from the files alone (no Beam, no Ray):

- **stable**: none of the recording's files changed for ``stable_s`` seconds (newest mtime);
- **EDF/BDF**: the header's record count agrees with the file size (a copy still running, or
  one that stopped, has fewer bytes than the header declares: :func:`edf_state`);
- **BIDS runs**: the signal file and the sidecars the reader needs are all there (``_ieeg.json``,
  ``_channels.tsv``, ``_events.tsv`` for an ictal run, the dataset's
  ``dataset_description.json``); a BrainVision recording needs its ``.eeg`` and ``.vmrk``.

:func:`find_arrivals` lists every recording of a landing folder with its state and a content
fingerprint (size, mtime and a hash of the first and last bytes of every file), so a file
replaced by a new version (same name, new content) is told apart from the one taken before.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.signals import EXTENSIONS

#: Bytes hashed at each end of every file for its fingerprint.
FINGERPRINT_BYTES = 1 << 16

State = Literal["complete", "settling", "waiting", "corrupt"]


@dataclass(frozen=True)
class Arrival:
    """One recording found in a landing folder.

    Parameters
    ----------
    key : str
        The signal file's path (absolute): the journal's key for this recording.
    landing : str
        The landing folder it was found in.
    kind : {"file", "bids"}
        A plain recording, or a run of a BIDS dataset rooted at ``landing``.
    files : tuple of str
        Every file the recording consists of (signal file first, then sidecars present).
    state : {"complete", "settling", "waiting", "corrupt"}
        ``complete``: may be taken. ``settling``: a file changed less than ``stable_s`` ago.
        ``waiting``: stable but not whole (EDF shorter than its header says, a sidecar
        missing). ``corrupt``: stable, and the EDF header is unreadable.
    detail : str
        Why it is not complete (empty when complete).
    fingerprint : str
        Content fingerprint of ``files`` (empty unless complete or corrupt).
    mtime : float
        Newest modification time of ``files`` (seconds since the epoch).
    size : int
        Total bytes of ``files``.
    """

    key: str
    landing: str
    kind: Literal["file", "bids"]
    files: tuple[str, ...]
    state: State
    detail: str = ""
    fingerprint: str = ""
    mtime: float = 0.0
    size: int = 0

    @property
    def name(self) -> str:
        """The signal file's path relative to its landing folder."""
        return os.path.relpath(self.key, self.landing)


def _is_signal(name: str) -> bool:
    low = name.lower()
    return any(low.endswith(ext) for ext in EXTENSIONS)


def _fmt(path: str) -> str:
    low = path.lower()
    for ext, fmt in EXTENSIONS.items():
        if low.endswith(ext):
            return fmt
    return ""


def edf_state(path: str | os.PathLike, size: int | None = None) -> tuple[State, str]:
    """Whether an EDF/BDF file holds every data record its header declares.

    Parameters
    ----------
    path : path-like
        An ``.edf`` or ``.bdf`` file.
    size : int or None
        The file's size in bytes (``os.stat`` when ``None``).

    Returns
    -------
    state : {"complete", "waiting", "corrupt"}
        ``waiting`` when the file is shorter than the header declares (or shorter than the
        header itself); ``corrupt`` when the header's numbers cannot be read.
    detail : str
        What was found (records declared and present), empty when complete.
    """
    path = Path(path)
    size = path.stat().st_size if size is None else size
    per_sample = 3 if path.name.lower().endswith(".bdf") else 2
    with path.open("rb") as f:
        fixed = f.read(256)
        if len(fixed) < 256:
            return "waiting", f"{size} bytes: not even the 256-byte EDF header yet"
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return "corrupt", "the fixed 256-byte EDF header does not hold valid numbers"
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            return "corrupt", f"{n_signals} signals but a {header_bytes}-byte header"
        if size < header_bytes:
            return "waiting", f"{size} of the header's {header_bytes} bytes"
        f.seek(256 + n_signals * 216)
        raw = f.read(n_signals * 8)
    try:
        samples = sum(int(raw[i * 8 : (i + 1) * 8].decode("ascii")) for i in range(n_signals))
    except (UnicodeDecodeError, ValueError):
        return "corrupt", "unreadable samples-per-record fields in the EDF header"
    if n_records < 0:  # -1: the recorder never closed the file; nothing to compare
        return "complete", ""
    record_bytes = samples * per_sample
    expected = header_bytes + n_records * record_bytes
    if size < expected:
        have = (size - header_bytes) // max(record_bytes, 1)
        return "waiting", f"{have} of {n_records} data records ({size} of {expected} bytes)"
    return "complete", ""


def fingerprint(files: Sequence[str | os.PathLike], *, nbytes: int = FINGERPRINT_BYTES) -> str:
    """A content fingerprint of ``files``: sha256 over each name, size, mtime, head and tail.

    Cheap for any file size (``2 * nbytes`` read per file); a file rewritten with new content
    gets a new mtime and almost surely new head/tail bytes, so a new fingerprint.
    """
    h = hashlib.sha256()
    for p in files:
        st = os.stat(p)
        h.update(f"{os.path.basename(p)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(nbytes))
            if st.st_size > 2 * nbytes:
                f.seek(st.st_size - nbytes)
            h.update(f.read(nbytes))
    return h.hexdigest()[:32]


_TASK = re.compile(r"_task-([A-Za-z0-9]+)")


def bids_needed(signal: str | os.PathLike, root: str | os.PathLike) -> list[str]:
    """The files a BIDS iEEG run needs before it can be read (signal file first).

    ``dataset_description.json`` of ``root``, the run's ``_ieeg.json`` and ``_channels.tsv``,
    its ``_events.tsv`` when the task is ictal (the seizure onsets are in it), and a
    BrainVision run's ``.eeg`` / ``.vmrk``.
    """
    signal = Path(signal)
    low = signal.name.lower()
    ext = next(e for e in EXTENSIONS if low.endswith(e))
    base = signal.name[: -len(ext) - len("_ieeg")]
    needed = [
        signal,
        Path(root) / "dataset_description.json",
        signal.with_name(f"{base}_ieeg.json"),
        signal.with_name(f"{base}_channels.tsv"),
    ]
    task = _TASK.search(signal.name)
    if task and task.group(1).lower() == "ictal":
        needed.append(signal.with_name(f"{base}_events.tsv"))
    if ext == ".vhdr":
        needed += [signal.with_suffix(".eeg"), signal.with_suffix(".vmrk")]
    return [str(p) for p in needed]


def _candidates(landing: Path) -> list[tuple[str, list[str], Literal["file", "bids"]]]:
    bids = (landing / "dataset_description.json").is_file()
    out = []
    for dirpath, dirnames, filenames in os.walk(landing):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not _is_signal(name):
                continue
            path = os.path.join(dirpath, name)
            bids_run = os.path.basename(dirpath) == "ieeg" and "_ieeg." in name.lower()
            if bids or bids_run:
                # A BIDS-named run waits for the dataset's dataset_description.json: taken
                # as a plain file it would lose its sidecars' labels.
                if bids_run:
                    out.append((path, bids_needed(path, landing), "bids"))
                continue
            else:
                needed = [path]
                if name.lower().endswith(".vhdr"):
                    stem = path[: -len(".vhdr")]
                    needed += [stem + ".eeg", stem + ".vmrk"]
                out.append((path, needed, "file"))
    return out


def find_arrivals(landing: str | os.PathLike, *, now: float, stable_s: float) -> list[Arrival]:
    """Every recording in ``landing`` with its state (see :class:`Arrival`).

    Parameters
    ----------
    landing : path-like
        A local folder: a BIDS dataset root (``dataset_description.json``, which may arrive
        last) or a folder of plain recordings, searched recursively; hidden files (partial
        downloads such as ``.name.part``) are ignored.
    now : float
        The current time (``time.time()``), explicit so that callers and tests control it.
    stable_s : float
        Seconds a recording's files must have stayed unchanged.

    Returns
    -------
    list of Arrival
        Sorted by key.
    """
    landing = Path(landing).resolve()
    arrivals = []
    for key, needed, kind in _candidates(landing):
        present, missing, mtime, size = [], [], 0.0, 0
        for p in needed:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                missing.append(os.path.basename(p))
                continue
            present.append(p)
            mtime, size = max(mtime, st.st_mtime), size + st.st_size
        common = {"key": key, "landing": str(landing), "kind": kind, "files": tuple(present)}
        common.update(mtime=mtime, size=size)
        if key not in present:  # removed between the listing and the stat
            continue
        if now - mtime < stable_s:
            detail = f"changed {now - mtime:.1f} s ago (stable after {stable_s:g} s)"
            arrivals.append(Arrival(**common, state="settling", detail=detail))
            continue
        if missing:
            detail = f"waiting for {', '.join(missing)}"
            arrivals.append(Arrival(**common, state="waiting", detail=detail))
            continue
        state: State = "complete"
        detail = ""
        if _fmt(key) in ("edf", "bdf"):
            state, detail = edf_state(key)
        run_files = [p for p in present if not p.endswith("dataset_description.json")]
        fp = fingerprint(run_files) if state != "waiting" else ""
        arrivals.append(Arrival(**common, state=state, detail=detail, fingerprint=fp))
    return sorted(arrivals, key=lambda a: a.key)


# ------------------------------------------------------------------------------ fsspec URLs
def is_url(landing: str) -> bool:
    """Whether ``landing`` is an fsspec URL (``file://``, ``memory://``, ``gs://`` ...)."""
    return "://" in str(landing)


class RemoteLanding:
    """A landing URL mirrored into a local folder, so the readers can open its files by path.

    :meth:`sync` lists the URL (``fs.find``) and copies every file whose size and
    modification stamp (``mtime``, ``LastModified``, ``updated`` or ``created``, and the ETag
    when there is one) have not changed for ``stable_s`` seconds *as seen from here* (object
    stores do not all keep a stamp that moves while a file grows) into ``local``, under the
    same relative path. A copy is written as a hidden ``.name.part`` and renamed, its mtime
    set to when its content was first seen, so :func:`find_arrivals` on ``local`` applies
    the usual checks (EDF record count, BIDS sidecars) without a second stable window; a file
    that changes again later is copied again (a new version, a new fingerprint).

    Parameters
    ----------
    url : str
        The landing URL; ``file://`` URLs need no mirror (see :func:`local_landing`).
    local : path-like
        The mirror folder (``soz watch`` keeps it beside the results).
    """

    def __init__(self, url: str, local: str | os.PathLike) -> None:
        import fsspec

        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            from ingest.errors import ConfigError

            raise ConfigError(
                f"{url}: no filesystem for this URL ({e}); install it, or mount the bucket and "
                "watch the mount point."
            ) from e
        self.root = self.root.rstrip("/")
        self.local = Path(local)
        self._seen: dict[str, tuple[tuple, float]] = {}  # remote path -> (stamp, first seen)
        self._copied: dict[str, tuple] = {}  # remote path -> stamp of the local copy
        self.settling = 0  # files left to settle at the last sync

    def exists(self) -> bool:
        return bool(self.fs.isdir(self.root))

    @staticmethod
    def _stamp(info: dict) -> tuple:
        when = next((info[k] for k in ("mtime", "LastModified", "updated", "created") if k in info),
                    None)  # fmt: skip
        return (info.get("size"), str(when), str(info.get("ETag") or info.get("etag") or ""))

    @staticmethod
    def _when(info: dict) -> float | None:
        for k in ("mtime", "LastModified", "updated", "created"):
            v = info.get(k)
            if isinstance(v, int | float):
                return float(v)
            if hasattr(v, "timestamp"):
                return float(v.timestamp())
        return None

    def sync(self, *, now: float, stable_s: float) -> Path:
        """Copy what has settled; returns the mirror folder for :func:`find_arrivals`
        (:attr:`settling` then counts the files not copied yet)."""
        self.local.mkdir(parents=True, exist_ok=True)
        self.settling = 0
        listing = self.fs.find(self.root, detail=True)
        for path, info in sorted(listing.items()):
            if info.get("type") == "directory":
                continue
            rel = os.path.relpath(path.rstrip("/"), self.root)
            if any(part.startswith(".") for part in Path(rel).parts):
                continue  # a partial upload, as in a local landing folder
            stamp = self._stamp(info)
            seen = self._seen.get(path)
            if seen is None or seen[0] != stamp:
                self._seen[path] = seen = (stamp, now)
            if self._copied.get(path) == stamp:
                continue
            if now - seen[1] < stable_s:
                self.settling += 1
                continue
            dest = self.local / rel
            # the remote's own time when it has one: a copy made again (a restarted watcher)
            # has the same mtime, so the same fingerprint, and is not taken as a new version
            when = self._when(info)
            when = seen[1] if when is None else when
            try:
                st = dest.stat()
                if st.st_size == info.get("size") and abs(st.st_mtime - when) < 1e-3:
                    self._copied[path] = stamp  # copied by an earlier watcher
                    continue
            except FileNotFoundError:
                pass
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(f".{dest.name}.part")
            self.fs.get_file(path, str(part))
            os.utime(part, (when, when))
            os.replace(part, dest)
            self._copied[path] = stamp
        return self.local


def local_landing(landing: str) -> str:
    """A ``file://`` URL as a local path; anything else unchanged."""
    return landing[len("file://") :] if str(landing).startswith("file://") else landing
