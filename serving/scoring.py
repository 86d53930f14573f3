"""``Scorer``: a trained run's checkpoints in, per-contact SOZ probabilities out (no Ray).

A :class:`Scorer` holds one neural model of a training run: one fold's network, or every fold's
(the **ensemble**: the fold models' channel probabilities are averaged, and so are their
thresholds; each fold's threshold was chosen on its own validation patients, and their mean is
the natural threshold of the mean probability). It is the two halves of the scoring engine
(:mod:`serving.engine`) put together:

- the weight-free :class:`serving.engine.Preprocessing` (ingest configuration, spectral
  features, sequence starts as :func:`trainer.datasets.evaluation_sequences` gives them, the
  block stream), which is all the Serve ingress holds (:func:`load_preprocessing`);
- :class:`Networks`, the fold models and :meth:`Networks.predict`, which is all the Serve model
  deployment holds.

:meth:`Scorer.score` is :func:`serving.engine.score_recording` with the scorer's consumer;
:func:`load_scorers` returns every model of a run (the SVM from :mod:`serving.svm_scorer`), and
bulk scoring streams a recording once through all of them. Run directories are read through
:class:`trainer.rundir.RunDir`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ingest.errors import ConfigError, SozkitError
from ingest.recording import Recording
from serving.calls import CallRules
from serving.config import ALL_MODELS
from serving.engine import (
    Preprocessing,
    SequenceAssembler,
    SequenceConsumer,
    make_result,
    pad_sequences,
    score_recording,
    scoring_warnings,
)
from serving.preprocess import DEFAULT_CACHE_BYTES, RecordingStream
from serving.results import ScoreResult
from trainer.checkpoint import FoldCheckpoint, load_checkpoint
from trainer.rundir import REFERENCE_MODELS, RunDir, checkpoint_meta

logger = logging.getLogger(__name__)

__all__ = [
    "Networks",
    "Scorer",
    "SequenceAssembler",
    "load_preprocessing",
    "load_scorers",
    "make_result",
    "pad_sequences",
    "run_models",
    "scoring_warnings",
]


def run_models(run_dir: str | os.PathLike) -> dict[str, list[int]]:
    """Servable models of a run directory and their complete folds (:meth:`RunDir.models`)."""
    return RunDir.open(run_dir).models()


def ensemble(metas: Sequence[FoldCheckpoint]) -> tuple[tuple[int, ...], float]:
    """``(folds, threshold)`` of a fold ensemble: the fold indices and their mean threshold."""
    folds = tuple(int(m.fold) if m.fold is not None else i for i, m in enumerate(metas))
    return folds, float(np.mean([m.threshold for m in metas]))


def load_preprocessing(
    run_dir: str | os.PathLike,
    model: str = "sozformer",
    fold: int | None = None,
    *,
    allow_incomplete: bool = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    line_freq: float | None = None,
) -> tuple[Preprocessing, list[FoldCheckpoint]]:
    """A model's preprocessing and its folds' metadata, read without the weights."""
    run = RunDir.open(run_dir)
    paths = run.serving_folds(model, fold, allow_incomplete=allow_incomplete)
    metas = [checkpoint_meta(p) for p in paths.values()]
    prep = Preprocessing.from_checkpoints(
        model, metas, line_freq=line_freq, eval_stride=run.eval_stride(), cache_bytes=cache_bytes
    )
    return prep, metas


class Networks:
    """The fold networks of one model: batches of sequences in, mean probabilities out.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        One network per fold, all with the same input contract.
    seq_len, n_feats : int
        The sequence shape they take.
    device : str or torch.device
    """

    def __init__(
        self,
        models: Sequence[torch.nn.Module],
        *,
        seq_len: int,
        n_feats: int,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.models = [m.to(self.device).eval() for m in models]
        self.seq_len, self.n_feats = int(seq_len), int(n_feats)

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
        return self.predict_folds(batch).mean(axis=0)

    @torch.no_grad()
    def predict_folds(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """As :meth:`predict`, each fold model apart: shape (n_folds, B, max n_chans)."""
        x, mask = pad_sequences(batch, seq_len=self.seq_len, n_feats=self.n_feats)
        xt = torch.from_numpy(x).to(self.device)
        mt = torch.from_numpy(mask).to(self.device)
        probs = torch.stack([torch.sigmoid(net(xt, mt).float()) for net in self.models])
        return np.where(mask[None], probs.cpu().numpy(), 0.0).astype(np.float32)

    def submit(self, batch: list[np.ndarray]) -> _Done:
        """:class:`serving.engine.Predictor` in this process: scores at once."""
        return _Done(self.predict(batch))


class _Done:
    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def result(self) -> np.ndarray:
        return self.probs


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
    rules : CallRules, optional
        How the ensemble calls SOZ (``from_run`` loads the run's calibration and call rule);
        default: the folds' mean threshold, raw probabilities.

    Attributes
    ----------
    prep : Preprocessing
        The weight-free half (ingest configuration, features, sequences).
    networks : Networks
        The fold networks.
    threshold : float
        The threshold of ``rules``.
    folds : tuple of int
        The folds averaged.
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
        rules: CallRules | None = None,
    ) -> None:
        if not models or len(models) != len(metas):
            raise SozkitError(
                f"{name}: need one checkpoint per model, got {len(models)} models and "
                f"{len(metas)} checkpoints."
            )
        if batch_size < 1:
            raise ConfigError(f"{batch_size=} must be >= 1.")
        self.name = name
        self.prep = Preprocessing.from_checkpoints(
            name, metas, line_freq=line_freq, eval_stride=eval_stride, cache_bytes=cache_bytes
        )
        self.networks = Networks(
            models, seq_len=self.prep.seq_len, n_feats=self.prep.n_feats, device=device
        )
        self.metas = tuple(metas)
        self.folds, threshold = ensemble(metas)
        self.rules = rules or CallRules(threshold)
        self.batch_size = int(batch_size)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        model: str = "sozformer",
        fold: int | None = None,
        *,
        allow_incomplete: bool = False,
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
        allow_incomplete : bool
            Score with the complete folds of a run whose other folds did not finish (a
            warning names them) instead of refusing (:class:`trainer.rundir.IncompleteRun`).
        **kwargs
            Passed to :class:`Scorer` (``device``, ``batch_size``, ``line_freq`` ...).
            ``eval_stride`` defaults to the run's (``card.json``).
        """
        run = RunDir.open(run_dir)
        paths = run.serving_folds(model, fold, allow_incomplete=allow_incomplete)
        device = kwargs.get("device", "cpu")
        models, metas = [], []
        for path in paths.values():
            net, meta = load_checkpoint(path, map_location=device)
            models.append(net)
            metas.append(meta)
        kwargs.setdefault("eval_stride", run.eval_stride())
        kwargs.setdefault("rules", CallRules.from_run(run, model, paths, ensemble(metas)[1]))
        return cls(model, models, metas, **kwargs)

    # -- the two halves, for callers that use them directly ----------------------------------
    ingest_config = property(lambda self: self.prep.ingest_config)
    feature_config = property(lambda self: self.prep.feature_config)
    seq_len = property(lambda self: self.prep.seq_len)
    n_feats = property(lambda self: self.prep.n_feats)
    eval_stride = property(lambda self: self.prep.eval_stride)
    cache_bytes = property(lambda self: self.prep.cache_bytes)
    models = property(lambda self: self.networks.models)
    threshold = property(lambda self: self.rules.threshold)
    device = property(lambda self: self.networks.device)

    def sequence_starts(self, n_clips: int) -> np.ndarray:
        """First clip of every sequence (:meth:`serving.engine.Preprocessing.sequence_starts`)."""
        return self.prep.sequence_starts(n_clips)

    def stream(self, rec: Recording) -> RecordingStream:
        """The preprocessing stream of ``rec`` (checks it is long enough for one sequence)."""
        return self.prep.stream(rec)

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Spectral features of scaled clips (n, C, T) -> (n, C, F) float32."""
        return self.prep.features(clips)

    def predict(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """:meth:`Networks.predict`: probabilities (B, max n_chans) of a batch of sequences."""
        return self.networks.predict(batch)

    # -- scoring -----------------------------------------------------------------------------
    def consumer(self) -> SequenceConsumer:
        """A fresh engine consumer scoring one recording with these networks."""
        return SequenceConsumer(
            self.name, self.prep, self.folds, self.rules, self.networks,
            batch_size=self.batch_size,
        )  # fmt: skip

    def score(self, rec: Recording) -> ScoreResult:
        """Score one recording: per-contact probability, SOZ call, ranks, timings, warnings."""
        return score_recording(rec, [self.consumer()])[0]

    def prepare(self, rec: Recording) -> Iterator[np.ndarray]:
        """The sequences of ``rec`` the networks see, in order of their first clip.

        Yields
        ------
        x : ndarray, shape (n_contacts, seq_len, n_feats), float32
        """
        consumer = self.consumer()
        consumer.sequences_seen = []
        score_recording(rec, [consumer])
        yield from consumer.sequences_seen

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` shows about this scorer."""
        return describe_neural(
            self.name, self.metas, self.prep, device=str(self.device), folds=self.folds
        )


