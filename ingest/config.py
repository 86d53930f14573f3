"""``IngestConfig``: the frozen configuration of stage 1 (ingest), validated once.

Everything that shapes the stored data (rates, clip length, filters, storage dtype, block size) is a
field here, is written into the store's root attributes by :meth:`IngestConfig.to_dict`, and is read
back by serving and training with :meth:`IngestConfig.from_dict` so that they reproduce the exact
preprocessing. Runner options (``runner``, ``num_workers``) only say *how* the pipeline runs; they
are excluded from equality and from the stored dict, so a store built on Dataflow can be appended to
from a laptop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ingest.errors import ConfigError

#: Storage dtypes and the worst-case relative rounding error each introduces on the stored
#: (unscaled, microvolt) samples. float16 rounds to 11 significant bits: |error| <= 2**-11 |x| for
#: |x| >= 2**-14 uV (and <= 2**-25 uV absolute below that, far under any amplifier's noise floor);
#: values beyond +-65504 uV saturate (counted in the ``saturated`` Beam counter).
STORAGE_DTYPES: dict[str, float] = {"float16": 2.0**-11, "float32": 2.0**-24}


@dataclass(frozen=True)
class IngestConfig:
    """How recordings become stored clips.

    Parameters
    ----------
    sfreq : float
        The common (stored) sampling rate in Hz; every recording is resampled to it.
    clip_s : float
        Clip length in seconds; ``clip_s * sfreq`` must be a whole number of samples.
    block_clips : int
        Clips per block: the unit of parallel work and one Zarr shard (60 clips = 5 min).
    l_freq : float or None
        High-pass edge in Hz (-6 dB point of the FIR); ``None`` for no high-pass.
    h_freq : float or None
        Low-pass edge in Hz; ``None`` picks ``0.9 x`` the lower of the two Nyquist rates
        (source and stored), i.e. just below the band the resampler keeps.
    trans_bandwidth : float
        Transition bandwidth of every FIR edge in Hz (sets the filter length:
        ``3.3 / trans_bandwidth`` seconds, Hamming window).
    notch : bool
        Whether to notch the line frequency and its harmonics below the stored Nyquist.
    notch_width : float
        Width in Hz of each notch's stop band (centred on the harmonic).
    line_freq : float or None
        Line frequency used when a recording does not give one (50 or 60 Hz). ``None``: a
        recording with an unknown line frequency fails with a fix hint.
    dtype : {"float16", "float32"}
        Storage dtype of the clips (see :data:`STORAGE_DTYPES` for the error it introduces).
    zstd_level : int
        Zstandard level of the Blosc compressor (1-22).
    resample_max_denominator : int
        Largest ``down`` of the rational ``up / down`` approximating ``sfreq / orig_sfreq``.
        Integer rates give the exact ratio (1024 -> 1000 is 125/128); a non-integer source rate
        such as 999.41 Hz is approximated (1695/1694) and the stored time axis drifts by the
        ratio's relative error (3e-8 here: 2 ms over 20 hours).
    resample_half_taps : int
        Zero crossings per side of the windowed-sinc anti-aliasing filter (scipy's default 10).
    robust_max_samples : int
        The per-clip robust standard deviation (the scaling statistic) is computed on at most
        this many evenly strided samples of each clip.
    runner : str
        Beam runner used when no ``--runner`` pipeline option is given.
    num_workers : int
        Worker processes of the local runner; 0 means one per CPU core.
    """

    sfreq: float = 1000.0
    clip_s: float = 5.0
    block_clips: int = 60
    l_freq: float | None = 0.5
    h_freq: float | None = None
    trans_bandwidth: float = 0.5
    notch: bool = True
    notch_width: float = 2.0
    line_freq: float | None = None
    dtype: Literal["float16", "float32"] = "float16"
    zstd_level: int = 1
    resample_max_denominator: int = 2000
    resample_half_taps: int = 10
    robust_max_samples: int = 1000
    runner: str = field(default="FnApiRunner", compare=False)
    num_workers: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sfreq) and self.sfreq > 0):
            raise ConfigError(f"{self.sfreq=} must be a positive number of Hz, e.g. 1000.")
        if not (math.isfinite(self.clip_s) and self.clip_s > 0):
            raise ConfigError(f"{self.clip_s=} must be a positive number of seconds, e.g. 5.")
        samples = self.clip_s * self.sfreq
        if abs(samples - round(samples)) > 1e-6:
            raise ConfigError(
                f"{self.clip_s=} x {self.sfreq=} = {samples} is not a whole number of samples; "
                "pick a clip length that is a multiple of 1 / sfreq."
            )
        if self.block_clips < 1:
            raise ConfigError(f"{self.block_clips=} must be >= 1 (60 clips of 5 s = 5 minutes).")
        nyquist = self.sfreq / 2
        if self.l_freq is not None and not (0 < self.l_freq < nyquist):
            raise ConfigError(f"{self.l_freq=} must lie in (0, {nyquist=}) Hz, or be None.")
        if self.h_freq is not None and not (0 < self.h_freq < nyquist):
            raise ConfigError(f"{self.h_freq=} must lie in (0, {nyquist=}) Hz, or be None.")
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ConfigError(f"{self.l_freq=} must be below {self.h_freq=}.")
        if not self.trans_bandwidth > 0:
            raise ConfigError(f"{self.trans_bandwidth=} must be > 0 Hz (0.5 is a good default).")
        if self.l_freq is not None and self.trans_bandwidth > 2 * self.l_freq:
            raise ConfigError(
                f"{self.trans_bandwidth=} must be <= 2 x {self.l_freq=} so the high-pass "
                "transition stays above 0 Hz; lower trans_bandwidth."
            )
        if not self.notch_width > 0:
            raise ConfigError(f"{self.notch_width=} must be > 0 Hz.")
        if self.line_freq is not None and not (0 < self.line_freq < nyquist):
            raise ConfigError(f"{self.line_freq=} must lie in (0, {nyquist=}) Hz (50 or 60).")
        if self.dtype not in STORAGE_DTYPES:
            raise ConfigError(f"{self.dtype=} must be one of {sorted(STORAGE_DTYPES)}.")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError(f"{self.zstd_level=} must lie in [1, 22].")
        if self.resample_max_denominator < 1:
            raise ConfigError(f"{self.resample_max_denominator=} must be >= 1.")
        if self.resample_half_taps < 1:
            raise ConfigError(f"{self.resample_half_taps=} must be >= 1.")
        if self.robust_max_samples < 10:
            raise ConfigError(f"{self.robust_max_samples=} must be >= 10.")
        if self.num_workers < 0:
            raise ConfigError(f"{self.num_workers=} must be >= 0 (0: one per CPU core).")

    @property
    def clip_samples(self) -> int:
        """Samples per clip at the stored rate."""
        return round(self.clip_s * self.sfreq)

    @property
    def block_samples(self) -> int:
        """Samples per full block at the stored rate."""
        return self.block_clips * self.clip_samples

    @property
    def max_relative_error(self) -> float:
        """Worst-case relative rounding error of the storage dtype."""
        return STORAGE_DTYPES[self.dtype]

    def resolved_h_freq(self, orig_sfreq: float) -> float:
        """The low-pass edge used for a recording sampled at ``orig_sfreq`` Hz."""
        if self.h_freq is not None:
            return min(self.h_freq, 0.45 * orig_sfreq)
        return 0.45 * min(self.sfreq, orig_sfreq)

    def to_dict(self) -> dict[str, Any]:
        """The fields that shape the stored data, as a plain JSON-able dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}

    @classmethod
    def from_dict(cls, d: dict[str, Any], **runner_options: Any) -> IngestConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown ingest config keys {unknown}; the store was written by another "
                "sozkit version: upgrade sozkit or re-ingest."
            )
        return cls(**d, **runner_options)

    def with_line_freq(self, line_freq: float | None) -> IngestConfig:
        """This configuration, its power-line frequency filled in with ``line_freq`` when it
        has none and one is given (a store ingested without it, scored with ``--line-freq``)."""
        if line_freq is None or self.line_freq is not None:
            return self
        return IngestConfig.from_dict({**self.to_dict(), "line_freq": float(line_freq)})
