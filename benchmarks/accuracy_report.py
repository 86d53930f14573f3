"""The accuracy benchmark's Markdown (``accuracy.md``): its tables beside the reference figures.

Split from :mod:`benchmarks.accuracy` (which runs the benchmark) so each stays one concept: this
module only renders a finished result dict.
"""

from __future__ import annotations

from trainer.summary import REFERENCE

#: Figures of each model in the table: (key of summarise_folds' mean/std, column header).
METRICS = (
    ("roc_auc", "channel ROC-AUC"),
    ("pr_auc", "channel PR-AUC"),
    ("macro_recall", "macro recall"),
    ("macro_precision", "macro precision"),
    ("macro_f1", "macro F1"),
)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _pm(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{mean:.3f} ± {_fmt(std)}"


def _ref(model: str, key: str) -> str:
    lo_hi = REFERENCE.get(model, {}).get(key)
    if lo_hi is None:
        return "not reported"
    lo, hi = lo_hi
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def render_markdown(result: dict) -> str:
    """The benchmark's tables as Markdown (what ``accuracy.md`` holds and the script prints)."""
    sim, models = result["config"]["simulation"], result["models"]
    n_patients, folds = sim["n_subjects"], result["config"]["train"]["n_folds"]
    lines = [
        "# Accuracy benchmark: sozkit models vs the classical baseline",
        "",
        f"## Simulated data: {n_patients} simulated patients, {folds}-fold patient-wise CV",
        "",
        f"Cohort from `ingest.simulate` (seed {sim['seed']}, difficulty {sim['difficulty']}, "
        f"{sim['n_ictal_runs']} ictal + {sim['n_interictal_runs']} interictal runs per patient, "
        f"store at {result['config']['ingest']['sfreq']:g} Hz). Test folds, mean ± std over "
        "folds; labels = the simulated clinical SOZ (it agrees "
        f"{result['label_ceiling']['dice']:.2f} Dice with the true SOZ). PR-AUC's chance level is "
        "the SOZ prevalence. Macro = per patient, then averaged.",
        "",
        "| model | channel ROC-AUC | channel PR-AUC (prevalence) | macro recall "
        "| macro precision | macro F1 | ROC-AUC vs TRUE SOZ |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in models.items():
        mean, std, true = m["mean"], m["std"], m["vs_true_soz"]
        lines.append(
            f"| `{name}` | {_pm(mean['roc_auc'], std['roc_auc'])} "
            f"| {_pm(mean['pr_auc'], std['pr_auc'])} ({_fmt(mean['prevalence'])}) "
            f"| {_pm(mean['macro_recall'], std['macro_recall'])} "
            f"| {_pm(mean['macro_precision'], std['macro_precision'])} "
            f"| {_pm(mean['macro_f1'], std['macro_f1'])} "
            f"| {_pm(true['mean'], true['std'])} |"
        )
    ceiling = result["label_ceiling"]
    lines += [
        "",
        "Label noise: an oracle that knew the true SOZ set would score channel ROC-AUC "
        f"{_fmt(ceiling['roc_auc'])} against these clinical labels, one that knew each "
        f"contact's epileptogenic lead-field share {_fmt(ceiling['roc_auc_ez_share'])} "
        f"(pooled over the {ceiling['n_channels']} contacts of the test patients).",
        "",
        "Pooled over all test patients (every channel once, its own fold's threshold):",
        "",
        "| model | ROC-AUC | PR-AUC | recall | precision | tn / fp / fn / tp |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in models.items():
        p = m["pooled"]
        lines.append(
            f"| `{name}` | {_fmt(p['roc_auc'])} | {_fmt(p['pr_auc'])} | {_fmt(p['recall'])} "
            f"| {_fmt(p['precision'])} | {p['tn']} / {p['fp']} / {p['fn']} / {p['tp']} |"
        )
    if result.get("ablations"):
        lines += ["", "Ablations (same folds):", ""]
        lines += [
            "| variant | channel ROC-AUC | channel PR-AUC | macro F1 |",
            "| --- | --- | --- | --- |",
        ]
        for name, a in result["ablations"].items():
            lines.append(
                f"| {name} | {_pm(a['mean']['roc_auc'], a['std']['roc_auc'])} "
                f"| {_pm(a['mean']['pr_auc'], a['std']['pr_auc'])} "
                f"| {_pm(a['mean']['macro_f1'], a['std']['macro_f1'])} |"
            )
    if result.get("dcgru_variants"):
        default = models["dcgru"]["fold_roc_auc"]
        lines += [
            "",
            "DCGRU variants (same folds and seeds; test ROC-AUC per fold, best epoch in brackets; "
            "the default is the run above):",
            "",
            "| variant | "
            + " | ".join(
                f"fold {f['fold']}" for f in next(iter(result["dcgru_variants"].values()))["folds"]
            )
            + " |",
            "| --- |" + " --- |" * len(next(iter(result["dcgru_variants"].values()))["folds"]),
        ]
        first = next(iter(result["dcgru_variants"].values()))["folds"]
        lines.append(
            f"| as run above ({result['config']['train']['epochs']} epochs, top_k 3) | "
            + " | ".join(_fmt(default[f["fold"]]) for f in first)
            + " |"
        )
        for name, v in result["dcgru_variants"].items():
            cells = [f"{_fmt(f['test_roc_auc'])} ({f['best_epoch']})" for f in v["folds"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Real data, original work, not comparable",
        "",
        "Figures the original work reported on the real HUP / EIIMD / CHUL cohorts (project SPEC). "
        "Different data, labels and difficulty: NOT comparable with the simulated figures above.",
        "",
        "| model (original work) | channel ROC-AUC | macro recall | macro precision | macro F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in REFERENCE:
        lines.append(
            f"| {name} | {_ref(name, 'roc_auc')} | {_ref(name, 'macro_recall')} "
            f"| {_ref(name, 'macro_precision')} | {_ref(name, 'macro_f1')} |"
        )
    t = result["wall_s"]
    ingest = result.get("ingest", {})
    skipped = (
        f" ({ingest['n_skipped']} recordings already in the store, skipped)"
        if ingest.get("n_skipped")
        else ""
    )
    lines += [
        "",
        f"Wall time: simulate {t['simulate']:.0f} s, ingest {t['ingest']:.0f} s{skipped}, train (all "
        f"models, all folds) {t['train']:.0f} s, evaluation {t['evaluate']:.0f} s; "
        f"{result['machine']['cpus']} CPU cores shared with other work (load average "
        f"{result['machine']['load_avg_start']:.1f} at the start). Command: `{result['command']}`.",
        "",
    ]
    return "\n".join(lines)
