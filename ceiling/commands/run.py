"""`ceiling run`: the main job, end to end (the pipeline itself is `ceiling.pipeline`).

With no arguments it runs the embedded default preset on the CPU, with no network. `--preset NAME` or
`--config FILE.json` selects another setup (see `ceiling.pipeline` for the file's sections); flags override
single training settings. Re-running the same command resumes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ceiling.config import add_flags, given_flags
from ceiling.errors import CeilingError
from ceiling.pipeline import PRESETS, RunSpec, preset, run, spec_from_file
from ceiling.rl.grpo import GRPOConfig

# GRPOConfig fields that `ceiling run` takes as flags; --seed and --device also set evaluation's (and fit's seed).
TRAIN_FLAGS = ("base", "tasks", "steps", "beta", "seed", "device")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, help=f"a named setup: {', '.join(PRESETS)} (default: default)")
    p.add_argument("--config", default=None, help="a JSON run config (sections train / eval / fit)")
    p.add_argument("--name", default=None, help="run name (default: the preset's or config file's name)")
    add_flags(p, GRPOConfig, TRAIN_FLAGS, defaults="default: the preset's")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs/)")
    p.add_argument("--reports-dir", default="reports", help="where reports go (default: reports/)")
    p.add_argument("--fresh", action="store_true", help="delete an existing run directory of the same name first")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument("--engine", default="native", choices=["native", "trl"],
                   help="training engine: native (ceiling.rl) or trl (TRL's GRPOTrainer; docs/engines.md)")
    p.add_argument("--processes", type=int, default=1, help="trl engine: processes under `accelerate launch`")


def resolve(args: argparse.Namespace) -> RunSpec:
    """Preset or config file, then flag overrides."""
    if args.config and args.preset:
        raise CeilingError("give --preset or --config, not both")
    spec = spec_from_file(args.config) if args.config else preset(args.preset or "default")
    spec.train.update(given_flags(args, GRPOConfig))
    if hasattr(args, "seed"):
        spec.eval["seed"] = args.seed
        spec.fit["seed"] = args.seed
    if hasattr(args, "device"):
        spec.eval["device"] = args.device
    if args.name:
        spec.name = args.name
    return spec


def main(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name, p in PRESETS.items():
            print(f"{name:10s} {p['description']}")
        return 0
    spec = resolve(args)
    print(f"run folder: {Path(args.runs_dir) / spec.name}  (report: {Path(args.reports_dir) / spec.name})", flush=True)
    t0 = time.perf_counter()
    out = run(spec, args.runs_dir, args.reports_dir, fresh=args.fresh, engine=args.engine, processes=args.processes)
    total = time.perf_counter() - t0
    print("\n== summary ==")
    for line in out["summary"]:
        print(line)
    print(f"run folder: {out['run_dir']} (`ceiling report {out['run_dir']}` rebuilds the report)")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in out["timings"].items()) + f", total {total:.0f}s")
    return 0
