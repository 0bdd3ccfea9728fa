"""`ceiling eval`: evaluate a run's checkpoints and its base, or any base and checkpoints, into eval.csv.

    ceiling eval --run runs/r1                                   # writes runs/r1/eval.csv (+ eval_config.json)
    ceiling eval --base tiny-medium --checkpoints out/checkpoint-50 out/checkpoint-100 --tasks default --out eval.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ceiling.errors import CeilingError, error_at
from ceiling.evaluate import EvalConfig, evaluate_checkpoints, evaluate_run
from ceiling.evaluate.evaluator import eval_record
from ceiling.io import atomic_write_json, atomic_write_text

SUMMARY = [("verified/reward", "verified", "reward"), ("verified/greedy_acc", "verified", "greedy"),
           ("unverified/score", "unverified", "unverif"), ("unverified/nll", "unverified", "nll"),
           ("policy/entropy", "all", "entropy"), ("kl/policy_base_k3", "all", "KL(p||b)"),
           ("kl/base_policy_k3", "all", "KL(b||p)"), ("diversity/distinct_answers", "all", "answers"),
           ("crossover/k", "verified", "crossover")]


def _ks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to evaluate (either --run, or --base with --checkpoints)")
    src.add_argument("--run", type=Path, help="a run directory made by `ceiling train` (writes DIR/eval.csv)")
    src.add_argument("--base", help="base model: shipped base name, 'smollm2', or a local HF folder")
    src.add_argument("--checkpoints", nargs="*", default=[], metavar="DIR", help="checkpoint folders (e.g. TRL's)")
    src.add_argument("--tasks", default="default", help="task set spec, as for `ceiling train` (default: default)")
    src.add_argument("--out", type=Path, help="output CSV for --base mode (default: eval.csv)")
    src.add_argument("--name", help="run name in the output (default: the run dir's or the --out file's stem)")
    d = EvalConfig()
    g = parser.add_argument_group("sampling and statistics")
    g.add_argument("--n-samples", type=int, default=d.n_samples,
                   help="samples per prompt, the n of pass@k (default: %(default)s)")
    g.add_argument("--n-prompts", type=int, default=d.n_prompts,
                   help="held-out prompts per family (default: %(default)s)")
    g.add_argument("--score-samples", type=int, default=d.score_samples,
                   help="samples per prompt scored for entropy, KL and NLL (default: %(default)s)")
    g.add_argument("--temperature", type=float, default=d.temperature, help="(default: %(default)s)")
    g.add_argument("--top-p", type=float, default=d.top_p, help="(default: %(default)s)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's own, else 64")
    g.add_argument("--ks", type=_ks, default=None,
                   help="k values of pass@k, e.g. 1,8,64 (default: powers of 2 up to n)")
    g.add_argument("--no-greedy", action="store_true", help="skip greedy decoding")
    g.add_argument("--n-boot", type=int, default=d.n_boot, help="bootstrap resamples (default: %(default)s)")
    g.add_argument("--nll-documents", type=int, default=d.nll_documents,
                   help="held-out pretraining documents for NLL (default: %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    g.add_argument("--device", default=d.device, help="auto, cpu or cuda (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per generation call (default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(n_samples=args.n_samples, n_prompts=args.n_prompts, temperature=args.temperature,
                      top_p=args.top_p, max_new_tokens=args.max_new_tokens, ks=args.ks,
                      score_samples=args.score_samples, greedy=not args.no_greedy,
                      n_boot=args.n_boot, nll_documents=args.nll_documents, seed=args.seed, device=args.device,
                      batch_size=args.batch_size)


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
    timings: dict[str, float] = {}
    if args.run is not None:
        if args.base or args.checkpoints:
            raise CeilingError("give either --run, or --base with --checkpoints, not both")
        if not args.run.is_dir():
            raise error_at(args.run, "no such run directory")
        frame = evaluate_run(args.run, cfg, timings=timings)
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
                                     taskset=taskset, timings=timings)
        atomic_write_text(out, frame.to_csv(index=False))
        atomic_write_json(out.with_name(out.stem + "_config.json"),
                          {"config": cfg.to_dict(), **eval_record(taskset, cfg), "base": args.base,
                           "checkpoints": list(args.checkpoints), "tasks": taskset.to_dict()})
    print(summary_table(frame))
    spent = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(timings.items(), key=lambda kv: -kv[1]) if v >= 0.05)
    print(f"wrote {out} ({len(frame)} rows){'; ' + spent if spent else ' (nothing new to evaluate)'}")
    return 0
