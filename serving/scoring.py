"""``Scorer``: a trained run's checkpoints in, per-contact SOZ probabilities out (no Ray).

A :class:`Scorer` holds one model of a training run: one fold's network, or every fold's (the
**ensemble**: the fold models' channel probabilities are averaged, and so are their thresholds;
each fold's threshold was chosen on its own validation patients, and their mean is the natural
threshold of the mean probability). Scoring a recording reproduces evaluation in training:

1. :class:`serving.preprocess.RecordingStream` turns the signal file into the scaled clips the
   clip store would hold, streaming, through ingest's own functions (two passes, bounded memory);
2. :func:`models.spectral.spectral_features` of every clip, with the checkpoint's settings;
3. sequences of ``seq_len`` clips at the run's evaluation stride, with the same starts as
   :func:`trainer.datasets.evaluation_sequences` (the last one ends at the last clip);
4. the channel probability is the mean over the sequences of ``sigmoid(logits)``; a contact is
   called SOZ when ``probability >= threshold``.

:meth:`Scorer.prepare` yields the sequences of a recording (so a service can batch them across
requests), :meth:`Scorer.predict` scores a batch, :meth:`Scorer.score` does both for one
recording. The classical SVM has its own scorer in :mod:`serving.classical`; :func:`load_scorers`
returns every model of a run.

Run directory layout read here (written by ``soz train``): ``RUN_DIR/card.json``,
``RUN_DIR/<model>/fold_<k>/checkpoint.pt`` (:mod:`trainer.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ingest.config import IngestConfig
from ingest.errors import SozkitError
from ingest.recording import Recording
from models.spectral import spectral_features
from serving.preprocess import DEFAULT_CACHE_BYTES, RecordingStream, check_length
from serving.results import ScoreResult, recording_metadata
from trainer.checkpoint import FoldCheckpoint, load_checkpoint
from trainer.datasets import RecordingInfo, evaluation_sequences

logger = logging.getLogger(__name__)

_FOLD_DIR = re.compile(r"^fold_(\d+)$")


def run_folds(run_dir: str | os.PathLike, model: str, filename: str) -> dict[int, Path]:
    """``{fold: RUN_DIR/<model>/fold_<k>/<filename>}`` for every fold that has the file."""
    out = {}
    model_dir = Path(run_dir) / model
    if model_dir.is_dir():
        for sub in model_dir.iterdir():
            m = _FOLD_DIR.match(sub.name)
            if m and (sub / filename).is_file():
                out[int(m.group(1))] = sub / filename
    return dict(sorted(out.items()))


def run_models(run_dir: str | os.PathLike) -> dict[str, list[int]]:
    """Models a run directory can score with, and their folds.

    Neural models have ``fold_<k>/checkpoint.pt``; the SVM ``fold_<k>/svm.pkl``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SozkitError(
            f"run directory {run_dir} does not exist; give the --out folder of `soz train`."
        )
    models: dict[str, list[int]] = {}
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for filename in ("checkpoint.pt", "svm.pkl"):
            folds = run_folds(run_dir, sub.name, filename)
            if folds:
                models[sub.name] = sorted(folds)
                break
    return models


def pick_folds(run_dir: Path, model: str, filename: str, fold: int | None) -> dict[int, Path]:
    folds = run_folds(run_dir, model, filename)
    if not folds:
        known = run_models(run_dir)
        raise SozkitError(
            f"{run_dir} has no {model!r} model (no {model}/fold_<k>/{filename}); the run "
            f"holds {sorted(known) or 'no model'}. Pick one of those, or train it."
        )
    if fold is not None:
        if fold not in folds:
            raise SozkitError(
                f"{model!r} has no fold {fold} in {run_dir}; its folds are {sorted(folds)}."
            )
        folds = {fold: folds[fold]}
    return folds


def _card_eval_stride(run_dir: Path) -> int | None:
    """The evaluation stride the run used (``card.json``), ``None`` = the sequence length."""
    card = run_dir / "card.json"
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return None
    config = data.get("config", data)
    stride = config.get("eval_stride") if isinstance(config, dict) else None
    return int(stride) if stride else None


