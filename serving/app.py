"""The Ray Serve application behind ``soz serve``: score a recording on demand over HTTP.

Two deployments:

- :class:`ScoreIngress` (FastAPI, ``@serve.ingress``): checks the request, finds or receives
  the recording, and streams it through the scoring engine (:func:`serving.engine.
  score_recording`) in a worker thread. It holds only the weight-free half of the model
  (:class:`serving.engine.Preprocessing`: ingest's block processing, spectral features,
  sequences) and sends every sequence to the model deployment as soon as it exists;
- :class:`SequenceModel`: the fold networks (:class:`serving.scoring.Networks`, the only copy
  of the weights); ``@serve.batch`` gathers sequences *from all
  concurrent requests* into one forward pass of up to ``max_batch_size`` (channels padded and
  masked). Its ``max_ongoing_requests`` is at least ``max_batch_size``, otherwise Ray Serve
  never hands a replica enough sequences to fill a batch. Replicas scale with ``--replicas``;
  with ``num_gpus > 0`` each replica gets a GPU share and runs the networks on CUDA.

HTTP API (OpenAPI schema at ``/openapi.json``, docs at ``/docs``):

``POST /score``
    ``application/json`` ``{"path": "sub-01/ieeg/sub-01_task-ictal_ieeg.edf"}`` (relative to a
    ``--data-root``, or absolute inside one; a BIDS run brings its sidecars) or an uploaded
    file: the raw bytes as ``application/octet-stream`` (``?filename=x.edf``) or
    ``multipart/form-data`` of exactly one part, the field ``file``. Optional ``line_freq``
    (JSON field or query) for files that do not state it. Answer:
    :meth:`serving.results.ScoreResult.to_dict`.
``GET /health``
    Liveness and the served model.
``GET /models``
    The run's models and folds, and the served model's settings.

User mistakes are 4xx with a message saying what and how to fix it, and the server keeps
serving: 400 malformed request (bad or deeply nested JSON, no path, a form that is not one
``file``), 403 path outside the data roots (``..``, absolute elsewhere, symlink escaping, a
header's ``DataFile``/``MarkerFile`` or a sidecar outside them), 404 no such file, 408 a body
slower than ``--body-timeout-s``, 413 a body over its cap (refused in Serve's proxy before it is
queued, :mod:`serving.http_limits`, and while it is read, :mod:`serving.bodies`), 415 unknown
content type, 422 a file that is no readable recording (corrupt or truncated EDF, malformed or
contradicting sidecars) or is shorter than one model sequence (sozkit's errors are mapped in one
place, :func:`_sozkit_error`), 503 more uploads at once than ``--max-uploads``. /health keeps
answering whatever /score does: uploads are capped, bodies have a time budget, and the ingress
holds far more requests than slow clients can. 500 is left for server bugs.
"""

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve

from ingest.errors import RecordingError, SozkitError
from serving import answer_extras
from serving.bodies import (
    MultipartUpload,
    RequestError,
    ScoreRequest,
    read_body,
    read_json,
    unsupported_type,
    upload_path,
)
from serving.calls import CallRules
from serving.config import ServeConfig
from serving.engine import SequenceConsumer, score_recording
from serving.http_limits import BodyLimits, controller_env
from serving.inputs import (
    InputError,
    check_pulled_in_files,
    recording_for_path,
    resolve_under_roots,
)
from serving.preprocess import RecordingTooShort
from serving.results import ContactScore
from serving.scoring import (
    Scorer,
    describe_neural,
    ensemble,
    load_preprocessing,
    run_models,
)
from serving.watch_status import read_status
from trainer.rundir import RunDir

logger = logging.getLogger(__name__)

#: Sequences of one request in flight to the model deployment at once.
MAX_IN_FLIGHT = 64
#: Requests one ingress replica holds at once. Far above what slow clients can hold (uploads
#: are capped at ``max_concurrent_uploads``, every body has a time budget), so /health and path
#: requests always find a slot.
INGRESS_MAX_ONGOING = 256


