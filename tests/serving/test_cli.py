"""The ``soz`` command: every subcommand registered, user mistakes give one clear line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.cli import main
from tests.conftest import SIDECARS

SUBCOMMANDS = (
    "demo", "ingest", "report", "scan", "score", "serve", "simulate", "train", "watch",
)  # fmt: skip


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    missing = [name for name in SUBCOMMANDS if f"    {name} " not in out]
    assert not missing, f"subcommands missing from `soz --help`: {missing}\n{out}"


def test_python_dash_m_serving_is_the_soz_command():
    # what benchmarks run in a child process, without the console script on PATH
    done = subprocess.run(
        [sys.executable, "-m", "serving", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert all(f"    {name} " in done.stdout for name in SUBCOMMANDS), done.stdout


def test_scan_reports_unreadable_recordings_and_labels(capsys):
    # The real ds004100 sidecars without their EDF files: every run is a problem, none is lost.
    assert main(["scan", str(SIDECARS / "ds004100")]) == 0
    out = capsys.readouterr().out
    assert "0 recordings" in out and "unreadable" in out
    assert "the signal file does not exist" in out


def test_user_error_is_one_line_not_a_traceback(tmp_path, capsys):
    code = main(["scan", str(tmp_path / "missing")])
    err = capsys.readouterr()
    assert code == 1
    assert "does not exist" in err.out and "Traceback" not in err.out + err.err


def test_sozkit_errors_exit_2_with_the_fix(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("soz ingest: source") and "does not exist" in last
    assert "Traceback" not in err
