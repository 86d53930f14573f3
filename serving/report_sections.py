"""Sections of the clinician report beyond the shaft map: brain map, spread, signal, per task.

Each function returns an HTML fragment (and writes its PNG figures under ``figures/``); the page
composition in :mod:`serving.report` puts them together. Where the data a section needs is
absent, the section says why in one line instead of drawing.

- :func:`brain_section`: contacts on a glass brain from the recording's BIDS
  ``*_electrodes.tsv`` (found beside ``source_path``), clinical SOZ and resected contacts from its
  ``*_channels.tsv``; without coordinates, a line saying why (the shaft map stays).
- :func:`intervals_section`: each contact's spread across fold models and across models, calls
  that disagree flagged.
- :func:`explanation_section`: the contacts x time probability heatmap and the SEEG traces (from
  the clip store) of the top and clinical SOZ contacts around the onset or the windows that
  scored highest, the clips that drove each contact's score highlighted.
- :func:`task_table`: a patient's contacts, ictal and interictal recordings apart, then together.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.electrodes import electrodes_for_recording
from ingest.errors import name_list
from serving import figures
from serving.brainmap import plot_brain_map

logger = logging.getLogger(__name__)


def safe_name(key: str) -> str:
    """A file-name-safe version of a page or recording key."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-") or "unit"


def _esc(x: object) -> str:
    return html.escape(str(x))


def _img(path: Path, alt: str) -> str:
    return f"<img class='fig' alt='{_esc(alt)}' src='figures/{_esc(path.name)}'>"


def source_of(rows: pd.DataFrame) -> str | None:
    """The first known ``source_path`` of a unit's rows (None if none is known)."""
    if "source_path" not in rows:
        return None
    paths = rows["source_path"].dropna().astype(str)
    paths = paths[paths != ""]
    return str(paths.iloc[0]) if len(paths) else None