# ---------------------------------------------------------------------------- schema
class ScoreResponse(BaseModel):
    recording_id: str
    subject: str
    cohort: str
    model: str
    folds: list[int]
    threshold: float
    threshold_raw: float | None = None
    calibration: str | None = None
    n_contacts: int
    n_soz_calls: int
    n_sequences: int
    duration_s: float
    sfreq: float
    contacts: list[ContactScore]
    metadata: dict[str, Any]
    timings: dict[str, float]
    warnings: list[str]
    uncertainty: answer_extras.Uncertainty | None = None
    explanation: answer_extras.Explanation | None = None


class ErrorOut(BaseModel):
    error: str
    detail: str
    fix: str = ""


_ERRORS = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "malformed request",
        403: "path outside the data roots",
        404: "no such file",
        413: "upload too large",
        415: "unsupported content type",
        422: "not a readable recording, or too short",
    }.items()
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ScoreRequest.model_json_schema()},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}

api = FastAPI(
    title="sozkit",
    summary="Seizure-onset-zone probability per SEEG contact",
    version="0.1.0",
)


def _error(exc: RequestError) -> JSONResponse:
    body = ErrorOut(error=exc.error, detail=exc.detail, fix=exc.fix)
    return JSONResponse(status_code=exc.status, content=body.model_dump())


_INPUT_ERRORS = {403: "path outside the data roots", 404: "not found", 400: "bad path"}


def _sozkit_error(exc: SozkitError) -> RequestError:
    """The one mapping of sozkit's errors to answers: input errors keep their status, every
    recording or sidecar problem is a 422 with its message (never a 500)."""
    if isinstance(exc, InputError):
        return RequestError(
            exc.status_code, _INPUT_ERRORS.get(exc.status_code, "bad path"), str(exc)
        )
    if isinstance(exc, RecordingTooShort):
        return RequestError(422, "recording too short", exc.reason, exc.fix)
    if isinstance(exc, RecordingError):
        return RequestError(422, "unreadable recording", exc.reason, exc.fix)
    return RequestError(422, "unreadable recording", str(exc))


@api.exception_handler(RequestError)
async def _on_request_error(request: Request, exc: RequestError) -> JSONResponse:
    return _error(exc)


@api.exception_handler(SozkitError)
async def _on_sozkit_error(request: Request, exc: SozkitError) -> JSONResponse:
    return _error(_sozkit_error(exc))


