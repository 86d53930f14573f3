"""``summary.md``: every model of a run side by side, the classical baseline included.

The summary shows, per model, the test metrics as mean +- std over the cross-validation folds
(channel ROC-AUC, PR-AUC with the SOZ prevalence that is its chance level, patient-wise macro
recall / specificity / precision / F1, Brier score and its skill against the prevalence, of the
probabilities calibrated on each fold's validation patients), the same pooled over all test patients,
links to the plots, and, clearly apart, the reference figures of the original work on real data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ingest.fileio import write_text

logger = logging.getLogger(__name__)

__all__ = ["REFERENCE", "render_summary", "write_summary"]

#: Reference figures of the original work, on the real cohorts (test folds), from the SPEC.
#: ``(low, high)`` ranges; None where the work reports no figure.
REFERENCE: dict[str, dict[str, tuple[float, float] | None]] = {
    "sozformer": {
        "roc_auc": (0.75, 0.80),
        "macro_recall": (0.58, 0.60),
        "macro_precision": (0.19, 0.25),
        "macro_f1": (0.29, 0.32),
    },
    "dcgru": {"roc_auc": (0.64, 0.64), "macro_recall": (0.55, 0.55)},
    "svm": {
        "macro_recall": (0.74, 0.74),
        "macro_precision": (0.17, 0.17),
        "macro_f1": (0.28, 0.28),
    },
}

# (key in summarise_folds' mean/std, column header, higher is better)
_COLUMNS = (
    ("roc_auc", "channel ROC-AUC", True),
    ("pr_auc", "channel PR-AUC", True),
    ("macro_recall", "macro recall", True),
    ("macro_specificity", "macro specificity", True),
    ("macro_precision", "macro precision", True),
    ("macro_f1", "macro F1", True),
    ("brier", "Brier", False),
    ("bss", "Brier skill", True),
)


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{float(x):.{digits}f}"


def _pm(mean, std) -> str:
    if mean is None:
        return "n/a"
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def section(title: str, *prose: str) -> list[str]:
    """The lines that open a Markdown section: its ``##`` heading, then ``prose`` (one
    paragraph, one string a line) when given."""
    return ["", f"## {title}", "", *((*prose, "") if prose else ())]


def _inputs_section(inputs: Mapping[str, Mapping[str, Sequence[str]]]) -> list[str]:
    """Each neural model's clip features and training augmentation (``TrainConfig`` per model)."""
    lines = section(
        "Neural model inputs",
        "What each neural model's tokens held besides the clip's spectrum (relative to the",
        "recording's other contacts; serving computes the same from the checkpoint) and which",
        "site augmentations its training sequences had.",
    )
    rows = [
        [f"`{m}`", ", ".join(["spectrum", *v["clip_extras"]]), ", ".join(v["augment"]) or "none"]
        for m, v in inputs.items()
    ]
    return lines + _table(["model", "clip features", "training augmentation"], rows)


def _table(header, rows) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _check_result(name: str, res: Mapping) -> None:
    missing = [k for k in ("n_folds", "mean", "std", "pooled", "pooled_macro") if k not in res]
    if missing:
        raise ValueError(
            f"results[{name!r}] lacks {missing}; pass the dict trainer.metrics.summarise_folds "
            "returns for each model."
        )


def _best(results: Mapping[str, Mapping], key: str, higher: bool) -> float | None:
    values = [r["mean"].get(key) for r in results.values()]
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    return max(values) if higher else min(values)


def _plot_links(run_dir: Path, name: str, res: Mapping) -> list[tuple[str, str]]:
    """``(label, relative path)`` of a model's plots: ``res["plots"]``, else its PNG files."""
    if "plots" in res:
        items = [(str(k), Path(v)) for k, v in dict(res["plots"]).items()]
    else:
        folder = run_dir / name
        items = [(p.stem, p) for p in sorted(folder.rglob("*.png"))] if folder.is_dir() else []
    links = []
    for label, p in items:
        p = p if p.is_absolute() else run_dir / p
        rel = Path(os.path.relpath(p, run_dir)).as_posix()
        if not p.is_file():
            logger.warning("summary: plot %s of model %s does not exist", p, name)
        links.append((label, rel))
    return links


