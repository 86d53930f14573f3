"""What the report shows behind a call: per-window, per-fold probabilities and occlusion attribution.

:func:`explain_stored` (a recording of the clip store) and :func:`explain_recording` (a signal
file, through the scorer's own preprocessing) score every sequence of a recording with each fold
model of a :class:`serving.scoring.Scorer` separately, then explain a few windows by occlusion
(:func:`models.attribution.occlusion`, averaged over the fold models):

- ictal recordings: the window holding each seizure onset;
- interictal recordings: the ``n_explained`` windows with the highest probability on the
  recording's top contacts.

Cost: one scoring pass (the same sequences; the fold models are run one by one instead of
averaged, the same compute) plus ``n_explained x (seq_len + 1) x n_folds`` sequences through the
networks for the occlusion. The result (:class:`RecordingExplanation`) feeds the report's
heatmap, fold intervals and highlighted traces; it is saved as ``.npz``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.attribution import occlusion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordingExplanation:
    """Per-window probabilities per fold model and attributions of a few windows.

    Parameters
    ----------
    recording_id, model : str
    channels : tuple of str
        Scored contacts, in the order of the arrays' channel axis.
    window_start_s : ndarray, shape (n_windows,)
        Start of each scored sequence, seconds from the recording start.
    window_s, clip_s : float
        Length of a sequence and of one clip.
    window_probs : ndarray, shape (n_folds, n_windows, n_chans)
        Probability of each contact in each window, by each fold model.
    folds : tuple of int
    fold_thresholds : tuple of float
    onsets_s : tuple of float
        Seizure onsets (empty for interictal recordings).
    explained : ndarray of int, shape (n_explained,)
        Windows explained by occlusion.
    attribution : ndarray, shape (n_explained, n_chans, seq_len)
        Change of each contact's probability when each clip of that window is occluded (mean
        over the fold models).
    seconds : float
        Wall time of the explanation.
    """

    recording_id: str
    model: str
    channels: tuple[str, ...]
    window_start_s: np.ndarray
    window_s: float
    clip_s: float
    window_probs: np.ndarray
    folds: tuple[int, ...]
    fold_thresholds: tuple[float, ...]
    onsets_s: tuple[float, ...] = ()
    explained: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    attribution: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    seconds: float = 0.0

    @property
    def fold_probabilities(self) -> dict[str, np.ndarray]:
        """Each fold model's per-contact probability (mean over windows): ``{"fold k": (C,)}``."""
        return {f"fold {f}": self.window_probs[i].mean(axis=0) for i, f in enumerate(self.folds)}

    @property
    def fold_threshold_map(self) -> dict[str, float]:
        return {f"fold {f}": t for f, t in zip(self.folds, self.fold_thresholds, strict=True)}

    def highlighted(self, contact: str) -> list[tuple[float, float, float]]:
        """Clips with a positive attribution for ``contact``: ``(start_s, stop_s, weight)``.

        The weight is the attribution over the largest one of that contact (1 = the clip that
        raised its probability most).
        """
        if contact not in self.channels or not len(self.explained):
            return []
        c = self.channels.index(contact)
        a = self.attribution[:, c, :]  # (n_explained, S)
        top = float(a.max())
        if top <= 0:
            return []
        out = []
        for k, w in enumerate(self.explained):
            for s in np.nonzero(a[k] > 0.1 * top)[0]:
                start = float(self.window_start_s[w] + s * self.clip_s)
                out.append((start, start + self.clip_s, float(a[k, s] / top)))
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.npz`` (arrays and scalars; no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, recording_id=self.recording_id, model=self.model,
            channels=np.array(self.channels), window_start_s=self.window_start_s,
            window_s=self.window_s, clip_s=self.clip_s, window_probs=self.window_probs,
            folds=np.array(self.folds, np.int64), fold_thresholds=np.array(self.fold_thresholds),
            onsets_s=np.array(self.onsets_s, float), explained=self.explained,
            attribution=self.attribution, seconds=self.seconds,
        )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RecordingExplanation:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                recording_id=str(z["recording_id"]), model=str(z["model"]),
                channels=tuple(str(c) for c in z["channels"]),
                window_start_s=z["window_start_s"], window_s=float(z["window_s"]),
                clip_s=float(z["clip_s"]), window_probs=z["window_probs"],
                folds=tuple(int(f) for f in z["folds"]),
                fold_thresholds=tuple(float(t) for t in z["fold_thresholds"]),
                onsets_s=tuple(float(t) for t in z["onsets_s"]), explained=z["explained"],
                attribution=z["attribution"], seconds=float(z["seconds"]),
            )  # fmt: skip


