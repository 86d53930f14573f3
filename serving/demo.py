"""``soz demo``: the whole mission on the embedded default cohort, end to end.

1. **simulate** a multi-centre SEEG cohort (:func:`ingest.simulate.simulate_cohorts`): different
   sampling rates, line frequencies and implantations, ictal runs and long interictal runs; plus a
   few held-out patients written to a separate BIDS root (never seen in training), both in one
   process pool.
2. **ingest** the cohort with Apache Beam into a Zarr clip store (:func:`ingest.driver.run_ingest`).
3. **train** SOZFormer, DCGRU, the SVM and the classical baseline with patient-wise k-fold
   cross-validation on Ray (:func:`trainer.run.run_training`).
4. **serve**: start the Ray Serve application on the run and score every held-out recording
   through its HTTP API (``POST /score``), as a hospital client would.
5. **report**: clinician reports (HTML + PNG) of the held-out patients, and the run's
   ``summary.md`` comparing every model with the classical baseline.

Everything lands under ``DemoConfig.out_dir``::

    OUT/
      cohort/          BIDS dataset of the training cohort (EDF + sidecars + ground truth)
      heldout/         BIDS dataset of the held-out patients
      store/           the clip store (Zarr v3 + Parquet manifests)
      run/             the training run (card.json, summary.md, per-model metrics, checkpoints)
      scores/          the service's answers (one JSON per held-out recording) + results.parquet
      report/          clinician reports of the held-out patients (index.html)
      heldout-store/   the held-out patients' clip store (their traces; not with explain=False)
      screenshots/     one Chromium screenshot per figure kind (not with explain=False)
      demo.json        headline figures and where everything is

A running Ray is needed (the CLI starts a local one or joins ``RAY_ADDRESS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ingest.config import IngestConfig
from ingest.driver import run_ingest
from ingest.errors import ConfigError, SozkitError
from ingest.fileio import write_json, write_parquet
from ingest.simulate import SimulationConfig, simulate_cohorts
from ingest.sources import scan_source
from trainer.config import ALL_MODELS, TrainConfig
from trainer.run import run_training

logger = logging.getLogger(__name__)

#: Stages in order, for progress displays.
STAGES = ("simulate", "ingest", "train", "serve", "report")


@dataclass(frozen=True)
class DemoConfig:
    """What ``soz demo`` runs. The defaults finish in under 15 minutes on 2 CPU cores.

    Parameters
    ----------
    out_dir : str
        Folder everything is written to (created; an existing demo there is replaced stage by
        stage, the training run resumed only if ``resume``).
    n_subjects : int
        Patients of the training cohort (cross-validated); at least ``folds + 1``.
    n_heldout : int
        Extra patients, simulated like the others, scored through the service only.
    seed : int
        Seed of the simulation, the splits and the models.
    n_ictal_runs, n_interictal_runs : int
        Runs per patient.
    ictal_duration_s, interictal_duration_s : float
        Run lengths; interictal runs are the long ones.
    sfreq : float
        Common rate of the clip store in Hz (500 Hz keeps the SVM's fast-ripple band).
    folds, epochs : int
        Cross-validation folds and maximum epochs per fold.
    patience : int
        Early-stopping patience of the neural models.
    ssl_epochs : int
        DCGRU's self-supervised epochs before its supervised ones.
        6 epochs, patience 3 and 2 self-supervised epochs keep the demo under 15 min on 2 cores
        (with 7 / 3 / 3 it measured 966 s, 800 s of it training, on the idle machine). In that
        7-epoch run (seed 0) every DCGRU fold's best validation epoch was at most the 6th and
        three of five SOZFormer folds' too; the other two gained 0.004 AUC in their 7th. What it
        costs (pooled ROC-AUC, seed 0): SOZFormer 0.924 -> 0.919; DCGRU, whose ranking comes
        mostly from its self-supervised encoder, 0.917 -> 0.878. The fuller run:
        ``soz demo --epochs 10 --train-json '{"ssl_epochs": 3}'``.
    models : tuple of str
        Models to cross-validate (``"sozformer"``, ``"dcgru"``, ``"svm"``, ``"baseline"``).
    serve_model : str
        Model the service scores the held-out patients with.
    workers, gpus_per_worker : int, float
        Ray Train workers per fold and GPUs per worker (GPU boxes: ``gpus_per_worker=1``).
    n_jobs : int
        Processes for the simulation and Beam workers for ingest.
    port : int
        Port of the Serve HTTP proxy (127.0.0.1).
    train_overrides : dict
        Further :class:`~trainer.config.TrainConfig` fields (``{"batch_size": 16}``...).
    explain : bool
        Also ingest the held-out patients (their traces), explain recordings of the first one
        with the served model (per-fold probabilities, occlusion) and save one screenshot per
        figure kind. On by default; ``soz demo --no-explain`` leaves it out.
    explain_recordings : int
        How many of that patient's recordings are explained, ictal ones first (0: all). One
        keeps the demo under 15 min on 2 cores and still draws every figure kind; the others
        are on the page without traces or attribution.
    """

    out_dir: str = "demo-output"
    n_subjects: int = 10
    n_heldout: int = 2
    seed: int = 0
    n_ictal_runs: int = 2
    n_interictal_runs: int = 1
    ictal_duration_s: float = 180.0
    interictal_duration_s: float = 600.0
    sfreq: float = 500.0
    folds: int = 5
    epochs: int = 6
    patience: int = 3
    ssl_epochs: int = 2
    models: tuple[str, ...] = ALL_MODELS
    serve_model: str = "sozformer"
    workers: int = 1
    gpus_per_worker: float = 0.0
    n_jobs: int = 2
    port: int = 8000
    train_overrides: dict[str, Any] = field(default_factory=dict)
    explain: bool = True
    explain_recordings: int = 1

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"folds={self.folds} must be >= 2 for cross-validation.")
        if self.n_subjects < self.folds + 1:
            raise ConfigError(
                f"n_subjects={self.n_subjects} is too few for folds={self.folds}: each fold needs "
                f"test, training and validation patients; use n_subjects >= {self.folds + 1}."
            )
        if self.n_heldout < 1:
            raise ConfigError(f"n_heldout={self.n_heldout} must be >= 1 (the service scores them).")
        unknown = sorted(set(self.models) - set(ALL_MODELS))
        if unknown or not self.models:
            raise ConfigError(f"models={self.models} must be a non-empty subset of {ALL_MODELS}.")
        if self.serve_model not in self.models or self.serve_model == "baseline":
            raise ConfigError(
                f"serve_model={self.serve_model!r} must be one of the trained learned models "
                f"{[m for m in self.models if m != 'baseline']}."
            )
        if self.explain_recordings < 0:
            raise ConfigError(f"explain_recordings={self.explain_recordings} must be >= 0.")
        if self.ssl_epochs < 0:
            raise ConfigError(f"ssl_epochs={self.ssl_epochs} must be >= 0.")
        for name in ("epochs", "patience", "workers", "n_jobs", "n_ictal_runs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1.")
        # The simulator and the trainer check the rest when their configs are built.
        self.simulation_config()
        self.train_config()

    def simulation_config(self) -> SimulationConfig:
        """The simulation of training + held-out patients (one cohort, split by subject)."""
        return SimulationConfig(
            n_subjects=self.n_subjects + self.n_heldout,
            seed=self.seed,
            n_ictal_runs=self.n_ictal_runs,
            n_interictal_runs=self.n_interictal_runs,
            ictal_duration_s=self.ictal_duration_s,
            interictal_duration_s=self.interictal_duration_s,
        )

    def ingest_config(self) -> IngestConfig:
        return IngestConfig(sfreq=self.sfreq, num_workers=self.n_jobs)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            **{
                "models": tuple(self.models),
                "n_folds": self.folds,
                "epochs": self.epochs,
                "patience": self.patience,
                "ssl_epochs": self.ssl_epochs,
                "seed": self.seed,
                "num_workers": self.workers,
                "gpus_per_worker": self.gpus_per_worker,
                **self.train_overrides,
            }
        )


@dataclass
class DemoResult:
    """Where everything is, the headline figures, and how long each stage took."""

    out_dir: Path
    summary: Path
    report: Path
    timings: dict[str, float]
    screenshots: dict[str, Path]
    headline: dict[str, dict[str, float | None]]
    heldout: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["screenshots"] = {k: str(v) for k, v in self.screenshots.items()}
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


Progress = Callable[[str, str], None]


def run_demo(cfg: DemoConfig, *, progress: Progress | None = None) -> DemoResult:
    """Run the whole pipeline on a simulated cohort; see the module docstring.

    Parameters
    ----------
    cfg : DemoConfig
        What to run.
    progress : callable (stage, message) or None
        Told when each stage starts and ends.

    Returns
    -------
    DemoResult
    """
    say = progress or (lambda stage, msg: logger.info("%s: %s", stage, msg))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    sim = cfg.simulation_config()
    say("simulate", f"{cfg.n_subjects} + {cfg.n_heldout} held-out patients")
    cohort, heldout = simulate_cohorts(
        {
            out / "cohort": range(cfg.n_subjects),
            out / "heldout": range(cfg.n_subjects, cfg.n_subjects + cfg.n_heldout),
        },
        sim,
        n_jobs=cfg.n_jobs,
    )
    timings["simulate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("ingest", f"Beam -> {out / 'store'}")
    report = run_ingest([str(cohort)], str(out / "store"), cfg.ingest_config())
    if report.n_ingested + report.n_skipped == 0:
        raise SozkitError(f"ingest stored no recording; failures:\n{report.failures}")
    timings["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    say("train", f"{cfg.folds}-fold patient-wise CV of {', '.join(cfg.models)}")
    run_dir = out / "run"
    # A demo run again in the same folder continues its training run (finished folds kept).
    train_cfg = replace(cfg.train_config(), resume=(run_dir / "card.json").exists())
    trained = run_training(
        str(out / "store"),
        str(run_dir),
        train_cfg,
        progress=lambda done, total, label: say("train", f"{done}/{total} {label}"),
    )
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    say("serve", f"Ray Serve on 127.0.0.1:{cfg.port}, scoring the held-out patients")
    answers = _score_through_service(cfg, run_dir, heldout, out / "scores")
    timings["serve"] = time.perf_counter() - t

    t = time.perf_counter()
    say("report", "clinician reports of the held-out patients")
    from serving.report import write_report
    from serving.results import ScoreResult

    results = pd.concat([ScoreResult.from_dict(a).to_frame() for a in answers], ignore_index=True)
    write_parquet(out / "scores" / "results.parquet", results)
    shots: dict[str, Path] = {}
    if cfg.explain:
        shots = _explained_report(cfg, run_dir, heldout, results, out, say, timings)
    else:
        write_report(results, out / "report", by="patient")
    index = out / "report" / "index.html"
    timings["report"] = time.perf_counter() - t

    headline = {
        model: {
            key: summary.get("mean", {}).get(key)
            for key in ("roc_auc", "pr_auc", "macro_recall", "macro_precision", "macro_f1")
        }
        for model, summary in trained["models"].items()
    }
    result = DemoResult(
        out_dir=out,
        summary=Path(trained["summary"]),
        report=index,
        timings=timings,
        screenshots=shots,
        headline=headline,
        heldout=[_heldout_summary(a) for a in answers],
    )
    write_json(out / "demo.json", result.to_dict())
    return result


def _score_through_service(
    cfg: DemoConfig, run_dir: Path, heldout: Path, out: Path
) -> list[dict[str, Any]]:
    """Start the Serve app, ``POST /score`` every held-out recording, shut the app down."""
    import httpx

    from serving.app import start
    from serving.config import ServeConfig
    from serving.serve_shutdown import quiet_serve_logger, shutdown_serve

    recordings = scan_source(heldout).recordings
    out.mkdir(parents=True, exist_ok=True)
    serve_cfg = ServeConfig(
        run_dir=str(run_dir), model=cfg.serve_model, port=cfg.port, data_roots=(str(heldout),)
    )
    quiet_serve_logger()
    start(serve_cfg)
    answers = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{cfg.port}", timeout=600.0) as client:
            for rec in recordings:
                rel = str(Path(rec.path).resolve().relative_to(heldout.resolve()))
                response = client.post("/score", json={"path": rel})
                if response.status_code != 200:
                    raise SozkitError(
                        f"the service refused {rel}: HTTP {response.status_code} {response.text}"
                    )
                answer = response.json()
                write_json(out / f"{answer['recording_id']}.json", answer)
                answers.append(answer)
    finally:
        shutdown_serve()
    return answers


def _explained_report(
    cfg: DemoConfig, run_dir: Path, heldout: Path, results, out: Path, say, times: dict
) -> dict[str, Path]:
    """Reports with explanations of the first held-out patient, and the figure screenshots.

    Adds the seconds of each step to ``times`` (``explain_ingest``, ``explain``,
    ``screenshots``). Returns the screenshots (kind -> path; none without Chromium).
    """
    from ingest.store import ClipStore
    from serving.explain import explain_results
    from serving.pdf import find_chromium, screenshot_figures
    from serving.report import write_report
    from serving.report_sections import safe_name

    t = time.perf_counter()
    store_url = str(out / "heldout-store")
    run_ingest([str(heldout)], store_url, cfg.ingest_config())
    store = ClipStore.open(store_url)
    times["explain_ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    first = sorted(results["subject"].astype(str).unique())[0]
    rows = results[results["subject"].astype(str) == first]
    picked = explained_recordings(rows, cfg.explain_recordings)
    say("report", f"explaining {len(picked)} of {rows['recording_id'].nunique()} recording(s) "
        f"of {first}")  # fmt: skip
    rows = rows[rows["recording_id"].astype(str).isin(picked)]
    explanations, _ = explain_results(rows, run_dir, store=store, models=(cfg.serve_model,))
    times["explain"] = time.perf_counter() - t
    index = write_report(
        results, out / "report", by="patient", store=store, explanations=explanations
    )
    t = time.perf_counter()
    shots: dict[str, Path] = {}
    if find_chromium() is None:
        logger.warning("no Chromium: no screenshots (apt-get install chromium)")
    else:
        cohort = rows["cohort"].dropna().astype(str)
        key = f"{cohort.iloc[0]}/{first}" if len(cohort) else first
        page = index.parent / f"{safe_name(key)}.html"
        shots = screenshot_figures(page, out / "screenshots")
        say("report", f"{len(shots)} screenshots ({', '.join(shots)}) in {out / 'screenshots'}")
    times["screenshots"] = time.perf_counter() - t
    return shots


def explained_recordings(rows: pd.DataFrame, k: int) -> list[str]:
    """The ``k`` recordings of a results table to explain (0: all): ictal ones first.

    An ictal recording's explanation is the window of its seizure onset, the one a neurologist
    reads first; then recording order.
    """
    recs = rows.drop_duplicates("recording_id")
    task = recs["task"].astype(str) if "task" in recs else pd.Series("", index=recs.index)
    later = recs.assign(_later=task.str.lower() != "ictal")  # False sorts first
    ids = [str(r) for r in later.sort_values(["_later", "recording_id"])["recording_id"]]
    return ids if k == 0 else ids[:k]


def _heldout_summary(answer: dict[str, Any]) -> dict[str, Any]:
    """Per held-out recording: how many clinical SOZ contacts the service ranked in its top calls."""
    contacts = answer["contacts"]
    labelled = [c for c in contacts if c.get("soz_label") is not None]
    soz = {c["channel"] for c in labelled if c["soz_label"]}
    top = [c["channel"] for c in sorted(contacts, key=lambda c: c["rank"])[: max(1, len(soz))]]
    return {
        "recording_id": answer["recording_id"],
        "n_contacts": answer["n_contacts"],
        "n_soz_calls": answer["n_soz_calls"],
        "clinical_soz": len(soz),
        "clinical_soz_in_top": len(soz & set(top)),
        "latency_s": answer.get("timings", {}).get("total"),
    }
