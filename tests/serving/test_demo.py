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
    # By default the held-out patient's page shows the signal behind the calls of one
    # recording, the ictal one (its onset window), and one screenshot per figure kind is saved
    # (the glass brain: the simulator writes electrodes.tsv).
    assert ("report", "explaining 1 of 2 recording(s) of sim005") in said
    page = next((out / "report").glob("*sim005.html")).read_text()
    assert "The signal behind the calls" in page and "No traces" not in page
    from PIL import Image

    from serving.pdf import find_chromium

    if find_chromium() is None:
        assert result.screenshots == {} and not (out / "screenshots").exists()
        pytest.skip("no Chromium: the demo saved no screenshots (apt-get install chromium)")
    kinds = {"brain", "traces", "heatmap", "folds", "shafts"}
    assert set(result.screenshots) == kinds, result.screenshots
    assert {p.stem for p in (out / "screenshots").glob("*.png")} == kinds
    assert saved["screenshots"] == {k: str(out / "screenshots" / f"{k}.png") for k in kinds}
    for kind, path in result.screenshots.items():
        with Image.open(path) as shot:  # a real render, not an empty page
            assert shot.format == "PNG" and min(shot.size) > 100, (kind, shot.size)
            assert len(set(shot.convert("L").getdata())) > 8, kind


def test_explained_recordings_put_ictal_first():
    from serving.demo import explained_recordings

    rows = pd.DataFrame(
        {
            "recording_id": ["r-inter", "r-inter", "r-ictal2", "r-ictal1", "r-rest"],
            "task": ["interictal", "interictal", "ictal", "ictal", "rest"],
        }
    )
    assert explained_recordings(rows, 1) == ["r-ictal1"]
    assert explained_recordings(rows, 2) == ["r-ictal1", "r-ictal2"]
    assert explained_recordings(rows, 0) == ["r-ictal1", "r-ictal2", "r-inter", "r-rest"]


@pytest.mark.parametrize(
    ("argv", "explain", "k"),
    [([], True, 1), (["--no-explain"], False, 1), (["--explain-recordings", "0"], True, 0)],
)
def test_demo_command_explains_by_default(argv, explain, k):
    from serving.cli import _load_commands, build_parser
    from serving.commands.demo import demo_config

    _load_commands()
    cfg = demo_config(build_parser().parse_args(["demo", *argv]))
    assert (cfg.explain, cfg.explain_recordings) == (explain, k)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"folds": 1}, "folds=1 must be >= 2"),
        ({"n_subjects": 4, "folds": 5}, "n_subjects=4 is too few for folds=5"),
        ({"n_heldout": 0}, "n_heldout=0 must be >= 1"),
        ({"models": ("svm", "transformer")}, "must be a non-empty subset"),
        ({"models": ("svm", "baseline"), "serve_model": "sozformer"}, "serve_model='sozformer'"),
        ({"epochs": 0}, "epochs=0 must be >= 1"),
        ({"patience": 0}, "patience=0 must be >= 1"),
        ({"ssl_epochs": -1}, "ssl_epochs=-1 must be >= 0"),
        ({"explain_recordings": -1}, "explain_recordings=-1 must be >= 0"),
    ],
)
def test_demo_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DemoConfig(**kwargs)


def test_demo_training_knobs_reach_the_train_config():
    tc = DemoConfig(epochs=4, patience=2, ssl_epochs=1).train_config()
    assert (tc.epochs, tc.patience, tc.ssl_epochs) == (4, 2, 1)
    # train_overrides still win over the demo's own fields.
    assert DemoConfig(train_overrides={"ssl_epochs": 0}).train_config().ssl_epochs == 0
