"""Malformed sidecars fail their own recording, never the cohort (issue 13, item 1).

A real BIDS cohort (the ds004100 sub-HUP190 sidecars with short EDF files, cloned into more
subjects) gets one malformed file per class below. ``scan_source`` must list exactly that run in
``problems`` (file, field, value, fix) and read the others; a real ``python -m serving ingest``
subprocess on a cohort holding every class at once must ingest the good runs, record each bad
one in ``failures.parquet`` and print no traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.sources import scan_source
from ingest.store import ClipStore
from tests.adversarial.cohorts import (
    MALFORMATIONS,
    RUNS,
    Malformation,
    clone_subject,
    edit_json,
    reencode,
    run_base,
)
from tests.conftest import QUICK_INGEST, SIDECARS, run_soz
from tests.ingest.signal_files import build_bids_copy


@pytest.fixture(scope="module")
def hup190(tmp_path_factory) -> Path:
    """ds004100 sub-HUP190: 5 runs of 162 channels, 4-s EDF files at 1024 Hz."""
    return build_bids_copy(SIDECARS / "ds004100", tmp_path_factory.mktemp("m") / "ds", ["HUP190"])


def _check_problem(problem, path: Path, m: Malformation) -> None:
    assert problem.source == str(path), (problem.source, path)
    for part in m.reason:
        assert part in problem.reason, (m.name, problem.reason)
    assert m.fix in problem.fix, (m.name, problem.fix)


@pytest.mark.parametrize("m", MALFORMATIONS, ids=lambda m: m.name)
def test_one_malformed_file_fails_only_its_run(hup190, tmp_path, m):
    root = tmp_path / "ds"
    shutil.copytree(hup190, root)
    broken = Path(f"{run_base(root, 'HUP190', 'ictal', '01')}{m.suffix}")
    m.apply(broken)
    scan = scan_source(root)
    assert len(scan.problems) == 1, [str(p) for p in scan.problems]
    _check_problem(scan.problems[0], broken, m)
    assert len(scan.recordings) == 4  # the other runs of the subject are read
    assert "ictal__seeg__01" not in {
        r.recording_id.split("presurgery__")[1] for r in scan.recordings
    }


def test_unreadable_participants_tsv_is_a_warning_not_a_failure(hup190, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(hup190, root)
    reencode(root / "participants.tsv", "utf-16")
    scan = scan_source(root)
    assert scan.problems == () and len(scan.recordings) == 5
    assert all(any("participants.tsv unreadable" in w for w in r.warnings) for r in scan.recordings)


def test_ingest_subprocess_on_a_cohort_with_every_malformation(hup190, tmp_path):
    """One real ``soz ingest`` over 20 runs, 14 of them broken, one class each."""
    root = tmp_path / "ds"
    shutil.copytree(hup190, root)
    for k in (1, 2, 3):
        clone_subject(root, "HUP190", f"HUP90{k}")
    subjects = ["HUP190", "HUP901", "HUP902", "HUP903"]
    slots = [(s, task, run) for s in subjects for task, run in RUNS]
    broken = {}
    for m, (subject, task, run) in zip(MALFORMATIONS, slots, strict=False):
        path = Path(f"{run_base(root, subject, task, run)}{m.suffix}")
        m.apply(path)
        broken[str(path)] = m
    # PowerLineFrequency "n/a" is valid BIDS (unknown): a warning at scan, and with no
    # --line-freq a failure of that run when it is planned, not a crash
    na_subject, na_task, na_run = slots[len(MALFORMATIONS)]
    na_json = Path(f"{run_base(root, na_subject, na_task, na_run)}_ieeg.json")
    edit_json(na_json, PowerLineFrequency="n/a")
    good = slots[len(MALFORMATIONS) + 1 :]
    assert len(good) == 5
    store = tmp_path / "store"
    proc = run_soz("ingest", root, "--out", store, *QUICK_INGEST)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])  # 1: failures
    assert "5 recordings ingested" in proc.stdout, proc.stdout
    assert f"{len(MALFORMATIONS) + 1} failed" in proc.stdout, proc.stdout
    clips = ClipStore.open(str(store))
    done = clips.complete_ids()
    assert done == {f"ds__{s}__presurgery__{task}__seeg__{run}" for s, task, run in good}, sorted(
        done
    )
    failures = clips.failures()
    na_id = f"ds__{na_subject}__presurgery__{na_task}__seeg__{na_run}"
    (na,) = failures[failures["recording_id"] == na_id].itertuples()
    assert "power-line frequency is unknown" in na.reason and "--line-freq" in na.fix
    failures = failures[failures["recording_id"] != na_id]
    assert set(failures["source"]) == set(broken), sorted(failures["source"])
    for row in failures.itertuples():
        m = broken[row.source]
        for part in m.reason:
            assert part in row.reason, (m.name, row.reason)
        assert m.fix in row.fix, (m.name, row.fix)
        assert f"FAILED {row.source} [scan]" in proc.stdout
