"""The 2-node cluster itself and the shared-path check, in separate driver processes (quick)."""

from __future__ import annotations

import json

import pytest

from ingest.errors import ConfigError
from serving.cli import _load_commands, build_parser
from serving.config import ServeConfig
from tests.cluster.conftest import run_module

_PLACED = """
import json, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(log_to_driver=False)
where = ray.remote(num_cpus=1)(lambda: ray.get_runtime_context().get_node_id())
placed = {r: ray.get(where.options(resources={r: 0.01}).remote()) for r in ("node_a", "node_b")}
nodes = [n for n in ray.nodes() if n["Alive"]]
print(json.dumps({"placed": placed, "driver": ray.get_runtime_context().get_node_id(),
    "ips": sorted({n["NodeManagerAddress"] for n in nodes}),
    "gcs": ray.get_runtime_context().gcs_address,
    "cpus": {k: n["Resources"]["CPU"] for n in nodes for k in n["Resources"] if k.startswith("node_")}}))
"""

_CHECK = """
import json, sys, ray
from ingest.errors import SozkitError
from serving.shared_paths import check_shared_paths
ray.init(log_to_driver=False)
out = {"n": check_shared_paths([sys.argv[1]])}
try:
    check_shared_paths([sys.argv[1], sys.argv[2]])
except SozkitError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def test_two_nodes_on_loopback_with_their_own_resources(cluster):
    by_name = {n["name"]: n for n in cluster["nodes"]}
    assert sorted(by_name) == ["node_a", "node_b"] and all(n["alive"] for n in by_name.values())
    out = json.loads(run_module(["-c", _PLACED], cluster["env"]).stdout.splitlines()[-1])
    # A task asking for a node's custom resource runs on that node; the two are distinct.
    assert out["placed"]["node_a"] == by_name["node_a"]["node_id"]
    assert out["placed"]["node_b"] == by_name["node_b"]["node_id"]
    assert out["placed"]["node_a"] != out["placed"]["node_b"]
    assert out["cpus"] == {"node_a": 1.0, "node_b": 1.0}
    # Nodes and driver on loopback only: the driver joined the head's raylet through 127.0.0.1.
    assert out["ips"] == ["127.0.0.1"] and out["gcs"] == f"127.0.0.1:{cluster['port']}"
    assert out["driver"] == by_name["node_a"]["node_id"]


def test_shared_paths_pass_on_both_nodes_and_name_the_node_that_lacks_one(cluster, tmp_path):
    # tmp_path is on the disk both raylets share; "hidden" is covered on node_b by an empty
    # tmpfs in that node's own mount namespace: the driver's marker file is not there.
    cluster["hidden"].joinpath("store.zarr").mkdir()
    done = run_module(["-c", _CHECK, str(tmp_path), str(cluster["hidden"])], cluster["env"])
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["n"] == 2
    node_b = next(n for n in cluster["nodes"] if n["name"] == "node_b")
    msg = out["error"]
    assert str(cluster["hidden"]) in msg and node_b["node_id"][:12] in msg and "node_b" in msg
    assert "every node mounts" in msg
    # No marker left behind in the checked folders.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sozkit-shared")]


def test_soz_score_refuses_inputs_a_node_cannot_see_before_any_work(cluster, tmp_path):
    data = cluster["hidden"] / "edf"
    data.mkdir(exist_ok=True)
    (data / "a.edf").write_bytes(b"0")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out = tmp_path / "scores.parquet"
    done = run_module(
        ["-m", "serving", "score", str(run_dir), str(data), "--out", str(out),
         "--no-progress"], cluster["env"], check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("soz score: Ray node") and "node_b" in last and str(data) in last
    assert not out.exists()


def test_cluster_options_reach_the_configs_and_are_checked():
    _load_commands()
    p = build_parser()
    a = p.parse_args(["train", "S", "--out", "R", "--placement", "SPREAD", "--max-failures", "2"])
    assert (a.placement_strategy, a.max_failures) == ("SPREAD", 2)  # dest: the config field
    assert (
        p.parse_args(["train", "S", "--out", "R"]).placement_strategy == "PACK"
    )  # the config's default
    a = p.parse_args(
        ["serve", "R", "--max-replicas-per-node", "1", "--proxy-location", "EveryNode"]
    )
    assert (a.max_replicas_per_node, a.proxy_location) == (1, "EveryNode")
    with pytest.raises(ConfigError, match="proxy_location='Anywhere'"):
        ServeConfig(run_dir="r", proxy_location="Anywhere")
    with pytest.raises(ConfigError, match="max_replicas_per_node=0"):
        ServeConfig(run_dir="r", max_replicas_per_node=0)
