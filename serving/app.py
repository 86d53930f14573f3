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
    ``multipart/form-data`` with a ``file`` field. Optional ``line_freq`` (JSON field or
    query) for files that do not state it. Answer: :meth:`serving.results.ScoreResult.to_dict`.
``GET /health``
    Liveness and the served model.
``GET /models``
    The run's models and folds, and the served model's settings.

User mistakes are 4xx with a message saying what and how to fix it, and the server keeps
serving: 400 malformed request (bad JSON, no path), 403 path outside the data roots (``..``,
absolute elsewhere, symlink escaping), 404 no such file, 413 upload over the cap, 415 unknown
content type, 422 a file that is no readable recording (corrupt or truncated EDF, sidecars
contradicting the file) or is shorter than one model sequence. 500 is left for server bugs.
"""

import asyncio
import email.parser
import email.policy
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve

from ingest.errors import RecordingError, SozkitError
from serving.config import ServeConfig
from serving.engine import SequenceConsumer, score_recording
from serving.inputs import (
    InputError,
    recording_for_path,
    resolve_under_roots,
)
from serving.preprocess import RecordingTooShort
from serving.results import ContactScore
from serving.scoring import Scorer, describe_neural, ensemble, load_preprocessing, run_models
from trainer.rundir import RunDir

logger = logging.getLogger(__name__)

#: Sequences of one request in flight to the model deployment at once.
MAX_IN_FLIGHT = 64
_UPLOAD_SUFFIXES = (".edf", ".bdf", ".fif", ".vhdr", ".gdf")


# ---------------------------------------------------------------------------- schema
class ScoreRequest(BaseModel):
    """JSON body of ``POST /score``."""

    path: str = Field(description="Recording file, relative to a data root or inside one.")
    line_freq: float | None = Field(
        default=None, description="Power-line frequency (50/60 Hz) if the file has none."
    )


class ScoreResponse(BaseModel):
    recording_id: str
    subject: str
    cohort: str
    model: str
    folds: list[int]
    threshold: float
    n_contacts: int
    n_soz_calls: int
    n_sequences: int
    duration_s: float
    sfreq: float
    contacts: list[ContactScore]
    metadata: dict[str, Any]
    timings: dict[str, float]
    warnings: list[str]


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


class RequestError(Exception):
    """A 4xx answer (raised inside the handlers, turned into JSON by :func:`_error`)."""

    def __init__(self, status: int, error: str, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.fix = status, error, detail, fix


def _error(exc: RequestError) -> JSONResponse:
    body = ErrorOut(error=exc.error, detail=exc.detail, fix=exc.fix)
    return JSONResponse(status_code=exc.status, content=body.model_dump())


_INPUT_ERRORS = {403: "path outside the data roots", 404: "not found", 400: "bad path"}


def _too_large(size: int, cap: int) -> RequestError:
    return RequestError(
        413, "upload too large", f"the upload has more than {cap} bytes ({size} seen).",
        "send a path under a data root instead, or restart the service with a larger "
        "--max-upload-mb.",
    )  # fmt: skip


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


def _multipart_file(body_path: Path, content_type: str) -> tuple[str, bytes]:
    """The ``file`` part of a multipart/form-data body (stdlib parser): (filename, bytes)."""
    with open(body_path, "rb") as fh:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + fh.read())
    if not msg.is_multipart():
        raise RequestError(400, "malformed multipart", "the body is not multipart/form-data.")
    for part in msg.iter_parts():
        params = dict(part.get_params(header="content-disposition") or [])
        if params.get("name") == "file":
            payload = part.get_payload(decode=True) or b""
            return str(params.get("filename") or "upload.edf"), payload
    raise RequestError(
        400, "missing file", "the multipart body has no 'file' field.",
        "send the recording in a form field named 'file'.",
    )  # fmt: skip


class _Responses:
    def __init__(self, responses: list) -> None:
        self.responses = responses

    def result(self) -> np.ndarray:
        return np.stack([r.result() for r in self.responses])


class _RemotePredictor:
    """:class:`serving.engine.Predictor` on the model deployment (one call per sequence, so
    ``@serve.batch`` can batch them with other requests')."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def submit(self, batch: list[np.ndarray]) -> _Responses:
        return _Responses([self.handle.remote(seq) for seq in batch])


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
        self.networks = scorer.networks
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batch_sizes: list[int] = []

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def predict(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities of each sequence's channels, shape (n_chans_i,) each."""
        probs = self.networks.predict(sequences)  # (B, C_max)
        self.batch_sizes.append(len(sequences))
        return [probs[i, : seq.shape[0]] for i, seq in enumerate(sequences)]

    async def __call__(self, sequence: np.ndarray) -> np.ndarray:
        return await self.predict(sequence)

    def stats(self) -> dict[str, Any]:
        """Batch sizes seen so far (for the benchmark) and the device."""
        sizes = self.batch_sizes
        return {
            "device": str(self.networks.device),
            "n_batches": len(sizes),
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
        self.started = time.time()
        missing = [r for r in self.cfg.data_roots if not Path(r).is_dir()]
        if missing:
            raise SozkitError(f"data roots {missing} are not folders; fix --data-root.")

    @api.get("/health")
    async def health(self) -> dict[str, Any]:
        """Liveness: the served model and uptime."""
        return {
            "status": "ok",
            "model": self.cfg.model,
            "folds": list(self.folds),
            "uptime_s": round(time.time() - self.started, 1),
        }

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
        try:
            return await self._score(request)
        except RequestError as e:
            return _error(e)

    async def _score(self, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        line_freq = _line_freq(request.query_params.get("line_freq"))
        with tempfile.TemporaryDirectory(prefix="sozkit-upload-") as tmp:
            if ctype == "application/json":
                path, body_lf = await self._json_path(request)
                line_freq = body_lf if body_lf is not None else line_freq
                root = next(
                    (r for r in self.cfg.data_roots if Path(os.path.realpath(r)) in path.parents),
                    None,
                )
            elif ctype in ("application/octet-stream", "multipart/form-data"):
                path, root = await self._upload(request, ctype, Path(tmp)), tmp
            else:
                raise RequestError(
                    415, "unsupported content type",
                    f"Content-Type {ctype or '(none)'} is not accepted.",
                    'send JSON {"path": ...}, or the file as application/octet-stream or '
                    "multipart/form-data (field 'file').",
                )  # fmt: skip
            lf = line_freq if line_freq is not None else self.cfg.line_freq
            try:
                rec = await asyncio.to_thread(recording_for_path, path, line_freq=lf, root=root)
                result = await self._score_recording(rec)
            except RecordingTooShort as e:
                raise RequestError(422, "recording too short", e.reason, e.fix) from e
            except RecordingError as e:
                raise RequestError(422, "unreadable recording", e.reason, e.fix) from e
            except SozkitError as e:  # sidecar / configuration problems of that recording
                raise RequestError(422, "unreadable recording", str(e)) from e
        body = result.to_dict()
        body["timings"]["request_total"] = round(time.perf_counter() - t0, 4)
        if ctype != "application/json":
            body["metadata"]["source_path"] = None  # a temporary file: meaningless to the client
        return JSONResponse(body)

    async def _json_path(self, request: Request) -> tuple[Path, float | None]:
        raw = await request.body()
        if len(raw) > 64 * 1024:
            raise RequestError(413, "request too large", "a JSON body must stay under 64 KiB.")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(
                400, "malformed JSON", f"the body is not valid JSON: {e}.",
                'send {"path": "<file under a data root>"}.',
            ) from e  # fmt: skip
        if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
            raise RequestError(
                400, "missing path", 'the JSON body needs a string field "path".',
                'send {"path": "sub-01/ieeg/sub-01_task-ictal_ieeg.edf"}.',
            )  # fmt: skip
        lf = _line_freq(payload.get("line_freq"))
        try:
            return resolve_under_roots(payload["path"], self.cfg.data_roots), lf
        except InputError as e:
            raise RequestError(
                e.status_code, _INPUT_ERRORS.get(e.status_code, "bad path"), str(e)
            ) from e

    async def _upload(self, request: Request, ctype: str, tmp: Path) -> Path:
        cap = self.cfg.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise _too_large(int(declared), cap)
        body_path = tmp / "body"
        size = 0
        with open(body_path, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _too_large(size, cap)
                fh.write(chunk)
        if size == 0:
            raise RequestError(400, "empty upload", "the request body is empty.", "send the file.")
        if ctype == "application/octet-stream":
            name = request.query_params.get("filename", "upload.edf")
            data_path = body_path
        else:
            name, payload = await asyncio.to_thread(
                _multipart_file, body_path, request.headers["content-type"]
            )
            data_path = tmp / "part"
            data_path.write_bytes(payload)
        suffix = Path(name).suffix.lower()
        if suffix not in _UPLOAD_SUFFIXES or suffix == ".vhdr":
            raise RequestError(
                400, "unsupported file type",
                f"filename={name!r}: uploads must be single-file recordings "
                f"({', '.join(s for s in _UPLOAD_SUFFIXES if s != '.vhdr')}).",
                "BrainVision (.vhdr + .eeg + .vmrk) needs its companions: put it under a data "
                "root and send its path.",
            )  # fmt: skip
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem).strip("-.") or "upload"
        final = tmp / "upload" / f"{stem}{suffix}"
        final.parent.mkdir()
        os.replace(data_path, final)
        return final

    async def _score_recording(self, rec):
        """The engine in a worker thread; sequences batched on the model deployment."""
        consumer = SequenceConsumer(
            self.cfg.model, self.prep, self.folds, self.threshold, _RemotePredictor(self.model),
            batch_size=1, max_in_flight=MAX_IN_FLIGHT,
        )  # fmt: skip
        (result,) = await asyncio.to_thread(score_recording, rec, [consumer])
        return result


# ---------------------------------------------------------------------------- building
def build_app(cfg: ServeConfig) -> serve.Application:
    """The bound application: ingress + batched model deployment, configured by ``cfg``."""
    model = SequenceModel.options(
        num_replicas=cfg.replicas,
        max_ongoing_requests=cfg.ongoing_requests,
        ray_actor_options={"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
    ).bind(
        cfg.run_dir, cfg.model, cfg.fold, cfg.max_batch_size, cfg.batch_wait_timeout_s,
        cfg.num_gpus > 0, cfg.allow_incomplete,
    )  # fmt: skip
    ingress = ScoreIngress.options(
        num_replicas=cfg.ingress_replicas,
        max_ongoing_requests=max(32, cfg.ongoing_requests),
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
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    return serve.run(build_app(cfg), name=name, route_prefix=cfg.route_prefix, blocking=blocking)
