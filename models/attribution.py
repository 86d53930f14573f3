"""Which clips of a sequence drove each contact's SOZ probability: attribution by occlusion.

For a registered classifier (``model.task == "soz"``, see :mod:`models.registry`) and a batch of
sequences ``x : (batch, n_chans, n_clips, n_feats)``, clip ``s`` of a sequence is *occluded* (its
features replaced by a neutral value) and the model is run again; the attribution of clip ``s``
for contact ``c`` is the drop of ``c``'s probability::

    attribution[b, c, s] = p_c(x[b]) - p_c(x[b] with clip s occluded)

Positive: that clip raised the contact's probability; negative: it lowered it. Two granularities:

- ``per_channel=False`` (the default): clip ``s`` is occluded on every channel at once, so one
  sequence costs ``n_clips + 1`` forward passes, batched ``batch_size`` sequences at a time (for
  SOZFormer's 25 clips, 26 sequences' worth of compute in a few calls). It answers "which time
  windows drove this contact's score", including what the model read at that time on other
  contacts (the spatial stage relates contacts).
- ``per_channel=True``: clip ``s`` of contact ``c`` alone is occluded and only ``c``'s own change is
  kept: ``n_chans * n_clips + 1`` passes, for small recordings and for checking the first.

Neutral values (``baseline``): ``"mean"`` (default) puts the channel's mean clip over the
sequence in place of the clip, so an occluded clip looks like an average moment of that same
contact (no out-of-distribution zeros on log-amplitude spectra); ``"zero"`` puts zeros (the
neutral value of standardised features); a number puts that constant.

This measures the model's sensitivity to each window, not the cause of a seizure: an aid to
reading the traces, not a proof. Pure PyTorch (no Beam, no Ray).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

BASELINES = ("mean", "zero")


def _neutral(x: Tensor, baseline: Literal["mean", "zero"] | float) -> Tensor:
    """Replacement clip per (sequence, channel): shape (B, C, F)."""
    if isinstance(baseline, int | float) and not isinstance(baseline, bool):
        return torch.full_like(x[:, :, 0], float(baseline))
    if baseline == "mean":
        return x.mean(dim=2)
    if baseline == "zero":
        return torch.zeros_like(x[:, :, 0])
    raise ValueError(f"{baseline=} must be one of {BASELINES} or a number.")


@torch.no_grad()
def occlusion(
    model: nn.Module,
    x: Tensor,
    mask: Tensor | None = None,
    *,
    baseline: Literal["mean", "zero"] | float = "mean",
    per_channel: bool = False,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Per-contact, per-clip change of SOZ probability when each clip is occluded.

    Parameters
    ----------
    model : torch.nn.Module
        A registered classifier: ``forward(x, mask) -> logits (batch, n_chans)``.
    x : Tensor, shape (batch, n_chans, n_clips, n_feats)
        Sequences, float32 (the model's own input: spectral features for SOZFormer and DCGRU).
    mask : BoolTensor, shape (batch, n_chans), or None
        True for real channels (None: all real).
    baseline : {"mean", "zero"} or float
        What an occluded clip is replaced by (see the module docstring).
    per_channel : bool
        Occlude one contact's clip at a time (``n_chans * n_clips`` passes) instead of one clip
        on every contact at once (``n_clips`` passes).
    batch_size : int
        Sequences per forward call.

    Returns
    -------
    probs : Tensor, shape (batch, n_chans)
        The unoccluded probabilities (0 on padded channels).
    attribution : Tensor, shape (batch, n_chans, n_clips)
        ``probs - probability with that clip occluded``; 0 on padded channels.
    """
    if getattr(model, "task", "soz") != "soz":
        raise ValueError(
            f"occlusion needs a SOZ classifier; {type(model).__name__} has task={model.task!r}."
        )
    if x.ndim != 4:
        raise ValueError(f"x must be (batch, n_chans, n_clips, n_feats), got {tuple(x.shape)}.")
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be >= 1.")
    b, c, s, _ = x.shape
    if mask is None:
        mask = torch.ones(b, c, dtype=torch.bool, device=x.device)
    if mask.shape != (b, c):
        raise ValueError(f"mask {tuple(mask.shape)} must be (batch, n_chans) = {(b, c)}.")
    was_training = model.training
    model.eval()
    try:
        neutral = _neutral(x, baseline)  # (B, C, F)
        probs = _run(model, x, mask, batch_size)  # (B, C)
        attribution = torch.zeros(b, c, s, dtype=torch.float32, device=x.device)
        eye = torch.eye(s, dtype=torch.bool, device=x.device)
        if per_channel:
            for ch in range(c):
                sel = torch.zeros(s, c, s, dtype=torch.bool, device=x.device)
                sel[:, ch] = eye  # variant k occludes clip k of channel ch only
                occluded = _run_variants(model, x, mask, neutral, sel, batch_size)  # (B, S, C)
                attribution[:, ch] = probs[:, ch, None] - occluded[:, :, ch]
        else:
            sel = eye[:, None, :].expand(s, c, s)  # variant k occludes clip k of every channel
            occluded = _run_variants(model, x, mask, neutral, sel, batch_size)
            attribution = (probs[:, None, :] - occluded).permute(0, 2, 1)  # (B, C, S)
        attribution = attribution.masked_fill(~mask[..., None], 0.0)
        return probs, attribution.contiguous()
    finally:
        model.train(was_training)


def _run_variants(
    model: nn.Module, x: Tensor, mask: Tensor, neutral: Tensor, sel: Tensor, batch_size: int
) -> Tensor:
    """Probabilities of the ``S`` occluded copies of each sequence: shape (B, S, C).

    ``sel : (S, C, S)`` marks, for variant ``k``, the (channel, clip) slots replaced by
    ``neutral : (B, C, F)``; every other value is ``x``'s own, bit for bit.
    """
    b, c, s, f = x.shape
    out = []
    per_call = max(1, batch_size // s)  # sequences whose S variants fit in one call
    for i in range(0, b, per_call):
        xs, ns = x[i : i + per_call], neutral[i : i + per_call]
        variants = torch.where(sel[None, ..., None], ns[:, None, :, None, :], xs[:, None])
        n = xs.shape[0]
        probs = _run(model, variants.reshape(n * s, c, s, f),
                     mask[i : i + per_call].repeat_interleave(s, 0), batch_size)  # fmt: skip
        out.append(probs.reshape(n, s, c))
    return torch.cat(out, dim=0)


def _run(model: nn.Module, x: Tensor, mask: Tensor, batch_size: int) -> Tensor:
    out = []
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i : i + batch_size], mask[i : i + batch_size])
        out.append(torch.sigmoid(logits.float()).masked_fill(~mask[i : i + batch_size], 0.0))
    return torch.cat(out, dim=0)
