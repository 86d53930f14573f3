"""A failure row goes once its recording is fixed and ingested (issue 13): no stale rows."""

from __future__ import annotations

import json

from ingest.config import IngestConfig
from ingest.driver import run_ingest
from ingest.store import ClipStore, failures_frame, make_failure, superseded_failures
from tests.conftest import SIDECARS
from tests.ingest.signal_files import build_bids_copy

CFG = IngestConfig(sfreq=256.0, clip_s=1.0, block_clips=4, l_freq=1.0, num_workers=1)
IN_MEMORY = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def test_superseded_failures_match_the_run_its_folder_and_never_rows_with_an_id():
    base = "/d/sub-1/ieeg/sub-1_task-a_run-1"
    rows = failures_frame(
        [
            make_failure(recording_id=None, source=f"{base}_ieeg.json", stage="scan", reason="x"),
            make_failure(recording_id=None, source=f"{base}_ieeg.edf", stage="scan", reason="x"),
            make_failure(recording_id=None, source="/d/sub-1", stage="source", reason="x"),
            make_failure(
                recording_id=None,
                source="/d/sub-1/ieeg/sub-1_task-a_run-2_ieeg.json",
                stage="scan",
                reason="another run",
            ),  # fmt: skip
            make_failure(
                recording_id="other", source=f"{base}_ieeg.json", stage="plan", reason="x"
            ),
            make_failure(recording_id=None, source="/d/sub-10", stage="source", reason="x"),
        ]
    )
    stale = superseded_failures(rows, [f"{base}_ieeg.edf"])
    assert list(stale) == [True, True, True, False, False, False]
    assert list(superseded_failures(rows, ["/x/y.edf"])) == [False] * 6


def test_a_fixed_sidecar_clears_its_failure_on_the_next_ingest(tmp_path):
    root = build_bids_copy(SIDECARS / "ds004100", tmp_path / "ds", ["HUP190"])
    sidecar = next(root.rglob("*task-ictal*run-01_ieeg.json"))
    good = sidecar.read_text("utf-8")
    meta = json.loads(good)
    sidecar.write_text(json.dumps({**meta, "SamplingFrequency": "abc"}), encoding="utf-8")
    store = tmp_path / "store"
    first = run_ingest([root], store, CFG, pipeline_args=IN_MEMORY)
    assert first.n_ingested == 4 and first.n_failed == 1
    (row,) = ClipStore.open(store).failures().itertuples()
    assert row.source == str(sidecar) and "SamplingFrequency" in row.reason

    sidecar.write_text(good, encoding="utf-8")  # the operator fixes the file and re-runs
    second = run_ingest([root], store, CFG, pipeline_args=IN_MEMORY)
    assert second.n_ingested == 1 and second.n_failed == 0
    after = ClipStore.open(store)
    assert after.failures().empty, after.failures().to_dict("records")
    assert len(after.complete_ids()) == 5
