"""Losses of the SOZ models, on per-channel logits with a mask for padded channels.

Only ~10% of contacts are in the seizure onset zone, so both losses re-weight the classes:

- :func:`focal_class_balanced_bce` (SOZFormer): the focal class-balanced binary cross-entropy
  of the SPEC, exactly,

  .. math::

     L = -\\frac{1}{|I|} \\sum_{i \\in I} w_i (1 - p_{t,i})^\\gamma \\log p_{t,i}, \\qquad
     w_i = \\frac{1 - \\beta}{1 - \\beta^{N_{y_i}}},

  with :math:`p_t = p` if :math:`y = 1` else :math:`1 - p`, :math:`N_{y_i}` the number of
  (unmasked) examples of the batch with the label of :math:`i` and :math:`I` the unmasked
  examples. ``gamma=0`` is the class-balanced BCE (Cui et al. 2019), ``beta=0`` the plain mean
  BCE; as ``beta -> 1`` the weights tend to ``1 / N_y`` (inverse class frequency). The weights are
  not renormalised (the SPEC formula has no normalisation), so the loss is smaller in magnitude
  than a plain BCE: tune the learning rate with the loss, not against a plain BCE.
- :func:`pos_weight_bce` (DCGRU): ``BCEWithLogits`` with a positive-class weight, masked mean.

Both are computed from ``logsigmoid`` and are finite, with finite gradients, at any logit.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "FocalClassBalancedBCE",
    "PosWeightBCE",
    "class_balanced_weights",
    "focal_class_balanced_bce",
    "pos_weight_bce",
    "pos_weight_from_counts",
]


def _check_inputs(logits: Tensor, targets: Tensor, mask: Tensor | None) -> Tensor:
    """Check shapes and labels; return the boolean mask (all True when ``mask`` is None)."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits.shape={tuple(logits.shape)} and targets.shape={tuple(targets.shape)} must "
            "match: one 0/1 target per channel logit."
        )
    if mask is None:
        mask = torch.ones_like(targets, dtype=torch.bool)
    else:
        if mask.shape != logits.shape:
            raise ValueError(
                f"mask.shape={tuple(mask.shape)} must equal logits.shape={tuple(logits.shape)} "
                "(True = a real channel, False = padding)."
            )
        mask = mask.to(torch.bool)
    bad = ((targets != 0) & (targets != 1)) & mask
    if bool(bad.any()):
        raise ValueError(
            f"targets must be 0 or 1 on unmasked entries; found {targets[bad][:5].tolist()}. "
            "The class-balanced weights count examples per label, so soft labels are not supported."
        )
    return mask


