"""`ceiling train --engine trl`: TRL's GRPOTrainer under accelerate, writing `ceiling`'s run directory.

    ceiling train --engine trl --config run.json                              # one process
    ceiling train --engine trl --processes 8 --config run.json                # accelerate launch, 8 processes
    accelerate launch --num_processes 8 -m ceiling.engines.trl run.json       # the same, by hand
    accelerate launch --config_file zero2.yaml -m ceiling.engines.trl run.json    # DeepSpeed ZeRO (docs/engines.md)
    accelerate launch --multi_gpu --num_processes 2 -m ceiling.engines.trl run.json   # 2 CPU processes (gloo)
                                                                              # when run.json says device cpu

What stays ours: the `GRPOConfig` (mapped to TRL's by `trl_settings`; docs/engines.md lists what maps and
what does not), the problems of every step (the ones `ceiling.rl.train` draws with the same seed, fed in
order), the reward (the task set's verifiers, `ceiling.tasks.trl_reward_fn`), and the run directory:

    config.json                 our GRPOConfig (identical keys: `ceiling eval` reads base, tasks, max_new_tokens)
    engine.json                 engine "trl", TRL / accelerate versions, processes, the TRL settings used
    metrics.jsonl               one line per step with our keys (see `ceiling.rl.grpo`), written by a callback
    checkpoints/step_NNNNNN/    HF model + tokenizer (hard links to TRL's checkpoint files) + our trainer_state.json
    trl/checkpoint-G/           TRL's own checkpoint (optimizer, scheduler, RNG): what `--resume` continues from

Step s of ours is U = updates_per_batch x num_minibatches optimizer steps of TRL (one generated batch).
Line s measures the batch sampled from theta_s: reward, KL(policy || base) by k1 and k3 per token and per
sequence, full-vocabulary entropy and lengths, all from one extra no-grad pass of the policy and one of the
frozen base over the samples (`_measure`), at every step whatever beta is: at beta 0 TRL loads no reference
model, so the adapter loads the base itself. `compute/flops` uses `ceiling.rl.grpo.step_flops` (6N per trained
token per epoch, 2N per generated and per reference-scored token), so both engines sit on one compute axis;
the measuring passes are not counted, as the native loop's fused pass is not.
To measure theta_N the adapter runs one step more than asked (its update is never saved or logged).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ceiling.engines import require
from ceiling.errors import CeilingError, error_at
from ceiling.io import append_jsonl, atomic_dir, atomic_write_json

TRL_DIR = "trl"
ENGINE_FILE = "engine.json"
TRAINER_ONLY_FILES = {"optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin"}
"""Files of a TRL checkpoint that are not the model: left out of `checkpoints/step_N/`."""
UPDATE_KEYS = {"loss": "loss/total", "grad_norm": "optim/grad_norm", "learning_rate": "optim/lr",
               "clip_ratio/low_mean": "clip/low_frac", "clip_ratio/high_mean": "clip/high_frac"}
"""TRL log keys of one update -> our metrics keys (averaged over the U optimizer steps of a step)."""

# GRPOConfig fields that TRL has no counterpart for, with the value that the adapter accepts (None = any)
UNSUPPORTED = {
    "entropy_coef": 0.0,  # TRL has no entropy bonus
    "random_reward": False,  # the random-reward control needs the verified reward logged beside the trained one
    "sft_examples_per_step": 0,  # the supervised mix-in is a term of our loop's loss; TRL's GRPO loss has none
}


# --------------------------------------------------------------------------------------------------------
# The mapping: GRPOConfig -> TRL GRPOConfig keyword arguments (pure, testable without TRL)
# --------------------------------------------------------------------------------------------------------

def updates_per_step(cfg: Any) -> int:
    """Optimizer steps TRL takes per step of ours (one generated batch): updates_per_batch x num_minibatches."""
    return int(cfg.updates_per_batch) * int(cfg.num_minibatches)


def check_supported(cfg: Any) -> None:
    """Refuse settings TRL cannot run as asked, with a one-line error naming the field."""
    for name, value in UNSUPPORTED.items():
        if getattr(cfg, name) != value:
            raise error_at(None, f"not supported by the trl engine (TRL has no counterpart); use --engine native",
                           field=name)
    if cfg.beta > 0 and cfg.kl_estimator != "k3":
        raise error_at(None, "the trl engine's KL penalty is k3 only (TRL's estimator)", field="kl_estimator")


def trl_settings(cfg: Any, world_size: int, output_dir: str | Path) -> dict[str, Any]:
    """Keyword arguments of TRL's `GRPOConfig` for our `GRPOConfig` on `world_size` processes.

    One generated batch (prompts_per_step x group_size completions, all processes together) makes
    updates_per_batch epochs x minibatches optimizer steps, as in `ceiling.rl.train`; micro_batch_size > 0 becomes
    gradient accumulation. docs/engines.md has the table of what maps and what does not.
    """
    check_supported(cfg)
    batch = cfg.prompts_per_step * cfg.group_size
    per_minibatch = batch // cfg.num_minibatches
    if batch % cfg.num_minibatches or per_minibatch % world_size:
        raise error_at(None, f"prompts_per_step x group_size = {batch} completions must split into {cfg.num_minibatches} "
                             f"minibatch(es) of a multiple of {world_size} process(es)", field="num_minibatches")
    per_process = per_minibatch // world_size
    accumulation = 1
    if cfg.micro_batch_size and cfg.micro_batch_size < per_process:
        accumulation = math.ceil(per_process / cfg.micro_batch_size)
        if per_process % accumulation:
            raise error_at(None, f"{per_process} completions per process and minibatch do not split into "
                                 f"micro-batches of at most {cfg.micro_batch_size}", field="micro_batch_size")
    u = updates_per_step(cfg)
    cuda = cfg.device != "cpu"
    return {
        "output_dir": str(output_dir),
        "use_cpu": not cuda, "bf16": cfg.dtype == "bfloat16",
        "model_init_kwargs": {"dtype": "float32"},  # weights and optimizer in fp32 (bf16 = autocast), as ours
        "per_device_train_batch_size": per_process // accumulation,
        "gradient_accumulation_steps": accumulation,
        "steps_per_generation": cfg.num_minibatches * accumulation,
        "num_iterations": cfg.updates_per_batch,
        "num_generations": cfg.group_size,
        "max_completion_length": cfg.max_new_tokens,
        "temperature": cfg.temperature, "top_p": cfg.top_p,
        "loss_type": cfg.loss_type, "epsilon": cfg.epsilon_low, "epsilon_high": cfg.epsilon_high,
        "scale_rewards": cfg.resolved_std_scaling(),
        "beta": cfg.beta,
        "learning_rate": cfg.lr, "lr_scheduler_type": "constant_with_warmup", "warmup_steps": cfg.warmup_steps * u,
        "weight_decay": cfg.weight_decay, "adam_beta1": cfg.adam_beta1, "adam_beta2": cfg.adam_beta2,
        "optim": "adamw_torch", "max_grad_norm": cfg.max_grad_norm,
        "max_steps": (cfg.steps + 1) * u,  # + 1 step: it measures theta_N (its update is not kept)
        "save_strategy": "steps", "save_steps": cfg.checkpoint_every * u,
        "save_total_limit": 2,  # TRL's optimizer states: the latest two (step_N/ keeps every model, hard-linked)
        "logging_steps": 1, "report_to": "none", "disable_tqdm": True, "log_completions": False,
        "eval_strategy": "no", "shuffle_dataset": False, "disable_dropout": True, "seed": cfg.seed,
        "data_seed": cfg.seed, "dataloader_num_workers": 0, "gradient_checkpointing": False, "use_vllm": False,
        "remove_unused_columns": False,
    }


# --------------------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------------------

def base_folder(spec: str, scratch: Path) -> Path:
    """The HF folder of a base spec (`tiny-medium`, `smollm2`, a folder), as `ceiling.models.load` resolves it.
    A folder whose config.json still names GGUF quantization (transformers would refuse to train it) is
    given as a linked copy under `scratch` without that entry."""
    from ceiling.models.loading import SMOLLM2, _is_model_dir, _stale_smollm2_cache, bases_dir, cache_dir, convert_smollm2

    if spec == SMOLLM2:
        folder = cache_dir() / SMOLLM2
        if not _is_model_dir(folder) or _stale_smollm2_cache(folder):
            convert_smollm2(folder)
    else:
        folder = Path(spec).expanduser()
        if not _is_model_dir(folder):
            folder = bases_dir() / spec
        if not _is_model_dir(folder):
            raise error_at(spec, "no such base: a shipped base name, 'smollm2', or a Hugging Face model folder",
                           field="base")
    config = json.loads((folder / "config.json").read_text())
    if config.get("quantization_config", {}).get("quant_method") != "gguf":
        return folder
    plain = scratch / "base"
    if not (plain / "config.json").is_file():
        with atomic_dir(plain) as tmp:
            for item in folder.iterdir():
                if item.is_file() and item.name != "config.json":
                    (tmp / item.name).symlink_to(item.resolve())
            del config["quantization_config"]
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
    return plain


def step_rows(cfg: Any, steps: int, chat: bool, bos: str) -> list[dict[str, Any]]:
    """Dataset rows for steps 0..steps-1 in order: the problems `ceiling.rl.train` draws at each step (same
    seed stream), as a conversation for chat models, else `<bos>` + prompt text (as `format_prompts`)."""
    from ceiling.rl.grpo import STREAM_PROBLEMS, step_seed
    from ceiling.tasks import TaskSet

    taskset = TaskSet.parse(cfg.tasks)
    rows = []
    for step in range(steps):
        for p in taskset.sample(cfg.prompts_per_step, seed=step_seed(cfg.seed, step, STREAM_PROBLEMS),
                                split="train", which="verified"):
            prompt: Any = [{"role": "user", "content": p.prompt}] if chat else bos + p.prompt
            rows.append({"prompt": prompt, "answer": p.answer, "family": p.family})
    return rows


def link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no second copy of the weights) where the file system allows, else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def publish_checkpoint(run: Path, step: int, source: Path, state: dict[str, Any]) -> Path:
    """`checkpoints/step_NNNNNN/` from a model folder (TRL's checkpoint or the base): its model, config and
    tokenizer files (not the trainer's), plus our `trainer_state.json`; atomic."""
    from ceiling.rl.checkpoint import STATE_FILE, checkpoint_path

    path = checkpoint_path(run, step)
    with atomic_dir(path) as tmp:
        for item in sorted(source.iterdir()):
            if item.is_file() and item.name not in TRAINER_ONLY_FILES and not item.name.startswith("rng_state") \
                    and item.suffix not in (".pt", ".pth", ".bin") and item.name not in ("pretrain.json", "diversity.json"):
                link_or_copy(item, tmp / item.name)
        atomic_write_json(tmp / STATE_FILE, {"format": 1, "step": step, "engine": "trl", **state}, indent=None)
    return path


# --------------------------------------------------------------------------------------------------------
# Per-step measurements from the rows of one generated batch
# --------------------------------------------------------------------------------------------------------

ROW_FIELDS = ("k1_sum", "k3_sum", "tokens", "entropy_sum", "truncated", "prompt_tokens")


def rollout_metrics(rows: Any, rewards: Any, families: Sequence[str], group_size: int) -> dict[str, float]:
    """Our rollout keys from per-completion sums (rows [B, len(ROW_FIELDS)], all processes) and rewards [B].

    Token means divide sums over all completion tokens by the token count; sequence means average each
    completion's sum, as `ceiling.rl.grpo.kl_summary` and `rollout_metrics` do on the native side.
    """
    import torch

    rows = rows.double().cpu()
    rewards = rewards.double().cpu()
    k1, k3, tok, ent, trunc, ptok = (rows[:, i] for i in range(len(ROW_FIELDS)))
    n_tok = float(tok.sum().clamp(min=1.0))
    out: dict[str, float] = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std(unbiased=False)),
        "reward/zero_std_frac": float((rewards.reshape(-1, group_size).std(dim=1, unbiased=False) == 0).double().mean()),
    }
    for fam in sorted(set(families)):
        sel = torch.tensor([f == fam for f in families])
        out[f"reward/family/{fam}"] = float(rewards[sel].mean())
    out.update({
        "kl/policy_base_k1_token": float(k1.sum()) / n_tok, "kl/policy_base_k3_token": float(k3.sum()) / n_tok,
        "kl/policy_base_k1_seq": float(k1.mean()), "kl/policy_base_k3_seq": float(k3.mean()),
        "policy/entropy": float(ent.sum()) / n_tok,
        "length/mean": float(tok.mean()), "length/max": float(tok.max()),
        "length/truncated_frac": float(trunc.mean()),
        "tokens/prompt": float(ptok.sum()), "tokens/completion": float(tok.sum()),
    })
    return out


