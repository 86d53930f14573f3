"""The report's "compared with what" section: recording metadata, contacts dropped, EI timing.

- :func:`recordings_table`: every recording of a page (task, centre, original and stored rate,
  duration, contacts scored, seizures), from the results and, where given, the clip store.
- :func:`dropped_contacts`: contacts left out as bad and why: ``status=bad`` in the BIDS
  ``*_channels.tsv`` beside the recording (its ``status_description`` as the reason), and the
  store's ``warnings`` table (flat channels, meaningless EDF headers ...).
- :func:`onset_timing`: for ictal recordings of the store, each contact's Epileptogenicity Index
  and its detection time relative to the annotated onset (the EI's Page-Hinkley detection,
  :func:`models.baseline.epileptogenicity_index`), on the stored signal 60 s either side.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from models.baseline import epileptogenicity_index

logger = logging.getLogger(__name__)

#: Seconds of signal before and after an onset the EI timing reads.
EI_PRE_S = EI_POST_S = 60.0


def _esc(x: object) -> str:
    return html.escape(str(x))


def _num(v, fmt: str = "{:g}") -> str:
    return "n/a" if v is None or pd.isna(v) else fmt.format(float(v))


def _text(v) -> str:
    return "n/a" if v is None or (not isinstance(v, str) and pd.isna(v)) or v == "" else str(v)


def _float(v) -> float:
    return np.nan if v is None or pd.isna(v) else float(v)


def _stored(store, rid: str) -> pd.Series | None:
    if store is None or rid not in store.complete_ids():
        return None
    recs = store.recordings()
    return recs[recs["recording_id"].astype(str) == rid].iloc[0]


def recordings_table(rows: pd.DataFrame, store=None) -> str:
    """One line per recording of the page: task, centre, rates, duration, contacts, seizures."""
    from serving.report import _fmt_duration

    head = (
        "<tr><th>recording</th><th>task</th><th>centre</th><th>rate (file / stored)</th>"
        "<th>duration</th><th>contacts scored</th><th>seizures</th></tr>"
    )
    body = []
    for rid, r in rows.drop_duplicates("recording_id").set_index("recording_id").iterrows():
        s = _stored(store, str(rid))
        orig = r.get("sfreq") if s is None else s["orig_sfreq"]
        stored = "" if s is None else f" / {_num(s['sfreq'])}"
        dur = _float(r.get("duration_s") if s is None else s["duration_s"])
        n_sz = "n/a" if s is None else str(int(s["n_seizures"]))
        centre = r.get("centre") if s is None or pd.isna(s["centre"]) else s["centre"]
        body.append(
            f"<tr><td>{_esc(rid)}</td><td>{_esc(_text(r.get('task')))}</td>"
            f"<td>{_esc(_text(centre))}</td>"
            f"<td>{_num(orig)}{stored} Hz</td><td>{_fmt_duration(dur)}</td>"
            f"<td>{rows.loc[rows['recording_id'] == rid, 'channel'].nunique()}</td>"
            f"<td>{n_sz}</td></tr>"
        )
    return f"<table class='recordings'>{head}{''.join(body)}</table>"


def dropped_contacts(source_path: str | None, store=None, recording_id: str | None = None):
    """Contacts left out as bad: ``[(contact or None, why)]`` (None: about the recording)."""
    out: list[tuple[str | None, str]] = []
    if source_path:
        path = Path(source_path)
        stem = path.name.rsplit("_", 1)[0] if "_" in path.name else path.stem
        tsv = path.with_name(f"{stem}_channels.tsv")
        if tsv.is_file():
            try:
                ch = pd.read_csv(tsv, sep="\t", encoding="utf-8-sig", keep_default_na=False,
                                 dtype=str)  # fmt: skip
            except (OSError, ValueError, pd.errors.ParserError) as e:
                ch = pd.DataFrame()
                out.append((None, f"{tsv.name} unreadable ({e})"))
            if {"name", "status"} <= set(ch):
                desc = ch["status_description"] if "status_description" in ch else ""
                for name, status, d in zip(ch["name"], ch["status"], pd.Series(desc).reindex(
                        ch.index, fill_value=""), strict=True):  # fmt: skip
                    if status.strip().lower() == "bad":
                        why = d.strip() if d.strip() not in ("", "n/a") else "status bad"
                        out.append((name.strip(), f"{why} ({tsv.name})"))
    if store is not None and recording_id is not None:
        w = store.warnings()
        w = w[(w["recording_id"].astype(str) == recording_id) & (w["kind"] == "channels")]
        out += [(None, str(m)) for m in w["message"]]
    return out


def onset_timing(store, recording_id: str) -> list[pd.DataFrame]:
    """Per seizure of a stored recording: ``channel, ei, detection_s`` (s after the onset).

    Contacts the EI's detector did not flag have ``ei = 0`` and ``detection_s = NaN``.
    """
    from serving.explain import _onsets
    from serving.figures import read_segment

    out = []
    for onset in _onsets(store.clips([recording_id])):
        data, sfreq, t0, chans = read_segment(store, recording_id, onset - EI_PRE_S,
                                              onset + EI_POST_S)  # fmt: skip
        rel = min(max(onset - t0, 0.0), data.shape[1] / sfreq - 1.0 / sfreq)
        try:
            ei, det = epileptogenicity_index(data, sfreq, rel, return_detection=True)
        except ValueError as e:  # too little signal around the onset
            logger.warning("%s: no EI timing (%s)", recording_id, e)
            continue
        out.append(pd.DataFrame({"channel": chans, "ei": ei, "detection_s": det - rel}))
    return out


def timing_table(
    tables: list[pd.DataFrame], probs: pd.Series, *, top_n: int = 15, label: str = ""
) -> str:
    """The EI timing of the first seizure (others summarised), earliest detections first."""
    first = tables[0].assign(p=lambda d: d["channel"].map(probs))
    flagged = first[first["ei"] > 0].sort_values(["detection_s", "ei"], ascending=[True, False])
    rows = "".join(
        f"<tr><td>{_esc(r.channel)}</td><td>{r.detection_s:+.1f} s</td><td>{r.ei:.2f}</td>"
        f"<td>{_num(r.p, '{:.3f}')}</td></tr>"
        for r in flagged.head(top_n).itertuples()
    )
    more = f"; {len(tables) - 1} more seizure(s) in the recording" if len(tables) > 1 else ""
    return (
        f"<p class='note'>{label}Seizure-onset timing by the Epileptogenicity Index (first seizure): "
        f"{len(flagged)} of {len(first)} contacts detected{more}. Detection time relative to "
        "the annotated onset (negative: before it).</p>"
        "<table class='eitiming'><tr><th>contact</th><th>EI detection</th><th>EI</th>"
        f"<th>model probability</th></tr>{rows}</table>"
    )


def context_section(rows: pd.DataFrame, *, by: str, store=None, top_n: int = 15) -> str:
    """The whole section for one page (all models' rows of a recording or patient)."""
    parts = ["<h2>Compared with what</h2>"]
    if by == "patient":
        parts.append(recordings_table(rows, store))
    probs = rows.groupby("channel")["probability"].mean()
    for rid, r in rows.drop_duplicates("recording_id").set_index("recording_id").iterrows():
        rid = str(rid)
        src = r.get("source_path")
        src = None if src is None or pd.isna(src) else str(src)
        dropped = dropped_contacts(src, store, rid)
        label = f"<b>{_esc(rid)}</b>: " if by == "patient" else ""
        if dropped:
            items = "; ".join(f"{_esc(c)}: {_esc(w)}" if c else _esc(w) for c, w in dropped[:20])
            parts.append(f"<p class='note dropped'>{label}dropped as bad: {items}</p>")
        else:
            parts.append(f"<p class='note dropped'>{label}no contact dropped as bad (as far as "
                         "the sidecars and the store say).</p>")  # fmt: skip
        if str(r.get("task")) == "ictal" or _has_seizure(store, rid):
            if _stored(store, rid) is None:
                parts.append("<p class='note'>No EI timing: the recording is not in the clip "
                             "store given (soz report --store).</p>")  # fmt: skip
                continue
            tables = onset_timing(store, rid)
            if tables:
                parts.append(timing_table(tables, probs, top_n=top_n, label=label))
    return "".join(parts)


def _has_seizure(store, rid: str) -> bool:
    s = _stored(store, rid)
    return s is not None and int(s["n_seizures"]) > 0
