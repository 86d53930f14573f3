"""The Ray Serve application over real HTTP on 127.0.0.1: answers, every 4xx, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import httpx
import numpy as np
import pytest

from ingest.errors import ConfigError
from serving.config import ServeConfig
from serving.inputs import (
    PathRejected,
    RecordingNotFound,
    recording_for_path,
    resolve_under_roots,
)
from serving.scoring import Scorer

from .conftest import ALL_CHANNELS, CONTACTS, SOZ, free_port, served, write_edf

UPLOAD_CAP = 3 * 1024**2


def _write_bids(root) -> str:
    """A one-run BIDS iEEG dataset (sidecars as ds004100 writes them); returns the run's path."""
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.8.0"})
    )
    (root / "participants.tsv").write_text("participant_id\tsite\nsub-01\tX\n")
    ieeg = root / "sub-01" / "ses-presurgery" / "ieeg"
    ieeg.mkdir(parents=True)
    base = "sub-01_ses-presurgery_task-ictal_acq-seeg_run-01"
    write_edf(ieeg / f"{base}_ieeg.edf", seconds=40.0, seed=7)
    (ieeg / f"{base}_ieeg.json").write_text(
        json.dumps({"SamplingFrequency": 1024, "PowerLineFrequency": 50, "TaskName": "ictal"})
    )
    rows = ["name\ttype\tunits\tstatus\tstatus_description"]
    for ch in ALL_CHANNELS:
        status = "bad" if ch in ("BAD1", "EKG") else "good"
        desc = "soz" if ch in SOZ else "n/a"
        rows.append(f"{ch}\t{'EKG' if ch == 'EKG' else 'SEEG'}\tuV\t{status}\t{desc}")
    (ieeg / f"{base}_channels.tsv").write_text("\n".join(rows) + "\n")
    (ieeg / f"{base}_events.tsv").write_text(
        "onset\tduration\ttrial_type\n12.0\t0\tsz onset\n30.0\t0\tsz offset\n"
    )
    return f"bids/sub-01/ses-presurgery/ieeg/{base}_ieeg.edf"


