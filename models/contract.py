"""The input contract every registered model checks: ``x (batch, n_chans, seq_len, n_feats)``
with a ``mask (batch, n_chans)`` of real channels (see :mod:`models.registry`), and the
constructor checks and ``hparams`` they share."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor


def check_model_input(x: Tensor, mask: Tensor, *, seq_len: int, n_feats: int) -> None:
    """Raise a ValueError unless ``x`` and ``mask`` fit a model built for ``seq_len, n_feats``.

    Parameters
    ----------
    x : Tensor, shape (batch, n_chans, seq_len, n_feats)
        Floating-point clip features.
    mask : BoolTensor, shape (batch, n_chans)
        True for real channels.
    seq_len, n_feats : int
        What the model was built for.
    """
    if x.ndim != 4 or tuple(x.shape[2:]) != (seq_len, n_feats) or not x.is_floating_point():
        raise ValueError(
            f"x must be a float tensor of shape (batch, n_chans, {seq_len=}, {n_feats=}), got "
            f"dtype={x.dtype} and shape={tuple(x.shape)}; build the model with the seq_len and "
            "n_feats of the data."
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(x.shape[:2])} (batch, n_chans), got "
            f"dtype={mask.dtype} and shape={tuple(mask.shape)}; True marks real channels."
        )


def check_hparams(integers: Iterable[tuple[str, object, int]], dropout: float) -> None:
    """Raise a ValueError unless every ``(name, value, low)`` is an integer >= ``low`` and
    ``0 <= dropout < 1`` (the constructor checks the registered models share)."""
    for name, value, low in integers:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{dropout=} must be in [0, 1).")


def constructor_args(model: object, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``model``'s constructor was called with, by its signature, from
    the constructor's ``locals()`` (``given``): the ``model.hparams`` that
    :func:`models.registry.build_model` takes back to rebuild it."""
    params = inspect.signature(type(model).__init__).parameters
    return {name: given[name] for name in params if name != "self"}
