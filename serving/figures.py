"""Report figures behind each call: SEEG traces, probability over time, spread across models.

- :func:`plot_traces`: the signal of chosen contacts (the top calls and the clinical SOZ) around
  the seizure onset or the highest-scoring windows, referential and in the clinicians' bipolar
  montage along each shaft (:func:`bipolar_pairs`: neighbouring contacts of one shaft), with given
  time windows highlighted on each contact's own trace (shade = weight, e.g. an attribution).
- :func:`plot_probability_heatmap`: contacts x time, each contact's SOZ probability per scored
  window over the whole recording, seizure onsets marked.
- :func:`contact_intervals` + :func:`plot_intervals`: each contact's spread across fold models and
  across models (SOZFormer, DCGRU, SVM, baseline), contacts where the calls disagree flagged.
- :func:`read_segment`: a stretch of a recording from the clip store, as one continuous array.

Each ``*_figure`` function returns the matplotlib figure (tests check what it draws); each
``plot_*`` writes it to a PNG. Agg backend: no display needed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ingest.recording import shaft_of  # noqa: E402

logger = logging.getLogger(__name__)

CMAP = "YlOrRd"
CLINICAL_COLOUR = "#1f6fd1"
HIGHLIGHT_COLOUR = "#e4572e"
ONSET_COLOUR = "#7b2cbf"
_NUM = re.compile(r"(\d+)$")


def contact_number(name: str) -> int | None:
    """Trailing contact number of a contact name (``"LA12"`` -> 12), ``None`` without one."""
    m = _NUM.search(name.strip())
    return int(m.group(1)) if m else None


def bipolar_pairs(channels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Bipolar derivations along each shaft: neighbouring contact numbers of one shaft.

    ``LA1, LA2, LA3, LB1`` gives ``LA1-LA2``, ``LA2-LA3`` (``LB1`` has no neighbour). Contacts
    dropped as bad leave a gap: ``LA1, LA3`` is not a pair (not neighbours on the shaft).

    Parameters
    ----------
    channels : sequence of str
        Contact names (any order).

    Returns
    -------
    list of (i, j, name)
        Indices into ``channels`` of the two contacts (``x[i] - x[j]``) and ``"LA1-LA2"``.
    """
    by_shaft: dict[str, dict[int, int]] = {}
    for i, ch in enumerate(channels):
        num = contact_number(ch)
        if num is not None:
            by_shaft.setdefault(shaft_of(ch), {})[num] = i
    pairs = []
    for shaft in by_shaft:
        nums = by_shaft[shaft]
        for n in sorted(nums):
            if n + 1 in nums:
                i, j = nums[n], nums[n + 1]
                pairs.append((i, j, f"{channels[i]}-{channels[j]}"))
    return pairs


def read_segment(
    store, recording_id: str, start_s: float, stop_s: float
) -> tuple[np.ndarray, float, float, list[str]]:
    """A continuous stretch of a recording from the clip store (unscaled microvolts).

    Clips are contiguous (clip ``k`` covers ``[k * clip_s, (k + 1) * clip_s)``), so the clips
    overlapping ``[start_s, stop_s)`` joined end to end are the filtered signal.

    Parameters
    ----------
    store : ingest.store.ClipStore
    recording_id : str
    start_s, stop_s : float
        Seconds from the recording start (clamped to the stored clips).

    Returns
    -------
    data : ndarray, shape (n_chans, n_times), float32
        Microvolts (the store's unscaled values).
    sfreq : float
    t0 : float
        Time of the first sample, seconds from the recording start.
    channels : list of str
        Stored channel names, in the array's order.
    """
    clip_s = store.ingest_config.clip_s
    n_clips = int(store.array(recording_id).shape[0])
    a = int(np.clip(np.floor(start_s / clip_s), 0, max(n_clips - 1, 0)))
    b = int(np.clip(np.ceil(stop_s / clip_s), a + 1, n_clips))
    clips = store.read_clips(recording_id, a, b, scaled=False)  # (n, C, T)
    data = np.transpose(clips, (1, 0, 2)).reshape(clips.shape[1], -1)
    chans = store.channels([recording_id]).sort_values("channel_index")["name"].astype(str)
    return data, float(store.sfreq), a * clip_s, list(chans)


