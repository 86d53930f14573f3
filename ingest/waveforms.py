"""Building blocks of synthetic SEEG signals (pure numpy): background, ictal rhythms, spikes.

Every function returns float32 arrays in microvolts (or unit-variance noise), with ``sfreq``
explicit, and draws its randomness from the ``rng`` it is given. The simulator
(:mod:`ingest.simulate`) mixes these per brain region and per contact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

logger = logging.getLogger(__name__)


def pink_noise(
    n_signals: int,
    n_times: int,
    sfreq: float,
    *,
    exponent: float | np.ndarray = 1.0,
    rng: np.random.Generator,
    f_min: float = 0.5,
) -> np.ndarray:
    """Gaussian noise with a ``1 / f**exponent`` power spectrum, unit standard deviation.

    Parameters
    ----------
    n_signals, n_times : int
        Output shape.
    sfreq : float
        Sampling rate in Hz.
    exponent : float or ndarray, shape (n_signals,)
        Spectral exponent of the power (1 = pink, 2 = brown).
    rng : numpy.random.Generator
        Random source.
    f_min : float
        Below this frequency the spectrum is flat (no unbounded drift).

    Returns
    -------
    noise : ndarray, shape (n_signals, n_times), float32
    """
    expo = np.broadcast_to(np.asarray(exponent, dtype=float), (n_signals,))

    def power_law(spec: np.ndarray, freqs: np.ndarray, rows: slice) -> None:
        spec *= np.maximum(freqs, f_min)[None, :] ** (-expo[rows, None] / 2.0)

    return shaped_noise(n_signals, n_times, sfreq, power_law, rng=rng)


def shaped_noise(
    n_signals: int,
    n_times: int,
    sfreq: float,
    shape: Callable[[np.ndarray, np.ndarray, slice], None],
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """White Gaussian noise filtered in the frequency domain, unit standard deviation, float32.

    ``shape(spec, freqs, rows)`` scales, in place, the spectrum ``spec`` (shape
    ``(len(rows), n_freqs)``) of the signals ``rows`` at frequencies ``freqs`` (Hz); the DC
    bin is then zeroed. Signals are drawn 8 at a time (bounded memory for long recordings).

    Returns
    -------
    noise : ndarray, shape (n_signals, n_times), float32
    """
    n_fft = next_fast_len(n_times, real=True)
    freqs = rfftfreq(n_fft, 1.0 / sfreq)
    out = np.empty((n_signals, n_times), dtype=np.float32)
    for start in range(0, n_signals, 8):
        rows = slice(start, min(start + 8, n_signals))
        spec = rfft(rng.standard_normal((rows.stop - start, n_fft)), axis=-1)
        shape(spec, freqs, rows)
        spec[:, 0] = 0.0
        sig = irfft(spec, n=n_fft, axis=-1)[:, :n_times]
        out[rows] = sig / (sig.std(axis=-1, keepdims=True) + 1e-12)
    return out


def chirp_oscillation(
    t: np.ndarray,
    freq_start: float,
    freq_end: float,
    duration_s: float,
    *,
    rng: np.random.Generator,
    phase_noise: float = 0.6,
    sharpness: float = 0.0,
) -> np.ndarray:
    """Band-limited oscillation whose frequency glides exponentially from start to end.

    Seizure rhythms slow down: low-voltage fast activity (60-120 Hz) decays to beta at onset,
    and rhythmic spiking slows from ~8 Hz to ~2-3 Hz towards the offset. A random walk on the
    phase widens the line into a band, as in real recordings.

    Parameters
    ----------
    t : ndarray, shape (n_times,)
        Time since the onset of this rhythm in seconds (negative values give 0).
    freq_start, freq_end : float
        Frequency in Hz at ``t = 0`` and at ``t = duration_s``.
    duration_s : float
        Glide duration; the frequency stays at ``freq_end`` after it.
    rng : numpy.random.Generator
        Random source of the phase noise.
    phase_noise : float
        Standard deviation of the phase random walk per square-root second (radians).
    sharpness : float
        0 gives a sinusoid; larger values give sharp spikes (a von Mises pulse train, the
        shape of rhythmic ictal spikes).

    Returns
    -------
    wave : ndarray, shape (n_times,), float32, zero-mean, peak amplitude about 1
    """
    dt = float(t[1] - t[0]) if t.size > 1 else 1.0
    frac = np.clip(t / duration_s, 0.0, 1.0)
    freq = freq_start * (freq_end / freq_start) ** frac
    walk = np.cumsum(rng.standard_normal(t.size)) * (phase_noise * np.sqrt(dt))
    phase = 2.0 * np.pi * np.cumsum(freq) * dt + walk
    if sharpness <= 0:
        return np.cos(phase).astype(np.float32)
    pulse = np.exp(sharpness * (np.cos(phase) - 1.0))
    return (pulse - pulse.mean()).astype(np.float32)


def spike_template(
    sfreq: float, *, width_s: float, rng: np.random.Generator, with_slow_wave: bool = True
) -> np.ndarray:
    """One interictal epileptiform spike: a sharp transient followed by a slow wave.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    width_s : float
        Duration of the sharp component (20-70 ms for a spike).
    rng : numpy.random.Generator
        Random source (slow-wave width and relative amplitude).
    with_slow_wave : bool
        Add the after-going slow wave (150-300 ms).

    Returns
    -------
    template : ndarray, shape (n_template,), float32
        Negative peak of -1 at the spike; positive slow wave after it.
    """
    slow_s = rng.uniform(0.15, 0.3)
    n = int(np.ceil((width_s + 2 * slow_s + 0.05) * sfreq))
    t = np.arange(n) / sfreq
    t_peak = width_s
    sharp = -np.exp(-0.5 * ((t - t_peak) / (width_s / 4.0)) ** 2)
    lead = 0.25 * np.exp(-0.5 * ((t - t_peak + width_s / 2.5) / (width_s / 6.0)) ** 2)
    wave = sharp + lead
    if with_slow_wave:
        centre = t_peak + width_s / 2 + slow_s / 1.5
        wave = wave + rng.uniform(0.25, 0.5) * np.exp(-0.5 * ((t - centre) / (slow_s / 3)) ** 2)
    return wave.astype(np.float32)


def ripple_template(sfreq: float, *, freq: float, rng: np.random.Generator) -> np.ndarray:
    """A high-frequency oscillation (ripple / fast ripple): a Gaussian-windowed burst.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    freq : float
        Oscillation frequency in Hz; must stay below ``0.45 * sfreq``.
    rng : numpy.random.Generator
        Random source (duration 30-80 ms, phase).

    Returns
    -------
    template : ndarray, shape (n_template,), float32, peak about 1
    """
    if freq >= 0.45 * sfreq:
        raise ValueError(f"ripple {freq=} Hz must be below 0.45 * {sfreq=} Hz.")
    dur = rng.uniform(0.03, 0.08)
    n = int(np.ceil(dur * 2 * sfreq))
    t = np.arange(n) / sfreq - dur
    env = np.exp(-0.5 * (t / (dur / 3.0)) ** 2)
    return (env * np.cos(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)


def add_events(signal: np.ndarray, template: np.ndarray, sample: int, amplitude: float) -> None:
    """Add ``amplitude * template`` into ``signal`` starting at ``sample`` (clipped at the end).

    Parameters
    ----------
    signal : ndarray, shape (n_times,)
        Modified in place.
    template : ndarray, shape (n_template,)
        Waveform.
    sample : int
        First sample.
    amplitude : float
        Scale (µV).
    """
    stop = min(signal.size, sample + template.size)
    if sample < 0 or stop <= sample:
        return
    signal[sample:stop] += amplitude * template[: stop - sample]


def line_noise(
    n_times: int,
    sfreq: float,
    line_freq: float,
    amplitudes: np.ndarray,
    *,
    rng: np.random.Generator,
    harmonic_ratio: float = 0.3,
) -> np.ndarray:
    """Power-line interference: the fundamental and its first harmonic (when below Nyquist).

    Parameters
    ----------
    n_times : int
        Number of samples.
    sfreq : float
        Sampling rate in Hz.
    line_freq : float
        50 or 60 Hz.
    amplitudes : ndarray, shape (n_signals,)
        Amplitude of the fundamental per signal (µV).
    rng : numpy.random.Generator
        Random source (phases).
    harmonic_ratio : float
        Amplitude of the harmonic relative to the fundamental.

    Returns
    -------
    noise : ndarray, shape (n_signals, n_times), float32
    """
    t = np.arange(n_times) / sfreq
    amps = np.asarray(amplitudes, dtype=float)
    phases = rng.uniform(0, 2 * np.pi, size=(amps.size, 2))
    out = amps[:, None] * np.sin(2 * np.pi * line_freq * t[None, :] + phases[:, :1])
    if 2 * line_freq < sfreq / 2:
        out += (harmonic_ratio * amps)[:, None] * np.sin(
            2 * np.pi * 2 * line_freq * t[None, :] + phases[:, 1:]
        )
    return out.astype(np.float32)


def ecg(n_times: int, sfreq: float, *, rng: np.random.Generator) -> np.ndarray:
    """An electrocardiogram lead (P, QRS, T waves) at 55-90 beats per minute, in µV.

    Returns
    -------
    ecg : ndarray, shape (n_times,), float32
    """
    rate_hz = rng.uniform(55, 90) / 60.0
    out = np.zeros(n_times, dtype=np.float32)
    t = np.arange(int(0.8 * sfreq)) / sfreq
    beat = (
        0.12 * np.exp(-0.5 * ((t - 0.10) / 0.025) ** 2)
        - 0.10 * np.exp(-0.5 * ((t - 0.18) / 0.008) ** 2)
        + 1.00 * np.exp(-0.5 * ((t - 0.20) / 0.010) ** 2)
        - 0.25 * np.exp(-0.5 * ((t - 0.22) / 0.010) ** 2)
        + 0.30 * np.exp(-0.5 * ((t - 0.45) / 0.045) ** 2)
    ).astype(np.float32)
    amp = rng.uniform(600, 1500)
    time = rng.uniform(0, 1 / rate_hz)
    while time * sfreq < n_times:
        add_events(out, beat, int(time * sfreq), amp * rng.uniform(0.9, 1.1))
        time += rng.normal(1.0, 0.05) / rate_hz
    return out


def scalp_eeg(n_times: int, sfreq: float, *, rng: np.random.Generator) -> np.ndarray:
    """A scalp EEG lead: pink background, waxing and waning alpha, muscle bursts, in µV.

    Returns
    -------
    eeg : ndarray, shape (n_times,), float32
    """
    t = np.arange(n_times) / sfreq
    background = 15.0 * pink_noise(1, n_times, sfreq, exponent=1.2, rng=rng)[0]
    waxing = 0.5 * (1 + np.sin(2 * np.pi * t / rng.uniform(4, 9)))
    alpha = 12.0 * waxing * chirp_oscillation(t, 10.0, 10.0, 1.0, rng=rng, phase_noise=1.0)
    muscle = (
        rng.standard_normal(n_times)
        * 5.0
        * (pink_noise(1, n_times, sfreq, exponent=2.0, rng=rng)[0] > 1.5)
    )
    return (background + alpha + muscle).astype(np.float32)


def pops(
    n_times: int, sfreq: float, *, rate_per_min: float, rng: np.random.Generator
) -> np.ndarray:
    """A popping electrode: sudden steps that decay exponentially (a loose contact), in µV.

    Returns
    -------
    artefact : ndarray, shape (n_times,), float32
    """
    out = np.zeros(n_times, dtype=np.float32)
    n_pops = rng.poisson(rate_per_min * n_times / sfreq / 60.0)
    for _ in range(n_pops):
        tau = rng.uniform(0.05, 0.3)
        decay = np.exp(-np.arange(int(5 * tau * sfreq)) / (tau * sfreq)).astype(np.float32)
        add_events(
            out, decay, int(rng.integers(0, n_times)), rng.choice([-1, 1]) * rng.uniform(300, 1500)
        )
    return out


def movement_burst(n_samples: int, sfreq: float, *, rng: np.random.Generator) -> np.ndarray:
    """A movement artefact: slow large deflection with superimposed muscle activity, in µV.

    Returns
    -------
    burst : ndarray, shape (n_samples,), float32, tapered to 0 at both ends
    """
    slow = pink_noise(1, n_samples, sfreq, exponent=2.5, rng=rng)[0] * rng.uniform(150, 600)
    muscle = rng.standard_normal(n_samples).astype(np.float32) * rng.uniform(10, 40)
    taper = np.sin(np.linspace(0, np.pi, n_samples)) ** 0.5
    return ((slow + muscle) * taper).astype(np.float32)
