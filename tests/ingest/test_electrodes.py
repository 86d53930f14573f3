"""Contact coordinates from BIDS electrodes.tsv + coordsystem.json: real sidecars, simulator, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest.electrodes import (
    electrodes_for_recording,
    find_electrodes,
    read_electrodes,
)
from ingest.errors import RecordingError
from ingest.simulate import SimulationConfig, plan_subject
from tests.conftest import SHARED_DATA, SIDECARS

HUP190 = SIDECARS / "ds004100" / "sub-HUP190" / "ses-presurgery" / "ieeg"
RUN = HUP190 / "sub-HUP190_ses-presurgery_task-ictal_acq-seeg_run-01_ieeg.edf"


def _good_contacts(channels_tsv: Path) -> list[str]:
    ch = pd.read_csv(channels_tsv, sep="\t", encoding="utf-8-sig", keep_default_na=False)
    return list(ch.loc[(ch["status"] == "good") & ch["type"].isin(["SEEG", "ECOG"]), "name"])


def test_ds004100_declares_metres_but_holds_millimetres():
    tsv = find_electrodes(RUN)
    assert tsv is not None and tsv.name.endswith("acq-seeg_space-fsaverage_electrodes.tsv")
    elec = read_electrodes(tsv)
    assert elec.space == "fsaverage" and elec.declared_units == "m" and elec.units == "mm"
    assert elec.in_template_space
    assert any("declares units 'm'" in w and "read as mm" in w for w in elec.warnings)
    # Values kept as millimetres (not multiplied by 1000): the first contact row of the file.
    la01 = elec.positions[elec.names.index("LA01")]
    np.testing.assert_allclose(la01, [-17.913, -1.55361, -21.30498003])
    # Scalp / ECG rows are n/a: no position, and they are not warned about unless asked for.
    assert np.isnan(elec.positions[elec.names.index("C3")]).all()
    # Every good SEEG contact of the run has a coordinate inside a head.
    contacts = _good_contacts(HUP190 / RUN.name.replace("_ieeg.edf", "_channels.tsv"))
    pos, notes = elec.for_channels(contacts)
    assert len(contacts) > 50 and np.isfinite(pos).all(), notes
    assert notes == []
    assert np.abs(pos).max() < 120.0


def test_every_shared_ds004100_subject_reads():
    root = SHARED_DATA / "bids-sidecars" / "ds004100"
    files = sorted(root.glob("sub-*/ses-*/ieeg/*_electrodes.tsv"))
    if not files:
        pytest.skip(f"no shared sidecars at {root}")
    for tsv in files:
        elec = read_electrodes(tsv)
        finite = np.isfinite(elec.positions).all(axis=1)
        assert finite.sum() >= 10, tsv  # sub-HUP116 places only 12 of 52
        assert np.abs(elec.positions[finite]).max() < 120.0, tsv  # mm, not metres x 1000


def test_bad_values_are_warnings_and_that_contact_has_none(tmp_path):
    tsv = tmp_path / "sub-p1_ses-s1_space-MNI152NLin2009aSym_electrodes.tsv"
    tsv.write_text(
        "name\tx\ty\tz\n"
        "A1\t0.010\t0.020\t0.030\n"
        "A2\tabc\t0.020\t0.030\n"
        "A3\tn/a\tn/a\tn/a\n"
        "A4\t0.012\t\t0.031\n",
        encoding="utf-8",
    )
    (tmp_path / "sub-p1_ses-s1_space-MNI152NLin2009aSym_coordsystem.json").write_text(
        json.dumps({"iEEGCoordinateSystem": "MNI152NLin2009aSym", "iEEGCoordinateUnits": "m"})
    )
    elec = read_electrodes(tsv)
    # Metres declared and metre-sized values: converted to mm.
    np.testing.assert_allclose(elec.positions[0], [10.0, 20.0, 30.0])
    assert np.isnan(elec.positions[1:]).all()
    assert any("A2 (x='abc')" in w for w in elec.warnings)
    pos, notes = elec.for_channels(["A1", "a3", "B9"])
    assert np.isfinite(pos[0]).all() and np.isnan(pos[1:]).all()
    assert any("not listed" in n and "B9" in n for n in notes)
    assert any("no valid coordinate" in n and "a3" in n for n in notes)


def test_missing_columns_and_missing_sidecars(tmp_path):
    tsv = tmp_path / "sub-p1_electrodes.tsv"
    tsv.write_text("name\tx\ty\nA1\t1\t2\n", encoding="utf-8")
    with pytest.raises(RecordingError, match=r"lacks the column\(s\) \['z'\]"):
        read_electrodes(tsv)
    with pytest.raises(RecordingError, match="not found"):
        read_electrodes(tmp_path / "nope_electrodes.tsv")
    pos, elec, notes = electrodes_for_recording(tmp_path / "other" / "sub-p1_ieeg.edf", ["A1"])
    assert pos is None and elec is None and "no *_electrodes.tsv" in notes[0]
    # No coordsystem.json: units guessed from the magnitude, and said.
    tsv.write_text("name\tx\ty\tz\nA1\t12.5\t-3\t40\n", encoding="utf-8")
    elec = read_electrodes(tsv)
    assert elec.positions[0, 0] == pytest.approx(12.5)
    assert any("no coordsystem.json" in w for w in elec.warnings)


def test_other_acquisition_is_not_taken(tmp_path):
    ieeg = tmp_path / "sub-p1" / "ses-s1" / "ieeg"
    ieeg.mkdir(parents=True)
    (ieeg / "sub-p1_ses-s1_acq-ecog_space-fsaverage_electrodes.tsv").write_text("name\tx\ty\tz\n")
    run = ieeg / "sub-p1_ses-s1_task-ictal_acq-seeg_run-01_ieeg.edf"
    assert find_electrodes(run) is None
    (ieeg / "sub-p1_ses-s1_acq-seeg_space-Other_electrodes.tsv").write_text("name\tx\ty\tz\n")
    assert find_electrodes(run).name == "sub-p1_ses-s1_acq-seeg_space-Other_electrodes.tsv"


def test_simulator_writes_coordinates_the_reader_reads_back(tmp_path):
    """The simulator's electrodes.tsv holds each contact's implanted position (mm, documented)."""
    from ingest.bids_writer import bids_stem, write_subject
    from ingest.implant import CONTACT_PITCH_MM

    cfg = SimulationConfig(n_subjects=1, seed=5)
    subject = plan_subject(0, cfg, np.random.default_rng(5))
    write_subject(tmp_path, subject)
    imp = subject.implantation
    run = (
        tmp_path / f"sub-{subject.subject}" / "ses-presurgery" / "ieeg"
        / f"{bids_stem(subject.subject, 'ictal', 1)}_ieeg.edf"
    )  # fmt: skip
    pos, elec, notes = electrodes_for_recording(run, list(imp.names))
    assert elec.declared_units == "mm" and elec.space == "fsaverage" and notes == []
    np.testing.assert_allclose(pos, imp.positions, atol=1e-3)  # written with 3 decimals
    # Neighbouring contacts of a shaft are 3.5 mm apart (the implant's pitch).
    steps = [
        np.linalg.norm(pos[i + 1] - pos[i])
        for i in range(imp.n_contacts - 1)
        if imp.shafts[i] == imp.shafts[i + 1]
    ]
    np.testing.assert_allclose(steps, CONTACT_PITCH_MM, atol=3e-3)
