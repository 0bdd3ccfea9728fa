"""From one model's samples (as plain arrays) to canonical frame rows. No model code here.

Per-problem arrays are built once (`ProblemStats.from_samples`) and every metric is a mean over problems
with the same bootstrap weights, so all intervals are problem-level and reproducible from the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ceiling.evaluate import diversity as dv
from ceiling.evaluate import estimators as es
from ceiling.evaluate.config import EvalConfig


@dataclass
class SampleArrays:
    """One model's n samples per prompt on the evaluation prompts, flattened to sequences (N = m * n)."""

    prompt_index: np.ndarray
    """[N] index of the prompt (problem) each sequence answers."""
    rewards: np.ndarray
    """[N] verifier reward of each sample."""
    answers: list[str | None]
    """[N] extracted final answers (None when none found)."""
    texts: list[str]
    """[N] completion texts (special tokens removed)."""
    token_ids: list[tuple[int, ...]]
    """[N] completion token ids (for distinct-n)."""
    lengths: np.ndarray
    """[N] completion tokens."""
    entropy_sum: np.ndarray
    """[N] sum over completion tokens of the full-vocabulary entropy of the sampling model."""
    greedy_rewards: np.ndarray | None = None
    """[m] reward of the greedy completion of each prompt (None when greedy decoding is off)."""
    scored: np.ndarray | None = None
    """[N] bool: the sequence was scored (entropy_sum is 0 elsewhere); None = all."""


@dataclass
class ProblemStats:
    """Per-problem summaries of one model's samples ([m] arrays, pass@k [m, K])."""

    reward: np.ndarray
    correct: np.ndarray
    pass_table: np.ndarray
    greedy: np.ndarray | None
    distinct_answers: np.ndarray
    distinct_2: np.ndarray
    duplicate_share: np.ndarray
    entropy_sum: np.ndarray
    entropy_tokens: np.ndarray
    tokens: np.ndarray
    n_sequences: np.ndarray

    @classmethod
    def from_samples(cls, s: SampleArrays, m: int, n: int, ks: list[int], threshold: float) -> "ProblemStats":
        idx = s.prompt_index
        correct = np.bincount(idx, weights=(s.rewards >= threshold).astype(float), minlength=m).round().astype(int)
        by_prompt: list[list[int]] = [[] for _ in range(m)]
        for i, p in enumerate(idx):
            by_prompt[p].append(i)
        return cls(
            reward=es.group_means(s.rewards, idx, m),
            correct=correct,
            pass_table=es.pass_at_k_table(n, correct, ks),
            greedy=s.greedy_rewards,
            distinct_answers=np.array([dv.distinct_answers([s.answers[i] for i in rows]) for rows in by_prompt], float),
            distinct_2=np.array([dv.distinct_n([s.token_ids[i] for i in rows], 2) for rows in by_prompt], float),
            duplicate_share=np.array([dv.duplicate_share([s.texts[i] for i in rows]) for rows in by_prompt], float),
            entropy_sum=np.bincount(idx, weights=s.entropy_sum, minlength=m),
            entropy_tokens=np.bincount(idx, weights=s.lengths * (1.0 if s.scored is None else s.scored), minlength=m),
            tokens=np.bincount(idx, weights=s.lengths.astype(float), minlength=m),
            n_sequences=np.bincount(idx, minlength=m).astype(float),
        )


@dataclass(frozen=True)
class Group:
    """A set of problems reported together: one family, or an aggregate ("verified", "unverified", "all")."""

    name: str
    kind: str
    """"verified" or "unverified" (the metric namespace), or "all"."""
    index: np.ndarray


def make_groups(families: Sequence[str], kinds: Sequence[str]) -> list[Group]:
    """Groups for problems listed with their family and kind: each family, each kind, and "all"."""
    fam = np.asarray(families, dtype=object)
    kind = np.asarray(kinds, dtype=object)
    groups: list[Group] = []
    for k in ("verified", "unverified"):
        sel = np.flatnonzero(kind == k)
        if sel.size:
            groups.append(Group(k, k, sel))
            for f in dict.fromkeys(fam[sel]):
                groups.append(Group(str(f), k, np.flatnonzero((fam == f) & (kind == k))))
    groups.append(Group("all", "all", np.arange(len(fam))))
    return groups


def bootstrap_for(groups: list[Group], cfg: EvalConfig) -> dict[str, np.ndarray]:
    """Bootstrap weights per group, drawn once from the seed (the same draws for every checkpoint)."""
    rng = np.random.default_rng(cfg.seed)
    return {g.name: es.bootstrap_weights(len(g.index), cfg.n_boot, rng) for g in groups}


def _row(metric: str, e: es.Estimate, family: str, estimator: str, k: float = np.nan) -> dict[str, Any]:
    return {"metric": metric, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": float(e.n),
            "estimator": estimator, "family": family, "k": float(k)}


def sampling_label(cfg: EvalConfig) -> str:
    """How the samples were drawn, for estimator strings."""
    return f"T={cfg.temperature:g}, top_p={cfg.top_p:g}, max_new_tokens={cfg.max_new_tokens}"


