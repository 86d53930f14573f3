"""The glass-brain map: contacts where their coordinates say, marks right, nothing downloaded."""

from __future__ import annotations

import socket

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ingest.electrodes import find_electrodes, read_electrodes
from serving.brainmap import brain_map_figure, plot_brain_map
from tests.conftest import SIDECARS

RUN = (
    SIDECARS / "ds004100" / "sub-HUP190" / "ses-presurgery" / "ieeg"
    / "sub-HUP190_ses-presurgery_task-ictal_acq-seeg_run-01_ieeg.edf"
)  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    import nilearn.datasets as datasets

    # nilearn's fetchers (atlases, templates) must not be reached either.
    for name in [n for n in dir(datasets) if n.startswith(("fetch_", "load_"))]:
        monkeypatch.setattr(datasets, name, refuse)


def test_glass_brain_on_real_ds004100_coordinates(tmp_path, no_network):
    elec = read_electrodes(find_electrodes(RUN))
    n = len(elec.names)
    probs = np.linspace(0.0, 1.0, n)
    soz = np.zeros(n, bool)
    soz[[20, 21, 22]] = True
    resected = np.zeros(n, bool)
    resected[[21, 22, 23, 24]] = True
    fig, display = brain_map_figure(elec.positions, probs, threshold=0.9, soz=soz,
                                    resected=resected, title="HUP190")  # fmt: skip
    placed = np.isfinite(elec.positions).all(axis=1)
    assert set(display.axes) == {"x", "y", "z"}  # sagittal, coronal, axial
    for key, ax in display.axes.items():
        dots, calls, clin, res = ax.ax.collections[-4:]
        assert len(dots.get_offsets()) == placed.sum()
        assert len(calls.get_offsets()) == int((probs[placed] >= 0.9).sum())
        assert len(clin.get_offsets()) == int(soz[placed].sum()) == 3
        assert len(res.get_offsets()) == 4
        # Sagittal shows (y, z), coronal (x, z), axial (x, y): the contacts' own coordinates.
        cols = {"x": [1, 2], "y": [0, 2], "z": [0, 1]}[key]
        expected = elec.positions[placed][np.argsort(probs[placed], kind="stable")][:, cols]
        np.testing.assert_allclose(dots.get_offsets(), expected, atol=1e-6)
        # Colour follows probability: the last-drawn (highest) dot is darker than the first.
        fc = dots.get_facecolors()
        assert fc[-1][:3].sum() < fc[0][:3].sum()
    plt.close(fig)
    png = plot_brain_map(elec.positions, probs, tmp_path / "brain.png", threshold=0.9)
    assert png.stat().st_size > 10_000


def test_glass_brain_refuses_without_coordinates():
    with pytest.raises(ValueError, match="no contact has a coordinate"):
        brain_map_figure(np.full((3, 3), np.nan), np.zeros(3), threshold=0.5)
    with pytest.raises(ValueError, match="must be"):
        brain_map_figure(np.zeros((3, 2)), np.zeros(3), threshold=0.5)
