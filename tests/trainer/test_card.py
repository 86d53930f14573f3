"""The training card holds the config, folds, seeds, versions and the git commit, as JSON."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from trainer.card import PACKAGES, git_commit, read_card, training_card, write_card
from trainer.splits import Fold, patient_folds

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class _Cfg:
    model: str = "sozformer"
    lr: float = 1e-3
    store: Path = Path("/data/store.zarr")
    layers: tuple[int, ...] = (2, 2)
    gamma: np.float64 = np.float64(0.0)


def _folds() -> list[Fold]:
    return patient_folds([f"sim/sub{i:02d}" for i in range(10)], n_folds=2, seed=4)


def test_card_contents_and_roundtrip(tmp_path):
    folds = _folds()
    card = training_card(
        config=_Cfg(), folds=folds, seeds={"split": 4, "torch": np.int64(7)}, extra={"gpus": 0}
    )
    assert card["config"] == {
        "model": "sozformer",
        "lr": 1e-3,
        "store": "/data/store.zarr",
        "layers": [2, 2],
        "gamma": 0.0,
    }
    assert card["seeds"] == {"split": 4, "torch": 7}
    assert card["n_folds"] == 2 and card["n_patients"] == 10
    assert card["folds"][1]["test"] == list(folds[1].test)
    assert set(card["versions"]) == set(PACKAGES)
    for name in ("torch", "numpy", "scikit-learn", "ray", "apache-beam", "zarr", "mne"):
        assert re.match(r"\d+\.\d+", card["versions"][name]), name
    assert card["extra"] == {"gpus": 0}
    path = write_card(card, tmp_path / "run" / "training_card.json")
    raw = json.loads(path.read_text())
    assert raw["git"] == card["git"]
    back = read_card(path)
    assert back["folds"] == folds
    assert not list(path.parent.glob("*.tmp"))


def _head() -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_git_commit_of_the_checkout():
    before = _head()
    if before is None:
        pytest.skip("the tests do not run from a git checkout")
    info = git_commit()
    after = _head()
    # HEAD before or after: someone may commit in between
    assert info["commit"] in {before, after}
    assert re.fullmatch(r"[0-9a-f]{40}", info["commit"])
    assert isinstance(info["dirty"], bool)
    assert training_card(config={}, folds=_folds(), seeds={})["git"]["commit"] in {before, _head()}


def test_not_a_checkout_gives_none(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}
    # a folder inside a checkout is not the sozkit source root: no foreign commit recorded
    assert git_commit(REPO / "trainer")["commit"] is None


def test_card_rejects_what_it_cannot_record(tmp_path):
    with pytest.raises(TypeError, match="cannot record"):
        training_card(config={"f": object()}, folds=_folds(), seeds={})
    with pytest.raises(TypeError, match="Fold objects"):
        training_card(config={}, folds=[f.to_dict() for f in _folds()], seeds={})
    with pytest.raises(ValueError, match="integers"):
        training_card(config={}, folds=_folds(), seeds={"torch": 1.5})
    bad = tmp_path / "card.json"
    bad.write_text(json.dumps({"card_version": 99, "folds": []}))
    with pytest.raises(ValueError, match="version 99"):
        read_card(bad)
