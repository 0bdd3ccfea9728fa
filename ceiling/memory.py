"""Keep freed memory in the process: large CPU tensors then reuse pages instead of faulting them in again.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB) with a fresh `mmap` and
returns it to the kernel on free. A CPU training step allocates many such blocks and frees them within
the step: a [vocab, hidden] gradient of a tied embedding (113 MB on SmolLM2), logits chunks of a 49k
vocabulary, and the like. Every page of each is faulted in and zeroed by the kernel again, which measured
1.65 million page faults and 7 s of system time in one 37 s SmolLM2 update on 2 cores.

`keep_freed_memory()` tells glibc to serve all allocations from its heap (`M_MMAP_MAX = 0`), never give the
top of the heap back (`M_TRIM_THRESHOLD`) and grow it 256 MiB at a time (`M_TOP_PAD`): the same update then
faulted 0.38 million pages. The resident set stays at its peak rather than shrinking between steps (the
peak itself is what a machine must have anyway). It is process-wide and one-way, so the RL loop and the
evaluator call it for CPU runs only; it does nothing off glibc (macOS, musl) or when the environment
variable CEILING_KEEP_FREED_MEMORY is 0.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameters (malloc.h)
TOP_PAD_BYTES = 256 << 20
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the setting once per process; True if glibc accepted it (False: not glibc, or switched off)."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("CEILING_KEEP_FREED_MEMORY", "1") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = [mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, 2**31 - 1), mallopt(M_TOP_PAD, TOP_PAD_BYTES)]
            _applied = all(r == 1 for r in ok)
    return _applied
