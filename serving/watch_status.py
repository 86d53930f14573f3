"""The watcher's state file, beside its results: what ``soz serve --watch``'s ``/health`` shows.

The watcher (:meth:`serving.watch.Watcher.run`) rewrites ``RESULTS.watch.status.json``
atomically after every poll and when it stops; ``/health`` (another process, maybe another
node that sees the same folder) reads it. A file older than a few poll intervals while its
state says ``watching`` means the watcher stopped polling (hung, or its process died): shown
as ``stale``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ingest.fileio import write_json
from serving.journal import journal_path

#: Poll intervals (plus a minute for a batch in flight) after which a silent watcher is stale.
STALE_POLLS = 3
BATCH_GRACE_S = 60.0


def status_path(results: str | os.PathLike) -> Path:
    """``results.parquet`` -> ``results.watch.status.json`` (beside the journal)."""
    journal = journal_path(results)
    return journal.with_name(journal.name[: -len(".jsonl")] + ".status.json")


def write_status(path: str | os.PathLike, status: dict[str, Any]) -> None:
    write_json(path, {**status, "updated_at": time.time()})


def read_status(path: str | os.PathLike) -> dict[str, Any]:
    """The state file, with ``age_s`` and ``stale`` (True when the watcher stopped updating it
    while saying it watches); ``{"state": "starting"}`` before its first write."""
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"state": "starting", "stale": False}
    age = time.time() - float(status.get("updated_at") or 0.0)
    status["age_s"] = round(age, 1)
    status["stale"] = status.get("state") == "watching" and (
        age > STALE_POLLS * float(status.get("poll_s") or 5.0) + BATCH_GRACE_S
    )
    return status
