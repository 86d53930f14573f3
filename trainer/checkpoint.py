"""A fold's model checkpoint: everything serving needs to rebuild the model and score a recording.

``RUN_DIR/<model>/fold_<k>/checkpoint.pt`` is a plain :func:`torch.save` of a dict (no Ray, no
pickled classes: it loads with ``torch.load(weights_only=True)``):

=================  ===========================================================================
key                value
=================  ===========================================================================
format_version     int, :data:`CHECKPOINT_VERSION`
model_name         registry name (:func:`models.registry.build_model`)
hparams            constructor keyword arguments (``model.hparams``)
state_dict         the weights (CPU tensors, DDP ``module.`` prefix stripped)
threshold          the SOZ decision threshold (Youden's J on the fold's validation patients)
feature_config     ``{"n_bands", "fmin", "fmax"}`` of :func:`models.spectral.spectral_features`,
                   and ``norm`` / ``extras`` where the run set them (:mod:`models.site_norm`)
seq_len, n_feats   clips per sequence and features per clip the model expects
sfreq              the store's sampling rate (Hz) the features were computed at
clip_samples       samples per clip
ingest_config      the store's ingest settings (plain dict), so serving preprocesses identically
fold               the fold index
extra              anything else (epoch, validation AUC ...), JSON-like
=================  ===========================================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ingest.errors import SozkitError
from ingest.fileio import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
#: Keys every checkpoint holds: those its metadata is read from, and those of the weights.
_META_KEYS = (
    "model_name",
    "threshold",
    "feature_config",
    "seq_len",
    "n_feats",
    "sfreq",
    "clip_samples",
)
_REQUIRED = ("format_version", "hparams", "state_dict", *_META_KEYS)


@dataclass(frozen=True)
class FoldCheckpoint:
    """The metadata of a loaded checkpoint (everything but the weights).

    Parameters
    ----------
    model_name : str
        Registry name of the model.
    hparams : dict
        Constructor keyword arguments.
    threshold : float
        SOZ decision threshold on the channel probability.
    feature_config : dict
        ``n_bands``, ``fmin``, ``fmax`` of the spectral features.
    seq_len, n_feats : int
        Clips per sequence and features per clip.
    sfreq : float
        Store sampling rate in Hz.
    clip_samples : int
        Samples per clip.
    ingest_config : dict
        The store's ingest configuration (plain dict), empty when unknown.
    fold : int or None
        Fold index.
    extra : dict
        Free-form training information.
    """

    model_name: str
    hparams: dict[str, Any]
    threshold: float
    feature_config: dict[str, Any]
    seq_len: int
    n_feats: int
    sfreq: float
    clip_samples: int
    ingest_config: dict[str, Any] = field(default_factory=dict)
    fold: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DistributedDataParallel (or ``torch.compile``) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as detached CPU tensors, without any DDP ``module.`` prefix."""
    return {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    model_name: str,
    threshold: float,
    feature_config: Mapping[str, Any],
    sfreq: float,
    clip_samples: int,
    ingest_config: Mapping[str, Any] | None = None,
    fold: int | None = None,
    extra: Mapping[str, Any] | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a fold checkpoint atomically (temporary file, then rename).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ``RUN_DIR/<model>/fold_<k>/checkpoint.pt``.
    model : torch.nn.Module
        The trained model (a DDP wrapper is unwrapped); must carry ``hparams``, ``seq_len`` and
        ``n_feats`` attributes, as every registry model does.
    model_name : str
        Its registry name.
    threshold : float
        SOZ decision threshold.
    feature_config : mapping
        ``n_bands``, ``fmin``, ``fmax`` used to compute its input features.
    sfreq : float
        Store sampling rate (Hz).
    clip_samples : int
        Samples per clip.
    ingest_config : mapping, optional
        The store's ingest configuration as a plain dict.
    fold : int, optional
        Fold index.
    extra : mapping, optional
        JSON-like training information.
    state_dict : mapping, optional
        Weights to save instead of the model's current ones (e.g. the best epoch's).

    Returns
    -------
    Path
        The written file.
    """
    bare = unwrap_model(model)
    for attr in ("hparams", "seq_len", "n_feats"):
        if not hasattr(bare, attr):
            raise SozkitError(
                f"{type(bare).__name__} has no attribute {attr!r}; build models with "
                "models.registry.build_model so a checkpoint can rebuild them."
            )
    if not 0.0 <= float(threshold) <= 1.0:
        raise SozkitError(f"{threshold=} must be a probability in [0, 1].")
    weights = (
        {k: v.detach().cpu() for k, v in state_dict.items()}
        if state_dict is not None
        else cpu_state_dict(bare)
    )
    payload = {
        "format_version": CHECKPOINT_VERSION,
        "model_name": str(model_name),
        "hparams": dict(bare.hparams),
        "state_dict": weights,
        "threshold": float(threshold),
        "feature_config": dict(feature_config),
        "seq_len": int(bare.seq_len),
        "n_feats": int(bare.n_feats),
        "sfreq": float(sfreq),
        "clip_samples": int(clip_samples),
        "ingest_config": dict(ingest_config or {}),
        "fold": None if fold is None else int(fold),
        "extra": dict(extra or {}),
    }
    path = Path(path)
    atomic_write(path, lambda f: torch.save(payload, f))
    logger.debug("wrote %s (%s, threshold %.3f)", path, model_name, threshold)
    return path


#: Constructor arguments added after checkpoints were first written, with the value that rebuilds
#: the model such a checkpoint was trained as (its ``hparams`` lack the key).
_LEGACY_HPARAMS: dict[str, dict[str, Any]] = {
    "dcgru": {"standardize": False},
    "dcgru_ssl": {"standardize": False},
}


def read_checkpoint_meta(path: str | os.PathLike) -> FoldCheckpoint:
    """A checkpoint's metadata without its weights (memory-mapped: the tensors are not read)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise SozkitError(
            f"{path} is not a readable sozkit checkpoint ({e}); retrain that fold."
        ) from e
    _check_keys(path, payload, _META_KEYS)
    return _meta(payload, dict(payload.get("hparams") or {}))


