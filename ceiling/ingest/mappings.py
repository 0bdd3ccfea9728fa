"""Which key of which framework becomes which canonical metric: the tables, as data.

One dict per framework, `source key -> canonical metric` (a name in `ceiling.frame.METRICS`). A key with
`*` is an `fnmatch` pattern. Order matters: when several keys of one log map to the same canonical metric,
the first entry that matches wins and the others stay under their own name (`raw/<key>`). When one
pattern entry matches several keys of the log, none of them is mapped, a note says so, and the user picks
one with a mapping flag; held-out evaluations and record kinds are the two exceptions (below). Every key
not in a table is kept as `raw/<key>`, so nothing is lost. `docs/ingest.md` lists every entry of every
table (a test checks it).

The canonical metric `compute/flops` also fills the frame's `compute` column at its step.

Held-out evaluations (the documented rule): a trainer's own eval on held-out prompts of the *training task*
(TRL `eval_reward`, verl `val-core/...` or `val/test_score/...`, a CSV's `eval_acc`, the accuracy of a
record of kind `eval`) maps to `verified/eval_acc`. When a log holds several held-out datasets, the first
one in the log is `verified/eval_acc` and every other one is kept as `raw/eval/<dataset>`, with a note.
Only the user can say that an eval is a different distribution (a benchmark standing for general
reasoning): `--unverified KEY` then maps it to `unverified/score`, which the collapse analysis reads.

Record kinds: a JSONL/CSV log whose records carry a text field named in `RECORD_KIND_KEYS` (`type`,
`split`, ...) has each record's keys read as `<kind>/<key>`. Keys of a held-out kind (`HELDOUT_KINDS`) are
matched against `HELDOUT_RECORD_KEYS`, keys of any other kind against `GENERIC_KEYS` (by the name after
the kind). When one entry matches the same name in several kinds, the kind seen first in the log wins.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
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
# Eval rows carry the train keys with an `eval_` prefix; with several eval datasets transformers names them
# `eval_<dataset>_<key>`.
TRL_KEYS: dict[str, str] = {
    "reward": "verified/reward",
    "entropy": "policy/entropy",
    "kl": "kl/policy_base_k3_token",
    "completions/mean_length": "length/mean",
    "completion_length": "length/mean",
    "eval_reward": "verified/eval_acc",
    "eval_accuracy": "verified/eval_acc",
    "eval_acc": "verified/eval_acc",
    "eval_*_reward": "verified/eval_acc",
    "eval_*_accuracy": "verified/eval_acc",
}

# verl: the file logger's JSONL and console lines use the same keys; newer names first.
# `critic/score/mean` is the verifier's sequence score (before any KL-in-reward); `actor/kl_loss` is
# KL(policy || reference) per token by the configured `kl_loss_type` (k3-like `low_var_kl` by default);
# `critic/kl` is the KL-in-reward penalty's KL to the reference (`use_kl_in_reward`). `actor/ppo_kl` is
# KL to the *previous* policy, not to the base, so it stays raw. Older verl (to early 2025) logs the token
# entropy as `actor/entropy_loss` (the masked mean of the entropy, positive) and the held-out score as
# `val/test_score/<data source>`; verl since then logs `val-core/<data source>/<var>/mean@<n>` (the core
# variable: `acc` when the reward function returns one, else `reward`) and the rest as `val-aux/...`;
# some versions in between log `val/<data source>/<var>/mean@<n>`.
VERL_KEYS: dict[str, str] = {
    "critic/score/mean": "verified/reward",
    "actor/entropy": "policy/entropy",
    "actor/entropy_loss": "policy/entropy",
    "actor/kl_loss": "kl/logged",
    "critic/kl": "kl/logged",
    "response_length/mean": "length/mean",
    "val-core/*/acc/mean@*": "verified/eval_acc",
    "val-core/*/reward/mean@*": "verified/eval_acc",
    "val-core/*/score/mean@*": "verified/eval_acc",
    "val/*/acc/mean@*": "verified/eval_acc",
    "val/*/reward/mean@*": "verified/eval_acc",
    "val/*/score/mean@*": "verified/eval_acc",
    "val/test_score/*": "verified/eval_acc",
    "val-aux/*/acc/mean@*": "verified/eval_acc",
    "val-aux/*/reward/mean@*": "verified/eval_acc",
    "val-aux/*/score/mean@*": "verified/eval_acc",
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
    "eval/accuracy": "verified/eval_acc",
    "eval/*_reward": "verified/eval_acc",
    "eval/*_accuracy": "verified/eval_acc",
    "_runtime": "compute/wall_seconds",
}

# Any CSV or JSONL (and the fallback for trackers): common names, matched case-insensitively. A KL to the
# reference (or base) model is `kl/logged` whatever its sign; PPO's `approx_kl` (policy vs the policy
# that sampled, not the base) stays raw.
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
    "mean_entropy": "policy/entropy",
    "token_entropy": "policy/entropy",
    "policy_entropy": "policy/entropy",
    "policy/entropy": "policy/entropy",
    "kl": "kl/logged",
    "kl_loss": "kl/logged",
    "reference_kl": "kl/logged",
    "ref_kl": "kl/logged",
    "kl_ref": "kl/logged",
    "kl_to_ref": "kl/logged",
    "kl_to_base": "kl/logged",
    "kl_div": "kl/logged",
    "kl_divergence": "kl/logged",
    "eval_acc": "verified/eval_acc",
    "eval_accuracy": "verified/eval_acc",
    "val_acc": "verified/eval_acc",
    "val_accuracy": "verified/eval_acc",
    "test_acc": "verified/eval_acc",
    "test_accuracy": "verified/eval_acc",
    "eval_score": "verified/eval_acc",
    "val_score": "verified/eval_acc",
    "test_score": "verified/eval_acc",
    "eval_reward": "verified/eval_acc",
    "val_reward": "verified/eval_acc",
    "avg_response_len": "length/mean",
    "response_len": "length/mean",
    "response_length": "length/mean",
    "mean_response_length": "length/mean",
    "response_length_mean": "length/mean",
    "completion_length": "length/mean",
    "mean_completion_length": "length/mean",
    "completion_length_mean": "length/mean",
    "mean_length": "length/mean",
    "length/mean": "length/mean",
    "duplicate_share": "diversity/duplicate_share",
    "duplicate_rate": "diversity/duplicate_share",
    "dup_rate": "diversity/duplicate_share",
    "distinct_answers": "diversity/distinct_answers",
    "unique_answers": "diversity/distinct_answers",
    "distinct_2": "diversity/distinct_2",
    "distinct-2": "diversity/distinct_2",
    "flops": "compute/flops",
    "total_flops": "compute/flops",
    "cumulative_flops": "compute/flops",
    "compute/flops": "compute/flops",
    "wall_seconds": "compute/wall_seconds",
    "elapsed_seconds": "compute/wall_seconds",
}

# Records of a held-out kind (`eval`, `validation`, ...; see HELDOUT_KINDS): the score among their keys
# (matched by the name after the kind, case-insensitively, first entry first).
HELDOUT_RECORD_KEYS: dict[str, str] = {
    "accuracy": "verified/eval_acc",
    "acc": "verified/eval_acc",
    "answer_accuracy": "verified/eval_acc",
    "eval_acc": "verified/eval_acc",
    "eval_accuracy": "verified/eval_acc",
    "exact_match": "verified/eval_acc",
    "pass@1": "verified/eval_acc",
    "solve_rate": "verified/eval_acc",
    "score": "verified/eval_acc",
    "mean_score": "verified/eval_acc",
    "reward": "verified/eval_acc",
    "reward_mean": "verified/eval_acc",
    "mean_reward": "verified/eval_acc",
}

# Keys whose text values name a record's kind (`{"type": "eval", ...}`), tried in this order.
RECORD_KIND_KEYS: tuple[str, ...] = ("type", "split", "mode", "phase", "kind")
# Record kinds that are held-out evaluations (compared case-insensitively); every other kind is training.
HELDOUT_KINDS = frozenset({"eval", "evaluation", "val", "valid", "validation", "test", "heldout", "held_out",
                           "holdout"})
# Keys giving the number of held-out problems behind an accuracy (the `n` of verified/eval_acc): looked up
# beside the accuracy's key (same kind or prefix), first found wins.
EVAL_N_KEYS: tuple[str, ...] = ("num_examples", "n_examples", "num_problems", "n_problems", "num_prompts",
                                "num_eval_examples", "eval_num_examples", "eval_n", "eval_size", "eval_samples")

# Keys that hold the step, in the order of the documented rule (tabular.choose_step_key): the first of these
# present in every record wins. "epoch+batch" is epoch * batches per epoch + batch (`batch`, `batch_idx` or
# `batch_index`); "epoch" alone only when it holds whole numbers.
GENERIC_STEP_KEYS: list[str] = ["step", "steps", "global_step", "trainer/global_step", "train/global_step",
                                "grpo_step", "ppo_step", "rl_step", "iteration", "iter", "update",
                                "optimizer_step", "_step", "epoch+batch", "epoch"]
BATCH_KEYS: tuple[str, ...] = ("batch", "batch_idx", "batch_index")
STEP_KEYS: dict[str, list[str]] = {
    "ceiling": ["step"],
    "trl": ["step"],
    "verl": ["step"],
    "wandb": ["train/global_step", "trainer/global_step", "global_step", "step", "grpo_step", "ppo_step",
              "rl_step", "optimizer_step", "_step", "Step"],
    "tensorboard": [],  # every event carries its step
    "csv": GENERIC_STEP_KEYS,
    "jsonl": GENERIC_STEP_KEYS,
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
CASE_INSENSITIVE = (GENERIC_KEYS, HELDOUT_RECORD_KEYS)
HELDOUT_METRIC = "verified/eval_acc"

# The mapping flags of `ceiling fit` (and `read_log(mapping=...)`) -> canonical metric. A mapping may also
# use any canonical metric name as its key directly, e.g. {"verified/eval_acc": "my_col"}.
FLAG_METRICS: dict[str, str] = {
    "verified": "verified/reward",
    "unverified": "unverified/score",
    "kl": "kl/logged",
    "entropy": "policy/entropy",
    "compute": "compute/flops",
}

# Metrics that are fractions in [0, 1] or percent: a log that has them in percent (some value > 1, all
# <= 100) keeps them as logged (the fitter reads percent), with a note.
FRACTION_METRICS = frozenset({
    "verified/eval_acc", "verified/greedy_acc", "verified/pass@k",
    "unverified/score", "unverified/greedy_acc", "unverified/pass@k",
})

# Bookkeeping keys present in many rows of one step (TRL repeats `epoch` in its eval rows; a loop repeats
# its counters in every record): they never signal a restart, and the last value of a step is kept.
# Compared on the last path component.
BOOKKEEPING_KEYS = frozenset({"epoch", "total_steps", "global_step", "step", "_step", "_runtime", "_timestamp",
                              "elapsed_seconds", "training/global_step", "training/epoch", "grpo_step",
                              "ppo_step", "rl_step", "optimizer_step", "iteration", "batch", "batch_idx",
                              "batch_index", "timestamp", "time", "wall_time"})


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


@lru_cache(maxsize=256)
def _capture(entry: str) -> re.Pattern[str]:
    """A regex for a pattern entry whose first group is what the first `*` matched."""
    parts = [re.escape(p) for p in entry.lower().split("*")]
    return re.compile("(.+)".join(parts[:2]) + "".join(".*" + p for p in parts[2:]) + r"\Z", re.DOTALL)


def split_kind(key: str, kinds: dict[str, bool]) -> tuple[str | None, str]:
    """(record kind, name after it) for a key read as `<kind>/<name>`; (None, key) for other keys.
    `kinds`: kind -> True when it is a held-out kind."""
    kind, sep, name = key.partition("/")
    return (kind, name) if sep and kind in kinds else (None, key)


def is_heldout_kind(kind: str) -> bool:
    return kind.strip().lower() in HELDOUT_KINDS


def dataset_of(entry: str, name: str, kind: str | None) -> str:
    """Which held-out dataset a key that matched a held-out entry measures: the record kind, the part the
    entry's first `*` stands for (`val/test_score/*` -> the data source), or the key itself."""
    if kind is not None:
        return kind
    if "*" in entry:
        m = _capture(entry).match(name.lower())
        if m:
            start, end = m.span(1)
            return name[start:end]
    return name


