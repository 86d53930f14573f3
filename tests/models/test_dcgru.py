"""DCGRU and its next-clip pre-training: graph options, locality, encoder weight transfer."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from models.dcgru import DCGRU, DCGRUNextClip, next_clip_loss, standardize_features
from models.graphs import diffusion_steps

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = dict(seq_len=5, hidden=8)


def _x(batch=2, n_chans=6, seq_len=5, n_feats=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_chans, seq_len, n_feats, generator=g)
    return x, torch.ones(batch, n_chans, dtype=torch.bool)


def test_argument_validation_messages():
    with pytest.raises(ValueError, match="top_k=0"):
        DCGRU(10, top_k=0)
    with pytest.raises(ValueError, match="k_hops=-1"):
        DCGRU(10, k_hops=-1)
    with pytest.raises(ValueError, match="hidden=0"):
        DCGRU(10, hidden=0)
    with pytest.raises(ValueError, match="seq_len=1 must be an integer >= 2"):
        DCGRUNextClip(10, seq_len=1)


@pytest.mark.parametrize(
    "options", [dict(top_k=None), dict(top_k=1), dict(n_layers=2), dict(k_hops=3)]
)
def test_options_give_finite_per_channel_logits(options):
    torch.manual_seed(0)
    model = DCGRU(10, **SMALL, **options).eval()
    x, mask = _x()
    mask[0, 4:] = False
    with torch.no_grad():
        out = model(x, mask)
    assert out.shape == (2, 6) and torch.isfinite(out).all()
    assert (out[0, 4:] == 0).all()
    assert len(model.encoder.cells) == options.get("n_layers", 1)


def test_diffusion_carries_information_between_channels_only_with_k_hops():
    # standardize=False: the input statistics are shared by all channels of a sample, so with
    # them every channel would see a change of channel 5 whatever the graph.
    x, mask = _x(batch=1)
    changed = x.clone()
    changed[:, 5] *= 3.0  # same correlations (graph), different signal on channel 5
    for k_hops, coupled in ((0, False), (2, True)):
        torch.manual_seed(0)
        model = DCGRU(10, **SMALL, k_hops=k_hops, top_k=None, standardize=False).eval()
        with torch.no_grad():
            out, out2 = model(x, mask), model(changed, mask)
        assert not torch.allclose(out[:, 5], out2[:, 5])
        assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-6) is not coupled, k_hops


def test_top_k_restricts_who_influences_whom():
    # Two groups of mutually correlated channels, {0, 1, 2} and {3, 4, 5}: with top_k=1 every
    # kept edge stays inside a group, so the graph has two components and changing channel 3
    # (a scale and shift: same correlations, same graph) moves only its own group's logits,
    # however many hops the recurrence accumulates over the clips (standardize=False: see above).
    g = torch.Generator().manual_seed(0)
    sources = torch.randn(1, 2, 5, 10, generator=g)
    base = sources.repeat_interleave(3, dim=1) + 0.3 * torch.randn(1, 6, 5, 10, generator=g)
    mask = torch.ones(1, 6, dtype=torch.bool)
    torch.manual_seed(0)
    model = DCGRU(10, **SMALL, k_hops=1, top_k=1, standardize=False).eval()
    forward, backward = model.supports(base, mask)
    edges = (forward[0] > 0) | (backward[0] > 0)
    assert edges[:3, 3:].sum() == 0 and edges[3:, :3].sum() == 0
    assert edges.sum() > 0
    changed = base.clone()
    changed[:, 3] = changed[:, 3] * 1.5 + 0.2
    torch.testing.assert_close(model.supports(changed, mask)[0], forward)
    with torch.no_grad():
        out, out2 = model(base, mask), model(changed, mask)
    torch.testing.assert_close(out2[:, :3], out[:, :3])
    neighbours = edges[3].nonzero().flatten()
    assert len(neighbours) and not torch.allclose(out2[:, neighbours], out[:, neighbours])


def test_standardized_inputs_ignore_the_level_and_scale_of_each_feature():
    # A recording's overall level per feature (gain, spectral shape) does not change the logits
    # nor, once mapped back, the next-clip error relative to the input's scale; padding stays out.
    x, mask = _x()
    mask[1, 4:] = False
    scale = torch.rand(10, generator=torch.Generator().manual_seed(1)) + 0.5
    shifted = x * scale - torch.linspace(8.0, 1.0, 10)
    for standardize, invariant in ((True, True), (False, False)):
        torch.manual_seed(0)
        model = DCGRU(10, **SMALL, standardize=standardize).eval()
        with torch.no_grad():
            same = torch.allclose(model(x, mask), model(shifted, mask), atol=1e-4)
        assert same is invariant, standardize
    torch.manual_seed(0)
    ssl = DCGRUNextClip(10, **SMALL).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            ssl(shifted, mask),
            (ssl(x, mask) * scale - torch.linspace(8.0, 1.0, 10)).masked_fill(
                ~mask[:, :, None, None], 0.0
            ),
            atol=1e-4,
            rtol=1e-4,
        )


def _soz_like(n_seqs=16, n_chans=12, seed=0):
    """Log-spectra sharing a steep per-feature profile, SOZ channels +0.4 in 3 of 10 bands."""
    g = torch.Generator().manual_seed(seed)
    profile = -torch.linspace(8.0, 1.0, 10)  # like log amplitudes from low to high bands
    level = 0.5 * torch.randn(n_seqs, 1, 1, 1, generator=g)  # per-recording gain
    x = profile + level + 0.3 * torch.randn(n_seqs, n_chans, 5, 10, generator=g)
    y = torch.zeros(n_seqs, n_chans)
    y[:, :2] = 1.0
    x[:, :2, :, 6:9] += 0.4
    return x, y, torch.ones(n_seqs, n_chans, dtype=torch.bool)


@pytest.mark.parametrize("standardize", [True, False])
def test_classifier_learns_channel_differences_on_a_shared_spectrum(standardize):
    # The SOZ signal is a small deviation of a few channels from a profile every channel shares
    # (as in SEEG log spectra). With standardised inputs DCGRU separates the channels of unseen
    # sequences within 60 steps at the default learning rate; on the raw features it could not
    # (the hidden states of all channels stay nearly equal).
    from sklearn.metrics import roc_auc_score

    from trainer.losses import pos_weight_bce

    x, y, mask = _soz_like()
    x_test, y_test, mask_test = _soz_like(seed=1)
    torch.manual_seed(0)
    model = DCGRU(10, **SMALL, standardize=standardize)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for step in range(60):
        i = slice(4 * (step % 4), 4 * (step % 4) + 4)
        opt.zero_grad()
        loss = pos_weight_bce(model(x[i], mask[i]), y[i], pos_weight=5.0, mask=mask[i])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = model(x_test, mask_test)
    auc = roc_auc_score(y_test.flatten().numpy(), scores.flatten().numpy())
    if standardize:
        assert auc > 0.93, auc
    else:
        assert auc < 0.85, auc


def test_next_clip_model_predicts_the_next_clips_without_seeing_the_last():
    torch.manual_seed(0)
    model = DCGRUNextClip(10, **SMALL).eval()
    x, mask = _x()
    with torch.no_grad():
        pred = model(x, mask)
        assert pred.shape == (2, 6, 4, 10)  # (B, C, S - 1, F): pred[:, :, t] ~ x[:, :, t + 1]
        changed = x.clone()
        changed[:, :, -1] = 100.0
        torch.testing.assert_close(model(changed, mask), pred)
        # The loss: mean absolute error against the next clips, over real channels only.
        mask[1, 4:] = False
        garbage = x.clone()
        garbage[1, 4:] = float("nan")
        err = (model(x, mask) - x[:, :, 1:]).abs()
        expected = torch.cat([err[0], err[1, :4]]).mean()
        torch.testing.assert_close(model.next_clip_loss(garbage, mask), expected)
        torch.testing.assert_close(next_clip_loss(model(garbage, mask), garbage, mask), expected)
        with pytest.raises(ValueError, match=r"pred must have shape \(2, 6, 4, 10\)"):
            next_clip_loss(pred[:, :, :-1], x, mask)


def test_pretraining_lowers_next_clip_loss_and_transfers_to_the_classifier():
    # Smooth spectra drifting slowly over clips: predictable from the previous ones.
    g = torch.Generator().manual_seed(0)
    level = torch.randn(8, 5, 1, 10, generator=g)
    x = (
        level
        + 0.05 * torch.arange(5.0)[None, None, :, None]
        + 0.05 * torch.randn(8, 5, 5, 10, generator=g)
    )
    mask = torch.ones(8, 5, dtype=torch.bool)
    mask[0, 3:] = False
    torch.manual_seed(0)
    ssl = DCGRUNextClip(10, **SMALL)
    opt = torch.optim.Adam(ssl.parameters(), lr=2e-2)
    first = ssl.next_clip_loss(x, mask).item()
    for _ in range(60):
        opt.zero_grad()
        loss = ssl.next_clip_loss(x, mask)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())

    torch.manual_seed(1)
    clf = DCGRU(10, **SMALL)
    before = clf.encoder_state_dict()
    clf.load_encoder_state_dict(ssl.encoder_state_dict())
    after = clf.encoder_state_dict()
    assert after.keys() == ssl.encoder_state_dict().keys()
    for key, value in ssl.encoder_state_dict().items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The head is the classifier's own; the copy is independent of the source model.
    with torch.no_grad():
        next(ssl.encoder.parameters()).add_(1.0)
    assert not torch.equal(next(clf.encoder.parameters()), next(ssl.encoder.parameters()))
    clf.eval()
    with torch.no_grad():
        assert torch.isfinite(clf(x, mask)).all()


def test_encoder_weights_of_another_size_are_refused():
    wrong = DCGRUNextClip(10, seq_len=5, hidden=16).encoder_state_dict()
    with pytest.raises(ValueError, match="hidden=8.*same n_feats, hidden, k_hops and n_layers"):
        DCGRU(10, **SMALL).load_encoder_state_dict(wrong)
    with pytest.raises(ValueError, match="n_layers=1"):
        DCGRU(10, **SMALL).load_encoder_state_dict(
            DCGRUNextClip(10, **SMALL, n_layers=2).encoder_state_dict()
        )


def _reference_dcrnn(model: DCGRU, x: Tensor, mask: Tensor) -> Tensor:
    """A literal DCRNN cell (Li et al. 2018): diffusion convolution over the concatenation
    ``[x_t, h]`` at every step, one layer, with the model's weights reassembled."""
    x = torch.where(mask[:, :, None, None], x, 0.0)
    if model.standardize:
        x = standardize_features(x, mask)[0]
    cell = model.encoder.cells[0]
    hd, k = cell.hidden, cell.k_hops
    supports = model.supports(x, mask)
    b, n, s, f = x.shape
    m = 1 + len(supports) * k
    w_x = cell.input_conv.weight.view(3 * hd, m, f)
    w_gates = torch.cat([w_x[: 2 * hd], cell.hidden_gates.weight.view(2 * hd, m, hd)], dim=-1)
    w_cand = torch.cat([w_x[2 * hd :], cell.hidden_candidate.weight.view(hd, m, hd)], dim=-1)
    bias = cell.input_conv.bias

    def dconv(inp, weight, bias):  # inp (B, N, D), weight (out, M, D)
        steps = diffusion_steps(inp, supports, k)  # (B, N, M, D)
        return steps.reshape(b, n, -1) @ weight.reshape(weight.shape[0], -1).T + bias

    h = x.new_zeros(b, n, hd)
    for t in range(s):
        r, u = torch.sigmoid(dconv(torch.cat([x[:, :, t], h], -1), w_gates, bias[: 2 * hd])).chunk(
            2, dim=-1
        )
        c = torch.tanh(dconv(torch.cat([x[:, :, t], r * h], -1), w_cand, bias[2 * hd :]))
        h = u * h + (1 - u) * c
    return model.head(h).squeeze(-1)


@pytest.mark.parametrize("k_hops, top_k", [(2, 3), (1, None), (3, 2)])
def test_cell_equals_a_literal_dcrnn_cell(k_hops, top_k):
    torch.manual_seed(0)
    model = DCGRU(10, **SMALL, k_hops=k_hops, top_k=top_k).eval().double()
    x, mask = _x(n_chans=7)
    x = x.double()
    mask[1, 5:] = False
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mask), _reference_dcrnn(model, x, mask).masked_fill(~mask, 0)
        )
