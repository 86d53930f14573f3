"""Time the neural models' inputs and training steps on this machine.

Measures (median of ``--repeats`` runs after one warm-up):

- ``spectral_features`` on one sequence of clips as the loader sees it, ``(n_chans, 25, 5000)``
  at 1000 Hz, all 2500 bins and 100 log-spaced bands;
- forward + backward of every registered model on ``(batch, n_chans, seq_len, n_feats)``
  (8 recordings x 64 channels by default) at the model's default size, for 2500 and 100
  features per clip;
- the parameter count of each.

Prints a table and writes ``benchmarks/results/neural_models.json``::

    python -m benchmarks.neural_models --threads 1 --repeats 3
    python -m benchmarks.neural_models --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ingest.fileio import write_json
from models.registry import build_model, list_models
from models.spectral import spectral_features


def _median_seconds(fn, repeats: int) -> dict[str, float]:
    """Median wall and CPU (process) seconds; on a shared machine with ``--threads 1`` the CPU
    time is the better estimate of the uncontended wall time."""
    fn()  # warm-up (allocations, lazy init, cuDNN/cuBLAS autotuning)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return dict(seconds=statistics.median(wall), cpu_seconds=statistics.median(cpu))


def bench_spectral(n_chans: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((n_chans, 25, 5000)).astype(np.float32)
    rows = []
    for n_bands in (None, 100):
        sec = _median_seconds(
            lambda nb=n_bands: spectral_features(clips, 1000.0, n_bands=nb), repeats
        )
        rows.append(dict(what="spectral_features", shape=list(clips.shape), n_bands=n_bands, **sec))
    return rows


def bench_models(batch: int, n_chans: int, repeats: int, device: str) -> list[dict]:
    rows = []
    for name in list_models():
        for n_feats in (2500, 100):
            torch.manual_seed(0)
            model = build_model(name, n_feats=n_feats).to(device).train()
            x = torch.randn(batch, n_chans, model.seq_len, n_feats, device=device)
            mask = torch.ones(batch, n_chans, dtype=torch.bool, device=device)
            mask[batch // 2 :, n_chans * 3 // 4 :] = False  # half the batch padded by 25 %

            def step(model=model, x=x, mask=mask):
                model.zero_grad(set_to_none=True)
                model(x, mask).float().square().mean().backward()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()

            rows.append(
                dict(
                    what="forward+backward",
                    model=name,
                    n_feats=n_feats,
                    shape=list(x.shape),
                    n_params=sum(p.numel() for p in model.parameters()),
                    **_median_seconds(step, repeats),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n-chans", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "neural_models.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench_spectral(args.n_chans, args.repeats) + bench_models(
        args.batch, args.n_chans, args.repeats, args.device
    )
    for r in rows:
        label = r.get("model", "") + (f" n_bands={r['n_bands']}" if "n_bands" in r else "")
        feats = f" F={r['n_feats']} params={r['n_params']:,}" if "n_feats" in r else ""
        print(
            f"{r['what']:18s} {label:22s} {str(r['shape']):22s}{feats:28s} {r['seconds']:.3f} s wall {r['cpu_seconds']:.3f} s cpu"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    )
    meta = dict(
        torch=torch.__version__,
        threads=args.threads,
        device=args.device,
        device_name=device_name or platform.machine(),
    )
    write_json(args.out, dict(meta=meta, results=rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
