"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def torch_single_thread():
    """Run a test on one torch thread, then restore the previous setting.

    The model tests use tiny tensors, for which intra-op threads only add synchronisation; on a
    loaded CI machine (2 cores shared by several jobs) they made the tests several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
