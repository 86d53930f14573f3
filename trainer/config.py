"""``TrainConfig``: every setting of the training stage, frozen and validated once.

The CLI (``soz train``) builds one :class:`TrainConfig` from its arguments; everything below it
(:func:`trainer.run.run_training`, the Ray Train workers, the SVM and baseline stages) receives it
or its plain-dict form (:meth:`TrainConfig.to_dict`, which is also what the training card records).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ingest.errors import ConfigError
from trainer.calibration import CALIBRATIONS, PRIORS

#: Models ``soz train --model`` knows. ``"all"`` at the CLI expands to every one of them.
NEURAL_MODELS = ("sozformer", "dcgru")
CLASSICAL_MODELS = ("svm", "baseline")
ALL_MODELS = NEURAL_MODELS + CLASSICAL_MODELS
#: Inputs of each neural model unless a run names others (``TrainConfig.clip_extras`` /
#: ``augment``), the best setting measured (README "Time-domain evidence in the neural tokens"):
#: spikes + tilt lifted SOZFormer across simulator families (+0.130 ROC-AUC W -> E, +0.010
#: E -> W over 7 runs) and within one (+0.100 on Epileptor, +0.005 on Wendling, 16 patients);
#: for DCGRU the tilt cost about 0.02 within a family, the spikes alone gained (+0.015 in-family,
#: +0.021 / -0.002 across), so DCGRU gets the spikes without the tilt.
DEFAULT_CLIP_EXTRAS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"sozformer": ("spikes",), "dcgru": ("spikes",)}
)
DEFAULT_AUGMENT: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"sozformer": ("tilt",), "dcgru": ()}
)
#: The per-model input fields of :class:`TrainConfig` (what a resumed run must keep).
MODEL_INPUTS = ("clip_extras", "augment")
#: What ``TrainConfig.clip_extras`` / ``augment`` take: one tuple for every neural model, or
#: ``{model: tuple}``.
PerModel = tuple[str, ...] | Mapping[str, tuple[str, ...]]
#: Ray placement group strategies of a fold's workers (``TrainConfig.placement_strategy``).
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all models, all folds).

    Parameters
    ----------
    models : tuple of str
        Which of ``"sozformer"``, ``"dcgru"``, ``"svm"``, ``"baseline"`` to train, in order.
    n_folds : int
        Patient-wise cross-validation folds (the test folds partition the patients).
    val_fraction : float
        Fraction of the non-test patients of a fold held out for validation (threshold,
        early stopping).
    seed : int
        Seed of the splits, the epoch sampling, the model initialisation and the SVM.
    epochs : int
        Maximum supervised epochs per fold (early stopping may end a fold sooner).
    patience : int
        Epochs without a better validation channel ROC-AUC before a fold stops.
    batch_size : int
        Sequences per optimiser step and per worker.
    seqs_per_recording : int
        Training sequences drawn per recording and epoch (before cohort weighting): a 20-hour
        recording gives as many sequences per epoch as a 3-minute one.
    ictal_fraction : float
        Fraction of an ictal recording's sequences that are drawn to contain at least one ictal
        clip (the rest anywhere in the recording); balances ictal against interictal context.
    balance_cohorts : bool
        Weight recordings by ``1 / (recordings in their cohort)`` so every cohort contributes the
        same number of sequences per epoch, however many recordings it has.
    eval_stride : int or None
        Clips between the starts of consecutive evaluation sequences; ``None`` = the model's
        sequence length (non-overlapping sequences covering each recording).
    max_eval_seqs : int or None
        Cap on evaluation sequences per recording (evenly spaced); ``None`` = all of them.
    n_bands, fmin, fmax : int or None, float, float or None
        Spectral features of each clip (:func:`models.spectral.spectral_features`): ``n_bands``
        log-spaced bands between ``fmin`` and ``fmax`` (``None``: every FFT bin).
    feature_cache : bool
        Precompute every clip's spectral features once, beside the store
        (:mod:`trainer.feature_cache`), so the loader reads features instead of signal.
    lr, weight_decay, grad_clip : float
        AdamW learning rate and weight decay; gradient-norm clipping (0 disables it).
    focal_gamma, focal_beta : float
        Focal class-balanced BCE of SOZFormer (SPEC defaults gamma=0, beta=0.999).
    pos_weight : float or None
        DCGRU's BCEWithLogits ``pos_weight``; ``None`` = negatives / positives among the fold's
        training channels.
    ssl_epochs : int
        Epochs of DCGRU's self-supervised next-clip pre-training before the supervised stage
        (0 skips it).
    model_hparams : mapping of str to mapping
        Constructor keyword arguments per model name (``{"sozformer": {"d_model": 128}}``),
        passed to :func:`models.registry.build_model` (``"svm"``: to ``SOZSVM``; ``"baseline"``:
        window settings of :mod:`trainer.baseline_stage`).
    num_workers : int
        Ray Train workers (DDP ranks) per fold.
    gpus_per_worker : float
        GPUs per worker (0 = CPU training).
    bf16 : bool
        Training forward passes and losses under bfloat16 autocast on a CUDA device that
        supports it (:func:`trainer.loop.training_autocast`); no effect on CPU. Scoring stays
        float32.
    cpus_per_worker : int
        CPUs reserved per worker; also the torch threads each worker uses, so workers do not
        oversubscribe the cores.
    loader_workers : int
        ``torch.utils.data.DataLoader`` worker processes per Ray worker (0 = load in the training
        process; prefetching then happens through a background thread).
    max_parallel_folds : int or None
        Folds trained at the same time; ``None`` = as many as the cluster's CPUs / GPUs fit.
    resume : bool
        Continue an interrupted run in the same run directory: finished folds are kept, a fold
        cut short restarts from its last checkpoint.
    max_failures : int
        Times Ray Train restarts a fold's workers after one of them (or its node) is lost; the
        fold continues from its last checkpoint (epoch) each time. 0: the first loss ends it.
    placement_strategy : str
        How a fold's workers are placed on the cluster's nodes (:data:`PLACEMENT_STRATEGIES`,
        Ray placement group strategies): ``"PACK"`` (as few nodes as possible), ``"SPREAD"``
        (different nodes where they can be), ``"STRICT_PACK"`` / ``"STRICT_SPREAD"`` (only so).
    split : str
        How test patients are held out (:data:`trainer.splits.SPLITS`): ``"patient"``
        (``n_folds`` patient-wise folds), ``"centre"`` (leave one centre out: one fold per
        centre) or ``"cohort"`` (leave one cohort out).
    call_rule : str
        Which contacts are called SOZ (:mod:`trainer.call_rules`): ``"youden"`` (one
        threshold for every patient) or ``"relative"`` (a contact standing out among its
        patient's contacts, the default: it transferred better across simulator families,
        README "Calls and probabilities across generators"); both chosen on validation
        patients, both reported.
    calibration : str
        How each fold's probabilities are calibrated on its validation patients
        (:func:`trainer.calibration.fit_calibrator`): ``"auto"`` (the default: the candidate
        with the lowest leave-one-validation-patient-out Brier) or one map, such as
        ``"relative-isotonic"`` (on each contact's standing among its recording's contacts: the
        better Brier at a site whose scores all sit elsewhere, README "Calls and probabilities
        across generators"; the worse within a site).
    calibration_prior : str
        ``"match"`` (the default): after the map, each recording's (patient's) probabilities
        are shifted to the validation patients' SOZ prevalence
        (:func:`trainer.calibration.match_prior`), which kept the Brier skill score above 0
        where the map alone fell below the constant prevalence at a new site (README "Calls
        and probabilities across generators"); ``"none"``: the map alone, as runs before.
    feature_norm : str or None
        Per-recording normalisation of the neural models' clip features
        (:data:`models.site_norm.NORMS`: ``"median"``, ``"robust"``, ``"detrend"``); recorded
        in the checkpoints' ``feature_config`` so serving applies the same. ``None`` (the default):
        none, as every run before it; across four simulated cohorts ``"median"`` moved
        SOZFormer's cross-generator ROC-AUC by -0.18 to +0.15 (README "Calls and
        probabilities across generators"), no reliable gain.
    augment : tuple of str, or mapping of str to tuple of str
        Training-time site augmentations of the neural models' sequences
        (:data:`trainer.site_augment.AUGMENTS`: ``"tilt"``, ``"line"``, ``"dropout"``): one
        tuple for every neural model, or ``{model: tuple}`` (models it does not name keep
        their :data:`DEFAULT_AUGMENT`). Held as ``{model: tuple}`` for every neural model;
        ask :meth:`augment_for`. Default :data:`DEFAULT_AUGMENT`: tilt for SOZFormer, none for
        DCGRU. ``()``: none for every model (a dict without the key, from a run before the
        option, reads as that).
    clip_extras : tuple of str, or mapping of str to tuple of str
        Per-clip time-domain measures appended to every token of a neural model, each
        relative to the recording's other contacts at the same moment
        (:data:`models.clip_extras.EXTRAS`: ``"spikes"``, the clip's Janca spike rate;
        ``"linelength"``), given and held as ``augment`` is; ask :meth:`extras_for`. Recorded
        in each checkpoint's ``feature_config`` (``"extras"``) so serving computes the same.
        Default :data:`DEFAULT_CLIP_EXTRAS`: spikes for both neural models. ``()``: the
        spectra alone for every model, as runs before the option (a dict without the key
        reads as that).
    """

    models: tuple[str, ...] = ("sozformer",)
    n_folds: int = 5
    val_fraction: float = 0.15
    seed: int = 0
    epochs: int = 20
    patience: int = 5
    batch_size: int = 8
    seqs_per_recording: int = 16
    ictal_fraction: float = 0.5
    balance_cohorts: bool = True
    eval_stride: int | None = None
    max_eval_seqs: int | None = None
    n_bands: int | None = 64
    fmin: float = 0.5
    fmax: float | None = None
    feature_cache: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    focal_gamma: float = 0.0
    focal_beta: float = 0.999
    pos_weight: float | None = None
    ssl_epochs: int = 3
    model_hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    num_workers: int = 1
    gpus_per_worker: float = 0.0
    bf16: bool = True
    cpus_per_worker: int = 1
    loader_workers: int = 0
    max_parallel_folds: int | None = None
    resume: bool = False
    max_failures: int = 0
    placement_strategy: str = "PACK"
    split: str = "patient"
    call_rule: str = "relative"
    calibration: str = "auto"
    calibration_prior: str = "match"
    feature_norm: str | None = None
    augment: PerModel = field(default_factory=lambda: dict(DEFAULT_AUGMENT))
    clip_extras: PerModel = field(default_factory=lambda: dict(DEFAULT_CLIP_EXTRAS))

    def __post_init__(self) -> None:
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        _check_site(self)
        object.__setattr__(
            self, "model_hparams", {k: dict(v) for k, v in dict(self.model_hparams).items()}
        )
        if self.split not in ("patient", "centre", "cohort"):
            raise ConfigError(
                f"split={self.split!r} must be 'patient', 'centre' or 'cohort' (leave one "
                "centre / cohort out)."
            )
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ConfigError(
                f"placement_strategy={self.placement_strategy!r} must be one of "
                f"{PLACEMENT_STRATEGIES} (SPREAD puts a fold's workers on different nodes)."
            )
        if self.max_failures < 0:
            raise ConfigError(f"{self.max_failures=} must be >= 0 (restarts after a lost worker).")
        if self.call_rule not in ("youden", "relative"):
            raise ConfigError(f"call_rule={self.call_rule!r} must be 'youden' or 'relative'.")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"calibration={self.calibration!r} must be one of {CALIBRATIONS}.")
        if self.calibration_prior not in PRIORS:
            raise ConfigError(
                f"calibration_prior={self.calibration_prior!r} must be one of {PRIORS}."
            )
        if not models:
            raise ConfigError(f"{self.models=} is empty; name at least one of {ALL_MODELS}.")
        unknown = [m for m in models if m not in ALL_MODELS]
        if unknown:
            raise ConfigError(f"unknown model(s) {unknown}; choose from {ALL_MODELS} (or 'all').")
        if len(set(models)) != len(models):
            raise ConfigError(f"{self.models=} names a model twice; list each model once.")
        stray = [k for k in self.model_hparams if k not in ALL_MODELS]
        if stray:
            raise ConfigError(f"model_hparams has keys {stray} that are no model of {ALL_MODELS}.")
        _positive(self, "n_folds", "epochs", "batch_size", "seqs_per_recording", "num_workers")
        _positive(self, "cpus_per_worker", "patience")
        if self.n_folds < 2:
            raise ConfigError(f"{self.n_folds=} must be >= 2 for cross-validation.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{self.val_fraction=} must lie strictly between 0 and 1.")
        if not 0.0 <= self.ictal_fraction <= 1.0:
            raise ConfigError(f"{self.ictal_fraction=} must lie in [0, 1].")
        for name in ("eval_stride", "max_eval_seqs", "n_bands", "max_parallel_folds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value} must be >= 1 or None.")
        if self.fmin < 0 or (self.fmax is not None and self.fmax <= self.fmin):
            raise ConfigError(f"{self.fmin=} and {self.fmax=} must satisfy 0 <= fmin < fmax.")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(
                f"{self.lr=} must be > 0, {self.weight_decay=} and {self.grad_clip=} >= 0."
            )
        if self.focal_gamma < 0 or not 0.0 <= self.focal_beta < 1.0:
            raise ConfigError(f"{self.focal_gamma=} must be >= 0 and {self.focal_beta=} in [0, 1).")
        if self.pos_weight is not None and self.pos_weight <= 0:
            raise ConfigError(f"{self.pos_weight=} must be > 0 or None (computed per fold).")
        if self.ssl_epochs < 0 or self.loader_workers < 0 or self.gpus_per_worker < 0:
            raise ConfigError(
                f"{self.ssl_epochs=}, {self.loader_workers=} and {self.gpus_per_worker=} "
                "must be >= 0."
            )

    @property
    def neural_models(self) -> tuple[str, ...]:
        """The models trained with Ray Train (DDP), in order."""
        return tuple(m for m in self.models if m in NEURAL_MODELS)

    def hparams_for(self, model: str) -> dict[str, Any]:
        """Constructor keyword arguments given for ``model`` (empty when none were given)."""
        return dict(self.model_hparams.get(model, {}))

    def extras_for(self, model: str) -> tuple[str, ...]:
        """The per-clip measures appended to ``model``'s tokens (``()``: the spectra alone)."""
        return self.clip_extras[_neural(model, "clip_extras")]

    def augment_for(self, model: str) -> tuple[str, ...]:
        """The site augmentations of ``model``'s training sequences (``()``: none)."""
        return self.augment[_neural(model, "augment")]

    def feature_config(self, model: str) -> dict[str, Any]:
        """The clip features of ``model`` a checkpoint records (serving recomputes them)."""
        out = {"n_bands": self.n_bands, "fmin": self.fmin, "fmax": self.fmax}
        if self.feature_norm is not None:  # absent = none: older checkpoints score as before
            out["norm"] = self.feature_norm
        if self.extras_for(model):  # absent = none, likewise
            out["extras"] = list(self.extras_for(model))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (tuples become lists; ``augment`` and
        ``clip_extras`` as ``{model: list}`` for every neural model)."""
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        for name in MODEL_INPUTS:
            out[name] = {m: list(v) for m, v in getattr(self, name).items()}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error. A global list for ``augment``
        / ``clip_extras`` (a card of a run before they were per model) is every neural model's;
        a missing one means none (a run before the option), never today's defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}.")
        # Written before the option existed: the run had none (not today's defaults).
        d = {"augment": (), "clip_extras": (), **d}
        if "models" in d:
            d["models"] = tuple(d["models"])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def per_model_text(value: Mapping[str, tuple[str, ...]]) -> str:
    """``{model: names}`` in the CLI's per-model form: ``"sozformer=spikes dcgru=none"``."""
    return " ".join(f"{m}={','.join(names) or 'none'}" for m, names in value.items())


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value < 1:
            raise ConfigError(f"{name}={value} must be >= 1.")


