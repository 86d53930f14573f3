"""Clinician report: one HTML page with PNG figures per recording (or per patient).

The page is meant to be looked at, not read: every electrode shaft is a row of contacts coloured
by their SOZ probability (colour bar with the decision threshold marked), contacts the model
calls SOZ are drawn with a heavy black edge, and where clinical labels exist the clinically
marked SOZ contacts are outlined by a blue ring beside them, so agreement and disagreement show
at a glance. Below: the top contacts as a bar chart and a table, and the recording's metadata.

Input is a results table (columns :data:`serving.results.RESULT_COLUMNS`, as ``soz score``
writes) or a training run directory, whose test-fold predictions are turned into the same table
(:func:`serving.report_results.load_results`). Figures use matplotlib's Agg backend (no display
needed).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ingest.errors import ConfigError, SozkitError  # noqa: E402
from ingest.fileio import write_text  # noqa: E402
from ingest.recording import shaft_of  # noqa: E402
from serving import report_context  # noqa: E402
from serving import report_sections as sections_mod  # noqa: E402
from serving.figures import CLINICAL_COLOUR, CMAP, contact_number, save  # noqa: E402
from serving.report_results import complete_results  # noqa: E402
from serving.report_sections import safe_name as _safe_name  # noqa: E402

logger = logging.getLogger(__name__)


def _shaft_layout(channels: Sequence[str]) -> tuple[list[str], list[tuple[int, float]]]:
    """Rows (shafts, sorted) and the (row, x) position of each channel."""
    shafts = sorted({shaft_of(c) for c in channels})
    row_of = {s: i for i, s in enumerate(shafts)}
    seen: dict[str, int] = {}
    pos = []
    for ch in channels:
        s = shaft_of(ch)
        num = contact_number(ch)
        seen[s] = seen.get(s, 0) + 1
        pos.append((row_of[s], float(num if num is not None else seen[s])))
    return shafts, pos


def plot_shaft_map(unit: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> Path:
    """Contacts by electrode shaft, coloured by SOZ probability.

    Parameters
    ----------
    unit : DataFrame
        One model's rows of one recording (or patient): ``channel``, ``probability``,
        ``threshold``, ``soz_call``, ``soz_label`` (nullable).
    path : path-like
        PNG to write.
    title : str
        Figure title.

    Returns
    -------
    Path
        The PNG.
    """
    channels = list(unit["channel"])
    probs = unit["probability"].to_numpy(dtype=float)
    calls = unit["soz_call"].to_numpy(dtype=bool)
    labels = unit["soz_label"].astype("boolean")
    labelled = bool(labels.notna().any())
    clinical = labels.fillna(False).to_numpy(dtype=bool)
    threshold = float(unit["threshold"].iloc[0])
    shafts, pos = _shaft_layout(channels)
    rows = np.array([p[0] for p in pos])
    xs = np.array([p[1] for p in pos])
    width = max(6.0, 2.2 + 0.42 * (xs.max() if len(xs) else 1))
    height = max(2.4, 1.3 + 0.5 * len(shafts))
    fig = Figure(figsize=(min(width, 18.0), min(height, 30.0)), dpi=110)
    ax = fig.subplots()
    norm = Normalize(0.0, 1.0)
    cmap = plt.get_cmap(CMAP)
    for r in range(len(shafts)):
        on_row = rows == r
        ax.plot(xs[on_row], rows[on_row], color="0.75", lw=3, zorder=1)
    if labelled:
        ax.scatter(
            xs[clinical], rows[clinical], s=560, facecolors="none",
            edgecolors=CLINICAL_COLOUR, linewidths=2.5, zorder=2,
        )  # fmt: skip
    ax.scatter(
        xs, rows, s=300, c=probs, cmap=cmap, norm=norm, zorder=3,
        edgecolors=np.where(calls, "black", "0.55"), linewidths=np.where(calls, 2.2, 0.6),
    )  # fmt: skip
    for x, r, ch, p in zip(xs, rows, channels, probs, strict=True):
        num = contact_number(ch)
        ax.text(
            x, r, str(num) if num is not None else ch[:3], ha="center", va="center",
            fontsize=6.5, color="white" if p > 0.6 else "black", zorder=4,
            in_layout=False,  # inside the axes: tight_layout need not measure 128 labels
        )  # fmt: skip
    ax.set_yticks(range(len(shafts)), shafts)
    ax.set_ylim(len(shafts) - 0.5, -0.5)
    ax.set_xlim(0.2, (xs.max() if len(xs) else 1) + 0.8)
    ax.set_xlabel("contact number")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.12)
    cbar.ax.set_title("SOZ\nprobability", fontsize=8)
    cbar.ax.axhline(threshold, color="black", lw=2)
    cbar.ax.text(-0.15, threshold, f"thr. {threshold:.3f}", va="center", ha="right",
                 fontsize=7, transform=cbar.ax.get_yaxis_transform())  # fmt: skip
    handles = [
        Line2D([], [], marker="o", ls="", mfc="white", mec="black", mew=2.2, ms=10,
               label="model calls SOZ (p >= threshold)"),
    ]  # fmt: skip
    if labelled:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                mfc="none",
                mec=CLINICAL_COLOUR,
                mew=2.5,
                ms=14,
                label="clinical SOZ",
            )  # fmt: skip
        )
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout(rect=(0.0, 0.4 / fig.get_figheight(), 1.0, 1.0))
    return save(fig, path)


def plot_top_contacts(
    unit: pd.DataFrame, path: str | os.PathLike, *, top_n: int = 15, title: str = ""
) -> Path:
    """Horizontal bars of the ``top_n`` most likely SOZ contacts, threshold as a dashed line.

    Parameters
    ----------
    unit, path, title
        As in :func:`plot_shaft_map` (returns the PNG's path, too).
    top_n : int
        Contacts shown.
    """
    if top_n < 1:
        raise ConfigError(f"{top_n=} must be >= 1 (--top).")
    top = unit.sort_values("probability", ascending=False, kind="stable").head(top_n)
    threshold = float(unit["threshold"].iloc[0])
    fig = Figure(figsize=(6.0, 0.8 + 0.28 * len(top)), dpi=110)
    ax = fig.subplots()
    cmap = plt.get_cmap(CMAP)
    y = np.arange(len(top))
    probs = top["probability"].to_numpy(dtype=float)
    ax.barh(y, probs, color=cmap(probs), edgecolor="0.3", lw=0.5)
    labels = top["soz_label"].astype("boolean")
    names = [
        f"{ch}  (clinical SOZ)" if lab is True else ch
        for ch, lab in zip(top["channel"], labels.tolist(), strict=True)
    ]
    ax.set_yticks(y, names, fontsize=8)
    for tick, lab in zip(ax.get_yticklabels(), labels.tolist(), strict=True):
        if lab is True:
            tick.set_color(CLINICAL_COLOUR)
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.axvline(threshold, color="black", ls="--", lw=1.2)
    ax.text(threshold, -0.8, f"threshold {threshold:.3f}", fontsize=7, ha="center")
    ax.set_xlim(0, 1)
    ax.set_xlabel("SOZ probability")
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save(fig, path)


def _units(
    results: pd.DataFrame, by: Literal["recording", "patient"], select: str | None
) -> dict[str, pd.DataFrame]:
    """Rows per report page: recording id or ``cohort/subject`` -> rows (all models)."""
    if by == "recording":
        key = results["recording_id"].astype(str)
    else:
        cohort = results["cohort"].fillna("").astype(str)
        key = np.where(cohort != "", cohort + "/", "") + results["subject"].astype(str)
        key = pd.Series(key, index=results.index)
    if select is not None:
        hit = (key == select) | (results["subject"].astype(str) == select)
        if not hit.any():
            known = ", ".join(sorted(key.unique())[:10])
            raise SozkitError(f"no {by} {select!r} in the results; known {by}s include: {known}.")
        results, key = results[hit], key[hit]
    return {k: results[key == k] for k in sorted(key.unique())}


def select_rows(
    results: pd.DataFrame, by: Literal["recording", "patient"], select: str | None
) -> pd.DataFrame:
    """The rows of the page(s) ``write_report(by=by, select=select)`` writes."""
    if select is None:
        return results
    return pd.concat(list(_units(complete_results(results), by, select).values()))


def _patient_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Average a patient's recordings per model and contact; a contact is labelled SOZ if any."""
    agg = rows.groupby(["model", "channel"], sort=False).agg(
        probability=("probability", "mean"),
        threshold=("threshold", "mean"),
        soz_label=("soz_label", lambda s: s.max() if s.notna().any() else pd.NA),
        shaft=("shaft", "first"),
        n_recordings=("recording_id", "nunique"),
    )
    agg = agg.reset_index()
    agg["soz_call"] = agg["probability"] >= agg["threshold"]
    agg["soz_label"] = agg["soz_label"].astype("boolean")
    return agg


def _fmt_duration(seconds: float) -> str:
    if not np.isfinite(seconds) or seconds <= 0:
        return "n/a"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _agreement(unit: pd.DataFrame) -> str:
    labels = unit["soz_label"].astype("boolean")
    if not labels.notna().any():
        return "no clinical labels"
    lab = labels.fillna(False).to_numpy(dtype=bool)
    call = unit["soz_call"].to_numpy(dtype=bool)
    tp = int((lab & call).sum())
    return (
        f"{tp} of {int(lab.sum())} clinical SOZ contacts called; "
        f"{int(call.sum()) - tp} of {int(call.sum())} calls outside the clinical SOZ"
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f4f4f4}
.meta td:first-child{font-weight:600;background:#fafafa}
.call{font-weight:700} .clin{color:#1f6fd1;font-weight:700}
.fig{max-width:100%;border:1px solid #eee;margin:6px 0}
.note{color:#666;font-size:12px}
.summary{font-size:15px;background:#fff8e6;border-left:4px solid #f0a500;padding:6px 10px}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _meta_table(rows: pd.DataFrame, by: str) -> str:
    first = rows.iloc[0]

    def val(col: str) -> str:
        v = first.get(col)
        return "n/a" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    items = [("subject", val("subject")), ("cohort", val("cohort")), ("centre", val("centre"))]
    if by == "recording":
        items += [
            ("recording", val("recording_id")),
            ("session / task / run", f"{val('session')} / {val('task')} / {val('run')}"),
            ("duration", _fmt_duration(float(first.get("duration_s") or np.nan))),
            ("sampling rate", f"{val('sfreq')} Hz"),
            ("contacts scored", str(rows["channel"].nunique())),
            ("source file", val("source_path")),
        ]
    else:
        recs = sorted(rows["recording_id"].astype(str).unique())
        items += [("recordings", f"{len(recs)}: " + ", ".join(recs))]
        items += [("contacts scored", str(rows["channel"].nunique()))]
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in items
    )
    return f"<table class='meta'>{cells}</table>"


def _top_table(unit: pd.DataFrame, top_n: int) -> str:
    top = unit.sort_values("probability", ascending=False, kind="stable").head(top_n)
    methods = unit["calibration"].dropna().astype(str).unique() if "calibration" in unit else []
    methods = [m for m in methods if m and m != "<NA>"]
    prob = "probability"
    if methods:  # the run's calibration (trainer.calibration), fitted on validation patients
        prob = f"probability (calibrated: {html.escape(', '.join(methods))})"
    raw = bool(methods) and "p_raw" in unit
    head = f"<tr><th>rank</th><th>contact</th><th>shaft</th><th>{prob}</th>"
    head += "<th>raw</th>" if raw else ""
    head += "<th>model call</th><th>clinical SOZ</th></tr>"
    body = []
    for rank, (_, r) in enumerate(top.iterrows(), start=1):
        lab = r["soz_label"]
        lab_txt = "n/a" if pd.isna(lab) else ("yes" if bool(lab) else "no")
        body.append(
            f"<tr><td>{rank}</td><td class='{'call' if r['soz_call'] else ''}'>"
            f"{html.escape(str(r['channel']))}</td><td>{html.escape(str(r['shaft']))}</td>"
            f"<td>{float(r['probability']):.3f}</td>"
            + (f"<td>{float(r['p_raw']):.3f}</td>" if raw else "")
            + f"<td>{'SOZ' if r['soz_call'] else '-'}</td>"
            f"<td class='{'clin' if lab_txt == 'yes' else ''}'>{lab_txt}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def write_report(
    results: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    by: Literal["recording", "patient"] = "recording",
    select: str | None = None,
    top_n: int = 10,
    store=None,
    explanations: Mapping[tuple[str, str], object] | None = None,
    pdf: bool = False,
) -> Path:
    """Write one HTML page (with PNG figures) per recording or patient, and an index page.

    Parameters
    ----------
    results : DataFrame
        Results table (:func:`serving.report_results.load_results`).
    out_dir : path-like
        Output folder (created).
    by : {"recording", "patient"}
        One page per recording, or per patient (probabilities averaged over the patient's
        recordings; a contact is clinical SOZ if any recording marks it).
    select : str | None
        Only this recording id (``by="recording"``) or patient (``cohort/subject`` or
        ``subject``, ``by="patient"``).
    top_n : int
        Contacts listed in the top-contacts chart and table.
    store : ingest.store.ClipStore or None
        Where the SEEG traces behind the calls are read (recordings of the store only).
    explanations : mapping (recording_id, model) -> RecordingExplanation, or None
        Per-window probabilities per fold model and attributions
        (:func:`serving.explain.explain_stored`): the heatmap, fold intervals and traces.
    pdf : bool
        Also print each page to PDF (headless Chromium, :func:`serving.pdf.print_pdf`).

    Every page also shows, where the data exist: the contacts on a glass brain (BIDS
    ``*_electrodes.tsv`` beside ``source_path``; else a line saying why), each contact's spread
    across models (and fold models), and per patient the contacts by task (ictal, interictal,
    all) (:mod:`serving.report_sections`).

    Returns
    -------
    Path
        ``out_dir/index.html``.
    """
    if by not in ("recording", "patient"):
        raise ConfigError(f"{by=} must be 'recording' or 'patient'.")
    if top_n < 1:
        raise ConfigError(f"{top_n=} must be >= 1 (--top).")
    if results.empty:
        raise SozkitError("the results table is empty: nothing to report.")
    results = complete_results(results)
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    links = []
    for key, rows in _units(results, by, select).items():
        name = _safe_name(key)
        sections = []
        source = sections_mod.source_of(rows)
        across: dict[str, pd.Series] = {}
        across_thr: dict[str, float] = {}
        for model, mrows in rows.groupby("model", sort=True):
            unit = _patient_rows(mrows) if by == "patient" else mrows
            extra = sections_mod.model_extras(
                key, name, str(model), mrows, unit, out / "figures", source, by=by,
                store=store, explanations=explanations or {}, top_n=top_n,
            )  # fmt: skip
            per_contact = unit.groupby("channel", sort=False)["probability"].mean()
            across[str(model)] = per_contact
            across_thr[str(model)] = float(unit["threshold"].iloc[0])
            fig_map = plot_shaft_map(
                unit, out / "figures" / f"{name}__{model}__shafts.png",
                title=f"{key}: {model}, contacts by electrode shaft",
            )  # fmt: skip
            fig_top = plot_top_contacts(
                unit, out / "figures" / f"{name}__{model}__top.png", top_n=top_n,
                title=f"top {min(top_n, len(unit))} contacts ({model})",
            )  # fmt: skip
            folds = mrows["folds"].dropna().astype(str).unique()
            fold_txt = ", ".join(folds) if len(folds) else "n/a"
            n_calls = int(unit["soz_call"].sum())
            top3 = ", ".join(
                unit.sort_values("probability", ascending=False, kind="stable")["channel"]
                .head(3)
                .astype(str)
            )
            sections.append(
                f"<h2>{html.escape(str(model))}</h2>"
                f"<p class='summary'><b>{n_calls}</b> of {len(unit)} contacts called SOZ at "
                f"threshold {float(unit['threshold'].iloc[0]):.3f}. Most likely: "
                f"<b>{html.escape(top3)}</b>. {html.escape(_agreement(unit))}.</p>"
                f"{extra['brain']}"
                f"<img class='fig' alt='contacts of {html.escape(key)} by shaft' "
                f"src='figures/{fig_map.name}'>"
                f"<img class='fig' alt='top contacts' src='figures/{fig_top.name}'>"
                f"{_top_table(unit, top_n)}{extra['tasks']}{extra['folds']}{extra['signal']}"
                f"<p class='note'>model {html.escape(str(model))}, fold(s) "
                f"{html.escape(fold_txt)}</p>"
            )
        sections.append(
            sections_mod.across_models(key, name, across, across_thr, rows, out / "figures")
        )
        sections.append(report_context.context_section(rows, by=by, store=store, top_n=top_n))
        title = f"SOZ report: {key}"
        body = (
            f"<h1>{html.escape(title)}</h1>"
            "<p class='note'>Per-contact seizure-onset-zone probability from sozkit. A decision "
            "aid, not a diagnosis: read with the clinical and imaging findings.</p>"
            f"{_meta_table(rows, by)}{''.join(sections)}"
        )
        page = out / f"{name}.html"
        write_text(page, _page(title, body))
        if pdf:
            from serving.pdf import print_pdf

            print_pdf(page)
        links.append((key, page.name, rows["model"].nunique()))
    items = "".join(
        f"<li><a href='{html.escape(p)}'>{html.escape(k)}</a> ({n} model(s))</li>"
        for k, p, n in links
    )
    index = out / "index.html"
    write_text(
        index, _page("SOZ reports", f"<h1>SOZ reports ({len(links)} {by}s)</h1><ul>{items}</ul>")
    )
    logger.info("wrote %d report page(s) to %s", len(links), out)
    return index
