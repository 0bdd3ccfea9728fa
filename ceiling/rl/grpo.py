"""A lean GRPO-family RLVR loop, readable top to bottom (in the spirit of nanoGPT's train.py and CleanRL's ppo.py).

One *step* is: sample `prompts_per_step` problems from the verified task families, draw `group_size`
completions per prompt from the policy (batched, KV cache), score them with the verifiers, turn the scores
into group-relative advantages, and take `updates_per_batch` PPO epochs of `num_minibatches` AdamW steps each on
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
Attention-score FLOPs and padding are not counted (the usual 6N approximation). Supervised examples of
the mix-in (below) are training tokens like any other: 6N per non-pad token (prompt + answer) per epoch.

Speed: generation uses the models' batched KV-cache sampler; the frozen base scores the samples in one
no-grad pass; with one PPO epoch and one minibatch (the default) the training forward itself gives the
policy's log-probs, entropy and KL (the ratio is exactly 1, so no separate old-policy pass). Which rows share
a forward pass, and how many, is `ceiling.models.batching`'s business (`model_chunks`, `rows_per_forward`):
it changes no number. The optimizer is `rl.optim.AdamW` (torch's arithmetic, bitwise, without importing
torch._dynamo as torch.optim does).

Supervised mix-in (off by default; `ceiling.rl.mixin` documents it and what it simplifies): with
`sft_examples_per_step` = n > 0, each update from `sft_from_step` on (until `sft_until_step`, 0 = the end)
also trains on n supervised examples (by default problems of the train split in sub-spaces the base's
corpus did not cover, with their correct answers): each minibatch's loss gains `sft_coef` x the mean NLL
of its share of the examples' answer tokens. Line s then has `sft/loss` (that NLL), `sft/examples`,
`sft/answer_tokens` and `sft/tokens` (what the compute counts), and `loss/total` includes the term.

Randomness: every random choice of step s (problems, sampling, minibatch order, random-reward control,
supervised examples) uses a generator seeded from (seed, s), so a resumed run draws exactly what the
uninterrupted one drew.
"""
from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceiling import config
from ceiling.errors import CeilingError, error_at
from ceiling.io import append_jsonl, atomic_write_json, read_json
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
from ceiling.models.batching import model_chunks, rows_per_forward
from ceiling.models.loading import BACKENDS
from ceiling.progress import Heartbeat, is_terminal
from ceiling.rl.checkpoint import (
    latest_checkpoint,
    load_optimizer,
    read_state,
    save_checkpoint,
    set_rng_state,
    truncate_metrics,
)
from ceiling.rl import mixin
from ceiling.rl.optim import AdamW
from ceiling.tasks import Problem, TaskSet

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
KL_ESTIMATORS = ("k1", "k2", "k3")
STD_SCALINGS = ("group", "batch", "none")
DTYPES = ("float32", "bfloat16")


# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------

# Fields renamed since runs were first saved (old name -> new): a stored config.json with an old name loads.
RENAMED = {"minibatches": "num_minibatches"}

