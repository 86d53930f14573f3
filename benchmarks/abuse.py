"""Abuse benchmark (issue 13): bad input, hostile clients and kills, against the real engines.

1. **Malformed cohorts**: every class of ``tests/adversarial/cohorts.py`` (a malformed sidecar
   value per file kind, physically impossible EDF signals), each scanned alone
   (:func:`ingest.sources.scan_source`), then all at once through two real ``soz ingest``
   processes (a BIDS cohort holding every sidecar class, a folder of impossible signals).
   *Clean*: the bad run is that run's problem / failure row naming the file with a reason and
   a fix, the others ingested, no traceback, exit 0/1. *Crashed*: anything else.
2. **HTTP**: a real ``soz serve`` process; requests by kind (path traversal forms, bad JSON,
   nested JSON, bodies over the cap, slow bodies, bad multipart, bad EDF uploads, files pulled
   in by headers from outside the data roots, malformed sidecars) with their status counts.
   Target: 0 x 5xx (the 503 that refuses an upload past ``--max-uploads`` is the designed
   answer and counted apart).
3. **RSS** of the ingress and proxy processes (``/proc``) while a body of ``BIG`` bytes (1 GiB,
   ``--quick`` 256 MiB) is pushed chunked, per body kind (JSON, raw, multipart to /score, and
   raw to ``GET /health``, a route that reads no body); target: growth a small multiple of
   the upload cap, not of the body (:mod:`serving.http_limits` cuts it in Serve's proxy).
4. **/health latency** while 64 clients trickle uploads (target < 1 s).
5. **Resume equality**: a fold killed after its first epoch and resumed from its saved state
   against an uninterrupted one (the mechanism of ``tests/trainer/test_loop.py``), tiny cohort.

Prints and saves JSON to ``benchmarks/results/abuse.json``.

    python -m benchmarks.abuse [--quick] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
UPLOAD_CAP_MB = 8
MAX_UPLOADS = 4
BODY_TIMEOUT_S = 6.0
N_SLOW = 64
ENV = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}


# ------------------------------------------------------------------------- malformed cohorts
def _ingest(source: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serving", "ingest", str(source), "--out", str(store)]
        + ["--sfreq", "256", "--clip-s", "1", "--block-clips", "4", "--l-freq", "1"]
        + ["--workers", "1", "--no-progress", *extra],
        capture_output=True, text=True, env=ENV, timeout=900, check=False,
    )  # fmt: skip


def _has(text: str, parts) -> bool:
    return all(p in text for p in parts)


def bench_cohorts(work: Path) -> dict:
    from ingest.sources import scan_source
    from ingest.store import ClipStore
    from tests.adversarial.cohorts import (
        MALFORMATIONS,
        RUNS,
        clone_subject,
        edit_json,
        run_base,
        write_flat_cohort,
    )  # fmt: skip
    from tests.conftest import SIDECARS
    from tests.ingest.signal_files import build_bids_copy, write_edf

    hup = build_bids_copy(SIDECARS / "ds004100", work / "hup" / "ds", ["HUP190"])
    cases: dict[str, str] = {}
    for m in MALFORMATIONS:  # each class alone, through the reader
        root = work / "one" / m.name / "ds"
        shutil.copytree(hup, root)
        broken = Path(f"{run_base(root, 'HUP190', 'ictal', '01')}{m.suffix}")
        m.apply(broken)
        try:
            scan = scan_source(root)
        except Exception as e:  # noqa: BLE001 - what the benchmark counts
            cases[f"scan:{m.name}"] = f"crashed: {type(e).__name__}: {e}"
            continue
        ok = (
            len(scan.problems) == 1 and scan.problems[0].source == str(broken)
            and _has(scan.problems[0].reason, m.reason) and m.fix in scan.problems[0].fix
            and len(scan.recordings) == 4
        )  # fmt: skip
        cases[f"scan:{m.name}"] = "clean" if ok else f"unclean: {[str(p) for p in scan.problems]}"

    # every sidecar class at once, one real soz ingest (as tests/adversarial does)
    root = work / "all" / "ds"
    shutil.copytree(hup, root)
    for k in (1, 2, 3):
        clone_subject(root, "HUP190", f"HUP90{k}")
    slots = [(s, t, r) for s in ("HUP190", "HUP901", "HUP902", "HUP903") for t, r in RUNS]
    broken = {}
    for m, (s, t, r) in zip(MALFORMATIONS, slots, strict=False):
        path = Path(f"{run_base(root, s, t, r)}{m.suffix}")
        m.apply(path)
        broken[str(path)] = m
    na = slots[len(MALFORMATIONS)]
    edit_json(Path(f"{run_base(root, *na)}_ieeg.json"), PowerLineFrequency="n/a")
    good = {f"ds__{s}__presurgery__{t}__seeg__{r}" for s, t, r in slots[len(MALFORMATIONS) + 1 :]}
    t0 = time.perf_counter()
    proc = _ingest(root, work / "all" / "store")
    bids_s = time.perf_counter() - t0
    crashed = "Traceback" in proc.stderr or proc.returncode not in (0, 1)
    store = ClipStore.open(str(work / "all" / "store")) if not crashed else None
    fails = {} if store is None else {r.source: r for r in store.failures().itertuples()}
    for src, m in broken.items():
        row = fails.get(src)
        if crashed:
            cases[f"ingest:{m.name}"] = f"crashed: exit {proc.returncode}"
        elif row is not None and _has(row.reason, m.reason) and m.fix in row.fix:
            cases[f"ingest:{m.name}"] = "clean"
        else:
            cases[f"ingest:{m.name}"] = f"unclean: {row}"
    na_id = f"ds__{na[0]}__presurgery__{na[1]}__seeg__{na[2]}"
    na_rows = [] if store is None else [r for r in fails.values() if r.recording_id == na_id]
    cases["ingest:line-freq-n/a"] = (
        "clean" if na_rows and "--line-freq" in na_rows[0].fix else f"unclean: {na_rows}"
    )
    cases["ingest:good-runs-complete"] = (
        "clean" if store is not None and store.complete_ids() == good else "unclean"
    )

    # physically impossible signals: one folder, one real soz ingest
    folder = write_flat_cohort(work / "signals" / "cohort")
    (folder / "truncated.edf").write_bytes((folder / "good.edf").read_bytes()[:3000])
    (folder / "random.edf").write_bytes(np.random.default_rng(0).bytes(20000))
    t0 = time.perf_counter()
    proc = _ingest(folder, work / "signals" / "store", "--line-freq", "50")
    signals_s = time.perf_counter() - t0
    crashed = "Traceback" in proc.stderr or proc.returncode not in (0, 1)
    if crashed:
        for name in ("degenerate", "flat", "nearflat", "oneflat", "truncated", "random"):
            cases[f"signals:{name}"] = f"crashed: exit {proc.returncode}"
    else:
        s = ClipStore.open(str(work / "signals" / "store"))
        fails = {Path(r.source).stem: r for r in s.failures().itertuples()}
        chans = s.channels()
        for name in ("flat", "nearflat", "truncated", "random"):
            row = fails.get(name)
            cases[f"signals:{name}"] = "clean" if row is not None and row.fix else "unclean"
        deg = chans[chans["recording_id"] == "cohort__degenerate"]
        cases["signals:degenerate"] = (
            "clean" if deg["name"].tolist() == ["LA1", "LA4"] else f"unclean: {deg['name']}"
        )
        one = chans[chans["recording_id"] == "cohort__oneflat"]
        cases["signals:oneflat"] = (
            "clean" if one["flat"].tolist() == [False, True, False, False] else "unclean"
        )
    cases.update(_label_cases(work / "labels", write_edf))
    counts = Counter(v.split(":")[0] for v in cases.values())
    return {
        "tried": len(cases),
        "failed_cleanly": counts["clean"],
        "unclean": counts["unclean"],
        "crashed": counts["crashed"],
        "ingest_bids_s": round(bids_s, 1),
        "ingest_signals_s": round(signals_s, 1),
        "cases": cases,
    }


def _label_cases(work: Path, write_edf) -> dict[str, str]:
    """Silent label loss: a sheet naming no contact of a subject, a sheet subject with no file."""
    from ingest.store import ClipStore

    folder = work / "CHUL"
    folder.mkdir(parents=True)
    for k, subject in enumerate(("CHUL01", "CHUL02")):
        write_edf(
            folder / f"{subject}_night1.edf", ["LA1", "LA2", "RH1", "RH2"], seconds=4.0, seed=k
        )
    sheet = work / "labels.csv"
    sheet.write_text('participant_id,soz_contacts\nCHUL01,"LA1-2"\nCHUL02,"T1-3"\nCHUL99,"A1"\n')
    proc = _ingest(folder, work / "store", "--line-freq", "50", "--label-sheet", str(sheet))
    if "Traceback" in proc.stderr or proc.returncode not in (0, 1):
        return {"labels:empty-soz": "crashed", "labels:unused-sheet-subject": "crashed"}
    s = ClipStore.open(str(work / "store"))
    f, w = s.failures(), s.warnings()
    refused = len(f) == 1 and "--allow-empty-soz" in f.iloc[0]["fix"]
    unused = w["message"].str.contains("CHUL99").any() and "CHUL99" in proc.stdout
    return {
        "labels:empty-soz": "clean" if refused else f"unclean: {f.to_dict('records')}",
        "labels:unused-sheet-subject": "clean" if unused else "unclean",
    }


# ------------------------------------------------------------------------- the service
def _requests(data: Path, outside: Path, bids: dict) -> dict[str, list[tuple]]:
    """Probe kind -> [(content_type, params, body)]: body bytes, a str (JSON text) or a dict."""
    edf = (data / "p1.edf").read_bytes()
    octet = ("application/octet-stream", {"filename": "up.edf"})
    degenerate = bytearray(edf)
    ns = int(degenerate[252:256])
    for i in range(ns):  # every signal: digital min = digital max
        at = 256 + 128 * ns + 8 * i
        degenerate[256 + 120 * ns + 8 * i : 256 + 120 * ns + 8 * i + 8] = degenerate[at : at + 8]
    j = "application/json"
    paths = [
        "../outside/secret.edf", "/etc/passwd", str(outside / "secret.edf"), "link.edf",
        "..%2foutside%2fsecret.edf", "./../outside/secret.edf", "escape/../../outside/secret.edf",
        "~/secret.edf", "p1.edf\x00.txt", "//etc/passwd", "..\\outside\\secret.edf",
        "file:///etc/passwd", "", ".", "data", "nonexistent.edf", "/" + "a" * 5000,
    ]  # fmt: skip
    mp = "multipart/form-data; boundary=xyz"
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="u.edf"\r\n\r\n'
    other = b'--xyz\r\nContent-Disposition: form-data; name="line_freq"\r\n\r\n50'
    return {
        "path-traversal": [(j, {}, {"path": p}) for p in paths],
        "bad-json": [
            (j, {}, s)
            for s in (
                '{"path": ',
                "[1, 2]",
                '"p1.edf"',
                '{"path": 5}',
                '{"path": null}',
                "{}",
                "NaN",
                "\xff\xfe{",
                '{"path": "p1.edf"}{"x": 1}',
                "",
                '{"path": ["p1.edf"]}',
                '{"path": "p1.edf", "line_freq": "abc"}',
                '{"path": "p1.edf", "model": 7}',
                '{"path": "p1.edf", "fold": -3}',
                '{"path": {"$gt": ""}}',
            )
        ],
        "nested-json": [
            (j, {}, '{"path": ' + "[" * 20000 + "]" * 20000 + "}"),
            (j, {}, "[" * 30000),
            (j, {}, '{"a":' * 10000 + "1" + "}" * 10000),
            (j, {}, '{"path": "p1.edf", "x": ' + "[" * 15000 + "]" * 15000 + "}"),
        ],
        "bad-multipart": [
            ("multipart/form-data", {}, part + edf + b"\r\n--xyz--\r\n"),  # no boundary
            ("multipart/form-data; boundary=other", {}, part + edf + b"\r\n--xyz--\r\n"),
            (mp, {}, part + edf[:5000]),  # never closed
            (
                mp,
                {},
                b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--xyz--\r\n',
            ),
            (mp, {}, b"--xyz\r\n" + b"X" * 200000 + b"\r\n\r\n--xyz--\r\n"),  # endless header
            (mp, {}, b"garbage without parts"),
            (mp, {}, part.replace(b"u.edf", b"../../../tmp/x.edf") + edf + b"\r\n--xyz--\r\n"),
            (mp, {}, part + edf + b"\r\n" + part + edf + b"\r\n--xyz--\r\n"),  # two files
            (mp, {}, part + edf + b"\r\n" + other + b"\r\n--xyz--\r\n"),  # file + unknown
            (
                mp,
                {},
                b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
                + part
                + edf
                + b"\r\n--xyz--\r\n",
            ),  # a part without a name, then the file
        ],
        "bad-edf-upload": [
            (*octet, b""),
            (*octet, os.urandom(50000)),
            (*octet, edf[:3000]),
            (*octet, edf[: len(edf) // 2]),
            (*octet, bytes(degenerate)),
            (*octet, b"0       " + b" " * 248),
            (*octet, b"not an edf at all\n" * 100),
            ("application/octet-stream", {"filename": "../../x.edf"}, edf),
            ("application/octet-stream", {"filename": "x.exe"}, edf),
            ("text/plain", {}, edf),
        ],  # fmt: skip
        "header-outside-roots": [
            (j, {}, {"path": p}) for p in ("abs.vhdr", "rel.vhdr", "marker.vhdr", bids["escape"])
        ],
        "malformed-sidecars": [(j, {}, {"path": bids[k]}) for k in ("notobject", "comma", "utf16")],
        "valid": [(j, {}, {"path": "p1.edf"}), (*octet, edf)],
    }


def _label(ctype: str, params: dict, body) -> str:
    """A short name of one probe for the JSON (what was sent, not all of it)."""
    what = body if isinstance(body, dict) else repr(body[:60])
    return f"{ctype} {params or ''} {what}"[:120]


def _send(client, ctype: str, params: dict, body) -> int:
    import httpx

    try:
        if isinstance(body, dict):
            r = client.post("/score", json=body, params=params)
        else:
            content = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
            r = client.post(
                "/score", content=content, params=params, headers={"content-type": ctype}
            )
        return r.status_code
    except httpx.HTTPError:
        return -1  # the server closed the connection (counted, never a 5xx)


def _big_body(client, pid: int, kind: str, big: int) -> dict:
    import httpx

    from tests.adversarial.probes import SERVE_PROCS as PROCS
    from tests.adversarial.probes import descendants_rss, rss_growth

    ctype, params = {
        "to-health": ("application/octet-stream", {}),
        "json": ("application/json", {}),
        "octet-stream": ("application/octet-stream", {"filename": "big.edf"}),
        "multipart": ("multipart/form-data; boundary=xyz", {}),
    }[kind]
    route, method = ("/health", "GET") if kind == "to-health" else ("/score", "POST")
    warm = (b"[" * (1 << 20) for _ in range(UPLOAD_CAP_MB + 1))  # chunked, just past the cap
    try:  # one-off allocations of the first request of a kind
        client.request(method, route, content=warm, params=params, headers={"content-type": ctype})
    except httpx.HTTPError:
        pass
    chunk = (b"[" if kind == "json" else b"\0") * (1 << 20)
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.edf"\r\n\r\n'

    def body():
        if kind == "multipart":
            yield head
        for _ in range(big // len(chunk)):
            yield chunk

    def send() -> int:
        try:
            return client.request(method, route, content=body(), params=params,
                                  headers={"content-type": ctype}).status_code  # fmt: skip
        except httpx.HTTPError:
            return -1

    before = descendants_rss(pid, PROCS)
    t0 = time.perf_counter()
    status, growth = rss_growth(pid, send, PROCS)
    seconds = time.perf_counter() - t0  # until the answer (the JSON before had 1 s more)
    time.sleep(1.0)
    after = descendants_rss(pid, PROCS)
    mib = 2**20
    return {
        "status": status,
        "seconds": round(seconds, 2),
        "growth_mib": {_proc_name(p): round(g / mib, 1) for p, g in growth.items()},
        "held_after_mib": {
            _proc_name(p): round((after.get(p, before[p]) - before[p]) / mib, 1) for p in before
        },
    }


def _proc_name(pid: int) -> str:
    from tests.adversarial.probes import SERVE_PROCS as PROCS

    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return str(pid)
    return next((f"{n}:{pid}" for n in PROCS if n in cmd), str(pid))


def bench_service(work: Path, big: int) -> dict:
    from tests.adversarial.probes import service_data, soz_serve
    from tests.serving.conftest import make_run_dir

    data, outside, bids = service_data(work)
    run_dir = make_run_dir(work, svm=False)
    flags = ("--data-root", str(data), "--max-upload-mb", str(UPLOAD_CAP_MB),
             "--max-uploads", str(MAX_UPLOADS), "--body-timeout-s", str(BODY_TIMEOUT_S),
             "--line-freq", "50")  # fmt: skip
    with soz_serve(work, run_dir, *flags) as served:
        return _probe_service(served, data, outside, bids, big)


def _probe_service(served, data: Path, outside: Path, bids: dict, big: int) -> dict:
    import httpx

    client, proc, port, startup_s = served.client, served.proc, served.port, served.startup_s
    by_kind: dict[str, dict] = {}
    answers: dict[str, list] = {}
    for kind, reqs in _requests(data, outside, bids).items():
        answers[kind] = [[_label(*r), _send(client, *r)] for r in reqs]
        by_kind[kind] = dict(Counter(str(status) for _, status in answers[kind]))
    bodies = {
        k: _big_body(client, proc.pid, k, big)
        for k in ("json", "octet-stream", "multipart", "to-health")
    }
    by_kind["oversize-body"] = dict(Counter(str(b["status"]) for b in bodies.values()))
    # 64 slow clients: /health meanwhile
    idle = []
    for _ in range(5):
        t = time.perf_counter()
        client.get("/health")
        idle.append(time.perf_counter() - t)
    statuses: list = []
    stop = threading.Event()
    from tests.adversarial.probes import trickle

    threads = [threading.Thread(target=trickle, args=(port, statuses, stop), daemon=True)
               for _ in range(N_SLOW)]  # fmt: skip
    for t in threads:
        t.start()
    latencies, health_codes = [], Counter()
    t_end = time.monotonic() + BODY_TIMEOUT_S + 2.0
    while time.monotonic() < t_end:
        t = time.perf_counter()
        try:
            health_codes[str(client.get("/health", timeout=30).status_code)] += 1
        except httpx.HTTPError:
            health_codes["-1"] += 1
        latencies.append(time.perf_counter() - t)
        time.sleep(0.1)
    scored_during = _send(client, "application/json", {}, {"path": "p1.edf"})
    for t in threads:
        t.join(timeout=40)
    stop.set()
    by_kind["slow-body"] = dict(Counter(str(s) for s in statuses))
    by_kind["health-under-slow"] = dict(health_codes)
    lat = np.array(latencies)
    total = Counter()
    for counts in by_kind.values():
        total.update(counts)
    planned_503 = by_kind["slow-body"].get("503", 0)
    n_5xx = sum(n for s, n in total.items() if s.lstrip("-").isdigit() and int(s) >= 500)
    return {
        "startup_s": round(startup_s, 1),
        "requests": sum(total.values()),
        "by_kind": by_kind,
        "n_5xx": n_5xx,
        "n_5xx_unplanned": n_5xx - planned_503,
        "planned_503_upload_slots": planned_503,
        "big_body_bytes": big,
        "upload_cap_mib": UPLOAD_CAP_MB,
        "bodies": bodies,
        "answers": answers,
        "health_under_slow": {
            "clients": N_SLOW,
            "n": len(lat),
            "p50_s": round(float(np.median(lat)), 4),
            "max_s": round(float(lat.max()), 4),
            "idle_p50_s": round(float(np.median(idle)), 4),
            "score_during": scored_during,
        },
    }


# ------------------------------------------------------------------------- resume equality
def bench_resume(work: Path) -> dict:
    import torch

    from tests.trainer.conftest import build_store
    from tests.trainer.test_loop import _comparable, _fold_data, _same_weights
    from trainer.loop import fit_fold, validation_metrics

    torch.set_num_threads(1)
    url = build_store(str(work / "tiny.zarr"))
    fold_data = _fold_data(url, epochs=3, patience=10)
    t0 = time.perf_counter()
    straight = fit_fold("sozformer", fold_data)
    saved = work / "state.pt"

    class Killed(Exception):
        pass

    def kill(row, state):
        torch.save(state, saved)
        if (row["stage"], row["epoch"]) == ("train", 1):
            raise Killed

    try:
        fit_fold("sozformer", fold_data, on_epoch=kill)
    except Killed:
        pass
    torch.rand(100)  # draws in between must not matter
    resumed = fit_fold("sozformer", fold_data, resume=torch.load(saved, weights_only=False))
    same_preds = resumed.test_predictions.equals(straight.test_predictions) and (
        resumed.val_predictions.equals(straight.val_predictions)
    )
    a = validation_metrics(straight.test_predictions)
    b = validation_metrics(resumed.test_predictions)
    return {
        "killed_after": "train epoch 1 of 3",
        "history_identical": _comparable(resumed.state["history"])
        == _comparable(straight.state["history"]),
        "weights_identical": bool(
            _same_weights(resumed.state["best_state"], straight.state["best_state"])
        ),
        "predictions_identical": bool(same_preds),
        "test_auc_uninterrupted": a["val_auc"],
        "test_auc_resumed": b["val_auc"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="256-MiB bodies instead of 1 GiB")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--only", default="cohorts,service,resume", help="sections to run")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sozkit-abuse-"))
    work.mkdir(parents=True, exist_ok=True)
    big = (256 if args.quick else 1024) * 2**20
    out: dict = {
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min_at_start": round(os.getloadavg()[0], 1)},
    }  # fmt: skip
    sections = args.only.split(",")
    try:
        if "cohorts" in sections:
            out["cohorts"] = c = bench_cohorts(work / "cohorts")
            print(f"malformed cohorts: {c['tried']} tried, {c['failed_cleanly']} failed cleanly, "
                  f"{c['unclean']} unclean, {c['crashed']} crashed")  # fmt: skip
        if "service" in sections:
            out["service"] = s = bench_service(work / "service", big)
            print(
                f"HTTP: {s['requests']} requests, {s['n_5xx_unplanned']} x 5xx (+ "
                f"{s['planned_503_upload_slots']} planned 503 upload-slot refusals)"
            )
            for kind, counts in s["by_kind"].items():
                print(f"  {kind:22s} {counts}")
            for kind, b in s["bodies"].items():
                print(
                    f"  {big >> 20} MiB {kind} body: status {b['status']}, RSS growth "
                    f"{b['growth_mib']} MiB, held after {b['held_after_mib']} MiB"
                )
            h = s["health_under_slow"]
            print(
                f"  /health under {h['clients']} slow clients: p50 {h['p50_s'] * 1000:.0f} ms, "
                f"max {h['max_s'] * 1000:.0f} ms (idle p50 {h['idle_p50_s'] * 1000:.0f} ms)"
            )
        if "resume" in sections:
            out["resume"] = r = bench_resume(work / "resume")
            print(
                f"resume: history {r['history_identical']}, weights {r['weights_identical']}, "
                f"predictions {r['predictions_identical']}; test AUC "
                f"{r['test_auc_uninterrupted']:.4f} vs {r['test_auc_resumed']:.4f}"
            )
    finally:
        out["machine"]["load_1min_at_end"] = round(os.getloadavg()[0], 1)
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    dest = REPO / "benchmarks" / "results" / "abuse.json"
    dest.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"-> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
