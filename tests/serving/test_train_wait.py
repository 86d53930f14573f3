"""`soz train` on a cluster whose CPUs another job holds: it says what it waits for, and Ctrl-C
stops it cleanly. A real local Ray (1 CPU, held by an actor) in a helper process; `soz train`
joins it through RAY_ADDRESS; the waiting line is read from its output, then SIGINT."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from tests.trainer.conftest import TINY_HPARAMS, build_store

#: A local Ray with one CPU, held by an actor until stdin closes (then shut down).
HOLDER = """
import sys
import ray

ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)


@ray.remote(num_cpus=1)
class Hold:
    def ready(self):
        return True


hold = Hold.remote()
ray.get(hold.ready.remote())
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _lines(stream) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue, text: str, timeout: float) -> tuple[str | None, list[str]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if text in line:
            return line, seen
    return None, seen


def test_train_says_what_it_waits_for_and_stops_on_ctrl_c(tmp_path):
    store = build_store(tmp_path / "store.zarr", n_ictal_clips=8)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    soz = None
    try:
        address = holder.stdout.readline().strip()
        assert address, "the helper Ray did not start"
        soz = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving",
                "train",
                str(store),
                "--model",
                "sozformer",
                "--out",
                str(tmp_path / "run"),
                "--folds",
                "2",
                "--epochs",
                "1",
                "--seqs-per-recording",
                "2",
                "--n-bands",
                "8",
                "--hparams",
                json.dumps({"sozformer": TINY_HPARAMS["sozformer"]}),
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "RAY_ADDRESS": address},
            start_new_session=True,  # its own process group: nothing of it may outlive it
        )
        out = _lines(soz.stdout)
        line, seen = _wait_for(out, "waiting for resources", timeout=300)
        assert line is not None, "".join(seen)
        # What it waits for, and what the cluster has: one CPU, none of it free.
        assert "needs CPU 1" in line and "CPU 0 free of CPU 1" in line, line
        soz.send_signal(signal.SIGINT)
        assert soz.wait(timeout=120) == 130
        _, rest = _wait_for(out, "\0", timeout=10)  # the rest of its output, up to EOF
        assert any("soz train: interrupted" in r for r in rest), "".join(rest)
        assert not any("Traceback" in r for r in seen + rest), "".join(seen + rest)
        try:
            os.killpg(soz.pid, 0)
            survivors = True
        except ProcessLookupError:
            survivors = False
        assert not survivors, "processes of soz train outlived it"
    finally:
        if soz is not None and soz.poll() is None:
            os.killpg(soz.pid, signal.SIGKILL)
        holder.stdin.close()
        holder.wait(timeout=60)
