"""Helpers shared by the benchmark scripts: the machine, its matmul peak, measured child processes, tables.

    from _common import machine, run_child, format_table

- `machine()` describes where the figures were taken: CPU model, cores, library versions, and the measured
  fp32 / bf16 matmul throughput (the physical ceiling that model-FLOP utilisation is read against).
- `run_child(argv)` runs one side of a comparison in its own process and returns its wall time and its peak
  resident memory (from `wait4`'s resource usage of that very child), so two sides never share an allocator.
- `format_table(headers, rows)` prints the plain-text tables the scripts end with.

Absolute times on shared machines are noisy; the scripts report ratios measured side by side in one run.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # scripts run from a checkout without `pip install -e .` still find ceiling
    sys.path.append(str(REPO_ROOT))


# ------------------------------------------------------------------------------------------------------
# The machine
# ------------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or `platform.processor()` where that file is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask; `os.cpu_count()` where that is unavailable)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def total_memory_gib() -> float | None:
    """Physical memory in GiB (Linux /proc/meminfo), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, min_seconds: float = 0.5,
                  device: str = "cpu") -> float:
    """Measured square-matmul throughput in GFLOP/s (2 n^3 FLOPs per product): the best of repeated timings.

    One warm-up product, then batches of products until `min_seconds` have passed; the fastest batch counts
    (the least disturbed by other processes), so this approaches the machine's attainable peak.
    """
    dev = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=dev, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        torch.mm(a, b)
        sync()
        best = float("inf")
        reps, start = 1, time.perf_counter()
        while True:
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            sync()
            dt = time.perf_counter() - t0
            best = min(best, dt / reps)
            if dt < 0.05:  # too short to time well: do more per batch
                reps *= 2
            if time.perf_counter() - start >= min_seconds:
                break
    return 2.0 * n**3 / best / 1e9


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose speed is measured, from package metadata (absent ones left out)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "trl", "accelerate", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine(measure: bool = True, min_seconds: float = 0.5) -> dict[str, Any]:
    """A description of this machine; with `measure`, the fp32 and bf16 matmul GFLOP/s are measured too."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": None if total_memory_gib() is None else round(float(total_memory_gib() or 0.0), 1),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": library_versions(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if measure:
        info["fp32_matmul_gflops"] = round(matmul_gflops(torch.float32, min_seconds=min_seconds), 1)
        info["bf16_matmul_gflops"] = round(matmul_gflops(torch.bfloat16, min_seconds=min_seconds), 1)
    return info


def describe_machine(info: Mapping[str, Any]) -> str:
    """One paragraph of `machine()` for a terminal or a Markdown file."""
    v = info.get("versions", {})
    text = (f"CPU: {info['cpu']} ({info['usable_cores']} usable of {info['logical_cores']} logical cores, "
            f"torch threads {info['torch_threads']}")
    if info.get("memory_gib"):
        text += f", {info['memory_gib']} GiB RAM"
    text += ")"
    if info.get("cuda"):
        text += f"; GPU: {info['cuda']}"
    text += "; " + ", ".join(f"{k} {val}" for k, val in v.items())
    if "fp32_matmul_gflops" in info:
        text += (f"; measured matmul peak: fp32 {info['fp32_matmul_gflops']:.1f} GFLOP/s, "
                 f"bf16 {info['bf16_matmul_gflops']:.1f} GFLOP/s")
    if info.get("load_average"):
        text += f"; load average at start {info['load_average'][0]:.2f}"
    return text


def peak_rss_self_bytes() -> int:
    """This process's peak resident memory so far, in bytes.

    Linux: `VmHWM` of /proc/self/status, the high-water mark of this program's own address space.
    `ru_maxrss` is not used there: the kernel carries it over an `exec`, so a child started by a large
    parent reports at least the parent's size. Elsewhere `ru_maxrss` (KiB on Linux, bytes on macOS).
    """
    hwm = proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def proc_status_bytes(field: str = "VmRSS") -> int | None:
    """A memory field of /proc/self/status in bytes (VmRSS, VmHWM, RssAnon, ...), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class MemorySampler:
    """Samples one /proc/self/status field in a background thread; `peak_bytes` is the largest value seen.

    With the default `RssAnon` it tracks anonymous resident memory (heap, tensors, allocator caches),
    leaving out the pages of shared libraries that the peak RSS also counts. Sampling can miss a spike
    shorter than `interval` seconds, so this is a lower bound of the true peak.

        with MemorySampler() as mem:
            work()
        print(mem.peak_bytes)
    """

    def __init__(self, field: str = "RssAnon", interval: float = 0.01) -> None:
        self.field, self.interval = field, interval
        self.peak_bytes = proc_status_bytes(field) or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, proc_status_bytes(self.field) or 0)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, proc_status_bytes(self.field) or 0)


