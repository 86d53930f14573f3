"""Benchmarks: run from the repository root as ``python -m benchmarks.<name>`` (``make bench``).

Each prints its figures and saves them as JSON in ``benchmarks/results/``; ratios are always
against a baseline measured in the same run.
"""
