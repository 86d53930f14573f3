"""``soz demo`` end to end on a tiny cohort: simulate, Beam ingest, Ray CV, Serve, reports."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ingest.errors import ConfigError
from serving.demo import DemoConfig, run_demo
from tests.serving.conftest import free_port
from tests.trainer.conftest import TINY_HPARAMS


def test_demo_runs_every_stage_and_scores_held_out_patients_through_serve(ray_local, tmp_path):
    cfg = DemoConfig(
        out_dir=str(tmp_path / "demo"),
        n_subjects=4,
        n_heldout=1,
        n_ictal_runs=1,
        n_interictal_runs=1,
        interictal_duration_s=60.0,
        sfreq=250.0,
        folds=2,
        epochs=1,
        models=("sozformer", "baseline"),
        n_jobs=1,
        port=free_port(),
        explain=True,
        train_overrides={
            "batch_size": 4,
            "seqs_per_recording": 4,
            "n_bands": 8,
            "max_eval_seqs": 4,
            "model_hparams": {"sozformer": TINY_HPARAMS["sozformer"]},
        },
    )
    said = []
    result = run_demo(cfg, progress=lambda stage, msg: said.append((stage, msg)))
    assert list(dict.fromkeys(s for s, _ in said)) == [
        "simulate",
        "ingest",
        "train",
        "serve",
        "report",
    ]
    # training reports each finished (model, fold): 2 models x 2 folds
    folds_done = sorted(m for s, m in said if s == "train" and re.match(r"\d+/\d+ ", m))
    assert len(folds_done) == 4 and folds_done[-1].startswith("4/4 ")
    out = tmp_path / "demo"
    # The held-out patient is in its own BIDS root and was never trained on.
    assert [p.name for p in (out / "heldout").glob("sub-*")] == ["sub-sim005"]
    card = json.loads((out / "run" / "card.json").read_text())
    trained = {p for f in card["folds"] for p in f["train"] + f["val"] + f["test"]}
    assert trained and not any(p.endswith("sim005") for p in trained)
    # Every held-out recording went through the HTTP service and into the report.
    answers = sorted((out / "scores").glob("*.json"))
    assert len(answers) == 2 and len(result.heldout) == 2
    results = pd.read_parquet(out / "scores" / "results.parquet")
    assert set(results["model"]) == {"sozformer"} and results["probability"].between(0, 1).all()
    assert results["soz_label"].notna().all()  # the simulated held-out patient is labelled
    assert result.report.name == "index.html" and result.report.exists()
    assert set(result.headline) == {"sozformer", "baseline"}
    # The headline ROC-AUC is the mean over test folds of the channel AUC, recomputed here from
    # the run's own prediction table (sequence -> recording -> patient-channel means).
    for model in ("sozformer", "baseline"):
        preds = pd.read_parquet(out / "run" / model / "predictions.parquet")
        per_rec = preds.groupby(["fold", "patient", "recording_id", "channel"], as_index=False).agg(
            score=("score", "mean"), y_true=("y_true", "max")
        )
        per_channel = per_rec.groupby(["fold", "patient", "channel"]).agg(
            score=("score", "mean"), y_true=("y_true", "max")
        )
        aucs = [roc_auc_score(g["y_true"], g["score"]) for _, g in per_channel.groupby("fold")]
        assert result.headline[model]["roc_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    # The clinicians' baseline finds the simulated onset zone (a broken pipeline gives ~0.5).
    assert result.headline["baseline"]["roc_auc"] > 0.7
    saved = json.loads((out / "demo.json").read_text())
    assert set(saved["timings"]) == {"simulate", "ingest", "train", "serve", "report",
                                     "explain_ingest", "explain", "screenshots"}  # fmt: skip
    # explain=True: the held-out patient's page shows the signal behind the calls, and one
    # screenshot per figure kind is saved (the glass brain: the simulator writes electrodes.tsv).
    page = next((out / "report").glob("*sim005.html")).read_text()
    assert "The signal behind the calls" in page and "No traces" not in page
    from serving.pdf import find_chromium

    if find_chromium() is not None:
        shots = {p.stem for p in (out / "screenshots").glob("*.png")}
        assert {"brain", "traces", "heatmap", "folds", "shafts"} <= shots, shots


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"folds": 1}, "folds=1 must be >= 2"),
        ({"n_subjects": 4, "folds": 5}, "n_subjects=4 is too few for folds=5"),
        ({"n_heldout": 0}, "n_heldout=0 must be >= 1"),
        ({"models": ("svm", "transformer")}, "must be a non-empty subset"),
        ({"models": ("svm", "baseline"), "serve_model": "sozformer"}, "serve_model='sozformer'"),
        ({"epochs": 0}, "epochs=0 must be >= 1"),
    ],
)
def test_demo_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DemoConfig(**kwargs)
