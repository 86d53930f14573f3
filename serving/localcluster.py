"""A real multi-node Ray cluster on this machine: ``python -m serving.localcluster up|down|...``.

Each node is its own ``ray start --block`` process tree (its own raylet, object store, CPUs and
a custom resource named after the node, ``node_a`` for the head, ``node_b``, ``node_c`` ... for
the others), so placement across nodes can be asserted and one node can be killed while the
others keep running. Everything listens on loopback (``--node-ip-address=127.0.0.1``; the driver
joins with ``RAY_ADDRESS=127.0.0.1:<port>``) and on fixed, non-default ports derived from
``--port``, so the cluster never collides with a default local Ray on the same machine.

Commands::

    up      start the head and the worker nodes, wait until all of them are alive
    status  the nodes the cluster's GCS reports (alive or dead) and their resources
    env     the exports a driver on this machine needs to join it
    kill N  kill -9 node N's raylet (a node lost mid-job; failure tests)
    start N start node N again after a kill
    down    stop every process of this cluster (and only those: never ``ray stop``)

State (the pids of each node's ``ray start``, the ports) is kept in ``<dir>/cluster.json``; the
Ray temp dirs are ``<dir>/<node letter>`` (a short path: Unix socket paths are limited to 107
bytes). ``down`` ends the recorded process trees and any process whose command line names
``<dir>``, i.e. only what this cluster started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ingest.errors import SozkitError
from ingest.ownership import descendants

#: GCS port of the cluster (Ray's default is 6379; other sessions may use that one).
DEFAULT_PORT = 26379
#: Ports of node ``i`` (0 = head) are ``port + 10 * i + offset``; worker processes use
#: ``port + 1000 + 200 * i`` .. ``+ 199``.
_PORT_OFFSETS = {
    "--node-manager-port": 1,
    "--object-manager-port": 2,
    "--dashboard-agent-listen-port": 3,
    "--dashboard-agent-grpc-port": 4,
    "--runtime-env-agent-port": 5,
    "--metrics-export-port": 6,
}
_STATE = "cluster.json"
_MiB = 1024**2


def default_dir() -> Path:
    """``$SOZKIT_CLUSTER_DIR`` or ``/tmp/sozc-<uid>`` (kept short for Unix socket paths)."""
    return Path(os.environ.get("SOZKIT_CLUSTER_DIR") or f"/tmp/sozc-{os.getuid()}")


def node_name(index: int) -> str:
    """``node_a`` (head), ``node_b``, ...: the node's custom resource and its name here."""
    return f"node_{string.ascii_lowercase[index]}"


def address(port: int = DEFAULT_PORT) -> str:
    """The ``RAY_ADDRESS`` a driver on this machine uses to join the cluster."""
    return f"127.0.0.1:{port}"


def driver_env(port: int = DEFAULT_PORT) -> dict[str, str]:
    """Environment of a driver (``soz ...``) joining the cluster over loopback.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray take this machine's address as
    127.0.0.1 (as it does on macOS), so the driver connects to the nodes there instead of
    through the network interface.
    """
    return {
        "RAY_ADDRESS": address(port),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
    }


def _node_args(index: int, port: int, cpus: int, object_store_mb: int, root: Path) -> list[str]:
    base = port + 10 * index
    args = [
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--object-store-memory={object_store_mb * _MiB}",
        f"--resources={json.dumps({node_name(index): 1})}",
        f"--temp-dir={root / string.ascii_lowercase[index]}",
        f"--min-worker-port={port + 1000 + 200 * index}",
        f"--max-worker-port={port + 1199 + 200 * index}",
        "--disable-usage-stats",
    ]
    args += [f"{flag}={base + off}" for flag, off in _PORT_OFFSETS.items()]
    if index == 0:
        args += [
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={port + 8}",
            "--include-dashboard=false",
            f"--dashboard-port={port + 9}",
        ]
    else:
        args += [f"--address={address(port)}"]
    return args


