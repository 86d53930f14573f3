"""The Epileptor neural-mass model on a network of brain regions (pure numpy).

The Epileptor (Jirsa et al., *On the nature of seizure dynamics*, Brain 2014) describes one
region with two oscillators and a slow "permittivity" variable:

- subsystem 1 (``x1``, ``y1``): the fast discharges; it switches between a resting fixed point
  (interictal) and a limit cycle (ictal) through a saddle-node bifurcation at onset and a
  homoclinic bifurcation at offset;
- subsystem 2 (``x2``, ``y2``) with the low-pass feedback ``g``: spike-and-wave events;
- the slow variable ``z`` (time constant ``1 / r``) drives the switching. The excitability
  ``x0`` sets the fixed point of ``z``: above ``x0 ~ -2.06`` a region seizes on its own
  (epileptogenic zone), below it stays at rest unless pushed by its neighbours.

Regions are coupled through ``z`` (permittivity coupling, Proix et al., *Permittivity coupling
across brain regions determines seizure recruitment in partial epilepsy*, J Neurosci 2014):
``dz_i/dt = r (4 (x1_i - x0_i) - z_i - K sum_j w_ij (x1_j - x1_i))``, so a seizing neighbour
lowers ``z_i`` and recruits region ``i`` when it is close enough to threshold (propagation
zone). The model is integrated with Euler-Maruyama, vectorised over runs and regions.
Model time is mapped to seconds by ``units_per_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from ingest.errors import ConfigError

logger = logging.getLogger(__name__)

#: Excitability at which an isolated Epileptor region starts to seize on its own
#: (tangency of the ``z`` nullcline with the fold of subsystem 1 for ``i_ext1 = 3.1``).
X0_CRITICAL = -2.062

#: ``x1`` above this value means the region is on its ictal limit cycle (at rest
#: ``x1 < -1.3``, in seizure it oscillates between about -1.9 and 1.6).
ICTAL_X1_THRESHOLD = -0.5


@dataclass(frozen=True)
class EpileptorParams:
    """Parameters of the Epileptor network (defaults from Jirsa et al. 2014 unless noted).

    Parameters
    ----------
    i_ext1, i_ext2 : float
        External input currents of subsystems 1 and 2.
    y0 : float
        Constant of the ``y1`` equation.
    r : float
        Inverse time constant of the slow variable ``z``. 0.001 (the paper uses 0.00035) gives
        seizures of ~300-400 model units, i.e. tens of seconds with ``units_per_s=8``.
    tau2 : float
        Time constant of ``y2``.
    gamma : float
        Rate of the low-pass coupling ``g`` from subsystem 1 to 2.
    coupling : float
        Permittivity coupling strength ``K`` (scaled by the row-normalised connectome).
    noise : float
        Standard deviation of the additive white noise on ``x1, y1, x2, y2`` (model units per
        square-root model unit).
    dt : float
        Integration step in model units.
    units_per_s : float
        Model time units per second of recording.
    """

    i_ext1: float = 3.1
    i_ext2: float = 0.45
    y0: float = 1.0
    r: float = 0.001
    tau2: float = 10.0
    gamma: float = 0.01
    coupling: float = 1.0
    noise: float = 0.02
    dt: float = 0.05
    units_per_s: float = 8.0

    def __post_init__(self) -> None:
        for name in ("r", "tau2", "gamma", "dt", "units_per_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"EpileptorParams.{name}={getattr(self, name)} must be > 0.")
        if self.coupling < 0 or self.noise < 0:
            raise ConfigError(
                f"EpileptorParams coupling={self.coupling} and noise={self.noise} must be >= 0."
            )
        if self.dt > 0.1:
            raise ConfigError(
                f"EpileptorParams.dt={self.dt} is too large for Euler integration of the fast "
                "subsystem (it diverges); use dt <= 0.1."
            )

    @property
    def sfreq(self) -> float:
        """Rate in Hz of the integrated trajectories (one sample per step)."""
        return self.units_per_s / self.dt


@dataclass(frozen=True)
class EpileptorTrace:
    """Trajectories of an Epileptor network, one sample per integration step.

    Parameters
    ----------
    x1, x2, z : ndarray, shape (n_runs, n_regions, n_steps)
        Fast, spike-wave and slow variables (float32).
    sfreq : float
        Sampling rate of the trajectories in Hz.
    """

    x1: np.ndarray
    x2: np.ndarray
    z: np.ndarray
    sfreq: float

    @property
    def lfp(self) -> np.ndarray:
        """Epileptor field potential ``x2 - x1``, shape (n_runs, n_regions, n_steps)."""
        return self.x2 - self.x1


def seizure_drive(
    n_steps: int, sfreq: float, release_s: np.ndarray, *, ramp_s: float = 6.0, hold_s: float = 45.0
) -> np.ndarray:
    """Pre-ictal excitability drive: 0 at rest, ramps to 1, holds, ramps back to 0.

    The epileptogenic regions' excitability is ``x0_rest + drive * (x0_ictal - x0_rest)``: it
    crosses the critical value during the ramp, which places seizure onset a few seconds after
    ``release_s``, and falls back after ``hold_s`` so that a run holds a single seizure.

    Parameters
    ----------
    n_steps : int
        Number of integration steps.
    sfreq : float
        Steps per second.
    release_s : ndarray, shape (n_runs,)
        Start of the ramp of each run, in seconds.
    ramp_s, hold_s : float
        Ramp duration and plateau duration in seconds.

    Returns
    -------
    drive : ndarray, shape (n_runs, n_steps)
    """
    t = np.arange(n_steps) / sfreq
    rel = np.asarray(release_s, dtype=float)[:, None]
    up = np.clip((t - rel) / ramp_s, 0.0, 1.0)
    down = np.clip((t - rel - ramp_s - hold_s) / (2 * ramp_s), 0.0, 1.0)
    return up * (1.0 - down)


def simulate_network(
    x0_rest: np.ndarray,
    x0_ictal: np.ndarray,
    weights: np.ndarray,
    drive: np.ndarray,
    *,
    params: EpileptorParams = EpileptorParams(),
    rng: np.random.Generator,
) -> EpileptorTrace:
    """Integrate an Epileptor network for several independent runs at once.

    Parameters
    ----------
    x0_rest, x0_ictal : ndarray, shape (n_regions,)
        Excitability of each region at rest and at full drive. Healthy and propagation-zone
        regions have ``x0_ictal == x0_rest`` (below :data:`X0_CRITICAL`); epileptogenic
        regions have ``x0_ictal > X0_CRITICAL``.
    weights : ndarray, shape (n_regions, n_regions)
        Structural connectome, non-negative, zero diagonal (``weights[i, j]``: input of
        ``j`` to ``i``).
    drive : ndarray, shape (n_runs, n_steps)
        Excitability drive in [0, 1] (see :func:`seizure_drive`).
    params : EpileptorParams
        Model parameters.
    rng : numpy.random.Generator
        Source of the integration noise.

    Returns
    -------
    EpileptorTrace
        ``x1, x2, z`` of shape (n_runs, n_regions, n_steps).
    """
    x0_rest = np.asarray(x0_rest, dtype=float)
    x0_ictal = np.asarray(x0_ictal, dtype=float)
    weights = np.asarray(weights, dtype=float)
    drive = np.atleast_2d(np.asarray(drive, dtype=float))
    n_regions = x0_rest.shape[0]
    if x0_ictal.shape != (n_regions,) or weights.shape != (n_regions, n_regions):
        raise ValueError(
            f"x0_rest {x0_rest.shape}, x0_ictal {x0_ictal.shape} and weights {weights.shape} "
            "must be (n_regions,), (n_regions,) and (n_regions, n_regions)."
        )
    if np.any(weights < 0):
        raise ValueError("weights must be non-negative (a structural connectome).")
    n_runs, n_steps = drive.shape
    p = params
    dt, sq = p.dt, np.sqrt(p.dt) * p.noise
    k_w = p.coupling * weights
    k_in = k_w.sum(axis=1)

    # Start every region at its resting fixed point (lower branch of subsystem 1).
    x1 = np.broadcast_to(_resting_x1(x0_rest, p.i_ext1), (n_runs, n_regions)).copy()
    y1 = p.y0 - 5.0 * x1**2
    z = 4.0 * (x1 - x0_rest)
    x2 = np.full_like(x1, -0.9)
    y2 = np.zeros_like(x1)
    g = 0.1 * x1
    out = np.empty((3, n_runs, n_regions, n_steps), dtype=np.float32)
    noise = rng.standard_normal((n_steps, 4, n_runs, n_regions)).astype(np.float32) * sq
    dx0 = x0_ictal - x0_rest
    for k in range(n_steps):
        x0 = x0_rest + drive[:, k, None] * dx0
        f1 = np.where(x1 < 0.0, x1**3 - 3.0 * x1**2, (x2 - 0.6 * (z - 4.0) ** 2) * x1)
        dx1 = y1 - f1 - z + p.i_ext1
        dy1 = p.y0 - 5.0 * x1**2 - y1
        dz = p.r * (4.0 * (x1 - x0) - z - (x1 @ k_w.T - k_in * x1))
        dx2 = -y2 + x2 - x2**3 + p.i_ext2 + 2.0 * g - 0.3 * (z - 3.5)
        dy2 = (-y2 + np.where(x2 < -0.25, 0.0, 6.0 * (x2 + 0.25))) / p.tau2
        dg = -p.gamma * (g - 0.1 * x1)
        nk = noise[k]
        x1 = x1 + dt * dx1 + nk[0]
        y1 = y1 + dt * dy1 + nk[1]
        z = z + dt * dz
        x2 = x2 + dt * dx2 + nk[2]
        y2 = y2 + dt * dy2 + nk[3]
        g = g + dt * dg
        out[0, :, :, k] = x1
        out[1, :, :, k] = x2
        out[2, :, :, k] = z
    if not np.all(np.isfinite(out[:, :, :, -1])):
        raise FloatingPointError(
            f"Epileptor integration diverged with dt={p.dt}; lower dt or the noise."
        )
    return EpileptorTrace(x1=out[0], x2=out[1], z=out[2], sfreq=p.sfreq)


def region_onsets(
    trace: EpileptorTrace, *, min_gap_s: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and offset of the first seizure of every region, in seconds.

    A region is ictal while ``x1`` exceeds :data:`ICTAL_X1_THRESHOLD`; excursions less than
    ``min_gap_s`` apart belong to one seizure.

    Parameters
    ----------
    trace : EpileptorTrace
        Integrated network, ``x1`` of shape (n_runs, n_regions, n_steps).
    min_gap_s : float
        Longest interruption still counted as the same seizure.

    Returns
    -------
    onset_s, offset_s : ndarray, shape (n_runs, n_regions)
        NaN for regions that never seize.
    """
    ictal = trace.x1 > ICTAL_X1_THRESHOLD
    n_runs, n_regions, _ = ictal.shape
    onset = np.full((n_runs, n_regions), np.nan)
    offset = np.full((n_runs, n_regions), np.nan)
    gap = int(round(min_gap_s * trace.sfreq))
    for i in range(n_runs):
        for j in range(n_regions):
            idx = np.flatnonzero(ictal[i, j])
            if idx.size == 0:
                continue
            breaks = np.flatnonzero(np.diff(idx) > gap)
            end = idx[breaks[0]] if breaks.size else idx[-1]
            onset[i, j] = idx[0] / trace.sfreq
            offset[i, j] = end / trace.sfreq
    return onset, offset