def traces_figure(
    data: np.ndarray,
    sfreq: float,
    channels: Sequence[str],
    picks: Sequence[str],
    *,
    t0: float = 0.0,
    windows: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    onset_s: float | None = None,
    clinical: Sequence[str] = (),
    title: str = "",
) -> Figure:
    """Referential and bipolar traces of ``picks``, windows highlighted on each contact's trace.

    Parameters
    ----------
    data : ndarray, shape (n_chans, n_times)
        Signal of every contact in ``channels`` (microvolts), first sample at ``t0``.
    sfreq : float
        Sampling rate of ``data``.
    channels : sequence of str
        Names of the rows of ``data`` (the bipolar neighbours are taken from them).
    picks : sequence of str
        Contacts to show (top calls, clinical SOZ), in display order.
    t0 : float
        Seconds from the recording start of ``data[:, 0]``.
    windows : mapping contact -> list of (start_s, stop_s, weight), or None
        Time windows to highlight on that contact's traces; ``weight`` in [0, 1] sets the shade
        (1: the window that drove the score most). A bipolar trace shows both contacts' windows.
    onset_s : float | None
        Seizure onset, a vertical line.
    clinical : sequence of str
        Clinical SOZ contacts (their labels in blue).
    title : str
        Figure title.

    Returns
    -------
    Figure
        Two axes, ``"referential"`` then ``"bipolar"`` (``ax.get_label()``); each trace a
        ``Line2D`` labelled with its derivation; each highlight a ``Rectangle`` with
        ``get_gid() == contact``.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] != len(channels):
        raise ValueError(f"data {data.shape} must be (len(channels)={len(channels)}, n_times).")
    index = {c: i for i, c in enumerate(channels)}
    unknown = [p for p in picks if p not in index]
    if unknown:
        raise ValueError(f"picks {unknown} are not among the recording's contacts.")
    windows = windows or {}
    clinical = set(clinical)
    t = t0 + np.arange(data.shape[1]) / sfreq
    step = max(1, int(np.ceil(data.shape[1] / 4000)))  # ~4000 points per trace is plenty on a page
    pick_idx = [index[p] for p in picks]
    pairs = [pr for pr in bipolar_pairs(list(channels)) if pr[0] in pick_idx or pr[1] in pick_idx]
    rows_ref = [(i, None, channels[i]) for i in pick_idx]
    n_rows = max(len(rows_ref), len(pairs), 1)
    fig = Figure(figsize=(12.0, 1.2 + 0.42 * n_rows), dpi=110)
    axes = fig.subplots(1, 2, sharex=True)
    for ax, label, rows in ((axes[0], "referential", rows_ref), (axes[1], "bipolar", pairs)):
        ax.set_label(label)
        traces = [data[i] if j is None else data[i] - data[j] for i, j, _ in rows]
        # One scale for all traces of a panel (robust: 99th percentile of |x|), as in a reader.
        scale = max(float(np.percentile(np.abs(np.concatenate(traces)), 99)), 1e-6) if traces else 1
        for r, ((i, j, name), x) in enumerate(zip(rows, traces, strict=True)):
            contacts = [channels[i]] + ([] if j is None else [channels[j]])
            for c in contacts:
                for start, stop, w in windows.get(c, ()):
                    patch = Rectangle(
                        (start, r - 0.48), stop - start, 0.96, color=HIGHLIGHT_COLOUR,
                        alpha=0.12 + 0.38 * float(np.clip(w, 0, 1)), lw=0, zorder=1,
                    )  # fmt: skip
                    patch.set_gid(c)
                    ax.add_patch(patch)
            ax.plot(t[::step], r - 0.45 * x[::step] / scale, lw=0.5, color="0.1", label=name,
                    zorder=2)  # fmt: skip
        ax.set_yticks(range(len(rows)), [name for _, _, name in rows], fontsize=7)
        for tick, (i, j, _) in zip(ax.get_yticklabels(), rows, strict=True):
            if channels[i] in clinical or (j is not None and channels[j] in clinical):
                tick.set_color(CLINICAL_COLOUR)
        ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
        ax.set_xlim(t[0], t[-1])
        if onset_s is not None and t[0] <= onset_s <= t[-1]:
            ax.axvline(onset_s, color=ONSET_COLOUR, lw=1.2, ls="--", zorder=3)
        ax.set_title(f"{label} (scale +-{scale:.0f} uV per row)", fontsize=8, loc="left")
        ax.set_xlabel("time from recording start (s)")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def probability_heatmap_figure(
    probabilities: np.ndarray,
    window_start_s: np.ndarray,
    window_s: float,
    channels: Sequence[str],
    *,
    onsets_s: Sequence[float] = (),
    clinical: Sequence[str] = (),
    title: str = "",
) -> Figure:
    """Contacts x time: each contact's SOZ probability in every scored window.

    Parameters
    ----------
    probabilities : ndarray, shape (n_windows, n_chans)
        Probability of each contact in each scored window (sequence).
    window_start_s : ndarray, shape (n_windows,)
        Start of each window, seconds from the recording start (increasing).
    window_s : float
        Length of a window (sequence length x clip length).
    channels : sequence of str
        Contact names (rows, in the given order: file order keeps shafts together).
    onsets_s : sequence of float
        Seizure onsets, drawn as vertical lines.
    clinical : sequence of str
        Clinical SOZ contacts (their labels in blue).
    title : str
        Figure title.

    Returns
    -------
    Figure
        Its first axes holds one ``AxesImage`` whose array is ``probabilities.T`` (contacts x
        windows) and one vertical line per onset (``get_gid() == "onset"``).
    """
    probs = np.asarray(probabilities, dtype=float)
    starts = np.asarray(window_start_s, dtype=float)
    if probs.ndim != 2 or probs.shape != (len(starts), len(channels)):
        raise ValueError(
            f"probabilities {probs.shape} must be (n_windows={len(starts)}, "
            f"n_chans={len(channels)})."
        )
    n_ch = len(channels)
    fig = Figure(figsize=(11.0, 1.4 + 0.13 * n_ch), dpi=110)
    ax = fig.subplots()
    left, right = (starts[0], starts[-1] + window_s) if len(starts) else (0.0, window_s)
    im = ax.imshow(
        probs.T, aspect="auto", interpolation="nearest", cmap=CMAP, vmin=0.0, vmax=1.0,
        extent=(left, right, n_ch - 0.5, -0.5),
    )  # fmt: skip
    for onset in onsets_s:
        line = ax.axvline(onset, color=ONSET_COLOUR, lw=1.5, ls="--")
        line.set_gid("onset")
    ax.set_yticks(range(n_ch), list(channels), fontsize=max(4, min(7, 600 // max(n_ch, 1))))
    clinical = set(clinical)
    for tick, ch in zip(ax.get_yticklabels(), channels, strict=True):
        if ch in clinical:
            tick.set_color(CLINICAL_COLOUR)
    ax.set_xlabel("time from recording start (s)" + ("; dashed: seizure onset" if onsets_s else ""))
    cbar = fig.colorbar(im, ax=ax, pad=0.01)
    cbar.ax.set_title("SOZ p", fontsize=7)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def contact_intervals(
    probabilities: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    channels: Sequence[str],
) -> pd.DataFrame:
    """Per contact: the spread of its probability over several estimates, and whether calls agree.

    Parameters
    ----------
    probabilities : mapping source -> ndarray, shape (n_chans,)
        One probability per contact from each source (a fold model, or a model).
    thresholds : mapping source -> float
        Each source's decision threshold (its call is ``p >= threshold``).
    channels : sequence of str

    Returns
    -------
    DataFrame
        One row per contact: ``channel``, ``mean``, ``low``, ``high`` (min and max over the
        sources), ``n_sources``, ``n_calls`` (sources calling it SOZ) and ``disagree`` (some but not
        all sources call it SOZ).
    """
    if not probabilities:
        raise ValueError("no source of probabilities given.")
    missing = sorted(set(probabilities) - set(thresholds))
    if missing:
        raise ValueError(f"no threshold for {missing}.")
    names = list(probabilities)
    p = np.vstack([np.asarray(probabilities[k], dtype=float) for k in names])  # (n_sources, C)
    if p.shape[1] != len(channels):
        raise ValueError(f"probabilities have {p.shape[1]} contacts, channels {len(channels)}.")
    thr = np.array([float(thresholds[k]) for k in names])[:, None]
    calls = (p >= thr).sum(axis=0)
    return pd.DataFrame(
        {
            "channel": list(channels),
            "mean": p.mean(axis=0),
            "low": p.min(axis=0),
            "high": p.max(axis=0),
            "n_sources": len(names),
            "n_calls": calls,
            "disagree": (calls > 0) & (calls < len(names)),
        }
    )


def intervals_figure(
    panels: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, float]]],
    channels: Sequence[str],
    *,
    top_n: int = 20,
    clinical: Sequence[str] = (),
    title: str = "",
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """Intervals per contact, one panel per kind of spread (across folds, across models).

    Parameters
    ----------
    panels : mapping panel title -> (probabilities, thresholds)
        E.g. ``{"across fold models": (fold_probs, fold_thresholds), "across models": ...}``
        (see :func:`contact_intervals`).
    channels : sequence of str
    top_n : int
        Contacts shown: the highest by mean probability over the first panel (the same contacts
        in every panel).
    clinical : sequence of str
        Clinical SOZ contacts (labels in blue).
    title : str

    Returns
    -------
    fig : Figure
        One axes per panel; per contact one horizontal line (low..high) and each source as a dot;
        contacts where the calls disagree have a red label (``get_color()``) ending in ``" !"``.
    tables : dict panel -> DataFrame
        :func:`contact_intervals` of each panel.
    """
    if top_n < 1:
        raise ValueError(f"{top_n=} must be >= 1.")
    tables = {k: contact_intervals(p, t, channels) for k, (p, t) in panels.items()}
    if not tables:
        raise ValueError("no panel given.")
    first = next(iter(tables.values()))
    show = first.sort_values("mean", ascending=False, kind="stable").head(top_n).index.to_numpy()
    clinical = set(clinical)
    fig = Figure(figsize=(5.2 * len(tables), 1.0 + 0.26 * len(show)), dpi=110)
    axes = fig.subplots(1, len(tables), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        probs, thresholds = panels[name]
        rows = table.loc[show]
        y = np.arange(len(rows))
        ax.hlines(y, rows["low"], rows["high"], color="0.3", lw=2.2)
        markers = "osD^v<>ph*"
        for k, (src, vals) in enumerate(probs.items()):
            v = np.asarray(vals, dtype=float)[show]
            ax.plot(v, y, ls="", marker=markers[k % len(markers)], ms=4.5, label=str(src),
                    alpha=0.85)  # fmt: skip
        thr_values = sorted({round(float(t), 3) for t in thresholds.values()})
        for t in thr_values:
            ax.axvline(t, color="0.5", ls=":", lw=1)
        labels = [
            f"{c} !" if d else c for c, d in zip(rows["channel"], rows["disagree"], strict=True)
        ]
        ax.set_yticks(y, labels, fontsize=7)
        for tick, c, d in zip(ax.get_yticklabels(), rows["channel"], rows["disagree"], strict=True):
            if d:
                tick.set_color("#c1121f")
                tick.set_fontweight("bold")
            elif c in clinical:
                tick.set_color(CLINICAL_COLOUR)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        n_dis = int(table["disagree"].sum())
        ax.set_title(f"{name}: {n_dis} contact(s) where calls disagree (!)", fontsize=8, loc="left")
        ax.set_xlabel("SOZ probability (dotted: thresholds)")
        ax.legend(fontsize=6, loc="lower right", frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig, tables


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a figure to a PNG and close it."""
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
