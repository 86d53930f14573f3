"""A patient page with everything: brain map, spread, heatmap, traces, by task; PDF; Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from ingest.pipeline import commit_manifests
from ingest.store import ClipStore
from ingest.synthetic import synthetic_recording, write_recording_clips
from serving.explain import RecordingExplanation, explain_stored
from serving.pdf import find_chromium
from serving.report import write_report
from serving.results import ScoreResult
from serving.scoring import Scorer
from tests.serving.conftest import CONTACTS, INGEST, SOZ, make_run_dir

CHROMIUM = find_chromium()
N_CLIPS = 12  # 60 s: 3 sequences of 4 clips
ONSET = 22.0
POSITIONS = {
    **{f"LA{k}": (-18.0 - 3.5 * (k - 1), 2.0, -14.0) for k in range(1, 5)},
    **{f"RH{k}": (24.0 + 3.5 * (k - 1), -22.0, -8.0) for k in range(1, 4)},
}


def _bids_sidecars(root: Path) -> dict[str, Path]:
    """electrodes.tsv, coordsystem.json and channels.tsv of subject p1 (as ds004100 writes)."""
    ieeg = root / "sub-p1" / "ses-presurgery" / "ieeg"
    ieeg.mkdir(parents=True)
    rows = ["name\tx\ty\tz\tsize"] + [
        f"{c}\t{x}\t{y}\t{z}\tn/a" for c, (x, y, z) in POSITIONS.items()
    ]
    (ieeg / "sub-p1_ses-presurgery_acq-seeg_space-fsaverage_electrodes.tsv").write_text(
        "\ufeff" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    (ieeg / "sub-p1_ses-presurgery_acq-seeg_space-fsaverage_coordsystem.json").write_text(
        json.dumps({"iEEGCoordinateSystem": "fsaverage", "iEEGCoordinateUnits": "m"})
    )
    paths = {}
    for task in ("ictal", "interictal"):
        stem = f"sub-p1_ses-presurgery_task-{task}_acq-seeg_run-01"
        ch = (
            ["name\ttype\tstatus\tstatus_description"]
            + [
                f"{c}\tSEEG\tgood\t{'resect,soz' if c in SOZ else ('resect' if c == 'LA3' else 'n/a')}"
                for c in CONTACTS
            ]
            + ["BAD1\tSEEG\tbad\tnoisy, disconnected"]
        )
        (ieeg / f"{stem}_channels.tsv").write_text("\n".join(ch) + "\n", encoding="utf-8")
        paths[task] = ieeg / f"{stem}_ieeg.edf"
    return paths


def _clips(seed: int, ictal: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(INGEST.clip_samples) / INGEST.sfreq
    # A continuous 1/f^2 background (leaky random walk, 10 uV), cut into clips.
    walk = lfilter([1.0], [1.0, -0.99], rng.normal(0, 1, (len(CONTACTS), N_CLIPS * len(t))))
    walk *= 10 / walk.std(axis=1, keepdims=True)
    clips = walk.reshape(len(CONTACTS), N_CLIPS, len(t)).transpose(1, 0, 2).copy()
    if ictal:  # a 12 Hz discharge on the SOZ contacts from the onset clip on, with fast
        for k in range(int(ONSET // 5), N_CLIPS):  # activity (40 Hz, 150 uV) from 25 s on LA1
            for c in (0, 1):
                clips[k, c] += 60 * np.sin(2 * np.pi * 12 * t)
            if k * 5 >= 25:
                clips[k, 0] += 150 * np.sin(2 * np.pi * 40 * t)
    return clips.astype(np.float32)


@pytest.fixture(scope="module")
def patient(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("patient")
    sources = _bids_sidecars(root / "bids")
    store = ClipStore.open(root / "store", "a", config=INGEST)
    recs = {
        "ictal": synthetic_recording("test", "p1", "ictal", channels=CONTACTS, soz=SOZ,
                                     n_clips=N_CLIPS, config=INGEST, seizure=(ONSET, 50.0)),
        "interictal": synthetic_recording("test", "p1", "interictal", channels=CONTACTS,
                                          soz=SOZ, n_clips=N_CLIPS, config=INGEST),
    }  # fmt: skip
    rows = [write_recording_clips(store, r, _clips(i, t == "ictal")) for i, (t, r) in
            enumerate(recs.items())]  # fmt: skip
    commit_manifests(store, [("rows", r) for r in rows])
    store = ClipStore.open(root / "store")
    scorer = Scorer.from_run(make_run_dir(root))
    expl, parts = {}, []
    for task, rec in recs.items():
        e = explain_stored(scorer, store, rec.recording_id)
        expl[(rec.recording_id, "sozformer")] = e
        meta = {"task": task, "run": "01", "source_path": str(sources[task])}
        probs = e.window_probs.mean(axis=(0, 1))
        for model, p in (("sozformer", probs), ("svm", np.roll(probs, 2))):
            parts.append(
                ScoreResult(
                    recording_id=rec.recording_id, subject="p1", cohort="test", model=model,
                    folds=scorer.folds, threshold=scorer.threshold, channels=e.channels,
                    probabilities=p, soz_labels=tuple(c in SOZ for c in e.channels),
                    n_sequences=len(e.window_start_s), duration_s=60.0, sfreq=INGEST.sfreq,
                    metadata=meta,
                ).to_frame()
            )  # fmt: skip
    results = pd.concat(parts, ignore_index=True)
    return {"root": root, "store": store, "explanations": expl, "results": results,
            "scorer": scorer, "recs": recs}  # fmt: skip


def test_explanation_of_a_stored_recording(patient, tmp_path):
    rid = patient["recs"]["ictal"].recording_id
    e = patient["explanations"][(rid, "sozformer")]
    assert e.channels == CONTACTS and e.onsets_s == (ONSET,)
    assert e.window_probs.shape == (2, 3, len(CONTACTS))  # 2 fold models, 3 windows
    np.testing.assert_allclose(e.window_start_s, [0.0, 20.0, 40.0])
    assert list(e.explained) == [1]  # the window [20, 40) s holds the onset
    assert e.attribution.shape == (1, len(CONTACTS), 4)
    # Run fold by fold, the models average to the scorer's own ensemble prediction.
    store, scorer = patient["store"], patient["scorer"]
    feats = scorer.features(store.read_clips(rid, 0, N_CLIPS))
    seqs = [feats[s : s + 4].transpose(1, 0, 2) for s in scorer.sequence_starts(N_CLIPS)]
    np.testing.assert_allclose(e.window_probs.mean(axis=0), scorer.predict(seqs), atol=1e-6)
    back = RecordingExplanation.load(e.save(tmp_path / "e.npz"))
    np.testing.assert_array_equal(back.window_probs, e.window_probs)
    assert back.channels == e.channels and back.onsets_s == e.onsets_s
    for start, stop, w in e.highlighted(e.channels[int(np.abs(e.attribution[0]).sum(1).argmax())]):
        assert 20.0 <= start < stop <= 40.0 and 0 < w <= 1


def test_patient_page_has_every_section(patient, tmp_path):
    index = write_report(
        patient["results"], tmp_path / "rep", by="patient", store=patient["store"],
        explanations=patient["explanations"],
    )  # fmt: skip
    page = (index.parent / "test-p1.html").read_text()
    srcs = re.findall(r"src='figures/([^']+)'", page)
    for s in srcs:
        assert (index.parent / "figures" / s).is_file(), s
    kinds = {s.rsplit("__", 1)[-1] for s in srcs}
    assert {"brain.png", "shafts.png", "top.png", "heatmap.png", "traces.png", "folds.png",
            "models.png"} <= kinds  # fmt: skip
    assert "No brain map" not in page
    assert "declares units &#x27;m&#x27;" in page and "read as mm" in page  # mm values, 'm' said
    # Ictal and interictal apart, then together; ictal recordings first.
    assert "ictal (1 rec.)" in page and "interictal (1 rec.)" in page
    assert page.index("__ictal__seeg__01 (ictal)") < page.index(
        "__interictal__seeg__01 (interictal)"
    )
    assert "Across models" in page and "Spread across fold models" in page
    # Compared with what: the recordings, the contact dropped as bad and why, EI timing.
    assert "Compared with what" in page and "BAD1: noisy, disconnected" in page
    assert re.search(r"<td>512 / 512 Hz</td><td>0:01:00</td><td>7</td><td>1</td>", page)
    timing = re.search(r"<table class='eitiming'>.*?</table>", page).group(0)
    first = re.search(r"<tr><td>(\w+)</td><td>([+-][\d.]+) s</td><td>([\d.]+)</td>", timing)
    assert first and first.group(1) == "LA1" and first.group(3) == "1.00", timing  # earliest
    assert 0.0 <= float(first.group(2)) <= 6.0  # the fast activity starts 3 s after the onset


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_patient_page_renders_in_chromium_with_every_figure_and_a_pdf(patient, tmp_path):
    from PIL import Image

    index = write_report(
        patient["results"], tmp_path / "rep", by="patient", store=patient["store"],
        explanations=patient["explanations"], pdf=True,
    )  # fmt: skip
    page = index.parent / "test-p1.html"
    pdf = page.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
    # A copy of the page with a probe: after load, list images that did not decode.
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", (
        "<script>window.addEventListener('load',()=>{const b=[...document.images].filter("
        "i=>!(i.complete&&i.naturalWidth>0)).map(i=>i.getAttribute('src'));"
        "document.body.setAttribute('data-nimg',document.images.length);"
        "document.body.setAttribute('data-broken',b.join(' '));});</script></body>")))  # fmt: skip
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]  # fmt: skip
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    n_img = int(re.search(r'data-nimg="(\d+)"', dom.stdout).group(1))
    assert n_img == page.read_text().count("<img "), "not every figure is on the page"
    assert 'data-broken=""' in dom.stdout, re.search(r'data-broken="[^"]*"', dom.stdout)
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    shot = tmp_path / "shot.png"
    subprocess.run([*base, "--hide-scrollbars", "--window-size=1200,3000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)  # fmt: skip
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (3000, 1200) and img.std() > 20
    blue = (img[..., 2] > 150) & (img[..., 0] < 80)  # clinical SOZ rings / labels
    assert blue.sum() > 200
    shutil.copy(shot, tmp_path / "keep.png")
    # One screenshot per figure kind (what the demo saves), each the figure's own size.
    from serving.pdf import FIGURE_KINDS, screenshot_figures

    shots = screenshot_figures(page, tmp_path / "shots")
    assert set(shots) == set(FIGURE_KINDS)
    for kind, png in shots.items():
        src = re.search(rf"src='(figures/[^']+__{kind}\.png)'", page.read_text()).group(1)
        shot_img = Image.open(png)
        assert shot_img.size == Image.open(page.parent / src).size, kind
        assert np.asarray(shot_img.convert("L"), dtype=float).std() > 5, kind


def _soz(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    import os
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "serving", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)  # fmt: skip


def test_soz_report_explain_and_pdf_in_a_real_process(patient, tmp_path):
    results = tmp_path / "results.parquet"
    patient["results"].to_parquet(results)
    run_dir, store = patient["root"] / "run", patient["root"] / "store"
    args = [str(results), "--out", str(tmp_path / "rep"), "--patient", "p1", "--explain",
            "--run", str(run_dir), "--store", str(store)]  # fmt: skip
    if CHROMIUM is not None:
        args.append("--pdf")
    done = _soz("report", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "explain: 2 recording(s) x model explained" in done.stdout
    assert "svm: no sequences to occlude" in done.stdout
    page = (tmp_path / "rep" / "test-p1.html").read_text()
    srcs = re.findall(r"src='figures/([^']+)'", page)
    kinds = {s.rsplit("__", 1)[-1] for s in srcs}
    assert {"heatmap.png", "traces.png", "folds.png", "brain.png"} <= kinds
    for s in srcs:
        assert (tmp_path / "rep" / "figures" / s).stat().st_size > 1000, s
    if CHROMIUM is not None:
        assert (tmp_path / "rep" / "test-p1.pdf").read_bytes()[:5] == b"%PDF-"
    # The explanation the command made is the one explain_stored gives in this process.
    rid = patient["recs"]["ictal"].recording_id
    assert f"{rid} (ictal)" in page and "around the seizure onset" in page


def test_soz_report_explain_needs_the_run(patient, tmp_path):
    results = tmp_path / "results.parquet"
    patient["results"].to_parquet(results)
    done = _soz("report", str(results), "--out", str(tmp_path / "rep"), "--explain", cwd=tmp_path)
    assert done.returncode == 2 and "--run RUN_DIR" in done.stderr, done.stderr
    assert not (tmp_path / "rep").exists()
