"""The ``soz`` command.

Each subcommand parses its arguments, builds that stage's frozen config, and makes one library
call. This is the only place that reads the environment (``RAY_ADDRESS``...), configures logging
handlers and shows progress bars.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ingest.errors import SozkitError

logger = logging.getLogger(__name__)

# name -> (help, add_arguments(parser), run(args) -> exit code)
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
_COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> int`` as the subcommand ``soz NAME``."""

    def register(run: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soz",
        description="Seizure-onset-zone localisation in stereo-EEG (sozkit).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_arguments, run) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _load_commands()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except SozkitError as e:
        # A user's mistake (bad path, config, input): one clear line, no traceback.
        print(f"soz {args.command}: {e}", file=sys.stderr)
        return 2


@contextmanager
def ray_session(*, log_to_driver: bool = True) -> Iterator[None]:
    """A Ray for one command: join ``RAY_ADDRESS``'s cluster, or start a local one.

    The local Ray uses every core, no dashboard and no auth token file; it is shut down on exit.
    A Ray already running in this process (tests, notebooks) is used as it is.
    The local one is always new (``address="local"``): a cluster that ``ray start`` left on this
    machine is joined only when ``RAY_ADDRESS`` names it, never by accident.
    """
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address)
        else:
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=log_to_driver,
            )
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _load_commands() -> None:
    # Subcommands live in serving/commands/<name>.py, one module each, registered on import.
    from serving import commands  # noqa: F401
