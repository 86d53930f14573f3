"""The run directory contract: a fold is finished only once its model is written (marker last)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ingest.errors import SozkitError
from trainer.run import write_fold
from trainer.rundir import CHECKPOINT, MARKER, IncompleteRun, RunDir
from trainer.splits import Fold


def _preds(seed: int, patients=("a", "b", "c")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in patients:
        for ch in range(6):
            y = int(ch < 2)
            rows.append(("c1", f"c1/{p}", f"c1__{p}", f"X{ch}", y, 0.5 * y + 0.5 * rng.random()))
    return pd.DataFrame(rows, columns=["cohort", "patient", "recording_id", "channel", "y_true",
                                       "score"])  # fmt: skip


def test_marker_is_written_after_the_model_file(tmp_path):
    fold = Fold(index=0, train=("c1/x",), val=("c1/a",), test=("c1/b",))
    run = RunDir(tmp_path / "run")

    def killed(result):  # a kill between the predictions and the model file
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_fold(
            run.path, "sozformer", fold, _preds(0), _preds(1, ("d", "e", "f")), save_model=killed
        )
    assert (run.fold_dir("sozformer", 0) / "test_predictions.parquet").is_file()
    assert not run.fold_finished("sozformer", 0)  # --resume trains it again

    def save(result):
        assert not run.marker_path("sozformer", 0).exists()  # the marker is not there yet
        run.checkpoint_path("sozformer", 0).write_bytes(b"weights")

    out = write_fold(
        run.path, "sozformer", fold, _preds(0), _preds(1, ("d", "e", "f")), save_model=save
    )
    assert run.fold_finished("sozformer", 0)
    assert run.fold_metrics("sozformer", 0)["threshold"] == pytest.approx(out["threshold"])
    assert run.threshold("sozformer", 0) == pytest.approx(out["threshold"])


def _fold(run: RunDir, model: str, k: int, *, model_file: bool = True, marker: bool = True):
    d = run.fold_dir(model, k)
    d.mkdir(parents=True)
    if model_file:
        (d / (CHECKPOINT if model != "svm" else "svm.pkl")).write_bytes(b"x")
    if marker:
        (d / MARKER).write_text(json.dumps({"threshold": 0.5}))


def test_incomplete_folds_are_refused_by_name(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "folds.json").write_text(json.dumps([{"index": k} for k in range(4)]))
    _fold(run, "sozformer", 0)
    _fold(run, "sozformer", 1, model_file=False)  # killed after the marker of an old sozkit
    _fold(run, "sozformer", 2, marker=False)  # killed before its marker
    # fold 3 never started
    assert run.complete_folds("sozformer") == {0: run.checkpoint_path("sozformer", 0)}
    assert run.incomplete_folds("sozformer") == [1, 2, 3]
    assert run.models() == {"sozformer": [0]}
    with pytest.raises(IncompleteRun, match=r"folds \[1, 2, 3\] did not finish"):
        run.serving_folds("sozformer")
    assert list(run.serving_folds("sozformer", allow_incomplete=True)) == [0]
    assert list(run.serving_folds("sozformer", 0)) == [0]
    with pytest.raises(IncompleteRun, match="fold 2 of 'sozformer' did not finish"):
        run.serving_folds("sozformer", 2)
    with pytest.raises(SozkitError, match="no 'dcgru' model"):
        run.serving_folds("dcgru")
    with pytest.raises(SozkitError, match="evaluation reference"):
        run.serving_folds("baseline")