def _check_keys(path: Path, payload: Mapping, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in payload]
    if missing:
        raise SozkitError(f"{path} is not a sozkit checkpoint: keys {missing} are missing.")


def _meta(payload: Mapping, hparams: dict[str, Any]) -> FoldCheckpoint:
    return FoldCheckpoint(
        model_name=payload["model_name"],
        hparams=hparams,
        threshold=float(payload["threshold"]),
        feature_config=dict(payload["feature_config"]),
        seq_len=int(payload["seq_len"]),
        n_feats=int(payload["n_feats"]),
        sfreq=float(payload["sfreq"]),
        clip_samples=int(payload["clip_samples"]),
        ingest_config=dict(payload.get("ingest_config") or {}),
        fold=payload.get("fold"),
        extra=dict(payload.get("extra") or {}),
    )


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, FoldCheckpoint]:
    """Rebuild a fold's model from its checkpoint.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_checkpoint`.
    map_location : str or torch.device
        Where to load the weights.

    Returns
    -------
    model : torch.nn.Module
        The model, in eval mode, with the saved weights.
    meta : FoldCheckpoint
        Threshold, feature configuration and the rest of the metadata.
    """
    from models.registry import build_model

    path = Path(path)
    if not path.is_file():
        raise SozkitError(
            f"no checkpoint at {path}; train first (soz train STORE --out RUN_DIR) and point at "
            "RUN_DIR/<model>/fold_<k>/checkpoint.pt."
        )
    payload = torch.load(path, map_location=map_location, weights_only=True)
    _check_keys(path, payload, _REQUIRED)
    if payload["format_version"] > CHECKPOINT_VERSION:
        raise SozkitError(
            f"{path} has format_version={payload['format_version']}, newer than this sozkit "
            f"reads ({CHECKPOINT_VERSION}); upgrade sozkit."
        )
    hparams = {**_LEGACY_HPARAMS.get(payload["model_name"], {}), **payload["hparams"]}
    model = build_model(payload["model_name"], **hparams)
    model.load_state_dict(payload["state_dict"])
    model.to(map_location).eval()
    meta = _meta(payload, hparams)
    return model, meta
