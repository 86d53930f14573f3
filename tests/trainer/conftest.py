"""A tiny clip store for the trainer tests, written once per session through the real ClipStore.

Six patients in two cohorts, each with one ictal and one interictal recording, 6-9 contacts, 4-s
clips at 256 Hz. Signals are pink-ish noise; SOZ contacts carry interictal spikes and a 40 Hz
low-voltage fast onset in the seizure, so a model has something real to learn. The clips are made
at the store's rate and written with :func:`ingest.synthetic.write_recording_clips` (real Zarr v3
shards, and the manifest rows ingest builds), which keeps the fixture to about a second instead of
a Beam ingest.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from ingest.config import IngestConfig
from ingest.manifests import commit_manifests
from ingest.store import ClipStore
from ingest.synthetic import write_patient
from trainer.config import ALL_MODELS, TrainConfig

SFREQ = 256.0
CLIP_S = 4.0
PATIENTS = [("simA", f"P{i:02d}") for i in range(3)] + [("simB", f"Q{i:02d}") for i in range(3)]
#: Small models so that one epoch takes a second.
TINY_HPARAMS = {
    "sozformer": {
        "seq_len": 4,
        "d_model": 16,
        "n_heads": 2,
        "n_temporal_layers": 1,
        "n_spatial_layers": 1,
        "dim_feedforward": 32,
        "dropout": 0.0,
    },
    "dcgru": {"seq_len": 4, "hidden": 8, "top_k": 2},
    "baseline": {"pre_s": 24.0, "post_s": 24.0, "interictal_clips": 8},
}


def tiny_train_config(**kw) -> TrainConfig:
    """A TrainConfig small enough for a 2-fold run of every model in a minute; ``kw`` override."""
    base = dict(models=ALL_MODELS, n_folds=2, epochs=1, batch_size=4, seqs_per_recording=4)
    base.update(n_bands=8, ssl_epochs=1, model_hparams=TINY_HPARAMS, max_eval_seqs=4)
    return TrainConfig(**{**base, **kw})


def channel_table(preds):
    """Per (patient, channel): label (SOZ in any recording) and mean score over recordings.

    Written here with pandas, apart from trainer.metrics, so tests can check the engine's
    figures against it (prediction files hold one row per recording x channel).
    """
    keys = ["patient", "channel"]
    return preds.groupby(keys).agg(y_true=("y_true", "max"), score=("score", "mean")).reset_index()


def brute_force_youden(y_true, score) -> float:
    """The threshold maximising TPR - FPR (``score >= t`` is positive), trying every score.

    Ties go to the highest threshold. Independent of sklearn's roc_curve.
    """
    y, s = np.asarray(y_true).astype(bool), np.asarray(score, dtype=float)
    best_j, best_t = -np.inf, None
    for t in sorted(set(s.tolist()), reverse=True):
        j = (s[y] >= t).mean() - (s[~y] >= t).mean()
        if j > best_j + 1e-12:
            best_j, best_t = j, t
    return float(best_t)


def _signal(rng, n_chans, n_times, soz, *, onset=None):
    """Pink-ish noise (uV), spikes on SOZ contacts, a 40 Hz onset on SOZ contacts at ``onset``."""
    white = rng.standard_normal((n_chans, n_times))
    x = np.cumsum(white, axis=1)
    x -= x.mean(axis=1, keepdims=True)
    x = 0.3 * x / x.std(axis=1, keepdims=True) + white
    t = np.arange(n_times) / SFREQ
    spike = np.exp(-0.5 * ((np.arange(-13, 14) / 4.0) ** 2)) * 6.0
    for c in np.flatnonzero(soz):
        for s in rng.integers(20, n_times - 20, size=max(1, n_times // int(4 * SFREQ))):
            x[c, s - 13 : s + 14] += spike
        if onset is not None:
            on = t >= onset + rng.uniform(0, 2)
            x[c] += on * 3.0 * np.sin(2 * np.pi * 40 * t) * np.exp(-(t - onset).clip(0) / 30)
    return (20.0 * x).astype(np.float32)


def _signal_clips(rng, soz, clip_samples, n_clips, onset):
    """:func:`_signal` cut into clips, shape (n_clips, n_chans, clip_samples)."""
    x = _signal(rng, len(soz), n_clips * clip_samples, soz, onset=onset)
    return x.reshape(len(soz), n_clips, clip_samples).transpose(1, 0, 2)


def build_store(
    url,
    *,
    seed: int = 0,
    patients=PATIENTS,
    n_ictal_clips=16,
    n_inter_clips=10,
    n_chans: int | None = None,
    seizure_s: float = 20.0,
):
    """Write the tiny cohort into a new store at ``url``; return the url.

    ``patients`` are ``(cohort, subject)`` or ``(cohort, subject, centre)``; each has 6 to 9
    contacts (``n_chans`` when given), two of them SOZ. Each ictal recording holds one seizure
    of ``seizure_s`` seconds starting half-way through it.
    """
    cfg = IngestConfig(sfreq=SFREQ, clip_s=CLIP_S, block_clips=8, dtype="float32", line_freq=50.0)
    store = ClipStore.open(url, "a", config=cfg)
    rng = np.random.default_rng(seed)
    tasks = {"ictal": n_ictal_clips, "interictal": n_inter_clips}
    rows = []
    for cohort, subject, *centre in patients:
        n = int(rng.integers(6, 10)) if n_chans is None else n_chans
        names = [f"{s}{k}" for s in ("LA", "RH", "LP") for k in range(1, 4)][:n]
        soz = np.zeros(n, bool)
        soz[rng.choice(n, size=2, replace=False)] = True
        marked = frozenset(name for name, s in zip(names, soz, strict=True) if s)
        clips = partial(_signal_clips, rng, soz, cfg.clip_samples)
        where = centre[0] if centre else None
        rows += write_patient(
            store, cohort, subject, names, marked, tasks, clips, seizure_s=seizure_s, centre=where
        )
    commit_manifests(store, [("rows", r) for r in rows])
    return str(url)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """URL of the session's tiny clip store (6 patients, 2 cohorts, 12 recordings)."""
    return build_store(tmp_path_factory.mktemp("trainer") / "store.zarr")


@pytest.fixture(scope="session", autouse=True)
def fast_train_controller():
    """Poll Ray Train workers every 0.2 s instead of 2 s: saves ~5 s per (second-long) test fit.

    The trainer passes ``RAY_TRAIN_*`` variables of the driver on to its controller actor.
    """
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    yield
    mp.undo()
