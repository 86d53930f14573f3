"""The ``soz`` command.

Each subcommand parses its arguments, builds that stage's frozen config, and makes one library
call. This is the only place that reads the environment (``RAY_ADDRESS``...), configures logging
handlers and shows progress bars.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ingest.errors import ConfigError, SozkitError

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
        # A user's mistake (bad path, config value, input; ConfigError included): one clear
        # line with its fix, no traceback, exit 2.
        print(f"soz {args.command}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def default(config: type, name: str) -> Any:
    """The default of field ``name`` of a config dataclass: CLI defaults come from the configs."""
    f = {f.name: f for f in dataclasses.fields(config)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{config.__name__}.{name} has no default")


def json_arg(text: str | None, option: str) -> dict[str, Any]:
    """A JSON-object option (``--hparams '{...}'``); a malformed one is a :class:`ConfigError`."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(
            f"{option} {text!r} is not valid JSON ({e}); quote it: '{{\"k\": 1}}'."
        ) from e
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object ({{...}}), got {type(value).__name__}.")
    return value


@contextmanager
def progress_bar(
    unit: str, desc: str, *, enabled: bool = True
) -> Iterator[Callable[[int, int], None] | None]:
    """A tqdm bar driven by ``progress(done, total)``; yields ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, desc=desc)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


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
