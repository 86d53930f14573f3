"""Watch benchmark: latency, sustained throughput and memory of ``soz watch`` under a steady export.

A producer writes recordings into a landing folder at a steady rate, each file written in
pieces over ``--write-s`` seconds as an export would; ``soz watch`` runs with its defaults
(poll 5 s, stable 30 s) in its own process. Measured:

- **latency** from "file complete" (the producer closed it) to "results row written" (the
  journal's ``scored`` line, appended right after the results file is replaced) and to "report
  written" (``reported``), p50 and p95; against ``soz score RUN_DIR FILE`` of the same file
  alone, run in the same session before the watcher (its whole command wall time, and the
  scoring time it reports itself). Target: p50 within 1.5x of it plus the stable window.
- **sustained throughput** (the target's figure): the recording-hours whose results rows were
  written after the first ``--skip-batches`` batches' rows and up to the last row, divided by
  that time. A batch is the recordings of one results write (one ``scored_at``); skipping the
  first one leaves out the start (the stable window before anything is complete, the first
  batch alone in the pipeline, cold). It measures what the watcher can do only when the
  producer offers more than that: give ``--rate-hph`` above it (``--rate-hph 200``: a 5-min
  recording every 1.5 s) and the watcher falls behind, batches grow and it never waits for an
  export. At an offered rate it keeps up with, the figure is the offered rate (give or take a
  batch), so a figure clearly below ``offered_h_per_h`` is the watcher's own. Target: >= 100
  h/h for 128 contacts at 1 kHz on 2 cores.
- **throughput** as before: recording-hours per wall hour from the first file complete to the
  last report (it includes the first stable window and the last batch's), between the first
  and the last report, and the capacity: recording-hours per hour of the watcher's busy time
  (the union of every batch's span from ``taken`` to ``reported``).
- **CPU**: CPU seconds of the watcher and its processes per recording-hour, and the capacity it
  gives on this machine's cores (cores x 3600 / CPU-s per recording-hour): what load on a
  shared machine does not distort as it does wall time; and the same per process under the
  watcher, summed by kind (the watcher itself, ``ray::ScoringWorker``, ``ray::PageWriter``,
  Ray's own processes, Beam workers): where that CPU goes.
- **memory**: the watcher's RSS (its own process, and with every process under it: Ray's
  and Beam's workers) after each arrival; target: flat.

The model is SOZFormer at its default size and with its default inputs (``--clip-extras``, the
training default: the spectra and the clip's spike rate), untrained, saved with the real
checkpoint code (:func:`benchmarks.serving.make_run_dir`); recordings are 128-contact 1024-Hz EDFs written by
:func:`benchmarks.ingest.write_edf_streamed`. Prints and saves ``benchmarks/results/watch.json``.

    python -m benchmarks.watch [--arrivals 30] [--minutes 10] [--interval-s 20 | --rate-hph H]
        [--write-s 3] [--skip-batches 1] [--clip-extras spikes|none]

The latency target is judged at an offered rate the watcher keeps up with (``--rate-hph
100``, the throughput target's rate); under saturation latency grows with the backlog and is
reported as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks import ingest as bench_ingest
from benchmarks.serving import make_run_dir
from ingest.fileio import write_json
from ingest.ownership import descendants
from trainer.config import DEFAULT_CLIP_EXTRAS

REPO = Path(__file__).resolve().parents[1]
LINE_FREQ = 60.0  # the line noise write_edf_streamed adds


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (with ``children``: and of its reaped children)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of the watcher and every process under it (Ray's and Beam's workers)."""
    return _cpu_s(pid, children=True) + sum(_cpu_s(p) for p in descendants(pid))


