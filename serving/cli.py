"""The ``soz`` command.

Each subcommand parses its arguments, builds that stage's frozen config, and makes one library
call. This is the only place that reads the environment (``RAY_ADDRESS``...), configures logging
handlers and shows progress bars.

What the terminal shows (:func:`configure_logging`): the command's own progress, results and
warnings. The engines' logs (Beam, Ray, Ray Train / Serve, and the processes they start) appear
only with ``-v`` (their warnings and info) or ``-vv`` (debug); without it only their errors do.
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


#: Top-level packages whose log records are engine logs (shown with -v only).
ENGINE_PACKAGES = (
    "apache_beam",
    "ray",
    "grpc",
    "absl",
    "urllib3",
    "filelock",
    "fsspec",
    "numcodecs",
)
_verbosity = 0


def _engine_dirs() -> tuple[str, ...]:
    """Install folders of the engine packages (a record logged there is an engine record)."""
    import importlib.util

    dirs = []
    for name in ENGINE_PACKAGES:
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(os.path.realpath(loc), ""))
    return tuple(dirs)


class EngineFilter(logging.Filter):
    """Drop engine records below ``min_level``.

    A record is an engine's when its logger is under one of :data:`ENGINE_PACKAGES`, or when
    it was logged from an engine's source file through another logger (Beam logs its
    import-time warnings about optional Google Cloud clients on the root logger).
    """

    def __init__(self, min_level: int) -> None:
        super().__init__()
        self.min_level = min_level
        self._dirs = _engine_dirs()

    def is_engine(self, record: logging.LogRecord) -> bool:
        root = record.name.split(".", 1)[0]
        if root in ENGINE_PACKAGES:
            return True
        path = os.path.realpath(record.pathname) if record.pathname else ""
        return any(path.startswith(d) for d in self._dirs)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.min_level or not self.is_engine(record)


def configure_logging(verbose: int = 0) -> None:
    """Set up the terminal's log output for a ``soz`` command run with ``-v`` ``verbose`` times.

    ====  =====================  ===========================================
    -v    sozkit's own loggers   engines (Beam, Ray and their processes)
    ====  =====================  ===========================================
    0     WARNING                ERROR only; Ray actors' output not forwarded
    1     INFO                   WARNING; Ray workers' output forwarded
    2     DEBUG                  everything
    ====  =====================  ===========================================
    """
    global _verbosity
    _verbosity = int(verbose)
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    engine_level = logging.NOTSET if verbose > 1 else logging.WARNING if verbose else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(EngineFilter(engine_level))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in ENGINE_PACKAGES:
        logging.getLogger(name).setLevel(max(engine_level, level))
    # Python warnings (DeprecationWarning...) raised in engine code follow the same rule.
    logging.captureWarnings(True)


def verbosity() -> int:
    """How many ``-v`` the running command was given (0 outside the CLI)."""
    return _verbosity


def _argv_verbosity(argv: Sequence[str]) -> int:
    """``-v`` count before the subcommand, read ahead of parsing (imports may log)."""
    n = 0
    for a in argv:
        if not a.startswith("-"):
            break
        if a == "--verbose":
            n += 1
        elif a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"}:
            n += len(a) - 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before any command module is imported: importing an engine can log already.
    configure_logging(_argv_verbosity(argv))
    _load_commands()
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
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
def ray_session(*, log_to_driver: bool | None = None, shared: Sequence[str] = ()) -> Iterator[None]:
    """A Ray for one command: join ``RAY_ADDRESS``'s cluster, or start a local one.

    ``shared``: folders every node's workers read or write (store, run directory); on a
    cluster of more than one node, each node is checked to see them first
    (:func:`serving.shared_paths.check_shared_paths`), so a path missing on one node is one
    clear error before any work starts rather than a failure deep inside a job.

    The local Ray uses every core, no dashboard and no auth token file; it is shut down on exit.
    The output of Ray's worker and actor processes (Ray Train's controller and workers, Serve's
    replicas) is forwarded to this terminal only with ``-v`` (``log_to_driver`` overrides that),
    and the driver's ``ray`` logger follows :func:`configure_logging`.
    A Ray already running in this process (tests, notebooks) is used as it is.
    The local one is always new (``address="local"``): a cluster that ``ray start`` left on this
    machine is joined only when ``RAY_ADDRESS`` names it, never by accident.
    """
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if log_to_driver is None:
        log_to_driver = _verbosity > 0
    ray_level = logging.DEBUG if _verbosity > 1 else logging.INFO if _verbosity else logging.ERROR
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=log_to_driver, logging_level=ray_level)
        else:
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=log_to_driver,
                logging_level=ray_level,
            )
    try:
        if shared and sum(bool(n.get("Alive")) for n in ray.nodes()) > 1:
            from serving.shared_paths import check_shared_paths

            check_shared_paths(shared)
        yield
    finally:
        if started:
            ray.shutdown()


def _load_commands() -> None:
    # Subcommands live in serving/commands/<name>.py, one module each, registered on import.
    from serving import commands  # noqa: F401
