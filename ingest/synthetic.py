"""Clips already in memory written into a store the way ingest writes them.

Test fixtures and benchmarks make their clips directly at the store's rate (no signal file, no
filtering) and still need a store that every later stage reads like an ingested one. They go
through :func:`write_recording_clips`, which writes the array shard by shard and returns the
manifest rows of :func:`ingest.manifests.manifest_rows`; :func:`ingest.manifests.commit_manifests`
then commits them::

    rows = [write_recording_clips(store, rec, clips) for rec, clips in recordings]
    commit_manifests(store, [("rows", r) for r in rows])

:func:`synthetic_recording` describes such a recording (labels, seizure, no signal file);
:func:`write_patient` writes one patient's recordings, a seizure half-way through the ictal one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

import numpy as np

from ingest.clipping import block_bounds
from ingest.config import IngestConfig
from ingest.manifests import manifest_rows
from ingest.preprocessing import robust_std, to_storage
from ingest.recording import Recording, SeizureEvent, make_recording_id
from ingest.store import ClipStore
from ingest.stream import recording_plan


def synthetic_recording(
    cohort: str,
    subject: str,
    task: str,
    *,
    channels: Sequence[str],
    soz: Collection[str],
    n_clips: int,
    config: IngestConfig,
    seizure: tuple[float, float] | None = None,
) -> Recording:
    """A labelled SEEG recording of ``n_clips`` clips at the store's rate, with no signal file.

    Parameters
    ----------
    cohort, subject, task : str
        Identify it (session ``presurgery``, acquisition ``seeg``, run ``01``); the cohort is
        also its centre.
    channels : sequence of str
        Contact names, all typed SEEG.
    soz : collection of str
        The SOZ contacts (also marked resected).
    n_clips : int
        Length in clips of ``config.clip_s``.
    config : IngestConfig
        The store's configuration (its rate is the recording's).
    seizure : (onset_s, offset_s) or None
        One seizure, or none (an interictal recording).
    """
    recording_id = make_recording_id(cohort, subject, "presurgery", task, "seeg", "01")
    marked = frozenset(soz)
    return Recording(
        recording_id=recording_id,
        cohort=cohort,
        subject=subject,
        path=f"synthetic://{recording_id}",
        sfreq=config.sfreq,
        n_times=n_clips * config.clip_samples,
        channels=tuple(channels),
        ch_types=("seeg",) * len(channels),
        soz=marked,
        resected=marked,
        seizures=() if seizure is None else (SeizureEvent(*seizure),),
        session="presurgery",
        task=task,
        run="01",
        acquisition="seeg",
        centre=cohort,
    )


def write_recording_clips(store: ClipStore, rec: Recording, clips: np.ndarray) -> dict:
    """Write ``clips`` as the array of ``rec`` and return the recording's manifest rows.

    The clips are stored as given (cast to the storage dtype, saturating): no resampling, no
    filtering. The channel scale comes from their robust standard deviations, as in ingest.

    Parameters
    ----------
    store : ClipStore
        Opened with ``mode="a"``.
    rec : Recording
        Sampled at the store's rate; ``rec.n_times`` gives the number of clips.
    clips : ndarray, shape (n_clips, n_contacts, clip_samples)
        Microvolts, any float dtype; contacts in the order of ``rec.contacts``.

    Returns
    -------
    dict
        ``{"recording": row dict, "channels": DataFrame, "clips": DataFrame}``, for
        :func:`ingest.manifests.commit_manifests`.
    """
    cfg = store.ingest_config
    if rec.sfreq != cfg.sfreq:
        raise ValueError(
            f"{rec.recording_id}: sampled at {rec.sfreq} Hz, the store at {cfg.sfreq} Hz; "
            "make the clips at the store's rate (nothing is resampled here)."
        )
    plan = recording_plan(rec, cfg)
    shape = (plan.n_clips, len(plan.contacts), cfg.clip_samples)
    if clips.shape != shape:
        raise ValueError(
            f"{rec.recording_id}: clips of shape {clips.shape}, the recording needs {shape} "
            "(n_clips, n_contacts, clip_samples)."
        )
    store.create_array(rec.recording_id, n_clips=plan.n_clips, n_channels=len(plan.contacts))
    clip_std = np.empty(shape[:2], dtype=np.float32)
    for start, stop in block_bounds(plan.n_clips, cfg.block_clips):
        block = np.asarray(clips[start:stop], dtype=np.float32)
        clip_std[start:stop] = robust_std(block, max_samples=cfg.robust_max_samples)
        stored, _ = to_storage(block, cfg.dtype)
        store.write_block(rec.recording_id, start, np.ascontiguousarray(stored))
    return manifest_rows(rec, cfg, clip_std)


def write_patient(
    store: ClipStore,
    cohort: str,
    subject: str,
    channels: Sequence[str],
    soz: Collection[str],
    n_clips: Mapping[str, int],
    make_clips: Callable[[int, float | None], np.ndarray],
    *,
    seizure_s: float,
    centre: str | None = None,
) -> list[dict]:
    """Write one recording of a patient per task; return their manifest rows.

    Parameters
    ----------
    store : ClipStore
        Opened with ``mode="a"``.
    cohort, subject : str
    channels, soz
        As in :func:`synthetic_recording`.
    n_clips : mapping of str to int
        Clips of each task's recording, in writing order; the ``"ictal"`` one holds one seizure
        of ``seizure_s`` seconds starting half-way through it.
    make_clips : callable
        ``make_clips(n_clips, onset_s or None) -> clips (n_clips, n_contacts, clip_samples)``,
        called once per recording, in order.
    seizure_s : float
    centre : str or None
        The recording centre (default: the cohort).

    Returns
    -------
    list of dict
        :func:`write_recording_clips`'s rows, one per recording.
    """
    cfg = store.ingest_config
    rows = []
    for task, n in n_clips.items():
        onset = 0.5 * n * cfg.clip_s if task == "ictal" else None
        seizure = None if onset is None else (onset, onset + seizure_s)
        rec = synthetic_recording(
            cohort,
            subject,
            task,
            channels=channels,
            soz=soz,
            n_clips=n,
            config=cfg,
            seizure=seizure,
        )
        if centre is not None:
            rec = replace(rec, centre=centre)
        rows.append(write_recording_clips(store, rec, make_clips(n, onset)))
    return rows