def _kind(pid: int) -> str:
    """What a process under the watcher is: ``ray::ScoringWorker``, ``ray::PageWriter``, ... for
    Ray's actors (the title Ray gives them, without the method running), else its program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return "?"
    if args[0].startswith("ray::"):
        return args[0].split(".")[0].split()[0]
    if "python" not in os.path.basename(args[0]):
        return os.path.basename(args[0].split()[0])  # raylet, gcs_server
    if "-c" in args:
        return "python -c"
    script = [a for a in args[1:] if not a.startswith("-")][:1]  # a script or -m's module
    return os.path.basename(script[0]) if script else "python"


def _cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds of the watcher (its own, not its reaped children's) and of every live
    process under it, summed by :func:`_kind`."""
    out = {"watcher": _cpu_s(pid)}
    for p in descendants(pid):
        k = _kind(p)
        out[k] = out.get(k, 0.0) + _cpu_s(p)
    return out


def _events(journal: Path) -> list[dict]:
    out = []
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _pct(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return {}
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "max": round(float(a.max()), 2),
    }


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return env


def baseline_score(run_dir: Path, edf: Path, out: Path) -> dict:
    """``soz score RUN_DIR EDF`` alone: whole command wall time and its own scoring time."""
    cmd = [sys.executable, "-m", "serving", "score", str(run_dir), str(edf), "--out", str(out),
           "--line-freq", str(LINE_FREQ), "--no-progress"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"soz score failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    m = re.search(r"in ([0-9.]+) s ->", proc.stdout)
    return {"command_wall_s": round(wall, 2), "scoring_s": float(m.group(1)) if m else None}


def _covered(spans: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] inside the union of ``spans``."""
    total, end = 0.0, lo
    for a, b in sorted(spans):
        a, b = max(a, end), min(b, hi)
        if b > a:
            total += b - a
            end = b
    return total


def sustained(
    results: Path,
    scored: dict[str, float],
    complete: dict[str, float],
    seconds: int,
    skip: int,
) -> dict:
    """Recording-hours per wall hour of the results rows written after the first ``skip``
    batches' rows, up to the last row (``skip`` 0: from the first file complete).

    A batch is the recordings of one results write: one ``scored_at`` in ``results``; its time
    is its last journal ``scored`` line (``scored``: landing path -> time).
    """
    import pandas as pd

    at = pd.read_parquet(results, columns=["landing_path", "scored_at"])
    at = at.groupby("landing_path")["scored_at"].max()
    batches: dict = {}
    for key, stamp in at.items():
        if key in scored and key in complete:
            batches.setdefault(stamp, []).append(key)
    ends = sorted((max(scored[k] for k in keys), keys) for keys in batches.values())
    out: dict = {"batches": len(ends), "batch_sizes": [len(b) for _, b in ends], "skip": skip}
    if len(ends) <= skip:
        return {**out, "sustained_h_per_h": None}
    start = ends[skip - 1][0] if skip else min(complete[k] for k in at.index if k in complete)
    n = sum(len(b) for _, b in ends[skip:])
    window = ends[-1][0] - start
    return {
        **out,
        "sustained_recordings": n,
        "sustained_window_s": round(window, 1),
        "sustained_h_per_h": round(n * seconds / window, 1) if window > 0 else None,
    }


def produce(
    sources: list[Path], landing: Path, n: int, interval_s: float, write_s: float, done: dict
) -> None:
    """Write ``n`` recordings into ``landing``, one every ``interval_s``, each over ``write_s``."""
    t_start = time.time()
    for i in range(n):
        delay = t_start + i * interval_s - time.time()
        if delay > 0:
            time.sleep(delay)
        data = sources[i % len(sources)].read_bytes()
        pieces = 10
        step = len(data) // pieces + 1
        path = landing / f"rec{i:03d}.edf"
        with open(path, "wb") as f:
            for k in range(0, len(data), step):
                f.write(data[k : k + step])
                f.flush()
                time.sleep(write_s / pieces)
        done[str(path)] = time.time()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrivals", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of each recording")
    ap.add_argument("--contacts", type=int, default=128)
    ap.add_argument("--interval-s", type=float, default=20.0, help="seconds between exports")
    ap.add_argument(
        "--rate-hph", type=float, default=None,
        help="offered recording-hours per hour (sets --interval-s to minutes x 60 / rate)",
    )  # fmt: skip
    ap.add_argument(
        "--skip-batches", type=int, default=1,
        help="batches left out at the start of the sustained throughput",
    )  # fmt: skip
    ap.add_argument("--write-s", type=float, default=3.0, help="seconds each export takes")
    ap.add_argument("--sources", type=int, default=2, help="distinct source files")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--clip-extras",
        default=",".join(DEFAULT_CLIP_EXTRAS["sozformer"]) or "none",
        help="the model's extra token measures (default: SOZFormer's training default); "
        "none: the spectra alone, as the figures before 2026-12-04",
    )
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "watch.json"))
    args = ap.parse_args(argv)
    extras = () if args.clip_extras == "none" else tuple(args.clip_extras.split(","))
    if args.rate_hph is not None:
        args.interval_s = args.minutes * 60 / args.rate_hph

    work = Path(args.workdir or tempfile.mkdtemp(prefix="soz-watch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        run_dir = make_run_dir(work, clip_extras=extras)
        bench_ingest.N_CHANS = args.contacts
        seconds = int(round(args.minutes * 60))
        sources = []
        for k in range(args.sources):
            src = work / "src" / f"src{k}.edf"
            src.parent.mkdir(parents=True, exist_ok=True)
            bench_ingest.write_edf_streamed(src, seconds, seed=k)
            sources.append(src)
        print(f"{args.sources} source EDFs of {args.minutes:g} min x {args.contacts} contacts")
        base = baseline_score(run_dir, sources[0], work / "baseline.parquet")
        print(f"soz score alone: {base}")

        landing, results = work / "landing", work / "results.parquet"
        landing.mkdir()
        journal = work / "results.watch.jsonl"
        log = open(work / "watch.log", "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "serving", "watch", str(landing),
               "--store", str(work / "store"), "--run", str(run_dir), "--results", str(results),
               "--reports", str(work / "reports"), "--line-freq", str(LINE_FREQ)]  # fmt: skip
        t_launch = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        while "watching" not in (work / "watch.log").read_text():
            if proc.poll() is not None:
                raise RuntimeError((work / "watch.log").read_text()[-3000:])
            time.sleep(0.2)
        startup_s = time.time() - t_launch
        print(f"watcher up in {startup_s:.1f} s; producing {args.arrivals} arrivals")
        complete: dict[str, float] = {}
        producer = threading.Thread(
            target=produce,
            args=(sources, landing, args.arrivals, args.interval_s, args.write_s, complete),
            daemon=True,
        )
        producer.start()
        rss: list[dict] = []
        seen = 0
        cpu_at_start = _tree_cpu_s(proc.pid)  # the watcher idle, before the first export
        deadline = time.time() + args.arrivals * args.interval_s + 1800
        while time.time() < deadline:
            reported = [e for e in _events(journal) if e["state"] == "reported"]
            if len(reported) > seen:
                seen = len(reported)
                fam = [proc.pid, *descendants(proc.pid)]
                rss.append({
                    "arrivals": seen,
                    "watcher_mb": round(_rss_mb(proc.pid), 1),
                    "with_children_mb": round(sum(_rss_mb(p) for p in fam), 1),
                    "tree_cpu_s": round(_tree_cpu_s(proc.pid) - cpu_at_start, 1),
                    "cpu_by_process": {
                        k: round(v, 1) for k, v in _cpu_by_kind(proc.pid).items() if v >= 0.1
                    },
                })  # fmt: skip
                print(f"  {seen:3d} reported; watcher RSS {rss[-1]['watcher_mb']:.0f} MB "
                      f"(with Ray/Beam {rss[-1]['with_children_mb']:.0f} MB)", flush=True)  # fmt: skip
            if seen >= args.arrivals or proc.poll() is not None:
                break
            time.sleep(0.5)
        load_during = os.getloadavg()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

        events = _events(journal)

        def at(state: str) -> dict[str, float]:
            return {
                e["key"]: datetime.fromisoformat(e["at"]).timestamp()
                for e in events
                if e["state"] == state
            }

        scored, reported = at("scored"), at("reported")
        keys = [k for k in complete if k in reported]
        lat_rows = [scored[k] - complete[k] for k in keys]
        lat_report = [reported[k] - complete[k] for k in keys]
        hours = len(keys) * seconds / 3600
        first, last = min(complete[k] for k in keys), max(reported[k] for k in keys)
        rep_times = sorted(reported[k] for k in keys)
        steady = (
            (len(keys) - 1) * seconds / 3600 / ((rep_times[-1] - rep_times[0]) / 3600)
            if len(keys) > 1 and rep_times[-1] > rep_times[0]
            else None
        )
        # busy time: the union of every batch's [taken, reported] span (capacity when kept busy)
        taken = at("taken")
        spans = sorted((taken[k], reported[k]) for k in keys if k in taken)
        sust = sustained(results, scored, complete, seconds, args.skip_batches)
        busy = _covered(spans, spans[0][0], max(b for _, b in spans)) if spans else 0.0
        mem = [r["watcher_mb"] for r in rss]
        # CPU seconds per recording-hour from the second report on (the first pays for warm-up)
        cpu_per_h = (
            (rss[-1]["tree_cpu_s"] - rss[0]["tree_cpu_s"])
            / ((rss[-1]["arrivals"] - rss[0]["arrivals"]) * seconds / 3600)
            if len(rss) > 1 and rss[-1]["arrivals"] > rss[0]["arrivals"]
            else None
        )
        # where that CPU went: per process kind, over the same reports
        by_proc = (
            {
                k: round(
                    (v - rss[0]["cpu_by_process"].get(k, 0.0))
                    / ((rss[-1]["arrivals"] - rss[0]["arrivals"]) * seconds / 3600),
                    1,
                )
                for k, v in sorted(rss[-1]["cpu_by_process"].items(), key=lambda kv: -kv[1])
            }
            if cpu_per_h
            else {}
        )
        slope = (
            float(np.polyfit([r["arrivals"] for r in rss[2:]], mem[2:], 1)[0])
            if len(rss) > 4
            else None
        )
        half = [r for r in rss if r["arrivals"] > args.arrivals // 2]
        late = (
            float(np.polyfit([r["arrivals"] for r in half], [r["watcher_mb"] for r in half], 1)[0])
            if len(half) > 4
            else None
        )
        out = {
            "arrivals": len(keys),
            "recording_minutes": args.minutes,
            "contacts": args.contacts,
            "sfreq_file": bench_ingest.SFREQ,
            "interval_s": args.interval_s,
            "write_s": args.write_s,
            "clip_extras": list(extras),
            "watcher_defaults": {"poll_s": 5.0, "stable_s": 30.0},
            "watcher_startup_s": round(startup_s, 1),
            "baseline_soz_score": base,
            "latency_to_results_s": _pct(lat_rows),
            "latency_to_report_s": _pct(lat_report),
            "target_p50_s": round(1.5 * base["command_wall_s"] + 30.0, 1),
            "sustained_h_per_h": sust.pop("sustained_h_per_h"),
            "sustained": sust,
            "throughput_h_per_h": round(hours / ((last - first) / 3600), 1),
            "steady_throughput_h_per_h": round(steady, 1) if steady else None,
            "offered_h_per_h": round(seconds / args.interval_s, 1),
            "busy_s": round(busy, 1),
            "capacity_h_per_h": round(hours / (busy / 3600), 1) if busy else None,
            "cpu_s_per_recording_h": round(cpu_per_h, 1) if cpu_per_h else None,
            "cpu_s_per_recording_h_by_process": by_proc,
            "cpu_capacity_h_per_h": (
                round((os.cpu_count() or 1) * 3600 / cpu_per_h, 1) if cpu_per_h else None
            ),
            "rss": rss,
            "rss_slope_mb_per_arrival": round(slope, 2) if slope is not None else None,
            "rss_slope_second_half_mb_per_arrival": round(late, 2) if late is not None else None,
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_end": [round(x, 2) for x in load_during],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
        print(json.dumps({k: v for k, v in out.items() if k != "rss"}, indent=2))
        write_json(args.out, out)
        print(f"saved {args.out}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
