"""A real ``soz serve`` process under hostile bodies: multipart forms that are not one file,
bodies past their cap refused by Serve's proxy before they are queued (memory bounded by the
cap, never by the body), also when sent to a route that reads no body."""

from __future__ import annotations

import socket

import pytest

from tests.adversarial.probes import rss_growth, soz_serve
from tests.serving.conftest import make_run_dir, write_edf

CAP_MB = 4
CAP = CAP_MB * 2**20
# One `soz serve` start (its own Ray) costs 30-90 s on the shared 2-core machine.
pytestmark = pytest.mark.slow

MP = "multipart/form-data; boundary=xyz"
FILE = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="u.edf"\r\n\r\n'


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("soz-serve")
    data = root / "data"
    data.mkdir()
    edf = write_edf(data / "p1.edf", seconds=30.0).read_bytes()
    flags = ("--data-root", str(data), "--max-upload-mb", str(CAP_MB), "--line-freq", "50",
             "--cpus-per-replica", "0.25")  # fmt: skip
    with soz_serve(root, make_run_dir(root, svm=False), *flags) as served:
        yield served, edf


def _part(name: bytes, value: bytes) -> bytes:
    return b'--xyz\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


@pytest.mark.parametrize(
    ("parts", "error", "needle"),
    [
        (lambda e: FILE + e + b"\r\n" + FILE + e, "duplicate form field", "more than one 'file'"),
        (lambda e: FILE + e + b"\r\n" + _part(b"line_freq", b"50"), "unexpected form field",
         "unknown field 'line_freq'"),
        (lambda e: _part(b"explain", b"true") + b"\r\n" + FILE + e, "unexpected form field",
         "unknown field 'explain'"),
        (lambda e: b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n" + FILE + e,
         "unexpected form field", "without a field name"),
        (lambda e: _part(b"other", b"x"), "unexpected form field", "unknown field 'other'"),
        (lambda e: FILE + e[:4000], "missing file", "no complete 'file'"),
    ],
    ids=["two-files", "file-then-unknown", "unknown-then-file", "nameless", "no-file",
         "never-closed"],
)  # fmt: skip
def test_a_form_that_is_not_one_file_is_a_400_naming_it(service, parts, error, needle):
    served, edf = service
    body = parts(edf) + (b"" if error == "missing file" else b"\r\n--xyz--\r\n")
    r = served.client.post("/score", content=body, headers={"content-type": MP})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error and needle in r.json()["detail"], r.json()


def test_a_form_of_one_file_is_scored(service):
    served, edf = service
    r = served.client.post("/score", content=FILE + edf + b"\r\n--xyz--\r\n",
                           headers={"content-type": MP})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["n_contacts"] > 0


def test_a_declared_length_over_the_cap_is_refused_before_the_body(service):
    """The headers alone: the proxy answers without waiting for a byte of the body."""
    served, _ = service
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as s:
        s.sendall(
            b"POST /score?filename=x.edf HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n"
        )
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"connection: close" in head.lower() and b"more than 4194304 bytes" in head, head


@pytest.mark.parametrize(
    ("route", "ctype", "params"),
    [("/score", "application/octet-stream", {"filename": "big.edf"}), ("/score", MP, {}),
     ("/health", "application/octet-stream", {})],
    ids=["octet-stream", "multipart", "health"],
)  # fmt: skip
def test_a_chunked_gigabyte_costs_the_proxy_and_ingress_at_most_the_cap(
    service, route, ctype, params
):
    """1 GiB with no Content-Length: counted in the proxy, refused at the chunk that passes the
    cap (``Connection: close``), so neither process's queue ever holds more than the cap. Before
    the proxy's cap the growth was 27-92 MiB for an 8 MiB cap (load 1-29), rising with the
    replica's lag. A route that reads no body (``GET /health``) has the small cap: it answers
    as usual, or 413 when the cap passes first, and the rest is never queued."""
    served, _ = service
    method = "GET" if route == "/health" else "POST"

    def send(chunks):
        return served.client.request(
            method, route, content=chunks, params=params, headers={"content-type": ctype}
        )

    send(b"\0" * 2**20 for _ in range(CAP_MB + 1))  # the path's one-off allocations

    def body():
        yield FILE
        for _ in range(1024):
            yield b"\0" * 2**20

    r, growth = rss_growth(served.proc.pid, lambda: send(body()))
    assert len(growth) >= 2, growth  # the proxy and the ingress
    growth = {pid: g / 2**20 for pid, g in growth.items()}
    # the cap of one request (its queue, a pickled copy in flight) plus allocator slack
    assert max(growth.values()) < 2 * CAP_MB + 8, growth
    if route == "/health":
        assert r.status_code in (200, 413), r.text
    else:
        assert r.status_code == 413 and r.headers["connection"] == "close", (r, r.headers)
        seen = int(r.json()["detail"].split("(")[1].split()[0])
        assert CAP < seen <= CAP + 2**20 + len(FILE), r.json()  # cut at the chunk past the cap
    assert served.client.get("/health").status_code == 200


def test_the_service_still_scores_after_the_probes(service):
    served, edf = service
    r = served.client.post("/score", content=edf, params={"filename": "p1.edf"},
                           headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert served.proc.poll() is None
