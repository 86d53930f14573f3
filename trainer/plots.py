"""PNG figures of a training run: ROC per cohort, PR, confusion, training curves, calibration.

Each function draws one figure, writes it as a PNG and returns its path. Figures are built with
:class:`matplotlib.figure.Figure` directly (no ``pyplot``): no global figure state, no GUI
backend, safe in Ray workers and threads, nothing to close. Inputs are the plain structures of
:mod:`trainer.metrics` (as loaded back from its JSON files too).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

logger = logging.getLogger(__name__)

__all__ = [
    "plot_confusion",
    "plot_pr",
    "plot_reliability",
    "plot_roc_by_cohort",
    "plot_roc_through_training",
    "plot_training_curves",
]

_DPI = 110


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG; {path} does not end in .png.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    logger.debug("wrote %s", path)
    return path


def _curve(c) -> tuple[np.ndarray, np.ndarray, float]:
    """A ROC curve as a ``(fpr, tpr, auc)`` tuple or a ``{"fpr", "tpr", "auc"}`` dict."""
    if isinstance(c, Mapping):
        return np.asarray(c["fpr"]), np.asarray(c["tpr"]), float(c["auc"])
    fpr, tpr, auc = c
    return np.asarray(fpr), np.asarray(tpr), float(auc)


def _ordered(names) -> list[str]:
    """Cohorts sorted, the pooled ``"all"`` curve last."""
    return sorted((n for n in names if n != "all"), key=str) + (["all"] if "all" in names else [])


def plot_roc_by_cohort(
    curves: Mapping[str, object], path: str | Path, *, title: str = "ROC by cohort"
) -> Path:
    """ROC curves of each cohort's channels on one axis.

    Parameters
    ----------
    curves : mapping of str to (fpr, tpr, auc) or dict
        :func:`trainer.metrics.roc_curve_by_cohort` output, or the ``roc_by_cohort`` entry of a
        fold result (``{"fpr", "tpr", "auc"}`` dicts). ``"all"`` is drawn in black.
    path : str or Path
        PNG file to write.
    title : str
        Axes title.

    Returns
    -------
    path : Path
    """
    if not curves:
        raise ValueError("no ROC curves to plot: every cohort had a single class.")
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot()
    for name in _ordered(curves):
        fpr, tpr, auc = _curve(curves[name])
        style = {"color": "black", "lw": 2.2} if name == "all" else {"lw": 1.5}
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", **style)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_pr(
    y_true, y_score, path: str | Path, *, groups=None, title: str = "Precision-recall"
) -> Path:
    """Precision-recall curve(s) with the SOZ prevalence (the chance level) marked.

    Parameters
    ----------
    y_true : array-like of int, shape (n_channels,)
    y_score : array-like of float, shape (n_channels,)
    path : str or Path
        PNG file to write.
    groups : array-like of str, shape (n_channels,), optional
        Cohort of each channel: one curve per cohort besides the pooled one.
    title : str

    Returns
    -------
    path : Path
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError(f"{y_true.shape=} and {y_score.shape=} must be equal and 1-D.")
    sets = [("all", np.ones(y_true.size, dtype=bool))]
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        sets = [(g, groups == g) for g in sorted(set(groups))] + sets
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot()
    drawn = 0
    for name, sel in sets:
        y, s = y_true[sel], y_score[sel]
        if y.min() == y.max():
            continue
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision_score(y, s)
        style = {"color": "black", "lw": 2.2} if name == "all" else {"lw": 1.5}
        line = ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})", **style)[0]
        ax.axhline(y.mean(), ls=":", lw=1, color=line.get_color())
        drawn += 1
    if not drawn:
        raise ValueError("no precision-recall curve: the channels have a single class.")
    ax.plot([], [], ls=":", color="grey", label="prevalence (chance)")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion, path: str | Path, *, title: str = "Channel confusion matrix") -> Path:
    """Channel-wise confusion matrix, counts and row percentages.

    Parameters
    ----------
    confusion : array-like, shape (2, 2), or dict
        ``[[tn, fp], [fn, tp]]`` (rows = truth), or a :func:`trainer.metrics.channel_metrics`
        dict (its ``tn, fp, fn, tp``).
    path : str or Path
    title : str

    Returns
    -------
    path : Path
    """
    if isinstance(confusion, Mapping):
        confusion = [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]]
    cm = np.asarray(confusion, dtype=float)
    if cm.shape != (2, 2) or (cm < 0).any():
        raise ValueError(f"confusion must be 2 x 2 non-negative counts; got {cm.tolist()}.")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = Figure(figsize=(4.4, 4.0))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{100 * frac[i, j]:.1f}%",
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], ["non-SOZ", "SOZ"])
    ax.set_yticks([0, 1], ["non-SOZ", "SOZ"])
    ax.set(xlabel="predicted", ylabel="clinical label", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of row")
    fig.tight_layout()
    return _save(fig, path)


def _history_runs(history) -> dict[str, list[Mapping]]:
    if isinstance(history, Mapping):
        return {str(k): list(v) for k, v in history.items()}
    return {"": list(history)}


def plot_training_curves(history, path: str | Path, *, title: str = "Training curves") -> Path:
    """Loss and validation metrics per epoch (one line per fold when several are given).

    Parameters
    ----------
    history : sequence of dict, or mapping of str to sequence of dict
        Per-epoch records as reported during training, e.g.
        ``{"epoch": 3, "train_loss": 0.21, "val_loss": 0.25, "val_auc": 0.71}``; or
        ``{"fold 0": [...], "fold 1": [...]}``. Keys containing ``"loss"`` go on the left axes,
        every other numeric key (AUC, F1 ...) on the right axes; ``epoch`` (else the position)
        is the x axis.
    path : str or Path
    title : str

    Returns
    -------
    path : Path
    """
    runs = _history_runs(history)
    if not any(runs.values()):
        raise ValueError("the training history is empty: no epoch was reported.")
    fig = Figure(figsize=(10, 4.0))
    ax_loss, ax_metric = fig.subplots(1, 2)
    colors = {}
    for run, records in runs.items():
        keys = sorted(
            {
                k
                for r in records
                for k, v in r.items()
                if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
            }
        )
        x = [r.get("epoch", i) for i, r in enumerate(records)]
        for k in keys:
            pts = [(xi, r[k]) for xi, r in zip(x, records, strict=True) if r.get(k) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax = ax_loss if "loss" in k else ax_metric
            color = colors.setdefault(k, f"C{len(colors) % 10}")
            ls = ["-", "--", ":", "-."][list(runs).index(run) % 4]
            label = f"{k} {run}".strip()
            ax.plot(xs, ys, color=color, ls=ls, marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel="value", title="validation metrics")
    for ax in (ax_loss, ax_metric):
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc_through_training(
    per_epoch, path: str | Path, *, title: str = "ROC per cohort through training"
) -> Path:
    """Per-cohort ROC curves at each epoch, coloured from the first (light) to the last (dark).

    Parameters
    ----------
    per_epoch : mapping of int to mapping, or sequence of mapping
        ``{epoch: {cohort: (fpr, tpr, auc) or {"fpr", "tpr", "auc"}}}`` (validation curves
        from :func:`trainer.metrics.roc_curve_by_cohort` at each epoch); a sequence is
        numbered from epoch 0.
    path : str or Path
    title : str

    Returns
    -------
    path : Path
        One panel per cohort, plus an AUC-per-epoch panel.
    """
    if not isinstance(per_epoch, Mapping):
        per_epoch = dict(enumerate(per_epoch))
    epochs = sorted(per_epoch, key=int)
    cohorts = _ordered({c for e in epochs for c in per_epoch[e]})
    if not cohorts:
        raise ValueError("no ROC curves to plot through training: every epoch is empty.")
    n = len(cohorts) + 1
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    shades = colormaps["viridis_r"](np.linspace(0.15, 1.0, len(epochs)))
    auc_ax = axes[len(cohorts)]
    for ax, cohort in zip(axes, cohorts, strict=False):
        aucs = []
        for color, e in zip(shades, epochs, strict=True):
            if cohort not in per_epoch[e]:
                continue
            fpr, tpr, auc = _curve(per_epoch[e][cohort])
            ax.plot(fpr, tpr, color=color, lw=1.2)
            aucs.append((int(e), auc))
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        last = f", last AUC {aucs[-1][1]:.3f}" if aucs else ""
        ax.set(title=f"{cohort}{last}", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
        ax.set(xlabel="FPR", ylabel="TPR")
        if aucs:
            xs, ys = zip(*aucs, strict=True)
            auc_ax.plot(xs, ys, marker="o", ms=3, label=cohort)
    auc_ax.set(xlabel="epoch", ylabel="ROC-AUC", title="AUC per epoch", ylim=(0, 1))
    auc_ax.legend(fontsize=7)
    auc_ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{title} (light = first epoch, dark = last)")
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(
    reliability: Sequence[Mapping], path: str | Path, *, title: str = "Calibration", brier=None
) -> Path:
    """Reliability diagram: observed SOZ fraction against mean predicted probability per bin.

    Parameters
    ----------
    reliability : sequence of dict
        The ``reliability`` bins of :func:`trainer.metrics.channel_metrics`
        (``lower, upper, count, mean_score, fraction_positive``).
    path : str or Path
    title : str
    brier : float, optional
        Brier score, shown in the title.

    Returns
    -------
    path : Path
        Top panel the diagram, bottom panel the number of channels per bin.
    """
    full = [b for b in reliability if b["count"]]
    if not full:
        raise ValueError("every reliability bin is empty: no channels to plot.")
    fig = Figure(figsize=(5.0, 6.0))
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ax.plot(
        [b["mean_score"] for b in full],
        [b["fraction_positive"] for b in full],
        marker="o",
        label="model",
    )
    if brier is not None:
        title = f"{title} (Brier {float(brier):.3f})"
    ax.set(ylabel="observed SOZ fraction", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    lowers = [b["lower"] for b in reliability]
    widths = [b["upper"] - b["lower"] for b in reliability]
    ax_n.bar(lowers, [b["count"] for b in reliability], width=widths, align="edge", alpha=0.7)
    ax_n.set(xlabel="predicted SOZ probability", ylabel="channels")
    ax_n.set_yscale("symlog")
    fig.tight_layout()
    return _save(fig, path)
