"""Cross-generator ROC-AUC of the models' rankings combined: a measurement, not a model (yet).

Reads finished cross-generator runs (``benchmarks.cross_generator --out W``: ``W/store`` and
the run directory under ``W``) and, for every fold (one direction: train on one simulator
family, test on the other), combines the test predictions of the runs' models: each model's
score turned into its rank within its own recording (a fraction in (0, 1], ties averaged), the
ranks averaged over the models, then the channel score is the mean over a patient's recordings
as for any model (:func:`trainer.metrics.aggregate_channel_scores`). Nothing is fitted: no
weights, no threshold, so the combination cannot have been tuned on the test family. Reported
beside each model alone, pooled over the test family's patients, all recordings and ictal /
interictal apart (the store's ``n_seizures``).

    python -m benchmarks.cross_generator_ensemble W [W ...] [--results DIR]

Writes ``DIR/cross_generator_ensemble.json`` and ``.md`` (default
``benchmarks/results/cross_generator_ensemble``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.store import ClipStore
from trainer.metrics import aggregate_channel_scores

MODELS = ("sozformer", "dcgru", "svm", "baseline")
RESULTS = Path(__file__).resolve().parent / "results" / "cross_generator_ensemble"
KEY = ["patient", "recording_id", "channel"]


def within_recording_rank(test: pd.DataFrame) -> pd.Series:
    """Each contact's score as its rank among its recording's contacts, in (0, 1]."""
    return test.groupby(level="recording_id")["score"].rank(method="average", pct=True)


def pooled_auc(test: pd.DataFrame) -> float | None:
    """ROC-AUC over the channels of the test patients (scores averaged over recordings)."""
    from sklearn.metrics import roc_auc_score

    table = aggregate_channel_scores(test)
    y = table["y_true"].to_numpy(int)
    return float(roc_auc_score(y, table["score"])) if 0 < y.sum() < len(y) else None


def combine(preds: dict[str, pd.DataFrame], models: tuple[str, ...]) -> pd.DataFrame:
    """The test rows of ``models[0]`` with ``score`` = the models' mean within-recording rank."""
    tables = {m: preds[m].set_index(KEY).sort_index() for m in models}
    base = tables[models[0]]
    for m, t in tables.items():
        if not t.index.equals(base.index):
            raise ValueError(f"{m}'s test predictions are not over {models[0]}'s contacts")
    mean_rank = sum(within_recording_rank(t) for t in tables.values()) / len(models)
    return base.assign(score=mean_rank).reset_index()


def fold_figures(run: Path, fold: dict, seizures: dict[str, int], models) -> dict:
    """ROC-AUC (all / ictal / interictal) of each model and of each combination, one fold."""
    preds = {m: pd.read_parquet(run / m / f"fold_{fold['index']}" / "test_predictions.parquet")
             for m in models}  # fmt: skip
    combos = [c for n in range(2, len(models) + 1) for c in itertools.combinations(models, n)]
    tables = dict(preds) | {"+".join(c): combine(preds, c) for c in combos}
    out = {}
    for name, test in tables.items():
        n_sz = test["recording_id"].map(seizures)
        out[name] = {kind: pooled_auc(part) for kind, part in
                     (("all", test), ("ictal", test[n_sz > 0]),
                      ("interictal", test[n_sz == 0]))}  # fmt: skip
    return out


def cohort_figures(work: Path, models=MODELS) -> dict:
    """Every fold of the run under ``work`` (the one directory with a ``folds.json``)."""
    runs = sorted(p.parent for p in work.glob("*/folds.json"))
    if len(runs) != 1:
        raise SystemExit(f"{work}: expected one run directory with folds.json, found {runs}")
    run = runs[0]
    manifest = ClipStore.open(str(work / "store")).recordings()
    seizures = dict(zip(manifest["recording_id"], manifest["n_seizures"], strict=True))
    folds = json.loads((run / "folds.json").read_text())
    direction = lambda f: " -> ".join(x[0].split("/")[0] for x in (f["train"], f["test"]))  # noqa: E731
    return {"run": str(run),
            "directions": {direction(f): fold_figures(run, f, seizures, models) for f in folds}}  # fmt: skip


def render_markdown(result: dict) -> str:
    names = list(next(iter(next(iter(result["cohorts"].values()))["directions"].values())))
    lines = [
        "# Cross-generator ROC-AUC of the models' rankings combined (simulated data)",
        "",
        f"Command: `{result['command']}`.",
        "Combination: each model's score as its rank within its recording, averaged over the",
        "models (nothing fitted). Cells: all / ictal / interictal, pooled over the test family.",
        "",
        "| cohort | direction | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    means: dict = {}
    for cohort, c in result["cohorts"].items():
        for d, figs in c["directions"].items():
            lines.append(f"| {cohort} | {d} | " + " | ".join(
                f"{f(figs[n]['all'])} / {f(figs[n]['ictal'])} / {f(figs[n]['interictal'])}"
                for n in names) + " |")  # fmt: skip
            for n in names:
                means.setdefault((d, n), []).append(figs[n]["all"])
    lines += ["", "| direction | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for d in dict.fromkeys(d for d, _ in means):
        lines.append(f"| mean / worst, {d} | " + " | ".join(
            f"{np.mean(means[d, n]):.3f} / {np.min(means[d, n]):.3f}" for n in names) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("works", nargs="+", help="cross_generator --out folders (read only)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    models = tuple(args.models.split(","))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.cross_generator_ensemble "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "models": list(models),
        "cohorts": {Path(w).name: cohort_figures(Path(w), models) for w in args.works},
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_generator_ensemble.json").write_text(json.dumps(result, indent=1) + "\n")
    text = render_markdown(result)
    (out / "cross_generator_ensemble.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
