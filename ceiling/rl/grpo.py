"""A lean GRPO-family RLVR loop, readable top to bottom (in the spirit of nanoGPT's train.py and CleanRL's ppo.py).

One *step* is: sample `prompts_per_step` problems from the verified task families, draw `group_size`
completions per prompt from the policy (batched, KV cache), score them with the verifiers, turn the scores
into group-relative advantages, and take `updates_per_batch` PPO epochs of `minibatches` AdamW steps each on
the clipped surrogate, optionally with a KL penalty to the frozen base model and an entropy bonus.

Loss types (all share the PPO ratio clip `[1 - epsilon_low, 1 + epsilon_high]`):
- `grpo`: token mean within each sequence, then mean over sequences (DeepSeekMath).
- `dr_grpo`: token sum divided by a constant (sequences x max_new_tokens), no std scaling of advantages
  (Liu et al. 2025, "Understanding R1-Zero-like training").
- `dapo`: token mean over all tokens of the batch, clip-higher (epsilon_high > epsilon_low) (Yu et al. 2025).

Step numbering (what `metrics.jsonl` line `step = s` means): the policy after `s` updates is theta_s, and
checkpoint `step_s` holds theta_s (step 0 = the base). Line s describes the batch *sampled from theta_s*
(reward, KL to the base, entropy, lengths) and the update theta_s -> theta_{s+1} made from it (loss, clip
fractions, grad norm, lr). A run of `steps = N` writes lines 0..N; the last line only measures theta_N
(its update fields are absent). `compute/flops` and `compute/wall_seconds` on line s are the cumulative cost
of producing theta_s, so the rollout metrics of a line sit at the compute that made their policy.

KL to the base is measured every step whatever `beta` is (0 included): the frozen base model scores the
policy's samples in one no-grad forward, and `kl/policy_base_*` is KL(policy || base) estimated on those
samples with k1 = log p - log q and k3 = q/p - 1 - log(q/p) (Schulman 2020), per token (mean over tokens)
and per sequence (sum over a completion's tokens, mean over completions).

FLOPs (`compute/flops`, cumulative): N = non-embedding parameters (`ceiling.models.count_parameters`, the
scaling-law convention: input embedding and output head left out). Per useful (non-pad) token:
2N for each forward pass of generation (prompt prefill + generated tokens), 2N for the reference forward,
2N for a separate old-policy forward (only when one is needed), and 6N per token per PPO epoch of training.
Attention-score FLOPs and padding are not counted (the usual 6N approximation).

Speed: generation uses the models' batched KV-cache sampler; the frozen base scores the samples in one
no-grad pass; with one PPO epoch and one minibatch (the default) the training forward itself gives the
policy's log-probs, entropy and KL (the ratio is exactly 1, so no separate old-policy pass); forward passes
group rows of similar completion length (`length_buckets`) so a long completion does not pad the short ones,
or keep each prompt's group together when that lets the prompt be computed once (`models.prefix`),
and split them into micro-batches that keep activation memory within a budget (`micro_batch_size`). On small
native Llamas (`models.llama`, the tiny bases) completions are packed end to end instead, so no padding is
computed at all (`models.prefix.packed_states`). The optimizer is `rl.optim.AdamW` (torch's arithmetic,
bitwise; it saves the ~75 MB import of torch._dynamo that any torch.optim optimizer triggers).

Randomness: every random choice of step s (problems, sampling, minibatch order, random-reward control) uses
a generator seeded from (seed, s), so a resumed run draws exactly what the uninterrupted one drew.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceiling.errors import CeilingError, error_at
from ceiling.io import append_jsonl, atomic_write_json
from ceiling.memory import keep_freed_memory
from ceiling.models import (
    LoadedModel,
    Rollout,
    count_parameters,
    format_prompts,
    load,
    resolve_device,
    sample,
    token_logprobs,
)
from ceiling.models.loading import BACKENDS
from ceiling.models.prefix import MIN_SAVING, can_pack, shares_prompts
from ceiling.progress import Heartbeat, is_terminal
from ceiling.rl.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    read_state,
    save_checkpoint,
    set_rng_state,
    truncate_metrics,
)
from ceiling.rl.optim import AdamW
from ceiling.tasks import Problem, TaskSet

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
KL_ESTIMATORS = ("k1", "k2", "k3")
STD_SCALINGS = ("group", "batch", "none")
DTYPES = ("float32", "bfloat16")
AUTO_ACTIVATION_BYTES_CPU = 2 * 2**30  # micro_batch_size 0: training activations kept under this on CPU ...
AUTO_ACTIVATION_SHARE_CUDA = 0.25  # ... and under this share of the GPU's memory on CUDA
CALL_OVERHEAD_TOKENS = {"cpu": 128, "cuda": 1024}  # a forward call's fixed cost in tokens (measured on CPU: on
# SmolLM2 finer buckets, e.g. 1 token, were 15-20% slower, the matmuls being smaller and prompts recomputed)


# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------

def _f(default: Any, doc: str) -> Any:
    """A dataclass field with a one-line doc (used for `--help` of `ceiling train`)."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class GRPOConfig:
    """Everything a run depends on. Written to `<out>/config.json`; a resume must match it."""

    base: str = _f("tiny-medium", "base model: a shipped tiny base name, 'smollm2', or a local HF folder")
    tasks: str = _f("default", "task set spec (TaskSet.parse); only its verified families are rewarded")
    steps: int = _f(50, "number of policy updates (metrics lines 0..steps are written)")
    prompts_per_step: int = _f(8, "problems sampled per step")
    group_size: int = _f(8, "completions per problem (G); advantages are relative within a group")
    max_new_tokens: int = _f(32, "completion length limit in tokens (also the dr_grpo normaliser)")
    temperature: float = _f(1.0, "sampling temperature (log-probs in the loss and KL are the model's own, at 1)")
    top_p: float = _f(1.0, "nucleus sampling threshold (1 = off)")
    loss_type: str = _f("grpo", "grpo (sequence mean) | dr_grpo (constant normaliser) | dapo (token mean)")
    epsilon_low: float = _f(0.2, "lower PPO clip: ratio is clipped below at 1 - epsilon_low")
    epsilon_high: float = _f(0.2, "upper PPO clip: ratio is clipped above at 1 + epsilon_high (DAPO: 0.28)")
    updates_per_batch: int = _f(1, "PPO epochs over each generated batch (1 = on-policy, ratio is 1)")
    minibatches: int = _f(1, "optimizer steps per PPO epoch (the batch is split into this many parts)")
    micro_batch_size: int = _f(0, "sequences per training forward, gradients accumulated (0 = auto, from an activation-memory budget)")
    beta: float = _f(0.0, "KL penalty coefficient to the base (KL is measured every step regardless)")
    kl_estimator: str = _f("k3", "estimator in the KL penalty: k1 | k2 | k3")
    std_scaling: str | None = _f(None, "advantage std scaling: group | batch | none (default: none for dr_grpo, else group)")
    entropy_coef: float = _f(0.0, "entropy bonus coefficient (0 = off)")
    lr: float = _f(1e-4, "AdamW peak learning rate")
    warmup_steps: int = _f(0, "linear learning-rate warm-up steps, then constant")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    adam_beta1: float = _f(0.9, "AdamW beta1")
    adam_beta2: float = _f(0.99, "AdamW beta2")
    max_grad_norm: float = _f(1.0, "gradient clipping threshold on the global norm (0 = off)")
    seed: int = _f(0, "seed of every random choice")
    device: str = _f("auto", "auto | cpu | cuda")
    backend: str = _f("auto", "model code: auto (ceiling's own Llama when the folder is a plain Llama, else transformers) | native | transformers")
    num_threads: int = _f(0, "CPU threads for torch (0 = torch's default); may change the last bits of results")
    dtype: str = _f("float32", "compute dtype: float32, or bfloat16 autocast on CUDA (weights and optimizer stay fp32)")
    checkpoint_every: int = _f(10, "save a checkpoint every K steps (and always at step 0 and the end)")
    out: str = _f("runs/grpo", "run directory")
    random_reward: bool = _f(False, "control: train on rewards drawn at random, independent of correctness")
    random_reward_p: float = _f(0.5, "probability of reward 1 under random_reward")
    log: bool = _f(True, "print one progress line per step")

    # Fields that may differ between a run and its resumption (everything else must match).
    RESUMABLE_CHANGES = ("steps", "out", "checkpoint_every", "log", "device", "num_threads", "backend")

    def resolved_std_scaling(self) -> str:
        """The advantage scaling in effect: the explicit choice, or the loss type's default."""
        if self.std_scaling is not None:
            return self.std_scaling
        return "none" if self.loss_type == "dr_grpo" else "group"

    def validate(self, where: str | Path | None = None) -> GRPOConfig:
        """Raise a one-line CeilingError naming the first bad field."""
        def bad(name: str, msg: str) -> CeilingError:
            return error_at(where, msg, field=name)

        if self.loss_type not in LOSS_TYPES:
            raise bad("loss_type", f"must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise bad("kl_estimator", f"must be one of {', '.join(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        if self.std_scaling is not None and self.std_scaling not in STD_SCALINGS:
            raise bad("std_scaling", f"must be one of {', '.join(STD_SCALINGS)}, got {self.std_scaling!r}")
        if self.backend not in BACKENDS:
            raise bad("backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("steps", "warmup_steps", "micro_batch_size", "seed", "num_threads"):
            if int(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        for name in ("prompts_per_step", "max_new_tokens", "updates_per_batch", "minibatches", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if self.group_size < 2:
            raise bad("group_size", "must be >= 2 (advantages are relative within a group)")
        if self.minibatches > self.prompts_per_step * self.group_size:
            raise bad("minibatches", "must not exceed prompts_per_step * group_size")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if not 0 <= self.epsilon_low < 1 or self.epsilon_high < 0:
            raise bad("epsilon_low" if not 0 <= self.epsilon_low < 1 else "epsilon_high", "clip range must satisfy 0 <= epsilon_low < 1, epsilon_high >= 0")
        for name in ("beta", "entropy_coef", "weight_decay", "max_grad_norm"):
            if float(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if not 0 <= self.random_reward_p <= 1:
            raise bad("random_reward_p", "must be in [0, 1]")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path | None = None) -> GRPOConfig:
        """Build a config from a JSON object; unknown keys or wrong types give a one-line error naming the field."""
        if not isinstance(data, dict):
            raise error_at(where, "a config must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise error_at(where, f"unknown setting (known: {', '.join(known)})", field=key)
            kwargs[key] = _coerce(key, value, known[key].type, where)
        return cls(**kwargs).validate(where)

    def config_hash(self) -> str:
        """A short hash of the settings that a resume must match."""
        import hashlib

        fixed = {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_CHANGES}
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


def _coerce(name: str, value: Any, annotation: Any, where: str | Path | None) -> Any:
    """Check a JSON value against a field's annotation ('int', 'float', 'str', 'bool', 'str | None')."""
    ann = str(annotation)
    if value is None and "None" in ann:
        return None
    try:
        if ann.startswith("bool"):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if ann.startswith("int"):
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(value)
        if ann.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if ann.startswith("str"):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise error_at(where, f"expected {ann.split(' ')[0]}, got {value!r}", field=name) from None
    return value


# --------------------------------------------------------------------------------------------------------
# The math: small pure functions on tensors
# --------------------------------------------------------------------------------------------------------

def group_advantages(rewards: torch.Tensor, group_size: int, std_scaling: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages A_i = (r_i - mean_group(r)) / (std + eps).

    `rewards` is [B] with the G completions of each prompt contiguous (B = prompts x G). `std_scaling`:
    "group" divides by each group's std, "batch" by the std of all B rewards, "none" only centres.
    The std is Bessel-corrected (divides by n - 1), as `torch.std` and TRL's GRPOTrainer do; `eps` keeps
    groups whose rewards are all equal at advantage 0 instead of 0/0.
    """
    r = rewards.reshape(-1, group_size).to(torch.float32)
    centred = r - r.mean(dim=1, keepdim=True)
    if std_scaling == "group":
        centred = centred / (r.std(dim=1, keepdim=True, unbiased=True) + eps)
    elif std_scaling == "batch":
        centred = centred / (r.std(unbiased=True) + eps)
    elif std_scaling != "none":
        raise ValueError(f"unknown std_scaling {std_scaling!r}")
    return centred.reshape(-1)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log p(x) - log q(x) per token, x ~ p: unbiased for KL(p || q), can be negative."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = (log p(x) - log q(x))^2 / 2 per token: biased, low variance, non-negative."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = q/p - 1 - log(q/p) per token, x ~ p: unbiased for KL(p || q) and never negative (computed with
    expm1, and clamped at 0 against rounding when p and q agree to the last bits)."""
    log_ratio = ref_logp - logp
    return (torch.expm1(log_ratio) - log_ratio).clamp(min=0.0)


KL_FUNCTIONS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def token_weights(mask: torch.Tensor, loss_type: str, max_new_tokens: int) -> torch.Tensor:
    """Per-token weights w such that a loss is `sum(w * per_token_loss)`, one [B, T] tensor per loss type.

    grpo: 1 / (B * len_i)  (token mean per sequence, then mean over sequences);
    dr_grpo: 1 / (B * max_new_tokens)  (a constant normaliser: no length bias);
    dapo: 1 / (total tokens)  (token mean over the whole batch).
    Padding positions (mask 0) get weight 0. Written as weights so micro-batches can accumulate exactly.
    """
    mask = mask.to(torch.float32)
    n_seq = mask.shape[0]
    if loss_type == "grpo":
        return mask / (mask.sum(dim=1, keepdim=True).clamp(min=1.0) * n_seq)
    if loss_type == "dr_grpo":
        return mask / (n_seq * max_new_tokens)
    if loss_type == "dapo":
        return mask / mask.sum().clamp(min=1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}")


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      epsilon_low: float, epsilon_high: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective per token, as a loss: -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A).

    Returns (loss [B, T], low_clipped [B, T] bool, high_clipped [B, T] bool); a token is "low clipped" when
    rho < 1 - eps_low with A < 0 and "high clipped" when rho > 1 + eps_high with A > 0 (the clip is active).
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.reshape(-1, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    low = (ratio < 1.0 - epsilon_low) & (adv < 0)
    high = (ratio > 1.0 + epsilon_high) & (adv > 0)
    return loss, low, high


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, weights: torch.Tensor,
                loss_type: str = "grpo", epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, kl_estimator: str = "k3",
                entropy: torch.Tensor | None = None, entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The full loss `sum(w * (clip_loss + beta * kl - entropy_coef * entropy))` and its terms as floats:
    "policy" = sum(w * clip_loss), "kl" = beta * sum(w * kl), "entropy" = entropy_coef * sum(w * entropy)
    (so loss = policy + kl - entropy; a term that is off is 0), plus clipped-token counts.

    `weights` comes from `token_weights(mask, loss_type, max_new_tokens)` computed on the whole minibatch
    (`loss_type` is only used to name things here; the aggregation lives in the weights).
    """
    pg, low, high = clipped_surrogate(logp, old_logp, advantages, epsilon_low, epsilon_high)
    total = pg
    parts: dict[str, float] = {"policy": float((weights * pg).sum().detach()), "kl": 0.0, "entropy": 0.0}
    if ref_logp is not None and beta > 0:
        kl = KL_FUNCTIONS[kl_estimator](logp, ref_logp)
        total = total + beta * kl
        parts["kl"] = beta * float((weights * kl).sum().detach())
    if entropy is not None and entropy_coef > 0:
        total = total - entropy_coef * entropy
        parts["entropy"] = entropy_coef * float((weights * entropy).sum().detach())
    mask = weights > 0
    parts["clip_low"] = float(low[mask].float().sum())
    parts["clip_high"] = float(high[mask].float().sum())
    return (weights * total).sum(), parts


def learning_rate(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up from lr / warmup_steps at update 0 to `lr` at update warmup_steps - 1, then constant."""
    if warmup_steps <= 0:
        return lr
    return lr * min(1.0, (step + 1) / warmup_steps)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of x over positions where mask is 1 (0.0 when the mask is empty)."""
    mask = mask.to(x.dtype)
    return float((x * mask).sum() / mask.sum().clamp(min=1.0))


def kl_summary(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """KL(policy || base) by k1 and k3 from policy samples: mean per token and mean per-sequence sum."""
    mask = mask.to(torch.float32)
    out: dict[str, float] = {}
    for name in ("k1", "k3"):
        per_token = KL_FUNCTIONS[name](logp.float(), ref_logp.float()) * mask
        out[f"kl/policy_base_{name}_token"] = float(per_token.sum() / mask.sum().clamp(min=1.0))
        out[f"kl/policy_base_{name}_seq"] = float(per_token.sum(dim=1).mean())
    return out


def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for random stream `stream` of step `step` (independent streams, stable across runs)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


STREAM_PROBLEMS, STREAM_SAMPLING, STREAM_MINIBATCH, STREAM_RANDOM_REWARD = 0, 1, 2, 3



# --------------------------------------------------------------------------------------------------------
# Rollouts: problems -> completions -> rewards -> advantages
# --------------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """One step's generated data. Rows are grouped: row i answers problems[rollout.group[i]]."""

    problems: list[Problem]
    rollout: Rollout
    rewards: torch.Tensor  # [B] verified reward of each completion (what the metrics report)
    train_rewards: torch.Tensor  # [B] the reward trained on (= rewards, or random under the control)
    advantages: torch.Tensor  # [B]


def collect(policy: LoadedModel, taskset: TaskSet, cfg: GRPOConfig, step: int, device: torch.device) -> Batch:
    """Sample problems and G completions each from the policy, score them, and compute advantages."""
    problems = taskset.sample(cfg.prompts_per_step, seed=step_seed(cfg.seed, step, STREAM_PROBLEMS),
                              split="train", which="verified")
    prompts = format_prompts(policy, [p.prompt for p in problems])
    gen = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, step, STREAM_SAMPLING))
    policy.model.eval()
    with autocast(device, cfg.dtype):
        rollout = sample(policy.model, policy.tokenizer, prompts, n_per_prompt=cfg.group_size,
                         max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                         generator=gen)
    groups = rollout.group.tolist()
    rewards = torch.tensor([taskset.verify(problems[g], text) for g, text in zip(groups, rollout.texts)],
                           dtype=torch.float32)
    train_rewards = rewards
    if cfg.random_reward:
        coin = torch.Generator().manual_seed(step_seed(cfg.seed, step, STREAM_RANDOM_REWARD))
        train_rewards = (torch.rand(len(groups), generator=coin) < cfg.random_reward_p).float()
    advantages = group_advantages(train_rewards, cfg.group_size, cfg.resolved_std_scaling())
    return Batch(problems, rollout, rewards.to(device), train_rewards.to(device), advantages.to(device))


def autocast(device: torch.device, dtype: str) -> Any:
    """bf16 autocast for forward passes when asked (weights and optimizer stay fp32); else a no-op."""
    enabled = dtype != "float32"
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype), enabled=enabled)


def bucket_cost(width: Any, rows: Any, distinct_prompts: Any, prompt_len: int, overhead_tokens: int,
                share_prompts: bool) -> Any:
    """Tokens one forward over `rows` rows padded to `width` completion tokens computes, plus the call
    overhead: with prompt sharing (`ceiling.models.prefix`, used when it skips >= MIN_SAVING of the
    tokens) each distinct prompt is computed once and the completions run in a second call. Elementwise
    on numpy arrays (the bucketing programme prices all candidate buckets ending at a row at once)."""
    plain = np.asarray(rows) * (prompt_len + np.asarray(width))
    saved = (np.asarray(rows) - np.asarray(distinct_prompts)) * prompt_len
    shared = np.logical_and(share_prompts, saved >= MIN_SAVING * plain)
    return np.where(shared, plain - saved + 2 * overhead_tokens, plain + overhead_tokens).astype(float)


def length_buckets(lengths: list[int], prompt_len: int, max_rows: int, overhead_tokens: int,
                   groups: list[int] | None = None, share_prompts: bool = False) -> list[tuple[int, int]]:
    """Cut rows, in the given order, into contiguous buckets [(start, end), ...] of at most `max_rows` rows
    that minimise the total `bucket_cost` (padded tokens computed plus a fixed cost per forward call).
    `groups` (the prompt of each row) lets a bucket count its distinct prompts once when `share_prompts`.
    Exact dynamic programme over cut points."""
    return _buckets(lengths, prompt_len, max_rows, overhead_tokens, groups, share_prompts)[0]


def _buckets(lengths: list[int], prompt_len: int, max_rows: int, overhead_tokens: int,
             groups: list[int] | None, share_prompts: bool) -> tuple[list[tuple[int, int]], float]:
    n = len(lengths)
    if n == 0:
        return [], 0.0
    band = min(max_rows, n)
    lens = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    grp = np.asarray(groups if groups is not None else range(n), dtype=np.int64)
    # Price every candidate bucket [j - d, j] (last row j, d + 1 rows) at once, as arrays [n, band]:
    # its width (longest completion) and its distinct prompts, grown one row leftwards per column d.
    order = np.lexsort((np.arange(n), grp))
    same_next = np.full(n, n, dtype=np.int64)  # the next row of the same prompt group (n: none)
    follows = grp[order][1:] == grp[order][:-1]
    same_next[order[:-1][follows]] = order[1:][follows]
    ends = np.arange(n)
    width = np.zeros((n, band), dtype=np.int32)  # int32 / float32: n x band arrays (2,048 rows: ~4 MB each)
    distinct = np.zeros((n, band), dtype=np.int32)
    width[:, 0], distinct[:, 0] = lens, 1
    for d in range(1, band):
        start = ends - d
        ok = start >= 0
        s_idx = np.where(ok, start, 0)
        width[:, d] = np.maximum(width[:, d - 1], lens[s_idx])
        distinct[:, d] = distinct[:, d - 1] + (same_next[s_idx] > ends)  # a prompt not seen further right
    rows = np.arange(1, band + 1)[None, :]
    cost = bucket_cost(width, rows, distinct, prompt_len, overhead_tokens, share_prompts)
    cost[ends[:, None] - rows + 1 < 0] = math.inf  # buckets that would start before row 0
    best = np.zeros(n + 1)  # best[j]: cost of rows [0, j)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        k = min(band, j)  # candidate buckets [j - 1 - d, j), d = 0 .. k - 1
        total = best[j - 1 - np.arange(k)] + cost[j - 1, :k]
        d = int(np.argmin(total))  # the first minimum: the shortest bucket among equals
        best[j], cut[j] = total[d], j - 1 - d
    spans, j = [], n
    while j > 0:
        spans.append((int(cut[j]), j))
        j = int(cut[j])
    return spans[::-1], float(best[n])


def micro_batches(rows: torch.Tensor, lengths: torch.Tensor, prompt_len: int, max_rows: int,
                  device: torch.device, groups: torch.Tensor | None = None,
                  share_prompts: bool = False, overhead_tokens: int = 128, packed: bool = False) -> list[torch.Tensor]:
    """Row indices in forward-pass chunks that compute few tokens: rows sorted by completion length (little
    padding), or, when prompts can be shared, whole prompt groups kept together (each prompt computed
    once; groups ordered by their longest completion, rows by length within a group), whichever order's
    best cut (`length_buckets`, a call costing `overhead_tokens` besides its tokens) computes fewer tokens.
    `packed` (the model scores packed completions, `models.prefix.packed_states`): padding costs nothing,
    so the grouped order is cut into as few chunks of `max_rows` as there can be."""
    lens = lengths[rows].cpu()
    by_length = grouped = torch.argsort(lens, stable=True)
    grp = groups[rows].cpu() if groups is not None else None
    if (share_prompts or packed) and grp is not None:
        longest = torch.zeros(int(grp.max()) + 1, dtype=lens.dtype).scatter_reduce(0, grp, lens, reduce="amax")
        grouped = by_length[torch.argsort(grp[by_length], stable=True)]  # stable sorts, last key first: length
        grouped = grouped[torch.argsort(longest[grp[grouped]], stable=True)]  # in a group, groups by their longest
    if packed:
        order = rows[grouped.to(rows.device)]
        return [order[a : a + max_rows] for a in range(0, len(order), max_rows)]
    candidates = [by_length] if grouped is by_length else [by_length, grouped]
    best: tuple[float, list[tuple[int, int]], torch.Tensor] | None = None
    for perm in candidates:
        spans, cost = _buckets(lens[perm].tolist(), prompt_len, max_rows, overhead_tokens,
                               None if grp is None else grp[perm].tolist(), share_prompts)
        if best is None or cost < best[0]:
            best = (cost, spans, perm)
    assert best is not None
    order = rows[best[2].to(rows.device)]
    return [order[a:b] for a, b in best[1]]


def micro_batch_size(cfg: GRPOConfig, rollout: Rollout, model: Any, device: torch.device, grad: bool = True) -> int:
    """Sequences per forward: the configured number, or (0) as many as keep the training activations within
    budget (2 GiB on CPU, a quarter of the GPU), estimated as 4 bytes x (layers x (10 hidden + 4 MLP) + vocab)
    per token (the vocabulary term: the head's kept probabilities, `models.logprobs.HeadStats`), a shared
    prompt counting once per group; passes without gradients keep far less and take 4x as many. On SmolLM2
    (2 cores) the update took 28-29 s a step at 10 rows per micro-batch (the old 1 GiB budget), 26 s at 20
    (this budget, +0.8 GB peak) and 25-26 s at 32 (+2.6 GB)."""
    if cfg.micro_batch_size > 0:
        size = cfg.micro_batch_size
    else:
        c = model.config
        hidden = int(getattr(c, "hidden_size", 1024))
        per_token = 4 * (int(getattr(c, "num_hidden_layers", 24)) * (10 * hidden + 4 * int(getattr(c, "intermediate_size", 4 * hidden)))
                         + int(getattr(c, "vocab_size", 32000)))
        budget = AUTO_ACTIVATION_BYTES_CPU
        if device.type == "cuda":
            budget = int(AUTO_ACTIVATION_SHARE_CUDA * torch.cuda.get_device_properties(device).total_memory)
        prompt = rollout.prompt_len
        if shares_prompts(model):  # a group's prompt is computed once (`micro_batches` keeps groups together)
            prompt = math.ceil(prompt / max(1, cfg.group_size))
        size = max(1, budget // per_token // (prompt + max(int(rollout.lengths.max()), 1)))
    return size if grad else 4 * size


def forward_logprobs(model: Any, batch: Batch, rows: torch.Tensor, cfg: GRPOConfig, device: torch.device,
                     entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Completion-token log-probs (and entropy) of `rows`, trimmed to their longest completion: [n, T_rows]."""
    r = batch.rollout
    width = r.prompt_len + max(int(r.lengths[rows].max()), 1)
    with autocast(device, cfg.dtype):
        return token_logprobs(model, r.input_ids[rows, :width], r.attention_mask[rows, :width], r.prompt_len,
                              entropy=entropy)


@torch.no_grad()
def score_all(model: Any, batch: Batch, cfg: GRPOConfig, device: torch.device,
              entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One no-grad pass of `model` over the whole batch, in micro-batches: (logp [B, T], entropy [B, T])."""
    r = batch.rollout
    logp = torch.zeros(r.completion_mask.shape, dtype=torch.float32, device=device)
    ent = torch.zeros_like(logp) if entropy else None
    size = micro_batch_size(cfg, r, model, device, grad=False)
    share = shares_prompts(model)
    overhead = CALL_OVERHEAD_TOKENS.get(device.type, CALL_OVERHEAD_TOKENS["cuda"])
    for rows in micro_batches(torch.arange(r.batch_size, device=device), r.lengths, r.prompt_len, size, device,
                              groups=r.group, share_prompts=share, overhead_tokens=overhead, packed=can_pack(model)):
        lp, en = forward_logprobs(model, batch, rows, cfg, device, entropy)
        logp[rows, : lp.shape[1]] = lp
        if ent is not None and en is not None:
            ent[rows, : en.shape[1]] = en
    return logp, ent


# --------------------------------------------------------------------------------------------------------
# The update: PPO epochs x minibatches of AdamW steps on the clipped surrogate
# --------------------------------------------------------------------------------------------------------

def update(model: Any, optimizer: AdamW, batch: Batch, ref_logp: torch.Tensor,
           old_logp: torch.Tensor | None, cfg: GRPOConfig, step: int,
           device: torch.device) -> tuple[dict[str, float], torch.Tensor | None, torch.Tensor | None]:
    """Train on one batch. `old_logp` None means on-policy single pass (ratio 1): the training forward
    itself supplies the policy log-probs and entropy for the metrics, returned as (metrics, logp, entropy)."""
    r = batch.rollout
    mask = r.completion_mask.float()
    n = r.batch_size
    fused = old_logp is None
    seen_logp = torch.zeros_like(mask) if fused else None
    seen_ent = torch.zeros_like(mask) if fused else None
    lr = learning_rate(step, cfg.lr, cfg.warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = {"policy": 0.0, "kl": 0.0, "entropy": 0.0, "total": 0.0, "clip_low": 0.0, "clip_high": 0.0}
    grad_norms: list[float] = []
    n_updates, n_tokens = 0, 0.0
    order_gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, STREAM_MINIBATCH))
    mb_size = micro_batch_size(cfg, r, model, device)
    overhead = CALL_OVERHEAD_TOKENS.get(device.type, CALL_OVERHEAD_TOKENS["cuda"])
    model.train()
    share = shares_prompts(model)
    for _epoch in range(cfg.updates_per_batch):
        order = torch.arange(n) if cfg.minibatches == 1 else torch.randperm(n, generator=order_gen)
        for mb in torch.tensor_split(order.to(device), cfg.minibatches):
            weights = token_weights(mask[mb], cfg.loss_type, cfg.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            for rows in micro_batches(torch.arange(len(mb), device=device), r.lengths[mb], r.prompt_len, mb_size,
                                      device, groups=r.group[mb], share_prompts=share, overhead_tokens=overhead,
                                      packed=can_pack(model)):
                idx = mb[rows]
                need_ent = fused or cfg.entropy_coef > 0
                logp, ent = forward_logprobs(model, batch, idx, cfg, device, entropy=need_ent)
                t = logp.shape[1]
                old = logp.detach() if fused else old_logp[idx, :t]
                loss, parts = policy_loss(
                    logp, old, batch.advantages[idx], weights[rows, :t], cfg.loss_type, cfg.epsilon_low,
                    cfg.epsilon_high, ref_logp=ref_logp[idx, :t], beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                    entropy=ent if cfg.entropy_coef > 0 else None, entropy_coef=cfg.entropy_coef)
                loss.backward()
                if fused:
                    seen_logp[idx, :t] = logp.detach()
                    seen_ent[idx, :t] = ent.detach()
                sums["total"] += float(loss.detach()) / cfg.minibatches / cfg.updates_per_batch
                for key in ("policy", "kl", "entropy"):
                    sums[key] += parts.get(key, 0.0) / cfg.minibatches / cfg.updates_per_batch
                sums["clip_low"] += parts["clip_low"]
                sums["clip_high"] += parts["clip_high"]
                n_tokens += float(mask[idx].sum())
            clip = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
            optimizer.step()
            n_updates += 1
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    metrics = {
        "loss/total": sums["total"], "loss/policy": sums["policy"], "loss/kl": sums["kl"],
        "loss/entropy": sums["entropy"], "optim/grad_norm": float(np.mean(grad_norms)), "optim/lr": lr,
        "optim/updates": n_updates,
        "clip/low_frac": sums["clip_low"] / max(n_tokens, 1.0), "clip/high_frac": sums["clip_high"] / max(n_tokens, 1.0),
    }
    return metrics, seen_logp, seen_ent


# --------------------------------------------------------------------------------------------------------
# Per-step measurements
# --------------------------------------------------------------------------------------------------------

def rollout_metrics(batch: Batch, logp: torch.Tensor, ref_logp: torch.Tensor, entropy: torch.Tensor,
                    verified_families: Iterable[str], random_reward: bool) -> dict[str, float]:
    """Reward, KL to the base, entropy and length statistics of one step's samples (policy theta_s)."""
    r = batch.rollout
    mask = r.completion_mask
    rewards = batch.rewards.float().cpu()
    by_group = rewards.reshape(-1, r.batch_size // len(batch.problems))
    out: dict[str, float] = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std(unbiased=False)),
        "reward/zero_std_frac": float((by_group.std(dim=1, unbiased=False) == 0).float().mean()),
    }
    if random_reward:
        out["reward/train_mean"] = float(batch.train_rewards.float().mean())
    fams = [batch.problems[g].family for g in r.group.tolist()]
    for fam in verified_families:
        vals = [float(x) for x, f in zip(rewards.tolist(), fams) if f == fam]
        if vals:
            out[f"reward/family/{fam}"] = float(np.mean(vals))
    out.update(kl_summary(logp, ref_logp, mask))
    lengths = r.lengths.float()
    out.update({
        "policy/entropy": masked_mean(entropy, mask),
        "length/mean": float(lengths.mean()),
        "length/max": float(lengths.max()),
        "length/truncated_frac": float(r.truncated.float().mean()),
        "tokens/prompt": float(r.attention_mask[:, : r.prompt_len].sum()),
        "tokens/completion": float(lengths.sum()),
    })
    return out


def step_flops(n_params: int, prompt_tokens: float, completion_tokens: float, cfg: GRPOConfig,
               separate_old_forward: bool, trained: bool) -> float:
    """FLOPs of one step (see the module docstring): generation, reference forward, old-policy forward, training."""
    tokens = prompt_tokens + completion_tokens
    flops = 2.0 * n_params * tokens  # generation: prefill + one forward per generated token
    flops += 2.0 * n_params * tokens  # reference (base) forward
    if separate_old_forward:
        flops += 2.0 * n_params * tokens
    if trained:
        flops += 6.0 * n_params * tokens * cfg.updates_per_batch
    return flops


def progress_line(step: int, steps: int, m: dict[str, Any]) -> str:
    """One readable terminal line per step."""
    text = (f"step {step:>5}/{steps}  reward {m['reward/mean']:.3f}  kl_k3 {m['kl/policy_base_k3_seq']:.4f}  "
            f"entropy {m['policy/entropy']:.3f}  len {m['length/mean']:.1f}")
    if "optim/grad_norm" in m:
        text += f"  gnorm {m['optim/grad_norm']:.3f}  lr {m['optim/lr']:.2e}"
    return text + f"  {m['speed/seconds_per_step']:.2f}s  {m['speed/completions_per_s']:.1f} compl/s"


# --------------------------------------------------------------------------------------------------------
# The run: set-up, resume, the loop, checkpoints
# --------------------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_resume_config(stored: GRPOConfig, asked: GRPOConfig, where: Path) -> None:
    """Refuse to resume a run with different settings (one line naming the first differing field)."""
    a, b = stored.to_dict(), asked.to_dict()
    for name in a:
        if name not in GRPOConfig.RESUMABLE_CHANGES and a[name] != b.get(name):
            raise error_at(where, f"cannot resume with a different setting: run has {a[name]!r}, asked "
                                  f"{b.get(name)!r}", field=name)


def prepare_run_dir(cfg: GRPOConfig, resume: bool) -> tuple[Path, int, dict[str, Any]]:
    """Create or reopen the run folder. Returns (run dir, first step, state of the checkpoint resumed from)."""
    run = Path(cfg.out)
    config_file, metrics_file = run / "config.json", run / "metrics.jsonl"
    if resume and config_file.exists():
        try:
            stored = GRPOConfig.from_dict(json.loads(config_file.read_text()), where=config_file)
        except ValueError:
            raise error_at(config_file, "unreadable run config") from None
        check_resume_config(stored, cfg, config_file)
        found = latest_checkpoint(run)
        if found is not None:
            step, path = found
            state = read_state(path)
            if state.get("config_hash") != cfg.config_hash():
                raise error_at(path / "trainer_state.json", "checkpoint was made with different settings", field="config_hash")
            truncate_metrics(metrics_file, keep_before=step)
            atomic_write_json(config_file, cfg.to_dict())
            return run, step, {**state, "path": str(path)}
    elif config_file.exists() or metrics_file.exists() or (run / "checkpoints").exists():
        raise error_at(run, "run directory already holds a run: pass --resume to continue it, or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_file, cfg.to_dict())
    truncate_metrics(metrics_file, keep_before=0)
    return run, 0, {}


def train(cfg: GRPOConfig, resume: bool = False) -> Path:
    """Run GRPO-family RL as configured; returns the run directory. With `resume`, continue from the last
    complete checkpoint of `cfg.out` (metrics past it are dropped and recomputed identically)."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:  # in a log (not a terminal), a line at least every 10 s even when one step takes longer
        with Heartbeat("train: loading the models", enabled=cfg.log and not is_terminal()) as beat:
            return _run(cfg, resume, beat)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: GRPOConfig, resume: bool, beat: Heartbeat) -> Path:
    """The body of `train` (see there); `beat.now` says what is running, for the progress heartbeat."""

    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()  # a step's large temporaries reuse pages instead of faulting them in (`ceiling.memory`)
    if cfg.dtype != "float32" and device.type != "cuda":
        raise error_at(None, f"{cfg.dtype} needs a CUDA device; use float32 on CPU", field="dtype")
    taskset = TaskSet.parse(cfg.tasks)
    run, start, state = prepare_run_dir(cfg, resume)
    seed_everything(cfg.seed)

    # Models: the policy (base or last checkpoint), and the frozen base as reference for KL.
    policy = load(state.get("path", cfg.base), device=device, dtype=torch.float32, backend=cfg.backend)
    ref = load(cfg.base, device=device, dtype=torch.float32 if cfg.dtype == "float32" else cfg.dtype, backend=cfg.backend)
    ref.model.eval().requires_grad_(False)
    optimizer = AdamW(policy.model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay)
    if state:
        load_optimizer(optimizer, Path(state["path"]) / "optimizer.safetensors")
        set_rng_state(state["rng"])
    n_params = count_parameters(policy.model, non_embedding=True)
    flops, wall = float(state.get("flops", 0.0)), float(state.get("wall_seconds", 0.0))
    fused = cfg.updates_per_batch == 1 and cfg.minibatches == 1
    verified = taskset.names("verified")

    for step in range(start, cfg.steps + 1):
        # 1. checkpoint theta_step (step 0 = the base; the resumed-from checkpoint already exists)
        if (step % cfg.checkpoint_every == 0 or step == cfg.steps) and not (state and step == start):
            save_checkpoint(run, step, policy.model, policy.tokenizer, optimizer,
                            {"config_hash": cfg.config_hash(), "flops": flops, "wall_seconds": wall})
        t0 = time.perf_counter()
        beat.now = f"train: step {step}/{cfg.steps} running"
        # 2. sample from theta_step, score, advantages
        batch = collect(policy, taskset, cfg, step, device)
        ref_logp, _ = score_all(ref.model, batch, cfg, device, entropy=False)
        # 3. update theta_step -> theta_{step+1} (not after the last step: that line only measures)
        train_now = step < cfg.steps
        old_logp = ent = None
        if not (fused and train_now):
            old_logp, ent = score_all(policy.model, batch, cfg, device, entropy=True)
        upd: dict[str, float] = {}
        if train_now:
            upd, seen_logp, seen_ent = update(policy.model, optimizer, batch, ref_logp, old_logp, cfg, step, device)
            if fused:
                old_logp, ent = seen_logp, seen_ent
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        # 4. log line `step`: rollout of theta_step, the update made from it, cost of producing theta_step
        m: dict[str, Any] = {"step": step}
        m.update(rollout_metrics(batch, old_logp, ref_logp, ent, verified, cfg.random_reward))
        m.update(upd)
        m.update({"compute/flops": flops, "compute/wall_seconds": wall, "speed/seconds_per_step": dt,
                  "speed/completions_per_s": batch.rollout.batch_size / dt})
        append_jsonl(run / "metrics.jsonl", m)
        if cfg.log:
            print(progress_line(step, cfg.steps, m), file=sys.stderr, flush=True)
            beat.beat()
        flops += step_flops(n_params, m["tokens/prompt"], m["tokens/completion"], cfg,
                            separate_old_forward=not fused, trained=train_now)
        wall += dt
    return run
