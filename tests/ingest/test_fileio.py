"""Atomic writes leave either the old file or the new one, never a half-written one."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ingest.fileio import atomic_write, json_safe, write_json, write_parquet


def test_write_json_round_trip_and_sanitises(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json(path, {"auc": np.float32(0.5), "nan": math.nan, "arr": np.arange(3), 1: (1, 2)})
    assert json.loads(path.read_text()) == {"auc": 0.5, "nan": None, "arr": [0, 1, 2], "1": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"v": 1})

    def boom(f):
        f.write(b'{"v": 2')  # half a document, then the writer dies
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_fsspec_url(tmp_path):
    url = f"file://{tmp_path}/d/t.parquet"
    write_parquet(url, pd.DataFrame({"a": [1, 2]}))
    assert pd.read_parquet(tmp_path / "d" / "t.parquet")["a"].tolist() == [1, 2]
    mem = "memory://sozkit-fileio/t.parquet"
    write_parquet(mem, pd.DataFrame({"a": [3]}))
    import fsspec

    with fsspec.open(mem, "rb") as f:
        assert pd.read_parquet(f)["a"].tolist() == [3]


def test_json_safe_nested():
    assert json_safe({"a": [np.inf, {"b": np.int64(3)}]}) == {"a": [None, {"b": 3}]}
