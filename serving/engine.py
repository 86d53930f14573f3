"""The scoring engine: one recording streamed once through preprocessing, to any number of consumers.

Every way of scoring (``Scorer.score``, bulk scoring of every model of a run, the Serve ingress)
is :func:`score_recording`: it opens one block stream per ingest configuration
(:class:`serving.preprocess.RecordingStream`, or a clip store's
:class:`serving.preprocess.StoredRecordingStream`), checks the recording is long enough for each
consumer, and hands every block of scaled clips, once, to every consumer. A consumer is a small
class (:class:`Consumer`): ``start`` / ``add(clip_start, clips)`` / ``finish``. Two exist:

- :class:`SequenceConsumer` (neural models): the weight-free :class:`Preprocessing` (spectral
  features, sequence starts as training evaluated them, :class:`SequenceAssembler`) turns blocks
  into sequences, and a :class:`Predictor` scores them: the fold networks in this process
  (:class:`serving.scoring.Networks`) or the Serve model deployment, which batches them across
  requests. The channel probability is the mean over the sequences of ``sigmoid(logits)``.
- :class:`serving.svm_scorer.SVMConsumer`: the per-recording mean of the SVM's clip features
  (:class:`models.features.RecordingFeatureMean`), scored at the end.

A new consumer (an explanation, another model) is one more class with these three methods.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ingest.config import IngestConfig
from ingest.errors import ConfigError, RecordingError, SozkitError, name_list
from ingest.recording import INTRACRANIAL_TYPES, Recording
from models.site_norm import clip_features
from serving.flat_contacts import without_flat
from serving.preprocess import DEFAULT_CACHE_BYTES, RecordingStream, check_length
from serving.results import ScoreResult, recording_metadata
from trainer.call_rules import relative_threshold

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the loop
class Consumer:
    """What :func:`score_recording` feeds: override :meth:`add` and :meth:`finish`.

    Attributes
    ----------
    name : str
        Shown in errors.
    ingest_config : IngestConfig
        The preprocessing the consumer's clips must have (consumers with equal configurations
        share one stream).
    cache_bytes : int
        Memory budget of the stream between its two passes.
    min_clips : int
        Fewest clips a recording needs (shorter ones raise
        :class:`serving.preprocess.RecordingTooShort` before any work).
    """

    name: str = "consumer"
    ingest_config: IngestConfig
    cache_bytes: int = DEFAULT_CACHE_BYTES
    min_clips: int = 1
    #: The stream's flat contacts, set before :meth:`finish` (for :func:`make_result`'s ``flat``).
    flat: np.ndarray | None = None

    def start(self, rec: Recording, contacts: tuple[str, ...], n_clips: int) -> None:
        """Called once before the first block."""

    def add(self, clip_start: int, clips: np.ndarray) -> None:
        """One block: ``clips`` shape (n, n_contacts, clip_samples), scaled, from ``clip_start``."""
        raise NotImplementedError

    def finish(self, rec: Recording, contacts: tuple[str, ...], timings: dict[str, float]) -> Any:
        """After the last block; ``timings`` holds the stream's seconds. Returns the result."""
        raise NotImplementedError


class ScorerConsumer(Consumer):
    """A consumer working for one scorer: ``name``, ``ingest_config`` and ``cache_bytes`` are
    the scorer's, which it keeps as ``scorer`` (the SVM and baseline consumers)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.name = scorer.name
        self.ingest_config, self.cache_bytes = scorer.ingest_config, scorer.cache_bytes


class WholeRecordingScorer:
    """A scorer whose one :class:`ScorerConsumer` scores a recording (the SVM, the baseline);
    subclasses set ``name``, ``kind``, ``folds``, ``threshold``, ``ingest_config``."""

    kind: str

    def consumer(self) -> ScorerConsumer:
        """A fresh engine consumer scoring one recording with this scorer."""
        raise NotImplementedError

    def score(self, rec: Recording) -> Any:
        """Score one recording (a :class:`serving.results.ScoreResult`)."""
        return score_recording(rec, [self.consumer()])[0]

    def describe_extra(self) -> dict[str, Any]:
        return {}  # the subclass's own fields of describe()

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows about this scorer."""
        return {
            "model": self.name,
            "kind": self.kind,
            "folds": list(self.folds),
            "threshold": self.threshold,
            **self.describe_extra(),
            "ingest_config": self.ingest_config.to_dict(),
        }