class Scorer:
    """One neural model of a training run (one fold or the fold ensemble), ready to score.

    Parameters
    ----------
    name : str
        Model name (``"sozformer"``, ``"dcgru"``).
    models : sequence of torch.nn.Module
        One network per fold, all with the same input contract.
    metas : sequence of FoldCheckpoint
        Their checkpoint metadata (threshold, features, ingest configuration ...).
    device : str or torch.device
        Where the networks run.
    batch_size : int
        Sequences per forward pass in :meth:`score`.
    eval_stride : int | None
        Clips between sequence starts; ``None`` = ``seq_len`` (non-overlapping).
    cache_bytes : int
        Memory budget for keeping a recording's clips between the two preprocessing passes.
    line_freq : float | None
        Power-line frequency used for recordings that do not state one.

    Attributes
    ----------
    threshold : float
        Mean of the folds' thresholds.
    seq_len, n_feats : int
        Clips per sequence and features per clip.
    folds : tuple of int
        The folds averaged.
    ingest_config : IngestConfig
        The preprocessing of the training store, reproduced for every recording.
    """

    def __init__(
        self,
        name: str,
        models: Sequence[torch.nn.Module],
        metas: Sequence[FoldCheckpoint],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        eval_stride: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        line_freq: float | None = None,
    ) -> None:
        if not models or len(models) != len(metas):
            raise SozkitError(
                f"{name}: need one checkpoint per model, got {len(models)} models and "
                f"{len(metas)} checkpoints."
            )
        if batch_size < 1:
            raise ValueError(f"{batch_size=} must be >= 1.")
        if eval_stride is not None and eval_stride < 1:
            raise ValueError(f"{eval_stride=} must be >= 1 or None.")
        first = metas[0]
        for meta in metas[1:]:
            for key in ("seq_len", "n_feats", "sfreq", "clip_samples", "feature_config"):
                if getattr(meta, key) != getattr(first, key):
                    raise SozkitError(
                        f"{name}: folds {first.fold} and {meta.fold} disagree on {key} "
                        f"({getattr(first, key)!r} vs {getattr(meta, key)!r}); they cannot be "
                        "averaged. Score one fold (--fold K)."
                    )
            if meta.ingest_config != first.ingest_config:
                raise SozkitError(
                    f"{name}: folds {first.fold} and {meta.fold} were trained on stores with "
                    "different ingest settings; score one fold (--fold K)."
                )
        if not first.ingest_config:
            raise SozkitError(
                f"{name}: the checkpoint records no ingest configuration, so the training "
                "preprocessing cannot be reproduced; retrain with a current sozkit."
            )
        self.name = name
        self.device = torch.device(device)
        self.models = [m.to(self.device).eval() for m in models]
        self.metas = tuple(metas)
        self.folds = tuple(int(m.fold) if m.fold is not None else i for i, m in enumerate(metas))
        self.threshold = float(np.mean([m.threshold for m in metas]))
        self.seq_len = int(first.seq_len)
        self.n_feats = int(first.n_feats)
        self.feature_config = dict(first.feature_config)
        self.ingest_config = IngestConfig.from_dict(dict(first.ingest_config))
        if line_freq is not None and self.ingest_config.line_freq is None:
            self.ingest_config = IngestConfig.from_dict(
                {**self.ingest_config.to_dict(), "line_freq": float(line_freq)}
            )
        if abs(self.ingest_config.sfreq - first.sfreq) > 1e-6:
            raise SozkitError(
                f"{name}: checkpoint sfreq={first.sfreq} differs from its ingest config's "
                f"sfreq={self.ingest_config.sfreq}; the checkpoint is inconsistent."
            )
        self.batch_size = int(batch_size)
        self.eval_stride = eval_stride
        self.cache_bytes = int(cache_bytes)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        model: str = "sozformer",
        fold: int | None = None,
        **kwargs: Any,
    ) -> Scorer:
        """Load ``RUN_DIR/<model>/fold_<k>/checkpoint.pt`` (every fold when ``fold`` is None).

        Parameters
        ----------
        run_dir : path-like
            The training run directory.
        model : str
            Model name.
        fold : int | None
            One fold, or ``None`` for the ensemble of all folds (mean probability).
        **kwargs
            Passed to :class:`Scorer` (``device``, ``batch_size``, ``line_freq`` ...).
            ``eval_stride`` defaults to the run's (``card.json``).
        """
        run_dir = Path(run_dir)
        paths = pick_folds(run_dir, model, "checkpoint.pt", fold)
        device = kwargs.get("device", "cpu")
        models, metas = [], []
        for path in paths.values():
            net, meta = load_checkpoint(path, map_location=device)
            models.append(net)
            metas.append(meta)
        kwargs.setdefault("eval_stride", _card_eval_stride(run_dir))
        return cls(model, models, metas, **kwargs)

    # -- sequences -------------------------------------------------------------------------
    def sequence_starts(self, n_clips: int) -> np.ndarray:
        """First clip of every sequence scored in a recording of ``n_clips`` clips.

        The same starts as training's evaluation (:func:`trainer.datasets.evaluation_sequences`).
        """
        info = RecordingInfo(
            recording_id="_", patient="_", cohort="_", n_clips=int(n_clips), channels=(),
            labels=np.zeros(0, np.float32),
        )  # fmt: skip
        items = evaluation_sequences([info], seq_len=self.seq_len, stride=self.eval_stride)
        return items[:, 1]

    def stream(self, rec: Recording) -> RecordingStream:
        """The preprocessing stream of ``rec`` (checks it is long enough for one sequence)."""
        stream = RecordingStream(rec, self.ingest_config, cache_bytes=self.cache_bytes)
        check_length(rec, stream.n_clips, self.seq_len, self.ingest_config.clip_s)
        return stream

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Spectral features of scaled clips (n, C, T) -> (n, C, F) float32."""
        return spectral_features(clips, self.ingest_config.sfreq, **self.feature_config)

    def prepare(
        self, rec: Recording, *, stream: RecordingStream | None = None
    ) -> Iterator[np.ndarray]:
        """The sequences of ``rec``, in order of their first clip, computed block by block.

        Parameters
        ----------
        rec : Recording
        stream : RecordingStream, optional
            A stream already made by :meth:`stream` (to read its timings afterwards).

        Yields
        ------
        x : ndarray, shape (n_contacts, seq_len, n_feats), float32
        """
        stream = self.stream(rec) if stream is None else stream
        starts = self.sequence_starts(stream.n_clips)
        assembler = SequenceAssembler(starts, self.seq_len)
        for clip_start, clips in stream:
            yield from assembler.add(clip_start, self.features(clips))
        assembler.check_done(rec.recording_id)

    @torch.no_grad()
    def predict(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """SOZ probability of every channel of every sequence (mean over the fold models).

        Parameters
        ----------
        batch : sequence of ndarray, each shape (n_chans_i, seq_len, n_feats), or ndarray
            shape (B, n_chans, seq_len, n_feats)
            Sequences, possibly of different recordings (channel counts); padded to the
            largest with a mask.

        Returns
        -------
        probs : ndarray, shape (B, max n_chans), float32
            Padded slots hold 0.
        """
        x, mask = pad_sequences(batch, seq_len=self.seq_len, n_feats=self.n_feats)
        xt = torch.from_numpy(x).to(self.device)
        mt = torch.from_numpy(mask).to(self.device)
        total = torch.zeros(mt.shape, dtype=torch.float32, device=self.device)
        for net in self.models:
            total += torch.sigmoid(net(xt, mt).float())
        probs = (total / len(self.models)).cpu().numpy()
        return np.where(mask, probs, 0.0).astype(np.float32)

    def result(
        self,
        rec: Recording,
        channels: Sequence[str],
        prob_sum: np.ndarray,
        n_sequences: int,
        *,
        timings: dict[str, float] | None = None,
        warnings: Sequence[str] = (),
    ) -> ScoreResult:
        """Turn summed sequence probabilities into a :class:`ScoreResult`."""
        if n_sequences < 1:
            raise SozkitError(f"{rec.recording_id}: no sequence was scored.")
        return make_result(
            rec, self.name, self.folds, self.threshold, channels, prob_sum / n_sequences,
            n_sequences=n_sequences, timings=timings, warnings=warnings,
        )  # fmt: skip

    def score(self, rec: Recording) -> ScoreResult:
        """Score one recording: per-contact probability, SOZ call, ranks, timings, warnings."""
        t0 = time.perf_counter()
        stream = self.stream(rec)
        prob_sum = np.zeros(len(stream.contacts), dtype=np.float64)
        n_seq, t_model, t_feat_total = 0, 0.0, 0.0
        pending: list[np.ndarray] = []
        gen = self.prepare(rec, stream=stream)
        while True:
            t1 = time.perf_counter()
            seq = next(gen, None)
            t_feat_total += time.perf_counter() - t1
            if seq is not None:
                pending.append(seq)
            if pending and (seq is None or len(pending) == self.batch_size):
                t1 = time.perf_counter()
                prob_sum += self.predict(pending).sum(axis=0)
                t_model += time.perf_counter() - t1
                n_seq += len(pending)
                pending = []
            if seq is None:
                break
        prep = stream.timings.as_dict()
        timings = {
            **prep,
            "features": max(t_feat_total - prep["preprocess_pass1"] - prep["preprocess_pass2"], 0),
            "model": t_model,
            "total": time.perf_counter() - t0,
        }
        return self.result(
            rec, stream.contacts, prob_sum, n_seq, timings=timings,
            warnings=scoring_warnings(rec),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows about this scorer."""
        return {
            "model": self.name,
            "kind": "neural",
            "folds": list(self.folds),
            "threshold": self.threshold,
            "seq_len": self.seq_len,
            "n_feats": self.n_feats,
            "min_duration_s": self.seq_len * self.ingest_config.clip_s,
            "eval_stride": self.eval_stride or self.seq_len,
            "feature_config": self.feature_config,
            "ingest_config": self.ingest_config.to_dict(),
            "device": str(self.device),
            "hparams": dict(self.metas[0].hparams),
        }


