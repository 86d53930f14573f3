"""The proxy's body caps (:mod:`serving.http_limits`) around a real ASGI app that reads its body
chunk by chunk, over httpx's ASGI transport (each chunk one ``http.request`` message, as Serve's
proxy receives them). The whole path through a real ``soz serve``:
``tests/adversarial/test_soz_serve.py``."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from serving.http_limits import (
    CALLBACK_VAR,
    LIMITS_VAR,
    BodyLimitMiddleware,
    BodyLimits,
    controller_env,
    proxy_middlewares,
)

LIMITS = BodyLimits("/score", upload_cap=10_000, other_cap=1_000)


def _app(received: list[int]):
    """Reads the whole body and answers how many bytes it got (``received`` keeps the count)."""

    async def app(scope, receive, send):
        n = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            n += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        received.append(n)
        body = json.dumps({"received": n}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def _post(path: str, content, ctype: str = "application/octet-stream", method: str = "POST"):
    received: list[int] = []
    transport = httpx.ASGITransport(app=BodyLimitMiddleware(_app(received), LIMITS))

    async def go():
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, content=content,
                                        headers={"content-type": ctype})  # fmt: skip

    return asyncio.run(go()), received


def _chunks(n: int, size: int = 1000):
    async def gen():
        for _ in range(n):
            yield b"\0" * size

    return gen()


def test_bodies_under_their_cap_pass_whole():
    r, received = _post("/score", _chunks(10))
    assert r.status_code == 200 and received == [10_000], (r.text, received)
    r, received = _post("/score", b"{}" * 400, ctype="application/json")
    assert r.status_code == 200 and received == [800]


def test_a_declared_length_over_the_cap_is_refused_unread():
    r, received = _post("/score", b"\0" * 10_001)
    assert r.status_code == 413 and received == [], received
    assert r.headers["connection"] == "close"
    assert "more than 10000 bytes (10001 seen)" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "ctype", "method", "cap"),
    [("/score", "application/octet-stream", "POST", 10_000),
     ("/score", "multipart/form-data; boundary=x", "POST", 10_000),
     ("/score", "application/json", "POST", 1_000),
     ("/health", "application/octet-stream", "GET", 1_000),
     ("/models", "application/octet-stream", "POST", 1_000)],
)  # fmt: skip
def test_a_chunked_body_is_cut_at_the_chunk_past_its_cap(path, ctype, method, cap):
    r, received = _post(path, _chunks(1000), ctype=ctype, method=method)
    assert r.status_code == 413, r.text
    # the app never gets the chunk that passed the cap: a disconnect instead
    assert received and received[0] <= cap, received
    assert f"more than {cap} bytes ({cap + 1000} seen)" in r.json()["detail"], r.json()


def test_a_score_body_of_another_type_is_415_unread():
    r, received = _post("/score", b"x" * 50, ctype="text/plain")
    assert r.status_code == 415 and received == []
    assert "text/plain is not accepted" in r.json()["detail"]
    r, received = _post("/health", b"x" * 50, ctype="text/plain", method="GET")
    assert r.status_code == 200  # other routes: only the small cap


def test_the_proxy_callback_reads_the_limits_from_its_environment(monkeypatch):
    monkeypatch.delenv(LIMITS_VAR, raising=False)
    assert proxy_middlewares() == []
    env = controller_env(LIMITS)
    assert env[CALLBACK_VAR] == "serving.http_limits.proxy_middlewares"
    monkeypatch.setenv(LIMITS_VAR, env[LIMITS_VAR])
    (middleware,) = proxy_middlewares()
    assert middleware.cls is BodyLimitMiddleware and middleware.kwargs["limits"] == LIMITS
