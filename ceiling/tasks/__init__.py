"""Verifiable task families, task sets (verified vs unverified), JSONL user tasks, TRL reward functions.

    from ceiling.tasks import TaskSet, get_family, trl_reward_fn
    ts = TaskSet.preset("default")                      # or TaskSet.parse("verified=add;unverified=mul:2")
    problems = ts.sample(64, seed=0, split="train")     # verified families at their difficulty (1)
    held_out = ts.sample(64, seed=0, split="test", which="unverified", unique=True)
    ts.verify(problems[0], completion)                  # 1.0 or 0.0, never raises
    add = get_family("add"); p = add.make(12, 35)       # or add.generate(n, seed, split, difficulty)
    p.prompt, add.solution(p), add.solutions(p)         # "12+35=", "47", ["47", "12+35=47", "12+35=40+7=47"]
    add.perturb_answer(p, random.Random(0))             # "46": a plausible wrong answer
    reward = trl_reward_fn(ts)                          # f(prompts, completions, **kw) -> list[float]

Families (`FAMILIES`): add, sub, mul, mod, sort, count, parity (`ceiling.tasks.families`) and countdown
(`ceiling.tasks.countdown`); difficulty 1, 2, 3, ... lengthens operands. Each has `generate`, `solution`,
`solutions` (several correct formats), `perturb_answer` (a plausible wrong answer, for pretraining
corpora), `subspace` (a coarse region label, to cover only part of a family in pretraining),
`extract_answer`, `verify` and `parse_prompt`. Splits are disjoint by a stable hash of each
problem's content (`ceiling.tasks.core`); answers are extracted leniently (`ceiling.tasks.extract`).

Why the default split into verified and unverified families
------------------------------------------------------------
RL is rewarded on add and sub only. The unverified families (mul, mod, sort, parity) share the surface
form ``<short ASCII problem>=`` -> a short digit string, the digit vocabulary, and part of the skill
(digit-wise arithmetic and carries for mul and mod, ordering and counting of digits for sort and parity),
so the same weights of a tiny model serve all of them. Sharpening the policy on add/sub can therefore
plausibly (a) transfer (shared digit skills improve), or (b) damage them: collapse of output diversity
towards add/sub-like answers (e.g. answering a "47%7=" prompt with a sum-sized number), entropy collapse
that lowers pass@k on problems the base could sometimes solve, and drift of the shared "=" -> answer
behaviour. Measuring the unverified families on held-out test problems, never rewarded, shows which
happens; that is the "general reasoning RL may damage" of the research question, in miniature. Countdown
is left to the ``wide`` and ``countdown`` presets because a tiny base barely solves it at difficulty 1
and its expression answers are costlier to sample.
"""
from ceiling.tasks.core import TEST_FRACTION, Problem, TaskFamily, completion_text, split_of
from ceiling.tasks.countdown import Countdown
from ceiling.tasks.families import Add, Count, Mod, Mul, Parity, Sort, Sub
from ceiling.tasks.jsonl import JsonlFamily, load_jsonl_tasks
from ceiling.tasks.registry import FAMILIES, get_family
from ceiling.tasks.taskset import PRESETS, TaskSet
from ceiling.tasks.rewards import generic_score, trl_reward_fn

__all__ = [
    "FAMILIES", "PRESETS", "TEST_FRACTION", "Add", "Count", "Countdown", "JsonlFamily", "Mod", "Mul", "Parity",
    "Problem", "Sort", "Sub", "TaskFamily", "TaskSet", "completion_text", "generic_score", "get_family",
    "load_jsonl_tasks", "split_of", "trl_reward_fn",
]