#: ``ray start`` with ``--node-ip-address`` taken as given: Ray replaces a loopback address by
#: the machine's interface address (``resolve_ip_for_localhost``), which would put the nodes on
#: the network; a loopback-only cluster keeps 127.0.0.1.
_RAY_START = (
    "import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda h: h; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    # A node started on a busy machine: give its agents and raylet time to come up.
    env.setdefault("RAY_agent_register_timeout_ms", "120000")
    env.setdefault("RAY_raylet_start_wait_time_s", "120")
    return env


def _read_state(root: Path) -> dict[str, Any]:
    path = root / _STATE
    if not path.is_file():
        raise SozkitError(f"no local cluster in {root} (no {_STATE}); start one with `up`.")
    return json.loads(path.read_text())


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / f".{_STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(root / _STATE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process this user can read."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        out[int(p.name)] = (ppid, cmd)
    return out


def _start_node(root: Path, state: dict[str, Any], index: int) -> None:
    node = state["nodes"][index]
    path = root / f"{node['name']}.log"
    node["log_offset"] = path.stat().st_size if path.is_file() else 0
    log = open(path, "ab")  # noqa: SIM115 - handed to the child
    args = _node_args(index, state["port"], node["cpus"], node["object_store_mb"], root)
    cmd = [sys.executable, "-c", _RAY_START, "start", *args]
    if node.get("hidden"):
        # Its own mount namespace, an empty tmpfs over each hidden folder: this node does not
        # see what the driver writes there (a node without the shared mount). Linux, root.
        mounts = " && ".join(f'mount -t tmpfs tmpfs "{h}"' for h in node["hidden"])
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'{mounts} && exec "$@"', "sh", *cmd]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    log.close()
    node["pid"] = proc.pid
    _write_state(root, state)


def _wait_started(root: Path, state: dict[str, Any], index: int, timeout_s: float) -> None:
    """Wait for node ``index``'s ``ray start`` to report its runtime started."""
    node = state["nodes"][index]
    log = root / f"{node['name']}.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_bytes()[node.get("log_offset", 0) :].decode(errors="replace")
        if "Ray runtime started" in text or "This command will now block" in text:
            return
        if not _alive(node["pid"]):
            raise SozkitError(
                f"{node['name']} did not start (ray start exited); its log {log} ends with:\n"
                + "\n".join(text.splitlines()[-15:])
            )
        time.sleep(0.3)
    raise SozkitError(f"{node['name']} did not start within {timeout_s:.0f} s; see {log}.")


def cluster_nodes(port: int = DEFAULT_PORT) -> list[dict[str, Any]]:
    """Nodes the cluster's GCS knows: ``node_id``, ``name``, ``alive``, ``resources``."""
    from ray._raylet import GcsClient

    client = GcsClient(address=address(port))
    out = []
    for node_id, info in client.get_all_node_info(timeout=10).items():
        res = dict(info.resources_total)
        names = [k for k in res if k.startswith("node_") and len(k) == 6]
        out.append(
            {
                "node_id": node_id.hex(),
                "name": names[0] if names else "?",
                "alive": info.state == 0,  # GcsNodeInfo.ALIVE
                "resources": res,
            }
        )
    return sorted(out, key=lambda n: (n["name"], not n["alive"]))