@dataclass
class GRPOConfig:
    """Everything a run depends on. Written to `<out>/config.json`; a resume must match it."""

    base: str = "tiny-medium"
    """Base model: a shipped tiny base name, 'smollm2', or a local HF folder."""
    tasks: str = "default"
    """Task set spec (TaskSet.parse); only its verified families are rewarded."""
    steps: int = 50
    """Number of policy updates (metrics lines 0..steps are written)."""
    prompts_per_step: int = 8
    """Problems sampled per step."""
    group_size: int = 8
    """Completions per problem (G); advantages are relative within a group."""
    max_new_tokens: int = 32
    """Completion length limit in tokens (also the dr_grpo normaliser)."""
    temperature: float = 1.0
    """Sampling temperature (log-probs in the loss and KL are the model's own, at 1)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1 = off)."""
    loss_type: str = "grpo"
    """Loss aggregation: grpo (sequence mean) | dr_grpo (constant normaliser) | dapo (token mean)."""
    epsilon_low: float = 0.2
    """Lower PPO clip: ratio is clipped below at 1 - epsilon_low."""
    epsilon_high: float = 0.2
    """Upper PPO clip: ratio is clipped above at 1 + epsilon_high (DAPO: 0.28)."""
    updates_per_batch: int = 1
    """PPO epochs over each generated batch (1 = on-policy, ratio is 1)."""
    num_minibatches: int = 1
    """Optimizer steps per PPO epoch (the batch is split into this many minibatches)."""
    micro_batch_size: int = 0
    """Sequences per training forward, gradients accumulated (0 = auto, from an activation-memory budget)."""
    beta: float = 0.0
    """KL penalty coefficient to the base (KL is measured every step regardless)."""
    kl_estimator: str = "k3"
    """Estimator in the KL penalty: k1 | k2 | k3."""
    std_scaling: str | None = None
    """Advantage std scaling: group | batch | none (default: none for dr_grpo, else group)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (0 = off)."""
    lr: float = 1e-4
    """AdamW peak learning rate."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps, then constant."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.99
    """AdamW beta2."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold on the global norm (0 = off)."""
    seed: int = 0
    """Seed of every random choice."""
    device: str = "auto"
    """auto, cpu or cuda."""
    backend: str = "auto"
    """Model code: auto (ceiling's own Llama when the folder is a plain Llama, else transformers) | native | transformers."""
    num_threads: int = 0
    """CPU threads for torch (0 = torch's default); may change the last bits of results."""
    dtype: str = "float32"
    """Compute dtype: float32, or bfloat16 autocast on CUDA (weights and optimizer stay fp32)."""
    checkpoint_every: int = 10
    """Save a checkpoint every K steps (and always at step 0 and the end)."""
    out: str = "runs/grpo"
    """Run directory."""
    random_reward: bool = False
    """Control: train on rewards drawn at random, independent of correctness."""
    random_reward_p: float = 0.5
    """Probability of reward 1 under random_reward."""
    log: bool = True
    """Print one progress line per step."""
    sft_examples_per_step: int = 0
    """Supervised examples added to each update's loss while the mix-in is on (0 = off; see ceiling.rl.mixin)."""
    sft_from_step: int = 0
    """First update (theta_s -> theta_s+1) that carries supervised examples."""
    sft_until_step: int = 0
    """Update at which the mix-in stops, exclusive (0 = it runs to the end)."""
    sft_coef: float = 1.0
    """Weight of the examples' mean answer-token NLL in the loss."""
    sft_source: str = "uncovered"
    """Examples: uncovered (train problems in sub-spaces the base's corpus did not cover) | all (any train problem)."""

    # Fields that may differ between a run and its resumption (everything else must match).
    RESUMABLE_CHANGES = ("steps", "out", "checkpoint_every", "log", "device", "num_threads", "backend")
    # Fields added after runs were first saved: in the config hash only when not at their default, so runs
    # saved before they existed keep their hash (and resume).
    HASHED_WHEN_SET = ("sft_examples_per_step", "sft_from_step", "sft_until_step", "sft_coef", "sft_source")

    def __post_init__(self) -> None:
        self.validate()

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
        for name in ("steps", "warmup_steps", "micro_batch_size", "seed", "num_threads", "sft_examples_per_step",
                     "sft_from_step", "sft_until_step"):
            if int(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        for name in ("prompts_per_step", "max_new_tokens", "updates_per_batch", "num_minibatches", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if self.group_size < 2:
            raise bad("group_size", "must be >= 2 (advantages are relative within a group)")
        if self.num_minibatches > self.prompts_per_step * self.group_size:
            raise bad("num_minibatches", "must not exceed prompts_per_step * group_size")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if not 0 <= self.epsilon_low < 1 or self.epsilon_high < 0:
            raise bad("epsilon_low" if not 0 <= self.epsilon_low < 1 else "epsilon_high", "clip range must satisfy 0 <= epsilon_low < 1, epsilon_high >= 0")
        for name in ("beta", "entropy_coef", "weight_decay", "max_grad_norm", "sft_coef"):
            if float(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if not 0 <= self.random_reward_p <= 1:
            raise bad("random_reward_p", "must be in [0, 1]")
        if self.sft_source not in mixin.SFT_SOURCES:
            raise bad("sft_source", f"must be one of {', '.join(mixin.SFT_SOURCES)}, got {self.sft_source!r}")
        if 0 < self.sft_until_step <= self.sft_from_step:
            raise bad("sft_until_step", "must be 0 (to the end) or > sft_from_step")
        return self

    def to_dict(self) -> dict[str, Any]:
        return config.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path | None = None) -> GRPOConfig:
        """A config from a JSON object (a run's config.json, a --config file); one-line errors name the field."""
        return config.from_dict(cls, data, where, renamed=RENAMED)

    def config_hash(self) -> str:
        """A short hash of the settings that a resume must match (under the fields' first names, so that
        runs made before a rename still resume)."""
        import hashlib

        first_name = {new: old for old, new in RENAMED.items()}
        defaults = GRPOConfig.__dataclass_fields__
        fixed = {first_name.get(k, k): v for k, v in self.to_dict().items() if k not in self.RESUMABLE_CHANGES
                 and not (k in self.HASHED_WHEN_SET and v == defaults[k].default)}
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


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
                epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, kl_estimator: str = "k3",
                entropy: torch.Tensor | None = None, entropy_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The full loss `sum(w * (clip_loss + beta * kl - entropy_coef * entropy))` and its terms as floats:
    "policy" = sum(w * clip_loss), "kl" = beta * sum(w * kl), "entropy" = entropy_coef * sum(w * entropy)
    (so loss = policy + kl - entropy; a term that is off is 0), plus clipped-token counts.

    `weights` comes from `token_weights(mask, loss_type, max_new_tokens)` computed on the whole minibatch:
    the loss type's aggregation lives in the weights.
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


STREAM_PROBLEMS, STREAM_SAMPLING, STREAM_MINIBATCH, STREAM_RANDOM_REWARD, STREAM_SFT = 0, 1, 2, 3, 4



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


def roll_out(policy: LoadedModel, taskset: TaskSet, cfg: GRPOConfig, step: int, device: torch.device) -> Batch:
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
    size = rows_per_forward(model, device, r.prompt_len, int(r.lengths.max()), cfg.group_size, cfg.micro_batch_size,
                            grad=False)
    for rows in model_chunks(model, device, torch.arange(r.batch_size, device=device), r.lengths, r.group,
                             r.prompt_len, size):
        lp, en = forward_logprobs(model, batch, rows, cfg, device, entropy)
        logp[rows, : lp.shape[1]] = lp
        if ent is not None and en is not None:
            ent[rows, : en.shape[1]] = en
    return logp, ent


# --------------------------------------------------------------------------------------------------------
# The update: PPO epochs x minibatches of AdamW steps on the clipped surrogate
# --------------------------------------------------------------------------------------------------------

@dataclass
class UpdateResult:
    """What one update did: its metrics (loss/*, optim/*, clip/*) and, for an on-policy update in one pass,
    the policy's token log-probs and entropy [B, T] as its training forward computed them (None otherwise)."""

    metrics: dict[str, float]
    logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def update(model: Any, optimizer: AdamW, batch: Batch, ref_logp: torch.Tensor,
           old_logp: torch.Tensor | None, cfg: GRPOConfig, step: int, device: torch.device,
           sft: mixin.SFTBatch | None = None) -> UpdateResult:
    """Train on one batch: `updates_per_batch` epochs of `num_minibatches` AdamW steps. `old_logp` None means
    on-policy in one pass (one epoch, one minibatch): every forward sees the policy before the update, so
    the ratio is 1 and the forward's own log-probs and entropy are the policy's, returned for the caller.
    `sft`: supervised examples, split over the minibatches of each epoch, each minibatch's loss gaining
    `sft_coef * sft_loss` of its share (`ceiling.rl.mixin`)."""
    r = batch.rollout
    mask = r.completion_mask.float()
    n = r.batch_size
    one_pass = old_logp is None
    if one_pass and (cfg.updates_per_batch, cfg.num_minibatches) != (1, 1):
        raise ValueError("old_logp is needed unless the update is one epoch of one minibatch")
    seen_logp = torch.zeros_like(mask) if one_pass else None
    seen_ent = torch.zeros_like(mask) if one_pass else None
    lr = learning_rate(step, cfg.lr, cfg.warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    sums = {"policy": 0.0, "kl": 0.0, "entropy": 0.0, "total": 0.0, "clip_low": 0.0, "clip_high": 0.0}
    grad_norms: list[float] = []
    n_updates, n_tokens = 0, 0.0
    order_gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, STREAM_MINIBATCH))
    rows_per_call = rows_per_forward(model, device, r.prompt_len, int(r.lengths.max()), cfg.group_size,
                                     cfg.micro_batch_size)
    sft_parts = [] if sft is None else torch.tensor_split(torch.arange(sft.size, device=device), cfg.num_minibatches)
    nll_sum, nll_tokens = 0.0, 0.0
    model.train()
    for _epoch in range(cfg.updates_per_batch):
        order = torch.arange(n) if cfg.num_minibatches == 1 else torch.randperm(n, generator=order_gen)
        for j, mb in enumerate(torch.tensor_split(order.to(device), cfg.num_minibatches)):
            weights = token_weights(mask[mb], cfg.loss_type, cfg.max_new_tokens)
            optimizer.zero_grad(set_to_none=True)
            for rows in model_chunks(model, device, torch.arange(len(mb), device=device), r.lengths[mb], r.group[mb],
                                     r.prompt_len, rows_per_call):
                idx = mb[rows]
                logp, ent = forward_logprobs(model, batch, idx, cfg, device, entropy=one_pass or cfg.entropy_coef > 0)
                t = logp.shape[1]
                old = logp.detach() if one_pass else old_logp[idx, :t]
                loss, parts = policy_loss(
                    logp, old, batch.advantages[idx], weights[rows, :t], cfg.epsilon_low, cfg.epsilon_high,
                    ref_logp=ref_logp[idx, :t], beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                    entropy=ent if cfg.entropy_coef > 0 else None, entropy_coef=cfg.entropy_coef)
                loss.backward()
                if one_pass:
                    seen_logp[idx, :t] = logp.detach()
                    seen_ent[idx, :t] = ent.detach()
                sums["total"] += float(loss.detach()) / cfg.num_minibatches / cfg.updates_per_batch
                for key in ("policy", "kl", "entropy"):
                    sums[key] += parts.get(key, 0.0) / cfg.num_minibatches / cfg.updates_per_batch
                sums["clip_low"] += parts["clip_low"]
                sums["clip_high"] += parts["clip_high"]
                n_tokens += float(mask[idx].sum())
            if sft is not None and len(sft_parts[j]):
                total, nll = sft_backward(model, sft, sft_parts[j], cfg, device)
                sums["total"] += cfg.sft_coef * total / cfg.num_minibatches / cfg.updates_per_batch
                nll_sum, nll_tokens = nll_sum + nll[0], nll_tokens + nll[1]
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
    if sft is not None:
        metrics.update(mixin.summary(sft, nll_sum, nll_tokens))
    return UpdateResult(metrics, seen_logp, seen_ent)


def sft_backward(model: Any, sft: mixin.SFTBatch, rows: torch.Tensor, cfg: GRPOConfig,
                 device: torch.device) -> tuple[float, tuple[float, float]]:
    """Accumulate the gradient of `sft_coef * sft_loss` over the examples `rows` (one minibatch's share), in
    forwards of at most `rows_per_forward` rows. Returns (the minibatch's sft_loss, (NLL sum, answer tokens))."""
    mask = sft.completion_mask.float()
    tokens = float(mask[rows].sum())
    size = rows_per_forward(model, device, sft.prompt_len, mask.shape[1], 1, cfg.micro_batch_size)
    loss_sum = 0.0
    for chunk in torch.split(rows, max(size, 1)):
        width = sft.prompt_len + int(mask[chunk].sum(dim=1).max())
        with autocast(device, cfg.dtype):
            logp, _ = token_logprobs(model, sft.input_ids[chunk, :width], sft.attention_mask[chunk, :width],
                                     sft.prompt_len, entropy=False)
        m = mask[chunk, : logp.shape[1]]
        part = mixin.sft_loss(logp, m) * (float(m.sum()) / max(tokens, 1.0))  # token mean over the whole share
        (cfg.sft_coef * part).backward()
        loss_sum += float(part.detach())
    return loss_sum, (loss_sum * tokens, tokens)


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
               separate_old_forward: bool, trained: bool, sft_tokens: float = 0.0) -> float:
    """FLOPs of one step (see the module docstring): generation, reference forward, old-policy forward, training
    (on the rollouts and on the `sft_tokens` tokens of supervised examples, 6N per token per epoch alike)."""
    tokens = prompt_tokens + completion_tokens
    flops = 2.0 * n_params * tokens  # generation: prefill + one forward per generated token
    flops += 2.0 * n_params * tokens  # reference (base) forward
    if separate_old_forward:
        flops += 2.0 * n_params * tokens
    if trained:
        flops += 6.0 * n_params * (tokens + sft_tokens) * cfg.updates_per_batch
    return flops


