"""The clinician report: pages, valid PNG figures, and a real headless-browser render."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest.errors import SozkitError
from serving.report import contact_number, plot_shaft_map, write_report
from serving.report_results import load_results
from serving.results import RESULT_COLUMNS, ScoreResult

CHROMIUM = Path("/usr/bin/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(rid: str, subject: str, model: str, seed: int, labelled: bool = True) -> ScoreResult:
    rng = np.random.default_rng(seed)
    channels = tuple(f"{s}{i}" for s in ("LA", "LH", "RA") for i in range(1, 9))
    probs = rng.uniform(0.0, 0.4, len(channels))
    probs[[1, 2, 3]] = [0.9, 0.8, 0.7]  # LA2..LA4 high
    labels = tuple(ch in {"LA2", "LA3", "LH1"} for ch in channels) if labelled else None
    return ScoreResult(
        recording_id=rid, subject=subject, cohort="sim", model=model, folds=(0, 1),
        threshold=0.5, channels=channels, probabilities=probs, soz_labels=labels,
        n_sequences=4, duration_s=600.0, sfreq=512.0,
        metadata={"task": "ictal", "run": "01", "source_path": f"/data/{rid}.edf"},
    )  # fmt: skip


@pytest.fixture
def results() -> pd.DataFrame:
    parts = [
        _result("sim__p1__ictal__01", "p1", "sozformer", 0),
        _result("sim__p1__ictal__01", "p1", "svm", 1),
        _result("sim__p1__ictal__02", "p1", "sozformer", 2),
        _result("sim__p2__ictal__01", "p2", "sozformer", 3, labelled=False),
    ]
    return pd.concat([p.to_frame() for p in parts], ignore_index=True)


def test_result_frame_schema_and_ranking():
    res = _result("r", "s", "sozformer", 0)
    frame = res.to_frame()
    assert tuple(frame.columns) == RESULT_COLUMNS
    assert len(frame) == len(res.channels)
    top = res.ranked()[0]
    assert top.channel == "LA2" and top.rank == 1 and top.soz_call and top.soz_label
    assert frame.loc[frame["channel"] == "LA2", "rank"].item() == 1
    assert (frame["soz_call"] == (frame["probability"] >= 0.5)).all()
    assert frame["fold"].isna().all() and (frame["folds"] == "0,1").all()
    d = res.to_dict()
    assert [c["rank"] for c in d["contacts"]] == list(range(1, len(res.channels) + 1))
    # A service answer reads back into the same result (channels back in file order).
    back = ScoreResult.from_dict(json.loads(json.dumps(d)))
    assert back.channels == res.channels and back.soz_labels == res.soz_labels
    pd.testing.assert_frame_equal(back.to_frame(), frame)


def test_contact_number():
    assert contact_number("LA12") == 12
    assert contact_number("L'A3") == 3
    assert contact_number("EKG") is None


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_report_pages_per_recording(tmp_path, results):
    index = write_report(results, tmp_path / "rep", top_n=5)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == [
        "index.html",
        "sim__p1__ictal__01.html",
        "sim__p1__ictal__02.html",
        "sim__p2__ictal__01.html",
    ]
    page = (index.parent / "sim__p1__ictal__01.html").read_text()
    # both models, the threshold, the top contact and the clinical agreement line
    assert "<h2>sozformer</h2>" in page and "<h2>svm</h2>" in page
    assert "threshold 0.500" in page and "LA2" in page
    assert "2 of 3 clinical SOZ contacts called" in page
    figs = list((index.parent / "figures").glob("*.png"))
    # (shaft map + top chart) per recording x model, + the across-models spread of the
    # recording scored by two models; no brain map (no electrodes.tsv beside /data/...).
    assert len(figs) == 2 * 4 + 1
    assert "No brain map: no *_electrodes.tsv beside /data/sim__p1__ictal__01.edf" in page
    assert "<h2>Across models</h2>" in page and "calls disagree on" in page
    for fig in figs:
        _assert_png(fig)
        assert f"figures/{fig.name}" in "".join(
            p.read_text() for p in index.parent.glob("sim__*.html")
        )
    unlabelled = (index.parent / "sim__p2__ictal__01.html").read_text()
    assert "no clinical labels" in unlabelled


def test_report_per_patient_averages_recordings(tmp_path, results):
    index = write_report(results, tmp_path / "rep", by="patient", select="p1")
    page = (index.parent / "sim-p1.html").read_text()
    assert "recordings</td><td>2: sim__p1__ictal__01, sim__p1__ictal__02" in page
    with pytest.raises(SozkitError, match="no patient 'nobody'"):
        write_report(results, tmp_path / "rep2", by="patient", select="nobody")


def test_load_results_roundtrip_and_errors(tmp_path, results):
    path = tmp_path / "results.parquet"
    results.to_parquet(path)
    back = load_results(path)
    assert len(back) == len(results)
    assert back["soz_label"].dtype == "boolean"
    with pytest.raises(SozkitError, match="does not exist"):
        load_results(tmp_path / "missing.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(SozkitError, match="lacks the columns"):
        load_results(tmp_path / "bad.parquet")


def test_shaft_map_colours_follow_probability(tmp_path):
    """The map's pixels must change when the probabilities do (a map that cannot fail is no test)."""
    from PIL import Image

    res = _result("r", "s", "m", 0)
    low = res.to_frame().assign(probability=0.0)
    high = res.to_frame().assign(probability=1.0)
    a = np.asarray(Image.open(plot_shaft_map(low, tmp_path / "a.png")).convert("RGB"), float)
    b = np.asarray(Image.open(plot_shaft_map(high, tmp_path / "b.png")).convert("RGB"), float)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 1.0  # contacts went from pale yellow to dark red


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
def test_report_renders_in_headless_chromium(tmp_path, results):
    from PIL import Image

    index = write_report(results, tmp_path / "rep", select="sim__p1__ictal__01")
    page = index.parent / "sim__p1__ictal__01.html"
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
        "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"chromium wrote no screenshot: {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (1600, 1200)
    # Non-blank: many distinct colours, and the figure's warm contact colours are visible.
    assert img.std() > 20
    reds = (img[..., 0] > 180) & (img[..., 2] < 120)
    assert reds.sum() > 500, "no warm (high-probability) pixels: the figures did not render"


def test_report_from_a_run_dir(tmp_path):
    """A RUN_DIR's test predictions (one row per recording x channel x fold) become a report."""
    run = tmp_path / "run"
    rows = []
    for fold, (patient, thr) in enumerate([("sim/p1", 0.4), ("sim/p2", 0.6)]):
        d = run / "sozformer" / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "threshold.json").write_text(f'{{"threshold": {thr}}}')
        for ch, score, y in [("LA1", 0.9, 1), ("LA2", 0.5, 0), ("RH1", 0.1, 0)]:
            rows.append(
                {"fold": fold, "cohort": "sim", "patient": patient,
                 "recording_id": f"sim__{patient[-2:]}__ictal", "channel": ch, "y_true": y,
                 "score": score}
            )  # fmt: skip
    pd.DataFrame(rows).to_parquet(run / "sozformer" / "predictions.parquet")
    res = load_results(run)
    assert len(res) == 6 and set(res["model"]) == {"sozformer"}
    p2 = res[res["subject"] == "p2"].set_index("channel")
    assert p2.loc["LA2", "threshold"] == pytest.approx(0.6) and not p2.loc["LA2", "soz_call"]
    assert res[res["subject"] == "p1"].set_index("channel").loc["LA2", "soz_call"]
    assert p2.loc["LA1", "soz_label"]
    index = write_report(res, tmp_path / "rep", by="patient")
    assert (index.parent / "sim-p1.html").exists() and (index.parent / "sim-p2.html").exists()


