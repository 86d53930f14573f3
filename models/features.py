"""Per-clip, per-channel feature vectors of the SVM stage (spikes, wavelet packets, line length).

:func:`clip_features` turns a stack of clips into one feature vector per clip and channel:

- ``spike_rate``: interictal spikes per minute found by :func:`models.spikes.detect_spikes`
  (Janca et al., 2015) in the clip;
- ``log_line_length``: ``log10`` of the mean absolute sample-to-sample difference per second
  (Esteller et al., 2001), a cheap marker of fast, sharp activity;
- ``wp_log_power_<band>``: ``log10`` of the signal power in physiological bands, from a
  wavelet-packet decomposition (``pywt.WaveletPacket``): the leaves of the full tree at one
  level are equal-width frequency bands (ordered by frequency with ``order="freq"``), and a
  band's power is the share of the packet energy in the leaves whose centre lies in it times the
  clip's mean square (so the powers obey Parseval's relation exactly, whatever the clip length).

With ``energy_ratio=True`` a last column ``log_energy_ratio`` is the ``log10`` of Bartolomei's
energy ratio of fast to slow activity, ``(E_beta + E_gamma) / (E_theta + E_alpha)`` in the bands
of the Epileptogenicity Index (:data:`models.baseline.EI_BANDS`), from the same packet
decomposition: the classical baseline's ictal evidence without its onset annotation.

Every feature is a per-clip quantity, so a recording's channel vector is the **mean over its
clips** (:class:`RecordingFeatureMean`, fed chunk by chunk: training over the store's clips and
serving over a streamed recording use this one accumulator), followed by the **peak** (maximum
over the clips) of :data:`PEAK_FEATURES`: a seizure's onset lasts a few clips of a recording,
and its mean dilutes it. Which of these columns a model uses is its choice (the SVM's
:data:`FEATURE_SETS`, recorded in its ``feature_names``); serving computes them all and
selects. The bands a store can hold are :func:`svm_bands` of its rate, the same in training and
serving. The log features take :data:`POWER_FLOOR` so flat or zero-padded channels stay finite.

Pure numpy / scipy / PyWavelets: no Ray, no Beam, no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pywt

from models.arrays import check_sfreq
from models.baseline import EI_BANDS
from models.spikes import detect_spikes

logger = logging.getLogger(__name__)

#: Physiological bands (Hz, ``[low, high)``) of the wavelet-packet powers. High gamma and
#: ripples share 80-250 Hz; fast ripples need a stored rate of at least 500 Hz.
DEFAULT_BANDS: Mapping[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 80.0),
    "ripple": (80.0, 250.0),
    "fast_ripple": (250.0, 500.0),
}

#: Added to powers (and line length) before the log: a flat channel gives -12, not -inf. Clips
#: scaled per channel at ingest (unit variance) sit many decades above it.
POWER_FLOOR = 1e-12

#: Settings of the spike detector inside a 5-s clip: 0.25 s edges instead of the reference's 1 s
#: (the rate is per analysed second, so it is unbiased), one distribution window per clip.
CLIP_SPIKE_PARAMS: Mapping[str, float] = {"edge_s": 0.25}


#: Clip features whose maximum over a recording's clips :class:`RecordingFeatureMean` adds
#: (as ``peak_<name>``), where the recording has them.
PEAK_FEATURES = ("spike_rate", "log_line_length", "log_energy_ratio")
#: The SVM's feature sets (``model_hparams["svm"]["features"]``): ``"v1"`` the mean of the
#: spike rate, line length and band powers (every SVM before the energy ratio existed);
#: ``"v2"`` adds the mean energy ratio and the :data:`PEAK_FEATURES` peaks.
FEATURE_SETS = ("v1", "v2")


def feature_names(
    bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS, *, energy_ratio: bool = False
) -> tuple[str, ...]:
    """Names of the columns :func:`clip_features` returns for ``bands``, in order."""
    names = ("spike_rate", "log_line_length", *(f"wp_log_power_{name}" for name in bands))
    return (*names, "log_energy_ratio") if energy_ratio else names


def has_energy_ratio(sfreq: float) -> bool:
    """Whether clips at ``sfreq`` hold every band of the energy ratio (gamma to 97 Hz)."""
    return max(high for _, high in EI_BANDS.values()) <= sfreq / 2


def select_features(names: Sequence[str], feature_set: str) -> list[str]:
    """The columns of ``names`` (a :class:`RecordingFeatureMean`'s) in ``feature_set``.

    Parameters
    ----------
    names : sequence of str
        Available columns, in order.
    feature_set : {"v1", "v2"}
        One of :data:`FEATURE_SETS`.

    Returns
    -------
    list of str
        In the order of ``names``.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature set {feature_set!r} must be one of {FEATURE_SETS}.")
    if feature_set == "v2":
        return list(names)
    return [n for n in names if n != "log_energy_ratio" and not n.startswith("peak_")]


#: Column names of :func:`clip_features` with the default bands.
FEATURE_NAMES: tuple[str, ...] = feature_names(DEFAULT_BANDS)


def wavelet_level(
    n_samples: int, sfreq: float, *, wavelet: str = "db10", resolution_hz: float = 1.0
) -> int:
    """Smallest packet level whose leaves are at most ``resolution_hz`` wide.

    Capped at ``pywt.dwt_max_level`` of the clip length (deeper levels would be dominated by
    boundary effects).

    Parameters
    ----------
    n_samples : int
        Clip length in samples.
    sfreq : float
        Sampling frequency in Hz.
    wavelet : str
        PyWavelets wavelet name.
    resolution_hz : float
        Wanted leaf width in Hz; a level-``L`` leaf is ``sfreq / 2 ** (L + 1)`` wide.

    Returns
    -------
    level : int
        Decomposition level, >= 1.
    """
    if resolution_hz <= 0:
        raise ValueError(f"{resolution_hz=} must be > 0.")
    max_level = pywt.dwt_max_level(n_samples, pywt.Wavelet(wavelet).dec_len)
    if max_level < 1:
        raise ValueError(
            f"clips of {n_samples=} are too short for a {wavelet} packet decomposition; "
            "use longer clips or a shorter wavelet."
        )
    wanted = int(np.ceil(np.log2(sfreq / 2 / resolution_hz)))
    return int(np.clip(wanted, 1, max_level))


def _band_leaves(
    level: int, sfreq: float, bands: Mapping[str, tuple[float, float]]
) -> list[np.ndarray]:
    """Indices of the frequency-ordered leaves whose centre lies in each band."""
    nyquist = sfreq / 2
    width = nyquist / 2**level
    centres = (np.arange(2**level) + 0.5) * width
    leaves = []
    for name, (low, high) in bands.items():
        if not 0 <= low < high:
            raise ValueError(f"band {name!r}=({low}, {high}) must satisfy 0 <= low < high.")
        if low >= nyquist:
            raise ValueError(
                f"band {name!r}=({low}, {high}) Hz lies above the Nyquist frequency "
                f"{nyquist:g} Hz of {sfreq=}: store clips at >= {2 * high:g} Hz or pass bands= "
                "without it."
            )
        idx = np.flatnonzero((centres >= low) & (centres < high))
        if idx.size == 0:
            raise ValueError(
                f"band {name!r}=({low}, {high}) Hz is narrower than the {width:.3g} Hz "
                f"wavelet-packet leaves at level {level}: use longer clips or wider bands."
            )
        leaves.append(idx)
    return leaves


def wavelet_band_power(
    clips: np.ndarray,
    sfreq: float,
    *,
    bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS,
    wavelet: str = "db10",
    level: int | None = None,
) -> np.ndarray:
    """Signal power in frequency bands from a wavelet-packet decomposition.

    Parameters
    ----------
    clips : ndarray, shape (..., n_samples)
        Signals, decomposed along the last axis (any leading shape, e.g. (n_clips, n_chans)).
    sfreq : float
        Sampling frequency in Hz.
    bands : mapping of str to (float, float)
        Band edges ``[low, high)`` in Hz, in output order.
    wavelet : str
        PyWavelets wavelet name (orthogonal). The default db10 keeps ~95% of a pure tone's
        power in its band at 1000 Hz; db4 leaks ~20% into the neighbours.
    level : int | None
        Packet level; ``None`` picks :func:`wavelet_level` (leaves of <= 1 Hz, capped by the
        clip length).

    Returns
    -------
    power : ndarray, shape (..., n_bands)
        Mean-square power of each band (signal units squared); the powers of bands tiling
        ``[0, sfreq / 2)`` sum to the clip's mean square.
    """
    clips = np.asarray(clips, dtype=np.float64)
    n_samples = clips.shape[-1]
    if level is None:
        level = wavelet_level(n_samples, sfreq, wavelet=wavelet)
    elif not 1 <= level <= pywt.dwt_max_level(n_samples, pywt.Wavelet(wavelet).dec_len):
        raise ValueError(
            f"{level=} must be in [1, pywt.dwt_max_level] for {n_samples=} and {wavelet=}; "
            "pass level=None to choose it from the clip length."
        )
    leaves = _band_leaves(level, sfreq, bands)
    packet = pywt.WaveletPacket(clips, wavelet, mode="periodization", maxlevel=level, axis=-1)
    energy = np.stack(
        [np.sum(node.data**2, axis=-1) for node in packet.get_level(level, order="freq")],
        axis=-1,
    )  # (..., 2 ** level)
    total = energy.sum(axis=-1, keepdims=True)
    share = np.divide(energy, total, out=np.zeros_like(energy), where=total > 0)
    mean_square = np.mean(clips**2, axis=-1, keepdims=True)
    return np.stack([share[..., idx].sum(axis=-1) for idx in leaves], axis=-1) * mean_square


def clip_spike_rate(
    clips: np.ndarray, sfreq: float, spike_params: Mapping[str, float] | None = None
) -> np.ndarray:
    """Interictal spikes per minute (:func:`models.spikes.detect_spikes`) in every clip.

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, n_samples)
        Finite clips (any unit: the detector's threshold is relative to each clip's envelope).
    sfreq : float
    spike_params : mapping | None
        Keyword arguments of the detector; ``None`` uses :data:`CLIP_SPIKE_PARAMS`.

    Returns
    -------
    ndarray, shape (n_clips, n_chans), float64
    """
    n_clips, n_chans, n_samples = clips.shape
    params = dict(CLIP_SPIKE_PARAMS if spike_params is None else spike_params)
    # the detector converts its row chunks to float64 itself (exactly: the same rates)
    x = np.asarray(clips).reshape(n_clips * n_chans, n_samples)
    return detect_spikes(x, sfreq, **params).rate_per_minute().reshape(n_clips, n_chans)


def clip_log_line_length(clips: np.ndarray, sfreq: float) -> np.ndarray:
    """``log10`` of the mean absolute sample-to-sample difference per second of every clip.

    Parameters
    ----------
    clips : ndarray, shape (..., n_samples)
    sfreq : float

    Returns
    -------
    ndarray, shape (...,), float64
        :data:`POWER_FLOOR` is added before the log (flat clips stay finite).
    """
    line_length = np.mean(np.abs(np.diff(np.asarray(clips, np.float64), axis=-1)), axis=-1)
    return np.log10(line_length * sfreq + POWER_FLOOR)


def clip_features(
    clips: np.ndarray,
    sfreq: float,
    *,
    bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS,
    wavelet: str = "db10",
    level: int | None = None,
    spike_params: Mapping[str, float] | None = None,
    energy_ratio: bool = False,
) -> np.ndarray:
    """Feature vector of every clip and channel, for the SVM stage.

    Parameters
    ----------
    clips : ndarray, shape (n_clips, n_chans, n_samples)
        Clips of the clip store (any unit; the store's are scaled per channel).
    sfreq : float
        Sampling frequency of the clips in Hz.
    bands : mapping of str to (float, float)
        Wavelet-packet bands; the default gives :data:`FEATURE_NAMES`.
    wavelet : str
        PyWavelets wavelet of the packet decomposition.
    level : int | None
        Packet level; ``None`` chooses it from the clip length (see :func:`wavelet_level`).
    spike_params : mapping | None
        Keyword arguments of :func:`models.spikes.detect_spikes`; ``None`` uses
        :data:`CLIP_SPIKE_PARAMS`.
    energy_ratio : bool
        Append ``log_energy_ratio`` (needs ``sfreq`` >= 194 Hz, :func:`has_energy_ratio`).

    Returns
    -------
    features : ndarray, shape (n_clips, n_chans, n_feats)
        Columns named by ``feature_names(bands, energy_ratio=energy_ratio)``; finite for flat
        channels.
    """
    clips = np.asarray(clips)
    if clips.ndim != 3:
        raise ValueError(
            f"clips must have shape (n_clips, n_chans, n_samples), got {clips.shape}; "
            "pass clips[np.newaxis] for a single clip."
        )
    check_sfreq(sfreq)
    if not np.all(np.isfinite(clips)):
        raise ValueError(
            f"clips hold {np.count_nonzero(~np.isfinite(clips))} non-finite values; "
            "the clip store must not contain NaN or inf (re-run ingest on that recording)."
        )
    x = clips.astype(np.float64, copy=False)
    spike_rate = clip_spike_rate(x, sfreq, spike_params)
    ei = {f"ei_{k}": v for k, v in EI_BANDS.items()} if energy_ratio else {}
    if ei and not has_energy_ratio(sfreq):
        raise ValueError(
            f"the energy ratio's gamma band reaches 97 Hz, above the Nyquist frequency of "
            f"{sfreq=}; store clips at >= 194 Hz or pass energy_ratio=False."
        )
    power = wavelet_band_power(x, sfreq, bands={**bands, **ei}, wavelet=wavelet, level=level)
    cols = [
        spike_rate[..., np.newaxis],
        clip_log_line_length(x, sfreq)[..., np.newaxis],
        np.log10(power[..., : len(bands)] + POWER_FLOOR),
    ]
    if ei:
        theta, alpha, beta, gamma = np.moveaxis(power[..., len(bands) :], -1, 0)
        ratio = np.log10(beta + gamma + POWER_FLOOR) - np.log10(theta + alpha + POWER_FLOOR)
        cols.append(ratio[..., np.newaxis])
    return np.concatenate(cols, axis=-1)


def svm_bands(sfreq: float) -> dict[str, tuple[float, float]]:
    """The bands of :data:`DEFAULT_BANDS` below the Nyquist rate of ``sfreq``: the SVM's bands.

    A store at 1000 Hz keeps every band (fast ripples included); a store at a lower rate drops
    the bands it cannot hold rather than failing. One store has one rate, so its features always
    have the same columns, in training and in serving.
    """
    return {k: v for k, v in DEFAULT_BANDS.items() if v[1] <= sfreq / 2}


class RecordingFeatureMean:
    """A recording's channel features from its clips, accumulated chunk by chunk.

    The mean over the clips of :func:`clip_features` (with the energy ratio where the rate
    holds it), then the maximum over the clips of :data:`PEAK_FEATURES` (``peak_<name>``).
    Memory is one chunk of clips plus ``(n_chans, n_feats)`` sums and maxima, whatever the
    duration.

    Parameters
    ----------
    sfreq : float
        Sampling rate of the clips (Hz); the bands are :func:`svm_bands` of it.
    """

    def __init__(self, sfreq: float) -> None:
        self.sfreq = float(sfreq)
        self.bands = svm_bands(self.sfreq)
        self.energy_ratio = has_energy_ratio(self.sfreq)
        clip_names = feature_names(self.bands, energy_ratio=self.energy_ratio)
        self._peaks = [clip_names.index(n) for n in PEAK_FEATURES if n in clip_names]
        self.names = (*clip_names, *(f"peak_{clip_names[i]}" for i in self._peaks))
        self._sum: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self.n_clips = 0

    def add(self, clips: np.ndarray) -> None:
        """Add the features of ``clips``, shape (n_clips, n_chans, n_samples)."""
        feats = clip_features(
            clips, self.sfreq, bands=self.bands, energy_ratio=self.energy_ratio
        ).astype(np.float64)
        part, peak = feats.sum(axis=0), feats[..., self._peaks].max(axis=0)
        self._sum = part if self._sum is None else self._sum + part  # (C, F)
        self._max = peak if self._max is None else np.maximum(self._max, peak)
        self.n_clips += len(clips)

    def mean(self) -> np.ndarray:
        """ndarray, shape (n_chans, len(names)): the clips' mean, then the peaks, as ``names``."""
        if self._sum is None or self.n_clips == 0:
            raise ValueError("no clip was added; a recording needs at least one clip.")
        return np.concatenate([self._sum / self.n_clips, self._max], axis=-1)
