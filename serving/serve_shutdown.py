"""Ray Serve on a quiet terminal: shut down without a ``(raylet) ... will be retried`` line.

``serve.shutdown()`` sends the controller ``graceful_shutdown`` and waits on it; the controller
then kills itself with that task still in flight, and the driver's task manager, seeing a task
of an actor with unlimited task retries fail, publishes ``Task ServeController.graceful_shutdown
failed ... so the task will be retried`` on the job's error channel, which Ray prints to the
terminal whatever ``log_to_driver`` says. Here the flag is set without waiting
(``graceful_shutdown(wait=False)`` returns at once), the controller is waited for by name until
it is gone (it deletes the applications and proxies first), and only then does
``serve.shutdown()`` forget the client: no task is in flight when the actor dies.
:func:`quiet_serve_logger` keeps Serve's own driver-side logger to the ``-v`` rule.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


def shutdown_serve(timeout_s: float = 30.0, poll_s: float = 0.1) -> None:
    """Delete every Serve application and Serve's actors; wait until the controller is gone.

    Parameters
    ----------
    timeout_s : float
        How long the controller may take; past it, ``serve.shutdown()`` is called as it is
        (which waits on its own and may print the retry line).
    poll_s : float
        How often the controller's name is looked up.

    Nothing happens when no Serve runs on the connected Ray (or no Ray is connected).
    """
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    if not ray.is_initialized():
        return

    def controller():
        try:
            return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:  # no such live actor
            return None

    handle = controller()
    if handle is None:
        serve.shutdown()  # forgets a client of a controller already gone
        return
    try:
        ray.get(handle.graceful_shutdown.remote(False), timeout=timeout_s)
    except ray.exceptions.RayActorError:
        pass  # it was already exiting
    deadline = time.monotonic() + timeout_s
    while controller() is not None:
        if time.monotonic() > deadline:
            logger.warning("Serve's controller still runs after %.0f s; shutting down", timeout_s)
            break
        time.sleep(poll_s)
    serve.shutdown()


def quiet_serve_logger() -> None:
    """Give Serve's driver-side logger the engines' level of the running ``soz`` command.

    Importing ``ray.serve`` gives the ``ray.serve`` logger a handler of its own at INFO, not
    propagated, so ``Started Serve``, ``Application ... is ready`` and, at shutdown, ``The
    cached controller has died`` reach the terminal past :func:`serving.cli.configure_logging`.
    Here it follows the ``-v`` rule: ERROR without ``-v``, WARNING with one, everything with two.
    """
    from ray import serve  # noqa: F401  (configures the logger on import)

    from serving.cli import verbosity

    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbosity(), logging.DEBUG)
    logging.getLogger("ray.serve").setLevel(level)
