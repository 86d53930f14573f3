"""Malformed sidecars fail their own recording, never the cohort (issue 13, item 1).

A real BIDS cohort (the ds004100 sub-HUP190 sidecars with short EDF files, cloned into more
subjects) gets one malformed file per class below. ``scan_source`` must list exactly that run in
``problems`` (file, field, value, fix) and read the others; a real ``python -m serving ingest``
subprocess on a cohort holding every class at once must ingest the good runs, record each bad
one in ``failures.parquet`` and print no traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.sources import scan_source
from ingest.store import ClipStore
from tests.conftest import QUICK_INGEST, SIDECARS, run_soz
from tests.ingest.signal_files import build_bids_copy

RUNS = (
    ("ictal", "01"),
    ("ictal", "02"),
    ("ictal", "03"),
    ("interictal", "01"),
    ("interictal", "02"),
)


def run_base(root: Path, subject: str, task: str, run: str) -> Path:
    """Path prefix of one run's files (``..._acq-seeg_run-01``)."""
    return (
        root
        / f"sub-{subject}/ses-presurgery/ieeg"
        / f"sub-{subject}_ses-presurgery_task-{task}_acq-seeg_run-{run}"
    )


def clone_subject(root: Path, src: str, dst: str) -> None:
    """Copy ``sub-<src>`` to ``sub-<dst>``: file names and scans.tsv renamed, contents kept."""
    shutil.copytree(root / f"sub-{src}", root / f"sub-{dst}")
    for path in sorted((root / f"sub-{dst}").rglob(f"*{src}*")):
        new = path.with_name(path.name.replace(f"sub-{src}", f"sub-{dst}"))
        path.rename(new)
        if new.name.endswith("_scans.tsv"):
            new.write_text(new.read_text("utf-8-sig").replace(src, dst), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The malformations: each rewrites one file of one run.


def _edit_json(path: Path, **fields) -> None:
    meta = json.loads(path.read_text("utf-8-sig"))
    meta.update(fields)
    path.write_text(json.dumps(meta), encoding="utf-8")


def _edit_first_onset(path: Path, value: str) -> None:
    lines = path.read_text("utf-8-sig").splitlines()
    cells = lines[1].split("\t")
    cells[0] = value
    lines[1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _drop_column(path: Path, column: str) -> None:
    rows = [line.split("\t") for line in path.read_text("utf-8-sig").splitlines()]
    k = rows[0].index(column)
    path.write_text("\n".join("\t".join(r[:k] + r[k + 1 :]) for r in rows) + "\n", "utf-8")


def _short_row(path: Path) -> None:
    lines = path.read_text("utf-8-sig").splitlines()
    lines[4] = lines[4].split("\t")[0]  # line 5 of the file: the name only
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reencode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text("utf-8-sig").encode(encoding))


@dataclass(frozen=True)
class Malformation:
    name: str
    suffix: str  # the file of the run that is broken
    apply: Callable[[Path], None]
    reason: tuple[str, ...]  # substrings the reason must hold (field, value)
    fix: str  # a substring of the fix


MALFORMATIONS = (
    Malformation(
        "events-decimal-comma",
        "_events.tsv",
        lambda p: _edit_first_onset(p, "1,75"),
        ("line 2, column 'onset'", "'1,75' is not a number"),
        "write 1.75 (a decimal point, not a comma)",
    ),
    Malformation(
        "events-onset-text",
        "_events.tsv",
        lambda p: _edit_first_onset(p, "soon"),
        ("column 'onset'", "'soon' is not a number"),
        "or n/a",
    ),
    Malformation(
        "json-sfreq-text",
        "_ieeg.json",
        lambda p: _edit_json(p, SamplingFrequency="abc"),
        ("SamplingFrequency is 'abc'", "not a number"),
        '"SamplingFrequency": 1024',
    ),
    Malformation(
        "json-sfreq-list",
        "_ieeg.json",
        lambda p: _edit_json(p, SamplingFrequency=[1024]),
        ("SamplingFrequency is [1024]",),
        "plain number in Hz",
    ),
    Malformation(
        "json-sfreq-zero",
        "_ieeg.json",
        lambda p: _edit_json(p, SamplingFrequency=0),
        ("SamplingFrequency is 0", "above 0"),
        "plain number in Hz",
    ),
    Malformation(
        "json-linefreq-unit",
        "_ieeg.json",
        lambda p: _edit_json(p, PowerLineFrequency="60 Hz"),
        ("PowerLineFrequency is '60 Hz'", "not a number"),
        "PowerLineFrequency",
    ),
    Malformation(
        "json-duration-bool",
        "_ieeg.json",
        lambda p: _edit_json(p, RecordingDuration=True),
        ("RecordingDuration is true",),
        "plain number in s",
    ),
    Malformation(
        "json-list",
        "_ieeg.json",
        lambda p: p.write_text('[{"SamplingFrequency": 1024}]', encoding="utf-8"),
        ("the JSON holds a list",),
        "one JSON object",
    ),
    Malformation(
        "json-number",
        "_ieeg.json",
        lambda p: p.write_text("1024", encoding="utf-8"),
        ("the JSON holds a number (1024)",),
        "one JSON object",
    ),
    Malformation(
        "json-invalid",
        "_ieeg.json",
        lambda p: p.write_text('{"SamplingFrequency": 1024,', encoding="utf-8"),
        ("invalid JSON", "line 1"),
        "syntax",
    ),
    Malformation(
        "channels-utf16",
        "_channels.tsv",
        lambda p: _reencode(p, "utf-16"),
        ("UTF-16",),
        "iconv -f UTF-16 -t UTF-8",
    ),
    Malformation(
        "channels-latin1",
        "_channels.tsv",
        lambda p: _reencode(p, "latin-1"),
        ("not UTF-8: byte 0xb5",),  # the micro sign of the units column
        "iconv -f latin1",
    ),
    Malformation(
        "channels-no-type-column",
        "_channels.tsv",
        lambda p: _drop_column(p, "type"),
        ("lacks the column(s) 'type'",),
        "name, type, units, status",
    ),
    Malformation(
        "channels-short-row",
        "_channels.tsv",
        _short_row,
        ("line 5 has no value in column(s) 'type'",),
        "name, type, units, status",
    ),
)


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
    _reencode(root / "participants.tsv", "utf-16")
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
    _edit_json(na_json, PowerLineFrequency="n/a")
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
