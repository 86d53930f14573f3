"""SOZFormer: argument checks, both clip embeddings and poolings, attention paths, masking."""

from __future__ import annotations

import pytest
import torch

from models.sozformer import SOZFormer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = dict(seq_len=6, d_model=16, n_heads=4, dim_feedforward=32, dropout=0.0)


def _model(n_feats: int = 12, **kwargs) -> SOZFormer:
    torch.manual_seed(0)
    return SOZFormer(n_feats, **{**SMALL, **kwargs})


def _x(model: SOZFormer, batch: int = 2, n_chans: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_chans, model.seq_len, model.n_feats, generator=g)
    return x, torch.ones(batch, n_chans, dtype=torch.bool)


def test_argument_validation_messages():
    with pytest.raises(ValueError, match=r"n_heads=3 must divide d_model=16"):
        SOZFormer(12, d_model=16, n_heads=3)
    with pytest.raises(ValueError, match="clip_embedding='fft'"):
        SOZFormer(12, clip_embedding="fft")
    with pytest.raises(ValueError, match="pooling='max'"):
        SOZFormer(12, pooling="max")
    with pytest.raises(ValueError, match="n_temporal_layers=0"):
        SOZFormer(12, n_temporal_layers=0)
    with pytest.raises(ValueError, match="n_feats=12 is too short"):
        SOZFormer(12, clip_embedding="conv")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("clip_embedding, n_feats", [("linear", 12), ("conv", 500)])
def test_embeddings_and_poolings_respect_the_mask(clip_embedding, n_feats, pooling):
    model = _model(n_feats, clip_embedding=clip_embedding, pooling=pooling).eval()
    x, mask = _x(model, batch=1, n_chans=4)
    xp = torch.cat([x, torch.full((1, 3, *x.shape[2:]), float("nan"))], dim=1)
    mp = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        ref = model(x, mask)
        out = model(xp, mp)
    assert ref.shape == (1, 4)
    torch.testing.assert_close(out[:, :4], ref, atol=1e-5, rtol=1e-5)
    assert (out[:, 4:] == 0).all()


def test_fast_inference_path_matches_training_path():
    # eval + no_grad lets PyTorch take its fused encoder-layer path; it must agree with the
    # regular path (dropout 0), padding included.
    model = _model()
    x, mask = _x(model, n_chans=7)
    mask[0, 5:] = False
    model.train()
    slow = model(x, mask).detach()
    model.eval()
    with torch.inference_mode():
        fast = model(x, mask)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_recording_without_real_channels_gives_zeros_not_nan():
    model = _model().eval()
    x, mask = _x(model)
    mask[1] = False
    with torch.no_grad():
        out = model(x, mask)
        alone = model(x[:1], mask[:1])
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all()
    torch.testing.assert_close(out[:1], alone, atol=1e-5, rtol=1e-5)


def test_spatial_attention_relates_channels_and_is_permutation_equivariant():
    model = _model().eval()
    x, mask = _x(model, batch=1, n_chans=6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x, mask)
        torch.testing.assert_close(model(x[:, perm], mask), out[:, perm], atol=1e-5, rtol=1e-5)
        changed = x.clone()
        changed[:, 5] += 3.0  # only channel 5's signal changes ...
        out2 = model(changed, mask)
    assert not torch.allclose(out2[:, :5], out[:, :5], atol=1e-4)  # ... yet the others move


def test_without_spatial_layers_channels_are_scored_independently():
    model = _model(n_spatial_layers=0).eval()
    x, mask = _x(model, batch=1, n_chans=6)
    changed = x.clone()
    changed[:, 5] += 3.0
    with torch.no_grad():
        out, out2 = model(x, mask), model(changed, mask)
    torch.testing.assert_close(out2[:, :5], out[:, :5])
    assert not torch.allclose(out2[:, 5], out[:, 5])


def test_clip_order_matters_through_position_embedding():
    model = _model().eval()
    with torch.no_grad():
        model.pos_embedding.normal_(std=1.0)
        x, mask = _x(model, batch=1, n_chans=3)
        reversed_clips = x.flip(2)
        assert not torch.allclose(model(x, mask), model(reversed_clips, mask), atol=1e-4)
