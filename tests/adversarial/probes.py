"""Hostile clients of the service (issue 13), shared by ``tests/adversarial/test_service.py``
and ``benchmarks/abuse.py``: a data root with headers and sidecars that point outside it or are
malformed, a trickling upload, a real ``soz serve`` process, and the RSS of a process tree's Ray
Serve processes."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.serving.conftest import free_port, write_edf
from tests.serving.test_app import _write_bids


def vhdr(path: Path, data_file: str, marker_file: str) -> None:
    path.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={data_file}\nMarkerFile={marker_file}\nDataFormat=BINARY\n"
        "DataOrientation=MULTIPLEXED\nNumberOfChannels=2\nSamplingInterval=1000\n"
        "[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n[Channel Infos]\nCh1=LA1,,1,µV\n"
        "Ch2=LA2,,1,µV\n"
    )


def descendants_rss(root: int, names: tuple[str, ...]) -> dict[int, int]:
    """RSS (bytes) of ``root``'s descendant processes whose command line holds one of ``names``."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine = {root}
    for _ in range(8):
        mine |= {p for p, pp in parents.items() if pp in mine}
    out = {}
    for pid in mine:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if any(n in cmd for n in names):
            kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
            out[pid] = kb * 1024
    return out


def trickle(port: int, statuses: list, stop: threading.Event) -> None:
    """An upload declaring 2 MB, 10 bytes every 0.1 s until answered (<= 30 s)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(
                b"POST /score?filename=slow.edf HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Length: 2000000\r\n\r\n"
            )
            for _ in range(300):
                if stop.is_set():
                    break
                ready, _, _ = select.select([s], [], [], 0.1)
                if ready:
                    head = s.recv(4096)
                    statuses.append(int(head.split()[1]) if head.startswith(b"HTTP/") else 0)
                    return
                s.sendall(b"0" * 10)
    except OSError:
        statuses.append(-1)
        return
    statuses.append(None)


def service_data(work: Path) -> tuple[Path, Path, dict]:
    """``work/data`` (the data root) and ``work/outside``; the BIDS runs by kind.

    In the root: ``p1.edf`` (30 s, valid), ``link.edf`` (a symlink out), three BrainVision
    headers whose DataFile / MarkerFile point outside, and BIDS runs ``escape`` (channels.tsv a
    symlink out), ``notobject``, ``comma``, ``utf16`` (malformed sidecars).
    """
    data, outside = work / "data", work / "outside"
    data.mkdir(parents=True)
    outside.mkdir()
    write_edf(data / "p1.edf", seconds=30.0)
    write_edf(outside / "secret.edf", seconds=30.0)
    (outside / "secret.eeg").write_bytes(os.urandom(80000))
    (data / "link.edf").symlink_to(outside / "secret.edf")
    vhdr(data / "abs.vhdr", str(outside / "secret.eeg"), "abs.vmrk")
    vhdr(data / "rel.vhdr", "../outside/secret.eeg", "rel.vmrk")
    vhdr(data / "marker.vhdr", "marker.eeg", "../outside/secret.vmrk")
    bids = {}
    for name in ("escape", "notobject", "comma", "utf16"):
        rel = _write_bids(data / name)
        bids[name] = f"{name}/{rel.split('/', 1)[1]}"
    ieeg = {k: (data / v).parent for k, v in bids.items()}
    chans = next(ieeg["escape"].glob("*_channels.tsv"))
    shutil.move(chans, outside / chans.name)
    chans.symlink_to(outside / chans.name)
    next(ieeg["notobject"].glob("*_ieeg.json")).write_text("[50, 1024]")
    next(ieeg["comma"].glob("*_events.tsv")).write_text(
        "onset\tduration\ttrial_type\n12,5\t0\tsz onset\n30,0\t0\tsz offset\n"
    )
    utf16 = next(ieeg["utf16"].glob("*_channels.tsv"))
    utf16.write_bytes(utf16.read_text().encode("utf-16"))
    return data, outside, bids


REPO = Path(__file__).resolve().parents[2]
#: Ray Serve's processes whose memory the body probes watch.
SERVE_PROCS = ("ScoreIngress", "ProxyActor")


@dataclass
class Served:
    """A running ``soz serve``: its process, an HTTP client of it, its port, its start-up time."""

    proc: subprocess.Popen
    client: object
    port: int
    startup_s: float


@contextmanager
def soz_serve(work: Path, run_dir: Path, *flags: str, timeout_s: float = 300.0) -> Iterator[Served]:
    """``soz serve run_dir *flags`` as its own process (its own local Ray), until it answers
    /health; stopped with Ctrl-C (as a user would) after, killed if that takes over 60 s."""
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    log_path = work / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", str(run_dir), "--port", str(port), *flags],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    try:
        t0 = time.monotonic()
        while True:
            try:
                if client.get("/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > t0 + timeout_s:
                raise RuntimeError(f"soz serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(1.0)
        yield Served(proc, client, port, time.monotonic() - t0)
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def rss_growth(root: int, send, names: tuple[str, ...] = SERVE_PROCS) -> tuple[object, dict]:
    """``send()``'s result and each of ``root``'s Serve processes' peak RSS growth (bytes) while
    it ran, sampled every 20 ms from ``/proc``."""
    before = descendants_rss(root, names)
    peak, done = dict(before), threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, rss in descendants_rss(root, names).items():
                peak[pid] = max(peak.get(pid, 0), rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = send()
    finally:
        done.set()
        sampler.join(timeout=10)
    return result, {pid: peak[pid] - before[pid] for pid in before}
