"""bench_engines: the price of scale. The TRL engine (`ceiling train --engine trl`) beside the native loop
(`ceiling.rl.train`) on the same workload, side by side in one run.

    python benchmarks/bench_engines.py                                   # tiny-medium, CPU, ~2 minutes on 2 cores
    python benchmarks/bench_engines.py --trl-processes 2                 # + TRL as 2 processes (accelerate, gloo)
    python benchmarks/bench_engines.py --model smollm2 --device cuda --steps 5 --json engines.json

Both sides run the same `GRPOConfig` (same base, problems, group, lengths, beta, lr, seed) in their own child
process and write an ordinary run directory; a step's time is `speed/seconds_per_step` from metrics.jsonl
(sampling, reward, the reference/KL pass, the update; on the TRL side also its two measuring passes, which
are part of what the engine costs). Start-up and checkpoints are outside both. The first `--warmup` steps are
not timed; the last line (measurement only, no update) is left out. The machine's matmul peak is printed
so that the figures can be read against the hardware.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import describe_machine, format_table, machine, ratio, run_child

SIDES = ("native", "trl", "trl-2proc")


def config(args: argparse.Namespace, out: str) -> dict[str, Any]:
    """The shared GRPOConfig settings (as a dict: children build the config themselves)."""
    chat = args.model == "smollm2"
    return {"base": args.model, "tasks": args.tasks or ("default" if chat else "tiny-rl"), "steps": args.warmup + args.steps,
            "prompts_per_step": args.prompts_per_step, "group_size": args.group_size,
            "max_new_tokens": args.max_new_tokens or (64 if chat else 12), "beta": args.beta, "lr": args.lr,
            "seed": 0, "device": args.device, "dtype": args.dtype, "num_threads": args.threads,
            "checkpoint_every": 10**6, "out": out, "log": False}


def child(side: str, settings_file: Path) -> int:
    """One side in this process (native, or one TRL process)."""
    from ceiling.rl.grpo import GRPOConfig

    cfg = GRPOConfig.from_dict(json.loads(settings_file.read_text()))
    if side == "native":
        from ceiling.rl.grpo import train

        train(cfg)
    else:
        from ceiling.engines.trl import train_trl

        train_trl(cfg)
    return 0


def step_seconds(run: Path, warmup: int) -> list[float]:
    """Timed steps of a run: lines warmup .. steps-1 (the last line only measures)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [float(m["speed/seconds_per_step"]) for m in lines[warmup:-1]]


def run_side(side: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    run = scratch / side
    settings = scratch / f"{side}.json"
    settings.write_text(json.dumps(config(args, str(run))))
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "ignore"}
    if side == "trl-2proc":
        from ceiling.engines.trl import launch_command

        argv = launch_command(settings, resume=False, processes=2)
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--settings", str(settings)]
    done = run_child(argv, env=env, timeout=args.timeout, echo=args.verbose)
    done.check(f"{side} side")
    seconds = step_seconds(run, args.warmup)
    batch = args.prompts_per_step * args.group_size
    return {"side": side, "seconds_per_step": statistics.median(seconds), "fastest_step_s": min(seconds),
            "completions_per_s": batch / statistics.median(seconds), "timed_steps": len(seconds),
            "peak_rss_mib": done.peak_rss_mib, "process_wall_s": done.wall_s, "steps": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-medium", help="tiny-low | tiny-medium | tiny-high | smollm2 | a folder")
    p.add_argument("--tasks", default=None)
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 12 (tiny), 64 (smollm2)")
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--trl-processes", type=int, default=1, choices=[1, 2], help="2: also TRL as 2 processes")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, Path(args.settings))
    info = machine(measure=True)
    sides = ["native", "trl"] + (["trl-2proc"] if args.trl_processes == 2 else [])
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp:
        results = {}
        for side in sides:
            print(f"bench_engines: running {side} ...", file=sys.stderr, flush=True)
            results[side] = run_side(side, args, Path(tmp))
    native = results["native"]
    rows = [[s, r["seconds_per_step"], r["fastest_step_s"], r["completions_per_s"], r["peak_rss_mib"],
             r["process_wall_s"], ratio(r["seconds_per_step"], native["seconds_per_step"])] for s, r in results.items()]
    print(f"bench_engines: {args.model} on {args.device} ({args.dtype}), {args.prompts_per_step} prompts x group "
          f"{args.group_size} per step, beta {args.beta}, {args.warmup} warm-up + {args.steps} timed steps, "
          f"{args.threads} torch thread(s) per process")
    print(describe_machine(info))
    print(format_table(["engine", "s / step (median)", "fastest step (s)", "completions / s", "peak RSS (MiB)",
                        "process wall (s)", "step time / native"], rows))
    if args.json_out:
        from ceiling.io import atomic_write_json

        atomic_write_json(args.json_out, {"machine": info, "args": vars(args), "sides": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
