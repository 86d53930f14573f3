"""Where a recording to score comes from: a path under the data roots, or an uploaded file.

The service only reads files below the folders it was started with (``--data-root``). A request
path is rejected (:class:`PathRejected`, HTTP 403) when it holds a ``..`` component, when it is
absolute and outside every root, or when it resolves (symlinks followed) outside its root; a path
that is allowed but absent is :class:`RecordingNotFound` (HTTP 404). Uploads are streamed to a
temporary file with a byte cap (:class:`UploadTooLarge`, HTTP 413).

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
    scan = read_bids(
        root,
        label_sheet=label_sheet,
        cohort=root.name,
        line_freq=line_freq,
        subjects=[subject_dir.removeprefix("sub-")],
    )
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
    if bids_root is not None:
        return read_bids_recording(path, root=bids_root, line_freq=line_freq)
    try:
        return recording_from_file(path, line_freq=line_freq)
    except RecordingError:
        raise
    except (OSError, ValueError) as e:
        raise RecordingError(
            str(path), f"cannot read the file: {e}", "give an EDF, BDF, BrainVision or FIF file."
        ) from e
