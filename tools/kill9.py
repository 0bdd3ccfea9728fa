"""Kill `ceiling run` with SIGKILL at random moments, re-run it, and compare with an uninterrupted run.

    nice -n 5 python tools/kill9.py --kills 20                 # preset default (minutes)
    python tools/kill9.py --kills 3 --preset smoke             # seconds; tests/test_reliability.py does this

First an uninterrupted reference run records when each stage starts (RL, evaluation, fit, report). Then
chains of interrupted runs: each kill picks a stage at random, waits for that stage's banner and a random
part of its reference duration, and sends SIGKILL to the process group; the same command is then started
again (it resumes). After every kill the run and report folders are checked for half-written files: every
JSON file must parse, metrics.jsonl must hold complete lines with distinct, increasing steps (a cut-off
last line is allowed: the loop repairs it on resume), eval.csv must parse without duplicated rows, every
checkpoint folder must be complete. When a chain has taken its kills it runs to the end, and its
metrics.jsonl, eval.csv and fits.json must equal the reference's, timings aside (`TIMING_KEYS`).

The code under test is the package as committed at HEAD, copied first (`--no-snapshot`: the working tree as
it is), so that edits made to the working tree while the campaign runs do not change the code between the
reference and the chains.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("RL", "evaluate", "fit", "report")
BANNER = re.compile(r"^== (RL|evaluate|fit|report)\b")
TIMING_KEYS = re.compile(r"(^|/)(wall_seconds|seconds_per_step|completions_per_s|fingerprint)$")
"""Keys that measure time, not the run (they differ between any two runs): the loop's timings in
metrics.jsonl, and fits.json's meta.fingerprint, a hash of every value of the run's frame, timings included."""


@dataclass
class Proc:
    """One `ceiling run` process and the stage banners it printed (stage, seconds since start)."""

    popen: subprocess.Popen
    start: float
    banners: list[tuple[str, float]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)

    def stage(self) -> str:
        return self.banners[-1][0] if self.banners else "start-up"


def start(cmd: list[str], env: dict[str, str], cwd: Path) -> Proc:
    popen = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    proc = Proc(popen, time.monotonic())

    def read() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.output.append(line)
            m = BANNER.match(line)
            if m:
                proc.banners.append((m.group(1), time.monotonic() - proc.start))

    threading.Thread(target=read, daemon=True).start()
    return proc


def wait_for(proc: Proc, stage: str, timeout: float) -> bool:
    """Wait until `proc` printed the banner of `stage` (True) or ended / timed out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(s == stage for s, _ in proc.banners):
            return True
        if proc.popen.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def kill(proc: Proc) -> bool:
    """SIGKILL the process group; True when it was still running."""
    if proc.popen.poll() is not None:
        return False
    os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait()
    return True


# ------------------------------------------------------------------------------------------ integrity
def half_written(run_dir: Path, report_dir: Path) -> list[str]:
    """Files that a crash left unreadable or inconsistent (empty list: none)."""
    bad = []
    for folder in (run_dir, report_dir):
        if not folder.exists():
            continue
        for path in folder.rglob("*.json"):
            if ".tmp" in path.as_posix():
                continue
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                bad.append(f"{path.relative_to(folder.parent)}: {exc.__class__.__name__}")
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        data = metrics.read_bytes()
        complete = data[: data.rfind(b"\n") + 1].decode().splitlines()
        try:
            steps = [json.loads(line)["step"] for line in complete]
            if steps != sorted(set(steps)):
                bad.append(f"metrics.jsonl: steps not distinct and increasing: {steps}")
        except (ValueError, KeyError) as exc:
            bad.append(f"metrics.jsonl: a complete line does not parse ({exc.__class__.__name__})")
    evals = run_dir / "eval.csv"
    if evals.exists():
        try:
            df = pd.read_csv(evals)
            if df.duplicated(["step", "metric", "family", "k"]).any():
                bad.append("eval.csv: duplicated rows")
        except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
            bad.append(f"eval.csv: does not parse ({exc.__class__.__name__})")
    for ck in sorted((run_dir / "checkpoints").glob("step_*")) if (run_dir / "checkpoints").exists() else []:
        if ck.name.endswith(".tmp"):
            continue
        missing = [f for f in ("config.json", "model.safetensors", "trainer_state.json") if not (ck / f).is_file()]
        if missing:
            bad.append(f"{ck.name}: missing {', '.join(missing)}")
    return bad


