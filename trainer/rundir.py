"""The training run directory: the one contract between ``soz train`` and whatever reads a run.

As :class:`ingest.store.ClipStore` is for the clip store, :class:`RunDir` is for a run: training
writes it through these paths, and serving, reports and resumed training read it through them;
nothing else spells a file name of the layout.

Layout::

    RUN_DIR/
      card.json                       training card: config, fold patient ids, seeds, versions,
                                      commit; extra.store_ingest_config = the store's settings
      folds.json                      the folds (checked on --resume; the folds a run must have)
      summary.md                      all models side by side, the classical baseline included
      <model>/                        sozformer | dcgru | svm | baseline
        metrics.json                  summarise_folds over the folds (pooled + mean/std)
        predictions.parquet           test predictions of every fold, one row per (recording,
                                      channel): fold, cohort, patient, recording_id, channel,
                                      y_true, score
        roc_by_cohort.png, pr.png, confusion.png, reliability.png, training_curves.png
        fold_<k>/
          val_predictions.parquet     validation / test predictions of the fold
          test_predictions.parquet
          threshold.json              {"threshold": t, "call_rule": "youden"|"relative",
                                      "relative_k": k} (every model; trainer.call_rules)
          calibration.json            trainer.calibration.Calibrator fitted on the fold's
                                      validation patients (every model; serving applies it)
          checkpoint.pt               neural models: trainer.checkpoint (weights, hparams,
                                      threshold, feature config, seq_len, sfreq, ingest config)
          svm.pkl                     SVM: the fitted models.svm.SOZSVM
          confusion.png, roc_by_cohort.png, roc_through_training.png (neural)
          metrics.json                evaluate_fold (threshold from validation, test metrics) +
                                      training history; the FINISHED MARKER, written last
        ray/fold_<k>/                 neural models: Ray Train run (per-epoch checkpoints; resume)

A fold is **finished** when its ``metrics.json`` exists: it is written after every other file
of the fold (the model file included), so a run killed in between leaves an unfinished fold
that ``--resume`` trains again, never a finished fold without its model. A fold is **complete**
(servable) when it is finished and holds its model file. :meth:`RunDir.serving_folds` refuses a
model whose folds are not all complete (:class:`IncompleteRun`, naming the folds) unless told to
use the complete ones, and then says loudly which.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.config import IngestConfig
from ingest.errors import SozkitError
from ingest.fileio import write_json

logger = logging.getLogger(__name__)

CARD = "card.json"
FOLDS = "folds.json"
SUMMARY = "summary.md"
#: The finished marker of a fold (and the model-level summary).
MARKER = "metrics.json"
THRESHOLD = "threshold.json"
CALIBRATION = "calibration.json"
CHECKPOINT = "checkpoint.pt"
SVM_MODEL = "svm.pkl"
PREDICTIONS = "predictions.parquet"
#: Models that are evaluation references: a threshold, no fitted model to serve.
REFERENCE_MODELS = ("baseline",)

_FOLD_DIR = re.compile(r"^fold_(\d+)$")


class IncompleteRun(SozkitError):
    """A model of the run has folds that did not finish (or lack their model file)."""


def model_file(model: str) -> str | None:
    """The file a fold of ``model`` is served from (``None`` for evaluation references)."""
    if model in REFERENCE_MODELS:
        return None
    return SVM_MODEL if model == "svm" else CHECKPOINT


@dataclass(frozen=True)
class RunDir:
    """A training run directory (layout in the module docstring).

    Parameters
    ----------
    path : path-like
        The ``--out`` folder of ``soz train``.
    """

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory (``SozkitError`` when there is none)."""
        run = cls(path)
        if not run.path.is_dir():
            raise SozkitError(
                f"run directory {run.path} does not exist; give the --out folder of `soz train`."
            )
        return run

    # -- paths -------------------------------------------------------------------------------
    @property
    def card_path(self) -> Path:
        return self.path / CARD

    @property
    def folds_path(self) -> Path:
        return self.path / FOLDS

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    def model_dir(self, model: str) -> Path:
        """``RUN_DIR/<model>``."""
        return self.path / model

    def fold_dir(self, model: str, fold: int) -> Path:
        """``RUN_DIR/<model>/fold_<k>``."""
        return self.path / model / f"fold_{int(fold)}"

    def checkpoint_path(self, model: str, fold: int) -> Path:
        return self.fold_dir(model, fold) / CHECKPOINT

    def svm_path(self, fold: int) -> Path:
        return self.fold_dir("svm", fold) / SVM_MODEL

    def marker_path(self, model: str, fold: int) -> Path:
        return self.fold_dir(model, fold) / MARKER

    def predictions_path(self, model: str) -> Path:
        """``RUN_DIR/<model>/predictions.parquet`` (every fold's test predictions)."""
        return self.model_dir(model) / PREDICTIONS

    def model_metrics_path(self, model: str) -> Path:
        return self.model_dir(model) / MARKER

    def ray_storage(self, model: str) -> Path:
        """``RUN_DIR/<model>/ray``: where Ray Train keeps a model's per-epoch checkpoints."""
        return self.model_dir(model) / "ray"

    # -- folds -------------------------------------------------------------------------------
    def fold_finished(self, model: str, fold: int) -> bool:
        """Whether the fold's finished marker (written last) exists."""
        return self.marker_path(model, fold).is_file()

    def mark_finished(self, model: str, fold: int, metrics: Any) -> Path:
        """Write the fold's ``metrics.json``: call it after every other file of the fold."""
        return Path(write_json(self.marker_path(model, fold), metrics))

    def fold_indices(self, model: str) -> list[int]:
        """Every ``fold_<k>`` folder of a model, finished or not."""
        d = self.model_dir(model)
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _FOLD_DIR.match(p.name)))

    def expected_folds(self, model: str) -> list[int]:
        """The folds a model must have: those of ``folds.json``, else its fold folders."""
        if self.folds_path.is_file():
            try:
                return sorted(int(f["index"]) for f in json.loads(self.folds_path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise SozkitError(
                    f"{self.folds_path} is unreadable ({e}); re-run soz train."
                ) from e
        return self.fold_indices(model)

    def complete_folds(self, model: str) -> dict[int, Path]:
        """``{fold: model file}`` of the finished folds that hold their model file."""
        name = model_file(model)
        if name is None:
            return {}
        out = {}
        for k in self.fold_indices(model):
            path = self.fold_dir(model, k) / name
            if self.fold_finished(model, k) and path.is_file():
                out[k] = path
        return out

    def incomplete_folds(self, model: str) -> list[int]:
        """Folds of a trained model that are unfinished or lack their model file."""
        if not self.fold_indices(model):
            return []
        done = self.complete_folds(model)
        return sorted(k for k in {*self.expected_folds(model), *self.fold_indices(model)}
                      if k not in done)  # fmt: skip

    def models(self) -> dict[str, list[int]]:
        """Servable models of the run and their complete folds (``{"sozformer": [0, 1] ...}``)."""
        if not self.path.is_dir():
            raise SozkitError(
                f"run directory {self.path} does not exist; give the --out folder of `soz train`."
            )
        out = {}
        for sub in sorted(p for p in self.path.iterdir() if p.is_dir()):
            folds = self.complete_folds(sub.name)
            if folds:
                out[sub.name] = sorted(folds)
        return out

    def serving_folds(
        self, model: str, fold: int | None = None, *, allow_incomplete: bool = False
    ) -> dict[int, Path]:
        """The model files to serve ``model`` from: one fold, or every fold of the ensemble.

        Parameters
        ----------
        model : str
        fold : int | None
            One fold, or ``None`` for every fold.
        allow_incomplete : bool
            Serve the complete folds of a model that has incomplete ones (logged as a
            warning naming the folds used and left out) instead of refusing.

        Raises
        ------
        IncompleteRun
            Some of the folds asked for are unfinished or lack their model file.
        SozkitError
            No such model or fold in the run.
        """
        name = model_file(model)
        if name is None:
            raise SozkitError(
                f"{model!r} is an evaluation reference without a fitted model; it cannot score "
                "new recordings. Pick sozformer, dcgru or svm."
            )
        complete = self.complete_folds(model)
        incomplete = self.incomplete_folds(model)
        if fold is not None:
            if fold in complete:
                return {fold: complete[fold]}
            if fold in incomplete:
                raise IncompleteRun(
                    f"{self.path}: fold {fold} of {model!r} did not finish (no {MARKER} or no "
                    f"{name}); finish it with `soz train --resume`, or pick one of the complete "
                    f"folds {sorted(complete)}."
                )
            if complete or incomplete:
                raise SozkitError(
                    f"{model!r} has no fold {fold} in {self.path}; its folds are "
                    f"{sorted({*complete, *incomplete})}."
                )
        if not complete:
            raise SozkitError(
                f"{self.path} has no {model!r} model (no complete {model}/fold_<k>/{name}); the "
                f"run holds {sorted(self.models()) or 'no model'}. Pick one of those, or train it."
                + (f" Folds {incomplete} of {model!r} did not finish." if incomplete else "")
            )
        if incomplete:
            if not allow_incomplete:
                raise IncompleteRun(
                    f"{self.path}: {model!r} folds {incomplete} did not finish (no {MARKER} or "
                    f"no {name}), so its ensemble would silently lose them. Finish the run with "
                    f"`soz train --resume`, score one complete fold (--fold K, one of "
                    f"{sorted(complete)}), or pass --allow-incomplete to use folds "
                    f"{sorted(complete)} only."
                )
            logger.warning(
                "%s: %r is served from folds %s ONLY; folds %s did not finish",
                self.path, model, sorted(complete), incomplete,
            )  # fmt: skip
        return complete

    def threshold(self, model: str, fold: int) -> float:
        """A fold's threshold (``threshold.json``, else its ``metrics.json``)."""
        for path in (self.fold_dir(model, fold) / THRESHOLD, self.marker_path(model, fold)):
            if path.is_file():
                value = json.loads(path.read_text()).get("threshold")
                if value is not None:
                    return float(value)
        raise SozkitError(
            f"no threshold in {self.fold_dir(model, fold)}/{THRESHOLD}: fold {fold} of {model!r} "
            "did not finish (soz train --resume)."
        )

    def calibration_path(self, model: str, fold: int) -> Path:
        return self.fold_dir(model, fold) / CALIBRATION

    def write_calibration(self, model: str, fold: int, calibrator) -> Path:
        """Write a fold's :class:`trainer.calibration.Calibrator` (before its finished marker)."""
        return Path(write_json(self.calibration_path(model, fold), calibrator.to_dict()))

    def calibrator(self, model: str, fold: int):
        """A fold's :class:`trainer.calibration.Calibrator`; the identity for a run trained
        before calibration existed (logged), a clear error for an unreadable file."""
        from trainer.calibration import Calibrator

        path = self.calibration_path(model, fold)
        if not path.is_file():
            logger.warning(
                "%s has no %s: fold %d of %r reports raw probabilities (retrain to calibrate)",
                self.path, CALIBRATION, fold, model,
            )  # fmt: skip
            return Calibrator("identity", info={"missing": True})
        try:
            return Calibrator.from_dict(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, TypeError) as e:
            raise SozkitError(
                f"{path} is unreadable ({e}); retrain fold {fold} of {model!r}."
            ) from e

    def relative_k(self, model: str, fold: int) -> float | None:
        """The fold's ``k`` when it calls with the relative rule, else ``None`` (Youden)."""
        path = self.fold_dir(model, fold) / THRESHOLD
        data = json.loads(path.read_text()) if path.is_file() else {}
        if data.get("call_rule") == "relative":
            return float(data["relative_k"])
        return None

    def fold_metrics(self, model: str, fold: int) -> dict:
        """A finished fold's ``metrics.json``."""
        return json.loads(self.marker_path(model, fold).read_text("utf-8"))

    # -- run-level files ---------------------------------------------------------------------
    def card(self) -> dict[str, Any]:
        """``card.json`` as a dict (empty when absent or unreadable)."""
        try:
            data = json.loads(self.card_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def eval_stride(self) -> int | None:
        """The evaluation stride the run used (``card.json``), ``None`` = the sequence length."""
        card = self.card()
        config = card.get("config", card)
        stride = config.get("eval_stride") if isinstance(config, dict) else None
        return int(stride) if stride else None

    def ingest_config(self) -> IngestConfig:
        """The ingest configuration of the store the run was trained on.

        From a neural checkpoint when there is one, else from ``card.json``
        (``store_ingest_config``).
        """
        for ckpt in sorted(self.path.glob(f"*/fold_*/{CHECKPOINT}")):
            meta = checkpoint_meta(ckpt)
            if meta.ingest_config:
                return IngestConfig.from_dict(dict(meta.ingest_config))
        card = self.card()
        for holder in (card, card.get("extra") or {}):
            if isinstance(holder, dict) and holder.get("store_ingest_config"):
                return IngestConfig.from_dict(dict(holder["store_ingest_config"]))
        raise SozkitError(
            f"{self.path}: no checkpoint or card.json records the store's ingest configuration, "
            "so the training preprocessing cannot be reproduced; retrain with a current sozkit."
        )


def checkpoint_meta(path: str | os.PathLike):
    """A checkpoint's metadata without its weights (memory-mapped: the tensors are not read).

    Returns
    -------
    trainer.checkpoint.FoldCheckpoint
    """
    from trainer.checkpoint import read_checkpoint_meta

    return read_checkpoint_meta(path)
