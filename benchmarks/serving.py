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
3. **Cost of explanation**: the same recording scored by a 5-fold ensemble, alone
   (:meth:`serving.scoring.Scorer.score`) and scored and explained from the same pass
   (:func:`serving.explain.score_and_explain`: every window by each fold model, occlusion of the
   explained windows), each in its own child process. Target: scored and explained in < 2x the
   scoring time on 2 cores. ``--explain-only`` runs this part alone (``serving-explain.json``).

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
from ingest.fileio import write_json

REPO = Path(__file__).resolve().parents[1]

N_CHANS_E2E = 128
N_CHANS_REQ = 64
REQ_SECONDS = 250


def make_run_dir(root: Path, n_folds: int = 1, clip_extras: tuple[str, ...] = ()) -> Path:
    """A run directory with untrained default-size SOZFormer folds (real checkpoint code).

    ``clip_extras`` are the tokens' extra measures (``TrainConfig.clip_extras``); ``()``, the
    spectra alone, is what this benchmark's figures were measured with.
    """
    import torch

    from ingest.config import IngestConfig
    from models.registry import build_model
    from models.site_norm import n_features
    from trainer.checkpoint import save_checkpoint
    from trainer.config import TrainConfig
    from trainer.rundir import RunDir

    tcfg = TrainConfig(clip_extras=tuple(clip_extras))
    icfg = IngestConfig()
    features = tcfg.feature_config("sozformer")
    n_feats = n_features(icfg.clip_samples, icfg.sfreq, features)
    run_dir = root / ("run" if n_folds == 1 else f"run{n_folds}")
    for fold in range(n_folds):
        torch.manual_seed(fold)
        net = build_model("sozformer", n_feats=n_feats)
        save_checkpoint(
            run_dir / "sozformer" / f"fold_{fold}" / "checkpoint.pt", net,
            model_name="sozformer", threshold=0.5, feature_config=features, sfreq=icfg.sfreq,
            clip_samples=icfg.clip_samples, ingest_config=icfg.to_dict(), fold=fold,
        )  # fmt: skip
        RunDir(run_dir).mark_finished("sozformer", fold, {"threshold": 0.5})  # the marker, last
    write_json(run_dir / "card.json", {"config": tcfg.to_dict()})
    return run_dir


def write_edf(path: Path, seconds: int, n_chans: int, seed: int) -> Path:
    mod = bench_ingest
    mod.N_CHANS = n_chans
    mod.write_edf_streamed(path, seconds, seed=seed)
    return path


def _child(run_dir: str, edf: str, cache_mb: float, explain: bool = False) -> None:
    """Score (and explain) one recording end to end (measured by the parent); prints RESULT."""
    import torch

    from serving.explain import score_and_explain
    from serving.scoring import Scorer

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    scorer = Scorer.from_run(run_dir, cache_bytes=int(cache_mb * 2**20))
    rec = bench_ingest._recording(Path(edf))  # every channel SEEG, 60 Hz line
    t_load = time.perf_counter() - t0
    expl = None
    if explain:
        res, expl = score_and_explain(scorer, rec)
    else:
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
        "n_folds": len(scorer.folds),
    }
    if expl is not None:
        out["explain_s"] = expl.seconds
        out["explained_windows"] = len(expl.explained)
        out["seq_len"] = int(scorer.seq_len)
    print("RESULT " + json.dumps(out), flush=True)


def measure_e2e(run_dir: Path, edf: Path, cache_mb: float, explain: bool = False) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.serving", "--child", str(run_dir), str(edf),
         str(cache_mb), "1" if explain else "0"],
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


def measure_explain(root: Path, edf: Path) -> dict:
    """Scoring alone vs scoring and explaining, 5-fold ensemble, alternated twice."""
    run5 = make_run_dir(root, n_folds=5)
    runs = {"score": [], "score_and_explain": []}
    for _ in range(2):  # alternated, so a change of the machine's load hits both alike
        runs["score"].append(measure_e2e(run5, edf, 1024.0))
        runs["score_and_explain"].append(measure_e2e(run5, edf, 1024.0, explain=True))
    best = {k: min(v, key=lambda r: r["end_to_end_s"]) for k, v in runs.items()}
    score_s = best["score"]["end_to_end_s"]
    both_s = best["score_and_explain"]["end_to_end_s"]
    cpu = {k: best[k]["child_cpu_s"] for k in best}
    return {
        "runs": runs,
        "score_s": score_s,
        "score_and_explain_s": both_s,
        "explain_s": best["score_and_explain"]["explain_s"],
        "ratio_wall": both_s / score_s,
        "ratio_cpu": cpu["score_and_explain"] / cpu["score"],
        "target_ratio": 2.0,
        "n_folds": 5,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5-minute recording, fewer requests")
    parser.add_argument("--workdir", default=None, help="where to write the EDFs (tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--skip-serving", action="store_true", help="end-to-end part only")
    parser.add_argument("--explain-only", action="store_true", help="the cost of explanation alone")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], float(args.child[2]), args.child[3] == "1")
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
        recording = f"{seconds} s x {N_CHANS_E2E} contacts at 1024 Hz"
        if not args.explain_only:
            e2e = {
                "recording": recording,
                "file_mb": edf.stat().st_size / 2**20,
                "default_cache_1GiB": measure_e2e(run_dir, edf, 1024.0),
                "no_cache_two_passes": measure_e2e(run_dir, edf, 0.0),
                "target_s": 30.0,
            }
            result["end_to_end"] = e2e
            print(json.dumps(e2e, indent=2), flush=True)
        result["explain"] = {"recording": recording, **measure_explain(work, edf)}
        print(json.dumps({k: v for k, v in result["explain"].items() if k != "runs"}, indent=2),
              flush=True)  # fmt: skip
        if not args.skip_serving and not args.explain_only:
            write_edf(data / "req.edf", REQ_SECONDS, N_CHANS_REQ, seed=1)
            result["serving"] = measure_serving(run_dir, data, "req.edf", quick=args.quick)
            print(json.dumps(result["serving"], indent=2), flush=True)
        result["load_avg_at_end"] = os.getloadavg()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    name = "serving-explain" if args.explain_only else "serving"
    out = REPO / "benchmarks" / "results" / (f"{name}-quick.json" if args.quick else f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
