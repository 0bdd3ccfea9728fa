"""Engines: the frameworks people already run for scale, behind `ceiling`'s run-directory contract.

    ceiling train --engine native|trl         ceiling.rl.train (one process)  |  TRL's GRPOTrainer (accelerate)
    ceiling sweep --engine local|ray          local processes                  |  one Ray task per run
    ceiling eval  --engine native|vllm        ceiling.models sampling          |  vLLM's offline engine

Each optional engine is an adapter module here (`trl`, `ray`, `vllm`) that produces or reads the same run
directory (`config.json`, `metrics.jsonl`, `checkpoints/step_NNNNNN/`, `eval.csv`), so `ceiling eval`, `fit`
and `report` work on any engine's run unchanged; `fit/` and `report/` never import an engine. The adapters
import their framework lazily: a missing extra is a one-line error naming it (`pip install -e ".[trl]"`).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ceiling.errors import CeilingError

TRAIN_ENGINES = ("native", "trl")
SWEEP_ENGINES = ("local", "ray")
EVAL_ENGINES = ("native", "vllm")

# framework module -> the extra of pyproject.toml that installs it
EXTRAS = {"trl": "trl", "accelerate": "trl", "datasets": "trl", "ray": "ray", "vllm": "vllm"}


def require(module: str, engine: str | None = None) -> ModuleType:
    """Import an optional framework, or raise a one-line CeilingError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], module)
        what = f"the {engine or extra} engine" if (engine or extra) else "this engine"
        raise CeilingError(f"{what} needs {module!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}): "
                           f"pip install -e \".[{extra}]\"") from None


def check_engine(engine: str, known: tuple[str, ...], command: str) -> str:
    """`engine` if `command` knows it, else a one-line error listing the known ones."""
    if engine not in known:
        raise CeilingError(f"ceiling {command}: unknown --engine {engine!r}; known: {', '.join(known)}")
    return engine


def train_with(engine: str, cfg: object, resume: bool = False, processes: int = 1) -> object:
    """Train `cfg` (a GRPOConfig) with the named engine; returns the run directory. `processes` > 1 runs the trl
    engine under `accelerate launch` (the native loop is one process)."""
    check_engine(engine, TRAIN_ENGINES, "train")
    if engine == "trl":
        from ceiling.engines.trl import launch

        return launch(cfg, resume=resume, processes=processes)
    if processes != 1:
        raise CeilingError("--processes needs --engine trl (the native loop runs in one process)")
    from ceiling.rl.grpo import train

    return train(cfg, resume=resume)  # type: ignore[arg-type]


def eval_sampler(engine: str) -> object | None:
    """The sampler the evaluator should use for `engine` (None = its default, `ceiling.models.sample`)."""
    check_engine(engine, EVAL_ENGINES, "eval")
    if engine == "vllm":
        from ceiling.engines.vllm import VLLMSampler

        return VLLMSampler()
    return None