View = Callable[[str], "str | None"]


def _views(fmt: str, kinds: dict[str, bool]) -> list[tuple[dict[str, str], View]]:
    """(table, view) pairs tried in order; view(key) is the name matched against the table (None: skip)."""
    def train_view(key: str) -> str | None:
        kind, name = split_kind(key, kinds)
        return name if kind is None or not kinds[kind] else None

    def heldout_view(key: str) -> str | None:
        kind, name = split_kind(key, kinds)
        return name if kind is not None and kinds[kind] else None

    pairs: list[tuple[dict[str, str], View]] = []
    if kinds:
        pairs.append((HELDOUT_RECORD_KEYS, heldout_view))
    pairs += [(table, train_view) for table in TABLES[fmt]]
    return pairs


def resolve_keys(keys: list[str], fmt: str, overrides: dict[str, str] | None = None,
                 kinds: dict[str, bool] | None = None) -> tuple[dict[str, str], list[str]]:
    """Decide which source key becomes which canonical metric for one log.

    `keys`: every source key seen in the log, in first-seen order. `overrides`: canonical metric -> source
    key, from the user (they win over the tables). `kinds`: the log's record kinds (kind -> held out?), when
    its keys are read as `<kind>/<key>`. Returns (`source key -> metric` for the mapped keys, notes). The
    metric is canonical, or `raw/eval/<dataset>` for a held-out dataset other than the first. Unmapped keys
    are left out (the caller keeps them as `raw/<key>`).
    """
    overrides = dict(overrides or {})
    kinds = dict(kinds or {})
    mapped: dict[str, str] = {}
    notes: list[str] = []
    taken = set(overrides)
    for metric, key in overrides.items():
        mapped[key] = metric
    views = _views(fmt, kinds)
    for table, view in views:
        ci = table in CASE_INSENSITIVE
        for entry, metric in table.items():
            if metric in taken:
                continue
            hits = [k for k in keys if k not in mapped and (v := view(k)) is not None and _matches(entry, v, ci)]
            if not hits:
                continue
            taken.add(metric)
            hit_kinds = [split_kind(k, kinds)[0] for k in hits]
            if len(hits) == 1 or metric == HELDOUT_METRIC:
                mapped[hits[0]] = metric  # several held-out datasets: the first in the log (others below)
            elif None not in hit_kinds and len(set(hit_kinds)) == len(hits):
                mapped[hits[0]] = metric
                notes.append(f"{len(hits)} record kinds log {entry!r} ({', '.join(hits[:4])}): {hits[0]} -> "
                             f"{metric} (the kind seen first); the others stay raw")
            else:
                notes.append(f"{len(hits)} keys match {entry!r} ({', '.join(hits[:4])}{', ...' if len(hits) > 4 else ''}): "
                             f"none mapped to {metric}; name one with a mapping flag")
    notes += _other_heldout(keys, mapped, views, kinds)
    return mapped, notes


