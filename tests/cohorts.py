"""Simulated cohorts small enough for a test: one configuration, overridden where a test needs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from ingest.bids_writer import TRUTH_DIR
from ingest.sim_config import SimulationConfig


def smallest_cohort(**overrides: Any) -> SimulationConfig:
    """One subject, one 75-s ictal and one 10-s interictal run, 3 shafts of 6 contacts, 256 Hz."""
    base: dict[str, Any] = dict(n_subjects=1, n_ictal_runs=1, n_interictal_runs=1)
    base.update(ictal_duration_s=75.0, interictal_duration_s=10.0, onset_window_s=(10.0, 10.0))
    base.update(min_postictal_s=5.0, sfreqs=(256.0,), n_regions=(8, 8))
    base.update(n_shafts=(3, 3), contacts_per_shaft=(6, 6))
    return SimulationConfig(**{**base, **overrides})


def interictal_only(**overrides: Any) -> SimulationConfig:
    """One 20-s interictal run per subject and no ictal run: 2 shafts of 6 contacts, 10 regions,
    256 Hz (a quick cohort for the determinism tests)."""
    base: dict[str, Any] = dict(n_ictal_runs=0, n_interictal_runs=1, interictal_duration_s=20.0)
    base.update(sfreqs=(256.0,), n_shafts=(2, 2), contacts_per_shaft=(6, 6), n_regions=(10, 10))
    return SimulationConfig(**{**base, **overrides})


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root``, by its path relative to ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def truth_channels(root: Path, sub: str) -> pd.DataFrame:
    """The simulator's truth table of subject ``sub`` (``derivatives/sozkit-truth``)."""
    folder = root / TRUTH_DIR / f"sub-{sub}"
    return pd.read_csv(folder / f"sub-{sub}_desc-truth_channels.tsv", sep="\t")
