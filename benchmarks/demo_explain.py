"""What the explanation step adds to ``soz demo``: CPU-seconds, on a finished demo's own run.

Re-runs the demo's report stage (:mod:`serving.demo`) on a finished demo folder (made with
``soz demo --out DIR``; its ``run``, ``heldout`` and ``scores`` are reused, read only): the plain
report, then the explained one (held-out ingest, explanation of ``K`` recordings of the first
held-out patient, the report with traces and attribution, the screenshots) for each ``K`` given.
CPU-seconds are this process's and its waited-for children's user + sys time
(``resource.getrusage``), the figure that holds on a loaded machine; wall seconds and the load
average come with them. Prints and saves JSON to ``benchmarks/results/demo_explain.json``.
Usage::

    python -m benchmarks.demo_explain DEMO_DIR [--k 1 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import save_figures

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "demo_explain.json"
#: The demo's bar and its last full measurement (benchmarks/results/demo.json, idle machine).
TARGET_S, DEMO_S = 15 * 60, 848.6


def cpu_s() -> float:
    """User + sys seconds of this process and of its children that have been waited for."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(demo: Path, work: Path, ks: list[int]) -> dict:
    import pandas as pd
    import torch  # noqa: F401  (loaded in the demo's driver by training; not charged here)

    from serving.demo import DemoConfig, _explained_report
    from serving.report import write_report

    results = pd.read_parquet(demo / "scores" / "results.parquet")
    out = {"demo_dir": str(demo), "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    c, t = cpu_s(), time.perf_counter()
    write_report(results, work / "plain" / "report", by="patient")
    out["plain"] = {"cpu_s": round(cpu_s() - c, 2), "wall_s": round(time.perf_counter() - t, 2)}
    for k in ks:
        folder = work / f"k{k}"
        folder.mkdir(parents=True)
        cfg = DemoConfig(out_dir=str(folder), explain_recordings=k, n_jobs=os.cpu_count() or 1)
        said, steps = [], {}
        c, t = cpu_s(), time.perf_counter()
        shots = _explained_report(
            cfg, demo / "run", demo / "heldout", results, folder,
            lambda stage, msg, said=said: said.append(msg), steps,
        )  # fmt: skip
        cpu, wall = cpu_s() - c, time.perf_counter() - t
        out[f"explained_k{k}"] = {
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
            "added_cpu_s": round(cpu - out["plain"]["cpu_s"], 2),
            "steps_wall_s": {s: round(v, 2) for s, v in steps.items()},
            "screenshots": sorted(shots),
            "said": said,
            "demo_s_if_serial": round(DEMO_S + cpu - out["plain"]["cpu_s"], 1),
        }
    out["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    out["cpu_count"] = os.cpu_count()
    out["target_s"], out["demo_s_measured"] = TARGET_S, DEMO_S
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished soz demo --out folder")
    parser.add_argument("--k", type=int, nargs="+", default=[1], help="recordings explained")
    parser.add_argument("--work", type=Path, default=None, help="scratch (default: temporary)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sozkit-demo-explain-"))
    result = measure(args.demo.resolve(), work, args.k)
    result["command"] = "python -m benchmarks.demo_explain " + " ".join(
        [str(args.demo), "--k", *map(str, args.k)]
    )
    save_figures(RESULTS, result)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