def score_recording(rec: Recording, consumers: Sequence[Consumer], *, stream=None) -> list[Any]:
    """Stream ``rec`` once per ingest configuration through every consumer; their results.

    Parameters
    ----------
    rec : Recording
    consumers : sequence of Consumer
        Fresh consumers (one recording each).
    stream : StoredRecordingStream, optional
        Read the clips from a clip store instead of the signal file; every consumer's ingest
        configuration must then equal the store's.

    Returns
    -------
    list
        ``consumer.finish(...)`` of each consumer, in order.

    Raises
    ------
    RecordingError
        The recording cannot be read, or is too short for one of the consumers (nothing is
        computed then).
    """
    if not consumers:
        raise ValueError("score_recording needs at least one consumer.")
    groups: dict[IngestConfig, list[int]] = {}
    for i, c in enumerate(consumers):
        groups.setdefault(c.ingest_config, []).append(i)
    if stream is not None and set(groups) != {stream.ingest_config}:
        raise RecordingError(
            f"{stream.source}::{rec.recording_id}",
            "the store was preprocessed with other ingest settings than the model(s) were "
            "trained on, so its clips are not what the model expects.",
            "score the source recordings instead of the store, or a store ingested with the "
            "training store's settings.",
        )
    results: list[Any] = [None] * len(consumers)
    for cfg, members in groups.items():
        t0 = time.perf_counter()
        src = stream if stream is not None else RecordingStream(
            rec, cfg, cache_bytes=max(consumers[i].cache_bytes for i in members)
        )  # fmt: skip
        for i in members:
            check_length(rec, src.n_clips, consumers[i].min_clips, cfg.clip_s)
        for i in members:
            consumers[i].start(rec, src.contacts, src.n_clips)
        for clip_start, clips in src:
            for i in members:
                consumers[i].add(clip_start, clips)
        for i in members:
            consumers[i].flat = getattr(src, "flat", None)
            timings = {**src.timings.as_dict(), "total": time.perf_counter() - t0}
            results[i] = without_flat(
                consumers[i].finish(rec, src.contacts, timings), getattr(src, "flat", None)
            )
    return results


