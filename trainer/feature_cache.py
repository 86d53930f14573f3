"""Per-clip spectral features cached beside the clip store, so the loader reads features, not signal.

The loader's cost is reading a sequence's raw clips (``S x n_chans x clip_samples`` samples,
decompressed and scaled) and their FFTs; the training step itself is cheaper on CPU (see
``benchmarks/training.py``). The features of a clip never change for a given store and feature
configuration, so they are computed once per clip and stored:

``STORE/features/spectral-v1-<key>/<recording_id>`` : a Zarr v3 array, shape
(n_clips, n_chans, n_feats), float32, chunks of :data:`CHUNK_CLIPS` clips x all channels
(a 25-clip sequence touches one or two chunks: a few hundred KB instead of tens of MB of
signal), where ``<key>`` spells the feature configuration (``nb64-fmin0.5-fmaxNone``; with
per-clip extra measures, :mod:`models.clip_extras`, ``nb64-fmin0.5-fmaxNone-x-spikes``, whose
arrays hold the raw spectrum and then the measures' raw values:
:func:`models.site_norm.stored_features`).

An array is complete when its ``complete`` attribute is true (set after every chunk is written);
an incomplete or missing array is simply not used (the loader then computes the features from
the clips, exactly as before). :func:`write_recording_features` is what each Ray task of
:func:`trainer.run.run_training` runs, one recording per task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr
import zarr.errors
import zarr.storage

from models.site_norm import feature_extras, n_features, spectral_kwargs, stored_features

logger = logging.getLogger(__name__)

#: Bump when :func:`models.spectral.spectral_features` (or an extra measure of
#: :mod:`models.clip_extras`) changes, so stale caches are never read.
FEATURE_VERSION = "spectral-v1"
#: Clips per chunk of a cached feature array.
CHUNK_CLIPS = 32


def cache_key(feature_config: Mapping[str, Any]) -> str:
    """``nb<n_bands>-fmin<fmin>-fmax<fmax>[-x-<extra>+<extra>]``: the folder name part of a
    feature configuration.

    Keyed on :func:`models.site_norm.spectral_kwargs` of it and its ``extras``, what
    :func:`write_recording_features` computes: a per-recording normalisation (``norm``) and
    the extras' values relative to the other contacts are applied after the cache is read, so
    every ``norm`` shares one cache; a configuration without extras has the key it always had.
    """
    fc = {"n_bands": None, "fmin": 0.5, "fmax": None, **spectral_kwargs(feature_config)}
    key = f"nb{fc['n_bands']}-fmin{fc['fmin']}-fmax{fc['fmax']}"
    extras = feature_extras(feature_config)
    return f"{key}-x-{'+'.join(extras)}" if extras else key


def cache_url(store_url: str | os.PathLike, feature_config: Mapping[str, Any]) -> str:
    """``STORE/features/spectral-v1-<key>``: the feature cache of a store and configuration
    (:func:`cache_key`: the same for any ``norm``, one per set of ``extras``)."""
    return (
        f"{os.fspath(store_url).rstrip('/')}/features/{FEATURE_VERSION}-{cache_key(feature_config)}"
    )


def _group(url: str, mode: str) -> zarr.Group:
    """The cache's group at ``url``; ``mode="a"`` creates it when missing.

    Training caches recordings in parallel (one Ray task each), and the first tasks of a new
    cache all find it missing: zarr creates a group exclusively, so every task but one gets
    ``ContainsGroupError``. The group then exists, made by another task: open it.
    """
    if "://" in url and not url.startswith("file://"):
        store = zarr.storage.FsspecStore.from_url(url, read_only=mode == "r")
    else:
        store = zarr.storage.LocalStore(url.removeprefix("file://"), read_only=mode == "r")
    try:
        return zarr.open_group(store, mode=mode)
    except zarr.errors.ContainsGroupError:
        if mode != "a":
            raise
        return zarr.open_group(store, mode="r+")


def write_recording_features(
    store: Any,
    recording_id: str,
    feature_config: Mapping[str, Any],
    *,
    url: str | None = None,
) -> bool:
    """Compute and cache the features of every clip of one recording (skipped when complete).

    Parameters
    ----------
    store : ingest.store.ClipStore
        The open clip store.
    recording_id : str
    feature_config : mapping
        ``n_bands``, ``fmin``, ``fmax`` of :func:`models.spectral.spectral_features`, and
        ``extras`` (:mod:`models.clip_extras`; ``norm`` is ignored).
    url : str, optional
        Cache location; default :func:`cache_url` of the store.

    Returns
    -------
    bool
        True when features were computed, False when a complete array was already there.
    """
    # stored_features, n_features and cache_url all leave "norm" out: the cache holds
    # un-normalised features whatever the run's normalisation
    url = url or cache_url(store.url, feature_config)
    group = _group(url, "a")
    if recording_id in group and group[recording_id].attrs.get("complete"):
        return False
    n_clips = int(store.array(recording_id).shape[0])
    n_chans = int(store.array(recording_id).shape[1])
    n_feats = n_features(store.clip_samples, store.sfreq, feature_config)
    arr = group.create_array(
        recording_id,
        shape=(n_clips, n_chans, n_feats),
        chunks=(CHUNK_CLIPS, n_chans, n_feats),
        dtype="float32",
        overwrite=True,
        attributes={"complete": False, "feature_config": dict(feature_config)},
    )
    for start in range(0, n_clips, CHUNK_CLIPS):
        stop = min(start + CHUNK_CLIPS, n_clips)
        clips = store.read_clips(recording_id, start, stop)
        arr[start:stop] = stored_features(clips, store.sfreq, feature_config)
    arr.attrs["complete"] = True
    return True


class FeatureCacheReader:
    """Reads cached clip features of complete recordings (one instance per process).

    Parameters
    ----------
    url : str
        The cache (:func:`cache_url`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._arrays: dict[str, zarr.Array | None] = {}
        try:
            self._group = _group(url, "r")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            self._group = None

    def has(self, recording_id: str) -> bool:
        """Whether a complete feature array of the recording is cached."""
        if recording_id not in self._arrays:
            arr = None
            if self._group is not None and recording_id in self._group:
                candidate = self._group[recording_id]
                if candidate.attrs.get("complete"):
                    arr = candidate
            self._arrays[recording_id] = arr
        return self._arrays[recording_id] is not None

    def read(self, recording_id: str, start: int, stop: int) -> np.ndarray:
        """Features of clips ``[start, stop)``, shape (stop - start, n_chans, n_feats), float32."""
        if not self.has(recording_id):
            raise KeyError(f"{recording_id} has no complete feature array in {self.url}.")
        return np.asarray(self._arrays[recording_id][start:stop], dtype=np.float32)
