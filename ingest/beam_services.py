"""Beam's portable runner on one machine: a job service and an external worker pool.

The same Fn API path Flink, Spark and Dataflow run: the driver submits the pipeline to a job
service (``apache_beam.runners.portability.local_job_service_main``), which runs it on SDK
workers it asks a worker pool (``apache_beam.runners.worker.worker_pool_main``) to start. All
three are separate processes: DoFns and elements are pickled across them, and the workers do
not share the driver's working directory. :func:`portable_services` starts both services on
free loopback ports and stops them (and the workers the pool started) on exit::

    with portable_services(log_dir) as services:
        run_ingest(sources, store, cfg, pipeline_args=services.pipeline_args())

or, for ``soz ingest --beam-args`` by hand, ``python -m ingest.beam_services LOG_DIR`` prints
the options to pass and serves until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import SozkitError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PortableServices:
    """A running job service and worker pool (see :func:`portable_services`)."""

    job_port: int
    worker_port: int
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def pipeline_args(self) -> list[str]:
        """Beam options that run a pipeline on these services.

        Python's job service runs each job on ONE SDK worker process (its FnApiRunner ignores
        ``--direct_num_workers`` for a submitted job; measured: the pool starts one worker with
        it set to 2), so this is a test of the distributed path, not a way to scale.
        """
        return [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{self.worker_port}",
        ]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop both services and every worker they started (their process groups)."""
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # workers the pool started, and any straggler
            proc.wait()
        self.procs.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SozkitError(
                f"Beam service {proc.args[2]} exited ({proc.returncode}) before listening on "
                f"port {port}; its log {log} ends: {log.read_text()[-2000:]}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SozkitError(f"Beam service {proc.args[2]} not listening on {port} after {timeout_s} s.")


@contextlib.contextmanager
def portable_services(
    log_dir: str | os.PathLike, timeout_s: float = 60.0
) -> Iterator[PortableServices]:
    """Start a Beam job service and an external worker pool; stop both on exit.

    Both run this interpreter in their own process group, with its ``bin`` first on ``PATH``
    (the pool starts each SDK worker as ``python -c ...``) and this process's ``PYTHONPATH``;
    their logs go to ``log_dir/job_service.log`` and ``log_dir/worker_pool.log``.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    services = PortableServices(free_port(), free_port(), log_dir)
    commands = {
        "job_service": (
            "apache_beam.runners.portability.local_job_service_main",
            ["--port", str(services.job_port)],
            services.job_port,
        ),
        "worker_pool": (
            "apache_beam.runners.worker.worker_pool_main",
            ["--service_port", str(services.worker_port)],
            services.worker_port,
        ),
    }
    try:
        for name, (module, args, port) in commands.items():
            log = log_dir / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", module, *args],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            services.procs.append(proc)
            _wait_listening(port, proc, log, timeout_s)
        yield services
    finally:
        services.stop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    log_dir = argv[0] if argv else "beam-services"
    # SIGTERM (and SIGINT, even where the shell started this in the background with it
    # ignored) end the wait, so the services are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with portable_services(log_dir) as services:
        print(f"--beam-args '{' '.join(services.pipeline_args())}'", flush=True)
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            signal.pause()


if __name__ == "__main__":
    main()
