"""Simulator benchmark: wall time, CPU time and peak memory of the default synthetic cohort.

Simulates ``SimulationConfig()`` (6 subjects x (2 ictal + 1 interictal) runs) into a temporary
folder, timing each subject, and records the machine's load average before and after (the
figure is only meaningful next to the load it was measured under). Also reports the size of
the written dataset and the onset line-length ROC-AUC per subject and ictal run against the true
SOZ (the honesty check: it must not be 1 everywhere). Prints and saves JSON to
``benchmarks/results/simulate.json``. Usage::

    python -m benchmarks.simulate [--subjects N] [--seed S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import save_figures

REPO = Path(__file__).resolve().parents[1]


def onset_line_length_auc(root: Path) -> dict[str, list[float]]:
    """ROC-AUC of onset line length (first 10 s) against the true SOZ, per subject and run."""
    import mne
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    out: dict[str, list[float]] = {}
    for sub_dir in sorted(root.glob("sub-*")):
        sub = sub_dir.name
        truth = pd.read_csv(
            root / "derivatives" / "sozkit-truth" / sub / f"{sub}_desc-truth_channels.tsv", sep="\t"
        ).set_index("name")
        for edf in sorted(sub_dir.glob("ses-*/ieeg/*task-ictal*_ieeg.edf")):
            channels = pd.read_csv(str(edf).replace("_ieeg.edf", "_channels.tsv"), sep="\t")
            events = pd.read_csv(str(edf).replace("_ieeg.edf", "_events.tsv"), sep="\t")
            good = channels.name[channels.status == "good"].tolist()
            raw = mne.io.read_raw_edf(edf, verbose="error")
            on = int(events.onset[0] * raw.info["sfreq"])
            x = raw.get_data(picks=good, start=on, stop=on + int(10 * raw.info["sfreq"]))
            ll = np.abs(np.diff(x)).mean(1)
            out.setdefault(sub, []).append(
                round(float(roc_auc_score(truth.loc[good, "soz_true"], ll)), 3)
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="write here and keep it")
    args = parser.parse_args()

    from ingest.simulate import SimulationConfig, simulate_cohort

    cfg = SimulationConfig(n_subjects=args.subjects, seed=args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="sozkit-sim-"))
    load_before = os.getloadavg()
    ticks: list[float] = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    simulate_cohort(work, cfg, progress=lambda done, total: ticks.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    load_after = os.getloadavg()
    size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    aucs = onset_line_length_auc(work)
    runs = cfg.n_ictal_runs + cfg.n_interictal_runs
    result = {
        "config": {"n_subjects": cfg.n_subjects, "seed": cfg.seed, "runs_per_subject": runs},
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "per_subject_wall_s": [
            round(b - a, 2)
            for a, b in zip(
                [0.0] + ticks[runs - 1 :: runs][:-1], ticks[runs - 1 :: runs], strict=True
            )
        ],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dataset_mb": round(size / 2**20, 1),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "onset_line_length_auc_vs_true_soz": aucs,
        "fraction_runs_line_length_perfect": round(
            float(np.mean([a == 1.0 for v in aucs.values() for a in v])), 3
        ),
    }
    save_figures(REPO / "benchmarks" / "results" / "simulate.json", result)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