def wait_for_nodes(port: int, n_alive: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the GCS reports ``n_alive`` alive nodes; return them all."""
    deadline = time.monotonic() + timeout_s
    nodes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            nodes = cluster_nodes(port)
        except Exception:  # GCS not up yet
            nodes = []
        if sum(n["alive"] for n in nodes) == n_alive:
            return nodes
        time.sleep(0.5)
    raise SozkitError(
        f"the cluster on {address(port)} has {sum(n['alive'] for n in nodes)} alive node(s) "
        f"after {timeout_s:.0f} s, expected {n_alive}: {nodes}"
    )


def up(
    root: Path | None = None,
    *,
    cpus: tuple[int, ...] = (1, 1),
    object_store_mb: tuple[int, ...] | None = None,
    port: int = DEFAULT_PORT,
    hidden: dict[int, tuple[str, ...]] | None = None,
    timeout_s: float = 90.0,
) -> dict[str, Any]:
    """Start a cluster of ``len(cpus)`` nodes (the first is the head); return its state.

    Parameters
    ----------
    root : Path, optional
        State and temp folder (:func:`default_dir`). A cluster already recorded there is refused.
    cpus : tuple of int
        CPUs of each node.
    object_store_mb : tuple of int, optional
        Object store of each node in MiB (default 160 for the head, 120 for the others).
    port : int
        GCS port; the other ports follow it.
    hidden : dict of int to tuple of str, optional
        Existing folders that node ``i`` (``i >= 1``) must not see: it runs in its own mount
        namespace with an empty tmpfs over each (needs Linux and root; for tests of
        :mod:`serving.shared_paths`).
    """
    root = Path(root or default_dir())
    if not cpus or len(cpus) > 8:
        raise SozkitError(f"cpus={cpus} must name 1 to 8 nodes' CPUs.")
    if object_store_mb is None:
        object_store_mb = (160,) + (120,) * (len(cpus) - 1)
    if len(object_store_mb) != len(cpus):
        raise SozkitError(f"object_store_mb={object_store_mb} must give one size per node.")
    if (hidden or {}).get(0):
        raise SozkitError("the head node (0) cannot hide folders: the driver runs beside it.")
    if (root / _STATE).is_file():
        old = _read_state(root)
        if any(n.get("pid") and _alive(n["pid"]) for n in old["nodes"]):
            raise SozkitError(f"a cluster is already running from {root}; run `down` first.")
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    state = {
        "port": port,
        "address": address(port),
        "root": str(root),
        "nodes": [
            {
                "name": node_name(i),
                "cpus": int(c),
                "object_store_mb": int(m),
                "pid": None,
                "hidden": [str(Path(h).resolve()) for h in (hidden or {}).get(i, ())],
            }
            for i, (c, m) in enumerate(zip(cpus, object_store_mb, strict=True))
        ],
    }
    _write_state(root, state)
    try:
        for i in range(len(cpus)):
            _start_node(root, state, i)
            _wait_started(root, state, i, timeout_s)
        wait_for_nodes(port, len(cpus), timeout_s)
    except BaseException:
        down(root)
        raise
    return state


def kill(node: str, root: Path | None = None) -> int:
    """``kill -9`` the raylet of ``node`` (``node_b`` or ``b``); return its pid."""
    root = Path(root or default_dir())
    state = _read_state(root)
    name = node if node.startswith("node_") else f"node_{node}"
    entry = next((n for n in state["nodes"] if n["name"] == name), None)
    if entry is None or entry["name"] == node_name(0):
        raise SozkitError(f"{node!r} is not a worker node of the cluster in {root}.")
    procs = _processes()
    raylets = [
        p
        for p in descendants(entry["pid"])
        if p in procs
        and ("/raylet " in f"{procs[p][1]} " or procs[p][1].split(" ", 1)[0].endswith("/raylet"))
    ]
    if not raylets:
        raise SozkitError(f"{name} has no running raylet (already killed?).")
    for p in raylets:
        os.kill(p, signal.SIGKILL)
    return raylets[0]


def start(node: str, root: Path | None = None, timeout_s: float = 90.0) -> None:
    """Start worker node ``node`` again (after :func:`kill`), same resources and ports."""
    root = Path(root or default_dir())
    state = _read_state(root)
    name = node if node.startswith("node_") else f"node_{node}"
    index = next((i for i, n in enumerate(state["nodes"]) if n["name"] == name), None)
    if index is None or index == 0:
        raise SozkitError(f"{node!r} is not a worker node of the cluster in {root}.")
    old = state["nodes"][index].get("pid")
    if old and _alive(old):
        _stop_tree(old)
    # What the lost raylet left running (its agents, workers) still holds the node's ports.
    marker = f"{root / string.ascii_lowercase[index]}/"
    me = os.getpid()
    _signal_all([p for p, (_, cmd) in _processes().items() if marker in cmd and p != me], 8.0)
    _start_node(root, state, index)
    _wait_started(root, state, index, timeout_s)


def _stop_tree(pid: int, grace_s: float = 8.0) -> None:
    pids = [pid, *descendants(pid)]
    _signal_all(pids, grace_s)


def _signal_all(pids: list[int], grace_s: float) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for p in pids:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def down(root: Path | None = None) -> int:
    """Stop every process of the cluster in ``root``; return how many were signalled.

    Worker nodes first, then the head. Besides the recorded ``ray start`` trees, any process
    of this user whose command line names ``root`` (Ray workers orphaned by a killed raylet
    carry their node's temp dir) is ended too; nothing else is touched.
    """
    root = Path(root or default_dir())
    if not (root / _STATE).is_file():
        return 0
    state = _read_state(root)
    procs = _processes()
    pids: list[int] = []
    for node in reversed(state["nodes"]):
        if node.get("pid"):
            pids += [node["pid"], *descendants(node["pid"])]
    me = os.getpid()
    marker = str(root) + "/"
    pids += [p for p, (_, cmd) in procs.items() if marker in cmd and p != me and p not in pids]
    pids = [p for p in dict.fromkeys(pids) if p != me and _alive(p)]
    _signal_all(pids, grace_s=10.0)
    for node in state["nodes"]:
        node["pid"] = None
    _write_state(root, state)
    return len(pids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.localcluster", description=__doc__)
    p.add_argument("--dir", type=Path, default=None, help="state/temp folder (default_dir)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="GCS port (%(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start the head and the worker nodes")
    u.add_argument("--cpus", default="1,1", help="CPUs per node, head first (%(default)s: 2 nodes)")
    u.add_argument("--object-store-mb", default=None, help="MiB per node, head first")
    u.add_argument(
        "--hide", action="append", default=[], metavar="N:DIR",
        help="node N (1 = node_b) does not see DIR (own mount namespace; tests)",
    )  # fmt: skip
    sub.add_parser("down", help="stop this cluster's processes")
    sub.add_parser("env", help="print the exports a driver needs: eval $(... env)")
    sub.add_parser("status", help="nodes, alive or dead, and their resources")
    for name, help_ in (("kill", "kill -9 a worker node's raylet"), ("start", "restart a node")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("node", help="node name: node_b (or b)")
    args = p.parse_args(argv)
    root = args.dir
    try:
        if args.cmd == "up":
            cpus = tuple(int(c) for c in args.cpus.split(","))
            mb = (
                tuple(int(m) for m in args.object_store_mb.split(","))
                if args.object_store_mb
                else None
            )
            hidden: dict[int, tuple[str, ...]] = {}
            for h in args.hide:
                n, _, d = h.partition(":")
                hidden[int(n)] = (*hidden.get(int(n), ()), d)
            state = up(root, cpus=cpus, object_store_mb=mb, port=args.port, hidden=hidden)
            names = ", ".join(f"{n['name']} ({n['cpus']} CPU)" for n in state["nodes"])
            print(f"cluster up: {names}; RAY_ADDRESS={state['address']}")
        elif args.cmd == "down":
            print(f"stopped {down(root)} process(es)")
        elif args.cmd == "env":
            print(" ".join(f"export {k}={v};" for k, v in driver_env(args.port).items()))
        elif args.cmd == "status":
            state = _read_state(Path(root or default_dir()))
            for n in cluster_nodes(state["port"]):
                cpu = n["resources"].get("CPU", 0)
                status = "alive" if n["alive"] else "dead"
                print(f"{n['name']}  {n['node_id'][:12]}  {status:5s}  CPU {cpu:g}")
        elif args.cmd == "kill":
            print(f"killed raylet pid {kill(args.node, root)}")
        elif args.cmd == "start":
            start(args.node, root)
            print(f"started {args.node}")
    except SozkitError as e:
        print(f"localcluster {args.cmd}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
