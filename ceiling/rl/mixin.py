"""Supervised examples mixed into the RL loop: does external data lift the ceiling? (issue 16, item 4).

RL can only reinforce what the policy samples. In a sub-space the base's pretraining corpus never covered
with correct answers, the base samples its confident wrong rule and RL alone has nothing to find. The
mix-in adds what RL cannot produce: from update `sft_from_step` on (until `sft_until_step`, 0 = the end),
each update theta_s -> theta_{s+1} also trains on `sft_examples_per_step` supervised examples, and the
loss of each minibatch becomes

    policy loss (+ beta * KL - entropy bonus)  +  sft_coef * sft_loss,

with `sft_loss` the mean negative log-likelihood of the examples' answer tokens (answer + <eos>, the
prompt is context only), a token mean over the minibatch's examples (`sft_loss`). The examples are split
over the `num_minibatches` minibatches of each PPO epoch in a fixed order (minibatch j gets the j-th of
`torch.tensor_split`'s parts), so every example is trained on once per epoch, as every rollout is.

Sources (`sft_source`):
- ``uncovered``: problems from the *train* split of the verified families whose sub-space
  (`ceiling.pretrain.subspace_of`) the base's corpus did not cover, read from the base's
  `pretrain.json` (`corpus.covered_subspaces`, per family). A verified family the corpus never held is
  uncovered everywhere. A base without `pretrain.json` (SmolLM2, any HF folder) is a one-line error naming
  the missing file: use ``all``.
- ``all``: problems from the train split of every verified family (any base).
Each example's completion is its family's `solution` (the bare correct answer, the tiny bases' format).

Randomness: step s draws its examples with a seed derived from (seed, s) (`grpo.step_seed`, its own
stream), independently of the policy, so a resumed run draws exactly what the uninterrupted one drew.

Compute: an example's tokens (non-pad prompt tokens + answer tokens + <eos>) cost 6N per token per PPO
epoch, exactly as a rollout's tokens in training do (`grpo.step_flops`, `sft_tokens`). Nothing is charged
for making the examples (they come from the task generators, not from a model), so "the same compute" is
the same count of model FLOPs, which favours the mix-in by the cost of the data it is given.

Simplified:
- the examples are drawn afresh each step from the generators (repeats possible, as in `TaskSet.sample`),
  not from a fixed finite data set; the number of distinct examples seen grows with the steps;
- only the bare answer format is taught (format 0 of `family.solutions`), whatever formats the corpus used;
- for a chat model the completion is the answer + <eos> after the chat template's generation cue
  (no chat end-of-turn token other than what `eos_ids` stops on);
- the SFT term is not clipped, ratio-weighted or KL-penalised: it is plain NLL added to the minibatch loss,
  and gradient clipping (`max_grad_norm`) applies to the sum;
- uncovered sub-spaces are per family by the corpus' sub-space rule, not by any finer notion of what
  the base can or cannot sample.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ceiling.errors import error_at
from ceiling.models import LoadedModel, bases_dir, format_prompts
from ceiling.models.sampling import eos_ids, left_pad
from ceiling.models.tokenizer import encode_text
from ceiling.tasks import Problem, TaskSet
from ceiling.tasks.core import stable_int

SFT_SOURCES = ("uncovered", "all")
PRETRAIN_JSON = "pretrain.json"  # the record `ceiling.pretrain` writes into each base folder


# ---- the math ----------------------------------------------------------------------------------------------
def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per answer token: -sum(mask * logp) / sum(mask) (0 when mask is empty).

    `logp` [n, T] is log p(answer token) under the policy, `mask` [n, T] is 1 on answer tokens (and <eos>)."""
    mask = mask.to(logp.dtype)
    return -(logp * mask).sum() / mask.sum().clamp(min=1.0)


def active(step: int, examples_per_step: int, from_step: int, until_step: int) -> bool:
    """Whether update `step` (theta_step -> theta_{step+1}) carries supervised examples."""
    return examples_per_step > 0 and step >= from_step and (until_step <= 0 or step < until_step)


# ---- which problems ----------------------------------------------------------------------------------------
def pretrain_record_path(base: str) -> Path:
    """Where a base's `pretrain.json` lives: in the folder `base`, or in the shipped base of that name."""
    path = Path(base)
    return (path if path.is_dir() else bases_dir() / base) / PRETRAIN_JSON


