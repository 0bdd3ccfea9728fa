"""The evaluator: verified reward, pass@k, unverified score and NLL, entropy, diversity, KL to the base.

    from ceiling.evaluate import EvalConfig, evaluate_run, evaluate_checkpoints
    frame = evaluate_run("runs/r1", EvalConfig(n_samples=64, n_prompts=32))   # writes runs/r1/eval.csv

The output is the canonical long frame (`ceiling.frame`) with `family` and `k` columns; step 0 is the base.
Statistics live in `estimators` (pure numpy) and `diversity`; model code in `sampling`. The base's diversity
floor, read from that frame, is `floor.diversity_floor` (one definition, named by its family set).

Names are imported on first use (PEP 562), so `ceiling.evaluate.floor` and `ceiling.evaluate.config` load
without torch: the report and the sweep read the floor without importing a model.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "EvalConfig": "ceiling.evaluate.config",
    "eval_problems": "ceiling.evaluate.evaluator",
    "evaluate_checkpoints": "ceiling.evaluate.evaluator",
    "evaluate_run": "ceiling.evaluate.evaluator",
    "read_eval": "ceiling.evaluate.evaluator",
    "run_checkpoints": "ceiling.evaluate.evaluator",
    "run_compute": "ceiling.evaluate.evaluator",
    "step_of": "ceiling.evaluate.evaluator",
    "Floor": "ceiling.evaluate.floor",
    "diversity_floor": "ceiling.evaluate.floor",
    "floor_from_record": "ceiling.evaluate.floor",
    "pass_at_k": "ceiling.stats",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from ceiling.evaluate.config import EvalConfig
    from ceiling.evaluate.evaluator import (eval_problems, evaluate_checkpoints, evaluate_run, read_eval,
                                            run_checkpoints, run_compute, step_of)
    from ceiling.evaluate.floor import Floor, diversity_floor, floor_from_record
    from ceiling.stats import pass_at_k


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ceiling.evaluate' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
