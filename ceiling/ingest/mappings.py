"""Which key of which framework becomes which canonical metric: the tables, as data.

One dict per framework, `source key -> canonical metric` (a name in `ceiling.frame.METRICS`). A key with
`*` is an `fnmatch` pattern. Order matters: when several keys of one log map to the same canonical metric,
the first entry that matches wins and the others stay under their own name (`raw/<key>`). When one
pattern entry matches several keys of the log (for example several verl validation sources), none of them
is mapped, a note says so, and the user picks one with a mapping flag. Every key not in a table is kept as
`raw/<key>`, so nothing is lost. `docs/ingest.md` lists every entry of every table (a test checks it).

The canonical metric `compute/flops` also fills the frame's `compute` column at its step.

Held-out evaluations (the documented rule): a trainer's own eval on held-out prompts of the *training task*
(TRL `eval_reward`, verl `val-core/...`, a CSV's `eval_acc`) maps to `verified/eval_acc`. Only the user can
say that an eval is a different distribution (a benchmark standing for general reasoning): `--unverified
KEY` then maps it to `unverified/score`, which the collapse analysis reads.
"""
from __future__ import annotations

import fnmatch
from functools import lru_cache

# Our own run directories: metrics.jsonl keys (docs/design.md, rl section). eval.csv is already canonical.
CEILING_KEYS: dict[str, str] = {
    "reward/mean": "verified/reward",
    "kl/policy_base_k3_seq": "kl/policy_base_k3",
    "kl/policy_base_k1_seq": "kl/policy_base_k1",
    "kl/policy_base_k3_token": "kl/policy_base_k3_token",
    "policy/entropy": "policy/entropy",
    "length/mean": "length/mean",
    "compute/flops": "compute/flops",
    "compute/wall_seconds": "compute/wall_seconds",
}

# TRL GRPOTrainer, trainer_state.json `log_history`. Newer TRL (>= 0.17) first, older names after.
# TRL's `kl` is the k3 estimator of KL(policy || reference), averaged over completion tokens; the reference
# is the initial model unless `sync_ref_model=True` (then it is not the base: map it with --kl instead).
TRL_KEYS: dict[str, str] = {
    "reward": "verified/reward",
    "entropy": "policy/entropy",
    "kl": "kl/policy_base_k3_token",
    "completions/mean_length": "length/mean",
    "completion_length": "length/mean",
    "eval_reward": "verified/eval_acc",
}

# verl: the file logger's JSONL and console lines use the same keys.
# `critic/score/mean` is the verifier's sequence score (before any KL-in-reward); `actor/kl_loss` is
# KL(policy || reference) per token by the configured `kl_loss_type` (k3-like `low_var_kl` by default);
# `critic/kl` is the KL-in-reward penalty's KL to the reference (`use_kl_in_reward`). `actor/ppo_kl` is
# KL to the *previous* policy, not to the base, so it stays raw.
VERL_KEYS: dict[str, str] = {
    "critic/score/mean": "verified/reward",
    "actor/entropy": "policy/entropy",
    "actor/kl_loss": "kl/logged",
    "critic/kl": "kl/logged",
    "response_length/mean": "length/mean",
    "val-core/*/acc/mean@*": "verified/eval_acc",
    "val-core/*/reward/mean@*": "verified/eval_acc",
    "val-core/*/score/mean@*": "verified/eval_acc",
}

# TensorBoard scalars and W&B history columns: what TRL/transformers write there (`train/` and `eval/`
# prefixes instead of `eval_`). W&B's own `_runtime` is cumulative seconds. verl's keys (verl logs the same
# dict to every backend) and the generic names are tried after these (see TABLES).
TRACKER_KEYS: dict[str, str] = {
    "train/reward": "verified/reward",
    "train/entropy": "policy/entropy",
    "train/kl": "kl/policy_base_k3_token",
    "train/completions/mean_length": "length/mean",
    "train/completion_length": "length/mean",
    "eval/reward": "verified/eval_acc",
    "_runtime": "compute/wall_seconds",
}

# Any CSV or JSONL (and the fallback for trackers): common names, matched case-insensitively.
GENERIC_KEYS: dict[str, str] = {
    "reward": "verified/reward",
    "reward_avg": "verified/reward",
    "reward_mean": "verified/reward",
    "avg_reward": "verified/reward",
    "mean_reward": "verified/reward",
    "train_reward": "verified/reward",
    "reward/mean": "verified/reward",
    "rewards/mean": "verified/reward",
    "entropy": "policy/entropy",
    "entropy_avg": "policy/entropy",
    "entropy_mean": "policy/entropy",
    "avg_entropy": "policy/entropy",
    "policy_entropy": "policy/entropy",
    "policy/entropy": "policy/entropy",
    "kl": "kl/logged",
    "kl_loss": "kl/logged",
    "kl_div": "kl/logged",
    "kl_divergence": "kl/logged",
    "approx_kl": "kl/logged",
    "eval_acc": "verified/eval_acc",
    "eval_accuracy": "verified/eval_acc",
    "val_acc": "verified/eval_acc",
    "val_accuracy": "verified/eval_acc",
    "test_acc": "verified/eval_acc",
    "test_accuracy": "verified/eval_acc",
    "avg_response_len": "length/mean",
    "response_len": "length/mean",
    "response_length": "length/mean",
    "mean_response_length": "length/mean",
    "completion_length": "length/mean",
    "mean_length": "length/mean",
    "length/mean": "length/mean",
    "flops": "compute/flops",
    "total_flops": "compute/flops",
    "cumulative_flops": "compute/flops",
    "compute/flops": "compute/flops",
    "wall_seconds": "compute/wall_seconds",
    "elapsed_seconds": "compute/wall_seconds",
}