def _trainer_class() -> type:
    """TRL's GRPOTrainer plus the measurements of each generated batch (made on first use: TRL is optional)."""
    torch = require("torch")
    trl = require("trl")
    from accelerate.utils import gather_object

    from ceiling.rl.grpo import kl_k1, kl_k3

    class CeilingGRPOTrainer(trl.GRPOTrainer):
        """GRPOTrainer that also measures every generated batch against the frozen base (`last_rollout`)."""

        def __init__(self, *args: Any, base_path: str, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.last_rollout: dict[str, float] = {}
            self._last_rewards: Any = None
            self._last_families: list[str] = []
            if self.ref_model is not None:  # beta > 0: TRL's reference model is the base
                self.kl_base = self.ref_model
            else:  # beta 0: TRL loads none; load the base as TRL would load its reference model
                from trl.models.utils import prepare_deepspeed
                from trl.trainer.utils import create_model_from_path

                base = create_model_from_path(base_path, dtype="float32")
                base.eval().requires_grad_(False)
                self.kl_base = (prepare_deepspeed(base, self.accelerator) if self.is_deepspeed_enabled
                                else base.to(self.accelerator.device))

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: ANN001, ANN202
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._last_rewards = torch.nansum(rewards * self.reward_weights.to(rewards.device).unsqueeze(0), dim=1)
            self._last_families = list(gather_object([str(x.get("family", "")) for x in inputs]))
            return rewards

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
            output = super()._generate_and_score_completions(inputs)
            if self.model.training:
                self.last_rollout = self._measure(output)
            return output

        @torch.no_grad()
        def _measure(self, output: dict[str, Any]) -> dict[str, float]:
            """Log-probs and full-vocabulary entropy of the policy and log-probs of the base at temperature 1 (the
            models' own; `ceiling.models.token_logprobs` on the unwrapped models, so TRL's tempered fused head is
            not used), on this process's rows; per-completion sums gathered from every process."""
            from ceiling.models import token_logprobs

            p_ids, p_mask = output["prompt_ids"], output["prompt_mask"]
            c_ids, c_mask = output["completion_ids"], output["completion_mask"]
            ids, mask, width = torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1), p_ids.size(1)
            policy = self.accelerator.unwrap_model(self.model)
            base = getattr(self.kl_base, "module", self.kl_base)
            with self.accelerator.autocast():
                logp, ent = token_logprobs(policy, ids, mask, width, entropy=True)
                ref, _ = token_logprobs(base, ids, mask, width, entropy=False)
            cm = c_mask.to(torch.float32)
            eos = torch.tensor(self.eos_token_ids, device=c_ids.device)
            ended = (torch.isin(c_ids, eos) & c_mask.bool()).any(dim=1)
            rows = torch.stack([(kl_k1(logp.float(), ref.float()) * cm).sum(1), (kl_k3(logp.float(), ref.float()) * cm).sum(1),
                                cm.sum(1), (ent.float() * cm).sum(1), (~ended).to(torch.float32),
                                p_mask.to(torch.float32).sum(1)], dim=1)
            rows = self.accelerator.gather(rows)
            return rollout_metrics(rows, self._last_rewards, self._last_families, self.num_generations)

    return CeilingGRPOTrainer