def explain_sequences(
    scorer,
    sequences: np.ndarray,
    starts: np.ndarray,
    *,
    recording_id: str,
    channels: tuple[str, ...],
    onsets_s: tuple[float, ...] = (),
    n_explained: int = 2,
    top_contacts: int = 5,
    window_probs: np.ndarray | None = None,
) -> RecordingExplanation:
    """Explain a recording given its sequences (the core of both entry points).

    Parameters
    ----------
    scorer : serving.scoring.Scorer
        Its fold models (``scorer.models``), thresholds and clip length are used.
    sequences : ndarray, shape (n_windows, n_chans, seq_len, n_feats)
        Every scored sequence of the recording.
    starts : ndarray of int, shape (n_windows,)
        First clip of each sequence.
    recording_id : str
    channels : tuple of str
    onsets_s : tuple of float
        Seizure onsets: the windows holding them are explained.
    n_explained : int
        Windows explained when there is no onset (highest probability on the top contacts).
    top_contacts : int
        How many top contacts pick those windows.
    window_probs : ndarray, shape (n_folds, n_windows, n_chans), or None
        Each fold model's probabilities of these sequences when the caller has them (the
        scoring pass of :func:`score_and_explain`); None: computed here.
    """
    import time

    t0 = time.perf_counter()
    clip_s = float(scorer.ingest_config.clip_s)
    seq_len = int(scorer.seq_len)
    n_w = len(sequences)
    bs = max(1, int(scorer.batch_size))
    if window_probs is not None:
        per_fold = np.asarray(window_probs, np.float32)
    else:
        per_fold = np.zeros((len(scorer.models), n_w, len(channels)), np.float32)
    with torch.no_grad():
        for i, net in enumerate(scorer.models if window_probs is None else ()):
            for a in range(0, n_w, bs):
                x = torch.from_numpy(np.ascontiguousarray(sequences[a : a + bs])).to(scorer.device)
                per_fold[i, a : a + bs] = torch.sigmoid(net(x, _mask(x)).float()).cpu().numpy()
    start_s = np.asarray(starts, float) * clip_s
    ends = start_s + seq_len * clip_s
    explained: list[int] = []
    for onset in onsets_s:
        hit = np.nonzero((start_s <= onset) & (onset < ends))[0]
        if len(hit):
            explained.append(int(hit[0]))
    if not explained:
        mean = per_fold.mean(axis=0)  # (W, C)
        top = np.argsort(-mean.mean(axis=0), kind="stable")[:top_contacts]
        order = np.argsort(-mean[:, top].mean(axis=1), kind="stable")
        explained = [int(w) for w in order[:n_explained]]
    explained = sorted(set(explained))
    x = torch.from_numpy(np.ascontiguousarray(sequences[explained])).to(scorer.device)
    attr = torch.zeros(x.shape[:3])
    for net in scorer.models:
        attr += occlusion(net, x, _mask(x), batch_size=max(bs * seq_len, seq_len))[1].cpu()
    attr /= len(scorer.models)
    return RecordingExplanation(
        recording_id=recording_id, model=scorer.name, channels=tuple(channels),
        window_start_s=start_s, window_s=seq_len * clip_s, clip_s=clip_s, window_probs=per_fold,
        folds=tuple(scorer.folds), fold_thresholds=tuple(float(m.threshold) for m in scorer.metas),
        onsets_s=tuple(float(o) for o in onsets_s), explained=np.asarray(explained, np.int64),
        attribution=attr.numpy(), seconds=time.perf_counter() - t0,
    )  # fmt: skip


def explain_stored(scorer, store, recording_id: str, **kwargs) -> RecordingExplanation:
    """Explain a recording of the clip store (its clips, scaled as training read them).

    Parameters
    ----------
    scorer : serving.scoring.Scorer
    store : ingest.store.ClipStore
        Built with the scorer's preprocessing (same rate and clip length).
    recording_id : str
    **kwargs
        Passed to :func:`explain_sequences`.
    """
    n_clips = int(store.array(recording_id).shape[0])
    feats = scorer.features(store.read_clips(recording_id, 0, n_clips, scaled=True))  # (N, C, F)
    starts = scorer.sequence_starts(n_clips)
    seqs = np.stack([feats[s : s + scorer.seq_len].transpose(1, 0, 2) for s in starts])
    chans = store.channels([recording_id]).sort_values("channel_index")["name"].astype(str)
    clips = store.clips([recording_id])
    onsets = _onsets(clips)
    return explain_sequences(
        scorer, seqs, starts, recording_id=recording_id, channels=tuple(chans), onsets_s=onsets,
        **kwargs,
    )  # fmt: skip


def explain_recording(scorer, rec, **kwargs) -> RecordingExplanation:
    """Explain a recording file through the scorer's own preprocessing (as :meth:`score`).

    Parameters
    ----------
    scorer : serving.scoring.Scorer
    rec : ingest.recording.Recording
    **kwargs
        Passed to :func:`explain_sequences`.
    """
    return score_and_explain(scorer, rec, **kwargs)[1]