def test_soz_report_cli(tmp_path, results, capsys):
    from serving.cli import main

    path = tmp_path / "results.parquet"
    results.to_parquet(path)
    assert main(["report", str(path), "--out", str(tmp_path / "rep"), "--patient", "p1"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert (tmp_path / "rep" / "sim-p1.html").is_file()


def test_report_says_the_probabilities_are_calibrated(tmp_path):
    import dataclasses

    res = _result("sim__p1__ictal__01", "p1", "sozformer", 0)
    cal = dataclasses.replace(
        res, probabilities=res.probabilities / 2, raw_probabilities=res.probabilities,
        threshold=0.25, raw_threshold=0.5, calibration="platt+isotonic",
    )  # fmt: skip
    index = write_report(cal.to_frame(), tmp_path / "rep", top_n=5)
    page = (index.parent / "sim__p1__ictal__01.html").read_text()
    assert "probability (calibrated: platt+isotonic)" in page and "<th>raw</th>" in page
    assert "<td>0.450</td><td>0.900</td>" in page  # LA2: calibrated, then raw
    plain = write_report(res.to_frame(), tmp_path / "rep2", top_n=5)
    assert "calibrated" not in (plain.parent / "sim__p1__ictal__01.html").read_text()


def _relative_rule_results(
    tmp_path: Path, scores: dict[str, float], flat: str | None = None
) -> pd.DataFrame:
    """``load_results`` of a one-fold SVM run whose threshold.json asks for the relative call
    rule (k = 1), with test predictions ``scores`` of one recording (LA1 its only SOZ contact);
    ``flat`` names a contact flagged flat (no ``flat`` column when None)."""
    run = tmp_path / "run"
    d = run / "svm" / "fold_0"
    d.mkdir(parents=True)
    (d / "threshold.json").write_text(
        json.dumps({"threshold": 0.05, "call_rule": "relative", "relative_k": 1.0})
    )
    rows = [
        {"fold": 0, "cohort": "sim", "patient": "sim/p1", "recording_id": "sim__p1__ictal",
         "channel": ch, "y_true": int(ch == "LA1"), "score": s}
        for ch, s in scores.items()
    ]  # fmt: skip
    if flat is not None:
        rows = [{**row, "flat": row["channel"] == flat} for row in rows]
    pd.DataFrame(rows).to_parquet(run / "svm" / "predictions.parquet")
    return load_results(run).set_index("channel")


def test_report_from_a_run_dir_applies_the_relative_call_rule(tmp_path):
    from trainer.call_rules import relative_threshold

    scores = {"LA1": 0.9, "LA2": 0.5, "RH1": 0.1, "RH2": 0.12}
    res = _relative_rule_results(tmp_path, scores)
    t = relative_threshold(np.array(list(scores.values())), 1.0)
    assert res["threshold"].to_numpy() == pytest.approx([t] * 4)
    assert list(res.index[res["soz_call"]]) == ["LA1"]  # not all four, as 0.05 would call


def test_report_relative_rule_leaves_flat_contacts_out_as_training_does(tmp_path):
    from trainer.call_rules import relative_threshold

    scores = {"LA1": 0.9, "LA2": 0.5, "RH1": 0.0, "RH2": 0.12}
    res = _relative_rule_results(tmp_path, scores, flat="RH1")
    t = relative_threshold(np.array([0.9, 0.5, 0.12]), 1.0)  # RH1 (flat) out of the reference
    assert t != pytest.approx(relative_threshold(np.array(list(scores.values())), 1.0))
    assert res["threshold"].to_numpy() == pytest.approx([t] * 4)