class SequenceAssembler:
    """Collects per-clip features block by block and emits each sequence once it is complete.

    Memory: only clips from the earliest sequence not yet emitted onwards are kept (at most
    ``seq_len`` clips plus one block), whatever the recording's length.

    Parameters
    ----------
    starts : ndarray of int, shape (n_sequences,)
        First clip of each sequence, increasing.
    seq_len : int
        Clips per sequence.
    """

    def __init__(self, starts: np.ndarray, seq_len: int) -> None:
        self.starts = [int(s) for s in starts]
        self.seq_len = int(seq_len)
        self._next = 0  # index into starts of the next sequence to emit
        self._buf: np.ndarray | None = None  # (n_buf, C, F) clips [buf_start, buf_start + n_buf)
        self._buf_start = 0

    def add(self, clip_start: int, feats: np.ndarray) -> list[np.ndarray]:
        """Add clips ``[clip_start, clip_start + len(feats))``; return completed sequences.

        Parameters
        ----------
        clip_start : int
            Index of ``feats[0]``; must continue where the previous call ended.
        feats : ndarray, shape (n, n_chans, n_feats)

        Returns
        -------
        list of ndarray, each shape (n_chans, seq_len, n_feats)
        """
        if self._buf is None:
            self._buf, self._buf_start = feats, clip_start
        else:
            end = self._buf_start + len(self._buf)
            if clip_start != end:
                raise ValueError(
                    f"blocks must be contiguous: expected clip {end}, got {clip_start}"
                )
            self._buf = np.concatenate([self._buf, feats])
        out = []
        buf_end = self._buf_start + len(self._buf)
        while self._next < len(self.starts):
            s = self.starts[self._next]
            if s + self.seq_len > buf_end:
                break
            lo = s - self._buf_start
            out.append(np.ascontiguousarray(self._buf[lo : lo + self.seq_len].transpose(1, 0, 2)))
            self._next += 1
        keep_from = self.starts[self._next] if self._next < len(self.starts) else buf_end
        drop = max(0, keep_from - self._buf_start)
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return out

    def check_done(self, recording_id: str) -> None:
        """Raise if a sequence was never completed (the stream ended early)."""
        if self._next != len(self.starts):
            raise SozkitError(
                f"{recording_id}: only {self._next} of {len(self.starts)} sequences were "
                "complete when the clips ran out; the recording is shorter than planned."
            )