def _line_freq(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        lf = float(value)
    except (TypeError, ValueError):
        lf = -1.0
    if lf not in (50.0, 60.0):
        raise RequestError(400, "bad line_freq", f"line_freq={value!r} must be 50 or 60.")
    return lf


class _Responses:
    def __init__(self, responses: list, owner: "_RemotePredictor") -> None:
        self.responses, self.owner = responses, owner

    def result(self) -> np.ndarray:
        per_fold = [r.result() for r in self.responses]  # each (n_folds, C)
        self.owner.add_folds(per_fold)
        return np.stack([p.mean(axis=0) for p in per_fold])


class _RemotePredictor:
    """:class:`serving.engine.Predictor` on the model deployment (one call per sequence, so
    ``@serve.batch`` can batch them with other requests'). Keeps the sum of each fold model's
    probabilities, for the answer's ``uncertainty``."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.fold_sum: np.ndarray | None = None
        self.n = 0

    def submit(self, batch: list[np.ndarray]) -> _Responses:
        return _Responses([self.handle.folds.remote(seq) for seq in batch], self)

    def add_folds(self, per_fold: list[np.ndarray]) -> None:
        for p in per_fold:
            self.fold_sum = p.astype(np.float64) if self.fold_sum is None else self.fold_sum + p
            self.n += 1


class _KeepingConsumer(SequenceConsumer):
    """Remembers the recording's clip count (the explanation needs the sequences' starts)."""

    def start(self, rec, contacts, n_clips: int) -> None:
        self.n_clips = int(n_clips)
        super().start(rec, contacts, n_clips)


# ---------------------------------------------------------------------------- model
@serve.deployment(name="SequenceModel")
class SequenceModel:
    """The fold networks of one model, scoring batches of sequences gathered across requests.

    Parameters
    ----------
    run_dir, model, fold
        Which checkpoints (:meth:`serving.scoring.Scorer.from_run`).
    max_batch_size : int
        Sequences per forward pass.
    batch_wait_timeout_s : float
        How long a batch waits to fill.
    use_gpu : bool
        Run on CUDA when available.
    """

    def __init__(
        self,
        run_dir: str,
        model: str,
        fold: int | None,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        use_gpu: bool = False,
        allow_incomplete: bool = False,
    ) -> None:
        import torch

        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        scorer = Scorer.from_run(
            run_dir, model=model, fold=fold, device=device, allow_incomplete=allow_incomplete
        )
        self.scorer = scorer  # for explain()
        self.networks = scorer.networks
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batch_sizes: list[int] = []

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def predict(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        """Each fold model's probabilities of each sequence's channels: (n_folds, n_chans_i)."""
        probs = self.networks.predict_folds(sequences)  # (F, B, C_max)
        self.batch_sizes.append(len(sequences))
        return [probs[:, i, : seq.shape[0]] for i, seq in enumerate(sequences)]

    async def __call__(self, sequence: np.ndarray) -> np.ndarray:
        """Probabilities of the sequence's channels (mean over the fold models): (n_chans,)."""
        return (await self.predict(sequence)).mean(axis=0)

    async def folds(self, sequence: np.ndarray) -> np.ndarray:
        """Each fold model's probabilities (batched with every other call): (n_folds, n_chans)."""
        return await self.predict(sequence)

    async def explain(self, sequences, starts, channels, onsets_s, top_contacts: int = 5):
        """:func:`serving.explain.explain_sequences` of one recording's sequences (in a worker
        thread: the replica keeps batching other requests' sequences meanwhile)."""
        from serving.explain import explain_sequences

        return await asyncio.to_thread(
            explain_sequences, self.scorer, np.stack(sequences), np.asarray(starts),
            recording_id="request", channels=tuple(channels), onsets_s=tuple(onsets_s),
            top_contacts=top_contacts,
        )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Forward passes and sequences so far, batch sizes, the device (benchmarks, tests)."""
        sizes = self.batch_sizes
        return {
            "device": str(self.networks.device),
            "n_batches": len(sizes),
            "n_sequences": int(sum(sizes)),
            "batch_sizes": list(sizes),
            "mean_batch_size": float(np.mean(sizes)) if sizes else 0.0,
            "max_batch_size": int(max(sizes)) if sizes else 0,
        }


# ---------------------------------------------------------------------------- ingress
@serve.deployment(name="ScoreIngress")
@serve.ingress(api)
class ScoreIngress:
    """HTTP front: request checks, recording lookup or upload, preprocessing, aggregation.

    Parameters
    ----------
    model_handle : DeploymentHandle
        The :class:`SequenceModel` deployment.
    config : dict
        :meth:`serving.config.ServeConfig.to_dict`.
    """

    def __init__(self, model_handle, config: dict[str, Any]) -> None:
        self.cfg = ServeConfig(**{**config, "data_roots": tuple(config["data_roots"])})
        self.model = model_handle
        # The weight-free half only: the networks live in the model deployment.
        self.prep, self.metas = load_preprocessing(
            self.cfg.run_dir,
            self.cfg.model,
            self.cfg.fold,
            allow_incomplete=self.cfg.allow_incomplete,
            cache_bytes=int(self.cfg.cache_mb * 2**20),
        )
        self.folds, self.threshold = ensemble(self.metas)
        run = RunDir.open(self.cfg.run_dir)
        self.rules = CallRules.from_run(run, self.cfg.model, self.folds, self.threshold)
        self.started = time.time()
        self._uploads = 0  # uploads being received now
        missing = [r for r in self.cfg.data_roots if not Path(r).is_dir()]
        if missing:
            raise SozkitError(f"data roots {missing} are not folders; fix --data-root.")

    @api.get("/health")
    async def health(self) -> dict[str, Any]:
        """Liveness: the served model and uptime; with ``--watch``, the watcher's state."""
        out = {
            "status": "ok",
            "model": self.cfg.model,
            "folds": list(self.folds),
            "uptime_s": round(time.time() - self.started, 1),
        }
        if self.cfg.watch_status:
            watch = out["watch"] = read_status(self.cfg.watch_status)
            if watch["stale"] or watch["state"] in ("failed", "stopped"):
                out["status"] = "degraded"  # scoring answers; the watcher does not
        return out

    @api.get("/models")
    async def models(self) -> dict[str, Any]:
        """The run's models and the served one's settings."""
        return {
            "run_dir": self.cfg.run_dir,
            "available": run_models(self.cfg.run_dir),
            "served": describe_neural(self.cfg.model, self.metas, self.prep, device="ingress"),
            "max_batch_size": self.cfg.max_batch_size,
            "replicas": self.cfg.replicas,
        }

    @api.post(
        "/score",
        response_model=ScoreResponse,
        responses=_ERRORS,
        openapi_extra=_REQUEST_BODY,
    )
    async def score(self, request: Request) -> JSONResponse:
        """Score one recording: a path under a data root (JSON) or an uploaded file."""
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        line_freq = _line_freq(request.query_params.get("line_freq"))
        explain = request.query_params.get("explain", "").lower() in ("1", "true", "yes")
        contacts = [c for c in request.query_params.get("explain_contacts", "").split(",") if c]
        with tempfile.TemporaryDirectory(prefix="sozkit-upload-") as tmp:
            if ctype == "application/json":
                body = await read_json(request)
                line_freq = _line_freq(body.line_freq) or line_freq
                explain = explain or body.explain or bool(body.explain_contacts)
                contacts = body.explain_contacts or contacts
                path = resolve_under_roots(body.path, self.cfg.data_roots)
                check_pulled_in_files(path, self.cfg.data_roots)
                root = next(
                    (r for r in self.cfg.data_roots if Path(os.path.realpath(r)) in path.parents),
                    None,
                )
            elif ctype in ("application/octet-stream", "multipart/form-data"):
                path, root = await self._upload(request, ctype, Path(tmp)), tmp
            else:
                raise unsupported_type(ctype)
            lf = line_freq if line_freq is not None else self.cfg.line_freq
            rec = await asyncio.to_thread(recording_for_path, path, line_freq=lf, root=root)
            result, extras = await self._score_recording(rec, explain, contacts)
        answer = {**result.to_dict(), **extras}
        answer["timings"]["request_total"] = round(time.perf_counter() - t0, 4)
        if ctype != "application/json":
            answer["metadata"]["source_path"] = None  # a temporary file: meaningless to the client
        return JSONResponse(answer)

    async def _upload(self, request: Request, ctype: str, tmp: Path) -> Path:
        """Receive an upload (at most ``max_concurrent_uploads`` at once) to disk, streaming."""
        if self._uploads >= self.cfg.max_concurrent_uploads:
            raise RequestError(
                503, "too many uploads",
                f"{self._uploads} uploads are being received; this service takes "
                f"{self.cfg.max_concurrent_uploads} at once.",
                "retry in a moment, or send a path under a data root instead.",
            )  # fmt: skip
        self._uploads += 1  # no await since the check: the event loop makes this atomic
        try:
            folder = tmp / "upload"
            if ctype == "application/octet-stream":
                path = upload_path(folder, request.query_params.get("filename", "upload.edf"))
                with open(path, "wb") as fh:
                    size = await self._receive(request, fh.write)
            else:
                form = MultipartUpload(request.headers["content-type"], folder)
                size = await self._receive(request, form.write)
                path = form.finish()
        finally:
            self._uploads -= 1
        if size == 0:
            raise RequestError(400, "empty upload", "the request body is empty.", "send the file.")
        return path

    async def _receive(self, request: Request, sink) -> int:
        return await read_body(
            request, cap=self.cfg.max_upload_bytes, timeout_s=self.cfg.body_timeout_s,
            sink=sink, what="the upload",
        )  # fmt: skip

    async def _score_recording(self, rec, explain: bool = False, contacts=()):
        """The engine in a worker thread; sequences batched on the model deployment.

        Returns the result and the answer's extra fields: ``uncertainty`` (from the fold
        models' probabilities of the scoring pass) and, when asked, ``explanation``.
        """
        predictor = _RemotePredictor(self.model)
        consumer = _KeepingConsumer(
            self.cfg.model, self.prep, self.folds, self.rules, predictor,
            batch_size=1, max_in_flight=MAX_IN_FLIGHT,
        )  # fmt: skip
        if explain:
            consumer.sequences_seen = []
        (result,) = await asyncio.to_thread(score_recording, rec, [consumer])
        ranked = [c.channel for c in result.ranked()]
        extras: dict[str, Any] = {"uncertainty": None, "explanation": None}
        if predictor.n:
            n = len(result.channels)
            extras["uncertainty"] = answer_extras.uncertainty(
                result.channels, predictor.fold_sum[:, :n] / predictor.n, self.folds,
                [m.threshold for m in self.metas], self.threshold, order=ranked,
            )  # fmt: skip
        if explain:
            clinical = [c for c, s in zip(result.channels, result.soz_labels or (), strict=False)
                        if s]  # fmt: skip
            try:
                picks = answer_extras.explained_contacts(contacts, ranked, clinical)
            except KeyError as e:
                raise RequestError(
                    400, "unknown contact", f"explain_contacts names {e.args[0]}, not scored.",
                    f"use names among the answer's contacts ({', '.join(ranked[:8])} ...).",
                ) from None  # fmt: skip
            starts = self.prep.sequence_starts(consumer.n_clips)
            onsets = [float(s.onset_s) for s in rec.seizures]
            expl = await self.model.explain.remote(
                consumer.sequences_seen, starts, result.channels, onsets
            )
            extras["explanation"] = answer_extras.explanation(expl, picks)
        return result, extras


