"""Check up front that every node of a Ray cluster sees the paths a job shares (store, run dir).

On one machine every Ray worker sees the driver's files; on a cluster a local path is only
shared if it lies on storage mounted on every node (NFS, a parallel file system...). A job
started on a path one node lacks fails late and obscurely there (a worker's ``FileNotFoundError``
in the middle of a fold, a result file written to a node's own disk and lost).
:func:`check_shared_paths` runs one tiny task pinned to each alive node (node-affinity
scheduling, no CPU reserved) that looks for a marker the driver has just written in each path
(a fresh file, so a stale copy of the folder on a node does not pass); a path the driver cannot
write (a read-only store) is compared by its listing instead. URLs (``s3://``, ``gs://``...) are
shared by construction and not checked.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import SozkitError

logger = logging.getLogger(__name__)

_MARKER = ".sozkit-shared-check-"
#: Top-level names compared for a path the driver cannot write into.
_LISTING_MAX = 200


def _listing(path: str) -> list[str]:
    return sorted(os.listdir(path))[:_LISTING_MAX]


def _probe(
    checks: list[tuple[str, tuple[str, str] | None, list[str] | None]],
) -> list[tuple[str, str]]:
    """On one node: ``(path, problem)`` for every check that fails there."""
    problems = []
    for path, marker, listing in checks:
        if not os.path.isdir(path):
            problems.append((path, "does not exist"))
        elif marker is not None:
            token_file = os.path.join(path, marker[0])
            try:
                with open(token_file) as f:
                    ok = f.read() == marker[1]
            except OSError:
                ok = False
            if not ok:
                problems.append((path, "exists but is another folder (no file the driver wrote)"))
        elif listing is not None and _listing(path) != listing:
            problems.append((path, "exists but holds other files than the driver sees"))
    return problems


def _local_paths(paths: Sequence[str]) -> list[str]:
    out = []
    for p in paths:
        p = str(p)
        if "://" in p and not p.startswith("file://"):
            continue
        p = p.removeprefix("file://")
        out.append(str(Path(p).resolve()))
    return list(dict.fromkeys(out))


def check_shared_paths(paths: Sequence[str], *, timeout_s: float = 120.0) -> int:
    """Raise :class:`SozkitError` unless every alive Ray node sees each of ``paths``.

    Parameters
    ----------
    paths : sequence of str
        Local folders (or URLs, skipped) the job's workers read or write. Each must exist on
        the driver.
    timeout_s : float
        How long to wait for the probes (one per node).

    Returns
    -------
    int
        The number of nodes checked.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    local = _local_paths(paths)
    if not local:
        return 0
    missing = [p for p in local if not os.path.isdir(p)]
    if missing:
        raise SozkitError(f"{missing[0]} is not a folder on this machine; check the path.")
    token = secrets.token_hex(8)
    checks, written = [], []
    for p in local:
        name = f"{_MARKER}{token}"
        try:
            Path(p, name).write_text(token)
        except OSError:
            checks.append((p, None, _listing(p)))
        else:
            written.append(Path(p, name))
            checks.append((p, (name, token), None))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        refs = {
            n["NodeID"]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(checks)
            for n in nodes
        }
        try:
            results = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s), strict=True))
        except ray.exceptions.GetTimeoutError as e:
            raise SozkitError(
                f"checking that the {len(nodes)} Ray nodes see {local} took more than "
                f"{timeout_s:.0f} s; is every node healthy (`ray status`)?"
            ) from e
    finally:
        for f in written:
            f.unlink(missing_ok=True)
    for node in nodes:
        problems = results[node["NodeID"]]
        if problems:
            path, what = problems[0]
            names = [k for k in node.get("Resources", {}) if k.startswith("node_")]
            label = f"{node['NodeID'][:12]} ({node.get('NodeManagerAddress')}"
            label += f", {names[0]})" if names else ")"
            raise SozkitError(
                f"Ray node {label} cannot see {path}: it {what}. Paths of the store and the "
                "run directory must be on storage every node mounts at the same place (NFS, a "
                "shared file system) or be object-storage URLs (s3://, gs://...)."
            )
    logger.info("the %d Ray nodes see %s", len(nodes), local)
    return len(nodes)
