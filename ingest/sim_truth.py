"""Zones, shaft targets, truth and clinical labels of a simulated subject, shared by both families.

The true SOZ is the set of contacts whose lead field is dominated by the epileptogenic zone;
the clinical labels are that set corrupted to a chosen Dice agreement (neighbours mislabelled,
as a human reader does), and the resection covers the labels plus neighbours on the shaft.
"""

from __future__ import annotations

import numpy as np

from ingest.implant import Implantation


def true_soz(gain: np.ndarray, ez: np.ndarray) -> np.ndarray:
    """Contacts dominated by the EZ: EZ gain share >= 0.5 and a clear EZ gain; 5-20 % of contacts.

    Returns
    -------
    soz : ndarray of bool, shape (n_contacts,)
    """
    ez_gain = gain[:, ez].sum(axis=1)
    share = ez_gain / gain.sum(axis=1)
    score = ez_gain * share
    n = gain.shape[0]
    lo, hi = max(1, int(np.ceil(0.05 * n))), max(1, int(np.floor(0.2 * n)))
    k = int(np.clip(np.sum((share >= 0.5) & (ez_gain >= 0.3)), lo, hi))
    soz = np.zeros(n, dtype=bool)
    soz[np.argsort(score)[::-1][:k]] = True
    return soz


def corrupt_labels(soz: np.ndarray, imp: Implantation, agreement: float, rng) -> np.ndarray:
    """Swap ``round((1 - agreement) * n_soz)`` true SOZ contacts for nearby non-SOZ ones.

    The swapped-in contacts are the non-SOZ contacts closest to the true SOZ, as a human reader
    mislabels neighbours; the label set keeps the size of the true set (Dice = agreement).
    """
    labels = soz.copy()
    idx = np.flatnonzero(soz)
    n_swap = int(round((1.0 - agreement) * idx.size))
    if n_swap == 0:
        return labels
    others = np.flatnonzero(~soz)
    dist = np.linalg.norm(imp.positions[others, None] - imp.positions[None, idx], axis=-1).min(
        axis=1
    )
    near = others[np.argsort(dist + rng.uniform(0, 3.0, others.size))][:n_swap]
    labels[rng.choice(idx, n_swap, replace=False)] = False
    labels[near] = True
    return labels


def resection(labels: np.ndarray, imp: Implantation, rng) -> np.ndarray:
    """Resected contacts: the clinical SOZ plus 1-3 neighbours on the same shaft."""
    res = labels.copy()
    shafts = np.asarray(imp.shafts)
    for c in np.flatnonzero(labels):
        reach = int(rng.integers(1, 4))
        for k in range(max(0, c - reach), min(len(res), c + reach + 1)):
            if shafts[k] == shafts[c]:
                res[k] = True
    return res


__all__ = ["corrupt_labels", "resection", "true_soz"]


def draw_zones(
    weights: np.ndarray, difficulty: float, rng, *, pair_p: float, n_pz: tuple[int, int]
) -> tuple[list[int], list[int], np.ndarray]:
    """The epileptogenic and propagation zones of one subject's regions.

    The EZ is one region, with probability ``pair_p`` joined by its strongest neighbour; the PZ
    is the EZ's most strongly connected partners, ``rng.integers(*n_pz)`` of them plus
    ``round(2 * difficulty)``.

    Parameters
    ----------
    weights : ndarray, shape (n_regions, n_regions)
        The connectome.

    Returns
    -------
    ez, pz : list of int
        Region indices.
    role : ndarray of str, shape (n_regions,)
        ``"ez"``, ``"pz"`` or ``"healthy"``.
    """
    n = len(weights)
    ez = [int(rng.integers(n))]
    if rng.random() < pair_p:
        ez.append(int(np.argmax(np.where(np.isin(np.arange(n), ez), -1, weights[ez[0]]))))
    link = weights[ez].sum(axis=0)
    link[ez] = -1
    count = int(rng.integers(*n_pz)) + int(round(2 * difficulty))
    pz = [int(j) for j in np.argsort(link)[::-1][:count]]
    role = np.array(["healthy"] * n, dtype=object)
    role[pz] = "pz"
    role[ez] = "ez"
    return ez, pz, role


def draw_targets(
    positions: np.ndarray, ez: list[int], pz: list[int], cfg, rng, *, same_side: float
) -> tuple[list[int], np.ndarray]:
    """The regions the shafts aim at and the contacts per shaft (the clinical hypothesis).

    One shaft per EZ region and on some PZ regions; the rest sample other regions, weighted
    ``same_side`` to 1 towards the EZ's hemisphere.

    Parameters
    ----------
    positions : ndarray, shape (n_regions, 3)
        Region centres (x: left-right).
    cfg : ingest.sim_config.SimulationConfig
        ``n_shafts`` and ``contacts_per_shaft`` ranges.

    Returns
    -------
    targets : list of int, length n_shafts
    counts : ndarray of int, shape (n_shafts,)
    """
    n_shafts = int(rng.integers(cfg.n_shafts[0], cfg.n_shafts[1] + 1))
    targets = list(dict.fromkeys(ez + pz[: max(1, n_shafts // 3)]))[:n_shafts]
    rest = [j for j in range(len(positions)) if j not in targets]
    same = np.sign(positions[rest, 0]) == np.sign(positions[ez[0], 0])
    p = np.where(same, same_side, 1.0)
    targets += [
        int(j) for j in rng.choice(rest, n_shafts - len(targets), replace=False, p=p / p.sum())
    ]
    counts = rng.integers(cfg.contacts_per_shaft[0], cfg.contacts_per_shaft[1] + 1, n_shafts)
    return targets, counts


def clinical_labels(
    gain: np.ndarray, ez: list[int], imp: Implantation, agreement: float, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(soz_true, soz_label, resected)`` of the channels ``imp`` whose gain is ``gain``."""
    soz_true = true_soz(gain, np.asarray(ez))
    soz_label = corrupt_labels(soz_true, imp, agreement, rng)
    return soz_true, soz_label, resection(soz_label, imp, rng)
