"""Cluster benchmark: the same training and bulk scoring on 1 node vs a 2-node Ray cluster.

Every configuration is a real Ray cluster started on this machine by :mod:`serving.localcluster`
(separate raylets, loopback only), joined by the ``soz`` commands as separate driver processes
through ``RAY_ADDRESS``; node CPUs are split so the comparison is fair:

- ``1x1``: one node with 1 CPU (1 DDP worker, 1 scoring worker): the baseline;
- ``1x2``: one node with 2 CPUs (2 DDP workers / 2 scoring workers on that node);
- ``2x1``: two nodes with 1 CPU each (the 2 DDP workers SPREAD over the nodes, gradients
  all-reduced between raylets; one scoring worker per node).

Plus ``local``: the 2 workers on the command's own local Ray (no ``RAY_ADDRESS``), so that the
cost of the cluster path itself (joining a cluster, objects and checkpoints between nodes) is
``1x2 / local`` and ``2x1 / local``.

Measured for each: the wall time of ``soz train`` (20 patients, SOZFormer, 2 folds one after the
other, 3 epochs) and the sum of its epochs' training seconds (from ``metrics.json``, without
Ray's start-up), and the wall time of ``soz score`` of 24 EDF recordings (the 1x1 run's model)
with the scoring time it reports. Scaling efficiency = ``t(1x1) / (2 * t(config))``.

The machine this ran on was shared with other jobs (the JSON records the load average before and
after each step): figures are indicative, ratios within one run more than absolute seconds.

Usage: ``python -m benchmarks.cluster [--quick] [--workdir DIR] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.serving import write_edf
from benchmarks.training import write_store
from serving import localcluster

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
REPO = Path(__file__).resolve().parents[1]
#: GCS port of the benchmark's clusters (not the tests' 26479, not Ray's default 6379).
PORT = 26579
CONFIGS = {"1x1": ((1,), 1), "1x2": ((2,), 2), "2x1": ((1, 1), 2)}
HPARAMS = {
    "sozformer": {
        "seq_len": 8,
        "d_model": 32,
        "n_heads": 2,
        "n_temporal_layers": 1,
        "n_spatial_layers": 1,
        "dim_feedforward": 64,
    }
}


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "serving", *argv], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"soz {argv[0]} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return wall, done.stdout


def _train(store: Path, run_dir: Path, workers: int, env: dict, size: dict) -> dict:
    argv = [
        "train", str(store), "--model", "sozformer", "--out", str(run_dir), "--folds", "2",
        "--epochs", str(size["epochs"]), "--patience", "10", "--workers", str(workers),
        "--placement", "SPREAD", "--parallel-folds", "1", "--n-bands", "16",
        "--seqs-per-recording", str(size["seqs"]), "--batch-size", "4",
        "--hparams", json.dumps(HPARAMS), "--no-progress",
    ]  # fmt: skip
    wall, _ = _run(argv, env, timeout=3600)
    epoch_s, nodes = 0.0, set()
    for fold in (0, 1):
        m = json.loads((run_dir / "sozformer" / f"fold_{fold}" / "metrics.json").read_text())
        epoch_s += sum(h["seconds"] for h in m["history"] if h["stage"] == "train")
        nodes |= {n for e in m["epoch_nodes"] for n in e["nodes"]}
    return {"wall_s": round(wall, 1), "epochs_s": round(epoch_s, 1), "n_nodes": len(nodes)}


def _score(run_dir: Path, data: Path, out: Path, workers: int, env: dict) -> dict:
    argv = [
        "score", str(run_dir), str(data), "--out", str(out), "--model", "sozformer",
        "--workers", str(workers), "--line-freq", "50", "--no-resume", "--no-progress",
    ]  # fmt: skip
    wall, stdout = _run(argv, env, timeout=3600)
    line = stdout.strip().splitlines()[0]
    inner = re.search(r" in ([0-9.]+) s", line)
    n_nodes = re.search(r"on (\d+) Ray nodes", line)
    return {
        "wall_s": round(wall, 1),
        "scoring_s": float(inner.group(1)) if inner else None,
        "n_nodes": int(n_nodes.group(1)) if n_nodes else 1,
        "summary": line,
    }


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 patients, 8 recordings, 1 epoch")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--configs", default="1x1,1x2,2x1,local", help="which to run (all)")
    args = ap.parse_args(argv)
    size = (
        {"patients": 6, "recordings": 8, "rec_s": 60, "epochs": 1, "seqs": 8, "n_clips": 24}
        if args.quick
        else {"patients": 20, "recordings": 24, "rec_s": 120, "epochs": 3, "seqs": 16,
              "n_clips": 36}
    )  # fmt: skip
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sozkit-bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    root = Path(f"/tmp/sozc-bench-{os.getuid()}")
    base_env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    base_env.pop("RAY_ADDRESS", None)

    store = work / "store.zarr"
    if not store.exists():
        write_store(str(store), n_patients=size["patients"], n_chans=16, n_clips=size["n_clips"])
    data = work / "edf"
    data.mkdir(exist_ok=True)
    for i in range(size["recordings"]):
        if not (data / f"r{i:02d}.edf").exists():
            write_edf(data / f"r{i:02d}.edf", size["rec_s"], 16, seed=i)

    results: dict[str, dict] = {}
    score_run = None
    for name in args.configs.split(","):
        print(f"[{name}] ...", flush=True)
        entry: dict = {"load_before": _load()}
        if name == "local":
            env, workers = base_env, 2
        else:
            cpus, workers = CONFIGS[name]
            t0 = time.perf_counter()
            localcluster.up(root, cpus=cpus, port=PORT)
            entry["cluster_up_s"] = round(time.perf_counter() - t0, 1)
            env = {**base_env, **localcluster.driver_env(PORT)}
        try:
            run_dir = work / f"run-{name}"
            shutil.rmtree(run_dir, ignore_errors=True)
            entry["train"] = _train(store, run_dir, workers, env, size)
            score_run = score_run or run_dir
            entry["score"] = _score(score_run, data, work / f"scores-{name}.parquet", workers, env)
        finally:
            if name != "local":
                localcluster.down(root)
        entry["load_after"] = _load()
        results[name] = entry
        print(f"[{name}] {json.dumps(entry)}", flush=True)
        _save(args, size, results, _derived(results))  # what is measured so far survives a kill

    derived = _derived(results)
    _save(args, size, results, derived)
    print(json.dumps(derived, indent=1))
    print(f"wrote {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _derived(results: dict[str, dict]) -> dict[str, dict]:
    """Speed-ups and scaling efficiencies against 1x1, overheads against the local Ray."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    derived: dict[str, dict] = {}
    base = results.get("1x1")
    for name in ("1x2", "2x1"):
        if base and name in results:
            r = results[name]
            derived[name] = {
                "train_speedup": ratio(base["train"]["wall_s"], r["train"]["wall_s"]),
                "train_efficiency": ratio(base["train"]["wall_s"], 2 * r["train"]["wall_s"]),
                "train_epochs_efficiency": ratio(
                    base["train"]["epochs_s"], 2 * r["train"]["epochs_s"]
                ),
                "score_speedup": ratio(base["score"]["wall_s"], r["score"]["wall_s"]),
                "score_efficiency": ratio(base["score"]["wall_s"], 2 * r["score"]["wall_s"]),
            }
        if "local" in results and name in results:
            loc, r = results["local"], results[name]
            derived.setdefault(name, {})["cluster_overhead_train"] = ratio(
                r["train"]["wall_s"], loc["train"]["wall_s"]
            )
            derived[name]["cluster_overhead_score"] = ratio(
                r["score"]["wall_s"], loc["score"]["wall_s"]
            )
    return derived


def _save(args: argparse.Namespace, size: dict, results: dict, derived: dict) -> None:
    report = {
        "benchmark": "cluster",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "note": "measured on a 2-core machine shared with other jobs (see load_before/after): "
        "indicative figures",
        "quick": args.quick,
        "size": size,
        "results": results,
        "derived": derived,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
