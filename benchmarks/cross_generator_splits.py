"""Leave-one-centre-out against patient-wise CV on a cross-generator store (both families pooled).

``python -m benchmarks.cross_generator --splits K --out DIR`` (:mod:`benchmarks.cross_generator`)
trains the models of its options twice on the store a cross-generator run left in ``DIR``: K
patient-wise folds, then one fold per centre. Issue 12's target: the second within 0.03 ROC-AUC
of the first. Results: ``cross_generator_splits.json`` / ``.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.cross_generator import _calls, _fmt
from trainer.config import TrainConfig


def split_comparison(store_url: str, work: Path, train_cfg: TrainConfig, *, n_folds: int) -> dict:
    """Patient-wise CV against leave-one-centre-out on the same store (both families pooled).

    Returns ``{split: {model: figures}}``: pooled ROC-AUC (all / ictal / interictal), calibrated
    Brier skill score and both call rules' macro precision / recall (``sites.json`` and the
    model's ``metrics.json``).
    """
    from trainer.run import run_training

    out: dict[str, dict] = {}
    for split in ("patient", "centre"):
        run_dir = work / f"run_{split}"
        cfg = train_cfg.replace(
            split=split, n_folds=n_folds, resume=(run_dir / "card.json").is_file()
        )
        t = time.perf_counter()
        trained = run_training(store_url, str(run_dir), cfg)
        sites = json.loads((run_dir / "sites.json").read_text())
        out[split] = {"wall_s": round(time.perf_counter() - t, 1), "n_folds": len(trained["folds"])}
        for name in cfg.models:
            summary = json.loads((run_dir / name / "metrics.json").read_text())
            out[split][name] = {
                "roc_auc": sites[name]["all"]["roc_auc"],
                "roc_auc_ictal": sites[name]["ictal"]["roc_auc"],
                "roc_auc_interictal": sites[name]["interictal"]["roc_auc"],
                "bss": summary["pooled"].get("bss"),
                "roc_auc_calibrated": summary["pooled"].get("roc_auc_calibrated"),
                "calls": summary.get("pooled_calls"),
            }
    return out


def render_splits(result: dict) -> str:
    """The patient-wise vs leave-one-centre-out table (the target: within 0.03 AUC)."""
    lines = [
        "# Leave-one-centre-out vs patient-wise CV (simulated data, both families pooled)",
        "",
        f"Command: `{result.get('command', '')}`; load average {result.get('load_avg', '')}.",
        "",
        "| model | split | folds | ROC-AUC | ictal | interictal | AUC cal. | BSS | Youden calls "
        "| relative calls | p_cal >= t | p_cal >= 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    splits = result["splits"]
    models = [m for m, f in splits["patient"].items() if isinstance(f, dict)]
    for m in models:
        for split in ("patient", "centre"):
            f, calls = splits[split][m], splits[split][m].get("calls") or {}
            lines.append(
                f"| {m} | {split} | {splits[split]['n_folds']} | {_fmt(f['roc_auc'])} "
                f"| {_fmt(f['roc_auc_ictal'])} | {_fmt(f['roc_auc_interictal'])} "
                f"| {_fmt(f.get('roc_auc_calibrated'))} "
                f"| {_fmt(f['bss'])} | {_calls(calls.get('youden'))} "
                f"| {_calls(calls.get('relative'))} | {_calls(calls.get('calibrated'))} "
                f"| {_calls(calls.get('calibrated_half'))} |"
            )
    lines += ["", "Target: leave-one-centre-out within 0.03 AUC of patient-wise CV.", ""]
    for m in models:
        a, b = splits["patient"][m]["roc_auc"], splits["centre"][m]["roc_auc"]
        if a is None or b is None:
            continue
        lines.append(f"- {'met' if abs(a - b) <= 0.03 else 'NOT met'}: {m} patient "
                     f"{_fmt(a)} vs centre {_fmt(b)} (difference {b - a:+.3f})")  # fmt: skip
    return "\n".join(lines) + "\n"