def score_and_explain(scorer, rec, **kwargs):
    """Score a recording file and explain it from the same pass over the signal.

    The file is read and preprocessed once (:func:`serving.engine.score_recording`, the
    sequences and each fold model's probabilities kept), so explaining costs only the occluded
    copies of the explained windows through the fold models.

    Returns
    -------
    result : serving.results.ScoreResult
        What :meth:`serving.scoring.Scorer.score` returns.
    explanation : RecordingExplanation
    """
    from serving.engine import SequenceConsumer, score_recording

    stream = scorer.stream(rec)  # contacts and clip count (the header only)
    keep = _FoldKeeping(scorer.networks)
    consumer = SequenceConsumer(
        scorer.name, scorer.prep, scorer.folds, scorer.rules, keep,
        batch_size=scorer.batch_size,
    )  # fmt: skip
    consumer.sequences_seen = []
    (result,) = score_recording(rec, [consumer])
    seqs = np.stack(consumer.sequences_seen)
    starts = scorer.sequence_starts(stream.n_clips)
    onsets = tuple(float(e.onset_s) for e in rec.seizures)
    expl = explain_sequences(
        scorer, seqs, starts, recording_id=rec.recording_id, channels=tuple(result.channels),
        onsets_s=onsets, window_probs=np.concatenate(keep.per_fold, axis=1), **kwargs,
    )  # fmt: skip
    return result, expl


class _FoldKeeping:
    """A :class:`serving.engine.Predictor` keeping each fold model's probabilities."""

    def __init__(self, networks) -> None:
        self.networks, self.per_fold = networks, []

    def submit(self, batch):
        from serving.scoring import _Done

        probs = self.networks.predict_folds(batch)  # (F, B, C)
        self.per_fold.append(probs)
        return _Done(probs.mean(axis=0))


def _onsets(clips) -> tuple[float, ...]:
    """Seizure onsets from the clips manifest: start_s - seconds_from_onset of each seizure."""
    ictal = clips[clips["ictal"].astype(bool)]
    out = []
    for _, grp in ictal.groupby("seizure"):
        first = grp.sort_values("clip_index").iloc[0]
        out.append(float(first["start_s"] - float(first["seconds_from_onset"])))
    return tuple(sorted(out))


def _mask(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


def explain_results(
    results,
    run_dir: str | os.PathLike,
    *,
    store=None,
    models: tuple[str, ...] | None = None,
    line_freq: float | None = None,
    progress=None,
    **kwargs,
) -> tuple[dict[tuple[str, str], RecordingExplanation], list[str]]:
    """Explain every recording of a results table with the run's neural models.

    A recording is read from ``store`` when it is complete there and the store has the model's
    preprocessing (rate and clip length), else from its ``source_path`` signal file. The SVM
    and the baseline have no sequences to occlude and are left out (said in the notes).

    Parameters
    ----------
    results : DataFrame
        A results table (:func:`serving.report_results.load_results`).
    run_dir : path-like
        The training run the models come from.
    store : ingest.store.ClipStore or None
    models : tuple of str or None
        Models to explain (default: every neural model of the results the run holds).
    line_freq : float or None
        For signal files that state none.
    progress : callable (done, total) or None
    **kwargs
        Passed to :func:`explain_sequences` (``n_explained``, ``top_contacts``).

    Returns
    -------
    explanations : dict (recording_id, model) -> RecordingExplanation
    notes : list of str
        What could not be explained, and why.
    """
    from serving.inputs import recording_for_path
    from serving.scoring import Scorer, run_models

    available = run_models(run_dir)
    wanted = models or tuple(sorted(set(results["model"].astype(str))))
    notes, todo = [], []
    for model in wanted:
        if model in ("svm", "baseline"):
            notes.append(f"{model}: no sequences to occlude (clip-feature model), not explained")
        elif model not in available:
            notes.append(f"{model}: not in {run_dir}, not explained")
        else:
            rids = results.loc[results["model"].astype(str) == model, "recording_id"]
            todo += [(model, str(r)) for r in dict.fromkeys(rids.astype(str))]
    out: dict[tuple[str, str], RecordingExplanation] = {}
    scorers: dict[str, Scorer] = {}
    stored = store.complete_ids() if store is not None else set()
    for done, (model, rid) in enumerate(todo, start=1):
        scorer = scorers.get(model) or scorers.setdefault(model, Scorer.from_run(run_dir, model))
        cfg = scorer.ingest_config
        same = store is not None and (store.sfreq, store.clip_samples) == (
            cfg.sfreq, cfg.clip_samples,
        )  # fmt: skip
        if rid in stored and same:
            out[(rid, model)] = explain_stored(scorer, store, rid, **kwargs)
        else:
            rows = results[results["recording_id"].astype(str) == rid]
            paths = rows["source_path"].dropna().astype(str) if "source_path" in rows else []
            path = next((p for p in paths if p and Path(p).is_file()), None)
            if path is None:
                notes.append(f"{rid}: not in the store given and no signal file, not explained")
            else:
                rec = recording_for_path(path, line_freq=line_freq)
                rec = _with_id(rec, rid)
                out[(rid, model)] = explain_recording(scorer, rec, **kwargs)
        if progress is not None:
            progress(done, len(todo))
    for key, e in out.items():
        logger.info("explained %s with %s in %.1f s", key[0], key[1], e.seconds)
    return out, notes


def _with_id(rec, recording_id: str):
    """The recording under the id the results give it (the report joins on it)."""
    from dataclasses import replace

    return rec if rec.recording_id == recording_id else replace(rec, recording_id=recording_id)
