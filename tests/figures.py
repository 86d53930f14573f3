"""Checks that a written figure holds a drawing, not just PNG bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path: str | Path, *, min_bytes: int = 8_000, min_px: int = 300) -> np.ndarray:
    """Decode ``path``: a PNG of at least ``min_px`` pixels a side with many colours drawn.

    Returns the image (``(height, width, channels)`` floats) for further checks.
    """
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > min_bytes, f"{path.name} is only {len(data)} bytes"
    img = imread(path)
    assert img.shape[0] > min_px and img.shape[1] > min_px, f"{path.name} is {img.shape}"
    # not a blank canvas: many distinct colours were drawn
    n_colours = np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0]
    assert n_colours > 20, f"{path.name} has {n_colours} colours: nearly blank"
    return img
