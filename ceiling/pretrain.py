"""Tiny base models of controlled diversity: a synthetic corpus from the task suite, a `diversity` knob,
a deterministic CPU training loop, and the measures that say how diverse a base really is.

Corpus
------
Every document is ``<bos> prompt completion <eos>`` (`ceiling.models.encode_document`, the same tokenisation
RL and evaluation use), with prompts drawn from the *train* split of every family of a task set (verified and
unverified alike, default preset ``tiny-rl``: sort | mod, count): 70% of documents from the verified
families, 30% from the unverified ones, evenly within each group (`CorpusSpec.verified_share`). The completion is either a
correct answer (`family.solutions`) or a plausible wrong one (`family.perturb_answer`), chosen as follows.

Problem sub-spaces. A problem's *sub-space* is the last character of its prompt before the cue (``12+35=``
-> ``5``, ``47%7=`` -> ``7``, ``parity 1011=`` -> ``1``): a feature a char model reads directly, so what
the corpus does in a sub-space is learnable and carries over to held-out prompts of that sub-space. Each
family's sub-spaces are put in a fixed random order (a hash of corpus seed, family and sub-space; it does
not depend on `diversity`).

Wrong answers are *systematic*: wrong variant j of sub-space s is `perturb_answer(problem, rng)` with the
rng seeded by (corpus seed, family, s, j), so within a sub-space variant j is the same kind of mistake
(dropped carries, the same digit slip, off by ten...), a mistake a model can learn as a rule.

The knob. `diversity` d in [0, 1] sets four numbers (`knob(d)`):

- ``coverage`` = 0.3 + 0.5 d: the share of each family's sub-spaces (the first ones in the fixed order,
  at least one) where correct answers appear at all. In the other sub-spaces every document shows the
  *same* wrong variant 0: the base learns a confident wrong rule there, so its pass@k stays low even at
  large k, and RL (which can only reinforce what it samples) has nothing to find there.
- ``p_correct`` = 0.85 - 0.25 d: in a covered sub-space, the probability that a document shows the correct
  answer.
- ``wrong_variants`` = 1 + round(3 d): in a covered sub-space, the other documents show one of this many
  wrong variants, uniformly (the spread of answers: entropy and distinct answers grow with d).
- ``format_share`` = 0.3 d: the probability that a document uses one of the family's alternative surface
  formats (``12+35=47``, the worked ``12+35=40+7=47``, ``1 2 3``...) instead of the bare answer; a wrong
  answer is written in the same format with the final answer replaced.

So with the same seed the covered sub-spaces are nested (coverage grows with d), and the corpus share of
correct answers (coverage x p_correct = 0.26 at d = 0, 0.40 at 0.5, 0.48 at 1) and the distinct answers
per problem (1 in an uncovered sub-space, 1 + wrong_variants in a covered one) both grow with d. Random
draws use common random numbers across d (the same uniforms per document), so corpora of different d
differ only by the knob. Measured on the shipped bases: see `diversity.json` in each `data/bases/<name>/`.

Training: a `ceiling.models.tiny_config` Llama (866k parameters), AdamW, linear warm-up then cosine decay,
fixed steps and batch, length-bucketed right-padded batches; the loss is on completion tokens and <eos> (prompt tokens,
random operands, get weight `prompt_loss_weight`, default 0). With the same seed and thread count on CPU
it gives bitwise the same weights (deterministic algorithms on, fixed thread count, default 2).

Public API: `knob`, `Knob`, `CorpusSpec`, `TrainConfig`, `build_corpus`, `corpus_stats`, `pretrain`,
`pretrain_preset`, `PRESETS`, `measure_diversity`, `heldout_documents`, `heldout_pairs`, `subspace_of`.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ceiling.errors import CeilingError, error_at
from ceiling.evaluate.diversity import distinct_answers
from ceiling.io import atomic_write_json
from ceiling.models import (
    LoadedModel,
    bases_dir,
    build_char_tokenizer,
    count_parameters,
    encode_document,
    encode_text,
    format_prompts,
    save,
    tiny_config,
)
from ceiling.models.logprobs import token_logprobs
from ceiling.models.sampling import sample
from ceiling.stats import pass_at_k
from ceiling.tasks import Problem, TaskFamily, TaskSet
from ceiling.tasks.core import stable_int

PRESETS: dict[str, float] = {"tiny-low": 0.0, "tiny-medium": 0.5, "tiny-high": 1.0,
                             "tiny-cipher-low": 0.0, "tiny-cipher-medium": 0.5, "tiny-cipher-high": 1.0}
"""The shipped bases and their `diversity`."""
BASE_TASKS: dict[str, str] = {"tiny-cipher-low": "tiny-cipher", "tiny-cipher-medium": "tiny-cipher",
                              "tiny-cipher-high": "tiny-cipher"}
"""The corpus task set of a shipped base, where it is not `CorpusSpec.tasks` (tiny-rl). The cipher bases add a
knowledge family (`cipher`) beside sorting: one floor that binds (a sub-space's table the corpus never shows stays
unknown) and one that need not (sorting carries over to sub-spaces the corpus does not cover)."""
BASE_STEPS: dict[str, int] = {"tiny-cipher-low": 2400, "tiny-cipher-medium": 2400, "tiny-cipher-high": 2400}
"""Pretraining steps of a shipped base, where it is not `TrainConfig.steps`: the cipher bases learn two verified
families (ten substitution tables besides sorting) and need about twice the budget."""

PRETRAIN_JSON = "pretrain.json"
DIVERSITY_JSON = "diversity.json"


# ---- the knob -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knob:
    """What `diversity` sets in the corpus (see the module docstring)."""

    coverage: float
    """Share of each family's sub-spaces where correct answers appear at all."""
    p_correct: float
    """In a covered sub-space, probability that a document shows a correct answer."""
    wrong_variants: int
    """In a covered sub-space, number of distinct systematic wrong answers shown."""
    format_share: float
    """Probability that a document uses an alternative surface format."""


