"""Direct decoding of 16-bit EDF data records: where each channel lies, and its calibration.

:class:`ingest.signals.SignalReader` reads 16-bit EDF through :class:`EdfLayout` (only the
bytes of the channels asked for, into float32) and checks it against MNE's own decoding when the
file is opened; BDF and other formats go through MNE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mne
import numpy as np

from ingest.errors import RecordingError


@dataclass(frozen=True)
class EdfLayout:
    """Where each channel's samples lie in a 16-bit EDF file, and their calibration.

    Read from what MNE parsed (``raw._raw_extras``) so that the values are MNE's own: microvolts
    ``= digital * scale + shift`` with ``scale = cal * unit_gain * 1e6`` and
    ``shift = offset * unit_gain * 1e6``, MNE's ``cal``, ``offsets`` and ``units``.
    """

    path: str
    data_offset: int  # bytes before the first data record
    n_records: int
    record_len: int  # 16-bit samples in one data record, all signals
    spr: int  # samples per record of every channel read here
    starts: np.ndarray  # (n_chans,) first sample of each channel in a record; -1: not here
    scale: np.ndarray  # (n_chans,) float32 microvolts per digital unit
    shift: np.ndarray  # (n_chans,) float32 microvolts

    @classmethod
    def from_raw(cls, raw: mne.io.BaseRaw, path: str) -> EdfLayout | None:
        """The layout of an MNE ``RawEDF``; ``None`` where MNE's reading must be kept (BDF,
        file objects, an MNE whose private fields changed)."""
        try:
            (extras,) = raw._raw_extras
            if extras.get("blob") is not None or extras["subtype"] != "edf":
                return None
            if extras["dtype_byte"] != 2 or np.dtype(extras["dtype_np"]) != np.dtype("<i2"):
                return None
            n_samps = np.asarray(extras["n_samps"], dtype=np.int64)  # per signal of the file
            sel = np.asarray(extras["sel"], dtype=np.int64)  # MNE channel -> signal
            gains = np.asarray(extras["units"], dtype=np.float64) * 1e6
            cal = np.asarray(extras["cal"], dtype=np.float64)
            offsets = np.asarray(extras["offsets"], dtype=np.float64)
            stim = np.isin(np.arange(len(sel)), list(extras["stim_channel_idxs"]))
            spr, n_records = int(extras["max_samp"]), int(extras["n_records"])
            data_offset = int(extras["data_offset"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        n_chans = len(raw.ch_names)
        if not (len(sel) == len(cal) == len(offsets) == len(gains) == n_chans):
            return None
        if n_records * spr != raw.n_times or sel.max(initial=-1) >= len(n_samps):
            return None
        first = np.concatenate([[0], np.cumsum(n_samps)])[:-1]
        starts = np.where((n_samps[sel] == spr) & ~stim, first[sel], -1)
        return cls(
            path=str(path),
            data_offset=data_offset,
            n_records=n_records,
            record_len=int(n_samps.sum()),
            spr=spr,
            starts=starts,
            scale=(cal * gains).astype(np.float32),
            shift=(offsets * gains).astype(np.float32),
        )

    def covers(self, idx: Sequence[int]) -> bool:
        """Whether every channel of ``idx`` can be read here (full rate, not a stim channel)."""
        return bool((self.starts[list(idx)] >= 0).all())

    def read(self, start: int, stop: int, idx: Sequence[int]) -> np.ndarray:
        """Microvolts of channels ``idx`` (MNE indices), samples ``[start, stop)``.

        Only the bytes of the data records that hold those channels are read: one read per
        record of the span the channels cover, a single read when they cover whole records.
        The float32 result differs from MNE's float64 decoding by float32 rounding (relative
        1e-7 of the channel's offset plus its value), far below the EDF quantum.
        """
        spr, n = self.spr, stop - start
        r0, r1 = start // spr, -(-stop // spr)
        cols = self.starts[list(idx)]
        lo, hi = int(cols.min()), int(cols.max()) + spr  # span of the channels in a record
        raw = np.empty((r1 - r0, hi - lo), dtype="<i2")  # (n_records, span)
        itemsize = raw.itemsize
        with open(self.path, "rb", buffering=0) as f:
            if hi - lo == self.record_len:
                f.seek(self.data_offset + r0 * self.record_len * itemsize)
                got = f.readinto(memoryview(raw).cast("B"))
                short = got != raw.nbytes
            else:
                short = False
                for r in range(r0, r1):
                    f.seek(self.data_offset + (r * self.record_len + lo) * itemsize)
                    short |= f.readinto(memoryview(raw[r - r0]).cast("B")) != raw.shape[1] * 2
        if short:
            raise RecordingError(
                self.path,
                f"the file ended while reading data records {r0}-{r1 - 1} of the "
                f"{self.n_records} its header declares.",
                "the file was truncated after it was opened; copy it again.",
            )
        out = np.empty((len(cols), n), dtype=np.float32)
        buf = np.empty((r1 - r0, spr), dtype=np.float32)
        first = start - r0 * spr
        for row, (c, col) in enumerate(zip(idx, cols, strict=True)):
            np.multiply(raw[:, col - lo : col - lo + spr], self.scale[c], out=buf)
            np.add(buf.reshape(-1)[first : first + n], self.shift[c], out=out[row])
        return out
