"""The classical baseline re-scored on a finished cross-generator work folder, in other settings.

``python -m benchmarks.cross_generator_baseline --work W --seed S --out RUNS --name NAME
[--variant LABEL=JSON ...]`` reads the store and the folds of a ``benchmarks.cross_generator``
work folder ``W`` (read-only), trains the baseline alone on the same leave-one-family-out folds
(``split="cohort"``, seed ``S``) once per variant, each in its own run folder under ``RUNS``
with ``model_hparams={"baseline": JSON}``, and reports per variant and direction the pooled,
ictal and interictal ROC-AUC of the test family (:func:`benchmarks.cross_generator.
direction_figures`). The variant ``before`` is the baseline of ``W``'s own run (``--run``),
re-evaluated, not re-trained. Results: ``NAME.json`` in ``--results``; ``--table`` renders every
JSON there into ``table.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.cross_generator import _direction, direction_figures
from trainer.config import TrainConfig
from trainer.metrics import with_flat
from trainer.splits import Fold

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "cross_generator_eishift"
KEYS = ("roc_auc", "roc_auc_ictal", "roc_auc_interictal")


def run_figures(store_url: str, run_dir: Path) -> dict[str, dict[str, Any]]:
    """``{direction: figures}`` of the baseline folds of ``run_dir``."""
    from ingest.store import ClipStore
    from trainer.rundir import RunDir

    store = ClipStore.open(store_url)
    manifest, channels = store.recordings(), store.channels()
    run = RunDir(run_dir)
    calibration = run.card().get("config", {}).get("calibration", "auto")
    folds = [Fold.from_dict(d) for d in json.loads(run.folds_path.read_text("utf-8"))]
    out = {}
    for fold in folds:
        d = run.fold_dir("baseline", fold.index)
        out[_direction(fold)] = direction_figures(
            with_flat(pd.read_parquet(d / "val_predictions.parquet"), channels),
            with_flat(pd.read_parquet(d / "test_predictions.parquet"), channels),
            manifest,
            calibration=calibration,
        )
    return out


def train_variant(store_url: str, run_dir: Path, hparams: dict, *, seed: int) -> float:
    """Train the baseline alone on the cohort split into ``run_dir``; returns CPU seconds."""
    from trainer.run import run_training

    cfg = TrainConfig(models=("baseline",), seed=seed, split="cohort",
                      model_hparams={"baseline": hparams})  # fmt: skip
    t = time.process_time()
    run_training(store_url, str(run_dir), cfg)
    return time.process_time() - t


def render(results: list[dict]) -> str:
    """One markdown table: pooled (ictal / interictal) ROC-AUC per cohort, variant, direction."""
    lines = [
        "| cohort | variant | Wendling → Epileptor: pooled (ictal / interictal) "
        "| Epileptor → Wendling: pooled (ictal / interictal) |",
        "|---|---|---|---|",
    ]
    for r in results:
        for label, v in r["variants"].items():
            cells = []
            for direction in ("wendling -> epileptor", "epileptor -> wendling"):
                f = v["figures"].get(direction, {})
                cells.append(
                    "{:.3f} ({:.3f} / {:.3f})".format(*(f.get(k, float("nan")) for k in KEYS))
                )
            lines.append(f"| {r['name']} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="a benchmarks.cross_generator work folder (read only)")
    parser.add_argument("--run", default="run-none", help="its run holding the baseline")
    parser.add_argument("--seed", type=int, default=0, help="the seed of that run's folds")
    parser.add_argument("--out", help="folder of this benchmark's run folders")
    parser.add_argument("--name", help="name of the cohort (the JSON's stem)")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="LABEL=JSON",
        help="baseline hyper-parameters to train, e.g. 'preictal={\"preictal\": true}'",
    )  # fmt: skip
    parser.add_argument("--results", default=str(RESULTS), help="folder of the JSON files")
    parser.add_argument("--table", action="store_true", help="render the JSON files only")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if args.table:
        found = [json.loads(p.read_text("utf-8")) for p in sorted(results.glob("*.json"))]
        (results / "table.md").write_text(render(found), "utf-8")
        print(render(found))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from serving.cli import ray_session

    work, out = Path(args.work), Path(args.out)
    store_url = str(work / "store")
    load = os.getloadavg()[0]
    variants: dict[str, Any] = {
        "before": {"hparams": None, "figures": run_figures(store_url, work / args.run)}
    }
    with ray_session(log_to_driver=False):
        for spec in args.variant:
            label, _, text = spec.partition("=")
            hparams = json.loads(text or "{}")
            cpu = train_variant(store_url, out / label, hparams, seed=args.seed)
            figures = run_figures(store_url, out / label)
            variants[label] = {"hparams": hparams, "driver_cpu_s": round(cpu, 1),
                               "figures": figures}  # fmt: skip
    from trainer.run import json_safe

    result = json_safe(
        {
            "name": args.name,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join(
                ["python", "-m", "benchmarks.cross_generator_baseline", *sys.argv[1:]]
            ),
            "data": "simulated",
            "load_avg": f"{load:.1f} -> {os.getloadavg()[0]:.1f}",
            "variants": variants,
        }
    )
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(render([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
