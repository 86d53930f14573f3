"""Truth and clinical labels of a simulated subject, shared by every generator family.

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