def leftovers(run_dir: Path, report_dir: Path) -> int:
    """Temporary files or folders of interrupted atomic writes (harmless: never read)."""
    return sum(1 for folder in (run_dir, report_dir) if folder.exists() for p in folder.rglob("*")
               if p.name.startswith(".") and p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------------ comparison
def _metrics(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if not TIMING_KEYS.search(k)}
            for line in path.read_text().splitlines()]


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING_KEYS.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def differences(ref: Path, run: Path) -> list[str]:
    """What differs between two run folders' metrics.jsonl, eval.csv and fits.json, timings aside."""
    out = []
    a, b = _metrics(ref / "metrics.jsonl"), _metrics(run / "metrics.jsonl")
    if a != b:
        out.append(f"metrics.jsonl: {len(a)} vs {len(b)} lines" + (
            "" if len(a) != len(b) else f", first differing step {next(x['step'] for x, y in zip(a, b) if x != y)}"))
    if (ref / "eval.csv").read_bytes() != (run / "eval.csv").read_bytes():
        out.append("eval.csv differs")
    fa, fb = (_strip(json.loads((d / "fits.json").read_text())) for d in (ref, run))
    if fa != fb:
        keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
        out.append(f"fits.json differs in {keys}")
    return out


# ------------------------------------------------------------------------------------------ the campaign
@dataclass
class Result:
    kills: int = 0
    """SIGKILLs delivered to a running process."""
    by_stage: Counter = field(default_factory=Counter)
    """Kills by the stage the process was in."""
    misses: int = 0
    """Runs that finished before their planned kill (the chain then completes)."""
    runs: int = 0
    """`ceiling run` processes started in the chains (each kill is followed by a re-run)."""
    chains: int = 0
    """Interrupted runs completed and compared."""
    half_written: list[str] = field(default_factory=list)
    """Findings after a kill (should stay empty)."""
    leftovers: int = 0
    """Temporary files of interrupted atomic writes seen after kills (not read by anything)."""
    mismatches: list[str] = field(default_factory=list)
    """Differences from the reference (should stay empty)."""
    failed_runs: list[str] = field(default_factory=list)
    """Re-runs that exited with an error (should stay empty)."""
    reference_s: float = 0.0
    """Wall time of the uninterrupted run."""
    stage_s: dict[str, float] = field(default_factory=dict)
    """Reference duration of each stage."""

    @property
    def ok(self) -> bool:
        return not (self.half_written or self.mismatches or self.failed_runs)


