"""The training card: everything needed to reproduce a run, written next to its results.

A card records every hyper-parameter (the stage config), the patient ids of each fold, the seeds,
the versions of the packages that shape the numbers, the git commit of the sozkit source (and
whether the tree had uncommitted changes), the Python and platform, and when it was written.
It is plain JSON (:func:`write_card` / :func:`read_card`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path, PurePath

import numpy as np

from ingest.fileio import write_text
from trainer.splits import Fold

logger = logging.getLogger(__name__)

__all__ = [
    "CARD_VERSION",
    "PACKAGES",
    "git_commit",
    "package_versions",
    "read_card",
    "training_card",
    "write_card",
]

#: Format version of the card (bump on incompatible changes).
CARD_VERSION = 1
#: Distributions whose versions are recorded (by distribution name, read from metadata: importing
#: nothing, so the card can be written where Ray or Beam is not importable).
PACKAGES = (
    "sozkit",
    "torch",
    "ray",
    "apache-beam",
    "zarr",
    "mne",
    "mne-bids",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "pywavelets",
)
#: Root of the sozkit source tree (the folder holding the ``trainer`` package).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, ``None`` when it is not installed."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(args: Sequence[str], root: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.debug("git %s failed in %s: %s", " ".join(args), root, e)
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(root: str | Path = SOURCE_ROOT) -> dict[str, str | bool | None]:
    """The git commit of the sozkit source tree, and whether it had uncommitted changes.

    Parameters
    ----------
    root : str or Path
        Folder of the source tree; by default the one this module was imported from.

    Returns
    -------
    info : dict
        ``commit`` (40 hex digits) and ``dirty`` (bool), both ``None`` when ``root`` is not
        the top of a git checkout (an installed wheel, or a folder inside another repository)
        or git is not available.
    """
    root = Path(root).resolve()
    top = _git(["rev-parse", "--show-toplevel"], root)
    if top is None or Path(top).resolve() != root:
        return {"commit": None, "dirty": None}
    commit = _git(["rev-parse", "HEAD"], root)
    status = _git(["status", "--porcelain", "--untracked-files=no"], root)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _jsonable(obj):
    """Plain JSON types from configs: dataclasses, paths, enums, numpy scalars, tuples, sets."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(
        f"cannot record {type(obj).__name__} value {obj!r} in the training card; give "
        "configs as plain values, paths, enums or (nested) dataclasses."
    )


def training_card(
    *,
    config: Mapping | object,
    folds: Sequence[Fold],
    seeds: Mapping[str, int],
    extra: Mapping | None = None,
) -> dict:
    """Build the training card of a run.

    Parameters
    ----------
    config : mapping or dataclass
        Every hyper-parameter of the run (the frozen training config, model hyper-parameters...).
        Nested dataclasses, paths, enums and numpy scalars are converted to JSON types.
    folds : sequence of Fold
        The cross-validation folds (patient ids of train / val / test of each).
    seeds : mapping of str to int
        Every seed used (``{"split": 0, "torch": 0, "sampler": 1}``...).
    extra : mapping, optional
        Anything else to record (store path and its manifest hash, hardware, timings...).

    Returns
    -------
    card : dict
        ``card_version``, ``created`` (UTC, ISO 8601), ``config``, ``seeds``, ``folds`` (list of
        ``{"index", "train", "val", "test"}``), ``n_patients``, ``versions`` (see
        :data:`PACKAGES`), ``git`` (``{"commit", "dirty"}``), ``python``, ``platform``,
        ``extra``. JSON-serialisable.
    """
    folds = list(folds)
    for i, f in enumerate(folds):
        if not isinstance(f, Fold):
            raise TypeError(
                f"folds[{i}] is a {type(f).__name__}; pass the Fold objects of "
                "trainer.splits.patient_folds (Fold.from_dict rebuilds them from JSON)."
            )
    bad_seeds = {k: v for k, v in seeds.items() if not isinstance(v, int | np.integer)}
    if bad_seeds:
        raise ValueError(f"seeds must be integers; got {bad_seeds}.")
    patients = sorted({p for f in folds for p in f.patients})
    return {
        "card_version": CARD_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": _jsonable(config),
        "seeds": {str(k): int(v) for k, v in seeds.items()},
        "n_folds": len(folds),
        "n_patients": len(patients),
        "folds": [f.to_dict() for f in folds],
        "versions": package_versions(),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "extra": _jsonable(dict(extra or {})),
    }


def write_card(card: Mapping, path: str | Path) -> Path:
    """Write a card as indented JSON (parent folders created); return its path."""
    path = Path(path)
    text = json.dumps(_jsonable(card), indent=2, allow_nan=False)
    write_text(path, text + "\n")  # atomic: a killed run never leaves half a card
    return path


def read_card(path: str | Path) -> dict:
    """Read a card written by :func:`write_card`; ``card["folds"]`` become :class:`Fold` objects."""
    path = Path(path)
    card = json.loads(path.read_text(encoding="utf-8"))
    version = card.get("card_version")
    if version != CARD_VERSION:
        raise ValueError(
            f"{path}: training card version {version!r}, this sozkit reads version "
            f"{CARD_VERSION}; re-run training or read it with the sozkit that wrote it."
        )
    card["folds"] = [Fold.from_dict(f) for f in card["folds"]]
    return card
