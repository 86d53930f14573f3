"""Serving benchmark: end-to-end scoring time, and batched vs unbatched throughput of ``soz serve``.

1. **End to end**: one 1-hour, 128-contact, 1024-Hz EDF (written streamed, as in
   ``benchmarks/ingest.py``) scored by :meth:`serving.scoring.Scorer.score` in a child process
   (read + resample + filter + scale in two passes, spectral features, SOZFormer), wall time
   and the child's peak RSS; once with the default cache budget (1 GiB: the 1-h recording's
   clips fit in float16, one pass) and once without cache (two passes, the path every recording
   longer than ~70 min takes). Target < 30 s on 2 cores.
2. **Throughput** of the Ray Serve application at 8 concurrent clients, ``max_batch_size=8`` vs
   ``1`` (everything else equal): HTTP requests (each a 250-s, 64-contact recording path:
   preprocessing in the ingress + 2 sequences on the model deployment) and, separately, the
   model deployment alone (8 clients submitting ready sequences through a handle), where
   ``@serve.batch`` acts. p50 / p99 latency of each. Target: batching >= 2x.

The model is SOZFormer with its default size (d_model 64, 2 + 2 layers, 64 spectral bands),
**untrained** weights saved through the real checkpoint code (:mod:`trainer.checkpoint`): scoring
cost does not depend on the weights' values. Prints and saves JSON to
``benchmarks/results/serving.json``. ``--quick`` uses a 5-minute recording and fewer requests.

    python -m benchmarks.serving [--quick] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import ingest as bench_ingest

REPO = Path(__file__).resolve().parents[1]

N_CHANS_E2E = 128
N_CHANS_REQ = 64
REQ_SECONDS = 250


def make_run_dir(root: Path) -> Path:
    """A run directory with one untrained default-size SOZFormer fold (real checkpoint code)."""
    import torch

    from ingest.config import IngestConfig
    from models.registry import build_model
    from models.spectral import n_spectral_features
    from trainer.checkpoint import save_checkpoint
    from trainer.config import TrainConfig
    from trainer.rundir import RunDir

    tcfg = TrainConfig()
    icfg = IngestConfig()
    features = tcfg.feature_config()
    n_feats = n_spectral_features(icfg.clip_samples, icfg.sfreq, **features)
    torch.manual_seed(0)
    net = build_model("sozformer", n_feats=n_feats)
    run_dir = root / "run"
    save_checkpoint(
        run_dir / "sozformer" / "fold_0" / "checkpoint.pt", net, model_name="sozformer",
        threshold=0.5, feature_config=features, sfreq=icfg.sfreq,
        clip_samples=icfg.clip_samples, ingest_config=icfg.to_dict(), fold=0,
    )  # fmt: skip
    (run_dir / "card.json").write_text(json.dumps({"config": tcfg.to_dict()}))
    RunDir(run_dir).mark_finished("sozformer", 0, {"threshold": 0.5})  # the fold's marker, last
    return run_dir


def write_edf(path: Path, seconds: int, n_chans: int, seed: int) -> Path:
    mod = bench_ingest
    mod.N_CHANS = n_chans
    mod.write_edf_streamed(path, seconds, seed=seed)
    return path


def _child(run_dir: str, edf: str, cache_mb: float) -> None:
    """Score one recording end to end (measured by the parent); prints RESULT json."""
    import torch

    from serving.scoring import Scorer

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    scorer = Scorer.from_run(run_dir, cache_bytes=int(cache_mb * 2**20))
    rec = bench_ingest._recording(Path(edf))  # every channel SEEG, 60 Hz line
    t_load = time.perf_counter() - t0
    res = scorer.score(rec)
    out = {
        "load_s": t_load,
        "score_s": res.timings["total"],
        "end_to_end_s": time.perf_counter() - t0,
        "timings": dict(res.timings),
        "n_contacts": len(res.channels),
        "n_sequences": res.n_sequences,
        "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # CPU seconds (user + sys) of the child: what the scoring costs whatever else loads
        # the machine (wall times on a shared 2-core box vary with the other processes).
        "child_cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
    }
    print("RESULT " + json.dumps(out), flush=True)


def measure_e2e(run_dir: Path, edf: Path, cache_mb: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.serving", "--child", str(run_dir), str(edf), str(cache_mb)],
        cwd=REPO,
        capture_output=True, text=True,
    )  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"child failed (rc={proc.returncode}): {proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT ") :])
    result["cache_mb"] = cache_mb
    return result


def _percentiles(lat: list[float]) -> dict:
    arr = np.asarray(lat)
    return {"p50_s": float(np.percentile(arr, 50)), "p99_s": float(np.percentile(arr, 99))}


async def _http_load(port: int, path: str, clients: int, per_client: int) -> dict:
    import httpx

    lat: list[float] = []

    async def client(ac) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            r = await ac.post("/score", json={"path": path})
            r.raise_for_status()
            lat.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=600, limits=limits
    ) as ac:
        await ac.post("/score", json={"path": path})  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(client(ac) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"requests": len(lat), "wall_s": wall, "req_per_s": len(lat) / wall, **_percentiles(lat)}


async def _model_load(handle, seqs: list[np.ndarray], clients: int, per_client: int) -> dict:
    lat: list[float] = []

    async def client(k: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            await handle.remote(seqs[(k + i) % len(seqs)])
            lat.append(time.perf_counter() - t0)

    await handle.remote(seqs[0])  # warm-up
    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    return {
        "sequences": len(lat),
        "wall_s": wall,
        "seq_per_s": len(lat) / wall,
        **_percentiles(lat),
    }


def measure_serving(run_dir: Path, data: Path, rel_path: str, *, quick: bool) -> dict:
    import ray
    from ray import serve

    from serving.app import start
    from serving.config import ServeConfig
    from serving.inputs import recording_for_path
    from serving.scoring import Scorer

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    scorer = Scorer.from_run(run_dir)
    seqs = list(scorer.prepare(recording_for_path(data / rel_path, line_freq=60.0)))
    clients = 8
    per_client = 2 if quick else 4
    per_client_model = 8 if quick else 24
    out = {}
    try:
        for batch in (8, 1):
            cfg = ServeConfig(
                run_dir=str(run_dir), port=8765, data_roots=(str(data),), max_batch_size=batch,
                batch_wait_timeout_s=0.01, num_cpus=0.5, line_freq=60.0,
            )  # fmt: skip
            start(cfg, name="bench")
            handle = serve.get_deployment_handle("SequenceModel", app_name="bench")
            model = asyncio.run(_model_load(handle, seqs, clients, per_client_model))
            http = asyncio.run(_http_load(8765, rel_path, clients, per_client))
            stats = handle.stats.remote().result()
            out[f"max_batch_size_{batch}"] = {"http": http, "model": model, "batches": stats}
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    b8, b1 = out["max_batch_size_8"], out["max_batch_size_1"]
    out["speedup_model"] = b8["model"]["seq_per_s"] / b1["model"]["seq_per_s"]
    out["speedup_http"] = b8["http"]["req_per_s"] / b1["http"]["req_per_s"]
    out["clients"] = clients
    out["request_recording"] = f"{REQ_SECONDS} s x {N_CHANS_REQ} contacts at 1024 Hz"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5-minute recording, fewer requests")
    parser.add_argument("--workdir", default=None, help="where to write the EDFs (tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--skip-serving", action="store_true", help="end-to-end part only")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], float(args.child[2]))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sozkit-bench-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = 300 if args.quick else 3600
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "model": "sozformer, default hparams, 64 bands, UNTRAINED weights saved via "
        "trainer.checkpoint (cost does not depend on weight values)",
        "quick": args.quick,
    }
    try:
        run_dir = make_run_dir(work)
        data = work / "data"
        data.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        edf = write_edf(data / "long.edf", seconds, N_CHANS_E2E, seed=0)
        result["write_edf_s"] = time.perf_counter() - t0
        e2e = {
            "recording": f"{seconds} s x {N_CHANS_E2E} contacts at 1024 Hz",
            "file_mb": edf.stat().st_size / 2**20,
            "default_cache_1GiB": measure_e2e(run_dir, edf, 1024.0),
            "no_cache_two_passes": measure_e2e(run_dir, edf, 0.0),
            "target_s": 30.0,
        }
        result["end_to_end"] = e2e
        print(json.dumps(e2e, indent=2), flush=True)
        if not args.skip_serving:
            write_edf(data / "req.edf", REQ_SECONDS, N_CHANS_REQ, seed=1)
            result["serving"] = measure_serving(run_dir, data, "req.edf", quick=args.quick)
            print(json.dumps(result["serving"], indent=2), flush=True)
        result["load_avg_at_end"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = REPO / "benchmarks" / "results" / ("serving-quick.json" if args.quick else "serving.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
