"""`ceiling eval`: evaluate a run's checkpoints and its base, or any base and checkpoints, into eval.csv.

    ceiling eval --run runs/r1                                   # writes runs/r1/eval.csv (+ eval_config.json)
    ceiling eval --base tiny-medium --checkpoints out/checkpoint-50 out/checkpoint-100 --tasks default --out eval.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ceiling.config import add_flags, given_flags
from ceiling.errors import CeilingError, error_at
from ceiling.evaluate import EvalConfig, evaluate_checkpoints, evaluate_run
from ceiling.evaluate.evaluator import eval_record
from ceiling.io import atomic_write_json, atomic_write_text

SUMMARY = [("verified/reward", "verified", "reward"), ("verified/greedy_acc", "verified", "greedy"),
           ("unverified/score", "unverified", "unverif"), ("unverified/nll", "unverified", "nll"),
           ("policy/entropy", "all", "entropy"), ("kl/policy_base_k3", "all", "KL(p||b)"),
           ("kl/base_policy_k3", "all", "KL(b||p)"), ("diversity/distinct_answers", "all", "answers"),
           ("crossover/k", "verified", "crossover")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to evaluate (either --run, or --base with --checkpoints)")
    src.add_argument("--run", type=Path, help="a run directory made by `ceiling train` (writes DIR/eval.csv)")
    src.add_argument("--base", help="base model: shipped base name, 'smollm2', or a local HF folder")
    src.add_argument("--checkpoints", nargs="*", default=[], metavar="DIR", help="checkpoint folders (e.g. TRL's)")
    src.add_argument("--tasks", default="default", help="task set spec, as for `ceiling train` (default: default)")
    src.add_argument("--out", type=Path, help="output CSV for --base mode (default: eval.csv)")
    src.add_argument("--name", help="run name in the output (default: the run dir's or the --out file's stem)")
    src.add_argument("--engine", default="native", choices=["native", "vllm"],
                     help="sampler: native (ceiling.models) or vllm (GPU, the vllm extra; docs/engines.md)")
    add_flags(parser.add_argument_group("sampling and statistics (EvalConfig)"), EvalConfig)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig.from_dict(given_flags(args, EvalConfig), where="command line")


def summary_table(frame: pd.DataFrame) -> str:
    """One line per step with the headline metrics (aggregate rows), as fixed-width text."""
    cols = [(m, f, label) for m, f, label in SUMMARY if ((frame.metric == m) & (frame.family == f)).any()]
    lines = ["step".rjust(8) + "".join(label.rjust(11) for _, _, label in cols)]
    for step, sub in frame.groupby("step"):
        cells = []
        for metric, fam, _ in cols:
            v = sub.loc[(sub.metric == metric) & (sub.family == fam) & sub.k.isna(), "value"]
            cells.append(f"{v.iloc[0]:11.4g}" if len(v) and pd.notna(v.iloc[0]) else " " * 10 + "-")
        lines.append(f"{int(step):8d}" + "".join(cells))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from ceiling.engines import eval_sampler

    engine = eval_sampler(args.engine)
    sampler = {} if engine is None else {"sampler": engine}
    timings: dict[str, float] = {}
    if args.run is not None:
        if args.base or args.checkpoints:
            raise CeilingError("give either --run, or --base with --checkpoints, not both")
        if not args.run.is_dir():
            raise error_at(args.run, "no such run directory")
        frame = evaluate_run(args.run, cfg, timings=timings, **sampler)
        out = args.run / "eval.csv"
    else:
        if not args.base:
            raise CeilingError("nothing to evaluate: give --run DIR, or --base B [--checkpoints C1 C2 ...]")
        for c in args.checkpoints:
            if not Path(c).is_dir():
                raise error_at(c, "no such checkpoint folder")
        from ceiling.tasks import TaskSet

        taskset = TaskSet.parse(args.tasks)
        out = args.out or Path("eval.csv")
        frame = evaluate_checkpoints(args.base, list(args.checkpoints), cfg, run=args.name or out.stem,
                                     taskset=taskset, timings=timings, **sampler)
        atomic_write_text(out, frame.to_csv(index=False))
        atomic_write_json(out.with_name(out.stem + "_config.json"),
                          {"config": cfg.to_dict(), **eval_record(taskset, cfg), "base": args.base,
                           "checkpoints": list(args.checkpoints), "tasks": taskset.to_dict()})
    print(summary_table(frame))
    spent = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(timings.items(), key=lambda kv: -kv[1]) if v >= 0.05)
    print(f"wrote {out} ({len(frame)} rows){'; ' + spent if spent else ' (nothing new to evaluate)'}")
    return 0