def _check_site(cfg: TrainConfig) -> None:
    from models.clip_extras import check_extras
    from models.site_norm import NORMS
    from trainer.site_augment import AUGMENTS

    if cfg.feature_norm is not None and cfg.feature_norm not in NORMS:
        raise ConfigError(f"feature_norm={cfg.feature_norm!r} must be one of {NORMS} or None.")
    augment = _per_model(cfg, "augment", DEFAULT_AUGMENT)
    for model, kinds in augment.items():
        if any(a not in AUGMENTS for a in kinds) or len(set(kinds)) != len(kinds):
            raise ConfigError(
                f"augment of {model}: {kinds!r}; name each of {AUGMENTS} at most once."
            )
    for model, names in _per_model(cfg, "clip_extras", DEFAULT_CLIP_EXTRAS).items():
        try:
            check_extras(names)
        except ValueError as e:
            raise ConfigError(f"clip_extras of {model}: {e}") from e


def _per_model(
    cfg: TrainConfig, name: str, defaults: Mapping[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Field ``name`` of ``cfg`` as ``{model: tuple}`` for every neural model, set on ``cfg``."""
    value = getattr(cfg, name)

    def names(v: Any, what: str) -> tuple[str, ...]:
        if isinstance(v, str) or not isinstance(v, Iterable):
            raise ConfigError(
                f"{name}{what}={v!r} must be a tuple of names, such as ('spikes',) or ()."
            )
        return tuple(v)

    if isinstance(value, Mapping):
        stray = [m for m in value if m not in NEURAL_MODELS]
        if stray:
            raise ConfigError(
                f"{name} names {stray}, which are not neural models; give it for "
                f"{NEURAL_MODELS} (the SVM and the baseline take neither)."
            )
        out = {m: names(value[m], f"[{m!r}]") if m in value else defaults[m] for m in NEURAL_MODELS}
    else:
        out = dict.fromkeys(NEURAL_MODELS, names(value, ""))
    object.__setattr__(cfg, name, out)
    return out


def _neural(model: str, name: str) -> str:
    if model not in NEURAL_MODELS:
        raise ConfigError(f"{name} is a neural model's input; {model=} is none of {NEURAL_MODELS}.")
    return model