def ictal_state(trace: EpileptorTrace, *, smooth_s: float = 1.0) -> np.ndarray:
    """Smooth 0..1 indicator of each region being in seizure.

    Parameters
    ----------
    trace : EpileptorTrace
        Integrated network.
    smooth_s : float
        Width of the moving-average window in seconds (the limit cycle dips below the
        threshold between discharges; smoothing bridges those dips).

    Returns
    -------
    state : ndarray, shape (n_runs, n_regions, n_steps), float32
    """
    ictal = (trace.x1 > ICTAL_X1_THRESHOLD).astype(np.float32)
    width = max(1, int(round(smooth_s * trace.sfreq)))
    # Moving maximum first (bridges the inter-discharge dips), then a moving average.
    held = maximum_filter1d(ictal, size=width, axis=-1, mode="nearest")
    return uniform_filter1d(held, size=width, axis=-1, mode="nearest")


def _resting_x1(x0: np.ndarray, i_ext1: float) -> np.ndarray:
    """``x1`` of the resting fixed point for excitability ``x0`` (lower branch, ``x1 < -4/3``).

    Solves ``4 (x1 - x0) = i_ext1 + 1 - 2 x1^2 - x1^3`` for the root left of the fold; above
    the critical excitability there is none and the fold point ``-4/3`` is returned.
    """
    out = np.empty_like(x0)
    for i, v in enumerate(x0):
        roots = np.roots([1.0, 2.0, 4.0, -4.0 * v - i_ext1 - 1.0])
        roots = roots[np.isreal(roots)].real
        roots = roots[roots <= -4.0 / 3.0]
        out[i] = roots.min() if roots.size else -4.0 / 3.0
    return out