def progress_line(step: int, steps: int, m: dict[str, Any]) -> str:
    """One readable terminal line per step."""
    text = (f"step {step:>5}/{steps}  reward {m['reward/mean']:.3f}  kl_k3 {m['kl/policy_base_k3_seq']:.4f}  "
            f"policy entropy on training prompts {m['policy/entropy']:.3f}  len {m['length/mean']:.1f}")
    if "optim/grad_norm" in m:
        text += f"  gnorm {m['optim/grad_norm']:.3f}  lr {m['optim/lr']:.2e}"
    if "sft/loss" in m:
        text += f"  sft nll {m['sft/loss']:.3f} x{m['sft/examples']}"
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
        stored = GRPOConfig.from_dict(read_json(config_file, what="run config"), where=config_file)
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


def train(cfg: GRPOConfig, resume: bool = False, on_step: Callable[[int, dict[str, Any]], bool] | None = None) -> Path:
    """Run GRPO-family RL as configured; returns the run directory. With `resume`, continue from the last
    complete checkpoint of `cfg.out` (metrics past it are dropped and recomputed identically). `on_step(step,
    metrics)` is called after each metrics line (`ceiling train --watch`); True stops the run there, which
    stays resumable from its last checkpoint."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:  # in a log (not a terminal), a line at least every 10 s even when one step takes longer
        with Heartbeat("train: loading the models", enabled=cfg.log and not is_terminal()) as beat:
            return _run(cfg, resume, beat, on_step)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: GRPOConfig, resume: bool, beat: Heartbeat,
         on_step: Callable[[int, dict[str, Any]], bool] | None = None) -> Path:
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
    one_pass = cfg.updates_per_batch == 1 and cfg.num_minibatches == 1  # the training forward measures theta_s
    verified = taskset.names("verified")
    # Supervised mix-in (off unless sft_examples_per_step > 0): its source is read now, so a base without the
    # record it needs fails before any step.
    source = mixin.Source(cfg.sft_source, cfg.base, taskset) if cfg.sft_examples_per_step > 0 else None

    for step in range(start, cfg.steps + 1):
        # 1. checkpoint theta_step (step 0 = the base; the resumed-from checkpoint already exists)
        if (step % cfg.checkpoint_every == 0 or step == cfg.steps) and not (state and step == start):
            save_checkpoint(run, step, policy.model, policy.tokenizer, optimizer,
                            {"config_hash": cfg.config_hash(), "flops": flops, "wall_seconds": wall})
        t0 = time.perf_counter()
        beat.now = f"train: step {step}/{cfg.steps} running"
        # 2. sample from theta_step, score, advantages
        batch = roll_out(policy, taskset, cfg, step, device)
        ref_logp, _ = score_all(ref.model, batch, cfg, device, entropy=False)
        # 3. update theta_step -> theta_{step+1} (not after the last step: that line only measures)
        train_now = step < cfg.steps
        sft = None  # supervised examples of this update (`ceiling.rl.mixin`), drawn from (seed, step) alone
        if source is not None and train_now and mixin.active(step, cfg.sft_examples_per_step, cfg.sft_from_step,
                                                             cfg.sft_until_step):
            sft = source.batch(policy, cfg.sft_examples_per_step, step_seed(cfg.seed, step, STREAM_SFT), device)
        upd: dict[str, float] = {}
        if train_now and one_pass:  # ratio 1: no separate old-policy pass, the update's forward measures theta_step
            result = update(policy.model, optimizer, batch, ref_logp, None, cfg, step, device, sft)
            upd, logp, ent = result.metrics, result.logp, result.entropy
        else:
            logp, ent = score_all(policy.model, batch, cfg, device, entropy=True)
            if train_now:
                upd = update(policy.model, optimizer, batch, ref_logp, logp, cfg, step, device, sft).metrics
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        # 4. log line `step`: rollout of theta_step, the update made from it, cost of producing theta_step
        m: dict[str, Any] = {"step": step}
        m.update(rollout_metrics(batch, logp, ref_logp, ent, verified, cfg.random_reward))
        m.update(upd)
        m.update({"compute/flops": flops, "compute/wall_seconds": wall, "speed/seconds_per_step": dt,
                  "speed/completions_per_s": batch.rollout.batch_size / dt})
        append_jsonl(run / "metrics.jsonl", m)
        if cfg.log:
            print(progress_line(step, cfg.steps, m), file=sys.stderr, flush=True)
            beat.beat()
        flops += step_flops(n_params, m["tokens/prompt"], m["tokens/completion"], cfg,
                            separate_old_forward=not one_pass, trained=train_now,
                            sft_tokens=sft.tokens if sft is not None else 0.0)
        wall += dt
        if on_step is not None and on_step(step, m):
            break
    return run