# ------------------------------------------------------------------------------------------------------
# Child processes with their own peak memory
# ------------------------------------------------------------------------------------------------------

@dataclass
class ChildResult:
    """What one measured child process did: exit status, wall seconds, peak RSS (bytes), its output."""

    returncode: int
    wall_s: float
    peak_rss_bytes: int
    stdout: str
    stderr: str

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2**20

    def check(self, what: str = "child") -> ChildResult:
        """Raise RuntimeError with the tail of stderr if the child failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-25:])
            raise RuntimeError(f"{what} exited with status {self.returncode}:\n{tail}")
        return self


# A minimal Python process forks and execs the measured command, then reports `wait4`'s resource usage of
# that child. The launcher, not the caller, is the parent: `ru_maxrss` survives `exec`, so a child spawned
# straight from a big process (the benchmark parent holding torch) would report at least that process's size.
_LAUNCHER = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_child(argv: Sequence[str], env: Mapping[str, str | None] | None = None, cwd: str | Path | None = None,
              timeout: float | None = None, echo: bool = False) -> ChildResult:
    """Run `argv` to completion and return its status, wall time and peak RSS.

    The peak RSS is `ru_maxrss` of that very child, reaped by a small launcher process (see `_LAUNCHER`),
    so it is neither the maximum over all children (RUSAGE_CHILDREN) nor inflated by this process's own
    size. Output goes to temporary files, so a chatty child never blocks on a full pipe; with `echo` its
    stderr is copied to ours when it ends. Past `timeout` seconds the child's process group is killed
    (status -9).
    """
    full_env = {**os.environ, **{k: v for k, v in (env or {}).items() if v is not None}}
    for key in [k for k, v in (env or {}).items() if v is None]:  # None: remove from the inherited environment
        full_env.pop(key, None)
    with tempfile.TemporaryDirectory(prefix="run_child_") as tmp:
        report = Path(tmp) / "rusage"
        with open(Path(tmp) / "out", "w+") as out, open(Path(tmp) / "err", "w+") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv], stdout=out,
                                    stderr=err, env=full_env, cwd=cwd, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
            wall = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        try:
            code_text, rss_text = report.read_text().split()
            status, rss = int(code_text), int(rss_text)
        except (OSError, ValueError):  # the launcher itself was killed
            status, rss = (proc.returncode if proc.returncode < 0 else -9), 0
    if echo and stderr:
        sys.stderr.write(stderr)
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    return ChildResult(returncode=status, wall_s=wall, peak_rss_bytes=int(rss_bytes), stdout=stdout, stderr=stderr)


# ------------------------------------------------------------------------------------------------------
# Tables and ratios
# ------------------------------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with `digits` decimals (large ones with thousands separators), None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    """A plain-text (or Markdown) table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    if any(len(r) != len(headers) for r in cells):
        raise ValueError("every row needs one cell per header")
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)

    rule = ("|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
            if markdown else "  ".join("-" * w for w in widths))
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])
