"""The model registry: :func:`build_model` is the only way the rest of sozkit makes a model.

Every registered model is a ``torch.nn.Module`` with the same contract:

- ``forward(x, mask)`` with ``x : Tensor, shape (batch, n_chans, seq_len, n_feats)`` float32 and
  ``mask : BoolTensor, shape (batch, n_chans)`` (True = real channel). Padded channels never
  change a real channel's output.
- ``model.task``: ``"soz"`` for classifiers, whose forward returns ``logits : Tensor, shape
  (batch, n_chans)``; ``"next_clip"`` for self-supervised pre-training models, whose forward
  returns the predicted features of the next clips (see :class:`models.dcgru.DCGRUNextClip`).
- ``model.seq_len`` (clips per sequence it expects), ``model.n_feats`` (features per clip) and
  ``model.hparams`` (the constructor's keyword arguments), so a checkpoint stores
  ``(name, model.hparams, state_dict)`` and ``build_model(name, **hparams)`` rebuilds it.

The contract tests in ``tests/models/test_registry.py`` run over :func:`list_models`.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from torch import nn

from models.dcgru import DCGRU, DCGRUNextClip
from models.sozformer import SOZFormer

logger = logging.getLogger(__name__)

_MODELS: dict[str, type[nn.Module]] = {
    "sozformer": SOZFormer,
    "dcgru": DCGRU,
    "dcgru_ssl": DCGRUNextClip,
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_MODELS)


def _model_class(name: str) -> type[nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name=}; choose one of {list_models()}.") from None


def default_hparams(name: str) -> dict[str, Any]:
    """The keyword arguments of model ``name`` and their defaults (required ones map to None).

    Useful to print a model's full configuration, e.g. in a training card.
    """
    params = inspect.signature(_model_class(name).__init__).parameters
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in params.values()
        if p.name != "self"
    }


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``hparams``.

    Parameters
    ----------
    name : str
        One of :func:`list_models` (``"dcgru"``, ``"dcgru_ssl"``, ``"sozformer"``).
    **hparams
        The model's constructor keyword arguments (``n_feats`` is always required).

    Returns
    -------
    model : torch.nn.Module
        With ``model.hparams == {**defaults, **hparams}``.

    Raises
    ------
    ValueError
        For an unknown name, an unknown keyword, a missing required keyword, or an invalid value.
    """
    cls = _model_class(name)
    accepted = default_hparams(name)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} takes no argument(s) {unknown}; it accepts {sorted(accepted)}."
        )
    required = inspect.signature(cls.__init__).parameters
    missing = [
        p
        for p, spec in required.items()
        if p != "self" and spec.default is inspect.Parameter.empty and p not in hparams
    ]
    if missing:
        raise ValueError(
            f"model {name!r} needs {missing}; pass them to build_model, e.g. "
            f"build_model({name!r}, n_feats=n_spectral_features(clip_samples, sfreq))."
        )
    model = cls(**hparams)
    logger.debug(
        "built %s with %d parameters: %s", name, sum(p.numel() for p in model.parameters()), hparams
    )
    return model
