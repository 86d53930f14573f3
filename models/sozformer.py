"""SOZFormer: a two-stage transformer that scores every contact of a recording.

Input: for each channel of one recording, a sequence of ``S`` consecutive clips (``S = 25`` 5-s
clips by default), each clip given as spectral features (:func:`models.spectral.spectral_features`)
or as raw samples. Three stages:

1. **Temporal encoder** (per channel): every clip becomes a token (a linear embedding of its
   spectral features, or a small convolutional front end over its raw samples), a learned
   position embedding marks its place in the sequence, and multi-head self-attention over the
   ``S`` tokens of the channel is pooled (mean, or a CLS token) into one channel embedding.
2. **Spatial encoder** (per recording): multi-head self-attention across the channels of the
   recording relates contacts to each other. Recordings have different channel counts: a batch
   is padded to its largest recording and ``mask`` marks the real channels; padded channels are
   excluded as attention keys, so they never change a real channel's output.
3. **Head**: one logit per channel.

There is no channel position embedding: the spatial stage is permutation-equivariant, as contact
order and count differ between patients. Padded channels are never run through the temporal
stage (only the real ``(batch, channel)`` pairs are), so whatever a padded slot holds, even NaN,
cannot leak into the result; their logits are returned as 0.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from models.contract import check_hparams, check_model_input, constructor_args

logger = logging.getLogger(__name__)

CLIP_EMBEDDINGS = ("linear", "conv")
POOLINGS = ("mean", "cls")


class ConvClipEmbedding(nn.Module):
    """Embed one clip of raw samples with a small strided 1-D CNN.

    Three conv blocks (kernel 7, stride 4, GELU, group norm) shrink the clip 64-fold, a global
    average pool removes the remaining time axis, and a linear layer maps to ``d_model``.

    Parameters
    ----------
    d_model : int
        Output embedding size.
    n_filters : int
        Channels of the convolutional blocks.

    Shapes: ``x`` is ``Tensor, shape (n_tokens, n_samples)``; returns ``(n_tokens, d_model)``.
    """

    def __init__(self, d_model: int, *, n_filters: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for _ in range(3):
            layers += [
                nn.Conv1d(in_ch, n_filters, kernel_size=7, stride=4, padding=3),
                nn.GroupNorm(1, n_filters),
                nn.GELU(),
            ]
            in_ch = n_filters
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(n_filters, d_model)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x.unsqueeze(1))  # (N, n_filters, ~n_samples / 64)
        return self.proj(h.mean(dim=-1))


class SOZFormer(nn.Module):
    """Temporal attention over each channel's clips, then spatial attention across channels.

    Parameters
    ----------
    n_feats : int
        Features per clip ``F``: the number of spectral features
        (:func:`models.spectral.n_spectral_features`) with ``clip_embedding="linear"``, or the
        clip length in samples with ``clip_embedding="conv"``.
    seq_len : int
        Clips per sequence ``S`` the model expects (25 five-second clips by default).
    d_model : int
        Token and channel embedding size.
    n_heads : int
        Attention heads in both encoders; must divide ``d_model``.
    n_temporal_layers : int
        Transformer layers over the clips of one channel.
    n_spatial_layers : int
        Transformer layers across the channels of one recording (0 turns the spatial stage off:
        every channel is then scored on its own).
    dim_feedforward : int
        Hidden size of the feed-forward block of each transformer layer.
    dropout : float
        Dropout in the embeddings, the transformer layers and before the head.
    clip_embedding : {"linear", "conv"}
        ``"linear"``: a linear layer over the ``F`` spectral features of each clip (the default).
        ``"conv"``: :class:`ConvClipEmbedding` over ``F`` raw samples of each clip (e.g. 5000 for a
        5-s clip at 1000 Hz) for end-to-end learning from the signal.
    pooling : {"mean", "cls"}
        How the temporal encoder's tokens become a channel embedding: their mean, or a learned
        CLS token prepended to the sequence.

    Attributes
    ----------
    hparams : dict
        The constructor's keyword arguments: ``build_model("sozformer", **model.hparams)``
        rebuilds the same architecture.

    Notes
    -----
    Layers are pre-norm (``norm_first=True``), which trains stably without warm-up at small
    sizes. The defaults (``d_model=64``, 2 + 2 layers, about 0.3 M parameters with 2500 bins)
    train on a CPU in minutes; scale ``d_model``, ``n_heads``, layers and ``dim_feedforward``
    up for GPUs.
    """

    task = "soz"

    def __init__(
        self,
        n_feats: int,
        *,
        seq_len: int = 25,
        d_model: int = 64,
        n_heads: int = 4,
        n_temporal_layers: int = 2,
        n_spatial_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        clip_embedding: str = "linear",
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        integers = (
            ("n_feats", n_feats, 1),
            ("seq_len", seq_len, 1),
            ("d_model", d_model, 1),
            ("n_heads", n_heads, 1),
            ("n_temporal_layers", n_temporal_layers, 1),
            ("n_spatial_layers", n_spatial_layers, 0),
            ("dim_feedforward", dim_feedforward, 1),
        )
        check_hparams(integers, dropout)
        if d_model % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_model=}.")
        if clip_embedding not in CLIP_EMBEDDINGS:
            raise ValueError(f"{clip_embedding=} is not one of {CLIP_EMBEDDINGS}.")
        if pooling not in POOLINGS:
            raise ValueError(f"{pooling=} is not one of {POOLINGS}.")
        if clip_embedding == "conv" and n_feats < 64:
            raise ValueError(
                f"{n_feats=} is too short for clip_embedding='conv' (raw samples per clip, "
                "at least 64); use clip_embedding='linear' for spectral features."
            )
        self.hparams = constructor_args(self, locals())
        self.n_feats = n_feats
        self.seq_len = seq_len
        self.pooling = pooling

        if clip_embedding == "linear":
            self.embed = nn.Linear(n_feats, d_model)
        else:
            self.embed = ConvClipEmbedding(d_model)
        self.pos_embedding = nn.Parameter(torch.zeros(seq_len, d_model))
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        if pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.embed_dropout = nn.Dropout(dropout)
        self.temporal = _encoder(d_model, n_heads, dim_feedforward, dropout, n_temporal_layers)
        self.spatial = (
            _encoder(d_model, n_heads, dim_feedforward, dropout, n_spatial_layers)
            if n_spatial_layers
            else None
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, 1))

    def channel_embeddings(self, x: Tensor, mask: Tensor) -> Tensor:
        """Temporal stage: one embedding per real channel.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, seq_len, n_feats)
            Clip features of each channel.
        mask : BoolTensor, shape (batch, n_chans)
            True for real channels.

        Returns
        -------
        emb : Tensor, shape (batch, n_chans, d_model)
            Zero for padded channels.
        """
        check_model_input(x, mask, seq_len=self.seq_len, n_feats=self.n_feats)
        tokens = x[mask]  # (N_real, S, F): padded slots never enter the network
        n_real, seq_len, n_feats = tokens.shape
        h = self.embed(tokens.reshape(n_real * seq_len, n_feats)).reshape(n_real, seq_len, -1)
        h = h + self.pos_embedding
        if self.pooling == "cls":
            h = torch.cat([self.cls_token.expand(n_real, -1, -1), h], dim=1)  # (N_real, 1+S, D)
        h = self.temporal(self.embed_dropout(h))
        pooled = h[:, 0] if self.pooling == "cls" else h.mean(dim=1)  # (N_real, D)
        emb = pooled.new_zeros(*mask.shape, pooled.shape[-1])
        emb[mask] = pooled
        return emb

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per-channel SOZ logits.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, seq_len, n_feats)
            Clip features (or raw clips with ``clip_embedding="conv"``), float32.
        mask : BoolTensor, shape (batch, n_chans)
            True for real channels, False for padding.

        Returns
        -------
        logits : Tensor, shape (batch, n_chans)
            One logit per channel; 0 for padded channels.
        """
        emb = self.channel_embeddings(x, mask)  # (B, C, D)
        if self.spatial is not None:
            # A recording without any real channel would make every attention row fully
            # masked (NaN); let its (zero) padding attend to itself instead, its output is
            # dropped below anyway.
            pad = ~mask & mask.any(dim=1, keepdim=True)
            emb = self.spatial(emb, src_key_padding_mask=pad)
        logits = self.head(emb).squeeze(-1)  # (B, C)
        return logits.masked_fill(~mask, 0.0)


def _encoder(
    d_model: int, n_heads: int, dim_feedforward: int, dropout: float, n_layers: int
) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model,
        n_heads,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # enable_nested_tensor=False: the nested-tensor path (eval only) returns zeros instead of
    # computed values at padded positions, and norm_first rules it out anyway (with a warning).
    # The fused eval-mode layer kernel may still run; a test checks it against the train path.
    return nn.TransformerEncoder(
        layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
    )
