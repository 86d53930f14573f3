"""A real 2-node Ray cluster on this machine for the cluster tests (:mod:`serving.localcluster`).

Two raylets of 1 CPU each (``node_a`` the head, ``node_b``), each with its own object store and
custom resource, every service on 127.0.0.1 and on ports of their own (GCS 26479), so the
session's ordinary local Ray and other sessions' Ray are not touched. ``node_b`` runs in its own
mount namespace with an empty folder over ``hidden`` (a node that lacks a mount the driver has).
The ``soz`` commands of the tests join it as separate driver processes through ``env``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving import localcluster

REPO = Path(__file__).resolve().parents[2]
PORT = 26479


def run_module(args, env, *, timeout=600, check=True) -> subprocess.CompletedProcess:
    """``python -m ...`` in a fresh process joined to the cluster (``env``)."""
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(
            f"{args} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
            f"stderr:\n{done.stderr[-5000:]}"
        )
    return done


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The running cluster: ``root``, ``port``, ``env`` (a driver's environment), ``hidden``,
    ``nodes`` (as the GCS lists them at start)."""
    root = Path(f"/tmp/sozc-test-{os.getuid()}")
    hidden = tmp_path_factory.mktemp("only-on-the-driver")
    localcluster.down(root)  # a cluster a killed session left behind
    cli = [sys.executable, "-m", "serving.localcluster", "--dir", str(root), "--port", str(PORT)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run(
        [*cli, "up", "--cpus", "1,1", "--hide", f"1:{hidden}"], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if up.returncode != 0:
        localcluster.down(root)
        raise AssertionError(f"localcluster up failed:\n{up.stdout}\n{up.stderr}")
    try:
        yield {
            "root": root,
            "port": PORT,
            "cli": cli,
            "env": {
                **env,
                **localcluster.driver_env(PORT),
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
            },
            "hidden": hidden,
            "nodes": localcluster.cluster_nodes(PORT),
        }
    finally:
        localcluster.down(root)


def nodes_by_name(cluster) -> dict[str, str]:
    """``{"node_a": node id, "node_b": node id}`` of the alive nodes."""
    return {
        n["name"]: n["node_id"] for n in localcluster.cluster_nodes(cluster["port"]) if n["alive"]
    }


def read_json(path: Path):
    return json.loads(Path(path).read_text())