def _call_rules_section(results: Mapping[str, Mapping]) -> list[str]:
    """Both call rules side by side on all test patients (``pooled_calls``)."""
    lines = section(
        "Call rules",
        "The SOZ calls of the absolute Youden threshold and of the patient-relative rule (a",
        "contact called when its score exceeds its patient's mean by k std, k chosen on the",
        "validation patients; `soz train --call-rule`). The rule in use drives the tables above",
        "and `soz score`. Macro = per patient, then the mean.",
    )
    header = ["model", "rule in use"]
    for rule in ("youden", "relative"):
        header += [f"{rule}: calls", f"{rule}: macro precision", f"{rule}: macro recall"]
    rows = []
    for name, res in results.items():
        calls = res.get("pooled_calls") or {}
        used = {f.get("call_rule") for f in res.get("folds", []) if f.get("call_rule")}
        cells = [f"`{name}`", ", ".join(sorted(used)) or "youden"]
        for rule in ("youden", "relative"):
            c = calls.get(rule)
            if c is None:
                cells += ["n/a"] * 3
                continue
            cells += [f"{c['n_calls']} / {c['n_channels']}", _fmt(c["macro_precision"]),
                      _fmt(c["macro_recall"])]  # fmt: skip
        rows.append(cells)
    return lines + _table(header, rows)


