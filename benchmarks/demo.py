"""The main job's wall time: ``soz demo`` with its defaults, run as a user runs it.

Runs ``python -m serving demo --out DIR`` in a child process (the CLI, a fresh local Ray,
the default cohort: 10 + 2 held-out patients, 5-fold CV of all four models, Serve, reports with
one explained recording and the figure screenshots),
timestamps every progress line it prints, and records the stage timings and headline figures it
writes to ``DIR/demo.json``, with the machine's load average before and after (the figure only
means something next to the load it was measured under). The target is under 15 minutes on
2 CPU cores. Prints and saves JSON to ``benchmarks/results/demo.json``. Usage::

    python -m benchmarks.demo [--out DIR] [--port PORT] [-- extra soz demo arguments]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import save_figures

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "demo.json"
TARGET_S = 15 * 60
#: ``[   233 s] 3/5 train: 1/20 sozformer fold 0: test ROC-AUC 0.884``
PROGRESS = re.compile(r"^\[\s*(\d+) s\] (\d)/\d (\w+): (.*)$")


def run_demo(out: Path, port: int, extra: list[str]) -> tuple[float, list[dict], int]:
    """Run ``soz demo`` in a child process; its wall time, progress lines and exit status."""
    cmd = [sys.executable, "-m", "serving", "demo", "--out", str(out), "--port", str(port)]
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, *extra], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    lines, tail = [], collections.deque(maxlen=30)
    for line in proc.stderr:
        tail.append(line)
        m = PROGRESS.match(line.rstrip())
        if m:
            lines.append(
                {"at_s": round(time.perf_counter() - t0, 1), "stage": m[3], "message": m[4]}
            )
            print(line.rstrip(), flush=True)
    status = proc.wait()
    if status != 0:
        print("".join(tail), file=sys.stderr)
    return time.perf_counter() - t0, lines, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="demo folder (default: temporary)")
    parser.add_argument("--port", type=int, default=8765, help="Serve port (8765)")
    parser.add_argument("extra", nargs="*", help="further soz demo arguments (after --)")
    args = parser.parse_args()

    out = (args.out or Path(tempfile.mkdtemp(prefix="sozkit-demo-"))).resolve()
    load_before = os.getloadavg()
    wall, progress, status = run_demo(out, args.port, args.extra)
    load_after = os.getloadavg()
    if status != 0:
        sys.exit(f"soz demo exited with status {status}; its last lines are above.")
    demo = json.loads((out / "demo.json").read_text())
    result = {
        "command": "python -m benchmarks.demo " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": round(wall, 1),
        "target_s": TARGET_S,
        "within_target": wall < TARGET_S,
        "stage_s": {k: round(v, 1) for k, v in demo["timings"].items()},
        "headline": demo["headline"],
        "progress": progress,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    save_figures(RESULTS, result, leave_out=("progress",))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
