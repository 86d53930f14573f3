"""The plain PyTorch loop, without Ray: training learns, prediction aggregates, SSL loss matches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from ingest.store import ClipStore
from models.dcgru import next_clip_loss
from models.registry import build_model
from tests.trainer.conftest import PATIENTS, TINY_HPARAMS
from trainer.config import DEFAULT_AUGMENT, DEFAULT_CLIP_EXTRAS
from trainer.datasets import (
    SequenceDataset,
    evaluation_sequences,
    make_loader,
    recording_table,
    sample_training_sequences,
)
from trainer.loop import (
    TIMING_KEYS,
    ScoreSums,
    fit_fold,
    predict,
    pretrain_epoch,
    seed_everything,
    soz_loss,
    train_epoch,
    training_autocast,
    validation_metrics,
)

FEATS = {"n_bands": 8, "fmin": 0.5, "fmax": None}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as a Ray worker with one CPU has: tiny models on a shared machine are
    many times slower with intra-op threads fighting over the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tiny_store):
    recs = recording_table(ClipStore.open(tiny_store))
    return tiny_store, recs


def _train_loader(url, recs, epoch, seq_len=4):
    items = sample_training_sequences(recs, seq_len=seq_len, seqs_per_recording=6, epoch=epoch)
    ds = SequenceDataset(url, recs, items, seq_len=seq_len, feature_config=FEATS)
    return make_loader(ds, batch_size=4)


def test_sozformer_learns_the_tiny_cohort_without_ray(data):
    url, recs = data
    seed_everything(0)
    model = build_model("sozformer", n_feats=8, **TINY_HPARAMS["sozformer"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = soz_loss("sozformer", focal_gamma=0.0, focal_beta=0.99)
    losses = [
        train_epoch(model, _train_loader(url, recs, e), opt, loss_fn, grad_clip=1.0)["loss"]
        for e in range(6)
    ]
    assert losses[-1] < losses[0]
    ds = SequenceDataset(
        url, recs, evaluation_sequences(recs, seq_len=4), seq_len=4, feature_config=FEATS
    )
    sums = predict(model, make_loader(ds, batch_size=8))
    preds = sums.to_frame(recs)
    assert len(preds) == sum(r.n_channels for r in recs)
    assert preds["score"].between(0, 1).all()
    metrics = validation_metrics(preds)
    # SOZ contacts carry spikes and the fast onset: even 6 tiny epochs rank them well.
    assert metrics["val_auc"] > 0.75, metrics["val_auc"]
    assert set(metrics["val_auc_by_cohort"]) == {"simA", "simB"}
    assert model.training  # predict restores the mode


def test_score_sums_merge_like_one_pass():
    a, b, whole = ScoreSums(), ScoreSums(), ScoreSums()
    rng = np.random.default_rng(0)
    for i in range(6):
        p = rng.random(3)
        (a if i % 2 else b).add(i % 2, p)
        whole.add(i % 2, p)
    merged = ScoreSums().merge(a).merge(b)
    for rec in (0, 1):
        np.testing.assert_allclose(merged.sums[rec], whole.sums[rec])
        assert merged.counts[rec] == whole.counts[rec] == 3


def test_next_clip_loss_equals_the_models_own_and_pretraining_learns(data):
    url, recs = data
    seed_everything(1)
    ssl = build_model("dcgru_ssl", n_feats=8, **TINY_HPARAMS["dcgru"])
    batch = next(iter(_train_loader(url, recs, 0)))
    torch.testing.assert_close(
        next_clip_loss(ssl(batch["x"], batch["mask"]), batch["x"], batch["mask"]),
        ssl.next_clip_loss(batch["x"], batch["mask"]),
    )
    opt = torch.optim.AdamW(ssl.parameters(), lr=1e-2)
    first = pretrain_epoch(ssl, _train_loader(url, recs, 0), opt)["loss"]
    for e in range(1, 4):
        last = pretrain_epoch(ssl, _train_loader(url, recs, e), opt)["loss"]
    assert last < first
    clf = build_model("dcgru", n_feats=8, **TINY_HPARAMS["dcgru"])
    clf.load_encoder_state_dict(ssl.encoder_state_dict())
    for k, v in ssl.encoder_state_dict().items():
        torch.testing.assert_close(clf.encoder_state_dict()[k], v)


def test_losses_and_errors():
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    dcgru = soz_loss("dcgru", pos_weight=3.0)(logits, y, mask)
    expected = (
        3 * torch.nn.functional.softplus(-logits[0, 0]) + torch.nn.functional.softplus(logits[0, 1])
    ) / 2
    torch.testing.assert_close(dcgru, expected)
    with pytest.raises(ValueError, match="model_name='svm'"):
        soz_loss("svm")
    model = torch.nn.Linear(1, 1)

    class Bad(torch.nn.Module):
        def forward(self, x, mask):
            return model(x[..., :1, :1].squeeze(-1)).squeeze(-1) * float("nan")

    batch = {
        "x": torch.zeros(1, 2, 1, 1),
        "y": torch.zeros(1, 2),
        "mask": torch.ones(1, 2, dtype=torch.bool),
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="learning rate"):
        train_epoch(Bad(), [batch], opt, soz_loss("sozformer"))

    class BadForecast(torch.nn.Module):
        def forward(self, x, mask):  # predicts the next clip: (B, C, S-1, F)
            return model(x[:, :, 1:, :1]) * float("nan")

    seq = dict(batch, x=torch.zeros(1, 2, 3, 1))
    with pytest.raises(FloatingPointError, match="learning rate"):
        pretrain_epoch(BadForecast(), [seq], opt)


# ----------------------------------------------------------------------------------------------
# fit_fold: a whole fold without Ray


def _fold_data(url, model="sozformer", **cfg_changes):
    from trainer.config import TrainConfig
    from trainer.fold_data import FoldData
    from trainer.splits import cohort_groups, patient_folds

    patients = sorted(f"{c}/{s}" for c, s in PATIENTS)
    fold = patient_folds(patients, n_folds=2, groups=cohort_groups(patients))[0]
    cfg = TrainConfig(
        batch_size=4,
        seqs_per_recording=6,
        n_bands=8,
        feature_cache=False,
        lr=3e-3,
        max_eval_seqs=3,
        model_hparams=TINY_HPARAMS,
        **{"clip_extras": (), "augment": (), **cfg_changes},  # the spectra, as these tests ask
    )
    return FoldData.for_fold(url, fold, cfg, model)


def _comparable(history):
    """History rows without wall-clock timings (which differ between identical runs)."""
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


def _same_weights(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_fit_fold_learns_and_early_stops(data):
    url, _ = data
    fold_data = _fold_data(url, epochs=12, patience=2)
    epochs_seen = []
    fit = fit_fold("sozformer", fold_data, on_epoch=lambda row, state: epochs_seen.append(row))
    train_rows = [h for h in fit.state["history"] if h["stage"] == "train"]
    assert epochs_seen == fit.state["history"]
    # Early stopping: the run ended `patience` epochs after its best one, before max epochs.
    assert len(train_rows) < 12
    assert train_rows[-1]["epoch"] == fit.state["best_epoch"] + 2
    best = max(r["val_auc"] for r in train_rows)
    assert fit.state["best_auc"] == best == train_rows[fit.state["best_epoch"]]["val_auc"]
    # The returned validation predictions are the best epoch's: their AUC is the best AUC.
    assert validation_metrics(fit.val_predictions)["val_auc"] == pytest.approx(best, abs=1e-12)
    # The separable toy task is learned: SOZ contacts ranked first on unseen test patients.
    assert validation_metrics(fit.test_predictions)["val_auc"] > 0.75
    assert set(fit.test_predictions["patient"]) == set(
        r.patient for r in fold_data.recordings["test"]
    )


@pytest.mark.parametrize(
    ("model_name", "kill_after", "changes"),
    [
        # Dropout draws from torch's generator every step: a resume that lost its state differs.
        (
            "sozformer",
            ("train", 1),
            {"model_hparams": {"sozformer": {**TINY_HPARAMS["sozformer"], "dropout": 0.2}}},
        ),
        (
            "dcgru",
            ("ssl", 0),
            {
                "ssl_epochs": 2,
                "model_hparams": {"dcgru": {**TINY_HPARAMS["dcgru"], "dropout": 0.2}},
            },
        ),
    ],
    ids=["sozformer-after-epoch-1", "dcgru-during-ssl"],
)
def test_fit_fold_resumed_equals_uninterrupted_bit_for_bit(
    data, tmp_path, model_name, kill_after, changes
):
    url, _ = data
    changes = dict(changes)
    hp = {**TINY_HPARAMS, **changes.pop("model_hparams", {})}
    # The default inputs (spikes; tilt for SOZFormer): the augmentation's draws resume too.
    defaults = {"clip_extras": DEFAULT_CLIP_EXTRAS, "augment": DEFAULT_AUGMENT}
    fold_data = _fold_data(url, model_name, epochs=3, patience=10, **defaults, **changes)
    assert fold_data.n_feats == 8 + 1  # 8 bands and the spike rate
    fold_data = dataclasses.replace(fold_data, cfg=fold_data.cfg.replace(model_hparams=hp))
    straight = fit_fold(model_name, fold_data)

    class Killed(Exception):
        pass

    saved = tmp_path / "state.pt"

    def kill(row, state):
        torch.save(state, saved)  # what the Ray checkpoint holds
        if (row["stage"], row["epoch"]) == kill_after:
            raise Killed

    with pytest.raises(Killed):
        fit_fold(model_name, fold_data, on_epoch=kill)
    # Random draws in between (another fold, a notebook cell) must not matter.
    torch.rand(100)
    np.random.rand(7)
    state = torch.load(saved, weights_only=False)
    resumed = fit_fold(model_name, fold_data, resume=state)

    assert _comparable(resumed.state["history"]) == _comparable(straight.state["history"])
    assert resumed.state["best_epoch"] == straight.state["best_epoch"]
    assert _same_weights(resumed.state["best_state"], straight.state["best_state"])
    pd.testing.assert_frame_equal(
        resumed.test_predictions, straight.test_predictions, check_exact=True
    )
    pd.testing.assert_frame_equal(
        resumed.val_predictions, straight.val_predictions, check_exact=True
    )


def test_training_autocast_is_float32_on_cpu_and_can_be_turned_off():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    for bf16 in (True, False):
        with training_autocast("cpu", bf16):
            assert lin(x).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["sozformer", "dcgru"])
def test_bf16_training_on_cuda_learns_with_finite_float32_loss(name, data):
    url, recs = data
    with training_autocast("cuda"):
        assert torch.nn.Linear(4, 3).cuda()(torch.randn(2, 4, device="cuda")).dtype == (
            torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        )
    seed_everything(0)
    model = build_model(name, n_feats=8, **TINY_HPARAMS[name]).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = soz_loss(name, focal_gamma=0.0, focal_beta=0.99, pos_weight=3.0)
    losses = [
        train_epoch(model, _train_loader(url, recs, e), opt, loss_fn, device="cuda")["loss"]
        for e in range(4)
    ]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