def knob(diversity: float) -> Knob:
    """The corpus settings for `diversity` in [0, 1]."""
    d = float(diversity)
    if not (0.0 <= d <= 1.0) or math.isnan(d):
        raise error_at(None, f"must be in [0, 1], got {diversity!r}", field="diversity")
    return Knob(coverage=0.3 + 0.5 * d, p_correct=0.85 - 0.25 * d, wrong_variants=1 + round(3 * d),
                format_share=0.3 * d)


# ---- configuration --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusSpec:
    """Everything that defines a pretraining corpus (recorded in `pretrain.json`)."""

    diversity: float
    """The knob, in [0, 1]."""
    seed: int = 0
    """Seed of sub-space order, wrong variants and document draws."""
    tasks: str = "tiny-rl"
    """Task set (a `TaskSet.parse` spec) whose verified and unverified families make the corpus."""
    verified_share: float = 0.7
    """Share of documents from the verified families (split evenly among them); the rest is split evenly
    among the unverified families."""

    def taskset(self) -> TaskSet:
        return TaskSet.parse(self.tasks)


@dataclass(frozen=True)
class TrainConfig:
    """Model size and optimisation of one pretraining run (recorded in `pretrain.json`)."""

    steps: int = 1100
    """Optimizer steps (under 2 minutes on two cores: about 0.1 s a step)."""
    batch_size: int = 64
    """Documents per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW). 5e-3 learns nothing on these tasks (the model collapses to <eos>)."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a share of the peak (cosine decay)."""
    warmup: int = 40
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Gradient clipping threshold on the global norm."""
    prompt_loss_weight: float = 0.0
    """Weight of the prompt tokens in the loss, relative to completion tokens and <eos> (weight 1). 0 spends
    the whole (tiny) budget on answers: prompts here are random operands, unpredictable by design."""
    hidden_size: int = 128
    """Model width."""
    num_layers: int = 4
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads."""
    threads: int = 2
    """Torch CPU threads. Results are bitwise reproducible for a fixed thread count. On a busy machine use 1
    (`ceiling pretrain --threads 1`): 2 threads waiting on each other slow down there (benchmarks/RESULTS.md)."""
    bucket_batches: int = 32
    """Length bucketing: the document stream is cut into pools of this many batches, each pool is sorted by
    length and cut into batches, and the batches of a pool are shuffled (seeded). Documents here are 5-24
    tokens, so unbucketed right-padded batches are about half padding; 1 = no bucketing."""
    log_every: int = 50
    """Print a progress line every this many steps (0 = quiet)."""


