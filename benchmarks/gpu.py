"""Training throughput of both neural models on CPU and, where CUDA is present, on the GPU
(float32 and bfloat16 autocast), and the projected wall time of a 100-patient 5-fold CV.

Each figure is sequences per second of :func:`trainer.loop.train_epoch` (the trainer's own
step: forward, loss, backward, gradient clipping, AdamW, and the bf16 autocast of
:func:`trainer.loop.training_autocast`) over in-memory batches at the SPEC's scale (64
contacts, each model's sequence length: SOZFormer 25, DCGRU 12 clips; 64 spectral bands), plus DCGRU's self-supervised
pre-training step (:func:`trainer.loop.pretrain_epoch`) and the no-grad scoring pass; one
warm-up epoch, then the median of ``--repeats`` epochs. CPU: one torch thread, what a 1-CPU
Ray worker uses (wall and CPU seconds; on a loaded machine CPU seconds are the better
estimate). The loader is not timed here: from the feature cache it feeds ~1300 seq/s on one
core (``benchmarks/training.py``), far above every step rate below, so the step bounds training.

Projection of one 5-fold CV of 100 patients on one device (one worker), from the measured rates:
3 recordings per patient; per epoch ``seqs_per_recording`` (TrainConfig default 16) training
sequences per training recording, the training recordings being 80 % (4 of 5 folds) x 85 %
(minus the validation share) of them; ``epochs`` (default 20, no early stop) supervised
epochs, plus ``ssl_epochs`` (3) pre-training epochs for DCGRU; every epoch scores the
validation recordings and each fold its test recordings once, in non-overlapping sequences
of 1-h recordings (720 clips of 5 s: 28 sequences of 25 clips, 60 of 12). The target: < 2 h on one GPU for the 5 folds (the
original work: 7.5 h on 2 GPUs for 1.5 folds, i.e. ~50 GPU-hours for 5 folds at that rate).

Without CUDA every GPU field is ``null`` and ``"gpu"`` says so: no GPU figure is ever
estimated. Prints and saves ``benchmarks/results/gpu.json``::

    python -m benchmarks.gpu [--repeats 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks import torch_machine
from models.registry import build_model
from trainer.config import TrainConfig
from trainer.loop import predict, pretrain_epoch, soz_loss, train_epoch

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"
N_CHANS, N_BANDS = 64, 64
PATIENTS, RECS_PER_PATIENT, FOLDS = 100, 3, 5
CLIPS_PER_RECORDING = 720  # a 1-h recording of 5-s clips
ORIGINAL_GPU_H_PER_FOLD = 7.5 * 2 / 1.5  # 7.5 h on 2 GPUs for 1.5 folds
TARGET_H = 2.0


def _batches(
    n: int, batch: int, seq_len: int, device: str, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """``n`` batches shaped like :func:`trainer.datasets.collate_sequences` output."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        mask = torch.ones(batch, N_CHANS, dtype=torch.bool)
        mask[0, N_CHANS - 8 :] = False  # one padded recording, as in a mixed batch
        b = {
            "x": torch.randn(batch, N_CHANS, seq_len, N_BANDS, generator=g),
            "y": (torch.rand(batch, N_CHANS, generator=g) < 0.1).float(),
            "mask": mask,
            "rec": torch.arange(i * batch, (i + 1) * batch),  # one recording per row
        }
        out.append({k: v.to(device) for k, v in b.items()})
    return out


def _timed(fn, device: str, repeats: int) -> dict[str, float]:
    fn()  # warm-up: allocations, cuDNN/cuBLAS autotuning
    wall, cpu = [], []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


def bench_model(name: str, device: str, *, bf16: bool, batch: int, steps: int, repeats: int):
    """Sequences/s of the training step, (DCGRU) the pre-training step and scoring."""
    torch.manual_seed(0)
    model = build_model(name, n_feats=N_BANDS).to(device)
    data = _batches(steps, batch, model.seq_len, device)
    n = steps * batch
    out: dict[str, float] = {"seq_len": model.seq_len}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = soz_loss(name, pos_weight=9.0)
    t = _timed(
        lambda: train_epoch(model, data, opt, loss_fn, device=device, grad_clip=1.0, bf16=bf16),
        device,
        repeats,
    )
    out["train_seq_per_s"] = n / t["wall_s"]
    out["train_seq_per_cpu_s"] = n / t["cpu_s"]
    t = _timed(lambda: predict(model, data, device=device), device, repeats)
    out["score_seq_per_s"] = n / t["wall_s"]
    out["score_seq_per_cpu_s"] = n / t["cpu_s"]
    if name == "dcgru":
        ssl = build_model("dcgru_ssl", n_feats=N_BANDS).to(device)
        ssl_opt = torch.optim.AdamW(ssl.parameters(), lr=1e-4)
        t = _timed(
            lambda: pretrain_epoch(ssl, data, ssl_opt, device=device, grad_clip=1.0, bf16=bf16),
            device,
            repeats,
        )
        out["ssl_seq_per_s"] = n / t["wall_s"]
        out["ssl_seq_per_cpu_s"] = n / t["cpu_s"]
    return {k: round(v, 2) for k, v in out.items()}


