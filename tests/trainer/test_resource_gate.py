"""The wait reporter of `soz train` on the real local 2-CPU Ray: a wait shorter than its grace
period (CPUs handed back a moment later, as between two folds) says nothing; a real shortage is
reported with what is needed and free, and Ctrl-C (stop) ends the wait."""

from __future__ import annotations

import logging
import threading
import time

from trainer.ray_train import _ResourceGate


def _hold_all_cpus(ray):
    @ray.remote(num_cpus=1)
    class Hold:
        def ready(self):
            return True

    n = int(ray.cluster_resources().get("CPU", 0))
    holders = [Hold.remote() for _ in range(n)]
    ray.get([h.ready.remote() for h in holders])
    return holders


def _wait_in_thread(gate, label):
    out: dict = {}

    def run():
        try:
            gate.wait(label)
            out["done"] = True
        except KeyboardInterrupt as e:
            out["stopped"] = str(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _waits_logged(caplog):
    return [r.getMessage() for r in caplog.records if "waiting for resources" in r.getMessage()]


def test_a_short_wait_is_not_reported(ray_local, caplog):
    caplog.set_level(logging.WARNING, logger="trainer.ray_train")
    holders = _hold_all_cpus(ray_local)
    gate = _ResourceGate({"CPU": 1}, poll_s=0.1, grace_s=20.0)
    t, out = _wait_in_thread(gate, "short")
    time.sleep(1.0)
    assert t.is_alive(), "the gate let work start while every CPU was held"
    for h in holders:
        ray_local.kill(h)  # the CPUs come back well inside the grace period
    t.join(timeout=60)
    assert out == {"done": True}
    assert _waits_logged(caplog) == []


def test_a_real_shortage_is_reported_and_stop_ends_it(ray_local, caplog):
    caplog.set_level(logging.WARNING, logger="trainer.ray_train")
    holders = _hold_all_cpus(ray_local)
    try:
        gate = _ResourceGate({"CPU": 1}, poll_s=0.1, grace_s=1.0, report_s=60.0)
        t0 = time.monotonic()
        t, out = _wait_in_thread(gate, "long")
        while not _waits_logged(caplog) and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        (line,) = _waits_logged(caplog)  # once: report_s has not passed again
        assert time.monotonic() - t0 >= 1.0, "reported before the grace period"
        assert "long needs CPU 1" in line and "CPU 0 free of CPU 2" in line, line
        gate.stop()
        t.join(timeout=30)
        assert "stopped while waiting" in out.get("stopped", ""), out
    finally:
        for h in holders:
            ray_local.kill(h)
