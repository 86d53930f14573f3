"""Graph functions: correlation adjacency, top-k, random-walk supports, diffusion steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.graphs import (
    correlation_adjacency,
    diffusion_steps,
    random_walk_supports,
    top_k_adjacency,
)


def _signals(batch=3, n_chans=6, n_times=200, seed=0):
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((batch, 1, n_times))
    mix = rng.uniform(-1, 1, (batch, n_chans, 1))
    return torch.as_tensor(mix * common + rng.standard_normal((batch, n_chans, n_times)))


def test_correlation_adjacency_matches_numpy_corrcoef():
    x = _signals()
    adj = correlation_adjacency(x, absolute=False)
    for b in range(x.shape[0]):
        ref = np.corrcoef(x[b].numpy())
        np.fill_diagonal(ref, 0.0)
        np.testing.assert_allclose(adj[b].numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(correlation_adjacency(x).numpy(), np.abs(adj.numpy()))
    assert (adj.diagonal(dim1=1, dim2=2) == 0).all()


def test_correlation_adjacency_ignores_masked_channels():
    x = _signals(batch=2, n_chans=7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    garbage = x.clone()
    garbage[0, 4:] = float("nan")
    adj = correlation_adjacency(garbage, mask)
    assert torch.isfinite(adj).all()
    assert (adj[0, 4:] == 0).all() and (adj[0, :, 4:] == 0).all()
    ref = np.abs(np.corrcoef(x[0, :4].numpy()))
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(adj[0, :4, :4].numpy(), ref, atol=1e-10)
    torch.testing.assert_close(adj[1], correlation_adjacency(x[1:])[0])


def test_constant_channel_has_no_edges_and_no_nan():
    x = _signals(batch=1, n_chans=4)
    x[0, 2] = 5.0
    adj = correlation_adjacency(x.float())
    assert torch.isfinite(adj).all()
    assert (adj[0, 2] == 0).all() and (adj[0, :, 2] == 0).all()


def test_top_k_keeps_k_strongest_per_row():
    adj = correlation_adjacency(_signals(batch=2, n_chans=8))
    directed = top_k_adjacency(adj, 3, symmetric=False)
    assert ((directed > 0).sum(-1) == 3).all()
    strongest = adj.topk(3, dim=-1).indices  # the diagonal is 0, never among the top 3
    kept = torch.gather(directed, -1, strongest)
    torch.testing.assert_close(kept, torch.gather(adj, -1, strongest))
    sym = top_k_adjacency(adj, 3)
    torch.testing.assert_close(sym, sym.transpose(1, 2))
    assert ((sym > 0).sum(-1) >= 3).all()
    assert ((sym > 0) == ((directed > 0) | (directed > 0).transpose(1, 2))).all()
    # k larger than the number of neighbours keeps everything but the diagonal.
    torch.testing.assert_close(top_k_adjacency(adj, 50), adj)
    with pytest.raises(ValueError, match="k=0"):
        top_k_adjacency(adj, 0)


def test_random_walk_supports_are_row_stochastic():
    adj = top_k_adjacency(correlation_adjacency(_signals(batch=2, n_chans=6)), 2, symmetric=False)
    adj[1, 5] = 0.0  # node 5 of sample 1: no out-edges
    adj[1, :, 5] = 0.0  # and no in-edges: isolated
    fwd, bwd = random_walk_supports(adj)
    rows = fwd.sum(-1)
    has_edges = adj.sum(-1) > 0
    torch.testing.assert_close(rows[has_edges], torch.ones_like(rows[has_edges]))
    assert (fwd[1, 5] == 0).all() and (bwd[1, 5] == 0).all()
    torch.testing.assert_close(bwd, random_walk_supports(adj.transpose(1, 2))[0])
    assert not torch.allclose(fwd, bwd)  # directed graph: the two walks differ
    assert (fwd >= 0).all()


def test_diffusion_steps_are_matrix_powers():
    adj = correlation_adjacency(_signals(batch=2, n_chans=5))
    supports = list(random_walk_supports(adj))
    x = torch.randn(2, 5, 3, dtype=adj.dtype)
    steps = diffusion_steps(x, supports, 3)
    assert steps.shape == (2, 5, 1 + 2 * 3, 3)
    torch.testing.assert_close(steps[:, :, 0], x)
    p = supports[1]
    torch.testing.assert_close(steps[:, :, 4 + 1], torch.linalg.matrix_power(p, 2) @ x)
    torch.testing.assert_close(diffusion_steps(x, supports, 0), x[:, :, None])
