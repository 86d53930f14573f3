"""The SDK worker process of a local multi-process ingest: Beam's worker, logging set up first.

Importing ``apache_beam`` logs warnings about optional Google Cloud clients (GCS, BigQuery) on
the root logger. In a fresh process that call installs a stderr handler on the root logger, so
every worker printed those warnings, and then its own start-up lines ("No
semi_persistent_directory found"...), into the terminal of ``soz ingest``. Here the root logger
gets a handler before Beam is imported: only errors reach the worker's stderr, and every record
goes, as Beam intends, through the worker's log channel to the runner, whose logger the ``soz``
command shows with ``-v`` only.

Run as ``python -m ingest.beam_worker`` (the same arguments and environment as Beam's
``apache_beam.runners.worker.sdk_worker_main``); :func:`ingest.pipeline.build_pipeline` starts
its local workers this way.
"""

from __future__ import annotations

import logging
import shlex
import sys


def worker_command() -> str:
    """The shell command that starts one worker with this interpreter."""
    return f"{shlex.quote(sys.executable)} -m ingest.beam_worker"


def main() -> None:
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    logging.getLogger().addHandler(errors)

    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
