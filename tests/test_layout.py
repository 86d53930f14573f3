"""Architecture rules of STYLE.md, checked on the source: one direction of dependency, pure cores."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["ingest", "models", "trainer", "serving"]  # each may import only those to its left
# Pure modules: array functions only, imported by Beam DoFns, Ray workers and Serve alike.
PURE = [
    "ingest.recording",
    "ingest.preprocessing",
    "ingest.clipping",
    "models.spectral",
    "models.graphs",
    "models.spikes",
    "models.features",
    "models.baseline",
    "models.svm",
    "trainer.losses",
    "trainer.metrics",
    "trainer.splits",
    "trainer.loop",
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
    assert not offenders, f"modules importing a later stage (dependency must run {LAYERS}): {offenders}"


def test_only_ray_train_module_imports_ray_train():
    offenders = [
        str(path.relative_to(REPO))
        for path in REPO.glob("*/**/*.py")
        if ".venv" not in path.parts
        and path.name != "ray_train.py"
        and any(s in path.read_text(encoding="utf-8") for s in ("import ray.train", "from ray.train", "from ray import train"))
        and path.parts[len(REPO.parts)] in LAYERS
    ]
    assert not offenders, f"only trainer/ray_train.py may import ray.train: {offenders}"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_engine(module):
    if not (REPO / (module.replace(".", "/") + ".py")).exists():
        pytest.skip(f"{module} not present")
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('apache_beam', 'ray') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"{module} pulls in engines: {proc.stdout.strip()} {proc.stderr[-500:]}"