def clinical_marks(
    source_path: str | None, channels: Sequence[str]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Clinical SOZ and resected contacts from the BIDS ``*_channels.tsv`` beside the recording.

    ``status_description`` holding ``soz`` / ``resect`` (ds004100's and the simulator's
    convention). Returns ``(None, None)`` where there is no such file.
    """
    if not source_path:
        return None, None
    path = Path(source_path)
    stem = path.name.rsplit("_", 1)[0] if "_" in path.name else path.stem
    tsv = path.with_name(f"{stem}_channels.tsv")
    if not tsv.is_file():
        return None, None
    try:
        ch = pd.read_csv(tsv, sep="\t", encoding="utf-8-sig", keep_default_na=False, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        logger.warning("%s unreadable (%s): no resection marks", tsv, e)
        return None, None
    if "status_description" not in ch or "name" not in ch:
        return None, None
    desc = dict(zip(ch["name"].str.strip(), ch["status_description"].str.lower(), strict=True))
    soz = np.array(["soz" in desc.get(c, "") for c in channels])
    resected = np.array(["resect" in desc.get(c, "") for c in channels])
    return soz, resected


def brain_section(
    unit: pd.DataFrame, source_path: str | None, fig_path: Path, *, title: str
) -> str:
    """The glass-brain map of one model's contacts, or one line saying why there is none.

    Parameters
    ----------
    unit : DataFrame
        One model's rows of a recording or patient: ``channel``, ``probability``,
        ``threshold``, ``soz_label``.
    source_path : str or None
        The recording's signal file in its BIDS tree (its sidecars hold the coordinates).
    fig_path : Path
        PNG to write.
    title : str
    """
    channels = list(unit["channel"].astype(str))
    if source_path is None:
        why = "the results do not say where the recording's files are (no source_path)"
        return f"<p class='note nobrain'>No brain map: {_esc(why)}; contacts by shaft below.</p>"
    positions, elec, notes = electrodes_for_recording(source_path, channels)
    if positions is None or not np.isfinite(positions).all(axis=1).any():
        why = notes[0] if notes else "no contact has a coordinate"
        return f"<p class='note nobrain'>No brain map: {_esc(why)}; contacts by shaft below.</p>"
    soz, resected = clinical_marks(source_path, channels)
    if soz is None:
        labels = unit["soz_label"].astype("boolean")
        soz = labels.fillna(False).to_numpy(bool) if labels.notna().any() else None
    plot_brain_map(
        positions, unit["probability"].to_numpy(float), fig_path,
        threshold=float(unit["threshold"].iloc[0]), soz=soz, resected=resected, title=title,
    )  # fmt: skip
    space = f"space {elec.space}, {elec.units}"
    if not elec.in_template_space:
        space += " (not a template space: the MNI outline is only a guide)"
    caption = "; ".join([space, *notes[:3]])
    return _img(fig_path, f"contacts on a glass brain ({title})") + (
        f"<p class='note'>Brain map: {_esc(caption)}. Glass brain: each contact projected "
        "through the brain in three views (sagittal, coronal, axial).</p>"
    )


def intervals_section(
    panels: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, float]]],
    channels: Sequence[str],
    fig_path: Path,
    *,
    clinical: Sequence[str] = (),
    top_n: int = 15,
    title: str = "",
) -> str:
    """Each contact's spread across fold models / models, disagreeing calls listed."""
    usable = {k: v for k, v in panels.items() if len(v[0]) >= 2}
    if not usable:
        return (
            "<p class='note'>No spread shown: a single estimate per contact (score with "
            "several models, or explain with the fold models, to see intervals).</p>"
        )
    fig, tables = figures.intervals_figure(
        usable, channels, top_n=top_n, clinical=clinical, title=title
    )
    figures.save(fig, fig_path)
    lines = []
    for name, table in tables.items():
        dis = table.loc[table["disagree"], "channel"].astype(str).tolist()
        what = name_list(dis, 15) if dis else "none"
        lines.append(f"<li>{_esc(name)} ({len(usable[name][0])} estimates): "
                     f"calls disagree on <b>{_esc(what)}</b></li>")  # fmt: skip
    return (
        _img(fig_path, f"spread of each contact ({title})")
        + f"<ul class='note'>{''.join(lines)}</ul>"
    )


def explanation_section(
    expl,
    unit: pd.DataFrame,
    fig_dir: Path,
    name: str,
    *,
    store=None,
    task: str | None = None,
    top_n: int = 3,
) -> str:
    """Heatmap of a recording's probability over time, and its highlighted traces.

    Parameters
    ----------
    expl : serving.explain.RecordingExplanation
    unit : DataFrame
        The model's rows of this recording (``channel``, ``probability``, ``soz_label``).
    fig_dir : Path
        Folder of the figures.
    name : str
        File-name prefix.
    store : ingest.store.ClipStore or None
        Where the traces are read; None: no traces (said).
    task : str or None
        ``"ictal"`` / ``"interictal"`` (wording only).
    top_n : int
        Top contacts shown beside the clinical SOZ contacts.
    """
    labels = unit.set_index("channel")["soz_label"].astype("boolean")
    clinical = [c for c in expl.channels if c in labels.index and bool(labels.fillna(False).get(c))]
    mean = expl.window_probs.mean(axis=0)  # (W, C)
    heat = figures.probability_heatmap_figure(
        mean, expl.window_start_s, expl.window_s, expl.channels, onsets_s=expl.onsets_s,
        clinical=clinical, title=f"{expl.recording_id}: SOZ probability over the recording",
    )  # fmt: skip
    heat_png = figures.save(heat, fig_dir / f"{name}__heatmap.png")
    parts = [_img(heat_png, f"probability over time, {expl.recording_id}")]
    order = np.argsort(-mean.mean(axis=0), kind="stable")
    top = [expl.channels[i] for i in order[:top_n]]
    picks = list(dict.fromkeys([*top, *clinical[:4]]))
    if store is None or expl.recording_id not in store.complete_ids():
        parts.append(
            "<p class='note'>No traces: the recording is not in the clip store given to the "
            "report (soz report --store STORE).</p>"
        )
        return "".join(parts)
    if not len(expl.explained):
        return "".join(parts)
    first, last = int(expl.explained.min()), int(expl.explained.max())
    start = float(expl.window_start_s[first])
    stop = float(expl.window_start_s[last] + expl.window_s)
    if expl.onsets_s:  # around the onset: 20 s before to the end of the explained window
        start = max(start, expl.onsets_s[0] - 20.0)
    data, sfreq, t0, chans = figures.read_segment(store, expl.recording_id, start, stop)
    windows = {c: expl.highlighted(c) for c in picks}
    fig = figures.traces_figure(
        data, sfreq, chans, picks, t0=t0, windows=windows,
        onset_s=expl.onsets_s[0] if expl.onsets_s else None, clinical=clinical,
        title=f"{expl.recording_id}: top contacts and clinical SOZ, shaded where occluding a "
        "clip lowers the contact's probability",
    )  # fmt: skip
    traces_png = figures.save(fig, fig_dir / f"{name}__traces.png")
    where = "around the seizure onset" if expl.onsets_s else "in the highest-scoring window(s)"
    parts.append(_img(traces_png, f"SEEG traces {where}"))
    parts.append(
        f"<p class='note'>Traces {where} ({_esc(task or 'recording')}), referential and bipolar "
        "along each shaft. Shading: clips whose occlusion lowers that contact's probability "
        "(darker = more; mean over the fold models). A reading aid, not a proof.</p>"
    )
    return "".join(parts)


def task_table(rows: pd.DataFrame, *, top_n: int = 10) -> str:
    """One model's patient rows: each top contact's mean probability by task, then overall."""
    if "task" not in rows or rows["task"].isna().all():
        return ""
    task = rows["task"].fillna("unknown").astype(str)
    per = rows.assign(task=task).groupby(["channel", "task"])["probability"].mean().unstack()
    overall = rows.groupby("channel")["probability"].mean().rename("all recordings")
    n_rec = rows.groupby(task)["recording_id"].nunique()
    table = per.join(overall).sort_values("all recordings", ascending=False).head(top_n)
    cols = [c for c in ("ictal", "interictal") if c in table] + [
        c for c in table if c not in ("ictal", "interictal", "all recordings")
    ]
    head = (
        "".join(f"<th>{_esc(c)} ({int(n_rec.get(c, 0))} rec.)</th>" for c in cols)
        + "<th>all recordings</th>"
    )
    body = "".join(
        f"<tr><td>{_esc(ch)}</td>"
        + "".join(
            f"<td>{'n/a' if pd.isna(r[c]) else f'{r[c]:.3f}'}</td>"
            for c in [*cols, "all recordings"]
        )
        + "</tr>"
        for ch, r in table.iterrows()
    )
    return f"<table class='bytask'><tr><th>contact</th>{head}</tr>{body}</table>"


def model_extras(
    key: str,
    name: str,
    model: str,
    mrows: pd.DataFrame,
    unit: pd.DataFrame,
    fig_dir: Path,
    source: str | None,
    *,
    by: str,
    store,
    explanations: Mapping,
    top_n: int,
) -> dict[str, str]:
    """One model's sections beyond the shaft map (see :mod:`serving.report_sections`)."""
    stem = f"{name}__{model}"
    brain = brain_section(unit, source, fig_dir / f"{stem}__brain.png", title=f"{key}: {model}")
    tasks = ""
    if by == "patient" and mrows["recording_id"].nunique() > 1:
        tasks = (
            "<h3>By recording type</h3><p class='note'>Mean probability over the patient's "
            "ictal and interictal recordings apart, then over all of them.</p>"
            + task_table(mrows, top_n=top_n)
        )
    order = {"ictal": 0, "interictal": 1}
    recs = (
        mrows.drop_duplicates("recording_id")
        .assign(_o=lambda d: d["task"].map(order).fillna(2))
        .sort_values(["_o", "recording_id"])
    )
    folds, signal = "", []
    for _, r in recs.iterrows():
        rid = str(r["recording_id"])
        expl = explanations.get((rid, model))
        if expl is None:
            continue
        rec_rows = mrows[mrows["recording_id"] == rid]
        task = None if pd.isna(r["task"]) else str(r["task"])
        signal.append(
            f"<h3>{html.escape(rid)} ({html.escape(task or 'n/a')})</h3>"
            + explanation_section(
                expl, rec_rows, fig_dir, f"{safe_name(rid)}__{model}", store=store, task=task
            )
        )
        if not folds and len(expl.folds) > 1:
            clinical = rec_rows.loc[
                rec_rows["soz_label"].astype("boolean").fillna(False), "channel"
            ]
            folds = "<h3>Spread across fold models</h3>" + intervals_section(
                {"across fold models": (expl.fold_probabilities, expl.fold_threshold_map)},
                list(expl.channels), fig_dir / f"{stem}__folds.png",
                clinical=list(clinical.astype(str)), title=f"{rid}: {model}",
            )  # fmt: skip
    if signal:
        signal.insert(0, "<h3>The signal behind the calls</h3>")
    elif by == "recording" or len(recs) == 1:
        signal.append(
            "<p class='note'>No per-window view: explain the recording "
            "(serving.explain) to see its probability over time and the traces behind it.</p>"
        )
    return {"brain": brain, "tasks": tasks, "folds": folds, "signal": "".join(signal)}


def across_models(
    key: str, name: str, across: dict, thresholds: dict, rows: pd.DataFrame, fig_dir: Path
) -> str:
    """The spread of each contact across the models scored, calls that disagree flagged."""
    if len(across) < 2:
        return ""
    table = pd.DataFrame(across).dropna()  # contacts every model scored
    probs = {m: table[m].to_numpy(float) for m in table}
    labels = rows.groupby("channel")["soz_label"].max().astype("boolean")
    clinical = [c for c in table.index if bool(labels.fillna(False).get(c, False))]
    return "<h2>Across models</h2>" + intervals_section(
        {"across models": (probs, thresholds)}, list(table.index.astype(str)),
        fig_dir / f"{name}__models.png", clinical=clinical, title=f"{key}: models side by side",
    )  # fmt: skip
