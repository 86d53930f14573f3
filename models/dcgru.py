"""DCGRU: a diffusion-convolution GRU over the contacts of a recording, and its pre-training.

After DCRNN (Li et al., ICLR 2018) and its EEG use (Tang et al., "Self-supervised graph neural
networks for improved electroencephalographic seizure analysis", ICLR 2022):

- **Standardised inputs** (``standardize=True``): each sample's features are z-scored per
  feature over its real channels and clips before the graph and the encoder
  (:func:`standardize_features`). Tang et al. z-score every feature with training-set statistics;
  here the statistics are the sample's own, which needs no fitted state (the state dicts are
  unchanged) and also removes a recording's overall level, which differs between patients far
  more than between the contacts of one recording. Without it the raw log-amplitudes
  (per-feature means from about -8 to -1, a 0.5 spread across channels) make the correlation
  graph nearly complete (every channel shares the 1/f shape) and the hidden states of all
  channels nearly equal: on the simulated 10-patient demo the supervised loss stayed at its
  constant-prediction value for 10 epochs and the test channel ROC-AUC was about 0.55.
- **Graph, per sample**: the absolute Pearson correlation between channels of the input
  (each channel's clip features flattened over the sequence), optionally sparsified to each
  node's ``top_k`` strongest neighbours (:mod:`models.graphs`); padded channels are cut off.
- **Diffusion convolution**: ``sum_k W_{k,f} (D_out^-1 A)^k X + W_{k,b} (D_in^-1 A^T)^k X`` for
  ``k = 0 .. K`` (the ``k = 0`` identity term counted once).
- **DCGRU cell**: a GRU whose gate and candidate transforms are diffusion convolutions;
  ``n_layers`` stacked cells unrolled over the ``seq_len`` clips (12 by default).
- :class:`DCGRU`: a per-node (per-channel) logit from the last hidden state.
- :class:`DCGRUNextClip`: the same encoder predicting each next clip's features, for
  self-supervised pre-training; :meth:`DCGRUNextClip.encoder_state_dict` then
  :meth:`DCGRU.load_encoder_state_dict` initialise the classifier with its weights.

Because the convolution is linear in ``[x_t, h]``, the input part of every gate is computed for
all clips at once before the recurrence (projected first, then diffused on the small projected
vectors), and only the hidden part is diffused at each step. This is the same function as
DCRNN's cell (a test checks it against a literal one), in less time and memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from models.contract import check_hparams, check_model_input, constructor_args
from models.graphs import (
    correlation_adjacency,
    diffusion_steps,
    random_walk_supports,
    top_k_adjacency,
)

logger = logging.getLogger(__name__)


class DCGRUCell(nn.Module):
    """One DCGRU cell: GRU gates made of K-step diffusion convolutions.

    Parameters
    ----------
    input_size : int
        Features per node of the input ``x_t``.
    hidden : int
        Hidden units per node.
    k_hops : int
        Diffusion steps ``K``.
    n_supports : int
        Transition matrices the convolution diffuses over (2: forward and backward walks).
    """

    def __init__(self, input_size: int, hidden: int, *, k_hops: int, n_supports: int = 2) -> None:
        super().__init__()
        self.hidden = hidden
        self.k_hops = k_hops
        n_terms = 1 + n_supports * k_hops
        # Weights of the convolution over [x, h] split into the x part (all three transforms at
        # once: reset gate, update gate, candidate) and the h parts.
        self.input_conv = nn.Linear(n_terms * input_size, 3 * hidden)
        self.hidden_gates = nn.Linear(n_terms * hidden, 2 * hidden, bias=False)
        self.hidden_candidate = nn.Linear(n_terms * hidden, hidden, bias=False)
        with torch.no_grad():  # DCRNN starts the gates open (bias 1): remember by default
            self.input_conv.bias[: 2 * hidden].fill_(1.0)
            self.input_conv.bias[2 * hidden :].zero_()

    def project_inputs(self, x: Tensor, supports: list[Tensor]) -> Tensor:
        """The input part of every transform, for all clips at once.

        Parameters
        ----------
        x : Tensor, shape (batch, n_nodes, seq_len, input_size)
        supports : list of Tensor, each shape (batch, n_nodes, n_nodes)

        Returns
        -------
        proj : Tensor, shape (batch, seq_len, n_nodes, 3 * hidden)
        """
        b, n, s, f = x.shape
        out = 3 * self.hidden
        n_terms = 1 + len(supports) * self.k_hops
        # Project first, diffuse after: W [x, P x, P^2 x, ...] = sum_k P^k (x W_k), and
        # sum_{k=1..K} P^k y_k = P (y_1 + P (y_2 + ... P y_K)). The diffusion then runs on
        # 3 * hidden values per node instead of input_size (2500 spectral bins), and the
        # (batch, n_nodes, n_terms, seq_len * input_size) stack of diffused inputs is never built.
        w = self.input_conv.weight.view(out, n_terms, f)
        y = (x @ w.permute(2, 1, 0).reshape(f, n_terms * out)).view(b, n, s, n_terms, out)
        proj = y[:, :, :, 0] + self.input_conv.bias  # (B, N, S, 3H)
        for i, p in enumerate(supports if self.k_hops else []):
            terms = y[:, :, :, 1 + i * self.k_hops : 1 + (i + 1) * self.k_hops]  # (B, N, S, K, 3H)
            acc = terms[:, :, :, -1]
            for k in range(self.k_hops - 2, -1, -1):
                acc = (p @ acc.reshape(b, n, s * out)).view(b, n, s, out) + terms[:, :, :, k]
            proj = proj + (p @ acc.reshape(b, n, s * out)).view(b, n, s, out)
        return proj.transpose(1, 2)  # (B, S, N, 3H)

    def forward(self, x_proj: Tensor, h: Tensor, supports: list[Tensor]) -> Tensor:
        """One recurrence step.

        Parameters
        ----------
        x_proj : Tensor, shape (batch, n_nodes, 3 * hidden)
            The step's slice of :meth:`project_inputs`.
        h : Tensor, shape (batch, n_nodes, hidden)
            Previous hidden state.
        supports : list of Tensor, each shape (batch, n_nodes, n_nodes)

        Returns
        -------
        h_next : Tensor, shape (batch, n_nodes, hidden)
        """
        b, n, _ = h.shape
        hd = self.hidden
        gates = x_proj[..., : 2 * hd] + self.hidden_gates(
            diffusion_steps(h, supports, self.k_hops).reshape(b, n, -1)
        )
        r, u = torch.sigmoid(gates).chunk(2, dim=-1)
        c = torch.tanh(
            x_proj[..., 2 * hd :]
            + self.hidden_candidate(diffusion_steps(r * h, supports, self.k_hops).reshape(b, n, -1))
        )
        return u * h + (1.0 - u) * c


class DCGRUEncoder(nn.Module):
    """Stacked DCGRU cells unrolled over a sequence of clips.

    Parameters
    ----------
    n_feats : int
        Features per clip and node.
    hidden : int
        Hidden units per node of every layer.
    k_hops : int
        Diffusion steps ``K``.
    n_layers : int
        Stacked cells; layer ``l > 0`` reads the hidden sequence of layer ``l - 1``.
    dropout : float
        Dropout between layers.
    """

    def __init__(
        self, n_feats: int, *, hidden: int, k_hops: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.cells = nn.ModuleList(
            DCGRUCell(n_feats if i == 0 else hidden, hidden, k_hops=k_hops) for i in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, supports: list[Tensor]) -> Tensor:
        """Hidden states of the last layer at every clip.

        Parameters
        ----------
        x : Tensor, shape (batch, n_nodes, seq_len, n_feats)
        supports : list of Tensor, each shape (batch, n_nodes, n_nodes)

        Returns
        -------
        out : Tensor, shape (batch, n_nodes, seq_len, hidden)
        """
        b, n, s, _ = x.shape
        seq = x
        for i, cell in enumerate(self.cells):
            if i:
                seq = self.dropout(seq)
            proj = cell.project_inputs(seq, supports)  # (B, S, N, 3H)
            h = x.new_zeros(b, n, self.hidden)
            outs = []
            for t in range(s):
                h = cell(proj[:, t], h, supports)
                outs.append(h)
            seq = torch.stack(outs, dim=2)  # (B, N, S, H)
        return seq


class _DCGRUBase(nn.Module):
    """Arguments, graph and encoder shared by :class:`DCGRU` and :class:`DCGRUNextClip`.

    The constructor (one signature and defaults for both models, read by
    :func:`models.registry.default_hparams`) checks the arguments, builds the encoder and then
    calls :meth:`_build_head` for the subclass's output layer. ``min_seq_len`` is the shortest
    sequence the subclass can use.
    """

    min_seq_len = 1

    def __init__(
        self,
        n_feats: int,
        *,
        seq_len: int = 12,
        hidden: int = 64,
        k_hops: int = 2,
        top_k: int | None = 3,
        n_layers: int = 1,
        dropout: float = 0.0,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        integers = (
            ("n_feats", n_feats, 1),
            ("seq_len", seq_len, self.min_seq_len),
            ("hidden", hidden, 1),
            ("k_hops", k_hops, 0),
            ("n_layers", n_layers, 1),
        )
        check_hparams(integers, dropout)
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"{top_k=} must be a positive integer, or None for a dense graph.")
        if not isinstance(standardize, bool):
            raise ValueError(f"{standardize=} must be True or False.")
        self.hparams = constructor_args(self, locals())
        self.n_feats = n_feats
        self.standardize = standardize
        self.seq_len = seq_len
        self.top_k = top_k
        self.encoder = DCGRUEncoder(
            n_feats, hidden=hidden, k_hops=k_hops, n_layers=n_layers, dropout=dropout
        )
        self._build_head(n_feats=n_feats, hidden=hidden, dropout=dropout)

    def _build_head(self, *, n_feats: int, hidden: int, dropout: float) -> None:
        """Add the subclass's layers after the encoder (their names are checkpoint keys)."""
        raise NotImplementedError

    def supports(self, x: Tensor, mask: Tensor) -> list[Tensor]:
        """Forward and backward random-walk supports of each sample's correlation graph.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, seq_len, n_feats)
        mask : BoolTensor, shape (batch, n_chans)

        Returns
        -------
        supports : list of 2 Tensor, each shape (batch, n_chans, n_chans)
        """
        b, c = mask.shape
        adj = correlation_adjacency(x.reshape(b, c, -1), mask)  # (B, C, C)
        if self.top_k is not None:
            adj = top_k_adjacency(adj, self.top_k)
        return list(random_walk_supports(adj))

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        """Encoder states of the real channels at every clip.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, n_clips, n_feats)
        mask : BoolTensor, shape (batch, n_chans)

        Returns
        -------
        out : Tensor, shape (batch, n_chans, n_clips, hidden)
        """
        return self._encode(x, mask)[0]

    def _encode(self, x: Tensor, mask: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """:meth:`encode`, and the ``(mean, std)`` the input was standardised with (or None)."""
        x = torch.where(mask[:, :, None, None], x, 0.0)  # padded slots may hold anything
        stats = None
        if self.standardize:
            x, stats = standardize_features(x, mask)
        return self.encoder(x, self.supports(x, mask)), stats

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """The encoder's weights (the same keys for :class:`DCGRU` and :class:`DCGRUNextClip`)."""
        return {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}

    def load_encoder_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Initialise the encoder from :meth:`encoder_state_dict` of another DCGRU model.

        Raises
        ------
        ValueError
            If the weights come from an encoder of another size.
        """
        try:
            self.encoder.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise ValueError(
                "the encoder weights do not fit this model "
                f"(n_feats={self.n_feats}, hidden={self.hparams['hidden']}, "
                f"k_hops={self.hparams['k_hops']}, n_layers={self.hparams['n_layers']}); "
                "pre-train and fine-tune with the same n_feats, hidden, k_hops and n_layers."
            ) from e


class DCGRU(_DCGRUBase):
    """Per-channel SOZ logits from a DCGRU encoder over a correlation graph.

    Parameters
    ----------
    n_feats : int
        Spectral features per clip ``F`` (2500 bins of a 5-s clip at 1000 Hz, or fewer bands:
        :func:`models.spectral.n_spectral_features`).
    seq_len : int
        Clips per sequence ``S`` (12 by default).
    hidden : int
        Hidden units per node (64 in Tang et al.).
    k_hops : int
        Diffusion steps ``K`` (2 in Tang et al.).
    top_k : int | None
        Neighbours kept per node in the correlation graph (3 in Tang et al.); None = dense graph.
    n_layers : int
        Stacked DCGRU layers.
    dropout : float
        Dropout between layers and before the head.
    standardize : bool
        Z-score each sample's features per feature over its real channels and clips before the
        graph and the encoder (:func:`standardize_features`). False reproduces checkpoints written
        before the option existed.

    Attributes
    ----------
    hparams : dict
        The constructor's keyword arguments.

    Notes
    -----
    Forward: ``x : Tensor, shape (batch, n_chans, seq_len, n_feats)`` and
    ``mask : BoolTensor, shape (batch, n_chans)`` give ``logits : Tensor, shape (batch, n_chans)``
    (0 for padded channels), from ``Linear(ReLU(dropout(h_S)))`` on each node's last hidden
    state, as in Tang et al. but per node instead of pooled.
    """

    task = "soz"

    def _build_head(self, *, n_feats: int, hidden: int, dropout: float) -> None:
        self.head = nn.Sequential(nn.Dropout(dropout), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per-channel logits; see the class notes for shapes."""
        check_model_input(x, mask, seq_len=self.seq_len, n_feats=self.n_feats)
        last = self.encode(x, mask)[:, :, -1]  # (B, C, H)
        return self.head(last).squeeze(-1).masked_fill(~mask, 0.0)


class DCGRUNextClip(_DCGRUBase):
    """Self-supervised pre-training: predict each next clip's features with the DCGRU encoder.

    The encoder reads clips ``0 .. S-2`` of a sequence of ``S`` (the graph is built from those
    same clips, never from the last one) and, after each clip ``t``, a linear layer maps every
    node's hidden state to the features of clip ``t + 1``. The targets are the input itself
    (``x[:, :, 1:]``), so no label is needed; :meth:`next_clip_loss` is the masked mean
    absolute error Tang et al. (2022) pre-train with.

    Parameters
    ----------
    n_feats, seq_len, hidden, k_hops, top_k, n_layers, dropout, standardize
        As in :class:`DCGRU` (``seq_len >= 2``). With ``standardize`` the decoder predicts the
        standardised next clip, mapped back with the statistics of the clips read, so the
        predictions and :func:`next_clip_loss` stay in the units of the input. Use the same
        ``n_feats``, ``hidden``, ``k_hops`` and ``n_layers`` as the classifier the weights are
        meant for.

    Notes
    -----
    Forward: ``x : Tensor, shape (batch, n_chans, seq_len, n_feats)`` and
    ``mask : BoolTensor, shape (batch, n_chans)`` give
    ``pred : Tensor, shape (batch, n_chans, seq_len - 1, n_feats)``, the same layout as the
    input: ``pred[:, :, t]`` predicts ``x[:, :, t + 1]``. Padded channels predict 0.
    """

    task = "next_clip"

    min_seq_len = 2

    def _build_head(self, *, n_feats: int, hidden: int, dropout: float) -> None:
        self.decoder = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_feats))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Predicted features of clips ``1 .. S-1``; see the class notes for shapes."""
        check_model_input(x, mask, seq_len=self.seq_len, n_feats=self.n_feats)
        states, stats = self._encode(x[:, :, :-1], mask)  # (B, C, S-1, H)
        pred = self.decoder(states)  # (B, C, S-1, F)
        if stats is not None:
            mean, std = stats
            pred = pred * std + mean
        return pred.masked_fill(~mask[:, :, None, None], 0.0)

    def next_clip_loss(self, x: Tensor, mask: Tensor) -> Tensor:
        """:func:`next_clip_loss` of this model's predictions for ``x``.

        Under DDP, call the wrapped model and :func:`next_clip_loss` instead, so the forward
        pass goes through the wrapper and gradients are synchronised.

        Parameters
        ----------
        x : Tensor, shape (batch, n_chans, seq_len, n_feats)
        mask : BoolTensor, shape (batch, n_chans)

        Returns
        -------
        loss : Tensor, shape ()
        """
        return next_clip_loss(self(x, mask), x, mask)


def standardize_features(
    x: Tensor, mask: Tensor, *, eps: float = 1e-5
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Z-score each sample's features per feature over its real channels and clips.

    Parameters
    ----------
    x : Tensor, shape (batch, n_chans, seq_len, n_feats)
        Padded slots must be finite (the models zero them first).
    mask : BoolTensor, shape (batch, n_chans)
        True for real channels; padded channels neither count in the statistics nor change.
    eps : float
        Added to the variance.

    Returns
    -------
    z : Tensor, shape (batch, n_chans, seq_len, n_feats)
        ``(x - mean) / std`` on real channels, 0 on padded ones.
    (mean, std) : tuple of Tensor, each shape (batch, 1, 1, n_feats)
    """
    m = mask[:, :, None, None].to(x.dtype)  # (B, C, 1, 1)
    count = (m.sum(dim=1, keepdim=True) * x.shape[2]).clamp_min(1.0)  # (B, 1, 1, 1)
    mean = (x * m).sum(dim=(1, 2), keepdim=True) / count
    var = (((x - mean) * m) ** 2).sum(dim=(1, 2), keepdim=True) / count
    std = (var + eps).sqrt()
    return ((x - mean) / std) * m, (mean, std)


