"""`ceiling.memory.keep_freed_memory`: large blocks freed within a step are reused, not faulted in again."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from ceiling.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
def churn():
    for _ in range(6):
        x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, above glibc's largest mmap threshold
        del x
for _ in range(3):  # the heap settles within two rounds (it grows while the first blocks are placed)
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_blocks_are_reused_without_page_faults():
    applied, faults_on = _faults("on")
    if not applied:
        pytest.skip("not glibc: the setting does not apply")
    _, faults_off = _faults("off")
    # off: each fresh 64 MiB block is faulted in again (6 x 16k pages of 4 KiB; fewer with huge pages);
    # on: reused from the heap (0 faults measured here)
    assert faults_off > 0
    assert faults_on * 10 < faults_off


def test_switched_off_by_environment():
    import os

    env = dict(os.environ, CEILING_KEEP_FREED_MEMORY="0")
    applied, _ = _faults("on", env)
    assert applied is False
