"""Mutation testing of the core modules with mutmut, within a time budget, on a copy of the working tree.

    pip install -e ".[mutation]"
    python tools/mutation.py                        # every group of tools/mutation.toml, its sampled mutants
    python tools/mutation.py --groups stats,fit --budget-minutes 20
    python tools/mutation.py --names 'ceiling.stats.x_pass_at_k__mutmut_3'   # rerun chosen mutants (after
                                                                              # adding tests), one group
For each group (tools/mutation.toml: files to mutate, functions that count, test files, sample size):
  1. copy the working tree (tracked and untracked files git does not ignore, plus data/) to
     WORKDIR/<group>/, and write mutmut's config there (setup.cfg), so the shared tree is never mutated;
  2. `mutmut run` with a name that matches nothing: mutmut generates every mutant and maps which tests
     run which function (its "stats"), then stops;
  3. draw the group's sample (seeded) from the mutants of the listed functions, and run only those:
     `nice -n 10 mutmut run --max-children 1 NAME ...` (one worker, under the group's share of the budget);
  4. read the verdicts from mutmut's meta files and write WORKDIR/report.md: per group the mutants tried,
     killed, survived, timed out and not reached by any test, the score, and each survivor's diff.
The score is killed / (tried - not run); survivors are listed for a person to judge (equivalent or not).

    python tools/mutation.py --planted              # the planted bugs of tools/mutation.toml, one at a time
Each planted bug is a plausible one-line mistake applied to a fresh copy of the tree; its tests run with -x
and must fail. Printed: the bug, whether it was caught, and the first failing test.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tools" / "mutation.toml"
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # failing tests, pytest internal error, timeouts (mutmut's codes)
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED, NO_TESTS = {0}, {5, 33}


def tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [p for p in out.split("\0") if p and (REPO / p).is_file()]


def copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for rel in tree_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    if (REPO / "data").is_dir() and not (dest / "data").exists():
        shutil.copytree(REPO / "data", dest / "data")


def write_mutmut_config(dest: Path, group: dict, settings: dict) -> None:
    lines = ["[mutmut]", "source_paths=", "    ceiling", "only_mutate="]
    lines += [f"    {f}" for f in group["files"]]
    lines += ["pytest_add_cli_args_test_selection="] + [f"    {t}" for t in group["tests"]]
    lines += ["pytest_add_cli_args=", "    -x", "    -q", "    -p", "    no:cacheprovider"]
    lines += ["also_copy=", "    data", "    benchmarks", "    reports", "    tools", "    configs", "    docs",
              "    analysis.ipynb", "    README.md"]
    lines += ["process_isolation=forkserver", f"timeout_multiplier={settings.get('timeout_multiplier', 2.0)}",
              f"timeout_constant={settings.get('timeout_constant', 30.0)}",
              "use_git_change_detection=false"]
    (dest / "setup.cfg").write_text("\n".join(lines) + "\n")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
             PYTHONDONTWRITEBYTECODE="1", TQDM_DISABLE="1")
    return e


def mutmut(dest: Path, args: list[str], timeout: float, log: Path) -> int:
    cmd = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", "1", *args]
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd[:9])} ... ({len(args)} names)\n")
        fh.flush()
        try:
            return subprocess.run(cmd, cwd=dest, env=env(), stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=max(timeout, 1)).returncode
        except subprocess.TimeoutExpired:
            fh.write("budget spent: stopped\n")
            return -1


def verdicts(dest: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for meta in (dest / "mutants").rglob("*.py.meta"):
        out.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    return out


def function_of(name: str) -> str:
    """`ceiling.rl.grpo.x_group_advantages__mutmut_3` -> `group_advantages` (methods: `Class.method`)."""
    base = name.rsplit("__mutmut_", 1)[0].split(".")[-1]
    if base.startswith("x_"):
        return base[2:]
    return base.split("ǁ")[-1] if "ǁ" in base else base


def file_of(name: str) -> str:
    mod = name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[0]
    return mod.replace("xǁ", "").split("ǁ")[0].replace(".", "/") + ".py"


def in_group(name: str, group: dict) -> bool:
    funcs = group.get("functions") or []
    path = file_of(name)
    in_files = any(fnmatch.fnmatch(path, f) for f in group["files"])
    return in_files and (not funcs or any(function_of(name) == f or function_of(name).endswith("." + f)
                                          or function_of(name).split("ǁ")[-1] == f for f in funcs))


def show(dest: Path, name: str) -> str:
    r = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=dest, env=env(), capture_output=True,
                       text=True, timeout=120)
    return r.stdout.strip() or r.stderr.strip()


def run_group(key: str, group: dict, settings: dict, workdir: Path, budget_s: float,
              names: list[str] | None) -> dict:
    dest = workdir / key
    log = workdir / f"{key}.log"
    t0 = time.monotonic()
    if names is None or not (dest / "mutants").is_dir():
        copy_tree(dest)
        write_mutmut_config(dest, group, settings)
        mutmut(dest, ["__list_only__"], budget_s, log)  # generates mutants and the test map, then stops
    else:  # a rerun of chosen mutants after tests were added: the current tree (mutmut regenerates the mutants
        # of changed functions and keeps the names of unchanged ones), config and test map
        for rel in tree_files():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
        write_mutmut_config(dest, group, settings)
        (dest / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    every = sorted(n for n in verdicts(dest) if in_group(n, group))
    if names is None:
        k = int(group.get("sample", 0))
        chosen = sorted(random.Random(f"{settings.get('seed', 0)}/{key}").sample(every, k)) if 0 < k < len(every) else every
    else:
        chosen = [n for n in every if any(fnmatch.fnmatch(n, pat) for pat in names)]
    if chosen:
        mutmut(dest, chosen, budget_s - (time.monotonic() - t0), log)
    codes = verdicts(dest)
    res = {c: [n for n in chosen if codes.get(n) in s] for c, s in
           (("killed", KILLED), ("timeout", TIMEOUT), ("survived", SURVIVED), ("no tests", NO_TESTS))}
    res["not run"] = [n for n in chosen if codes.get(n) is None]
    res.update(group=key, population=len(every), sampled=len(chosen), seconds=time.monotonic() - t0,
               diffs={n: show(dest, n) for n in res["survived"] + res["no tests"]})
    return res


def report(results: list[dict], workdir: Path) -> str:
    head = ("| group | mutants (population) | tried | killed (of which timeout) | survived | no test reaches it | "
            "score killed / tried |\n|---|---:|---:|---:|---:|---:|---:|")
    rows, details = [head], []
    for r in results:
        tried = r["sampled"] - len(r["not run"])
        score = len(r["killed"]) / tried if tried else float("nan")
        rows.append(f"| {r['group']} | {r['population']} | {tried} | {len(r['killed'])} ({len(r['timeout'])}) | "
                    f"{len(r['survived'])} | {len(r['no tests'])} | {score:.0%} |")
        for n, diff in r["diffs"].items():
            details.append(f"### {n}\n\n```diff\n{diff}\n```\n")
    text = "\n".join(rows) + "\n\n## Survivors and unreached mutants\n\n" + "\n".join(details)
    (workdir / "report.md").write_text(text)
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=list))
    return "\n".join(rows)


def planted(bugs: list[dict], workdir: Path) -> bool:
    """Apply each planted bug to a copy of the tree, run its tests, and say which test caught it."""
    dest = workdir / "planted"
    all_caught = True
    for bug in bugs:
        copy_tree(dest)
        path = dest / bug["file"]
        text = path.read_text()
        if text.count(bug["old"]) != 1:
            print(f"[stale] {bug['name']}: the line to change is not in {bug['file']} exactly once")
            all_caught = False
            continue
        path.write_text(text.replace(bug["old"], bug["new"]))
        cmd = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", *bug["tests"]]
        r = subprocess.run(cmd, cwd=dest, env=env(), capture_output=True, text=True, timeout=1800)
        failed = [ln.split(" ")[1] for ln in r.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
        caught = r.returncode != 0
        all_caught &= caught
        print(f"[{'caught' if caught else 'MISSED'}] {bug['name']}: "
              f"{failed[0] if failed else ('exit ' + str(r.returncode))}", flush=True)
    return all_caught


def main() -> None:
    cfg = tomllib.loads(CONFIG.read_text())
    settings, groups = cfg["settings"], cfg["groups"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", default=",".join(groups), help=f"comma-separated, of: {', '.join(groups)}")
    ap.add_argument("--budget-minutes", type=float, default=settings.get("budget_minutes", 60))
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ceiling-mutation")
    ap.add_argument("--names", nargs="*", default=None, help="rerun only mutants matching these patterns")
    ap.add_argument("--planted", action="store_true", help="run the planted bugs instead of mutmut")
    args = ap.parse_args()
    if args.planted:
        args.workdir.mkdir(parents=True, exist_ok=True)
        sys.exit(0 if planted(cfg.get("planted", []), args.workdir) else 1)
    chosen = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in groups]
    if unknown:
        sys.exit(f"unknown group(s) {unknown}; known: {', '.join(groups)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    weights = {g: max(int(groups[g].get("sample", 0)), 20) for g in chosen}
    deadline = time.monotonic() + 60 * args.budget_minutes
    results = []
    for i, g in enumerate(chosen):
        left = deadline - time.monotonic()
        share = left * weights[g] / sum(weights[h] for h in chosen[i:])
        print(f"[{g}] budget {share / 60:.1f} min", flush=True)
        results.append(run_group(g, groups[g], settings, args.workdir, share, args.names))
        r = results[-1]
        print(f"[{g}] {len(r['killed'])} killed, {len(r['survived'])} survived, {len(r['no tests'])} unreached, "
              f"{len(r['not run'])} not run, of {r['sampled']} sampled ({r['population']} in all), "
              f"{r['seconds'] / 60:.1f} min", flush=True)
    print(report(results, args.workdir))
    print(f"details: {args.workdir / 'report.md'}")


if __name__ == "__main__":
    main()