def covered_subspaces(base: str) -> dict[str, list[str]]:
    """The base's covered sub-spaces per family (`corpus.covered_subspaces` of its `pretrain.json`)."""
    path = pretrain_record_path(base)
    if not path.is_file():
        raise error_at(path, "no such file: sft_source 'uncovered' needs the base's corpus record (a base made "
                             "by `ceiling pretrain` has one); use sft_source 'all' for this base", field="sft_source")
    try:
        covered = json.loads(path.read_text())["corpus"]["covered_subspaces"]
        return {str(fam): [str(s) for s in subs] for fam, subs in covered.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise error_at(path, "malformed: needs corpus.covered_subspaces (family -> list of sub-spaces)",
                       field="corpus") from None


def is_uncovered(problem: Problem, covered: dict[str, list[str]]) -> bool:
    """True when the corpus showed no correct answers in the problem's sub-space (or never held its family)."""
    from ceiling.pretrain import subspace_of  # ceiling.pretrain is heavier; only this source needs it

    return subspace_of(problem) not in covered.get(problem.family, ())


def eligible_families(taskset: TaskSet, covered: dict[str, list[str]] | None, n_probe: int = 4096) -> list[str]:
    """The verified families with train problems in uncovered sub-spaces (all of them when `covered` is None):
    a family with none among `n_probe` train problems is left out. A one-line error when none is left."""
    fams = taskset.families("verified")
    if covered is not None:
        fams = [f for f in fams if any(is_uncovered(p, covered) for p in f.generate(
            n_probe, seed=stable_int("sft-probe", f.name), split="train", difficulty=taskset.difficulties[f.name]))]
    if not fams:
        raise error_at(None, "every sub-space of the verified families is covered by the base's corpus: no "
                             "uncovered examples to mix in", field="sft_source")
    return [f.name for f in fams]


def draw_problems(taskset: TaskSet, n: int, seed: int, covered: dict[str, list[str]] | None,
                  families: list[str] | None = None) -> list[Problem]:
    """`n` train-split problems of the verified families, deterministic in `seed`; with `covered`, only
    problems in uncovered sub-spaces (`is_uncovered`).

    Counts are spread evenly over `families` (default `eligible_families`; the first n % F get one more,
    as `TaskSet.sample`), then shuffled."""
    def keep(p: Problem) -> bool:
        return covered is None or is_uncovered(p, covered)

    fams = [taskset.family(name) for name in (families or eligible_families(taskset, covered))]
    out: list[Problem] = []
    for i, fam in enumerate(fams):
        want = n // len(fams) + (1 if i < n % len(fams) else 0)
        got: list[Problem] = []
        size = 4 * want
        while len(got) < want:  # the first m problems of generate(n >= m) are generate(m): grow the draw
            got = [p for p in fam.generate(size, seed, split="train", difficulty=taskset.difficulties[fam.name]) if keep(p)]
            size *= 4
        out.extend(got[:want])
    random.Random(stable_int("sft", seed)).shuffle(out)
    return out


# ---- the tensors -------------------------------------------------------------------------------------------
@dataclass
class SFTBatch:
    """One step's supervised examples in a `Rollout`'s layout: prompts left-padded to `prompt_len`, then the
    answer tokens (answer + <eos>) right-padded; `completion_mask` is 1 on answer tokens."""

    problems: list[Problem]
    input_ids: torch.Tensor  # [n, P + T]
    attention_mask: torch.Tensor  # [n, P + T]
    prompt_len: int
    completion_mask: torch.Tensor  # [n, T]

    @property
    def size(self) -> int:
        return len(self.problems)

    @property
    def answer_tokens(self) -> float:
        """Tokens the loss is on (answers and <eos>)."""
        return float(self.completion_mask.sum())

    @property
    def tokens(self) -> float:
        """Non-pad tokens of the forward (prompts + answers): what `step_flops` charges 6N each per epoch."""
        return float(self.attention_mask.sum())


def encode_examples(loaded: LoadedModel, taskset: TaskSet, problems: list[Problem],
                    device: torch.device | str = "cpu") -> SFTBatch:
    """The examples as tensors: `format_prompts`'d prompt, then the family's `solution` and <eos>."""
    tok = loaded.tokenizer
    eos = eos_ids(loaded.model, tok)[0]
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    prompts = [encode_text(tok, p) for p in format_prompts(loaded, [q.prompt for q in problems])]
    answers = [encode_text(tok, taskset.family(q.family).solution(q)) + [eos] for q in problems]
    prompt_ids, prompt_mask = left_pad(prompts, pad)
    width = max(len(a) for a in answers)
    answer_ids = torch.full((len(answers), width), pad, dtype=torch.long)
    answer_mask = torch.zeros((len(answers), width), dtype=torch.long)
    for i, a in enumerate(answers):
        answer_ids[i, : len(a)] = torch.as_tensor(a, dtype=torch.long)
        answer_mask[i, : len(a)] = 1
    return SFTBatch(list(problems), torch.cat([prompt_ids, answer_ids], 1).to(device),
                    torch.cat([prompt_mask, answer_mask], 1).to(device), int(prompt_ids.shape[1]),
                    answer_mask.to(device))


class Source:
    """Where a run's examples come from: the task set and, for 'uncovered', the base's covered sub-spaces
    (read once, at the start of the run, so a missing pretrain.json fails before any step)."""

    def __init__(self, source: str, base: str, taskset: TaskSet) -> None:
        if source not in SFT_SOURCES:
            raise error_at(None, f"must be one of {', '.join(SFT_SOURCES)}, got {source!r}", field="sft_source")
        self.taskset = taskset
        self.covered = covered_subspaces(base) if source == "uncovered" else None
        self.families = eligible_families(taskset, self.covered)

    def batch(self, loaded: LoadedModel, n: int, seed: int, device: torch.device | str) -> SFTBatch:
        """Step `seed`'s `n` examples as tensors on `device`."""
        problems = draw_problems(self.taskset, n, seed, self.covered, self.families)
        return encode_examples(loaded, self.taskset, problems, device)


def summary(sft: SFTBatch, nll_sum: float, nll_tokens: float) -> dict[str, Any]:
    """The step's `sft/*` metrics: examples, tokens, and the mean answer-token NLL seen while training."""
    return {"sft/loss": nll_sum / max(nll_tokens, 1.0), "sft/examples": sft.size,
            "sft/answer_tokens": sft.answer_tokens, "sft/tokens": sft.tokens}
