"""Architecture rules of STYLE.md, checked on the source: one direction of dependency, pure cores."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["ingest", "models", "trainer", "serving"]  # each may import only those to its left
# Pure modules: array functions and plain PyTorch, imported by Beam DoFns, Ray workers and Serve
# alike; none may pull in an engine.
PURE = [
    "ingest.recording",
    "ingest.fileio",
    "ingest.sidecars",
    "ingest.edf_header",
    "ingest.edf_records",
    "ingest.sim_config",
    "ingest.sim_truth",
    "ingest.preprocessing",
    "ingest.clipping",
    "ingest.stream",
    "ingest.store",
    "ingest.landing",
    "models.spectral",
    "models.graphs",
    "models.sozformer",
    "models.dcgru",
    "models.registry",
    "models.spikes",
    "models.features",
    "models.baseline",
    "models.svm",
    "models.attribution",
    "trainer.losses",
    "trainer.metrics",
    "trainer.splits",
    "trainer.plots",
    "trainer.card",
    "trainer.summary",
    "trainer.loop",
    "trainer.fold_data",
    "trainer.datasets",
    "trainer.checkpoint",
    "serving.scoring",
    "serving.journal",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_imports(layer):
    forbidden = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & forbidden)
        for path in (REPO / layer).rglob("*.py")
        if _imports(path) & forbidden
    }
    assert not offenders, (
        f"modules importing a later stage (dependency must run {LAYERS}): {offenders}"
    )


def test_only_ray_train_module_imports_ray_train():
    offenders = [
        str(path.relative_to(REPO))
        for path in REPO.glob("*/**/*.py")
        if ".venv" not in path.parts
        and path.name != "ray_train.py"
        and any(
            s in path.read_text(encoding="utf-8")
            for s in ("import ray.train", "from ray.train", "from ray import train")
        )
        and path.parts[len(REPO.parts)] in LAYERS
    ]
    assert not offenders, f"only trainer/ray_train.py may import ray.train: {offenders}"


def test_pure_modules_import_no_engine():
    # One fresh interpreter; modules imported one by one so the first offender is named.
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}:\n"
        "    importlib.import_module(name)\n"
        "    bad = [m for m in ('apache_beam', 'ray') if m in sys.modules]\n"
        "    if bad:\n"
        "        sys.exit(f'{name} pulls in {bad}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
