"""Training throughput: the loader alone vs the training step alone, and Ray Train with 1 vs 2 workers.

Writes a synthetic clip store at the SPEC's scale (1000 Hz, 5-s clips, 64 contacts) with
:func:`ingest.synthetic.write_patient` (signal content does not change the cost), then
measures, on CPU:

1. the loader alone: sequences/s of :class:`trainer.datasets.SequenceDataset` (S=25 clips,
   ``n_bands`` spectral features) through :func:`trainer.datasets.make_loader`: computing the
   features from the stored clips (in-process with a prefetch thread, and with 2 DataLoader
   worker processes), and reading them from the precomputed feature cache
   (:mod:`trainer.feature_cache`, whose one-off build is timed too); each over a first epoch
   and a second one (clip features then in the in-memory LRU);
2. the training step alone: forward + backward + AdamW step of SOZFormer (defaults) on a batch
   already in memory, one torch thread (what a 1-CPU Ray worker uses);
3. Ray Train: sequences/s of a training epoch (from the per-epoch report, so Ray's fixed start-up
   cost is reported separately) with 1 and 2 DDP workers on a local Ray.

With CUDA present the step is also timed on the GPU, and the wall time of a full 5-fold CV of a
100-patient cohort is projected from the measured rates. Results: printed, and saved as JSON to
``benchmarks/results/training.json``.

Usage: ``python -m benchmarks.training [--quick] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from benchmarks import torch_machine
from ingest.config import IngestConfig
from ingest.fileio import write_json
from ingest.manifests import commit_manifests
from ingest.store import ClipStore
from ingest.synthetic import write_patient
from models.registry import build_model
from trainer.config import TrainConfig
from trainer.datasets import (
    SequenceDataset,
    collate_sequences,
    make_loader,
    recording_table,
    sample_training_sequences,
)
from trainer.feature_cache import cache_url, write_recording_features
from trainer.loop import soz_loss

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"


def write_store(url: str, *, n_patients: int, n_chans: int, n_clips: int, seed: int = 0) -> str:
    """A synthetic store: ``n_patients`` x (1 ictal + 1 interictal) recordings at 1000 Hz.

    White noise (30 uV); each ictal recording holds one 30-s seizure starting half-way through.
    """
    cfg = IngestConfig(sfreq=1000.0, clip_s=5.0, block_clips=20, line_freq=50.0)
    store = ClipStore.open(url, "a", config=cfg)
    rng = np.random.default_rng(seed)
    rows = []

    def noise(n: int, onset: float | None) -> np.ndarray:
        shape = (n, n_chans, cfg.clip_samples)
        return (rng.standard_normal(shape, dtype=np.float32) * 30).astype(np.float16)

    for p in range(n_patients):
        cohort = "benchA" if p % 2 else "benchB"
        names = tuple(f"S{k // 8}{k % 8 + 1}" for k in range(n_chans))
        soz = rng.random(n_chans) < 0.1
        soz[0] = True
        marked = frozenset(n for n, s in zip(names, soz, strict=True) if s)
        tasks = {"ictal": n_clips, "interictal": n_clips}
        rows += write_patient(
            store, cohort, f"P{p:03d}", names, marked, tasks, noise, seizure_s=30.0
        )
    commit_manifests(store, [("rows", r) for r in rows])
    return url


def bench_loader(
    url: str,
    *,
    n_bands: int,
    seq_len: int,
    batch: int,
    n_seqs: int,
    workers: int,
    cache: str | None,
):
    """Sequences/s of the loader over one epoch, then again (clip features now in memory)."""
    recs = recording_table(ClipStore.open(url))
    items = sample_training_sequences(
        recs, seq_len=seq_len, seqs_per_recording=max(1, n_seqs // len(recs))
    )
    ds = SequenceDataset(
        url,
        recs,
        items,
        seq_len=seq_len,
        feature_config={"n_bands": n_bands},
        cache_mb=1024,
        feature_cache=cache,
    )
    out = {}
    for label in ("first_epoch", "in_memory"):
        t = time.perf_counter()
        n = sum(b["x"].shape[0] for b in make_loader(ds, batch_size=batch, num_workers=workers))
        out[label] = n / (time.perf_counter() - t)
        if workers:  # worker processes keep their own caches: a second epoch starts afresh
            break
    return out, ds


def bench_feature_cache(url: str, *, n_bands: int) -> tuple[str, float]:
    """Precompute the clip features of every recording; returns the cache URL and clips/s."""
    store = ClipStore.open(url)
    feats = {"n_bands": n_bands}
    recs = store.recordings()
    t = time.perf_counter()
    for rid in recs["recording_id"]:
        write_recording_features(store, rid, feats)
    return cache_url(url, feats), int(recs["n_clips"].sum()) / (time.perf_counter() - t)


def bench_step(ds: SequenceDataset, *, batch: int, n_steps: int, device: str) -> float:
    """Sequences/s of SOZFormer's forward + backward + AdamW step on an in-memory batch."""
    torch.manual_seed(0)
    b = collate_sequences([ds[i] for i in range(batch)])
    b = {k: v.to(device) for k, v in b.items()}
    model = build_model("sozformer", n_feats=b["x"].shape[-1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = soz_loss("sozformer")

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(b["x"], b["mask"]), b["y"], b["mask"]).backward()
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n_steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return n_steps * batch / (time.perf_counter() - t)


def bench_ray(url: str, *, workers: int, epochs: int, seqs_per_recording: int, n_bands: int):
    """Per-epoch sequences/s of one fold through Ray Train, and the fold's wall time."""
    from trainer.ray_train import train_fold
    from trainer.splits import cohort_groups, patient_folds

    recs = recording_table(ClipStore.open(url))
    patients = sorted({r.patient for r in recs})
    fold = patient_folds(patients, n_folds=2, groups=cohort_groups(patients))[0]
    cfg = TrainConfig(
        models=("sozformer",),
        n_folds=2,
        epochs=epochs,
        n_bands=n_bands,
        seqs_per_recording=seqs_per_recording,
        num_workers=workers,
        max_eval_seqs=2,
    )
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        res = train_fold(url, model_name="sozformer", fold=fold, cfg=cfg, storage_path=d)
        wall = time.perf_counter() - t
    rows = [h for h in res.history if h["stage"] == "train"]
    return {
        "workers": workers,
        "epoch_sequences_per_s": [round(h["sequences_per_s"], 2) for h in rows],
        "epoch_seconds": [round(h["seconds"], 2) for h in rows],
        "fold_wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller store and fewer steps")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Train part")
    args = ap.parse_args()
    n_chans, n_bands, seq_len, batch = 64, 64, 25, 8
    n_clips = 40 if args.quick else 120
    n_seqs = 48 if args.quick else 160
    torch.set_num_threads(1)
    res: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": torch_machine(),
        "setup": {
            "n_chans": n_chans,
            "n_bands": n_bands,
            "seq_len": seq_len,
            "batch": batch,
            "sfreq": 1000.0,
            "clip_s": 5.0,
            "torch_threads": 1,
        },  # fmt: skip
    }
    with tempfile.TemporaryDirectory(prefix="sozkit-bench-") as d:
        url = write_store(f"{d}/store.zarr", n_patients=4, n_chans=n_chans, n_clips=n_clips)
        kw = {"n_bands": n_bands, "seq_len": seq_len, "batch": batch, "n_seqs": n_seqs}
        raw, ds = bench_loader(url, workers=0, cache=None, **kw)
        raw_mp, _ = bench_loader(url, workers=2, cache=None, **kw)
        cache, clips_per_s = bench_feature_cache(url, n_bands=n_bands)
        cached, _ = bench_loader(url, workers=0, cache=cache, **kw)
        step = bench_step(ds, batch=batch, n_steps=5 if args.quick else 20, device="cpu")
        res["cpu"] = {
            "loader_sequences_per_s": {
                "from_clips": raw,
                "from_clips_2_workers": raw_mp,
                "from_feature_cache": cached,
            },
            "feature_cache_build_clips_per_s": clips_per_s,
            "train_step_sequences_per_s": step,
            "loader_over_step": {
                "from_clips": raw["first_epoch"] / step,
                "from_feature_cache": cached["first_epoch"] / step,
                "in_memory": cached["in_memory"] / step,
            },
        }
        for name, r in res["cpu"]["loader_sequences_per_s"].items():
            print(f"loader {name}: " + ", ".join(f"{k} {v:.1f} seq/s" for k, v in r.items()))
        print(f"feature cache build: {clips_per_s:.1f} clips/s (once per store)")
        print(f"SOZFormer train step (1 thread): {step:.1f} seq/s")
        print(
            "loader / step: "
            + ", ".join(f"{k} {v:.1f}x" for k, v in res["cpu"]["loader_over_step"].items())
        )
        if torch.cuda.is_available():
            gpu = bench_step(ds, batch=32, n_steps=50, device="cuda")
            res["gpu"] = {"device": torch.cuda.get_device_name(), "train_step_sequences_per_s": gpu}
            print(f"SOZFormer train step on {res['gpu']['device']}: {gpu:.1f} seq/s")
        if not args.no_ray:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                res["ray_train"] = [
                    bench_ray(url, workers=w, epochs=2, seqs_per_recording=8, n_bands=n_bands)
                    for w in (1, 2)
                ]
            finally:
                ray.shutdown()
            for r in res["ray_train"]:
                print(
                    f"Ray Train, {r['workers']} worker(s): {r['epoch_sequences_per_s']} seq/s per "
                    f"epoch, fold wall {r['fold_wall_s']} s (includes Ray start-up)"
                )
    # 100 patients x 3 recordings x 16 sequences per epoch, 20 epochs, 5 folds (4/5 of the
    # patients train in each fold), at the measured rate of the slower of loader and step.
    seqs = 100 * 3 * 16 * 20 * 5 * 0.8 * 0.85
    # (training sequences only: evaluation adds a forward pass over every val / test sequence.)
    loader_rate = res["cpu"]["loader_sequences_per_s"]["from_feature_cache"]["first_epoch"]
    rate = min(res["cpu"]["train_step_sequences_per_s"], loader_rate)
    res["projection_100_patients_5fold_cpu_1_worker_h"] = seqs / rate / 3600
    if "gpu" in res:
        gpu_rate = min(res["gpu"]["train_step_sequences_per_s"], loader_rate)
        res["projection_100_patients_5fold_gpu_h"] = seqs / gpu_rate / 3600
        print(
            f"projected 5-fold CV, 100 patients, 1 GPU: {res['projection_100_patients_5fold_gpu_h']:.2f} h"
        )
    print(
        f"projected 5-fold CV, 100 patients, 1 CPU worker: {res['projection_100_patients_5fold_cpu_1_worker_h']:.1f} h"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