# ---------------------------------------------------------------------------- preprocessing
class Preprocessing:
    """The weight-free half of a neural model: recording -> sequences of spectral features.

    Parameters
    ----------
    ingest_config : IngestConfig
        The preprocessing of the training store, reproduced for every recording.
    feature_config : mapping
        ``n_bands``, ``fmin``, ``fmax`` of :func:`models.spectral.spectral_features`.
    seq_len, n_feats : int
        Clips per sequence and features per clip.
    eval_stride : int | None
        Clips between sequence starts; ``None`` = ``seq_len`` (non-overlapping).
    cache_bytes : int
        Memory budget for keeping a recording's clips between the two preprocessing passes.
    """

    def __init__(
        self,
        ingest_config: IngestConfig,
        feature_config: Mapping[str, Any],
        *,
        seq_len: int,
        n_feats: int,
        eval_stride: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if eval_stride is not None and eval_stride < 1:
            raise ConfigError(f"{eval_stride=} must be >= 1 or None.")
        self.ingest_config = ingest_config
        self.feature_config = dict(feature_config)
        self.seq_len = int(seq_len)
        self.n_feats = int(n_feats)
        self.eval_stride = eval_stride
        self.cache_bytes = int(cache_bytes)

    @classmethod
    def from_checkpoints(
        cls, name: str, metas: Sequence, *, line_freq: float | None = None, **kwargs: Any
    ) -> Preprocessing:
        """The preprocessing the folds' checkpoints (:class:`trainer.checkpoint.FoldCheckpoint`)
        agree on; ``line_freq`` fills in a configuration that has none."""
        if not metas:
            raise SozkitError(f"{name}: no checkpoint to take the preprocessing from.")
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
        cfg = IngestConfig.from_dict(dict(first.ingest_config))
        cfg = cfg.with_line_freq(line_freq)
        if abs(cfg.sfreq - first.sfreq) > 1e-6:
            raise SozkitError(
                f"{name}: checkpoint sfreq={first.sfreq} differs from its ingest config's "
                f"sfreq={cfg.sfreq}; the checkpoint is inconsistent."
            )
        return cls(
            cfg, first.feature_config, seq_len=first.seq_len, n_feats=first.n_feats, **kwargs
        )

    @property
    def min_clips(self) -> int:
        return self.seq_len

    def stream(self, rec: Recording) -> RecordingStream:
        """The block stream of ``rec`` (checks it is long enough for one sequence)."""
        stream = RecordingStream(rec, self.ingest_config, cache_bytes=self.cache_bytes)
        check_length(rec, stream.n_clips, self.seq_len, self.ingest_config.clip_s)
        return stream

    def sequence_starts(self, n_clips: int) -> np.ndarray:
        """First clip of every sequence scored in a recording of ``n_clips`` clips.

        The same starts as training's evaluation (:func:`trainer.datasets.evaluation_sequences`).
        """
        from trainer.datasets import RecordingInfo, evaluation_sequences

        info = RecordingInfo(
            recording_id="_", patient="_", cohort="_", n_clips=int(n_clips), channels=(),
            labels=np.zeros(0, np.float32),
        )  # fmt: skip
        items = evaluation_sequences([info], seq_len=self.seq_len, stride=self.eval_stride)
        return items[:, 1]

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Spectral features of scaled clips (n, C, T) -> (n, C, F) float32."""
        return clip_features(clips, self.ingest_config.sfreq, self.feature_config)

    def describe(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "n_feats": self.n_feats,
            "min_duration_s": self.seq_len * self.ingest_config.clip_s,
            "eval_stride": self.eval_stride or self.seq_len,
            "feature_config": self.feature_config,
            "ingest_config": self.ingest_config.to_dict(),
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


# ---------------------------------------------------------------------------- neural consumer
class Pending(Protocol):
    def result(self) -> np.ndarray:
        """Probabilities, shape (n_sequences, n_chans)."""


class Predictor(Protocol):
    """Scores batches of one recording's sequences: the networks here, or a Serve deployment."""

    def submit(self, batch: list[np.ndarray]) -> Pending:
        """Start scoring ``batch`` (sequences (n_chans, seq_len, n_feats)); ``.result()`` waits."""


class SequenceConsumer(Consumer):
    """A neural model's consumer: blocks -> features -> sequences -> predictor -> mean.

    Parameters
    ----------
    name : str
        Model name.
    prep : Preprocessing
    folds : sequence of int
        Folds averaged by the predictor (reported in the result).
    threshold : float
        The SOZ decision threshold.
    predictor : Predictor
    batch_size : int
        Sequences per ``predictor.submit``.
    max_in_flight : int
        Submissions left running before waiting for the oldest (``0``: wait at once).
    calibration : trainer.calibration.EnsembleCalibration, optional
        Applied to the channel probabilities and the threshold (:func:`make_result`).
    relative_k : float, optional
        The patient-relative call rule's ``k`` (:func:`make_result`); ``None`` = ``threshold``.
    """

    def __init__(
        self,
        name: str,
        prep: Preprocessing,
        folds: Sequence[int],
        threshold: float,
        predictor: Predictor,
        *,
        batch_size: int = 8,
        max_in_flight: int = 0,
        calibration=None,
        relative_k: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"{batch_size=} must be >= 1.")
        self.name, self.prep = name, prep
        self.folds, self.threshold = tuple(folds), float(threshold)
        self.predictor = predictor
        self.batch_size, self.max_in_flight = int(batch_size), int(max_in_flight)
        self.ingest_config, self.cache_bytes = prep.ingest_config, prep.cache_bytes
        self.min_clips = prep.min_clips
        self.calibration = calibration
        self.relative_k = relative_k
        self.sequences_seen: list[np.ndarray] | None = None  # set to a list to keep them

    def start(self, rec: Recording, contacts: tuple[str, ...], n_clips: int) -> None:
        self._assembler = SequenceAssembler(self.prep.sequence_starts(n_clips), self.prep.seq_len)
        self._sum = np.zeros(len(contacts), dtype=np.float64)
        self._n = 0
        self._pending: list[np.ndarray] = []
        self._in_flight: deque[Pending] = deque()
        self._t_features = self._t_model = 0.0

    def add(self, clip_start: int, clips: np.ndarray) -> None:
        t0 = time.perf_counter()
        seqs = self._assembler.add(clip_start, self.prep.features(clips))
        self._t_features += time.perf_counter() - t0
        if self.sequences_seen is not None:
            self.sequences_seen.extend(seqs)
        for seq in seqs:
            self._pending.append(seq)
            if len(self._pending) >= self.batch_size:
                self._submit()

    def _submit(self) -> None:
        t0 = time.perf_counter()
        self._in_flight.append(self.predictor.submit(self._pending))
        self._pending = []
        self._drain(self.max_in_flight)
        self._t_model += time.perf_counter() - t0

    def _drain(self, keep: int) -> None:
        while len(self._in_flight) > keep:
            probs = np.asarray(self._in_flight.popleft().result())  # (B, C)
            self._sum += probs[:, : len(self._sum)].sum(axis=0)
            self._n += len(probs)

    def finish(self, rec: Recording, contacts: tuple[str, ...], timings: dict) -> ScoreResult:
        if self._pending:
            self._submit()
        t0 = time.perf_counter()
        self._drain(0)
        self._t_model += time.perf_counter() - t0
        self._assembler.check_done(rec.recording_id)
        if self._n < 1:
            raise SozkitError(f"{rec.recording_id}: no sequence was scored.")
        return make_result(
            rec, self.name, self.folds, self.threshold, contacts, self._sum / self._n,
            n_sequences=self._n, warnings=scoring_warnings(rec), calibration=self.calibration,
            relative_k=self.relative_k, flat=self.flat,
            timings={**timings, "features": self._t_features, "model": self._t_model},
        )  # fmt: skip


# ---------------------------------------------------------------------------- results
def scoring_warnings(rec: Recording) -> tuple[str, ...]:
    """Warnings a result carries: contacts dropped as bad, reader warnings."""
    out = list(rec.warnings)
    dropped = [c for c in rec.channels if c in rec.bad]
    if dropped:
        shown = name_list(dropped)
        out.append(f"{len(dropped)} channel(s) marked bad were not scored: {shown}")
    non_ieeg = [
        c
        for c, t in zip(rec.channels, rec.ch_types, strict=True)
        if c not in rec.bad and t not in INTRACRANIAL_TYPES
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
    calibration=None,
    relative_k: float | None = None,
    flat: np.ndarray | None = None,
) -> ScoreResult:
    """A :class:`ScoreResult` for ``rec`` with labels taken from the recording where known.

    ``calibration`` (a :class:`trainer.calibration.EnsembleCalibration`, strictly increasing
    within the recording) maps the raw probabilities and threshold onto calibrated ones; the raw
    ones are kept. A map on the relative input stands each contact, and the threshold, against
    this recording's contacts that are not ``flat``, as training stood them against their
    patient's (:func:`trainer.calibration.relative_scores`).
    ``relative_k`` replaces ``threshold`` by the patient-relative rule's threshold of this
    recording's contacts (:func:`trainer.call_rules.relative_threshold`, on the raw scores),
    leaving out the ``flat`` ones.
    """
    labels = None if rec.soz is None else tuple(c in rec.soz for c in channels)
    probs = np.asarray(probabilities, dtype=np.float64)
    if relative_k is not None:
        threshold = relative_threshold(probs, relative_k, flat)
    cal = {}
    if calibration is not None:
        cal = {
            "raw_probabilities": probs,
            "raw_threshold": float(threshold),
            "calibration": calibration.method,
        }
        ref = {"reference": probs, "flat": flat}
        probs, threshold = (
            calibration(probs, flat=flat),
            float(calibration(np.array([threshold]), **ref)[0]),
        )
    return ScoreResult(
        recording_id=rec.recording_id,
        subject=rec.subject,
        cohort=rec.cohort,
        model=model,
        folds=tuple(int(f) for f in folds),
        threshold=float(threshold),
        channels=tuple(channels),
        probabilities=probs,
        soz_labels=labels,
        n_sequences=int(n_sequences),
        duration_s=rec.duration_s,
        sfreq=rec.sfreq,
        metadata=recording_metadata(rec),
        timings=dict(timings or {}),
        warnings=tuple(warnings),
        **cal,
    )