def render_summary(
    results: Mapping[str, Mapping],
    *,
    run_dir: str | Path | None = None,
    title: str = "sozkit run",
    sites: Mapping[str, Mapping] | None = None,
    split: str = "patient",
    inputs: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> str:
    """The Markdown text of the summary (see :func:`write_summary`)."""
    if not results:
        raise ValueError("no model results to summarise; train at least one model.")
    for name, res in results.items():
        _check_result(name, res)
    run_dir = Path(run_dir) if run_dir is not None else None
    lines = [f"# {title}: summary", ""]
    lines += [
        "Test-fold metrics of every model. Channel ROC-AUC / PR-AUC rank the per-channel SOZ",
        "probabilities (a recording's mean over sequences, then the mean over a patient's",
        "recordings); the SOZ calls follow the run's call rule (see Call rules), chosen on each",
        "fold's validation patients. Macro metrics are computed per patient, then averaged. Cells are",
        "mean ± std over folds; PR-AUC's chance level is the SOZ prevalence. Brier is that of the",
        "probabilities **calibrated** on each fold's validation patients (isotonic / Platt on",
        "the raw score or on its standing among the patient's own contacts, or none, chosen",
        "leaving one validation patient out), then each patient's probabilities shifted on",
        "the logit scale to a mean of the validation patients' SOZ prevalence (prior matching;",
        "not with --calibration-prior none); lower is better. ROC-AUC is that of the raw",
        "scores (a relative calibration keeps each patient's ranking, not the pooled one; the",
        "pooled AUC of the calibrated probabilities is roc_auc_calibrated in metrics.json).",
        "Brier skill =",
        "1 - Brier / Brier of the constant prevalence: > 0 beats knowing the prevalence only.",
        "Bold: best model per column.",
        "",
        "## Cross-validation (mean ± std over folds)",
        "",
    ]
    header = ["model", "folds", *(h for _, h, _ in _COLUMNS)]
    header.insert(4, "SOZ prevalence")  # next to PR-AUC, its chance level
    best = {k: _best(results, k, hi) for k, _, hi in _COLUMNS}
    rows = []
    for name, res in results.items():
        mean, std = res["mean"], res["std"]
        cells = [f"`{name}`", str(res["n_folds"])]
        for key, _, _ in _COLUMNS:
            cell = _pm(mean.get(key), std.get(key))
            if best[key] is not None and mean.get(key) == best[key]:
                cell = f"**{cell}**"
            cells.append(cell)
        cells.insert(4, _fmt(mean.get("prevalence")))
        rows.append(cells)
    lines += _table(header, rows)
    if inputs:
        lines += _inputs_section(inputs)

    lines += section(
        "Pooled over all test patients",
        "Every test channel once, called with its own fold's threshold; macro metrics are",
        "mean ± std across patients (n = patients where the metric is defined).",
    )
    header = [
        "model",
        "channels (SOZ)",
        "ROC-AUC",
        "PR-AUC",
        "tn / fp / fn / tp",
        "recall",
        "precision",
        "macro recall",
        "macro precision",
        "macro F1",
        "Brier (raw)",
        "Brier skill",
        "patients",
    ]
    rows = []
    for name, res in results.items():
        p, m = res["pooled"], res["pooled_macro"]
        rows.append(
            [
                f"`{name}`",
                f"{p['n_channels']} ({p['n_positive']})",
                _fmt(p["roc_auc"]),
                _fmt(p["pr_auc"]),
                f"{p['tn']} / {p['fp']} / {p['fn']} / {p['tp']}",
                _fmt(p["recall"]),
                _fmt(p["precision"]),
                f"{_pm(m['recall']['mean'], m['recall']['std'])} (n={m['recall']['n']})",
                f"{_pm(m['precision']['mean'], m['precision']['std'])} (n={m['precision']['n']})",
                f"{_pm(m['f1']['mean'], m['f1']['std'])} (n={m['f1']['n']})",
                f"{_fmt(p.get('brier'))} ({_fmt(p.get('brier_raw'))})",
                _fmt(p.get("bss")),
                str(m["n_patients"]),
            ]
        )
    lines += _table(header, rows)

    if any("pooled_calls" in res for res in results.values()):
        lines += _call_rules_section(results)

    cohorts = sorted(
        {c for res in results.values() for c in res.get("pooled_roc_by_cohort", {}) if c != "all"}
    )
    if cohorts:
        lines += section(
            "Pooled channel ROC-AUC by cohort",
            "Test channels of each cohort (n/a: the cohort's test channels have one class).",
        )
        rows = []
        for name, res in results.items():
            curves = res.get("pooled_roc_by_cohort", {})
            rows.append(
                [f"`{name}`", *(_fmt(curves[c]["auc"]) if c in curves else "n/a" for c in cohorts)]
            )
        lines += _table(["model", *cohorts], rows)

    if sites:
        from trainer.sites import render_sites

        lines += render_sites(sites, split)

    lines += section(
        "Reference: the original work on real data (not this run)",
        "Figures reported by the original work on the real HUP / EIIMD / CHUL cohorts (test",
        "folds), as listed in the project SPEC. They are a yardstick for real-data runs only:",
        "numbers on a simulated cohort are not comparable to them. Recall / precision / F1 are",
        "patient-wise macro for SOZFormer; the SPEC does not say which for DCGRU and the SVM.",
    )
    header = [
        "model (original work)",
        "channel ROC-AUC",
        "macro recall",
        "macro precision",
        "macro F1",
    ]
    rows = []
    for name, ref in REFERENCE.items():
        cells = [name]
        for key in ("roc_auc", "macro_recall", "macro_precision", "macro_f1"):
            r = ref.get(key)
            if r is None:
                cells.append("not reported")
            else:
                cells.append(_fmt(r[0], 2) if r[0] == r[1] else f"{_fmt(r[0], 2)}-{_fmt(r[1], 2)}")
        rows.append(cells)
    lines += _table(header, rows)

    if run_dir is not None:
        sections = [(name, _plot_links(run_dir, name, res)) for name, res in results.items()]
        if any(links for _, links in sections):
            lines += section("Plots")
            for name, links in sections:
                if not links:
                    continue
                lines.append(f"- `{name}`: " + ", ".join(f"[{lab}]({rel})" for lab, rel in links))
    return "\n".join(lines) + "\n"


def write_summary(
    run_dir: Path,
    results: Mapping[str, Mapping],
    *,
    title: str = "sozkit run",
    sites: Mapping[str, Mapping] | None = None,
    split: str = "patient",
    inputs: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> Path:
    """Write ``RUN_DIR/summary.md`` comparing every model of the run side by side.

    Parameters
    ----------
    run_dir : Path
        The run folder; the summary is written at its top, links are relative to it.
    results : mapping of str to dict
        ``{model name: trainer.metrics.summarise_folds(...) result}``, in display order (the
        classical baseline included). Each result may carry ``"plots"``: ``{label: path}``
        (absolute or relative to ``run_dir``); without it the PNG files under
        ``run_dir / model name`` are linked.
    title : str
        Heading of the document.
    sites : mapping of str to dict, optional
        ``{model: trainer.sites.site_figures(...)}``: the section by centre and run kind.
    split : str
        The run's split (what a centre's figure means).
    inputs : mapping of str to mapping, optional
        ``{neural model: {"clip_extras": names, "augment": names}}``
        (:meth:`trainer.config.TrainConfig.extras_for` / ``augment_for``): a section saying what
        each neural model was fed.

    Returns
    -------
    path : Path
        ``run_dir / "summary.md"``.
    """
    run_dir = Path(run_dir)
    text = render_summary(
        results, run_dir=run_dir, title=title, sites=sites, split=split, inputs=inputs
    )
    path = run_dir / "summary.md"
    write_text(path, text)
    return path
