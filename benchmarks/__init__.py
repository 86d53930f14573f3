"""Benchmarks: run from the repository root as ``python -m benchmarks.<name>`` (``make bench``).

Each prints its figures and saves them as JSON in ``benchmarks/results/``; ratios are always
against a baseline measured in the same run.
"""

import os
import platform
from collections.abc import Sequence
from pathlib import Path


def save_figures(
    path: str | os.PathLike, result: dict, *, leave_out: Sequence[str] = (), indent: int = 2
) -> None:
    """Save a benchmark's figures as JSON at ``path`` (atomically, its folder made) and print
    them, but for the keys in ``leave_out`` (long per-step records kept only in the file)."""
    import json

    from ingest.fileio import write_json

    write_json(Path(path), result)
    shown = {k: v for k, v in result.items() if k not in leave_out}
    print(json.dumps(shown, indent=indent))


def torch_machine() -> dict:
    """The machine a torch benchmark ran on: platform, CPUs, torch version, CUDA, 1-min load."""
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
