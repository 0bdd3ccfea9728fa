"""`ceiling run` on a quiet CPU and beside one busy neighbour process, side by side in one script.

    nice -n 5 python tools/contention.py                       # preset default, quiet then busy
    python tools/contention.py --preset smoke --repeats 2      # quiet, busy, busy, quiet

The neighbour is one CPU-bound Python process (`while True: pass`), started just before the run and killed
just after, in a session of its own as a process from another terminal would be (`--same-session` puts it in the
run's session, where Linux's autogroup scheduling makes the two share one session's CPU: 2x for any process). The run's output goes to a pipe, as in a log file, so the script also measures the longest
silence between two output lines (the target: a line at least every 10 s). OMP_WAIT_POLICY is removed from the
environment, so the run gets what the CLI sets by itself; `--omp-wait ACTIVE` adds one busy run with spinning
waits for comparison. The code under test is the package as committed at HEAD, copied first, as in tools/kill9.py. Prints the wall times, the busy/quiet
ratio (target <= 1.5) and the machine's load average, which other users of the machine distort.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from kill9 import BANNER, snapshot  # noqa: E402


@dataclass
class Timed:
    """One `ceiling run` and what it printed."""

    label: str
    """quiet / busy / busy, OMP_WAIT_POLICY=ACTIVE."""
    wall_s: float
    """Wall time of the whole command."""
    longest_silence_s: float
    """Longest gap between two output lines (from start to exit)."""
    silence_by_stage: dict[str, float]
    """Longest gap that began in each stage (start-up, RL, evaluate, fit, report, summary)."""
    stages: str
    """The run's own `time:` line (seconds per stage)."""
    load: str
    """/proc/loadavg at the start."""


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def timed_run(label: str, cmd: list[str], env: dict[str, str], cwd: Path, busy: bool,
              same_session: bool = False) -> Timed:
    # in a session of its own, as a process started from another terminal is: Linux's autogroup scheduling shares
    # the CPU between sessions first, so a neighbour in the run's own session halves any process's share (2x)
    neighbour = (subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=not same_session)
                 if busy else None)
    load = _loadavg()
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        stamps, lines = [t0], []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                stamps.append(time.monotonic())
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        code = proc.wait()
        reader.join()
        end = time.monotonic()
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if code != 0:
        raise SystemExit(f"{label} run failed:\n" + "".join(lines[-20:]))
    gaps = [b - a for a, b in zip(stamps, stamps[1:] + [end])]
    by_stage: dict[str, float] = {}
    stage = "start-up"
    for gap, line in zip(gaps, ["" ] + lines):  # gap i starts after line i-1
        m = BANNER.match(line)
        stage = m.group(1) if m else ("summary" if line.startswith("== summary") else stage)
        by_stage[stage] = max(by_stage.get(stage, 0.0), gap)
    stages = next((ln.strip() for ln in reversed(lines) if ln.startswith("time:")), "?")
    return Timed(label, end - t0, max(gaps), by_stage, stages, load)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs (quiet+busy; ABBA order from 2)")
    ap.add_argument("--omp-wait", default=None, help="also one busy run with this OMP_WAIT_POLICY (e.g. ACTIVE)")
    ap.add_argument("--same-session", action="store_true", help="the neighbour in the run's own session")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="contention-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONUNBUFFERED="1", CEILING_DATA=str(ROOT / "data"),
               PYTHONPATH=str(snapshot(work / "code")) + os.pathsep + env.get("PYTHONPATH", ""))
    order = []
    for r in range(args.repeats):
        order += [False, True] if r % 2 == 0 else [True, False]
    results: list[Timed] = []
    for i, busy in enumerate(order):
        cmd = [sys.executable, "-m", "ceiling.cli", "run", "--preset", args.preset, "--runs-dir",
               str(work / f"r{i}" / "runs"), "--reports-dir", str(work / f"r{i}" / "reports")]
        results.append(timed_run("busy" if busy else "quiet", cmd, env, work, busy, args.same_session))
        t = results[-1]
        print(f"  {t.label:6s} {t.wall_s:6.1f} s, load at start {t.load}; {t.stages}; longest silence by stage: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in t.silence_by_stage.items()), flush=True)
    if args.omp_wait:
        cmd = [sys.executable, "-m", "ceiling.cli", "run", "--preset", args.preset, "--runs-dir",
               str(work / "omp" / "runs"), "--reports-dir", str(work / "omp" / "reports")]
        t = timed_run(f"busy, OMP_WAIT_POLICY={args.omp_wait}", cmd, dict(env, OMP_WAIT_POLICY=args.omp_wait), work,
                      True)
        results.append(t)
        print(f"  {t.label}: {t.wall_s:.1f} s, longest silence {t.longest_silence_s:.1f} s, load {t.load}; "
              f"{t.stages}", flush=True)
    quiet = statistics.median(t.wall_s for t in results if t.label == "quiet")
    busy = statistics.median(t.wall_s for t in results if t.label == "busy")
    silence = max(v for t in results for k, v in t.silence_by_stage.items() if k in ("RL", "evaluate"))
    print(f"contention ({args.preset}): quiet {quiet:.1f} s, one busy neighbour {busy:.1f} s: {busy / quiet:.2f}x "
          f"(target <= 1.5x: {'met' if busy / quiet <= 1.5 else 'MISSED'}); longest silence in training and evaluation "
          f"{silence:.1f} s (target <= 10 s: {'met' if silence <= 10 else 'MISSED'}); load at end {_loadavg()}")
    return 0 if busy / quiet <= 1.5 and silence <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
