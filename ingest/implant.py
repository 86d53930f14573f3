"""Synthetic brain anatomy and SEEG implantation: regions, connectome, shafts, lead field.

Coordinates are in millimetres in a head frame (x: left -> right, y: posterior -> anterior,
z: inferior -> superior) with the brain an ellipsoid centred on the origin. A subject has
``n_regions`` neural masses (the nodes of the Epileptor network) and a few straight SEEG shafts
whose contacts (3.5 mm pitch, contact 1 deepest) record the regions through an inverse-square
lead field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Semi-axes of the brain ellipsoid in mm (x, y, z).
BRAIN_SEMI_AXES = np.array([65.0, 80.0, 60.0])
#: Distance between neighbouring contacts of a shaft in mm.
CONTACT_PITCH_MM = 3.5
#: Anatomical target codes used to name shafts (amygdala, hippocampus, temporal pole, ...).
SHAFT_CODES = (
    "A", "H", "TP", "OF", "IN", "CI", "PH", "FO", "SM", "PI", "TB", "OC",
    "AC", "PC", "SA", "GR", "CU", "LG", "FP", "PM", "ST", "MT", "IT", "OP",
)  # fmt: skip
#: Naming habits of the simulated centres: ``"padded"`` -> ``LA01``, ``"plain"`` -> ``LA1``,
#: ``"prime"`` -> ``A'1`` (left) / ``A1`` (right), the Grenoble/Marseille habit,
#: ``"suffix"`` -> ``AL1`` and ``"prime_padded"`` -> ``A'01`` (the Wendling family's centres).
NAMING_STYLES = ("padded", "plain", "prime", "suffix", "prime_padded")


@dataclass(frozen=True)
class Anatomy:
    """Regions of one synthetic brain and their structural connectome.

    Parameters
    ----------
    positions : ndarray, shape (n_regions, 3)
        Region centres in mm.
    weights : ndarray, shape (n_regions, n_regions)
        Symmetric connectome, zero diagonal, largest row sum 1 (so the total input of a
        region, and hence the coupling, is bounded whatever the number of regions).
    """

    positions: np.ndarray
    weights: np.ndarray

    @property
    def n_regions(self) -> int:
        return self.positions.shape[0]


@dataclass(frozen=True)
class Implantation:
    """SEEG contacts of one subject.

    Parameters
    ----------
    names : tuple of str
        Contact names, shaft by shaft, deepest contact first.
    shafts : tuple of str
        Shaft of each contact (same length as ``names``).
    positions : ndarray, shape (n_contacts, 3)
        Contact coordinates in mm.
    """

    names: tuple[str, ...]
    shafts: tuple[str, ...]
    positions: np.ndarray

    @property
    def n_contacts(self) -> int:
        return len(self.names)


def make_anatomy(
    n_regions: int,
    *,
    rng: np.random.Generator,
    min_distance_mm: float = 14.0,
    length_scale_mm: float = 20.0,
) -> Anatomy:
    """Draw region centres in the brain ellipsoid and a distance-decaying connectome.

    ``w_ij = exp(-d_ij / length_scale) * lognormal`` (symmetrised), so near regions are strongly
    and far regions weakly connected, with heterogeneity between pairs; then normalised to a
    largest row sum of 1.

    Parameters
    ----------
    n_regions : int
        Number of regions.
    rng : numpy.random.Generator
        Random source.
    min_distance_mm : float
        Smallest distance between two region centres (rejection sampling; relaxed if the
        ellipsoid cannot hold that many regions).
    length_scale_mm : float
        Decay length of the connection weights.

    Returns
    -------
    Anatomy
    """
    if n_regions < 4:
        raise ValueError(
            f"{n_regions=} must be >= 4 (an epileptogenic zone, a propagation zone "
            "and healthy regions)."
        )
    pts: list[np.ndarray] = []
    min_d = min_distance_mm
    tries = 0
    while len(pts) < n_regions:
        p = rng.uniform(-1.0, 1.0, 3)
        tries += 1
        if tries % 2000 == 0:
            min_d *= 0.9
        if np.sum(p**2) > 0.75**2:  # keep regions inside the brain, away from the surface
            continue
        p = p * BRAIN_SEMI_AXES
        if abs(p[0]) < 8.0:  # no region on the midline (between the hemispheres)
            continue
        if pts and np.min(np.linalg.norm(np.asarray(pts) - p, axis=1)) < min_d:
            continue
        pts.append(p)
    pos = np.asarray(pts)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    same_hemi = np.sign(pos[:, None, 0]) == np.sign(pos[None, :, 0])
    # Interhemispheric connections are weaker than their distance alone suggests.
    w = np.exp(-d / length_scale_mm) * np.where(same_hemi, 1.0, 0.3)
    w = w * rng.lognormal(0.0, 0.5, size=w.shape)
    w = 0.5 * (w + w.T)
    np.fill_diagonal(w, 0.0)
    w /= w.sum(axis=1).max()
    return Anatomy(positions=pos, weights=w)


def implant(
    anatomy: Anatomy,
    targets: np.ndarray,
    contacts_per_shaft: np.ndarray,
    *,
    naming: str,
    rng: np.random.Generator,
    pitch_mm: float = CONTACT_PITCH_MM,
    tip_sd_mm: float = 2.5,
    tilt_sd: float = 0.35,
    tilt_axes: tuple[float, float, float] = (0.0, 1.0, 1.0),
) -> Implantation:
    """Place one straight shaft per target region, entering laterally, and name its contacts.

    The deepest contact sits near (within ~4 mm of) the target region's centre and the shaft
    runs outward with a random tilt from the lateral direction; contacts are 3.5 mm apart.

    Parameters
    ----------
    anatomy : Anatomy
        Region positions.
    targets : ndarray of int, shape (n_shafts,)
        Region each shaft aims at.
    contacts_per_shaft : ndarray of int, shape (n_shafts,)
        Number of contacts of each shaft.
    naming : str
        One of :data:`NAMING_STYLES`.
    rng : numpy.random.Generator
        Random source.
    pitch_mm : float
        Distance between neighbouring contacts.
    tip_sd_mm : float
        Standard deviation of the deepest contact around the target's centre.
    tilt_sd, tilt_axes
        Standard deviation of the shaft's random tilt, scaled per axis.

    Returns
    -------
    Implantation
    """
    if naming not in NAMING_STYLES:
        raise ValueError(f"{naming=} must be one of {NAMING_STYLES}.")
    if len(targets) > len(SHAFT_CODES):
        raise ValueError(f"{len(targets)} shafts but only {len(SHAFT_CODES)} shaft codes.")
    codes = rng.choice(len(SHAFT_CODES), size=len(targets), replace=False)
    names: list[str] = []
    shafts: list[str] = []
    positions: list[np.ndarray] = []
    for target, n_contacts, code_i in zip(targets, contacts_per_shaft, codes, strict=True):
        centre = anatomy.positions[target]
        side = 1.0 if centre[0] >= 0 else -1.0
        tip = centre + rng.normal(0.0, tip_sd_mm, 3)
        direction = np.array([side, 0.0, 0.0]) + rng.normal(0.0, tilt_sd, 3) * np.asarray(tilt_axes)
        direction /= np.linalg.norm(direction)
        shaft = _shaft_name(SHAFT_CODES[code_i], side, naming)
        for k in range(int(n_contacts)):
            names.append(_contact_name(shaft, k + 1, naming))
            shafts.append(shaft)
            positions.append(tip + k * pitch_mm * direction)
    return Implantation(names=tuple(names), shafts=tuple(shafts), positions=np.asarray(positions))


def lead_field(contacts: np.ndarray, regions: np.ndarray, *, radius_mm: float = 5.0) -> np.ndarray:
    """Inverse-square gain of each region at each contact.

    ``gain = radius**2 / (distance**2 + radius**2)``: ~1 inside a region (whose extent is
    ``radius_mm``), falling as ``1 / distance**2`` outside, so contacts 3.5 mm apart on a shaft
    record the same region with clearly different gains.

    Parameters
    ----------
    contacts : ndarray, shape (n_contacts, 3)
        Contact positions in mm.
    regions : ndarray, shape (n_regions, 3)
        Region centres in mm.
    radius_mm : float
        Spatial extent of a region.

    Returns
    -------
    gain : ndarray, shape (n_contacts, n_regions)
    """
    d2 = np.sum((contacts[:, None, :] - regions[None, :, :]) ** 2, axis=-1)
    return radius_mm**2 / (d2 + radius_mm**2)


def _shaft_name(code: str, side: float, naming: str) -> str:
    if naming in ("prime", "prime_padded"):
        return f"{code}'" if side < 0 else code
    if naming == "suffix":
        return code + ("L" if side < 0 else "R")
    return ("L" if side < 0 else "R") + code


def _contact_name(shaft: str, number: int, naming: str) -> str:
    padded = naming in ("padded", "prime_padded")
    return f"{shaft}{number:02d}" if padded else f"{shaft}{number}"
