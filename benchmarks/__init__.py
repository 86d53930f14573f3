"""Benchmarks: run from the repository root as ``python -m benchmarks.<name>`` (``make bench``).

Each prints its figures and saves them as JSON in ``benchmarks/results/``; ratios are always
against a baseline measured in the same run.
"""

import os
import platform


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
