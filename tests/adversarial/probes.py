"""Hostile clients of the service (issue 13), shared by ``tests/adversarial/test_service.py``
and ``benchmarks/abuse.py``: a data root with headers and sidecars that point outside it or are
malformed, a trickling upload, and the RSS of a process tree's Ray Serve processes."""

from __future__ import annotations

import os
import select
import shutil
import socket
import threading
from pathlib import Path

from tests.serving.conftest import write_edf
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
