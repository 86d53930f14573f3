"""Occlusion attribution: tested for what it claims on models trained to see an injected pattern."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models.attribution import occlusion
from models.registry import build_model

N_CHANS, SEQ_LEN, N_FEATS = 6, 8, 8
PATTERN = torch.zeros(N_FEATS)
PATTERN[:4] = 2.5
STEPS = 60  # ~2 CPU-s for SOZFormer  # an "ictal" spectral bump in the first four bands


def _batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise sequences; a contact is SOZ iff it carries the pattern in 1 or 2 random clips."""
    x = torch.from_numpy(rng.normal(0.0, 1.0, (n, N_CHANS, SEQ_LEN, N_FEATS))).float()
    y = torch.from_numpy(rng.random((n, N_CHANS)) < 0.3).float()
    for b, c in zip(*np.nonzero(y.numpy()), strict=True):
        clips = rng.choice(SEQ_LEN, size=rng.integers(1, 3), replace=False)
        x[b, c, clips] += PATTERN
    return x, y


def _trained(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    hp = dict(n_feats=N_FEATS, seq_len=SEQ_LEN)
    if name == "sozformer":
        hp |= dict(d_model=16, n_heads=2, n_temporal_layers=1, n_spatial_layers=1,
                   dim_feedforward=32, dropout=0.0)  # fmt: skip
    else:
        hp |= dict(hidden=16, k_hops=1, standardize=False)
    model = build_model(name, **hp)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    mask = torch.ones(16, N_CHANS, dtype=torch.bool)
    for _ in range(STEPS):
        x, y = _batch(rng, 16)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=["sozformer", pytest.param("dcgru", marks=pytest.mark.slow)])
def model(request) -> torch.nn.Module:
    return _trained(request.param)


def test_injected_clips_get_the_largest_attribution(model):
    rng = np.random.default_rng(123)
    x = torch.from_numpy(rng.normal(0.0, 1.0, (4, N_CHANS, SEQ_LEN, N_FEATS))).float()
    # sequence -> the clip of contact 2 that carries the pattern. (With the pattern in several
    # clips, occluding one leaves the others: occlusion then spreads or hides the credit; the
    # README says so.)
    injected = {0: (1,), 1: (6,), 2: (3,), 3: (0,)}
    for b, clips in injected.items():
        x[b, 2, list(clips)] += PATTERN
    probs, attr = occlusion(model, x, batch_size=16)
    assert attr.shape == (4, N_CHANS, SEQ_LEN) and probs.shape == (4, N_CHANS)
    others = [0, 1, 3, 4, 5]
    assert (probs[:, 2] > 0.5).all() and (probs[:, 2] > probs[:, others].max(1).values).all()
    for b, clips in injected.items():
        top = set(torch.topk(attr[b, 2], len(clips)).indices.tolist())
        assert top == set(clips), (b, attr[b, 2])
    for b, (clip,) in injected.items():  # it explains far more than any clip of a plain contact
        assert attr[b, 2, clip] > 0.2 and attr[b, 2, clip] > 5 * attr[b, others].abs().max()
    # Channel-wise occlusion (one contact's clip at a time) points at the same clips.
    _, attr_c = occlusion(model, x[:1], per_channel=True)
    assert int(attr_c[0, 2].argmax()) == 1


def test_occlusion_is_exact_bookkeeping_and_respects_the_mask(model):
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(0.0, 1.0, (3, N_CHANS, SEQ_LEN, N_FEATS))).float()
    mask = torch.ones(3, N_CHANS, dtype=torch.bool)
    mask[1, 4:] = False
    probs, attr = occlusion(model, x, mask, baseline="zero", batch_size=5)
    # Recompute one entry by hand: clip 3 of every channel of sequence 0 set to zero.
    x_occ = x[:1].clone()
    x_occ[:, :, 3] = 0.0
    with torch.no_grad():
        p_occ = torch.sigmoid(model(x_occ, mask[:1]))
    torch.testing.assert_close(attr[0, :, 3], probs[0] - p_occ[0], atol=1e-5, rtol=0)
    assert (attr[1, 4:] == 0).all() and (probs[1, 4:] == 0).all()
    # Batch size only changes how the passes are grouped, not the answer.
    _, attr_big = occlusion(model, x, mask, baseline="zero", batch_size=64)
    torch.testing.assert_close(attr, attr_big, atol=1e-5, rtol=0)
    assert not model.training


def test_occlusion_cost_is_a_few_forward_passes(model):
    """One sequence costs about n_clips + 1 sequences of compute, in a few calls."""
    x, _ = _batch(np.random.default_rng(3), 8)
    mask = torch.ones(8, N_CHANS, dtype=torch.bool)
    with torch.no_grad():
        model(x, mask)
        t = time.perf_counter()
        model(x, mask)
        forward = time.perf_counter() - t
    t = time.perf_counter()
    occlusion(model, x, mask, batch_size=256)
    occ = time.perf_counter() - t
    assert occ < 20 * (SEQ_LEN + 1) * forward + 0.5  # generous: a loaded CI box


def test_rejects_bad_input(model):
    with pytest.raises(ValueError, match="must be"):
        occlusion(model, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="baseline"):
        occlusion(model, torch.zeros(1, N_CHANS, SEQ_LEN, N_FEATS), baseline="median")
    ssl = build_model("dcgru_ssl", n_feats=N_FEATS, seq_len=SEQ_LEN)
    with pytest.raises(ValueError, match="SOZ classifier"):
        occlusion(ssl, torch.zeros(1, N_CHANS, SEQ_LEN, N_FEATS))