def _other_heldout(keys: list[str], mapped: dict[str, str], views: list[tuple[dict[str, str], View]],
                   kinds: dict[str, bool]) -> list[str]:
    """Held-out datasets besides the one read as verified/eval_acc become `raw/eval/<dataset>` (in `mapped`)."""
    chosen = next((k for k, m in mapped.items() if m == HELDOUT_METRIC), None)
    if chosen is None:
        return []
    entries = [(entry, view, table in CASE_INSENSITIVE) for table, view in views
               for entry, metric in table.items() if metric == HELDOUT_METRIC]

    def find(key: str) -> str | None:
        for entry, view, ci in entries:
            v = view(key)
            if v is not None and _matches(entry, v, ci):
                return dataset_of(entry, v, split_kind(key, kinds)[0])
        return None

    first = find(chosen) or chosen
    seen = {first}
    others: list[str] = []
    for key in keys:
        if key in mapped:
            continue
        ds = find(key)
        if ds is not None and ds not in seen:
            seen.add(ds)
            mapped[key] = f"raw/eval/{ds}"
            others.append(ds)
    if not others:
        return []
    return [f"{len(others) + 1} held-out datasets: {first!r} ({chosen}) is verified/eval_acc, the first in the log; "
            f"the others are kept as raw/eval/<dataset>: {', '.join(others[:6])}{', ...' if len(others) > 6 else ''}"]
