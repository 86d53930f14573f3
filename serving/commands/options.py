"""Options the ``soz`` subcommands share, and options read from a config dataclass.

An option tied to a config field (:func:`config_option`) takes the field's name as its ``dest``
and the field's default (:func:`serving.cli.default`), so :func:`config_from_args` builds the
config from the parsed arguments without a line per field.
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import partial
from typing import Any

from serving.cli import default

#: Help of ``--line-freq`` where a recording states no line frequency.
LINE_FREQ_HELP = "line frequency for files that state none"


def config_option(
    p: argparse.ArgumentParser, config: type, flag: str, name: str, help: str, **kw: Any
) -> None:
    """``flag`` for field ``name`` of ``config``: dest ``name``, its default, its default's type."""
    value = default(config, name)
    if "action" not in kw and "type" not in kw and type(value) in (int, float, str):
        kw["type"] = type(value)
    if "action" not in kw and "choices" not in kw:
        kw.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())  # as without dest
    p.add_argument(flag, dest=name, default=value, help=help, **kw)


def comma_list(text: str) -> tuple[str, ...]:
    """A comma-separated option's names: ``"a, b"`` -> ``("a", "b")``; ``"none"`` or ``""``
    -> ``()``."""
    items = tuple(a.strip() for a in text.split(",") if a.strip())
    return () if items == ("none",) else items


def config_from_args(config: type, args: argparse.Namespace, **given: Any) -> Any:
    """``config(...)`` from every parsed argument whose dest is one of its fields, then ``given``."""
    names = {f.name for f in dataclasses.fields(config)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return config(**{**values, **given})


def add_run_args(p: argparse.ArgumentParser, config: type, *, model_help: str, use: str) -> None:
    """RUN_DIR and which of its models and folds to use (``soz serve``, ``soz score``)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run directory (soz train --out)")
    config_option(p, config, "--model", "model", f"{model_help} (%(default)s)")
    p.add_argument("--fold", type=int, default=None, help="one fold (default: fold ensemble)")
    p.add_argument("--line-freq", type=float, default=None, help=LINE_FREQ_HELP)
    p.add_argument(
        "--allow-incomplete", action="store_true",
        help=f"{use} the finished folds of a run whose other folds did not finish",
    )  # fmt: skip


def add_beam_args(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--beam-args``: Beam pipeline options for ``what``, one quoted string."""
    p.add_argument(
        "--beam-args", default="", metavar="'OPTIONS'",
        help=f"Beam pipeline options for {what}, quoted: '--runner=FlinkRunner "
        "--flink_master=host:8081' (default: local FnApiRunner over every core)",
    )  # fmt: skip


def add_watch_args(p: argparse.ArgumentParser, config: type, *, required: bool) -> None:
    """Where a watcher puts what lands and how often it looks (``soz watch``, ``soz serve
    --watch``): ``config`` is :class:`serving.watch_config.WatchConfig`. ``required``: the
    outputs must be given (``soz watch``); ``soz serve`` needs them only with ``--watch``."""
    need = "" if required else " (with --watch)"
    g = p.add_argument_group("watching landing folders")
    g.add_argument("--store", required=required, metavar="STORE", help=f"clip store{need}")
    g.add_argument(
        "--results", required=required, metavar="RESULTS", help=f"results .parquet{need}"
    )
    g.add_argument(
        "--reports", required=required, metavar="DIR", help=f"report pages + index{need}"
    )
    g.add_argument("--label-sheet", metavar="FILE", help="SOZ label sheet (plain recordings)")
    opt = partial(config_option, g, config)
    opt("--poll-s", "poll_s", "seconds between polls (%(default)s)")
    opt("--stable-s", "stable_s", "seconds files must stay unchanged (%(default)s)")
    add_beam_args(g, what="each ingest")


def add_progress_arg(p: argparse.ArgumentParser, what: str = "progress bar") -> None:
    p.add_argument("--no-progress", action="store_true", help=f"no {what}")
