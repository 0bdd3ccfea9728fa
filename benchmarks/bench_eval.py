"""How long does evaluating one checkpoint take? Tiny model, 128 held-out prompts x 64 samples, all metrics.

    python benchmarks/bench_eval.py                       # tiny-medium as base, tiny-high as the "checkpoint"
    python benchmarks/bench_eval.py --base tiny-low --checkpoint runs/r1/checkpoints/step_000100
    python benchmarks/bench_eval.py --base smollm2 --checkpoint smollm2 --prompts 8 --samples 8 --max-new-tokens 64

Prints the wall time of the base (its samples are made once per evaluation) and of one checkpoint (its
samples, greedy pass, scoring, KL both ways, NLL, all measures), with the split by stage.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from ceiling.evaluate import EvalConfig
from ceiling.evaluate.evaluator import _Evaluator
from ceiling.models import load
from ceiling.tasks import TaskSet

TASKS = "verified=add,sub;unverified=mul,mod"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="tiny-medium")
    ap.add_argument("--checkpoint", default="tiny-high", help="any model with the base's tokenizer")
    ap.add_argument("--tasks", default=TASKS)
    ap.add_argument("--prompts", type=int, default=128, help="held-out prompts in all (split evenly over families)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave as is)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    taskset = TaskSet.parse(args.tasks)
    fams = len(taskset.families())
    cfg = EvalConfig(n_samples=args.samples, n_prompts=math.ceil(args.prompts / fams),
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, device=args.device)
    base_t: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    ev = _Evaluator(args.base, cfg, taskset, base_t)
    rows = ev.base_rows()
    t_base, c_base = time.perf_counter() - t0, time.process_time() - c0
    policy = load(args.checkpoint, device=cfg.device)
    ck_t: dict[str, float] = {}
    ev.timings = ck_t
    t0, c0 = time.perf_counter(), time.process_time()
    rows += ev.checkpoint_rows(policy)
    t_ck, c_ck = time.perf_counter() - t0, time.process_time() - c0
    cpu = platform.processor() or platform.machine()
    print(f"device {ev.base.model.device}, torch threads {torch.get_num_threads()}, {cpu}")
    print(f"{ev.m} prompts ({fams} families x {cfg.n_prompts}) x {cfg.n_samples} samples, max_new_tokens "
          f"{cfg.max_new_tokens}, {len(rows)} rows; mean completion length "
          f"{ev.base_samples.arrays.lengths.mean():.1f} tokens (base)")
    print(f"base ({args.base}): {t_base:.2f} s wall, {c_base:.2f} s CPU  [{_split(base_t)}]")
    print(f"one checkpoint ({args.checkpoint}), all metrics: {t_ck:.2f} s wall, {c_ck:.2f} s CPU  [{_split(ck_t)}]")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall time grows with other jobs)")


def _split(t: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(t.items(), key=lambda kv: -kv[1]) if v >= 0.005)


if __name__ == "__main__":
    main()
