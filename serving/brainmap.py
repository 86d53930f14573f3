"""Contacts on a glass brain: three views, coloured by SOZ probability, clinical marks beside.

Drawn with nilearn's glass-brain display (:func:`nilearn.plotting.plot_glass_brain` with no
image: only the brain outlines, which nilearn ships as vector schematics in its package, so
nothing is downloaded; ``tests/serving/test_brainmap.py`` draws with the network blocked). The
three views are nilearn's ``"ortho"`` projections: sagittal (x), coronal (y) and axial (z), each
contact projected through the brain. The outlines are those of the MNI template, so the map
is faithful for coordinates in a template space (fsaverage / MNI: ds004100, and the simulator's
fsaverage-sized head frame); coordinates in a patient's own space (ACPC, scanner) are shown on
the same outline and the caption says so.

Marks: every contact a dot coloured by probability (high drawn last, on top); the model's calls
(``p >= threshold``) a heavy black ring; the clinical SOZ a larger blue ring; resected contacts a
grey cross.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from serving.figures import CLINICAL_COLOUR, CMAP, save  # noqa: E402

logger = logging.getLogger(__name__)

RESECTED_COLOUR = "0.35"
#: nilearn's display mode for the three views and the name of each axis.
VIEWS = {"x": "sagittal", "y": "coronal", "z": "axial"}


def brain_map_figure(
    positions: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float,
    soz: np.ndarray | None = None,
    resected: np.ndarray | None = None,
    title: str = "",
) -> tuple[Figure, object]:
    """Draw contacts on a glass brain in three views.

    Parameters
    ----------
    positions : ndarray, shape (n_contacts, 3)
        x, y, z in mm (template space); rows with NaN are left out.
    probabilities : ndarray, shape (n_contacts,)
        SOZ probability of each contact.
    threshold : float
        The model's decision threshold (calls: ``p >= threshold``).
    soz, resected : ndarray of bool, shape (n_contacts,), or None
        Clinical SOZ and resection marks (None: unknown, not drawn).
    title : str
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure
    display : nilearn.plotting.displays.OrthoProjector
        ``display.axes`` maps ``"x"``, ``"y"``, ``"z"`` to the views; each view's scatter
        collections are, in order: contacts, calls, clinical SOZ (if given), resected (if given).
    """
    from nilearn import plotting

    positions = np.asarray(positions, dtype=float)
    probs = np.asarray(probabilities, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) != len(probs):
        raise ValueError(
            f"positions must be (n_contacts, 3) matching probabilities (n_contacts,); got "
            f"{positions.shape} and {probs.shape}."
        )
    placed = np.all(np.isfinite(positions), axis=1)
    if not placed.any():
        raise ValueError("no contact has a coordinate: nothing to place on a brain.")
    pos, p = positions[placed], probs[placed]
    order = np.argsort(p, kind="stable")  # high probabilities drawn last, on top
    pos, p = pos[order], p[order]
    fig = plt.figure(figsize=(10.0, 3.8), dpi=110)
    display = plotting.plot_glass_brain(
        None, display_mode="ortho", figure=fig, axes=(0.0, 0.1, 0.9, 0.8), annotate=True,
        black_bg=False, title=None,
    )  # fmt: skip
    norm = Normalize(0.0, 1.0)
    cmap = plt.get_cmap(CMAP)
    display.add_markers(pos, marker_color=[cmap(norm(v)) for v in p], marker_size=42,
                        edgecolors="0.4", linewidths=0.4, zorder=3)  # fmt: skip
    calls = p >= threshold
    display.add_markers(pos[calls], marker_color="none", marker_size=70, edgecolors="black",
                        linewidths=1.8, zorder=4)  # fmt: skip
    handles = [
        Line2D([], [], marker="o", ls="", mfc="white", mec="black", mew=1.8, ms=8,
               label="model calls SOZ"),
    ]  # fmt: skip
    if soz is not None:
        s = np.asarray(soz, dtype=bool)[placed][order]
        display.add_markers(pos[s], marker_color="none", marker_size=150,
                            edgecolors=CLINICAL_COLOUR, linewidths=1.8, zorder=5)  # fmt: skip
        handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec=CLINICAL_COLOUR,
                              mew=1.8, ms=11, label="clinical SOZ"))  # fmt: skip
    if resected is not None:
        r = np.asarray(resected, dtype=bool)[placed][order]
        display.add_markers(pos[r], marker_color=RESECTED_COLOUR, marker_size=30, marker="x",
                            linewidths=1.0, zorder=6)  # fmt: skip
        handles.append(Line2D([], [], marker="x", ls="", mec=RESECTED_COLOUR, ms=7,
                              label="resected"))  # fmt: skip
    for key, name in VIEWS.items():
        if key in display.axes:
            display.axes[key].ax.set_title(name, fontsize=8, color="0.3")
    cax = fig.add_axes((0.91, 0.18, 0.015, 0.64))
    cbar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cbar.ax.set_title("SOZ p", fontsize=7)
    cbar.ax.tick_params(labelsize=7)
    cbar.ax.axhline(threshold, color="black", lw=2)
    n_missing = int((~placed).sum())
    caption = f"{int(placed.sum())} contacts placed"
    if n_missing:
        caption += f", {n_missing} without coordinates not shown"
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), frameon=False, fontsize=8)
    fig.text(0.99, 0.02, caption, ha="right", fontsize=7, color="0.4")
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    return fig, display


def plot_brain_map(
    positions: np.ndarray,
    probabilities: np.ndarray,
    path: str | os.PathLike,
    *,
    threshold: float,
    soz: np.ndarray | None = None,
    resected: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write :func:`brain_map_figure` to a PNG; returns its path."""
    fig, _ = brain_map_figure(
        positions, probabilities, threshold=threshold, soz=soz, resected=resected, title=title
    )
    return save(fig, path)