def next_clip_loss(pred: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error of next-clip predictions over the real channels.

    Parameters
    ----------
    pred : Tensor, shape (batch, n_chans, seq_len - 1, n_feats)
        :class:`DCGRUNextClip` output: ``pred[:, :, t]`` predicts ``x[:, :, t + 1]``.
    x : Tensor, shape (batch, n_chans, seq_len, n_feats)
        The input sequence (the targets are ``x[:, :, 1:]``); padded slots may hold anything.
    mask : BoolTensor, shape (batch, n_chans)
        True for real channels.

    Returns
    -------
    loss : Tensor, shape ()
        The absolute error averaged over clips and features, then over real channels (each
        real channel weighs the same); 0 for a batch without real channels.
    """
    target = x[:, :, 1:]
    if pred.shape != target.shape or mask.shape != x.shape[:2]:
        raise ValueError(
            f"pred must have shape {tuple(target.shape)} (batch, n_chans, seq_len - 1, n_feats) "
            f"and mask {tuple(x.shape[:2])}, got pred {tuple(pred.shape)} and mask "
            f"{tuple(mask.shape)}."
        )
    target = torch.where(mask[:, :, None, None], target, 0.0)  # NaN-safe padding
    err = (pred - target).abs().mean(dim=(2, 3))  # (B, C)
    return torch.where(mask, err, 0.0).sum() / mask.sum().clamp_min(1)