# ---------------------------------------------------------------------------- building
def build_app(cfg: ServeConfig) -> serve.Application:
    """The bound application: ingress + batched model deployment, configured by ``cfg``."""
    model = SequenceModel.options(
        num_replicas=cfg.replicas,
        max_replicas_per_node=cfg.max_replicas_per_node,
        max_ongoing_requests=cfg.ongoing_requests,
        ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
    ).bind(
        cfg.run_dir, cfg.model, cfg.fold, cfg.max_batch_size, cfg.batch_wait_timeout_s,
        cfg.num_gpus > 0, cfg.allow_incomplete,
    )  # fmt: skip
    ingress = ScoreIngress.options(
        num_replicas=cfg.ingress_replicas,
        max_ongoing_requests=max(INGRESS_MAX_ONGOING, cfg.ongoing_requests),
        ray_actor_options={"num_cpus": cfg.num_cpus},
    )
    return ingress.bind(model, cfg.to_dict())


def start(cfg: ServeConfig, *, name: str = "sozkit", blocking: bool = False):
    """Start Serve's HTTP proxy on ``cfg.host:cfg.port`` and deploy the application.

    Needs a running Ray (the CLI starts a local one or joins ``RAY_ADDRESS``).

    Returns
    -------
    DeploymentHandle
        Handle of the ingress (``blocking=False``).
    """
    # Refuse an incomplete run here, in the caller's process, with the run's own message.
    RunDir.open(cfg.run_dir).serving_folds(
        cfg.model, cfg.fold, allow_incomplete=cfg.allow_incomplete
    )
    # The body caps run in Serve's proxies too (serving.http_limits): the proxies inherit the
    # controller's environment, so nothing over a cap is queued ahead of the ingress.
    env = controller_env(BodyLimits.for_config(cfg))
    serve.start(
        http_options={"host": cfg.host, "port": cfg.port},
        proxy_location=cfg.proxy_location,
        controller_options={"runtime_env": {"env_vars": env}},
    )
    return serve.run(build_app(cfg), name=name, route_prefix=cfg.route_prefix, blocking=blocking)