def _metrics_callback(run: Path, cfg: Any, trainer: Any, n_params: int, start: int, flops: float,
                      wall: float) -> Any:
    """The TrainerCallback that writes `metrics.jsonl` lines with our keys and publishes checkpoints."""
    from transformers import TrainerCallback

    from ceiling.rl.grpo import progress_line, step_flops

    u = updates_per_step(cfg)
    fused = cfg.updates_per_batch == 1 and cfg.num_minibatches == 1

    class CeilingMetrics(TrainerCallback):
        def __init__(self) -> None:
            self.flops, self.wall = flops, wall
            self.step_seconds, self.t0 = 0.0, 0.0
            self.updates: dict[str, list[float]] = {}

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_seconds += time.perf_counter() - self.t0
            g = state.global_step
            if g == cfg.steps * u:
                control.should_save = True  # theta_N is always a checkpoint
            elif g > cfg.steps * u:
                control.should_save = False  # the measuring step's update is not kept

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            g = state.global_step
            for key in UPDATE_KEYS:
                if logs and key in logs and g <= cfg.steps * u:
                    self.updates.setdefault(key, []).append(float(logs[key]))
            if g % u or not logs or "loss" not in logs:
                return
            step = g // u - 1
            trained = step < cfg.steps
            m: dict[str, Any] = {"step": step, **trainer.last_rollout}
            if trained:
                m.update({ours: sum(v) / len(v) for key, ours in UPDATE_KEYS.items() if (v := self.updates.get(key))})
                if cfg.beta > 0 and "kl" in logs:
                    m["loss/kl"] = cfg.beta * float(logs["kl"])
            dt = self.step_seconds
            m.update({"compute/flops": self.flops, "compute/wall_seconds": self.wall, "speed/seconds_per_step": dt,
                      "speed/completions_per_s": cfg.prompts_per_step * cfg.group_size / dt if dt > 0 else 0.0})
            if state.is_world_process_zero:
                append_jsonl(run / "metrics.jsonl", m)
                if cfg.log:
                    print(progress_line(step, cfg.steps, m), file=sys.stderr, flush=True)
            self.flops += step_flops(n_params, m["tokens/prompt"], m["tokens/completion"], cfg,
                                     separate_old_forward=not fused, trained=trained)
            self.wall += dt
            self.step_seconds, self.updates = 0.0, {}

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            g = state.global_step
            if g % u or g > cfg.steps * u or not state.is_world_process_zero:
                return
            publish_checkpoint(run, g // u, Path(args.output_dir) / f"checkpoint-{g}",
                               {"config_hash": cfg.config_hash(), "flops": self.flops, "wall_seconds": self.wall,
                                "trl_checkpoint": f"{TRL_DIR}/checkpoint-{g}", "trl_global_step": g})

    return CeilingMetrics()


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------

