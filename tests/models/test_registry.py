"""Contract tests run over every registered model (braindecode's test_models style).

Every model: output shape for several channel counts, padded channels ignored (even holding
NaN), finite gradients, determinism under a seed, a sane parameter count, hparams that rebuild
the model, clear argument errors, and it learns a separable toy problem.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from models.registry import build_model, default_hparams, list_models

pytestmark = pytest.mark.usefixtures("torch_single_thread")

logger = logging.getLogger(__name__)

N_FEATS = 16
#: Small sizes per model so the whole file runs in seconds; unknown models get defaults.
SMALL = {
    "sozformer": dict(seq_len=5, d_model=16, n_heads=2, dim_feedforward=32),
    "dcgru": dict(seq_len=4, hidden=8),
    "dcgru_ssl": dict(seq_len=4, hidden=8),
}
MODELS = list_models()


def _build(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, **{"n_feats": N_FEATS, **SMALL.get(name, {}), **overrides})


def _expected_shape(model, batch: int, n_chans: int) -> tuple[int, ...]:
    if model.task == "soz":
        return (batch, n_chans)
    assert model.task == "next_clip", f"unknown task {model.task!r}: extend the contract tests"
    return (batch, n_chans, model.seq_len - 1, model.n_feats)


def _inputs(model, n_chans: int, *, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_chans, model.seq_len, model.n_feats, generator=g)
    return x, torch.ones(batch, n_chans, dtype=torch.bool)


def test_registry_names():
    assert MODELS == ["dcgru", "dcgru_ssl", "sozformer"]
    for name in MODELS:
        assert default_hparams(name)["n_feats"] is None  # required


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n_chans", [3, 17, 40])
def test_output_shape(name, n_chans):
    model = _build(name).eval()
    x, mask = _inputs(model, n_chans)
    with torch.no_grad():
        out = model(x, mask)
    assert out.shape == _expected_shape(model, 2, n_chans)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_padded_channels_never_change_real_outputs(name):
    model = _build(name).eval()
    x, mask = _inputs(model, 5, batch=1)
    with torch.no_grad():
        ref = model(x, mask)
        for garbage in (0.0, 1e4, float("nan")):
            xp = torch.cat([x, torch.full((1, 6, *x.shape[2:]), garbage)], dim=1)
            mp = torch.cat([mask, torch.zeros(1, 6, dtype=torch.bool)], dim=1)
            out = model(xp, mp)
            torch.testing.assert_close(out[:, :5], ref, atol=1e-5, rtol=1e-5)
            assert torch.isfinite(out).all()
            assert (out[:, 5:] == 0).all()
        # A padded batch of recordings of different sizes: each row as if it were alone.
        x2, mask2 = _inputs(model, 9, batch=1, seed=1)
        batch_x = torch.cat([xp[:, :9], x2])
        batch_mask = torch.cat([mp[:, :9], mask2])
        out = model(batch_x, batch_mask)
        torch.testing.assert_close(out[:1, :5], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:], model(x2, mask2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_backward_gives_finite_gradients_with_padding(name):
    model = _build(name).train()
    x, mask = _inputs(model, 6)
    mask[1, 4:] = False
    x[1, 4:] = float("nan")
    out = model(x, mask)
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_a_seed(name):
    outs = []
    for _ in range(2):
        model = _build(name, dropout=0.2).train()  # dropout draws too
        x, mask = _inputs(model, 4)
        torch.manual_seed(123)
        outs.append(model(x, mask))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    hparams = _build(name).hparams
    torch.manual_seed(1)
    other = build_model(name, **hparams)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(other.parameters(), _build(name).parameters(), strict=True)
    ), "different seeds must give different initial weights"


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_sane_at_default_sizes(name):
    # Default sizes at 100 log-spaced bands (Tang et al.) and at all 2500 bins of a 5-s clip.
    for n_feats, (low, high) in ((100, (1e4, 1e6)), (2500, (1e5, 5e6))):
        model = build_model(name, n_feats=n_feats)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info("%s n_feats=%d: %d parameters", name, n_feats, n_params)
        assert low < n_params < high, f"{name} with {n_feats=}: {n_params} parameters"


@pytest.mark.parametrize("name", MODELS)
def test_hparams_rebuild_the_same_architecture(name):
    model = _build(name)
    assert model.n_feats == N_FEATS
    assert model.seq_len == model.hparams["seq_len"]
    assert set(model.hparams) == set(default_hparams(name))
    json.dumps(model.hparams)  # goes into a checkpoint / training card as is
    rebuilt = build_model(name, **model.hparams)
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    x, mask = _inputs(model, 3)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, mask), model(x, mask))


def test_default_sequence_lengths():
    assert build_model("sozformer", n_feats=8).seq_len == 25
    assert build_model("dcgru", n_feats=8).seq_len == 12
    assert build_model("dcgru_ssl", n_feats=8).seq_len == 12


@pytest.mark.parametrize("name", MODELS)
def test_bad_arguments_and_inputs_raise_clear_errors(name):
    with pytest.raises(ValueError, match="unknown model name='nope'"):
        build_model("nope", n_feats=8)
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['n_head_s'\]"):
        build_model(name, n_feats=8, n_head_s=2)
    with pytest.raises(ValueError, match=r"needs \['n_feats'\]"):
        build_model(name)
    with pytest.raises(ValueError, match="n_feats=0"):
        build_model(name, n_feats=0)
    with pytest.raises(ValueError, match="dropout=1.5"):
        build_model(name, n_feats=8, dropout=1.5)
    model = _build(name)
    x, mask = _inputs(model, 3)
    with pytest.raises(ValueError, match=f"seq_len={model.seq_len}"):
        model(x[:, :, :-1], mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(x, mask.float())
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        model(x, mask[:, :2])


def _toy_problem(model, *, batch: int = 8, n_chans: int = 6, seed: int = 0):
    """Channels whose features carry a bump in the upper half are positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_chans, model.seq_len, model.n_feats, generator=g)
    y = torch.rand(batch, n_chans, generator=g) < 0.3
    x[..., model.n_feats // 2 :] += 1.5 * y[..., None, None]
    return x, y.float(), torch.ones(batch, n_chans, dtype=torch.bool)


@pytest.mark.parametrize("name", [n for n in MODELS if build_model(n, n_feats=4).task == "soz"])
def test_classifiers_learn_a_separable_toy_problem(name):
    model = _build(name, dropout=0.0).train()
    x, y, mask = _toy_problem(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, mask), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    xt, yt, mt = _toy_problem(model, seed=1)
    with torch.no_grad():
        pred = model(xt, mt) > 0
    assert (pred == yt.bool()).float().mean() > 0.9


@pytest.mark.parametrize("name", MODELS)
def test_mixed_precision_autocast(name):
    # What a GPU run does with torch.autocast; bfloat16 on CPU exercises the same dtype paths.
    model = _build(name).train()
    x, mask = _inputs(model, 5)
    mask[1, 3:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, mask)
    out.float().square().mean().backward()
    assert out.shape == _expected_shape(model, 2, 5) and torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("name", MODELS)
def test_cuda_matches_cpu(name):
    model = _build(name).eval()
    x, mask = _inputs(model, 7)
    mask[0, 4:] = False
    with torch.no_grad():
        cpu = model(x, mask)
        gpu = model.to("cuda")(x.cuda(), mask.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    model.train()
    model(x.cuda(), mask.cuda()).float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
