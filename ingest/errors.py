"""Errors raised at the boundaries of sozkit: each says what was wrong, where, and how to fix it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


class SozkitError(Exception):
    """Base class of the errors sozkit raises on bad input or configuration."""


class RecordingError(SozkitError):
    """A problem with one recording: it is reported (which file, what, how to fix) and skipped.

    Parameters
    ----------
    source : str
        The file (or recording id) the problem is in.
    reason : str
        What is wrong, with the offending values.
    fix : str
        What the user can do about it.
    """

    def __init__(self, source: str, reason: str, fix: str = "") -> None:
        self.source = str(source)
        self.reason = reason
        self.fix = fix
        msg = f"{self.source}: {reason}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)

    def __reduce__(self):  # picklable across Beam / Ray workers
        return (type(self), (self.source, self.reason, self.fix))


def unexpected_error(source: object, exc: BaseException) -> RecordingError:
    """A :class:`RecordingError` for an exception no check anticipated, so that a reader bug
    fails one recording (named, with the exception) instead of the whole cohort."""
    logger.debug("unexpected error reading %s", source, exc_info=exc)
    return RecordingError(
        str(source),
        f"unexpected {type(exc).__name__} while reading it: {exc}",
        "check the file against the BIDS / reader rules; if it looks valid, report this "
        "message (run with -v for the traceback).",
    )


class ConfigError(SozkitError, ValueError):
    """An invalid configuration value (raised by the frozen config dataclasses)."""


def name_list(names: Sequence[str], limit: int = 12) -> str:
    """``names`` joined by commas for a message, the first ``limit`` and `` ...`` after them."""
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
