"""Verifiers with TRL's reward-function signature: ``f(prompts, completions, **kwargs) -> list[float]``.

    from ceiling.tasks import TaskSet, trl_reward_fn
    trainer = GRPOTrainer(..., reward_funcs=[trl_reward_fn(TaskSet.preset("default"))])

Per completion: the problem is recognised from its prompt (a string, or a conversation whose last message
is the user's), by the family named in a ``family`` dataset column when present, else by the first family
of the task set that parses it. When TRL passes an ``answer`` column, that answer is the reference; a
prompt no family recognises is then scored generically (numeric match if the answer is a number, else
exact match). Completions may be strings or conversational lists of ``{"role", "content"}`` dicts.
Prompts of families outside `which` (by default: the unverified ones) and unscorable prompts get 0.0,
so unverified families are never rewarded. The function never raises on a completion.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from ceiling.tasks import extract
from ceiling.tasks.core import Problem, TaskFamily, completion_text
from ceiling.tasks.taskset import TaskSet

RewardFn = Callable[..., list[float]]


def _prompt_text(prompt: Any) -> Any:
    """The user's text of a prompt: conversations give their last user message."""
    if isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1].get("content"), str):
            return users[-1]["content"]
    return completion_text(prompt)


def generic_score(answer: Any, completion: Any) -> float:
    """Score against a bare reference answer: numbers by value, other text by exact match."""
    text = completion_text(completion)
    if text is None or answer is None:
        return 0.0
    answer = str(answer)
    if extract.parse_number(answer) is not None:
        return 1.0 if extract.same_number(extract.extract_number(text), answer) else 0.0
    return 1.0 if extract.extract_text(text) == " ".join(answer.split()) else 0.0


def _column(kwargs: dict[str, Any], key: str, i: int) -> Any:
    col = kwargs.get(key)
    if isinstance(col, Sequence) and not isinstance(col, str) and i < len(col):
        return col[i]
    return None


def trl_reward_fn(tasks: TaskSet | TaskFamily | str, which: str = "verified", name: str | None = None) -> RewardFn:
    """A TRL reward function over `tasks` (a TaskSet, a family, or a TaskSet spec string).

    Its ``__name__`` is `name` or ``ceiling_<task set or family name>``, so TRL logs it as
    ``rewards/ceiling_default`` etc."""
    if isinstance(tasks, TaskFamily):
        taskset, label = TaskSet(verified=[tasks], name=tasks.name), tasks.name
    else:
        taskset = TaskSet.parse(tasks)
        label = taskset.name
    rewarded = {f.name: f for f in taskset.families(which)}

    def score(prompt: Any, completion: Any, answer: Any, family: Any) -> float:
        text = _prompt_text(prompt)
        fam = rewarded.get(family) if isinstance(family, str) else None
        problem: Problem | None = fam.parse_prompt(text) if fam is not None else taskset.find(text)
        if problem is None:
            if answer is None or taskset.find(text) is not None:
                return 0.0
            return generic_score(answer, completion)
        fam = rewarded.get(problem.family)
        if fam is None:
            return 0.0
        if answer is not None:
            problem = dataclasses.replace(problem, answer=str(answer))
        return fam.verify(problem, completion)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        out = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            try:
                out.append(float(score(prompt, completion, _column(kwargs, "answer", i), _column(kwargs, "family", i))))
            except Exception:  # noqa: BLE001 - a reward function never raises on a completion
                out.append(0.0)
        return out

    reward.__name__ = reward.__qualname__ = name or f"ceiling_{label}"
    return reward
