"""Channel graphs for diffusion convolution: correlation adjacency, top-k, random-walk supports.

Pure torch functions on batched tensors, after DCRNN (Li et al., ICLR 2018) and its EEG use
(Tang et al., ICLR 2022):

- :func:`correlation_adjacency`: a per-sample adjacency, the absolute Pearson correlation
  between channels, with padded channels cut off (zero rows and columns) and no self-loops
  (the diffusion's zeroth step is the identity, so a node always sees itself).
- :func:`top_k_adjacency`: keep each node's ``k`` strongest neighbours, symmetrised.
- :func:`random_walk_supports`: the forward and backward random-walk transition matrices
  ``D_out^-1 A`` and ``D_in^-1 A^T``.
- :func:`diffusion_steps`: ``[X, P X, P^2 X, ... P^K X]`` for each support ``P``, the terms a
  diffusion convolution weighs.

Graphs are built per sample in the model's forward pass (not in a data loader), so every
sequence gets the graph of its own signal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


def correlation_adjacency(
    x: Tensor, mask: Tensor | None = None, *, absolute: bool = True, eps: float = 1e-8
) -> Tensor:
    """Pearson correlation between the channels of each sample.

    Parameters
    ----------
    x : Tensor, shape (batch, n_chans, n_times)
        One vector per channel (a signal, or flattened clip features ``(seq_len * n_feats)``).
    mask : BoolTensor, shape (batch, n_chans) | None
        True for real channels; rows and columns of the others are zero (whatever they hold,
        NaN included). None: every channel is real.
    absolute : bool
        Return ``|r|`` (the default; anti-correlated channels are strongly connected too) or the
        signed correlation.
    eps : float
        Floor of a channel's norm: a constant channel has zero correlation with every other.

    Returns
    -------
    adj : Tensor, shape (batch, n_chans, n_chans)
        Symmetric, zero diagonal, entries in [0, 1] (``absolute=True``) or [-1, 1].
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (batch, n_chans, n_times), got {tuple(x.shape)}.")
    if x.shape[-1] < 2:
        raise ValueError(f"correlation needs n_times >= 2 values per channel, got {x.shape[-1]}.")
    if mask is not None:
        _check_mask(mask, x.shape[:2])
        x = torch.where(mask[..., None], x, 0.0)
    xc = x - x.mean(dim=-1, keepdim=True)
    z = xc / xc.norm(dim=-1, keepdim=True).clamp_min(eps)
    adj = (z @ z.transpose(1, 2)).clamp(-1.0, 1.0)  # (B, C, C)
    if absolute:
        adj = adj.abs()
    eye = torch.eye(adj.shape[-1], dtype=torch.bool, device=adj.device)
    adj = adj.masked_fill(eye, 0.0)
    if mask is not None:
        pair = mask[:, :, None] & mask[:, None, :]
        adj = adj.masked_fill(~pair, 0.0)
    return adj


def top_k_adjacency(adj: Tensor, k: int, *, symmetric: bool = True) -> Tensor:
    """Keep the ``k`` strongest neighbours of each node.

    Parameters
    ----------
    adj : Tensor, shape (batch, n_nodes, n_nodes)
        Non-negative weights (e.g. :func:`correlation_adjacency`); the diagonal is not
        considered a neighbour.
    k : int
        Neighbours kept per node (at most ``n_nodes - 1`` are available).
    symmetric : bool
        Keep an edge when either end selected it (``keep | keep^T``), so the result is
        symmetric for a symmetric ``adj``; a node may then have more than ``k`` neighbours.
        False: keep exactly the selected ``k`` entries of each row (a directed graph).

    Returns
    -------
    adj_k : Tensor, shape (batch, n_nodes, n_nodes)
        ``adj`` with the entries that were not kept set to zero, the diagonal included.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{k=} must be a positive integer (neighbours kept per node).")
    n = adj.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=adj.device)
    scores = adj.masked_fill(eye, float("-inf"))
    kk = min(k, n - 1)
    keep = torch.zeros_like(adj, dtype=torch.bool)
    if kk > 0:
        idx = scores.topk(kk, dim=-1).indices  # (B, N, k)
        keep.scatter_(-1, idx, True)
    if symmetric:
        keep = keep | keep.transpose(-1, -2)
    return torch.where(keep & ~eye, adj, torch.zeros((), dtype=adj.dtype, device=adj.device))


def random_walk_supports(adj: Tensor) -> tuple[Tensor, Tensor]:
    """Forward and backward random-walk transition matrices of a weighted graph.

    Parameters
    ----------
    adj : Tensor, shape (batch, n_nodes, n_nodes)
        Non-negative edge weights, ``adj[b, i, j]`` from node ``i`` to node ``j``.

    Returns
    -------
    forward : Tensor, shape (batch, n_nodes, n_nodes)
        ``D_out^-1 A``: each row with any edge sums to 1.
    backward : Tensor, shape (batch, n_nodes, n_nodes)
        ``D_in^-1 A^T``: each row with any edge sums to 1.

    Notes
    -----
    A node without edges (an isolated or padded channel) gets an all-zero row: nothing
    diffuses into it or, through it, to others.
    """
    if adj.ndim != 3 or adj.shape[-1] != adj.shape[-2]:
        raise ValueError(f"adj must have shape (batch, n, n), got {tuple(adj.shape)}.")
    return _row_normalise(adj), _row_normalise(adj.transpose(-1, -2))


def _row_normalise(a: Tensor) -> Tensor:
    deg = a.sum(dim=-1, keepdim=True)
    return torch.where(deg > 0, a / deg.clamp_min(torch.finfo(a.dtype).tiny), 0.0)


def diffusion_steps(x: Tensor, supports: Sequence[Tensor], k_hops: int) -> Tensor:
    """The terms of a K-step diffusion convolution.

    Parameters
    ----------
    x : Tensor, shape (batch, n_nodes, n_feats)
        Node signals.
    supports : sequence of Tensor, each shape (batch, n_nodes, n_nodes)
        Transition matrices (e.g. :func:`random_walk_supports`).
    k_hops : int
        Diffusion steps ``K`` (0 gives ``x`` alone).

    Returns
    -------
    steps : Tensor, shape (batch, n_nodes, 1 + len(supports) * k_hops, n_feats)
        ``[x, P_1 x, ..., P_1^K x, P_2 x, ..., P_2^K x, ...]`` along axis 2, the powers of each
        support as in Li et al. (2018), eq. 2.
    """
    if isinstance(k_hops, bool) or not isinstance(k_hops, int) or k_hops < 0:
        raise ValueError(f"{k_hops=} must be a non-negative integer.")
    out = [x]
    for p in supports:
        xk = x
        for _ in range(k_hops):
            xk = p @ xk
            out.append(xk)
    return torch.stack(out, dim=2)


def _check_mask(mask: Tensor, shape: tuple[int, ...]) -> None:
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(shape)}, got dtype={mask.dtype} and "
            f"shape={tuple(mask.shape)}."
        )