def describe_neural(
    name: str, metas: Sequence[FoldCheckpoint], prep: Preprocessing, *, device: str, folds=None
) -> dict[str, Any]:
    """What ``GET /models`` shows about a neural model (with or without its weights here)."""
    f, threshold = ensemble(metas)
    return {
        "model": name,
        "kind": "neural",
        "folds": list(folds or f),
        "threshold": threshold,
        **prep.describe(),
        "device": device,
        "hparams": dict(metas[0].hparams),
    }


def load_scorers(
    run_dir: str | os.PathLike,
    model: str = ALL_MODELS,
    fold: int | None = None,
    *,
    allow_incomplete: bool = False,
    **kwargs: Any,
) -> list:
    """The scorers of a run: one model by name, or every servable model (``"all"``).

    Parameters
    ----------
    run_dir : path-like
    model : str
        ``"sozformer"``, ``"dcgru"``, ``"svm"``, ``"baseline"`` (the classical baseline with the
        run's baseline thresholds, :mod:`serving.baseline_scorer`) or ``"all"`` (the fitted
        models).
    fold : int | None
        One fold, or ``None`` for each model's fold ensemble.
    allow_incomplete : bool
        See :meth:`Scorer.from_run`.
    **kwargs
        ``batch_size``, ``device``, ``line_freq`` (neural) and ``cache_bytes``, ``line_freq``
        (SVM).

    Returns
    -------
    list of Scorer or serving.svm_scorer.SVMScorer
    """
    from serving.svm_scorer import SVMScorer

    available = run_models(run_dir)
    if model == ALL_MODELS:
        names = [m for m in available if m not in REFERENCE_MODELS]
        if not names:
            raise SozkitError(
                f"{run_dir} holds no servable model (found {sorted(available) or 'none'}); "
                "train sozformer, dcgru or svm first."
            )
    else:
        names = [model]
    svm_kw = {k: v for k, v in kwargs.items() if k in ("cache_bytes", "line_freq")}
    out: list = []
    for name in names:
        if name == "baseline":
            from serving.baseline_scorer import BaselineScorer

            out.append(BaselineScorer.from_run(run_dir, fold=fold, **svm_kw))
        elif name == "svm":
            out.append(
                SVMScorer.from_run(run_dir, fold=fold, allow_incomplete=allow_incomplete, **svm_kw)
            )
        else:
            out.append(
                Scorer.from_run(
                    run_dir, model=name, fold=fold, allow_incomplete=allow_incomplete, **kwargs
                )
            )
    return out