# ---- sub-spaces and completions --------------------------------------------------------------------------
def subspace_of(problem: Problem) -> str:
    """The problem's sub-space: the last prompt character before the cue (see the module docstring)."""
    prompt = problem.prompt.rstrip()
    return prompt[-2] if len(prompt) >= 2 else prompt


def _unit(*parts: object) -> float:
    """A stable uniform number in [0, 1) from `parts`."""
    return stable_int(*parts) / float(2**64)


def subspace_order(family: TaskFamily, seed: int, difficulty: int = 1, n_probe: int = 2000) -> list[str]:
    """The family's sub-spaces (those seen among `n_probe` train problems) in the corpus' fixed random order."""
    seen = {subspace_of(p) for p in family.generate(n_probe, seed=stable_int("probe", seed), split="train",
                                                    difficulty=difficulty)}
    return sorted(seen, key=lambda s: (_unit("order", seed, family.name, s), s))


def covered_subspaces(order: Sequence[str], coverage: float) -> list[str]:
    """The first round(coverage x |order|) sub-spaces (at least one): nested as coverage grows."""
    k = max(1, min(len(order), round(coverage * len(order))))
    return list(order[:k])


def wrong_answer(family: TaskFamily, problem: Problem, variant: int, seed: int) -> str:
    """Wrong variant `variant` of a problem: the same kind of mistake across its sub-space."""
    rng = random.Random(stable_int("wrong", seed, family.name, subspace_of(problem), variant))
    return family.perturb_answer(problem, rng)


def render(family: TaskFamily, problem: Problem, answer: str | None, fmt: int) -> str:
    """The completion in surface format `fmt` (0 = bare) with final answer `answer` (None = correct).

    A wrong answer in an alternative format replaces the format's trailing correct answer; formats that do
    not end with the answer fall back to the bare wrong answer."""
    formats = family.solutions(problem)
    text = formats[fmt % len(formats)]
    if answer is None:
        return text
    if fmt % len(formats) and text.endswith(problem.answer):
        return text[: len(text) - len(problem.answer)] + answer
    return answer


def family_weights(taskset: TaskSet, verified_share: float) -> list[float]:
    """Document share of each family of `taskset.families("all")` (verified first)."""
    nv, nu = len(taskset.verified), len(taskset.unverified)
    if not nu or not nv:
        return [1.0 / (nv + nu)] * (nv + nu)
    if not 0.0 < verified_share < 1.0:
        raise error_at(None, f"must be in (0, 1), got {verified_share!r}", field="verified_share")
    return [verified_share / nv] * nv + [(1.0 - verified_share) / nu] * nu


