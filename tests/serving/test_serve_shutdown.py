"""A quiet terminal around Ray Serve: starting and shutting Serve down (as ``soz demo`` and
``soz serve`` do) prints nothing of Ray's own, in a real process with a real local Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.serving.conftest import free_port

#: A driver as the demo's: quiet logging, Serve started, one request, Serve shut down, Ray shut
#: down a moment later (the error channel has time to deliver a late line).
DRIVER = textwrap.dedent(
    """
    import sys, time
    import httpx, ray
    from ray import serve
    from serving.cli import configure_logging
    from serving.serve_shutdown import quiet_serve_logger, shutdown_serve

    configure_logging(0)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    quiet_serve_logger()

    @serve.deployment
    class Echo:
        async def __call__(self, request):
            return "ok"

    port = int(sys.argv[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Echo.bind(), name="echo", route_prefix="/")
    print("answer", httpx.get(f"http://127.0.0.1:{port}/").text, flush=True)
    shutdown_serve()
    serve_gone = not ray.util.list_named_actors(all_namespaces=True)
    time.sleep(2.0)
    print("serve gone", serve_gone, flush=True)
    shutdown_serve()  # twice: nothing left to do, nothing said
    ray.shutdown()
    """
)


def test_serve_shutdown_leaves_the_terminal_quiet():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(free_port())],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Serve answered, and its actors (controller, proxy, replica) are gone after the shutdown.
    assert proc.stdout.splitlines() == ["answer ok", "serve gone True"], proc.stdout
    # Not the `(raylet) Task ServeController.graceful_shutdown failed ... will be retried` line
    # of a plain serve.shutdown(), nor Serve's own INFO lines ("Started Serve", "is ready").
    assert proc.stderr == "", proc.stderr