def train_trl(cfg: Any, resume: bool = False) -> Path:
    """Run `cfg` with TRL's GRPOTrainer in this process (one of `accelerate launch`'s, or alone); returns
    the run directory. With `resume`, continue from the last checkpoint (TRL restores optimizer, scheduler,
    RNG and data position from `trl/checkpoint-G`)."""
    torch = require("torch")
    require("trl")
    datasets = require("datasets", "trl")
    import transformers

    from ceiling.models import count_parameters
    from ceiling.rl.checkpoint import latest_checkpoint, read_state
    from ceiling.rl.grpo import prepare_run_dir
    from ceiling.tasks import TaskSet, trl_reward_fn

    cfg.validate()
    check_supported(cfg)
    if cfg.dtype != "float32" and cfg.device == "cpu":
        raise error_at(None, f"{cfg.dtype} needs a CUDA device; use float32 on CPU", field="dtype")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    run = Path(cfg.out)
    trl_cls = _trainer_class()
    from trl import GRPOConfig as TRLConfig

    world = int(os.environ.get("WORLD_SIZE", "1"))
    targs = TRLConfig(**trl_settings(cfg, world, run / TRL_DIR))
    if targs.world_size != world:
        raise CeilingError(f"trl engine: WORLD_SIZE says {world} processes but accelerate runs {targs.world_size}")
    scratch = Path(tempfile.mkdtemp(prefix="ceiling_trl_"))
    try:
        base = base_folder(cfg.base, scratch)
        with targs.main_process_first(local=False, desc="run directory"):
            if targs.process_index == 0:
                _, start, state = prepare_run_dir(cfg, resume)
                if start > 0 and state.get("engine") != "trl":
                    raise error_at(Path(state["path"]), "checkpoint was not made by the trl engine: resume it with "
                                                        "--engine native", field="engine")
                if start == 0:
                    publish_checkpoint(run, 0, base, {"config_hash": cfg.config_hash(), "flops": 0.0,
                                                      "wall_seconds": 0.0})
                atomic_write_json(run / ENGINE_FILE, engine_record(cfg, targs, world))
        start, path = latest_checkpoint(run) or (0, None)
        state = read_state(path) if path is not None else {}
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
        chat = getattr(tokenizer, "chat_template", None) is not None
        dataset = datasets.Dataset.from_list(step_rows(cfg, cfg.steps + 1, chat, tokenizer.bos_token or ""))
        trainer = trl_cls(model=str(base), reward_funcs=[trl_reward_fn(TaskSet.parse(cfg.tasks))], args=targs,
                          train_dataset=dataset, processing_class=tokenizer, base_path=str(base))
        trainer.remove_callback(transformers.PrinterCallback)  # our progress lines replace its log dicts
        n_params = count_parameters(trainer.accelerator.unwrap_model(trainer.model), non_embedding=True)
        trainer.add_callback(_metrics_callback(run, cfg, trainer, n_params, start, float(state.get("flops", 0.0)),
                                               float(state.get("wall_seconds", 0.0))))
        resume_from = str(run / state["trl_checkpoint"]) if start > 0 else None
        if resume_from is not None and not Path(resume_from).is_dir():
            raise error_at(resume_from, "TRL's checkpoint of the last step is gone: cannot resume its optimizer state")
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return run