def _apportion(n: int, weights: Sequence[float]) -> list[int]:
    """Split n into integer counts proportional to `weights` (largest remainders, ties to the first)."""
    raw = [n * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class Document:
    """One corpus document (text is prompt + completion; the tokenizer adds <bos> and <eos>)."""

    prompt: str
    completion: str
    family: str
    problem_id: str
    subspace: str
    covered: bool
    correct: bool
    answer: str

    @property
    def text(self) -> str:
        return self.prompt + self.completion


@dataclass
class CorpusPlan:
    """The per-family sub-space orders and covered sets of a spec (recorded in `pretrain.json`)."""

    spec: CorpusSpec
    knob: Knob
    families: list[TaskFamily]
    weights: list[float]
    difficulties: dict[str, int]
    order: dict[str, list[str]]
    covered: dict[str, list[str]]
    _cache: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(cls, spec: CorpusSpec) -> CorpusPlan:
        ts = spec.taskset()
        fams = ts.families("all")
        order = {f.name: subspace_order(f, spec.seed, ts.difficulties[f.name]) for f in fams}
        k = knob(spec.diversity)
        covered = {name: covered_subspaces(o, k.coverage) for name, o in order.items()}
        return cls(spec, k, fams, family_weights(ts, spec.verified_share), dict(ts.difficulties), order, covered)

    def document(self, family: TaskFamily, problem: Problem, u_correct: float, u_variant: float,
                 u_format: float, u_which: float) -> Document:
        """The document for `problem` given four uniforms (common random numbers across `diversity`)."""
        k = self.knob
        sub = subspace_of(problem)
        covered = sub in self.covered[family.name]
        correct = covered and u_correct < k.p_correct
        variant = -1 if correct else (int(u_variant * k.wrong_variants) if covered else 0)
        formats = self._formats(family, problem, variant)
        fmt = 1 + int(u_which * (len(formats) - 1)) if len(formats) > 1 and u_format < k.format_share else 0
        answer = problem.answer if correct else self._wrong(family, problem, variant)
        return Document(problem.prompt, formats[fmt], family.name, problem.id, sub, covered, correct, answer)

    def _wrong(self, family: TaskFamily, problem: Problem, variant: int) -> str:
        key = (problem.id, variant)
        if key not in self._cache:
            self._cache[key] = wrong_answer(family, problem, variant, self.spec.seed)
        return self._cache[key]

    def _formats(self, family: TaskFamily, problem: Problem, variant: int) -> list[str]:
        """The completion in every surface format, with the correct answer (variant -1) or a wrong one."""
        key = (problem.id, -2 - variant)
        if key not in self._cache:
            answer = None if variant < 0 else self._wrong(family, problem, variant)
            n = len(family.solutions(problem))
            self._cache[key] = [render(family, problem, answer, f) for f in range(n)]
        return self._cache[key]

    def documents(self, n: int, seed: int, split: str) -> list[Document]:
        """`n` documents on `split`, families in equal shares (round robin), then shuffled; deterministic."""
        fams = self.families
        per = _apportion(n, self.weights)
        rng = random.Random(stable_int("docs", seed, split))
        docs: list[Document] = []
        for fam, count in zip(fams, per):
            problems = fam.generate(count, seed=stable_int("corpus", seed, fam.name), split=split,
                                    difficulty=self.difficulties[fam.name])
            for p in problems:
                u = [rng.random() for _ in range(4)]
                docs.append(self.document(fam, p, *u))
        rng.shuffle(docs)
        return docs

    def to_dict(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), "knob": asdict(self.knob), "difficulty": self.difficulties,
                "family_weights": {f.name: w for f, w in zip(self.families, self.weights)},
                "subspace_rule": "last prompt character before the cue",
                "subspace_order": self.order, "covered_subspaces": self.covered}


def build_corpus(spec: CorpusSpec, n_documents: int, split: str = "train") -> list[Document]:
    """`n_documents` documents of the corpus defined by `spec` (train split for pretraining)."""
    return CorpusPlan.from_spec(spec).documents(n_documents, seed=spec.seed, split=split)


def corpus_stats(docs: Sequence[Document]) -> dict[str, Any]:
    """Corpus statistics: share of correct answers, of documents in covered sub-spaces, distinct answers
    per problem (over problems seen at least twice), and per-family correct shares."""
    by_problem: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for d in docs:
        by_problem.setdefault(d.problem_id, set()).add(d.answer)
        counts[d.problem_id] += 1
    multi = [len(a) for pid, a in by_problem.items() if counts[pid] >= 2]
    fams = sorted({d.family for d in docs})
    return {
        "documents": len(docs),
        "correct_share": float(np.mean([d.correct for d in docs])) if docs else float("nan"),
        "covered_share": float(np.mean([d.covered for d in docs])) if docs else float("nan"),
        "distinct_answers_per_problem": float(np.mean(multi)) if multi else float("nan"),
        "problems_seen_twice": len(multi),
        "mean_chars": float(np.mean([len(d.text) for d in docs])) if docs else float("nan"),
        "correct_share_by_family": {f: float(np.mean([d.correct for d in docs if d.family == f])) for f in fams},
    }