def snapshot(dest: Path, ref: str | None = "HEAD") -> Path:
    """A copy of the package as committed at `ref` (None: as the working tree has it), so that the code under
    test cannot change while the campaign runs (others may be editing the tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    if ref is None:
        shutil.copytree(ROOT / "ceiling", dest / "ceiling", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "ceiling"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def campaign(kills: int, preset: str = "default", chains: int = 2, seed: int = 0, workdir: Path | None = None,
             freeze: bool = True, log=print, extra: list[str] | None = None) -> Result:
    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="kill9-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", CEILING_DATA=str(ROOT / "data"))
    if freeze:
        env["PYTHONPATH"] = str(snapshot(work / "code")) + os.pathsep + env.get("PYTHONPATH", "")

    def command(tag: str) -> list[str]:
        return [sys.executable, "-m", "ceiling.cli", "run", "--preset", preset, "--name", preset,
                "--runs-dir", str(work / tag / "runs"), "--reports-dir", str(work / tag / "reports"), *(extra or [])]

    res = Result()
    ref = start(command("reference"), env, work)
    if ref.popen.wait() != 0:
        raise SystemExit("reference run failed:\n" + "".join(ref.output[-20:]))
    res.reference_s = time.monotonic() - ref.start
    marks = ref.banners + [("end", res.reference_s)]
    res.stage_s = {s: marks[i + 1][1] - t for i, (s, t) in enumerate(ref.banners)}
    log(f"reference: {res.reference_s:.1f} s; stages " + ", ".join(f"{s} {d:.1f} s" for s, d in res.stage_s.items()))

    per_chain = -(-kills // chains)
    stages = list(res.stage_s)
    todo = [stages[i % len(stages)] for i in range(kills)]  # every stage about equally often
    rng.shuffle(todo)
    chain = 0
    while res.kills < kills:
        tag = f"chain{chain}"
        run_dir, report_dir = work / tag / "runs" / preset, work / tag / "reports" / preset
        # this chain's kills, in pipeline order, so that each lands while its stage still has work to do
        plan = sorted(todo[res.kills:res.kills + per_chain], key=stages.index)
        for i, stage in enumerate(plan):
            proc = start(command(tag), env, work)
            res.runs += 1
            if wait_for(proc, stage, timeout=10 * res.reference_s + 60):
                time.sleep(rng.uniform(0, 1.0) * res.stage_s[stage])
            where = proc.stage()
            if not kill(proc):  # it finished first: this chain is complete, its other kills go to the next
                res.misses += 1
                log(f"  {tag}: finished before kill {i + 1} ({stage}); the chain ends here")
                break
            res.kills += 1
            res.by_stage[where] += 1
            found = half_written(run_dir, report_dir)
            res.half_written += [f"{tag} kill {i + 1} ({where}): {f}" for f in found]
            res.leftovers += leftovers(run_dir, report_dir)
            log(f"  {tag}: kill {i + 1}/{len(plan)} during {where} at {time.monotonic() - proc.start:.1f} s"
                + (f"; HALF-WRITTEN {found}" if found else ""))
        proc = start(command(tag), env, work)  # the re-run that completes the chain
        res.runs += 1
        code = proc.popen.wait()
        if code != 0:
            res.failed_runs.append(f"{tag}: exit {code}: " + "".join(proc.output[-5:]).strip())
            break
        res.chains += 1
        diff = differences(work / "reference" / "runs" / preset, run_dir)
        res.mismatches += [f"{tag}: {d}" for d in diff]
        log(f"  {tag}: completed after its kills; " + ("metrics.jsonl, eval.csv and fits.json equal the reference's, "
                                                       "timings aside" if not diff else f"DIFFERS: {diff}"))
        chain += 1
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--chains", type=int, default=2, help="interrupted runs; the kills are spread over them")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--no-snapshot", action="store_true", help="run the working tree's code, not a copy")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = campaign(args.kills, args.preset, args.chains, args.seed, Path(args.workdir) if args.workdir else None,
                   freeze=not args.no_snapshot)
    print(f"kill -9: {res.kills} kills ({', '.join(f'{s} {n}' for s, n in res.by_stage.most_common())}), "
          f"{res.runs} runs, {res.misses} finished before their kill, {res.chains} interrupted runs compared with an uninterrupted one")
    print(f"  half-written files after a kill: {len(res.half_written)}; temporary files left by interrupted "
          f"atomic writes: {res.leftovers}; failed re-runs: {len(res.failed_runs)}; differences from the "
          f"reference (timings aside): {len(res.mismatches)}")
    for line in res.half_written + res.failed_runs + res.mismatches:
        print("  " + line)
    print(f"  reference run {res.reference_s:.0f} s; campaign {time.perf_counter() - t0:.0f} s")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