def engine_record(cfg: Any, targs: Any, world: int) -> dict[str, Any]:
    """engine.json: which engine made the run, with versions and the TRL settings in effect."""
    import accelerate
    import trl

    keys = sorted(trl_settings(cfg, world, targs.output_dir))
    return {"engine": "trl", "trl_version": trl.__version__, "accelerate_version": accelerate.__version__,
            "processes": world, "distributed_type": str(targs.distributed_state.distributed_type),
            "trl_settings": {k: _plain(getattr(targs, k, None)) for k in keys}}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str, type(None), list, dict)) else str(value)


def launch_command(config_file: str | Path, resume: bool, processes: int,
                   accelerate_args: Sequence[str] = ()) -> list[str]:
    """The `accelerate launch` command line that runs `ceiling train --engine trl` in `processes` processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
           "--num_machines", "1", "--dynamo_backend", "no"]
    if processes > 1:
        cmd.append("--multi_gpu")  # accelerate's torchrun launcher; on CPU (device cpu: TRL's use_cpu) it is gloo
    cmd += [*accelerate_args, "-m", "ceiling.engines.trl", str(config_file)]
    return cmd + (["--resume"] if resume else [])


def launch(cfg: Any, resume: bool = False, processes: int = 1, accelerate_args: Sequence[str] = ()) -> Path:
    """Run the trl engine in `processes` processes under `accelerate launch` (1 and no accelerate arguments:
    in this process)."""
    if processes <= 1 and not accelerate_args:
        return train_trl(cfg, resume)
    require("accelerate", "trl")
    with tempfile.TemporaryDirectory(prefix="ceiling_trl_launch_") as tmp:
        config_file = Path(tmp) / "train.json"
        config_file.write_text(json.dumps(cfg.to_dict()))
        cmd = launch_command(config_file, resume, processes, accelerate_args)
        done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise CeilingError(f"accelerate launch of the trl engine failed (exit {done.returncode}): {' '.join(cmd)}")
    return Path(cfg.out)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ceiling.engines.trl CONFIG.json [--resume]`: one process of an `accelerate launch`."""
    import argparse

    from ceiling.io import read_json
    from ceiling.rl.grpo import GRPOConfig

    p = argparse.ArgumentParser(prog="python -m ceiling.engines.trl", description=main.__doc__)
    p.add_argument("config", help="a JSON object of GRPOConfig settings (out = the run directory)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    args = p.parse_args(argv)
    try:
        cfg = GRPOConfig.from_dict(read_json(args.config, what="settings file"), where=args.config)
        train_trl(cfg, resume=args.resume)
    except CeilingError as exc:
        print(f"ceiling: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
