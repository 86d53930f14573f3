"""Body caps enforced in Ray Serve's HTTP proxy, before a body reaches any queue.

Ray Serve's proxy pulls a request body from its HTTP server as fast as the socket delivers
(``proxy_asgi_receive`` into an unbounded ``MessageQueue``) and the ingress replica pulls it
from the proxy as fast as it can (``ASGIReceiveProxy``, another unbounded queue), whether or not
the app reads it. The app's own streaming reader (:func:`serving.bodies.read_body`) refuses a
body at its cap, but what arrived before the refusal sat in those two queues: a 1 GiB body over
an 8 MiB cap grew the proxy and the replica by 27-92 MiB depending on load, and a body sent to
a route that never reads one (``/health``) was buffered whole.

:class:`BodyLimitMiddleware` runs inside the proxy process (Serve's HTTP proxy callback,
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, set on the Serve controller's environment by
:func:`controller_env`, which the proxies inherit). For every request it:

- answers 415 to ``POST /score`` of a content type the ingress does not take, unread;
- answers 413 before reading a byte when the declared ``Content-Length`` exceeds the request's
  cap: an upload to ``/score`` gets ``--max-upload-mb``, everything else (JSON bodies, other
  routes) :data:`serving.bodies.MAX_JSON_BYTES`;
- counts a chunked body as Serve pulls it and, at the chunk that passes the cap, answers 413
  itself (``Connection: close``), hands Serve a disconnect instead of that chunk (Serve cancels
  the replica's request) and stops reading.

So neither queue ever holds more than the cap of one request, whatever the body's size; the
app's checks stay (a request that reaches a replica another way is still bounded there).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from serving.bodies import MAX_JSON_BYTES, RequestError, too_large, unsupported_type

#: Serve's hook: a function returning Starlette middlewares, applied in every HTTP proxy.
CALLBACK_VAR = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
#: The limits, as JSON, in the proxy's environment.
LIMITS_VAR = "SOZKIT_PROXY_BODY_LIMITS"
UPLOAD_TYPES = ("application/octet-stream", "multipart/form-data")


@dataclass(frozen=True)
class BodyLimits:
    """Caps of request bodies at the proxy.

    Parameters
    ----------
    score_path : str
        ``POST`` path of uploads (the route prefix and ``/score``).
    upload_cap : int
        Largest upload body (bytes): ``ServeConfig.max_upload_bytes``.
    other_cap : int
        Largest body of any other request (bytes).
    """

    score_path: str
    upload_cap: int
    other_cap: int = MAX_JSON_BYTES

    @classmethod
    def for_config(cls, cfg) -> BodyLimits:
        """The limits of a :class:`serving.config.ServeConfig`."""
        return cls(cfg.route_prefix.rstrip("/") + "/score", int(cfg.max_upload_bytes))

    def cap(self, scope: dict) -> tuple[int, str]:
        """The cap of one request and what its body is (for the message)."""
        ctype = _content_type(scope)
        if self.is_score(scope) and ctype in UPLOAD_TYPES:
            return self.upload_cap, "the upload"
        return self.other_cap, "a JSON body" if ctype == "application/json" else "the body"

    def is_score(self, scope: dict) -> bool:
        return (
            scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == self.score_path
        )


def controller_env(limits: BodyLimits) -> dict[str, str]:
    """Environment of the Serve controller (its proxies inherit it) installing the limits."""
    return {
        CALLBACK_VAR: f"{__name__}.proxy_middlewares",
        LIMITS_VAR: json.dumps(asdict(limits)),
    }


def proxy_middlewares() -> list:
    """Serve's HTTP proxy callback: the middlewares of this proxy (none without limits)."""
    from starlette.middleware import Middleware

    raw = os.environ.get(LIMITS_VAR)
    if not raw:
        return []
    return [Middleware(BodyLimitMiddleware, limits=BodyLimits(**json.loads(raw)))]


def _content_type(scope: dict) -> str:
    return _header(scope, b"content-type").split(";")[0].strip().lower()


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def _refuse(send, exc: RequestError) -> None:
    body = json.dumps({"error": exc.error, "detail": exc.detail, "fix": exc.fix}).encode()
    await send({
        "type": "http.response.start", "status": exc.status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Pure ASGI middleware refusing a body past its cap before Serve queues it (see module)."""

    def __init__(self, app, limits: BodyLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctype = _content_type(scope)
        if self.limits.is_score(scope) and ctype not in (*UPLOAD_TYPES, "application/json"):
            await _refuse(send, unsupported_type(ctype))  # the ingress reads none of it either
            return
        cap, what = self.limits.cap(scope)
        declared = _header(scope, b"content-length").strip()
        if declared.isdigit() and int(declared) > cap:
            await _refuse(send, too_large(int(declared), cap, what))
            return
        state: dict[str, Any] = {"seen": 0, "cut": False, "started": False, "ours": False}

        async def bounded_receive() -> dict:
            if state["cut"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > cap:
                    state["cut"] = True
                    if not state["started"]:
                        state["ours"] = True
                        await _refuse(send, too_large(state["seen"], cap, what))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            if not state["ours"]:  # after our 413, Serve's answer to the disconnect is dropped
                await send(message)

        await self.app(scope, bounded_receive, guarded_send)