# Columns that hold the optimizer step, tried in order (generic formats and trackers).
STEP_KEYS: dict[str, list[str]] = {
    "ceiling": ["step"],
    "trl": ["step"],
    "verl": ["step"],
    "wandb": ["train/global_step", "trainer/global_step", "global_step", "_step", "Step"],
    "tensorboard": [],  # every event carries its step
    "csv": ["step", "steps", "global_step", "train/global_step", "iteration", "iter", "update", "_step"],
    "jsonl": ["step", "steps", "global_step", "train/global_step", "iteration", "iter", "update", "_step"],
}

TABLES: dict[str, list[dict[str, str]]] = {
    "ceiling": [CEILING_KEYS],
    "trl": [TRL_KEYS],
    "verl": [VERL_KEYS],
    "wandb": [TRACKER_KEYS, VERL_KEYS, GENERIC_KEYS],
    "tensorboard": [TRACKER_KEYS, VERL_KEYS, GENERIC_KEYS],
    "csv": [GENERIC_KEYS],
    "jsonl": [GENERIC_KEYS],
}

# The mapping flags of `ceiling fit` (and `read_log(mapping=...)`) -> canonical metric. A mapping may also
# use any canonical metric name as its key directly, e.g. {"verified/eval_acc": "my_col"}.
FLAG_METRICS: dict[str, str] = {
    "verified": "verified/reward",
    "unverified": "unverified/score",
    "kl": "kl/logged",
    "entropy": "policy/entropy",
    "compute": "compute/flops",
}

# Metrics that are fractions in [0, 1]: a log that has them in percent (any value > 1, all <= 100) is
# divided by 100, with a note.
FRACTION_METRICS = frozenset({
    "verified/eval_acc", "verified/greedy_acc", "verified/pass@k",
    "unverified/score", "unverified/greedy_acc", "unverified/pass@k",
})

# Bookkeeping keys present in many rows of one step (TRL repeats `epoch` in its eval rows): they never
# signal a restart. Compared on the last path component.
BOOKKEEPING_KEYS = frozenset({"epoch", "total_steps", "global_step", "step", "_step", "_runtime", "_timestamp",
                              "elapsed_seconds", "training/global_step", "training/epoch"})


@lru_cache(maxsize=4096)
def is_bookkeeping(key: str) -> bool:
    """True for keys repeated across the rows of one step (epoch, timestamps) that never signal a restart."""
    return key in BOOKKEEPING_KEYS or key.rsplit("/", 1)[-1] in BOOKKEEPING_KEYS


def _matches(entry: str, key: str, case_insensitive: bool) -> bool:
    if case_insensitive:
        entry, key = entry.lower(), key.lower()
    if "*" in entry:
        return fnmatch.fnmatchcase(key, entry)
    return entry == key


def resolve_keys(keys: list[str], fmt: str, overrides: dict[str, str] | None = None
                 ) -> tuple[dict[str, str], list[str]]:
    """Decide which source key becomes which canonical metric for one log.

    `keys`: every source key seen in the log, in first-seen order. `overrides`: canonical metric -> source
    key, from the user (they win over the tables). Returns (`source key -> canonical metric` for the mapped
    keys, notes). Unmapped keys are left out (the caller keeps them as `raw/<key>`).
    """
    overrides = dict(overrides or {})
    mapped: dict[str, str] = {}
    notes: list[str] = []
    taken = set(overrides)
    for metric, key in overrides.items():
        mapped[key] = metric
    for table in TABLES[fmt]:
        generic = table is GENERIC_KEYS
        for entry, metric in table.items():
            if metric in taken:
                continue
            hits = [k for k in keys if k not in mapped and _matches(entry, k, generic)]
            if len(hits) == 1:
                mapped[hits[0]] = metric
                taken.add(metric)
            elif len(hits) > 1:
                notes.append(f"{len(hits)} keys match {entry!r} ({', '.join(hits[:4])}{', ...' if len(hits) > 4 else ''}): "
                             f"none mapped to {metric}; name one with a mapping flag")
                taken.add(metric)
    return mapped, notes