def pad_sequences(
    batch: Sequence[np.ndarray] | np.ndarray, *, seq_len: int, n_feats: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different channel counts, zero-padded, with a channel mask.

    Parameters
    ----------
    batch : sequence of ndarray, each (n_chans_i, seq_len, n_feats), or ndarray (B, C, S, F)
    seq_len, n_feats : int
        The shape every sequence must have after its channel axis.

    Returns
    -------
    x : ndarray, shape (B, max n_chans, seq_len, n_feats), float32
    mask : ndarray of bool, shape (B, max n_chans)
    """
    if isinstance(batch, np.ndarray) and batch.ndim == 4:
        batch = list(batch)
    if len(batch) == 0:
        raise ValueError("cannot score an empty batch of sequences.")
    for i, seq in enumerate(batch):
        if seq.ndim != 3 or seq.shape[1:] != (seq_len, n_feats):
            raise ValueError(
                f"sequence {i} has shape {seq.shape}; expected (n_chans, {seq_len=}, {n_feats=})."
            )
    c_max = max(seq.shape[0] for seq in batch)
    x = np.zeros((len(batch), c_max, seq_len, n_feats), dtype=np.float32)
    mask = np.zeros((len(batch), c_max), dtype=bool)
    for i, seq in enumerate(batch):
        x[i, : seq.shape[0]] = seq
        mask[i, : seq.shape[0]] = True
    return x, mask


def scoring_warnings(rec: Recording) -> tuple[str, ...]:
    """Warnings a result carries: contacts dropped as bad, reader warnings."""
    out = list(rec.warnings)
    dropped = [c for c, t in zip(rec.channels, rec.ch_types, strict=True) if c in rec.bad]
    if dropped:
        shown = ", ".join(dropped[:12]) + (" ..." if len(dropped) > 12 else "")
        out.append(f"{len(dropped)} channel(s) marked bad were not scored: {shown}")
    non_ieeg = [
        c
        for c, t in zip(rec.channels, rec.ch_types, strict=True)
        if c not in rec.bad and t not in ("seeg", "ecog", "dbs")
    ]
    if non_ieeg:
        out.append(
            f"{len(non_ieeg)} non-intracranial channel(s) ignored: {', '.join(non_ieeg[:12])}"
        )
    return tuple(out)


def make_result(
    rec: Recording,
    model: str,
    folds: Sequence[int],
    threshold: float,
    channels: Sequence[str],
    probabilities: np.ndarray,
    *,
    n_sequences: int = 0,
    timings: dict[str, float] | None = None,
    warnings: Sequence[str] = (),
) -> ScoreResult:
    """A :class:`ScoreResult` for ``rec`` with labels taken from the recording where known."""
    labels = None if rec.soz is None else tuple(c in rec.soz for c in channels)
    return ScoreResult(
        recording_id=rec.recording_id,
        subject=rec.subject,
        cohort=rec.cohort,
        model=model,
        folds=tuple(int(f) for f in folds),
        threshold=float(threshold),
        channels=tuple(channels),
        probabilities=np.asarray(probabilities, dtype=np.float64),
        soz_labels=labels,
        n_sequences=int(n_sequences),
        duration_s=rec.duration_s,
        sfreq=rec.sfreq,
        metadata=recording_metadata(rec),
        timings=dict(timings or {}),
        warnings=tuple(warnings),
    )