# ---- training -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def deterministic_cpu(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic algorithms inside the block; the previous settings after."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _batch(rows: Sequence[Sequence[int]], prompt_lens: Sequence[int], pad_id: int,
           prompt_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L] and per-position loss weights [B, L-1] for predicting token t+1 from t:
    `prompt_weight` for prompt characters, 1 for completion characters and <eos>, 0 on padding."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    weights = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (r, p) in enumerate(zip(rows, prompt_lens)):
        ids[i, : len(r)] = torch.as_tensor(r)
        weights[i, : p - 1] = prompt_weight  # targets 1..p-1: prompt characters after <bos>
        weights[i, p - 1: len(r) - 1] = 1.0  # targets p..: completion and <eos>
    return ids, weights


def batch_schedule(lengths: Sequence[int], steps: int, batch_size: int, bucket_batches: int,
                   seed: int) -> list[list[int]]:
    """Document indices of every step: the documents in order (cycled), cut into pools of `bucket_batches`
    batches; each pool sorted by length (stable) and cut into batches, whose order is then shuffled with a
    seeded rng. Every document is used once per pass, as without bucketing; only batch composition changes."""
    n, pool = len(lengths), batch_size * max(1, bucket_batches)
    rng = random.Random(stable_int("buckets", seed))
    schedule: list[list[int]] = []
    lo = 0
    while len(schedule) < steps:
        idx = [(lo + i) % n for i in range(pool)]
        lo += pool
        idx.sort(key=lambda i: lengths[i])
        batches = [idx[j: j + batch_size] for j in range(0, pool, batch_size)]
        rng.shuffle(batches)
        schedule.extend(batches)
    return schedule[:steps]


