"""Atomic writes and JSON-safe values: the one copy every stage uses.

A reader never sees a half-written file: each writer writes a temporary sibling and renames it
over the target (``os.replace`` locally, ``fs.mv`` on an fsspec filesystem, which object stores
implement as copy + delete, atomic per object). Temporaries are named ``.<name>.tmp-<pid>-<hex>``
so two writers never share one, and a killed writer leaves only a hidden temporary behind.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import fsspec
import numpy as np

__all__ = ["atomic_write", "json_safe", "write_json", "write_parquet", "write_text"]


def _tmp_name(name: str) -> str:
    return f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> str:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.

    Parameters
    ----------
    path : str | PathLike
        A local path or an fsspec URL; parent folders are created.
    write : callable
        Writes the whole content to the binary file object it is given.

    Returns
    -------
    str
        ``path`` as given.
    """
    path = os.fspath(path)
    if "://" not in path:
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(_tmp_name(final.name))
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    fs, fs_path = fsspec.core.url_to_fs(path)
    parent, _, name = fs_path.rpartition("/")
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/{_tmp_name(name)}" if parent else _tmp_name(name)
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
        fs.mv(tmp, fs_path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> str:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None, numpy scalars and arrays plain Python, keys str."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> str:
    """Write ``json_safe(obj)`` as indented JSON to ``path`` atomically (strict: no NaN)."""
    return write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_parquet(path: str | os.PathLike, frame: Any, **kwargs: Any) -> str:
    """Write a pandas DataFrame or a pyarrow Table to ``path`` atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    return atomic_write(path, lambda f: pq.write_table(table, f, **kwargs))
