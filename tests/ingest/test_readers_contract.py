"""One contract every reader's output meets (after MNE's ``_test_raw_reader``).

Each source (real ds004100 / ds003029 sidecars with short signal files, a folder of EDF files
with a label sheet, a simulated cohort) is scanned and every record is checked the same way,
including opening its signal with :class:`~ingest.signals.SignalReader`.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from ingest.errors import RecordingError
from ingest.recording import Recording
from ingest.signals import FORMATS, open_signal
from ingest.sources import CohortScan, SourceOptions, scan_source
from tests.conftest import REPO, SIDECARS
from tests.ingest.signal_files import build_bids_copy, write_edf

SHEET = REPO / "tests" / "data" / "label-sheets" / "ds003029-example.csv"


def check_reader_output(scan: CohortScan) -> None:
    """Assert the Recording contract on every record of a scan."""
    assert isinstance(scan, CohortScan) and len(scan) > 0
    ids = [r.recording_id for r in scan.recordings]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    for rec in scan.recordings:
        assert isinstance(rec, Recording)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", rec.recording_id)
        assert rec.recording_id.startswith(f"{rec.cohort}__{rec.subject}")
        assert rec.subject == rec.subject.strip() and not rec.subject.startswith("sub-")
        assert len(rec.channels) == len(rec.ch_types) == len(set(rec.channels))
        channels = set(rec.channels)
        assert rec.bad <= channels
        for labels in (rec.soz, rec.resected):
            assert labels is None or labels <= channels
        assert rec.contacts, f"{rec.recording_id} has no usable contact"
        assert rec.sfreq > 0 and rec.n_times > 0 and rec.fmt in FORMATS
        assert rec.line_freq is None or rec.line_freq in (50.0, 60.0)
        onsets = [s.onset_s for s in rec.seizures]
        assert onsets == sorted(onsets)
        for sz in rec.seizures:
            assert 0 <= sz.onset_s < rec.duration_s
            assert sz.offset_s is None or sz.onset_s < sz.offset_s <= rec.duration_s
        assert all(isinstance(w, str) and w for w in rec.warnings)
        assert pickle.loads(pickle.dumps(rec)) == rec  # crosses Beam / Ray workers
        with open_signal(rec) as reader:
            assert reader.n_times == rec.n_times and reader.ch_names == list(rec.channels)
            picks = list(rec.contacts[:4])
            block = reader.read(rec.n_times - 100, rec.n_times + 100, picks)
            assert block.shape == (len(picks), 100) and block.dtype == np.float32
            assert np.isfinite(block).all() and np.abs(block).max() > 0
    for problem in scan.problems:
        assert isinstance(problem, RecordingError) and problem.source and problem.reason
        assert pickle.loads(pickle.dumps(problem)).reason == problem.reason


def _ds004100(tmp_path):
    return scan_source(build_bids_copy(SIDECARS / "ds004100", tmp_path / "ds004100"))


def _ds003029(tmp_path):
    root = build_bids_copy(SIDECARS / "ds003029", tmp_path / "ds003029")
    return scan_source(root, SourceOptions(label_sheet=SHEET))


def _folder(tmp_path):
    root = tmp_path / "CHUL"
    root.mkdir()
    write_edf(
        root / "P1_night.edf", ["LA1", "LA2", "RH1", "C3"], annotations=[(1.0, 0, "sz onset")]
    )
    write_edf(root / "P2_day.edf", ["TT1", "TT2", "AST1"], sfreq=512.0)
    (tmp_path / "sheet.csv").write_text('participant_id,soz_contacts\nP1,"LA1-2"\nP2,TT1\n')
    return scan_source(root, SourceOptions(label_sheet=tmp_path / "sheet.csv", line_freq=50))


@pytest.fixture(scope="module")
def simulated_scan(tmp_path_factory):
    """One tiny simulated cohort for the module (simulating costs ~8 s)."""
    return _simulated(tmp_path_factory.mktemp("sim"))


def _simulated(tmp_path):
    simulate = pytest.importorskip("ingest.simulate")
    from tests.cohorts import smallest_cohort

    return scan_source(simulate.simulate_cohort(tmp_path / "sim", smallest_cohort()))


@pytest.mark.parametrize("make", [_ds004100, _ds003029, _folder, "simulated_scan"])
def test_reader_contract(make, tmp_path, request):
    scan = request.getfixturevalue(make) if isinstance(make, str) else make(tmp_path)
    assert scan.problems == ()
    check_reader_output(scan)
    assert "recordings" in scan.summary()


def test_simulated_cohort_is_labelled_and_ictal(simulated_scan):
    ictal = [r for r in simulated_scan.recordings if r.task == "ictal"]
    assert ictal and all(r.seizures and r.soz for r in ictal)
