"""Where a recording to score comes from: a path under the data roots, or an uploaded file.

The service only reads files below the folders it was started with (``--data-root``). A request
path is rejected (:class:`PathRejected`, HTTP 403) when it holds a ``..`` component, when it is
absolute and outside every root, or when it resolves (symlinks followed) outside its root; a path
that is allowed but absent is :class:`RecordingNotFound` (HTTP 404). The same holds for every
file the recording pulls in (:func:`check_pulled_in_files`): a BrainVision header's ``DataFile``
and ``MarkerFile``, a BIDS run's sidecars. Uploads are streamed to a temporary file with a byte
cap (:mod:`serving.bodies`, HTTP 413).

:func:`recording_for_path` turns an allowed file into a :class:`~ingest.recording.Recording`: a
file inside a BIDS dataset brings its sidecars (channels, bad and SOZ contacts, events); any
other file is read as a plain recording with channel types guessed from the names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ingest.errors import RecordingError, SozkitError
from ingest.recording import Recording

logger = logging.getLogger(__name__)


class InputError(SozkitError):
    """A request names a recording the service will not or cannot read."""

    status_code = 400


class PathRejected(InputError):
    """The path lies outside the configured data roots (or tries to)."""

    status_code = 403


class RecordingNotFound(InputError):
    """The path is allowed but nothing is there."""

    status_code = 404


class UploadTooLarge(InputError):
    """An upload is larger than the configured cap."""

    status_code = 413


def resolve_under_roots(path: str, roots: Sequence[str | os.PathLike]) -> Path:
    """The real file a request path names, checked to lie under one of ``roots``.

    Parameters
    ----------
    path : str
        As given by the client: relative (tried against each root in order) or absolute.
    roots : sequence of path-like
        Allowed data roots.

    Returns
    -------
    Path
        The resolved path (symlinks followed), inside a root.

    Raises
    ------
    PathRejected
        No roots configured, a ``..`` component, an absolute path outside the roots, or a
        symlink escaping its root.
    RecordingNotFound
        The path is allowed but does not exist.
    """
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"path={path!r} must be a non-empty string naming a recording file.")
    if "\x00" in path:
        raise PathRejected("the path contains a NUL byte.")
    if not roots:
        raise PathRejected(
            "this service was started without --data-root, so it reads no paths; upload the "
            "file instead, or restart with --data-root DIR."
        )
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if ".." in parts:
        raise PathRejected(f"path={path!r} contains '..'; give a path inside a data root.")
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    if os.path.isabs(path):
        candidates = [Path(path)]
    else:
        candidates = [Path(r) / path for r in roots]
    for cand in candidates:
        real = Path(os.path.realpath(cand))
        inside = [r for r in real_roots if real == r or r in real.parents]
        if os.path.isabs(path) and not inside:
            continue
        if not os.path.lexists(cand):
            continue
        if not inside:
            raise PathRejected(
                f"path={path!r} resolves to a location outside the data roots (a symlink "
                "escaping its root); only files inside --data-root are served."
            )
        if not real.is_file():
            raise RecordingNotFound(f"path={path!r} is not a file (a folder?); name the file.")
        return real
    if os.path.isabs(path):
        real = Path(os.path.realpath(path))
        if not any(real == r or r in real.parents for r in real_roots):
            raise PathRejected(
                f"path={path!r} is outside the data roots {[str(r) for r in roots]}; give a "
                "path relative to a root or inside one."
            )
    raise RecordingNotFound(
        f"no file at path={path!r} under the data roots {[str(r) for r in roots]}; check the "
        "name (paths are relative to a data root)."
    )


def _inside(path: Path, real_roots: Sequence[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in real_roots)


def vhdr_companions(vhdr: str | os.PathLike) -> dict[str, Path]:
    """``{"DataFile": path, "MarkerFile": path}`` a BrainVision header names (as MNE resolves
    them: relative to the header's folder)."""
    vhdr = Path(vhdr)
    out = {}
    try:
        text = vhdr.read_bytes().decode("latin-1")
    except OSError as e:
        raise RecordingError(str(vhdr), f"cannot read the header: {e}") from e
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() in ("datafile", "markerfile") and value.strip():
            name = "DataFile" if key.strip().lower() == "datafile" else "MarkerFile"
            out.setdefault(name, vhdr.parent / value.strip().replace("\\", "/"))
    return out


def pulled_in_files(
    path: str | os.PathLike, *, stop: str | os.PathLike | None = None
) -> list[Path]:
    """Every file reading the recording at ``path`` opens besides itself.

    A BrainVision header's data and marker files; for a BIDS run, the files of its folder that
    share its entities (sidecars: channels, events, ``_ieeg.json``, electrodes ...) and the
    dataset files a reader opens (``participants.tsv``, ``dataset_description.json``).
    """
    path = Path(path)
    out: list[Path] = []
    if path.suffix.lower() == ".vhdr":
        out += vhdr_companions(path).values()
    bids_root = find_bids_root(path, stop=stop)
    if bids_root is not None:
        subject = path.name.split("_")[0]
        out += [p for p in path.parent.iterdir() if p.name.startswith(subject) and p != path]
        for sub in (bids_root, bids_root / subject):
            if sub.is_dir():
                out += [p for p in sub.iterdir() if p.is_file() or p.is_symlink()]
        for p in list(out):
            if p.suffix.lower() == ".vhdr" and p != path:
                out += vhdr_companions(p).values()
    return out


def check_pulled_in_files(path: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> None:
    """Refuse a recording that would read a file outside the data roots through its header or
    sidecars (a ``DataFile=/elsewhere/x.eeg``, a sidecar symlinked out of the root).

    Raises
    ------
    PathRejected
        Naming the header key or file and where it points.
    """
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    root = next((r for r in real_roots if r in Path(path).parents), None)
    companions = vhdr_companions(path) if Path(path).suffix.lower() == ".vhdr" else {}
    for key, target in companions.items():
        if not _inside(target, real_roots):
            raise PathRejected(
                f"{Path(path).name}: its {key} points to {target}, outside the data roots; "
                "the service reads no file outside --data-root. Fix the header so that it "
                "names a file beside it."
            )
    for target in pulled_in_files(path, stop=root):
        if not _inside(target, real_roots):
            raise PathRejected(
                f"{Path(path).name} pulls in {target.name}, which resolves to "
                f"{os.path.realpath(target)}, outside the data roots; the service reads no "
                "file outside --data-root (a symlink escaping the root?)."
            )


def find_bids_root(
    path: str | os.PathLike, *, stop: str | os.PathLike | None = None
) -> Path | None:
    """The nearest parent of ``path`` holding ``dataset_description.json`` (``None`` if none).

    The search does not go above ``stop`` (a data root) when given.
    """
    path = Path(path)
    stop_at = Path(stop) if stop is not None else None
    for parent in path.parents:
        if (parent / "dataset_description.json").is_file():
            return parent
        if stop_at is not None and parent == stop_at:
            break
    return None


def read_bids_recording(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike,
    label_sheet: str | os.PathLike | None = None,
    line_freq: float | None = None,
) -> Recording:
    """The :class:`Recording` of one run of a BIDS dataset, from its signal file's path.

    :func:`ingest.bids.read_bids` takes subject-wide decisions (the SOZ of a subject is the
    union over its runs), so it reads this run's whole subject (and no other subject), and the
    reader's rules apply unchanged.

    Parameters
    ----------
    path : path-like
        The run's signal file (``sub-*/[ses-*/]ieeg/*_ieeg.edf``, ``.vhdr`` ...).
    root : path-like
        The BIDS root.
    label_sheet : path-like, optional
        SOZ label sheet (datasets without SOZ in their sidecars).
    line_freq : float, optional
        For runs whose sidecar has no ``PowerLineFrequency``.

    Raises
    ------
    RecordingError
        The run's sidecars or signal file are invalid, or the file is no run of the dataset.
    """
    from ingest.bids import read_bids
    from ingest.sources import SourceOptions

    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise RecordingError(str(path), f"the file is not inside the BIDS root {root}.") from None
    subject_dir = rel.parts[0] if rel.parts else ""
    if not subject_dir.startswith("sub-") or len(rel.parts) < 3:
        raise RecordingError(
            str(path),
            f"{rel} is not a BIDS run file (expected sub-<label>/[ses-<label>/]ieeg/...).",
            "give the path of a run's signal file, e.g. sub-01/ieeg/sub-01_task-x_ieeg.edf.",
        )
    options = SourceOptions(label_sheet=label_sheet, cohort=root.name, line_freq=line_freq)
    scan = read_bids(root, options, subjects=[subject_dir.removeprefix("sub-")])
    stem = path.name.split("_ieeg")[0]
    for rec in scan.recordings:
        if Path(rec.path).name.split("_ieeg")[0] == stem:
            return replace(rec, path=str(path))
    for problem in scan.problems:
        if stem in str(problem.source) or stem in problem.reason:
            raise RecordingError(str(path), problem.reason, problem.fix) from problem
    raise RecordingError(
        str(path),
        f"no run of {subject_dir} in {root} matches this file (no {stem}_ieeg.json sidecar).",
        "score a run that has its _ieeg.json and _channels.tsv sidecars, or upload the file.",
    )


def recording_for_path(
    path: str | os.PathLike,
    *,
    line_freq: float | None = None,
    root: str | os.PathLike | None = None,
) -> Recording:
    """The :class:`Recording` of one signal file, with its BIDS sidecars when it has them.

    Parameters
    ----------
    path : path-like
        Signal file (EDF, BrainVision ``.vhdr``, FIF ...).
    line_freq : float | None
        Line frequency for a file whose sidecars do not state one.
    root : path-like | None
        Do not look for a BIDS root above this folder.

    Raises
    ------
    RecordingError
        The file (or its sidecars) cannot be read.
    """
    from ingest.folder import recording_from_file

    path = Path(path)
    bids_root = find_bids_root(path, stop=root)
    try:
        if bids_root is not None:
            return read_bids_recording(path, root=bids_root, line_freq=line_freq)
        return recording_from_file(path, line_freq=line_freq)
    except SozkitError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        # A value of the file or of a sidecar the readers did not check: still that
        # recording's problem (UnicodeDecodeError and JSON errors are ValueErrors).
        what = "its BIDS sidecars" if bids_root is not None else "the file"
        raise RecordingError(
            str(path), f"cannot read {what}: {type(e).__name__}: {e}",
            "check the file and its sidecars (an EDF, BDF, BrainVision or FIF file; sidecars as "
            "BIDS iEEG describes them).",
        ) from e  # fmt: skip
