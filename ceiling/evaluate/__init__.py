"""The evaluator: verified reward, pass@k, unverified score and NLL, entropy, diversity, KL to the base.

    from ceiling.evaluate import EvalConfig, evaluate_run, evaluate_checkpoints
    frame = evaluate_run("runs/r1", EvalConfig(n_samples=64, n_prompts=32))   # writes runs/r1/eval.csv

The output is the canonical long frame (`ceiling.frame`) with `family` and `k` columns; step 0 is the base.
Statistics live in `estimators` (pure numpy) and `diversity`; model code in `sampling`.
"""
from ceiling.evaluate.config import EvalConfig
from ceiling.evaluate.evaluator import (
    eval_problems,
    evaluate_checkpoints,
    evaluate_run,
    read_eval,
    run_checkpoints,
    run_compute,
    step_of,
)
from ceiling.stats import pass_at_k

__all__ = [
    "EvalConfig",
    "eval_problems",
    "evaluate_checkpoints",
    "evaluate_run",
    "pass_at_k",
    "read_eval",
    "run_checkpoints",
    "run_compute",
    "step_of",
]