def weighted_lm_loss(logits: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean next-token cross-entropy."""
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return -(logp * weights).sum() / weights.sum().clamp(min=1e-8)


def train_model(docs: Sequence[Document], cfg: TrainConfig, seed: int) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Train a fresh tiny Llama on `docs` (cycled in order, `batch_size` per step, length-bucketed: see
    `batch_schedule`). Returns model, tokenizer
    and a log (losses, wall seconds). Right padding needs no attention mask in a causal model: real tokens
    never attend to the padding after them, and padding carries no loss."""
    from transformers import LlamaForCausalLM

    tokenizer = build_char_tokenizer()
    rows = [encode_document(tokenizer, d.prompt, d.completion) for d in docs]
    prompt_lens = [1 + len(encode_text(tokenizer, d.prompt)) for d in docs]  # <bos> + prompt
    config = tiny_config(hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads)
    longest = max(len(r) for r in rows)
    if longest > config.max_position_embeddings:
        raise CeilingError(f"a document has {longest} tokens, more than the model's {config.max_position_embeddings}")
    with deterministic_cpu(cfg.threads):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        losses: list[float] = []
        start, cpu_start = time.perf_counter(), time.process_time()
        schedule = batch_schedule([len(r) for r in rows], cfg.steps, cfg.batch_size, cfg.bucket_batches, seed)
        for step, idx in enumerate(schedule):
            ids, weights = _batch([rows[i] for i in idx], [prompt_lens[i] for i in idx], tokenizer.pad_token_id,
                                  cfg.prompt_loss_weight)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = weighted_lm_loss(model(input_ids=ids).logits, ids, weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                tail = float(np.mean(losses[-cfg.log_every:]))
                print(f"step {step + 1:5d}/{cfg.steps}  loss {tail:.4f}  lr {lr_at(step, cfg):.2e}  "
                      f"{time.perf_counter() - start:6.1f}s wall  {time.process_time() - cpu_start:6.1f}s cpu",
                      flush=True)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    log = {"wall_seconds": wall, "cpu_seconds": cpu, "final_loss": float(np.mean(losses[-50:])), "loss_first": losses[0],
           "parameters": count_parameters(model, non_embedding=False),
           "parameters_non_embedding": count_parameters(model, non_embedding=True)}
    return model, tokenizer, log


def pretrain(out: str | Path, diversity: float, seed: int = 0, cfg: TrainConfig | None = None,
             tasks: str = CorpusSpec.tasks, measure: bool = True,
             verified_share: float = CorpusSpec.verified_share) -> Path:
    """Build the corpus, train, save an HF folder at `out` with `pretrain.json` (knob, seed, corpus spec,
    training config and log) and, if `measure`, `diversity.json` (see `measure_diversity`)."""
    cfg = cfg or TrainConfig()
    spec = CorpusSpec(diversity=float(diversity), seed=int(seed), tasks=tasks, verified_share=float(verified_share))
    plan = CorpusPlan.from_spec(spec)
    docs = plan.documents(cfg.steps * cfg.batch_size, seed=spec.seed, split="train")
    model, tokenizer, log = train_model(docs, cfg, seed=spec.seed)
    out = Path(out)
    save(model, tokenizer, out)
    record = {
        "schema_version": 1,
        "name": out.name,
        "diversity": spec.diversity,
        "seed": spec.seed,
        "corpus": plan.to_dict(),
        "corpus_stats": corpus_stats(docs),
        "train": asdict(cfg),
        "log": log,
        "torch": torch.__version__,
        "command": f"ceiling pretrain --diversity {spec.diversity} --name {out.name} --seed {spec.seed}"
                   + (f" --tasks {spec.tasks}" if spec.tasks != CorpusSpec.tasks else "")
                   + (f" --steps {cfg.steps}" if cfg.steps != TrainConfig.steps else "")
                   + (f" --threads {cfg.threads}" if cfg.threads != TrainConfig.threads else ""),
    }
    atomic_write_json(out / PRETRAIN_JSON, record)
    if measure:
        from ceiling.models import load

        loaded = load(out, device="cpu")
        with deterministic_cpu(cfg.threads):
            measured = measure_diversity(loaded, spec.taskset(), seed=spec.seed)
        atomic_write_json(out / DIVERSITY_JSON, measured)
    return out


def preset_settings(name: str, cfg: TrainConfig, keep_steps: bool = False) -> tuple[TrainConfig, str]:
    """A shipped base's training config and corpus task set: `cfg` with the base's `BASE_STEPS` (unless
    `keep_steps`) and its `BASE_TASKS`; any other name keeps `cfg` and the default corpus."""
    steps = BASE_STEPS.get(name)
    if steps and not keep_steps:
        cfg = with_steps(cfg, steps)
    return cfg, BASE_TASKS.get(name, CorpusSpec.tasks)


def pretrain_preset(name: str, seed: int = 0, cfg: TrainConfig | None = None, root: str | Path | None = None,
                    measure: bool = True) -> Path:
    """Pretrain one shipped base (a `PRESETS` name, with its `BASE_TASKS` corpus) into `root` (default data/bases);
    a given `cfg` keeps its own steps."""
    if name not in PRESETS:
        raise error_at(None, f"unknown base {name!r}; shipped bases: {', '.join(PRESETS)}", field="name")
    cfg, tasks = preset_settings(name, cfg or TrainConfig(), keep_steps=cfg is not None)
    return pretrain(Path(root or bases_dir()) / name, PRESETS[name], seed=seed, cfg=cfg, measure=measure, tasks=tasks)


# ---- diversity measures ----------------------------------------------------------------------------------
def _answers(family: TaskFamily, texts: Sequence[str]) -> list[str | None]:
    return [family.extract_answer(t) for t in texts]


@dataclass
class _FamilySamples:
    """One family's per-prompt measures of a base's samples (the pieces `measure_diversity` pools)."""

    entropy_sum: float = 0.0
    tokens: float = 0.0
    correct: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    distinct: list[int] = field(default_factory=list)
    greedy: list[float] = field(default_factory=list)


def _pooled(parts: Sequence[_FamilySamples], n_samples: int, k: int) -> dict[str, float]:
    """The measures over the prompts of `parts` together: entropy pooled over tokens, the rest means over prompts
    (the definition of `ceiling.evaluate.floor`)."""
    correct = np.asarray([c for p in parts for c in p.correct])
    tokens = sum(p.tokens for p in parts)
    if correct.size == 0:
        return {m: float("nan") for m in ("entropy", f"pass@{k}", "pass@1", "mean_reward", "greedy_acc",
                                          "distinct_answers")} | {"tokens": 0.0, "prompts": 0}
    return {
        "entropy": sum(p.entropy_sum for p in parts) / tokens if tokens > 0 else float("nan"),
        f"pass@{k}": float(np.mean(pass_at_k(n_samples, correct, k))),
        "pass@1": float(np.mean(pass_at_k(n_samples, correct, 1))),
        "mean_reward": float(np.mean([r for p in parts for r in p.rewards])),
        "greedy_acc": float(np.mean([g for p in parts for g in p.greedy])),
        "distinct_answers": float(np.mean([d for p in parts for d in p.distinct])),
        "tokens": float(tokens),
        "prompts": int(correct.size),
    }


def measure_diversity(loaded: LoadedModel, taskset: TaskSet, n_prompts: int = 32, n_samples: int = 64,
                      k: int = 64, seed: int = 0, max_new_tokens: int = 24, temperature: float = 1.0,
                      batch_prompts: int = 32) -> dict[str, Any]:
    """A base model's diversity on held-out (test split) problems: its diversity floor per family set.

    Per family (`n_prompts` problems each, `n_samples` samples each at `temperature`):
    - ``entropy``: full-vocabulary next-token entropy (nats), a token mean over the sampled completions;
    - ``pass@k``: unbiased pass@k (`ceiling.stats.pass_at_k`, k = `k` <= `n_samples`), mean over prompts;
    - ``mean_reward``: mean@n reward; ``greedy_acc``: accuracy of the greedy completion;
    - ``distinct_answers``: distinct extracted final answers per prompt (a sample with no answer not counted,
      as `ceiling.evaluate.diversity.distinct_answers`), mean over prompts;
    - ``tokens``: the sampled completion tokens the entropy is a mean over.
    Family sets ``verified/...``, ``unverified/...`` and ``all/...`` pool their families' prompts (entropy
    pooled over tokens, the rest means over prompts), the definition of the diversity floor
    (`ceiling.evaluate.floor`); ``floor`` holds the three sets in the form `floor_from_record` reads. The
    top-level ``entropy``, ``pass@64``, ``distinct_answers``, ``mean_reward`` and ``greedy_acc`` are the
    verified set's, and ``greedy_acc_unverified`` the unverified greedy accuracy."""
    if k > n_samples:
        raise error_at(None, f"k={k} exceeds n_samples={n_samples}", field="k")
    model, tok = loaded.model, loaded.tokenizer
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    samples: dict[str, _FamilySamples] = {}
    for fam in taskset.families("all"):
        problems = fam.generate(n_prompts, seed=stable_int("measure", seed, fam.name), split="test",
                                difficulty=taskset.difficulties[fam.name])
        got = samples[fam.name] = _FamilySamples()
        for lo in range(0, len(problems), batch_prompts):
            chunk = problems[lo: lo + batch_prompts]
            prompts = format_prompts(loaded, [p.prompt for p in chunk])
            roll = sample(model, tok, prompts, n_per_prompt=n_samples, max_new_tokens=max_new_tokens,
                          temperature=temperature, generator=gen)
            with torch.no_grad():
                _, ent = token_logprobs(model, roll.input_ids, roll.attention_mask, roll.prompt_len, entropy=True)
            mask = roll.completion_mask.bool()
            got.entropy_sum += float(ent[mask].sum())
            got.tokens += float(mask.sum())
            for i, p in enumerate(chunk):
                texts = roll.texts[i * n_samples:(i + 1) * n_samples]
                r = [fam.verify(p, t) for t in texts]
                got.rewards.extend(r)
                got.correct.append(sum(1 for x in r if x >= 1.0))
                got.distinct.append(distinct_answers(_answers(fam, texts)))
            g = sample(model, tok, prompts, n_per_prompt=1, max_new_tokens=max_new_tokens, temperature=0.0)
            got.greedy.extend(fam.verify(p, t) for p, t in zip(chunk, g.texts))
    per_family = {name: _pooled([got], n_samples, k) for name, got in samples.items()}
    out: dict[str, Any] = {"schema_version": 2}
    floor: dict[str, Any] = {}
    for which in ("verified", "unverified", "all"):
        names = taskset.names(which)
        pooled = _pooled([samples[n] for n in names], n_samples, k)
        metrics = ("entropy", "distinct_answers") if which == "all" else (  # the kinds are scored apart
            "entropy", f"pass@{k}", "pass@1", "mean_reward", "greedy_acc", "distinct_answers")
        for metric in metrics:
            out[f"{which}/{metric}"] = pooled[metric]
        floor[which] = {"family_names": names, "entropy": pooled["entropy"],
                        "pass@k": pooled[f"pass@{k}"] if which != "all" else None, "k": k if which != "all" else None,
                        "distinct_answers": pooled["distinct_answers"], "prompts": pooled["prompts"],
                        "samples_per_prompt": n_samples, "tokens": pooled["tokens"]}
    for metric in ("entropy", f"pass@{k}", "mean_reward", "greedy_acc", "distinct_answers"):
        out[metric] = out[f"verified/{metric}"]
    out["greedy_acc_unverified"] = out["unverified/greedy_acc"]
    out["floor"] = floor
    out["families"] = per_family
    out["settings"] = {"n_prompts": n_prompts, "n_samples": n_samples, "k": k, "seed": seed, "split": "test",
                       "temperature": temperature, "max_new_tokens": max_new_tokens, "tasks": taskset.to_dict()}
    return out


# ---- held-out documents ----------------------------------------------------------------------------------
def _read_record(base: str | Path) -> dict[str, Any]:
    path = Path(base)
    if path.is_dir():
        path = path / PRETRAIN_JSON
    elif not path.exists() and not path.suffix:
        path = bases_dir() / str(base) / PRETRAIN_JSON
    if not path.is_file():
        raise error_at(path, "no pretrain.json here (a base made by `ceiling pretrain` has one)")
    try:
        record = json.loads(path.read_text())
        record["corpus"]["spec"]["diversity"]
    except (ValueError, KeyError, TypeError):
        raise error_at(path, "malformed pretrain.json (needs corpus.spec)", field="corpus") from None
    return record


def heldout_pairs(base: str | Path, n: int = 256, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, completion) pairs from a base's own pretraining distribution on the *test* split.

    `base` is a base folder, its `pretrain.json`, or a shipped base name."""
    spec = CorpusSpec(**_read_record(base)["corpus"]["spec"])
    plan = CorpusPlan.from_spec(spec)
    return [(d.prompt, d.completion) for d in plan.documents(n, seed=stable_int("heldout", spec.seed, seed),
                                                           split="test")]


def heldout_documents(base: str | Path, n: int = 256, seed: int = 0) -> list[str]:
    """Documents (prompt + completion text, without special tokens) from a base's pretraining distribution
    on the test split. Tokenise as `encode_document(tokenizer, text, "")` (= <bos> text <eos>) to score NLL."""
    return [p + c for p, c in heldout_pairs(base, n, seed)]


def with_steps(cfg: TrainConfig, steps: int) -> TrainConfig:
    """`cfg` with another step count (warm-up capped to fit)."""
    return replace(cfg, steps=steps, warmup=min(cfg.warmup, max(1, steps // 4)))


__all__ = [
    "PRESETS", "Knob", "knob", "CorpusSpec", "TrainConfig", "CorpusPlan", "Document", "subspace_of",
    "build_corpus", "corpus_stats", "pretrain", "pretrain_preset", "preset_settings", "train_model", "measure_diversity",
    "heldout_documents", "heldout_pairs", "with_steps", "deterministic_cpu", "family_weights",
]
