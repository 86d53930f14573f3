"""Focal class-balanced BCE against a hand computation, its limits, masking and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.losses import (
    FocalClassBalancedBCE,
    PosWeightBCE,
    class_balanced_weights,
    focal_class_balanced_bce,
    pos_weight_bce,
    pos_weight_from_counts,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_hand_computation_tiny_batch():
    # batch of 1 recording, 4 channels: labels 1, 0, 0, 0 -> N_1 = 1, N_0 = 3
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    beta, gamma = 0.9, 2.0
    w1 = (1 - 0.9) / (1 - 0.9**1)  # = 1.0
    w0 = (1 - 0.9) / (1 - 0.9**3)  # = 0.1 / 0.271 = 0.36900...
    assert w1 == pytest.approx(1.0)
    assert w0 == pytest.approx(0.369003690)
    # p_t: sigmoid(2) for the positive; 1 - sigmoid(x) = sigmoid(-x) for the negatives
    pt = [_sigmoid(2.0), _sigmoid(1.0), _sigmoid(-0.5), _sigmoid(0.0)]
    assert pt == pytest.approx([0.880797, 0.731059, 0.377541, 0.5], abs=1e-6)
    w = [w1, w0, w0, w0]
    expected = -sum(wi * (1 - p) ** gamma * math.log(p) for wi, p in zip(w, pt, strict=True)) / 4
    # written out, (1 - p_t)^2 * -log(p_t) per entry:
    #   1.0 * 0.014209 * 0.126928                            = 0.001804
    #   0.369004 * (0.072329 * 0.313262   (= 0.022658)
    #             + 0.387455 * 0.974077   (= 0.377411)
    #             + 0.25 * 0.693147)      (= 0.173287)       = 0.211571
    #   (0.001804 + 0.211571) / 4                            = 0.053344
    assert expected == pytest.approx(0.053344, abs=1e-6)
    got = focal_class_balanced_bce(logits, targets, gamma=gamma, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    w_t = class_balanced_weights(targets, beta=beta)
    assert w_t[0].tolist() == pytest.approx(w)


def test_gamma_zero_is_class_balanced_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, generator=g, dtype=torch.float64)
    targets = (torch.rand(3, 7, generator=g) < 0.3).to(torch.float64)
    w = class_balanced_weights(targets, beta=0.999)
    expected = (w * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).mean()
    got = focal_class_balanced_bce(logits, targets, gamma=0.0, beta=0.999)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    # weights per the formula: positives are rarer, so they weigh more
    n1 = int(targets.sum())
    n0 = targets.numel() - n1
    assert w[targets == 1][0].item() == pytest.approx(0.001 / (1 - 0.999**n1))
    assert w[targets == 0][0].item() == pytest.approx(0.001 / (1 - 0.999**n0))
    assert w[targets == 1][0] > w[targets == 0][0]


def test_beta_zero_is_plain_mean_bce():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=g)
    targets = (torch.rand(4, 5, generator=g) < 0.5).float()
    got = focal_class_balanced_bce(logits, targets, gamma=0.0, beta=0.0)
    expected = F.binary_cross_entropy_with_logits(logits, targets)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_beta_to_one_tends_to_inverse_frequency():
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    w = class_balanced_weights(targets, beta=1 - 1e-9)
    assert w.tolist()[0] == pytest.approx([1.0, 0.25, 0.25, 0.25, 0.25], rel=1e-6)


def test_mask_excludes_padded_channels():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, generator=g, dtype=torch.float64)
    targets = torch.tensor([[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    got = focal_class_balanced_bce(logits, targets, gamma=1.0, beta=0.99, mask=mask)
    # same as the loss over the real channels only, flattened
    expected = focal_class_balanced_bce(logits[mask], targets[mask], gamma=1.0, beta=0.99)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    # padding values, even absurd ones, change nothing and get no gradient
    logits2 = logits.clone()
    logits2[~mask] = 1e6
    logits2.requires_grad_(True)
    loss2 = focal_class_balanced_bce(logits2, targets, gamma=1.0, beta=0.99, mask=mask)
    assert loss2.item() == pytest.approx(got.item(), rel=1e-12)
    loss2.backward()
    assert torch.all(logits2.grad[~mask] == 0)
    assert torch.all(logits2.grad[mask] != 0)
    # everything masked: zero, still differentiable
    x = torch.zeros(1, 3, requires_grad=True)
    z = focal_class_balanced_bce(x, torch.zeros(1, 3), mask=torch.zeros(1, 3, dtype=torch.bool))
    z.backward()
    assert z.item() == 0.0 and torch.all(x.grad == 0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_finite_at_extreme_logits(gamma):
    logits = torch.tensor([[-1e4, -80.0, 80.0, 1e4], [1e4, 80.0, -80.0, -1e4]], requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    loss = focal_class_balanced_bce(logits, targets, gamma=gamma)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # confidently wrong entries dominate; confidently right ones have ~zero gradient
    assert logits.grad[0, 0] < 0 and logits.grad[0, 3] > 0
    assert abs(logits.grad[1, 0].item()) < 1e-12


def test_focusing_down_weights_easy_examples():
    logits = torch.tensor([[4.0, 0.1]])
    targets = torch.tensor([[1.0, 1.0]])
    l0 = focal_class_balanced_bce(logits, targets, gamma=0.0, beta=0.0)
    l2 = focal_class_balanced_bce(logits, targets, gamma=2.0, beta=0.0)
    assert l2 < l0


def test_pos_weight_bce_matches_torch_and_masks():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, generator=g)
    targets = (torch.rand(3, 5, generator=g) < 0.3).float()
    got = pos_weight_bce(logits, targets, pos_weight=4.0)
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(4.0))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, 3:] = False
    got_m = PosWeightBCE(pos_weight=4.0)(logits, targets, mask)
    expected_m = F.binary_cross_entropy_with_logits(
        logits[:, :3], targets[:, :3], pos_weight=torch.tensor(4.0)
    )
    assert got_m.item() == pytest.approx(expected_m.item(), rel=1e-6)
    assert pos_weight_from_counts(10, 90) == 9.0


def test_module_and_argument_checks():
    m = FocalClassBalancedBCE(gamma=1.0, beta=0.9)
    assert "gamma=1.0" in repr(m)
    x = torch.zeros(2, 3)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert m(x, y).item() == pytest.approx(
        focal_class_balanced_bce(x, y, gamma=1.0, beta=0.9).item()
    )
    with pytest.raises(ValueError, match="beta=1.0"):
        focal_class_balanced_bce(x, y, beta=1.0)
    with pytest.raises(ValueError, match="gamma=-1"):
        FocalClassBalancedBCE(gamma=-1)
    with pytest.raises(ValueError, match="must match"):
        focal_class_balanced_bce(x, y[:, :2])
    with pytest.raises(ValueError, match="0 or 1"):
        focal_class_balanced_bce(x, y * 0.5)
    with pytest.raises(ValueError, match="mask.shape"):
        focal_class_balanced_bce(x, y, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="pos_weight"):
        pos_weight_bce(x, y, pos_weight=0.0)
    with pytest.raises(ValueError, match="n_pos=0"):
        pos_weight_from_counts(0, 5)
