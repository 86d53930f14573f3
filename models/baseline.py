"""The classical baseline every learned model is measured against.

- Ictal recordings: the **Epileptogenicity Index** (EI) of Bartolomei F., Chauvel P. and
  Wendling F., "Epileptogenicity of brain structures in human temporal lobe epilepsy: a quantified
  study from intracerebral EEG", Brain 131(7):1818-1830, 2008, which clinicians compute today in
  AnyWave. Per channel:

  1. energy ratio ``ER[n] = (E_beta + E_gamma) / (E_theta + E_alpha)`` in sliding windows
     (:func:`energy_ratio`; bands theta 3.5-7.4, alpha 7.4-12.4, beta 12.4-24, gamma 24-97 Hz;
     1-s Hann windows stepped by 0.25 s as in AnyWave);
  2. Page-Hinkley cumulative sum ``U[N] = sum_{n<=N} (ER[n] - mean(ER[:n+1]) - bias)``; an alarm
     is raised when ``U[N] - min_{n<=N} U[n] > threshold`` and the detection time ``N_d`` is
     where that minimum was reached (:func:`page_hinkley`);
  3. ``EI_i = 1 / (N_d,i - N_0 + tau) * sum_{n=N_d,i}^{N_d,i + H} ER_i[n]``, with ``N_0`` the
     earliest detection over channels, then divided by its maximum over channels. Channels
     without an alarm get 0.

- Interictal recordings: a simple ranking (:func:`interictal_ranking`) by spike rate
  (:func:`models.spikes.detect_spikes`) or by the share of high-frequency (80-250 Hz) power.
- Around a seizure, :func:`ictal_score` reads both, as clinicians do: the EI averaged with the
  ranking of the same recording's pre-ictal part (the signal before ``onset - lead_s``).

Both are ratios within a channel, so they are unaffected by the per-channel scaling of the
clip store. Pure numpy / scipy: no Ray, no Beam, no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft
from scipy.signal import welch
from scipy.signal.windows import hann

from models.arrays import check_finite_rows, check_sfreq
from models.spikes import detect_spikes

logger = logging.getLogger(__name__)

#: Bands of the energy ratio (Hz, ``[low, high)``), as in Bartolomei et al. (2008).
EI_BANDS: Mapping[str, tuple[float, float]] = {
    "theta": (3.5, 7.4),
    "alpha": (7.4, 12.4),
    "beta": (12.4, 24.0),
    "gamma": (24.0, 97.0),
}

#: Methods of :func:`interictal_ranking`.
RANKING_METHODS = ("spike_rate", "hf_power")

# float64 samples per channel chunk of the windowed FFT (bounds memory to ~160 MB)
_CHUNK_ELEMENTS = 20_000_000


def _check_signal(signal: np.ndarray, sfreq: float) -> np.ndarray:
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2:
        raise ValueError(
            f"signal must have shape (n_chans, n_times), got {signal.shape}; "
            "pass signal[np.newaxis] for one channel."
        )
    check_sfreq(sfreq)
    check_finite_rows(signal, "signal", "channels", "drop or interpolate them first.")
    return signal


def energy_ratio(
    signal: np.ndarray,
    sfreq: float,
    *,
    window_s: float = 1.0,
    step_s: float = 0.25,
    bands: Mapping[str, tuple[float, float]] = EI_BANDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Bartolomei's energy ratio of fast to slow activity in sliding windows.

    Parameters
    ----------
    signal : ndarray, shape (n_chans, n_times)
        Signal (any unit).
    sfreq : float
        Sampling frequency in Hz.
    window_s, step_s : float
        Window length and step in seconds (AnyWave: 1 s and 0.25 s).
    bands : mapping
        The ``theta``, ``alpha``, ``beta`` and ``gamma`` bands ``[low, high)`` in Hz.

    Returns
    -------
    times : ndarray, shape (n_windows,)
        Centre of each window in seconds from the start of ``signal``.
    er : ndarray, shape (n_chans, n_windows)
        ``(E_beta + E_gamma) / (E_theta + E_alpha)``; 0 where the slow bands hold no energy.
    """
    signal = _check_signal(signal, sfreq)
    missing = {"theta", "alpha", "beta", "gamma"} - set(bands)
    if missing:
        raise ValueError(f"bands lack {sorted(missing)}; give theta, alpha, beta and gamma.")
    if window_s <= 0 or not 0 < step_s <= window_s:
        raise ValueError(f"{window_s=} and {step_s=} must be > 0 with step_s <= window_s.")
    win = round(window_s * sfreq)
    step = max(round(step_s * sfreq), 1)
    n_chans, n_times = signal.shape
    if win < 4 or n_times < win:
        raise ValueError(
            f"signal of {n_times} samples is shorter than one {window_s} s window at "
            f"{sfreq=}; pass a longer signal."
        )
    freqs = scipy.fft.rfftfreq(win, 1 / sfreq)
    masks = {}
    for name in ("theta", "alpha", "beta", "gamma"):
        low, high = bands[name]
        if not 0 <= low < high <= sfreq / 2:
            raise ValueError(
                f"band {name}=({low}, {high}) Hz must lie in [0, {sfreq / 2:g}] (Nyquist of "
                f"{sfreq=}); resample faster or pass bands= inside it."
            )
        masks[name] = (freqs >= low) & (freqs < high)
        if not masks[name].any():
            raise ValueError(
                f"band {name}=({low}, {high}) Hz holds no FFT bin of a {window_s} s window; "
                "lengthen window_s."
            )
    starts = np.arange(0, n_times - win + 1, step)
    taper = hann(win, sym=False)
    er = np.empty((n_chans, starts.size))
    per_chunk = max(_CHUNK_ELEMENTS // (starts.size * win), 1)
    index = starts[:, np.newaxis] + np.arange(win)  # (n_windows, win)
    for c0 in range(0, n_chans, per_chunk):
        segs = signal[c0 : c0 + per_chunk][:, index] * taper  # (C, W, win)
        power = np.abs(scipy.fft.rfft(segs, axis=-1)) ** 2  # (C, W, F)
        e = {name: power[..., m].sum(axis=-1) for name, m in masks.items()}
        fast = e["beta"] + e["gamma"]
        slow = e["theta"] + e["alpha"]
        er[c0 : c0 + per_chunk] = np.divide(fast, slow, out=np.zeros_like(fast), where=slow > 0)
    times = (starts + win / 2) / sfreq
    return times, er


def page_hinkley(
    er: np.ndarray, *, bias: float = 0.5, threshold: float = 15.0, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Page-Hinkley detection of an abrupt increase of the energy ratio, per channel.

    Parameters
    ----------
    er : ndarray, shape (n_chans, n_windows)
        Energy ratio (:func:`energy_ratio`).
    bias : float
        ``nu``: drift subtracted at every step, in energy-ratio units; larger values ignore
        slower, smaller rises and localise the change more sharply.
    threshold : float
        ``lambda``: rise of the cumulative sum above its running minimum that raises an alarm.
    start : int
        First window searched: the running mean uses every window, the running minimum (and so
        the detection) only windows from ``start`` on.

    Returns
    -------
    detection : ndarray of int, shape (n_chans,)
        Window index of the change (where the cumulative sum was lowest before the alarm);
        -1 for channels without alarm.
    alarm : ndarray of int, shape (n_chans,)
        Window index of the alarm; -1 for channels without alarm.
    """
    er = np.asarray(er, dtype=np.float64)
    if er.ndim != 2:
        raise ValueError(f"er must have shape (n_chans, n_windows), got {er.shape}.")
    if bias < 0 or threshold <= 0:
        raise ValueError(f"{bias=} must be >= 0 and {threshold=} > 0.")
    n_chans, n_win = er.shape
    if not 0 <= start < n_win:
        raise ValueError(f"{start=} must index one of the {n_win} windows.")
    running_mean = np.cumsum(er, axis=-1) / np.arange(1, n_win + 1)
    u = np.cumsum(er - running_mean - bias, axis=-1)[:, start:]
    rise = u - np.minimum.accumulate(u, axis=-1)
    over = rise > threshold
    has = over.any(axis=-1)
    alarm = np.where(has, over.argmax(axis=-1), -1)
    detection = np.full(n_chans, -1)
    for c in np.flatnonzero(has):
        seg = u[c, : alarm[c] + 1]
        detection[c] = seg.size - 1 - np.argmin(seg[::-1])  # last time the minimum was reached
    offset = np.where(has, start, 0)
    return detection + offset, alarm + offset


def epileptogenicity_index(
    signal: np.ndarray,
    sfreq: float,
    onset_s: float,
    *,
    window_s: float = 1.0,
    step_s: float = 0.25,
    bias: float = 0.5,
    threshold: float = 15.0,
    tau_s: float = 1.0,
    h_s: float = 5.0,
    baseline_s: float | None = 60.0,
    post_s: float | None = 60.0,
    lead_s: float = 5.0,
    bands: Mapping[str, tuple[float, float]] = EI_BANDS,
    return_detection: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Epileptogenicity Index of every channel around one seizure (Bartolomei et al., 2008).

    Parameters
    ----------
    signal : ndarray, shape (n_chans, n_times)
        Signal containing the seizure onset (any unit; per-channel scaling does not matter).
    sfreq : float
        Sampling frequency in Hz (> 194 Hz for the default 97 Hz gamma edge).
    onset_s : float
        Annotated electrographic onset, in seconds from the start of ``signal``.
    window_s, step_s : float
        Energy-ratio windows (AnyWave defaults: 1 s, 0.25 s).
    bias : float
        Page-Hinkley drift ``nu``, in energy-ratio units (0.5, as the published MATLAB
        reimplementations; AnyWave offers 0.1). It should exceed the window-to-window spread of
        the background energy ratio (~0.3 for a 1/f^2 background), else the detection time,
        the minimum of a nearly flat cumulative sum, wanders by seconds before the real change.
    threshold : float
        Page-Hinkley alarm threshold ``lambda`` (15, as the published reimplementations). The
        sum gains one term per window: at the 0.25 s step it climbs four times as fast as in a
        reimplementation with 1-s steps, so the same ``lambda`` alarms sooner here.
    tau_s : float
        ``tau`` > 0: delay (s) that halves the EI of a channel detected ``tau`` after the first
        (paper: 1 s).
    h_s : float
        ``H``: seconds of energy ratio summed after each detection (paper: 5 s).
    baseline_s : float | None
        Seconds before ``onset_s`` analysed (the running mean of the energy ratio starts there);
        ``None`` analyses from the start of ``signal``.
    post_s : float | None
        Seconds after ``onset_s`` analysed; ``None`` analyses to the end of ``signal``.
    lead_s : float
        Detections are searched from ``onset_s - lead_s`` on (fast activity often precedes the
        annotated onset by a few seconds).
    bands : mapping
        Bands of :func:`energy_ratio`.
    return_detection : bool
        Also return each channel's detection time ``N_d``.

    Returns
    -------
    ei : ndarray, shape (n_chans,)
        EI in [0, 1], 1 for the most epileptogenic channel, 0 for channels the detector did not
        flag. All zeros when no channel is flagged.
    detection_s : ndarray, shape (n_chans,)
        Only with ``return_detection``: the detection time of each channel (centre of its
        energy-ratio window), seconds from the start of ``signal``; NaN where not flagged.

    Notes
    -----
    The sum over ``H`` is taken as a mean over the windows available (identical after the
    normalisation when the ``H`` span fits in the analysed signal, robust when it does not).
    """
    signal = _check_signal(signal, sfreq)
    duration = signal.shape[1] / sfreq
    if not np.isfinite(onset_s) or not 0 <= onset_s < duration:
        raise ValueError(
            f"{onset_s=} lies outside the signal (0 to {duration:g} s); pass the onset in "
            "seconds from the start of this signal."
        )
    if tau_s <= 0 or h_s < 0 or lead_s < 0:
        raise ValueError(f"{tau_s=} must be > 0, {h_s=} and {lead_s=} >= 0.")
    for name, value in (("baseline_s", baseline_s), ("post_s", post_s)):
        if value is not None and value <= 0:
            raise ValueError(f"{name}={value} must be > 0 or None.")
    first = 0 if baseline_s is None else max(round((onset_s - baseline_s) * sfreq), 0)
    last = signal.shape[1] if post_s is None else round((onset_s + post_s) * sfreq)
    segment = signal[:, first : min(last, signal.shape[1])]
    times, er = energy_ratio(segment, sfreq, window_s=window_s, step_s=step_s, bands=bands)
    search_from = onset_s - lead_s - first / sfreq
    start = min(int(np.searchsorted(times, search_from)), times.size - 1)
    detection, _ = page_hinkley(er, bias=bias, threshold=threshold, start=start)
    ei = np.zeros(signal.shape[0])
    flagged = np.flatnonzero(detection >= 0)
    detection_s = np.full(signal.shape[0], np.nan)
    detection_s[flagged] = times[detection[flagged]] + first / sfreq
    if flagged.size == 0:
        logger.info("no channel crossed the Page-Hinkley threshold %g: EI is all zeros", threshold)
        return (ei, detection_s) if return_detection else ei
    n_h = round(h_s / step_s)
    t0 = times[detection[flagged]].min()
    for c in flagged:
        d = detection[c]
        ei[c] = er[c, d : d + n_h + 1].mean() / (times[d] - t0 + tau_s)
    top = ei.max()
    ei = ei / top if top > 0 else ei
    return (ei, detection_s) if return_detection else ei


def ictal_score(
    signal: np.ndarray,
    sfreq: float,
    onset_s: float,
    *,
    preictal: str | None = "spike_rate",
    min_preictal_s: float = 10.0,
    ei_params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Score of every channel around one seizure: its EI, read with its pre-ictal ranking.

    Parameters
    ----------
    signal : ndarray, shape (n_chans, n_times)
        Signal containing the seizure onset and the time before it.
    sfreq : float
        Sampling frequency in Hz.
    onset_s : float
        Annotated onset, in seconds from the start of ``signal``.
    preictal : {"spike_rate", "hf_power"} | None
        Method of :func:`interictal_ranking` applied to the signal before ``onset_s - lead_s``
        (the EI's ``lead_s``, 5 s by default, so that fast activity just before the annotated
        onset is not counted); ``None``: the EI alone.
    min_preictal_s : float
        Shortest pre-ictal part ranked; with less, the EI alone is returned.
    ei_params : mapping | None
        Keyword arguments of :func:`epileptogenicity_index`.

    Returns
    -------
    score : ndarray, shape (n_chans,)
        The EI, or the mean of the EI and the pre-ictal ranking; in [0, 1] either way.
    """
    params = dict(ei_params or {})
    ei = epileptogenicity_index(signal, sfreq, onset_s, **params)
    if preictal is None:
        return ei
    end = round((onset_s - params.get("lead_s", 5.0)) * sfreq)
    if end < min_preictal_s * sfreq:
        logger.info(
            "%.1f s before the onset (less %s s) is under %s s: the EI alone",
            onset_s, params.get("lead_s", 5.0), min_preictal_s,
        )  # fmt: skip
        return ei
    return 0.5 * (ei + interictal_ranking(signal[:, :end], sfreq, method=preictal))


def interictal_ranking(
    signal: np.ndarray,
    sfreq: float,
    *,
    method: str = "spike_rate",
    hf_band: tuple[float, float] = (80.0, 250.0),
    spike_params: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Rank channels of an interictal recording by spike rate or high-frequency power.

    Parameters
    ----------
    signal : ndarray, shape (n_chans, n_times)
        Interictal signal (any unit; per-channel scaling does not matter).
    sfreq : float
        Sampling frequency in Hz.
    method : {"spike_rate", "hf_power"}
        ``"spike_rate"``: spikes per minute (:func:`models.spikes.detect_spikes`);
        ``"hf_power"``: share of the power (Welch, 1-s segments) in ``hf_band`` relative to
        1 Hz .. Nyquist.
    hf_band : tuple of float
        High-frequency band in Hz; the upper edge is clipped to the Nyquist frequency.
    spike_params : mapping | None
        Keyword arguments of :func:`models.spikes.detect_spikes`.

    Returns
    -------
    score : ndarray, shape (n_chans,)
        The measure divided by its maximum over channels: 1 for the top channel, values in
        [0, 1]; all zeros when every channel scores 0.
    """
    if method not in RANKING_METHODS:
        raise ValueError(f"{method=} must be one of {RANKING_METHODS}.")
    signal = _check_signal(signal, sfreq)
    if method == "spike_rate":
        raw = detect_spikes(signal, sfreq, **dict(spike_params or {})).rate_per_minute()
    else:
        nyquist = sfreq / 2
        low, high = hf_band[0], min(hf_band[1], nyquist)
        if not 1.0 <= low < high:
            raise ValueError(
                f"{hf_band=} must satisfy 1 <= low < high with low below the Nyquist "
                f"frequency {nyquist:g} Hz of {sfreq=}."
            )
        nperseg = min(signal.shape[1], round(sfreq))
        freqs, psd = welch(signal, fs=sfreq, nperseg=nperseg, axis=-1)
        total = psd[:, freqs >= 1.0].sum(axis=-1)
        band = psd[:, (freqs >= low) & (freqs <= high)].sum(axis=-1)
        raw = np.divide(band, total, out=np.zeros_like(band), where=total > 0)
    top = raw.max(initial=0.0)
    return raw / top if top > 0 else np.zeros_like(raw, dtype=np.float64)