@pytest.fixture(scope="module")
def server(ray_local, serving_data, tmp_path_factory):
    data = serving_data["data"]
    bids_rel = _write_bids(data / "bids") if not (data / "bids").exists() else None
    # files a user might point at: corrupt, truncated, a symlink escaping the root
    (data / "corrupt.edf").write_bytes(b"0       " + os.urandom(3000))
    raw = serving_data["long_edf"].read_bytes()
    (data / "truncated.edf").write_bytes(raw[: len(raw) * 2 // 3])
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(serving_data["long_edf"], outside / "secret.edf")
    if not (data / "escape.edf").exists():
        (data / "escape.edf").symlink_to(outside / "secret.edf")
    port = free_port()
    cfg = ServeConfig(
        run_dir=str(serving_data["run_dir"]), port=port, data_roots=(str(data),),
        max_batch_size=8, max_upload_bytes=UPLOAD_CAP, num_cpus=0.25, line_freq=50.0,
    )  # fmt: skip
    with served(cfg, "sozkit-test") as client:
        yield {"client": client, "port": port, "outside": outside, "bids": bids_rel}


def _still_serving(client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_health_models_openapi(server):
    c = server["client"]
    _still_serving(c)
    models = c.get("/models").json()
    assert models["available"] == {"sozformer": [0, 1], "svm": [0, 1]}
    assert models["served"]["model"] == "sozformer" and models["served"]["seq_len"] == 4
    spec = c.get("/openapi.json").json()
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/octet-stream", "multipart/form-data"}
    assert {"403", "413", "422"} <= set(spec["paths"]["/score"]["post"]["responses"])


def test_score_path_equals_library_scorer(server, serving_data):
    c = server["client"]
    r = c.post("/score", json={"path": "p1_ictal.edf"})
    assert r.status_code == 200, r.text
    body = r.json()
    rec = recording_for_path(serving_data["long_edf"], line_freq=50.0)
    ref = Scorer.from_run(serving_data["run_dir"]).score(rec)
    got = {x["channel"]: x["probability"] for x in body["contacts"]}
    # the folder reader sees no bad-channel marks: BAD1 is scored too; EKG is not
    assert set(got) == {*CONTACTS, "BAD1"}
    # batched on the model deployment (padded with other requests' sequences) == library call
    np.testing.assert_allclose([got[ch] for ch in ref.channels], ref.probabilities, rtol=1e-5)
    assert [x["rank"] for x in body["contacts"]] == list(range(1, 9))
    assert body["threshold"] == pytest.approx(0.5) and body["folds"] == [0, 1]
    assert body["n_sequences"] == 3 and body["timings"]["request_total"] > 0


def test_score_bids_run_brings_its_sidecars(server):
    r = server["client"].post("/score", json={"path": server["bids"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["recording_id"] == "bids__01__presurgery__ictal__seeg__01"
    assert {x["channel"] for x in body["contacts"]} == set(CONTACTS)  # BAD1, EKG dropped
    assert {x["channel"] for x in body["contacts"] if x["soz_label"]} == set(SOZ)
    assert any("BAD1" in w for w in body["warnings"])


def test_score_upload_raw_and_multipart(server, serving_data):
    c = server["client"]
    data = serving_data["long_edf"].read_bytes()
    raw = c.post(
        "/score", content=data, params={"filename": "night 1.edf"},
        headers={"content-type": "application/octet-stream"},
    )  # fmt: skip
    assert raw.status_code == 200, raw.text
    assert raw.json()["recording_id"] == "upload__night-1"
    form = c.post("/score", files={"file": ("p9.edf", data, "application/octet-stream")})
    assert form.status_code == 200, form.text
    a = {x["channel"]: x["probability"] for x in raw.json()["contacts"]}
    b = {x["channel"]: x["probability"] for x in form.json()["contacts"]}
    assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"json": {"file": "p1_ictal.edf"}}, 400, '"path"'),
        ({"json": {"path": "../outside/secret.edf"}}, 403, "'..'"),
        ({"json": {"path": "/etc/hostname"}}, 403, "outside the data roots"),
        ({"json": {"path": "escape.edf"}}, 403, "symlink"),
        ({"json": {"path": "nope.edf"}}, 404, "no file"),
        ({"json": {"path": "p1_ictal.edf", "line_freq": 55}}, 400, "line_freq"),
        ({"content": b"x" * (UPLOAD_CAP + 10), "headers": {"content-type": "application/octet-stream"}}, 413, "more than"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
        ({"json": {"path": "corrupt.edf"}}, 422, "not a valid EDF"),
        ({"json": {"path": "truncated.edf"}}, 422, "truncated"),
        ({"json": {"path": "short.edf"}}, 422, "fewer than the 4 clips"),
        ({"content": b"abc", "params": {"filename": "x.txt"}, "headers": {"content-type": "application/octet-stream"}}, 400, "single-file"),
    ],
    ids=["bad-json", "no-path", "dotdot", "absolute-outside", "symlink-escape", "missing",
         "bad-line-freq", "too-large", "content-type", "corrupt", "truncated", "too-short",
         "upload-type"],
)  # fmt: skip
def test_user_mistakes_are_4xx_and_server_keeps_serving(server, kwargs, status, needle):
    c = server["client"]
    r = c.post("/score", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and needle.lower() in (body["detail"] + body["fix"]).lower(), body
    _still_serving(c)


def _model_stats() -> dict:
    from ray import serve

    handle = serve.get_deployment_handle("SequenceModel", app_name="sozkit-test")
    return handle.stats.remote().result()


def test_32_simultaneous_requests_all_answered(server):
    reference = server["client"].post("/score", json={"path": "p1_ictal.edf"}).json()
    want = {x["channel"]: x["probability"] for x in reference["contacts"]}
    before = _model_stats()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server['port']}", timeout=300, limits=limits
        ) as ac:
            return await asyncio.gather(
                *(ac.post("/score", json={"path": "p1_ictal.edf"}) for _ in range(32))
            )

    responses = asyncio.run(asyncio.wait_for(burst(), timeout=600))
    assert [r.status_code for r in responses] == [200] * 32
    # Serve really batched across requests: every sequence went through the model deployment,
    # in fewer forward passes than sequences, and some pass held more sequences than the 3 of
    # one request.
    after = _model_stats()
    sizes = after["batch_sizes"][len(before["batch_sizes"]) :]
    assert sum(sizes) == 32 * 3
    assert len(sizes) < 32 * 3 / 2 and max(sizes) > 3, sizes
    for r in responses:
        got = {x["channel"]: x["probability"] for x in r.json()["contacts"]}
        assert got == pytest.approx(want, rel=1e-4)
    _still_serving(server["client"])


def test_resolve_under_roots_unit(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.edf").write_bytes(b"1")
    assert resolve_under_roots("a/x.edf", [root]) == (root / "a" / "x.edf").resolve()
    assert resolve_under_roots(str(root / "a" / "x.edf"), [root]).name == "x.edf"
    with pytest.raises(PathRejected, match="without --data-root"):
        resolve_under_roots("a/x.edf", [])
    with pytest.raises(PathRejected, match="'..'"):
        resolve_under_roots("a/../a/x.edf", [root])
    with pytest.raises(RecordingNotFound, match="not a file"):
        resolve_under_roots("a", [root])


def test_serve_config_validation():
    with pytest.raises(ConfigError, match="max_ongoing_requests=4 must be >= max_batch_size=8"):
        ServeConfig(run_dir="r", max_batch_size=8, max_ongoing_requests=4)
    with pytest.raises(ConfigError, match="serves one model"):
        ServeConfig(run_dir="r", model="all")
    assert ServeConfig(run_dir="r", max_batch_size=8).ongoing_requests == 16


def test_answer_has_each_fold_models_spread(server, serving_data):
    from serving.explain import score_and_explain

    body = server["client"].post("/score", json={"path": "p1_ictal.edf"}).json()
    assert body["explanation"] is None  # opt-in
    unc = body["uncertainty"]
    assert unc["folds"] == [0, 1] and unc["fold_thresholds"] == [0.45, 0.55]
    assert [c["channel"] for c in unc["contacts"]] == [c["channel"] for c in body["contacts"]]
    # The fold models run apart in this process give the same per-fold probabilities.
    rec = recording_for_path(serving_data["long_edf"], line_freq=50.0)
    result, e = score_and_explain(Scorer.from_run(serving_data["run_dir"]), rec)
    want = dict(zip(e.channels, e.window_probs.mean(axis=1).T, strict=True))  # (folds,) each
    probs = {c["channel"]: c["probability"] for c in body["contacts"]}
    # The explaining pass calls as the service does (same rules: calibration, relative k).
    assert result.threshold == pytest.approx(body["threshold"], rel=1e-6)
    np.testing.assert_allclose(result.probabilities, [probs[c] for c in result.channels], rtol=1e-4)
    for c in unc["contacts"]:
        np.testing.assert_allclose(c["fold_probabilities"], want[c["channel"]], rtol=1e-4)
        p = np.array(c["fold_probabilities"])
        assert c["min"] == pytest.approx(p.min()) and c["max"] == pytest.approx(p.max())
        assert c["std"] == pytest.approx(p.std(), abs=1e-6)
        assert np.mean(p) == pytest.approx(probs[c["channel"]], rel=1e-4)
        calls = p >= np.array([0.45, 0.55])
        ensemble = probs[c["channel"]] >= body["threshold"]
        assert c["agreement"] == pytest.approx(np.mean(calls == ensemble))
        assert c["disagree"] == (c["agreement"] < 1)
    assert unc["n_disagree"] == sum(c["disagree"] for c in unc["contacts"])
    schemas = server["client"].get("/openapi.json").json()["components"]["schemas"]
    assert {"Uncertainty", "ContactUncertainty", "Explanation", "ContactExplanation"} <= set(
        schemas
    )
    assert {"uncertainty", "explanation"} <= set(schemas["ScoreResponse"]["properties"])
    spec = server["client"].get("/openapi.json").json()["paths"]["/score"]["post"]
    request = spec["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"explain", "explain_contacts"} <= set(request)


def test_explanation_on_request_is_the_library_occlusion(server, serving_data):
    from serving.explain import explain_recording

    c = server["client"]
    r = c.post("/score", json={"path": server["bids"], "explain": True})
    assert r.status_code == 200, r.text
    ex = r.json()["explanation"]
    ranked = [x["channel"] for x in r.json()["contacts"]]
    names = [x["channel"] for x in ex["contacts"]]  # the top 5, then the clinical SOZ
    assert names[:5] == ranked[:5] and set(names) == {*ranked[:5], *SOZ} == set(names[:7])
    assert ex["method"] == "occlusion" and ex["onsets_s"] == [12.0]
    assert ex["window_start_s"] == [0.0, 20.0] and ex["explained_windows"] == [0]  # the onset's
    rec = recording_for_path(serving_data["data"] / server["bids"], root=serving_data["data"])
    e = explain_recording(Scorer.from_run(serving_data["run_dir"]), rec)
    for x in ex["contacts"]:
        k = e.channels.index(x["channel"])
        np.testing.assert_allclose(x["attribution"], e.attribution[:, k], atol=1e-5)
        np.testing.assert_allclose(x["window_probability"], e.window_probs.mean(0)[:, k],
                                   rtol=1e-4)  # fmt: skip
        assert len(x["attribution"]) == 1 and len(x["attribution"][0]) == 4
    # Chosen contacts, also for uploads (query), and an unknown one is a 400 with the names.
    edf = serving_data["long_edf"].read_bytes()
    r = c.post("/score?filename=x.edf&line_freq=50&explain=true&explain_contacts=LA1,RH2",
               content=edf, headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [x["channel"] for x in r.json()["explanation"]["contacts"]] == ["LA1", "RH2"]
    r = c.post("/score", json={"path": "p1_ictal.edf", "explain_contacts": ["NOPE1"]})
    assert r.status_code == 400 and "NOPE1" in r.json()["detail"], r.text
    _still_serving(c)