def task_rows(st: ProblemStats, groups: list[Group], weights: dict[str, np.ndarray], cfg: EvalConfig,
              ks: list[int], base: ProblemStats | None) -> list[dict[str, Any]]:
    """Reward, greedy accuracy, pass@k, crossover (vs `base`) and diversity rows for every group."""
    n, lvl = cfg.n_samples, cfg.level
    samp = sampling_label(cfg)
    boot = f"{lvl:.0%} bootstrap over prompts ({cfg.n_boot})"
    rows: list[dict[str, Any]] = []
    for g in groups:
        w, ix = weights[g.name], g.index
        if g.kind != "all":
            ns = g.kind
            score = "verified/reward" if ns == "verified" else "unverified/score"
            rows.append(_row(score, es.mean_ci(st.reward[ix], w)[0], g.name, f"mean@{n} ({samp}); {boot}"))
            if st.greedy is not None:
                rows.append(_row(f"{ns}/greedy_acc", es.mean_ci(st.greedy[ix], w)[0], g.name,
                                 f"greedy decoding, 1 per prompt; {boot}"))
            for k, e in zip(ks, es.mean_ci(st.pass_table[ix], w), strict=True):
                rows.append(_row(f"{ns}/pass@k", e, g.name, f"unbiased pass@k of n={n} ({samp}); {boot}", k))
            if base is not None:
                e = es.crossover_ci(ks, st.pass_table[ix], base.pass_table[ix], w, lvl)
                what = (f"no crossover up to k={ks[-1]}" if np.isnan(e.value) else
                        "base never behind" if e.value == ks[0] else "smallest k with base pass@k >= policy pass@k")
                rows.append(_row("crossover/k", e, g.name,
                                 f"{ns}: {what} (log2-interpolated); paired {boot}"))
        rows.append(_row("diversity/distinct_answers", es.mean_ci(st.distinct_answers[ix], w)[0], g.name,
                         f"distinct final answers among {n} samples, mean over prompts; {boot}"))
        rows.append(_row("diversity/distinct_2", es.mean_ci(st.distinct_2[ix], w)[0], g.name,
                         f"distinct token bigrams / bigrams of a prompt's {n} completions, mean over prompts; {boot}"))
        rows.append(_row("diversity/duplicate_share", es.mean_ci(st.duplicate_share[ix], w)[0], g.name,
                         f"share of a prompt's {n} completions identical to another, mean over prompts; {boot}"))
    return rows


def policy_rows(st: ProblemStats, groups: list[Group], weights: dict[str, np.ndarray],
                cfg: EvalConfig) -> list[dict[str, Any]]:
    """Token entropy for every group (each family set, "verified" / "unverified" / "all", and each family:
    `ceiling.evaluate.floor` reads the base's at step 0 as its diversity floor) and completion length over
    all prompts (family "all")."""
    boot = f"{cfg.level:.0%} bootstrap over prompts ({cfg.n_boot})"
    samp = sampling_label(cfg)
    rows = [_row("policy/entropy", es.ratio_ci(st.entropy_sum[g.index], st.entropy_tokens[g.index],
                                               weights[g.name], cfg.level), g.name,
                 f"full-vocabulary token entropy (nats) on own samples of the {g.name} prompts "
                 f"({cfg.scored_samples()} per prompt, {samp}), token mean pooled over the prompts; {boot}")
            for g in groups]
    rows.append(_row("length/mean", es.ratio_ci(st.tokens, st.n_sequences, weights["all"], cfg.level), "all",
                     f"completion tokens per sample ({samp}); {boot}"))
    return rows


def kl_rows(kl: dict[str, np.ndarray], prompt_index: dict[str, np.ndarray], m: int,
            cfg: EvalConfig) -> list[dict[str, Any]]:
    """KL rows from per-sequence estimates: `kl["policy_base_k1"]` etc.; mean of per-prompt means, t interval."""
    rows = []
    biased = "" if cfg.temperature == 1.0 and cfg.top_p == 1.0 else " (tempered samples: biased for the models' KL)"
    for name, values in kl.items():
        direction = name.split("_k")[0]
        sampler = "policy" if direction == "policy_base" else "base"
        per_prompt = es.group_means(values, prompt_index[sampler], m)
        e = es.t_interval(per_prompt[np.isfinite(per_prompt)], cfg.level)
        est = name[-2:]
        rows.append(_row(f"kl/{name}", e, "all",
                         f"{est} on {sampler} samples ({cfg.scored_samples()} per prompt){biased}, summed per "
                         "sequence, mean over prompts; "
                         f"{cfg.level:.0%} t interval over prompts"))
    return rows


def zero_kl_rows(m: int) -> list[dict[str, Any]]:
    """KL rows of the base against itself (step 0): zero by definition."""
    zero = es.Estimate(0.0, 0.0, 0.0, m)
    return [_row(f"kl/{name}", zero, "all", "step 0 is the base: KL to itself is 0")
            for name in ("policy_base_k1", "policy_base_k3", "base_policy_k1", "base_policy_k3")]


def nll_row(nll_sum: np.ndarray, tokens: np.ndarray, cfg: EvalConfig, source: str, unit: str) -> dict[str, Any]:
    """unverified/nll: per-token negative log-likelihood (sum / tokens over `unit`s), bootstrap over units."""
    w = es.bootstrap_weights(len(tokens), cfg.n_boot, np.random.default_rng(cfg.seed))
    e = es.ratio_ci(nll_sum, tokens, w, cfg.level)
    return _row("unverified/nll", e, "unverified",
                f"per-token NLL (nats) on {source}; {cfg.level:.0%} bootstrap over {unit} ({cfg.n_boot})")