def workload(cfg: TrainConfig, seq_len: int) -> dict[str, float]:
    """Sequences of one 5-fold CV of :data:`PATIENTS` patients (see the module docstring)."""
    recs = PATIENTS * RECS_PER_PATIENT
    train_recs = recs * (FOLDS - 1) / FOLDS * (1 - cfg.val_fraction)
    val_recs = recs * (FOLDS - 1) / FOLDS * cfg.val_fraction
    test_recs = recs / FOLDS
    train = train_recs * cfg.seqs_per_recording * FOLDS
    return {
        "train_seqs": train * cfg.epochs,
        "ssl_seqs": train * cfg.ssl_epochs,
        "score_seqs": FOLDS
        * (CLIPS_PER_RECORDING // seq_len)
        * (val_recs * cfg.epochs + test_recs),
    }


def project_h(name: str, rates: dict[str, float] | None, work: dict[str, float], key: str):
    """Hours of the 5-fold CV at ``rates`` (``key``: per wall or per CPU second)."""
    if rates is None:
        return None
    s = work["train_seqs"] / rates[f"train_{key}"] + work["score_seqs"] / rates[f"score_{key}"]
    if name == "dcgru":
        s += work["ssl_seqs"] / rates[f"ssl_{key}"]
    return round(s / 3600, 2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="batches per timed epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    cfg = TrainConfig()
    batch = cfg.batch_size
    cuda = torch.cuda.is_available()
    torch.set_num_threads(1)
    res: dict = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": torch_machine(),
        "gpu": torch.cuda.get_device_name() if cuda else "not available in this session",
        "setup": {
            "batch": batch,
            "n_chans": N_CHANS,
            "n_bands": N_BANDS,
            "steps_per_epoch": args.steps,
            "repeats": args.repeats,
            "cpu_torch_threads": 1,
            "bf16_supported": bool(cuda and torch.cuda.is_bf16_supported()),
        },
        "assumptions": {
            "patients": PATIENTS,
            "recordings_per_patient": RECS_PER_PATIENT,
            "folds": FOLDS,
            "seqs_per_recording": cfg.seqs_per_recording,
            "epochs": cfg.epochs,
            "ssl_epochs_dcgru": cfg.ssl_epochs,
            "val_fraction": cfg.val_fraction,
            "clips_per_recording": CLIPS_PER_RECORDING,
            "early_stopping": "none (every epoch run: an upper bound)",
        },
        "target_h_one_gpu": TARGET_H,
        "original_work": "7.5 h on 2 GPUs for 1.5 folds "
        f"(~{ORIGINAL_GPU_H_PER_FOLD * FOLDS:.0f} GPU-hours for 5 folds)",
        "models": {},
    }
    for name in ("sozformer", "dcgru"):
        cpu = bench_model(name, "cpu", bf16=False, batch=batch, steps=args.steps, repeats=3)
        gpu32 = gpu16 = None
        if cuda:
            kw = {"batch": batch, "steps": 4 * args.steps, "repeats": args.repeats}
            gpu32 = bench_model(name, "cuda", bf16=False, **kw)
            gpu16 = (
                bench_model(name, "cuda", bf16=True, **kw)
                if res["setup"]["bf16_supported"]
                else None
            )
        best_gpu = gpu16 or gpu32
        work = workload(cfg, cpu["seq_len"])
        res["models"][name] = {
            "cpu_fp32": cpu,
            "gpu_fp32": gpu32,
            "gpu_bf16": gpu16,
            "workload_seqs": {k: round(v) for k, v in work.items()},
            "gpu_over_cpu_train": (
                round(best_gpu["train_seq_per_s"] / cpu["train_seq_per_s"], 1) if best_gpu else None
            ),
            "projected_5fold_h": {
                "cpu_1_thread_wall": project_h(name, cpu, work, "seq_per_s"),
                "cpu_1_thread_cpu_time": project_h(name, cpu, work, "seq_per_cpu_s"),
                "one_gpu": project_h(name, best_gpu, work, "seq_per_s"),
            },
        }
        m = res["models"][name]
        print(
            f"{name:10s} CPU train {cpu['train_seq_per_s']:7.1f} seq/s "
            f"({cpu['train_seq_per_cpu_s']:.1f} per CPU-s), "
            f"GPU {best_gpu['train_seq_per_s'] if best_gpu else 'n/a'} seq/s; projected 5-fold CV: "
            f"CPU {m['projected_5fold_h']['cpu_1_thread_cpu_time']} h (CPU time), "
            + (
                f"GPU {m['projected_5fold_h']['one_gpu']} h"
                if cuda
                else "GPU not measured (no GPU)"
            ),
            flush=True,
        )
    both = [res["models"][n]["projected_5fold_h"]["one_gpu"] for n in ("sozformer", "dcgru")]
    res["projected_5fold_both_models_one_gpu_h"] = round(sum(both), 2) if cuda else None
    res["meets_target"] = (
        (res["projected_5fold_both_models_one_gpu_h"] < TARGET_H) if cuda else None
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
