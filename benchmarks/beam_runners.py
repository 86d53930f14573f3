"""Beam runners benchmark: the same ingest in process, on local worker processes and on the
portable runner (job service + external worker pool, the Fn API path of Flink/Dataflow).

A tiny cohort (default 4 recordings x 3 min x 128 contacts x 1024 Hz EDF, 1-min blocks: 12
elements) is ingested into a fresh store by each runner in turn, ``--repeats`` rounds in
alternating order, all in this run:

- ``in_process``: FnApiRunner, one in-memory worker (the baseline);
- ``local_processes``: FnApiRunner, ``multi_processing`` over 2 worker processes (the default);
- ``portable``: PortableRunner against ``local_job_service_main`` with an ``EXTERNAL`` worker
  pool (``worker_pool_main``): one SDK worker process (Python's job service runs a job on one
  worker whatever ``--direct_num_workers`` says).

The services are started once (their start-up is reported apart); each figure is the wall time of
``ingest_recordings`` (submit to manifests committed). Prints and saves
``benchmarks/results/beam_runners.json``. Usage::

    python -m benchmarks.beam_runners [--recordings 4] [--seconds 180] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IN_PROCESS = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
LOCAL_PROCESSES = [
    "--runner=FnApiRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.ingest import _recording, write_edf_streamed
    from ingest.beam_services import portable_services
    from ingest.config import IngestConfig
    from ingest.driver import ingest_recordings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "beam_runners.json"
    )
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sozkit-beam-runners-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = IngestConfig(block_clips=12)
    recs = []
    for i in range(args.recordings):
        path = work / f"r{i}.edf"
        if not path.exists():
            write_edf_streamed(path, args.seconds, seed=i)
        recs.append(_recording(path))

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with portable_services(work / "services") as services:
        start_s = time.perf_counter() - t0
        runners = {
            "in_process": IN_PROCESS,
            "local_processes": LOCAL_PROCESSES,
            "portable": services.pipeline_args(),
        }
        wall: dict[str, list[float]] = {name: [] for name in runners}
        clips: dict[str, int] = {}
        for round_ in range(args.repeats):
            order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
            for name in order:
                store = work / f"store-{name}"
                shutil.rmtree(store, ignore_errors=True)
                t = time.perf_counter()
                report = ingest_recordings(recs, str(store), cfg, pipeline_args=runners[name])
                wall[name].append(round(time.perf_counter() - t, 2))
                if report.n_ingested != len(recs):
                    raise RuntimeError(f"{name}: {report.failures.to_dict('records')}")
                clips[name] = report.n_clips
                print(f"{name:16s} round {round_}: {wall[name][-1]:6.2f} s", flush=True)
    if len(set(clips.values())) != 1:
        raise RuntimeError(f"runners wrote different clip counts: {clips}")
    base = min(wall["in_process"])
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "python": platform.python_version(),
        },
        "cohort": {
            "recordings": args.recordings,
            "seconds_each": args.seconds,
            "contacts": 128,
            "sfreq_hz": 1024,
            "block_clips": cfg.block_clips,
            "elements": args.recordings * -(-args.seconds // int(cfg.block_clips * cfg.clip_s)),
            "clips": clips["in_process"],
        },
        "services_start_s": round(start_s, 2),
        "wall_s": wall,
        "best_s": {name: min(w) for name, w in wall.items()},
        "ratio_to_in_process": {name: round(min(w) / base, 2) for name, w in wall.items()},
    }
    print(json.dumps(results, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
