"""Ray Train V2 on the local 2-CPU Ray: a real 2-worker DDP fold, killed after its first
checkpoint and resumed to completion, equal bit for bit to an uninterrupted fold; parallel-fold
sizing."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import ray.train
import torch
from sklearn.metrics import roc_auc_score

from models.registry import build_model
from tests.trainer.conftest import PATIENTS, TINY_HPARAMS, channel_table, tiny_train_config
from trainer.config import TrainConfig
from trainer.loop import TIMING_KEYS, validation_metrics
from trainer.ray_train import folds_in_parallel, scaling_config, train_fold
from trainer.splits import cohort_groups, patient_folds


def _folds():
    patients = sorted(f"{c}/{s}" for c, s in PATIENTS)
    return patient_folds(patients, n_folds=2, groups=cohort_groups(patients))


def test_ddp_fold_killed_after_first_checkpoint_resumes_and_completes(
    ray_local, tiny_store, tmp_path
):
    fold = _folds()[0]
    # Dropout draws from each rank's torch generator: resuming exactly needs their states.
    hparams = {**TINY_HPARAMS, "sozformer": {**TINY_HPARAMS["sozformer"], "dropout": 0.2}}
    cfg = tiny_train_config(models=("sozformer",), epochs=2, patience=5, batch_size=2)
    cfg = replace(cfg, model_hparams=hparams, max_eval_seqs=3, num_workers=2)
    log = tmp_path / "reports.jsonl"

    class KillAfterFirstCheckpoint(ray.train.UserCallback):
        """Records each report, then fails the run once the first checkpoint is persisted."""

        def after_report(self, run_context, metrics, checkpoint):
            with open(log, "a") as f:
                f.write(json.dumps(metrics[0]) + "\n")
            if checkpoint is not None:
                raise RuntimeError("simulated crash after the first checkpoint")

    storage = tmp_path / "sozformer" / "ray"
    with pytest.raises(Exception, match="simulated crash"):
        train_fold(
            tiny_store,
            model_name="sozformer",
            fold=fold,
            cfg=cfg,
            storage_path=storage,
            callbacks=[KillAfterFirstCheckpoint()],
        )
    first = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in first] == [0]

    res = train_fold(tiny_store, model_name="sozformer", fold=fold, cfg=cfg, storage_path=storage)
    # The resumed run continued at epoch 1: epoch 0 is the one reported before the crash.
    train_rows = [h for h in res.history if h["stage"] == "train"]
    assert [h["epoch"] for h in train_rows] == [0, 1]
    assert train_rows[0]["train_loss"] == pytest.approx(first[0]["train_loss"])
    assert all(h["world_size"] == 2 for h in train_rows)  # real 2-rank DDP
    aucs = [h["val_auc"] for h in train_rows]
    assert res.best_val_auc == max(aucs) and res.best_epoch == aucs.index(max(aucs))
    # The validation predictions handed back are the best epoch's: recomputing gives its AUC.
    assert validation_metrics(res.val_predictions)["val_auc"] == pytest.approx(res.best_val_auc)
    val = channel_table(res.val_predictions)  # the same figure from sklearn, aggregated apart
    assert roc_auc_score(val["y_true"], val["score"]) == pytest.approx(res.best_val_auc)
    # Complete, valid predictions: every channel of every val / test recording, once.
    for preds, patients in ((res.val_predictions, fold.val), (res.test_predictions, fold.test)):
        assert sorted(preds["patient"].unique()) == sorted(patients)
        assert not preds.duplicated(["recording_id", "channel"]).any()
        assert preds["score"].between(0, 1).all() and (preds["n_sequences"] >= 1).all()
    assert set(res.state_dict) == set(build_model("sozformer", **res.hparams).state_dict())

    # The resumed run equals an uninterrupted one bit for bit: weights, metrics, predictions.
    straight = train_fold(
        tiny_store, model_name="sozformer", fold=fold, cfg=cfg, storage_path=tmp_path / "straight"
    )
    assert straight.state_dict.keys() == res.state_dict.keys()
    assert all(torch.equal(straight.state_dict[k], v) for k, v in res.state_dict.items())
    strip = [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in straight.history]
    assert strip == [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in res.history]
    pd.testing.assert_frame_equal(straight.test_predictions, res.test_predictions, check_exact=True)


def test_folds_in_parallel_fits_the_cluster():
    cfg = TrainConfig(num_workers=2, cpus_per_worker=2)
    assert folds_in_parallel(cfg, 5, {"CPU": 16}) == 4
    assert folds_in_parallel(cfg, 2, {"CPU": 16}) == 2
    assert folds_in_parallel(cfg, 5, {"CPU": 2}) == 1  # one fold still runs (it waits for CPUs)
    gpu = TrainConfig(num_workers=1, gpus_per_worker=1)
    assert folds_in_parallel(gpu, 5, {"CPU": 64, "GPU": 4}) == 4
    assert folds_in_parallel(cfg.replace(max_parallel_folds=2), 5, {"CPU": 64}) == 2


def test_gpus_per_worker_reaches_ray_trains_scaling_config():
    cpu = scaling_config(TrainConfig(num_workers=2, cpus_per_worker=1))
    assert (cpu.num_workers, cpu.use_gpu, cpu.resources_per_worker) == (2, False, {"CPU": 1})
    gpu = scaling_config(TrainConfig(num_workers=2, gpus_per_worker=1, cpus_per_worker=4))
    assert (gpu.num_workers, gpu.use_gpu) == (2, True)
    assert gpu.resources_per_worker == {"CPU": 4, "GPU": 1}
    assert gpu.total_resources == {"CPU": 8, "GPU": 2}