def class_balanced_weights(
    targets: Tensor, *, beta: float = 0.999, mask: Tensor | None = None
) -> Tensor:
    """Per-example class-balanced weights ``w_i = (1 - beta) / (1 - beta ** N_{y_i})``.

    Parameters
    ----------
    targets : Tensor, shape (batch, n_chans)
        0/1 labels (any shape works; counts run over every unmasked element).
    beta : float
        In [0, 1). ``beta=0`` gives weights of 1.
    mask : Tensor of bool, shape like ``targets``, optional
        False for padded channels; they are not counted (their weight is 0).

    Returns
    -------
    w : Tensor, shape like ``targets``
        Float weights, detached (no gradient flows into the label counts).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(
            f"{beta=} must be in [0, 1); beta -> 1 approaches inverse class frequency."
        )
    mask = _check_inputs(targets, targets, mask)
    dtype = targets.dtype if targets.is_floating_point() else torch.float32
    pos = (targets == 1) & mask
    n_pos = pos.sum().to(torch.float64)
    n_neg = mask.sum().to(torch.float64) - n_pos

    def weight(n: Tensor) -> Tensor:
        # a class absent from the batch gets no examples, so its weight is never used;
        # clamp keeps 1 - beta**0 = 0 from dividing by zero
        return (1.0 - beta) / (1.0 - beta ** n.clamp(min=1.0))

    w = torch.where(pos, weight(n_pos), weight(n_neg)).to(dtype)
    return torch.where(mask, w, torch.zeros_like(w)).detach()


def focal_class_balanced_bce(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 0.0,
    beta: float = 0.999,
    mask: Tensor | None = None,
) -> Tensor:
    """Focal class-balanced binary cross-entropy (SPEC, exactly), averaged over unmasked examples.

    Parameters
    ----------
    logits : Tensor, shape (batch, n_chans)
        Per-channel logits (any shape is accepted, all elements are examples).
    targets : Tensor, shape (batch, n_chans)
        0/1 SOZ labels, float or integer.
    gamma : float
        Focusing parameter, >= 0. ``gamma=0`` gives the class-balanced BCE.
    beta : float
        Class-balancing parameter in [0, 1). ``beta=0`` gives the plain (focal) mean BCE.
    mask : Tensor of bool, shape (batch, n_chans), optional
        True for real channels, False for padding. Padded entries count neither in ``N_y`` nor
        in ``|I|`` and get no gradient.

    Returns
    -------
    loss : Tensor, shape ()
        ``-1/|I| sum_i w_i (1 - p_t,i)**gamma log p_t,i``; 0 (still attached to the graph) when
        every entry is masked.
    """
    if gamma < 0:
        raise ValueError(f"{gamma=} must be >= 0 (0 = no focusing).")
    mask = _check_inputs(logits, targets, mask)
    w = class_balanced_weights(targets, beta=beta, mask=mask).to(logits.dtype)
    pos = targets == 1
    # log p_t and log(1 - p_t) from logsigmoid: finite for any logit
    log_pt = torch.where(pos, F.logsigmoid(logits), F.logsigmoid(-logits))
    per_example = -w * log_pt
    if gamma > 0:
        log_one_minus_pt = torch.where(pos, F.logsigmoid(-logits), F.logsigmoid(logits))
        per_example = per_example * torch.exp(gamma * log_one_minus_pt)
    per_example = torch.where(mask, per_example, torch.zeros_like(per_example))
    n = mask.sum()
    return per_example.sum() / n.clamp(min=1).to(per_example.dtype)


def pos_weight_from_counts(n_pos: int, n_neg: int) -> float:
    """The usual ``pos_weight`` for :func:`pos_weight_bce`: ``n_neg / n_pos`` of the training set.

    Parameters
    ----------
    n_pos, n_neg : int
        Numbers of SOZ and non-SOZ channel examples (both > 0).
    """
    if n_pos <= 0 or n_neg <= 0:
        raise ValueError(
            f"{n_pos=} and {n_neg=} must both be > 0: the training set needs SOZ and non-SOZ "
            "channels to weight the classes."
        )
    return float(n_neg) / float(n_pos)


def pos_weight_bce(
    logits: Tensor,
    targets: Tensor,
    *,
    pos_weight: float | Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """``BCEWithLogits`` with a positive-class weight (the DCGRU loss), mean over unmasked entries.

    Parameters
    ----------
    logits, targets : Tensor, shape (batch, n_chans)
        Per-channel logits and 0/1 labels.
    pos_weight : float or Tensor
        Weight of the positive (SOZ) term, > 0; a Tensor broadcastable to the last dimension is
        passed to :func:`torch.nn.functional.binary_cross_entropy_with_logits` as is.
        :func:`pos_weight_from_counts` gives the usual ``n_neg / n_pos``.
    mask : Tensor of bool, shape (batch, n_chans), optional
        True for real channels.

    Returns
    -------
    loss : Tensor, shape ()
    """
    mask = _check_inputs(logits, targets, mask)
    pw = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    if bool((pw <= 0).any()):
        raise ValueError(f"pos_weight={pos_weight} must be > 0 (n_neg / n_pos is the usual value).")
    per_example = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), pos_weight=pw, reduction="none"
    )
    per_example = torch.where(mask, per_example, torch.zeros_like(per_example))
    return per_example.sum() / mask.sum().clamp(min=1).to(per_example.dtype)


class FocalClassBalancedBCE(nn.Module):
    """Module form of :func:`focal_class_balanced_bce`.

    Parameters
    ----------
    gamma : float
        Focusing parameter, >= 0 (SPEC default 0).
    beta : float
        Class-balancing parameter in [0, 1) (SPEC default 0.999).
    """

    def __init__(self, *, gamma: float = 0.0, beta: float = 0.999) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"{gamma=} must be >= 0 (0 = no focusing).")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{beta=} must be in [0, 1).")
        self.gamma = float(gamma)
        self.beta = float(beta)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        return focal_class_balanced_bce(
            logits, targets, gamma=self.gamma, beta=self.beta, mask=mask
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, beta={self.beta}"


class PosWeightBCE(nn.Module):
    """Module form of :func:`pos_weight_bce`.

    Parameters
    ----------
    pos_weight : float
        Weight of the positive (SOZ) term, > 0.
    """

    def __init__(self, *, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"{pos_weight=} must be > 0 (n_neg / n_pos is the usual value).")
        self.pos_weight = float(pos_weight)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        return pos_weight_bce(logits, targets, pos_weight=self.pos_weight, mask=mask)

    def extra_repr(self) -> str:
        return f"pos_weight={self.pos_weight}"
