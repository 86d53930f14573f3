"""``soz train``, ``soz score`` and ``soz serve`` against the 2-node cluster, as separate drivers.

Slow (minutes each on a loaded 2-core machine): every job is a real ``soz`` process joined to the
cluster through ``RAY_ADDRESS``; where the work ran is read from what the job wrote (the epochs'
node ids in ``metrics.json``, ``soz score``'s per-node count, Serve's replica table).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving import localcluster
from tests.cluster.conftest import REPO, nodes_by_name, read_json, run_module
from tests.serving.conftest import make_run_dir, write_edf
from tests.trainer.conftest import TINY_HPARAMS, build_store

pytestmark = pytest.mark.slow

_HPARAMS = json.dumps({"sozformer": TINY_HPARAMS["sozformer"]})


def _train_argv(store: Path, run_dir: Path, epochs: int, *extra: str, seqs: int = 4) -> list[str]:
    return [
        "-m", "serving", "train", str(store), "--model", "sozformer", "--out", str(run_dir),
        "--folds", "2", "--epochs", str(epochs), "--patience", "10", "--workers", "2",
        "--placement", "SPREAD", "--n-bands", "8", "--batch-size", "2",
        "--seqs-per-recording", str(seqs), "--parallel-folds", "1", "--hparams", _HPARAMS,
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Path(build_store(tmp_path_factory.mktemp("cluster-store") / "store.zarr"))


def test_soz_train_ddp_workers_on_different_nodes(cluster, store, tmp_path):
    run_dir = tmp_path / "run"
    run_module(_train_argv(store, run_dir, 2), cluster["env"])
    nodes = nodes_by_name(cluster)
    for fold in (0, 1):
        m = read_json(run_dir / "sozformer" / f"fold_{fold}" / "metrics.json")
        epochs = [e for e in m["epoch_nodes"] if e["stage"] == "train"]
        assert [e["epoch"] for e in epochs] == [0, 1]
        for e in epochs:
            # Rank 0 and rank 1 on the two different nodes of the cluster.
            assert len(e["nodes"]) == 2 and set(e["nodes"]) == set(nodes.values())
        assert all(h["world_size"] == 2 for h in m["history"] if h["stage"] == "train")
    assert (run_dir / "sozformer" / "fold_1" / "checkpoint.pt").is_file()


def test_soz_train_survives_a_node_killed_mid_fold(cluster, store, tmp_path):
    """node_b's raylet is killed once fold 0 has its first checkpoint; the node comes back (as
    a replacement machine would) and Ray Train restarts the workers from that checkpoint."""
    run_dir = tmp_path / "run"
    before = nodes_by_name(cluster)
    # Epochs of a few seconds (48 sequences per recording), so the kill lands inside fold 0.
    argv = [sys.executable, *_train_argv(store, run_dir, 5, "--max-failures", "2", seqs=48)]
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=cluster["env"], cwd=REPO, stdout=out, stderr=out)
    try:
        ckpts = run_dir / "sozformer" / "ray" / "fold_0"
        deadline = time.monotonic() + 400
        while not list(ckpts.glob("checkpoint_*")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no first checkpoint in 400 s"
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-3000:]
        localcluster.kill("node_b", cluster["root"])
        killed_after = len(list(ckpts.glob("checkpoint_*")))
        subprocess.run([*cluster["cli"], "start", "node_b"], check=True, cwd=REPO, timeout=120)
        assert proc.wait(timeout=900) == 0, log.read_text()[-5000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    after = nodes_by_name(cluster)
    assert after["node_a"] == before["node_a"] and after["node_b"] != before["node_b"]
    m = read_json(run_dir / "sozformer" / "fold_0" / "metrics.json")
    epochs = [e for e in m["epoch_nodes"] if e["stage"] == "train"]
    # Every epoch once, in order: the restart continued after the checkpointed epoch(s).
    assert [e["epoch"] for e in epochs] == list(range(len(epochs)))
    assert len(epochs) == 5 or m["best_epoch"] < len(epochs) - 1
    ran_on = [set(e["nodes"]) for e in epochs]
    old, new = set(before.values()), {after["node_a"], after["node_b"]}
    assert ran_on[0] == old and ran_on[-1] == new  # finished on the replacement node
    # The epochs checkpointed before the kill were not run again; the rest ran after it.
    n_old = ran_on.count(old)
    assert n_old >= 1 and ran_on == [old] * n_old + [new] * (len(epochs) - n_old)
    assert n_old <= killed_after + 1
    assert (run_dir / "sozformer" / "fold_1" / "checkpoint.pt").is_file()


def test_soz_score_spreads_recordings_over_both_nodes(cluster, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        write_edf(data / f"p{i}_ictal.edf", seconds=40.0, seed=i)
    run_dir = make_run_dir(tmp_path, svm=False)
    out = tmp_path / "scores.parquet"
    done = run_module(
        ["-m", "serving", "score", str(run_dir), str(data), "--out", str(out),
         "--model", "sozformer", "--workers", "2", "--line-freq", "50", "--no-progress"],
        cluster["env"],
    )  # fmt: skip
    nodes = nodes_by_name(cluster)
    summary = done.stdout.strip().splitlines()[0]
    assert summary.startswith("4 recording(s) scored") and "on 2 Ray nodes" in summary
    for node_id in nodes.values():
        assert f"{node_id[:12]}: " in summary
    import pandas as pd

    assert pd.read_parquet(out)["recording_id"].nunique() == 4


_REPLICAS = """
import json, ray
from ray.serve.context import _get_global_client
ray.init(log_to_driver=False, namespace="serve")
details = _get_global_client().get_serve_details()
reps = details["applications"]["sozkit"]["deployments"]["SequenceModel"]["replicas"]
print(json.dumps([[r["state"], r["node_id"]] for r in reps]))
"""


def test_soz_serve_two_replicas_on_two_nodes_answer_one_client(cluster, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_edf(data / "p1_ictal.edf", seconds=60.0)
    run_dir = make_run_dir(tmp_path, svm=False)
    port = 26499
    argv = [
        sys.executable, "-m", "serving", "serve", str(run_dir), "--data-root", str(data),
        "--port", str(port), "--replicas", "2", "--max-replicas-per-node", "1",
        "--cpus-per-replica", "0.5", "--gpus-per-replica", "0", "--line-freq", "50",
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=cluster["env"], cwd=REPO, stdout=out, stderr=out)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text()[-5000:]
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(1)
        reps = json.loads(run_module(["-c", _REPLICAS], cluster["env"]).stdout.splitlines()[-1])
        assert [s for s, _ in reps] == ["RUNNING", "RUNNING"]
        assert {n for _, n in reps} == set(nodes_by_name(cluster).values())
        # One client, several requests: every one answered with the same scores.
        bodies = [client.post("/score", json={"path": "p1_ictal.edf"}) for _ in range(6)]
        assert all(r.status_code == 200 for r in bodies), [r.text for r in bodies]
        probs = [[c["probability"] for c in r.json()["contacts"]] for r in bodies]
        np.testing.assert_allclose(probs, [probs[0]] * len(probs), rtol=1e-5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
