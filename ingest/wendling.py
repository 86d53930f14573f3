"""Wendling's neural-mass model of hippocampal seizures on a network of regions (pure numpy).

Wendling, Bartolomei, Bellanger and Chauvel, *Epileptic fast activity can be explained by a
model of impaired GABAergic dendritic inhibition*, Eur J Neurosci 2002. One region has four
populations: pyramidal cells, excitatory interneurons, slow dendritic-projecting inhibitory
interneurons (synaptic gain ``B``) and fast somatic-projecting inhibitory interneurons (``G``);
``A`` is the excitatory gain. Each synapse is a second-order linear filter
(``h(t) = W w t exp(-w t)``, rates ``a``, ``b``, ``g``) and each population turns its mean
membrane potential into a firing rate through the sigmoid ``S``. The field potential of a region
is the pyramidal membrane potential ``v = y1 - y2 - y3``.

Varying ``(A, B, G)`` takes a region through the activity types of the paper: background,
sporadic spikes (interictal), sustained spike discharges, slow rhythmic activity and the
low-voltage rapid activity of seizure onset (``B`` falls: impaired dendritic inhibition). A
seizure here is a schedule of these parameters per region (:func:`seizure_schedule`), as in the
paper; regions are coupled through the pyramidal firing of their neighbours, which enters as
excitatory input (``p``), so a seizing region also drives the others through the dynamics.

Integration: each synaptic filter exactly over a step with the sigmoid outputs held (an
exponential integrator, stable at any step; 500 steps/s by default), vectorised over runs and
regions. This family shares nothing with :mod:`ingest.epileptor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ingest.errors import ConfigError

logger = logging.getLogger(__name__)

#: (A, B, G) of the activity types used by the simulator (Wendling et al. 2002, Fig. 4, with
#: the excitatory gain raised in seizure): background, interictal spiking, onset low-voltage
#: fast activity, then rhythmic spiking that slows towards the offset.
BACKGROUND = (3.5, 22.0, 10.0)
SPORADIC_SPIKES = (4.3, 30.0, 18.0)
FAST_ONSET = (5.0, 3.0, 30.0)
RHYTHMIC_SPIKES = (5.0, 25.0, 15.0)
SLOW_RHYTHMIC = (5.0, 40.0, 15.0)


@dataclass(frozen=True)
class WendlingParams:
    """Fixed constants of the model (defaults of Wendling et al. 2002).

    Parameters
    ----------
    a, b, g : float
        Rates (1/s) of the excitatory, slow inhibitory and fast inhibitory synapses.
    c : float
        Connectivity constant ``C``; the eight constants are fractions of it.
    e0, v0, r : float
        Sigmoid ``S(v) = 2 e0 / (1 + exp(r (v0 - v)))``: half maximal rate, threshold (mV), slope.
    p_mean, p_std : float
        Mean and standard deviation of the extrinsic input (pulses/s), white; ``p_std`` is the
        per-step deviation at 1000 steps/s (rescaled for other rates).
    coupling : float
        Gain of the input a region receives from its neighbours' pyramidal firing (pulses/s
        per unit of connectome weight times ``S``).
    sfreq : float
        Integration steps per second.
    """

    a: float = 100.0
    b: float = 50.0
    g: float = 500.0
    c: float = 135.0
    e0: float = 2.5
    v0: float = 6.0
    r: float = 0.56
    p_mean: float = 90.0
    p_std: float = 30.0
    coupling: float = 40.0
    sfreq: float = 500.0

    def __post_init__(self) -> None:
        if self.sfreq < 200.0:
            raise ConfigError(
                f"sfreq={self.sfreq} is too low: the fast activity (up to ~40 Hz) and the "
                "sigmoid feedback need at least 200 steps per second."
            )
        if self.p_std < 0 or self.coupling < 0:
            raise ConfigError(f"p_std={self.p_std} and coupling={self.coupling} must be >= 0.")


def sigmoid(v: np.ndarray, params: WendlingParams) -> np.ndarray:
    """Firing rate (pulses/s) of a population at mean membrane potential ``v`` (mV)."""
    return 2.0 * params.e0 / (1.0 + np.exp(params.r * (params.v0 - v)))


def simulate_network(
    schedule: Callable[[np.ndarray], np.ndarray],
    n_runs: int,
    n_steps: int,
    weights: np.ndarray,
    *,
    params: WendlingParams = WendlingParams(),
    rng: np.random.Generator,
    warmup_s: float = 2.0,
    chunk: int = 2000,
) -> np.ndarray:
    """Integrate coupled Wendling regions with time-varying synaptic gains.

    Parameters
    ----------
    schedule : callable
        ``schedule(t)`` with ``t`` of shape (n_t,) in seconds (negative during the warm-up)
        returns the gains ``A, B, G`` of every run and region, shape (3, n_runs, n_regions, n_t)
        (see :func:`seizure_schedule`); called chunk by chunk so memory stays bounded.
    n_runs, n_steps : int
        Runs integrated together and steps per run.
    weights : ndarray, shape (n_regions, n_regions)
        Connectome (``weights[i, j]``: input of region i from region j).
    params : WendlingParams
        Constants.
    rng : numpy.random.Generator
        Source of the extrinsic input noise.
    warmup_s : float
        Seconds integrated before step 0 and dropped, so the output starts on the attractor.
    chunk : int
        Steps per schedule call and noise draw.

    Returns
    -------
    lfp : ndarray, shape (n_runs, n_regions, n_steps), float32
        Pyramidal membrane potential ``y1 - y2 - y3`` in mV.
    """
    n_regions = weights.shape[0]
    if weights.shape != (n_regions, n_regions):
        raise ValueError(f"weights has shape {weights.shape}; expected square.")
    p = params
    dt = 1.0 / p.sfreq
    c = p.c
    # Arguments of the four sigmoids: v, C1 y0, C3 y0, C5 y0 - C6 y4 (rows of `u`).
    # Each PSP obeys y'' + 2 w y' + w^2 y = F: integrated exactly for F held over a step
    # (stable at any step; the sigmoids are the only explicit part).
    w_ = np.array([p.a, p.a, p.b, p.g, p.b])[:, None, None]
    e = np.exp(-w_ * dt)
    k_yy, k_yz, k_yf = e * (1 + w_ * dt), e * dt, (1 - e * (1 + w_ * dt)) / w_**2
    k_zy, k_zz, k_zf = -e * w_**2 * dt, e * (1 - w_ * dt), e * dt
    y = np.zeros((5, n_runs, n_regions))
    z = np.zeros((5, n_runs, n_regions))
    force = np.zeros((5, n_runs, n_regions))
    u = np.empty((4, n_runs, n_regions))
    s = np.empty((4, n_runs, n_regions))
    w_t = np.ascontiguousarray(np.asarray(weights, dtype=np.float64).T)
    two_e0, rr, v0 = 2.0 * p.e0, p.r, p.v0
    # The input is white: its per-step deviation scales with 1/sqrt(dt) (p_std is per ms).
    noise_std = p.p_std * np.sqrt(1e-3 / dt)
    out = np.empty((n_runs, n_regions, n_steps), dtype=np.float32)
    n_warm = int(round(warmup_s * p.sfreq))
    for first in range(-n_warm, n_steps, chunk):
        last = min(first + chunk, n_steps)
        gains = schedule(np.arange(first, last) / p.sfreq)  # (3, R, N, n_t)
        # per-step prefactors of the forcing terms: A a, B b C4, G g C7, B b
        fa = gains[0] * p.a
        fb = gains[1] * (p.b * 0.25 * c)
        fg = gains[2] * (p.g * 0.8 * c)
        fb4 = gains[1] * p.b
        noise = p.p_mean + noise_std * rng.standard_normal((last - first, n_runs, n_regions))
        for i in range(last - first):
            np.subtract(y[1], y[2], out=u[0])
            u[0] -= y[3]
            np.multiply(y[0], c, out=u[1])
            np.multiply(y[0], 0.25 * c, out=u[2])
            np.multiply(y[0], 0.3 * c, out=u[3])
            u[3] -= 0.1 * c * y[4]
            # S(u) = 2 e0 / (1 + exp(r (v0 - u)))
            np.subtract(v0, u, out=s)
            s *= rr
            np.exp(s, out=s)
            s += 1.0
            np.divide(two_e0, s, out=s)
            step = first + i
            if step >= 0:
                out[:, :, step] = u[0]
            inp = noise[i] + p.coupling * (s[0] @ w_t) + 0.8 * c * s[1]
            np.multiply(fa[..., i], s[0], out=force[0])
            np.multiply(fa[..., i], inp, out=force[1])
            np.multiply(fb[..., i], s[2], out=force[2])
            np.multiply(fg[..., i], s[3], out=force[3])
            np.multiply(fb4[..., i], s[2], out=force[4])
            y, z = k_yy * y + k_yz * z + k_yf * force, k_zy * y + k_zz * z + k_zf * force
    return out


def seizure_schedule(
    t: np.ndarray,
    base: np.ndarray,
    onsets_s: np.ndarray,
    durations_s: np.ndarray,
    fast_s: np.ndarray,
    *,
    ramp_s: float = 1.5,
) -> np.ndarray:
    """Synaptic gains of every region through a run: a seizure is a path through the types.

    A region with a finite onset goes from its resting gains ``base`` to the low-voltage fast
    activity type (:data:`FAST_ONSET`) over ``ramp_s``, holds it for ``fast_s``, moves to
    rhythmic spiking (:data:`RHYTHMIC_SPIKES`), glides to slower, sparser discharges
    (:data:`SLOW_RHYTHMIC`) and returns to ``base`` at its offset.

    Parameters
    ----------
    t : ndarray, shape (n_t,)
        Times in seconds.
    base : ndarray, shape (3, n_regions)
        Resting ``A, B, G`` of each region.
    onsets_s, durations_s, fast_s : ndarray, shape (n_runs, n_regions)
        Onset (NaN: the region does not seize in that run), seizure duration and duration of
        the fast onset phase, in seconds.
    ramp_s : float
        Duration of each transition.

    Returns
    -------
    gains : ndarray, shape (3, n_runs, n_regions, n_t)
    """
    base = np.asarray(base, dtype=np.float64)
    onsets_s = np.atleast_2d(onsets_s)
    n_runs, n_regions = onsets_s.shape
    out = np.empty((3, n_runs, n_regions, t.size))
    out[:] = base[:, None, :, None]
    fast, rhythm, slow = (
        np.asarray(x, dtype=np.float64)[:, None]
        for x in (FAST_ONSET, RHYTHMIC_SPIKES, SLOW_RHYTHMIC)
    )
    durations_s, fast_s = np.atleast_2d(durations_s), np.atleast_2d(fast_s)
    for run, r in zip(*np.nonzero(np.isfinite(onsets_s)), strict=True):
        on, dur, lvfa = onsets_s[run, r], durations_s[run, r], fast_s[run, r]
        tau = t - on
        if tau[-1] < 0 or tau[0] > dur + ramp_s:
            continue
        up = np.clip(tau / ramp_s, 0.0, 1.0)  # rest -> fast onset
        to_rhythm = np.clip((tau - lvfa) / ramp_s, 0.0, 1.0)
        glide = np.clip((tau - lvfa - ramp_s) / max(dur - lvfa - 2 * ramp_s, 1.0), 0.0, 1.0)
        down = np.clip((tau - dur) / ramp_s, 0.0, 1.0)  # -> rest at the offset
        ictal = fast + to_rhythm * (rhythm - fast) + glide * (slow - rhythm)
        rest = base[:, r, None]
        out[:, run, r] = rest + up * (1.0 - down) * (ictal - rest)
    return out


__all__ = [
    "BACKGROUND",
    "FAST_ONSET",
    "RHYTHMIC_SPIKES",
    "SLOW_RHYTHMIC",
    "SPORADIC_SPIKES",
    "WendlingParams",
    "seizure_schedule",
    "sigmoid",
    "simulate_network",
]
