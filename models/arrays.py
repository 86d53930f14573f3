"""Argument checks the numpy models share (spike detector, EI baseline, features, SVM)."""

from __future__ import annotations

import numpy as np


def check_sfreq(sfreq: float) -> None:
    """Raise a ValueError unless ``sfreq`` is a positive, finite sampling rate."""
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ValueError(f"{sfreq=} must be a positive, finite sampling rate in Hz.")


def check_finite_rows(x: np.ndarray, name: str, rows: str, fix: str) -> None:
    """Raise a ValueError naming the rows of a 2-D ``x`` that hold NaN or inf.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_cols)
    name : str
        What ``x`` is called in the message (``"signal"``, ``"X"``).
    rows : str
        What a row is (``"channels"``, ``"rows"``).
    fix : str
        What the caller should do about it.
    """
    if not np.all(np.isfinite(x)):
        bad = np.unique(np.nonzero(~np.isfinite(x))[0])
        raise ValueError(
            f"{name} has non-finite values in {bad.size} {rows} "
            f"(first {rows} {bad[:10].tolist()}); {fix}"
        )
