"""The shared machinery of every task family: `Problem`, `TaskFamily`, stable splits and seeds.

Splits are disjoint by construction. Every problem has a canonical *key* (its content, e.g. ``"12+35"``;
commutative families use the sorted operands, so "35+12" and "12+35" share a split; countdown lists its
numbers in ascending order). The key, prefixed by the family name, is hashed with BLAKE2b; the first 8 bytes taken modulo 10 000 give a
bucket, and buckets below ``TEST_FRACTION * 10 000`` belong to the test split, the rest to train. A
generator draws candidate problems from a seeded RNG and keeps only those whose key falls in the requested
split (rejection sampling), so a test problem can never appear in train, whatever the seed or difficulty.

Generation is deterministic: the RNG seed is itself a BLAKE2b hash of ``(family, seed, split, difficulty)``,
so it does not depend on Python's per-process string hashing.
"""
from __future__ import annotations

import hashlib
import operator
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from ceiling.errors import CeilingError
from ceiling.tasks import extract

TEST_FRACTION = 0.2
"""Share of each family's problem space (by key hash) reserved for the test split."""

SPLITS = ("train", "test")


def stable_int(*parts: object, bits: int = 64) -> int:
    """A process-independent integer hash of `parts` (BLAKE2b), for seeds and split buckets."""
    text = "|".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


def split_of(family: str, key: str, test_fraction: float = TEST_FRACTION) -> str:
    """The split ("train" or "test") that the problem `key` of `family` belongs to, by a stable hash."""
    bucket = stable_int("split", family, key) % 10_000
    return "test" if bucket < round(test_fraction * 10_000) else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise CeilingError(f"split must be 'train' or 'test', got {split!r}")
    return split


@dataclass(frozen=True)
class Problem:
    """One problem instance. `answer` is the canonical final answer; the full solution text comes from
    its family (`get_family(problem.family).solution(problem)`). `difficulty` is 0 when unknown (a problem
    rebuilt from a prompt). `meta` holds family-specific data (operands, numbers, target); it is not part
    of equality or hashing."""

    family: str
    prompt: str
    answer: str
    difficulty: int
    split: str
    id: str
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (meta values are ints, strings and lists of ints)."""
        return {"family": self.family, "prompt": self.prompt, "answer": self.answer,
                "difficulty": self.difficulty, "split": self.split, "id": self.id, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        return cls(str(d["family"]), str(d["prompt"]), str(d["answer"]), int(d.get("difficulty", 0)),
                   str(d.get("split", "train")), str(d.get("id", "")), dict(d.get("meta") or {}))


def completion_text(completion: Any) -> str | None:
    """Coerce what a trainer hands us into text: str as is, bytes decoded leniently, a chat message
    (dict with "content") or a list of messages (the last assistant / last message content); else None."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, Mapping):
        content = completion.get("content")
        return content if isinstance(content, str) else None
    if isinstance(completion, (list, tuple)) and completion:
        msgs = [m for m in completion if isinstance(m, Mapping)]
        for m in reversed(msgs):
            if m.get("role") == "assistant" and isinstance(m.get("content"), str):
                return m["content"]
        if msgs and isinstance(msgs[-1].get("content"), str):
            return msgs[-1]["content"]
    return None


def _level(difficulty: Any, name: str) -> int:
    """`difficulty` as an int >= 1 (numpy integers accepted), else a CeilingError."""
    try:
        level = operator.index(difficulty)
    except TypeError:
        level = 0
    if isinstance(difficulty, bool) or level < 1:
        raise CeilingError(f"{name}: difficulty must be an integer >= 1, got {difficulty!r}")
    return level


class TaskFamily:
    """A procedurally generated problem family.

    Subclasses set `name`, `description` and implement `_sample(rng, difficulty) -> tuple` (operands),
    `_build(*operands) -> (key, prompt, answer, meta)`, `_parse_prompt(text) -> tuple | None` (operands)
    and `_perturb(problem, rng) -> str`; numeric families keep the default extraction and scoring.
    """

    name: str = "family"
    description: str = ""
    numeric: bool = True
    """Answers are numbers, compared by value ("47.0" == "+47" == "47")."""

    # ---- generation -------------------------------------------------------------------------
    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        raise NotImplementedError

    def _build(self, *operands: Any) -> tuple[str, str, str, dict[str, Any]]:
        raise NotImplementedError

    def _split_key(self, key: str, *operands: Any) -> str:
        """The key that decides the split; commutative families map "35+12" and "12+35" to one key."""
        return key

    def make(self, *operands: Any, difficulty: int = 0) -> Problem:
        """The problem with these operands (split from its key)."""
        key, prompt, answer, meta = self._build(*operands)
        split = split_of(self.name, self._split_key(key, *operands))
        return Problem(self.name, prompt, answer, difficulty, split, f"{self.name}/{key}", meta)

    def generate(self, n: int, seed: int, split: str = "train", difficulty: int = 1, *,
                 unique: bool = False) -> list[Problem]:
        """`n` problems of `split` at `difficulty`, deterministic in (seed, split, difficulty).

        Problems are drawn independently, keeping only those whose key hashes to `split`, so the same
        problem may occur twice when the problem space is small; `unique=True` skips repeats (a
        CeilingError if the split has fewer than `n` problems). The first `m` problems of a call with
        `n >= m` are the `m` problems of a call with `n = m`."""
        check_split(split)
        difficulty = _level(difficulty, self.name)
        if n < 0:
            raise CeilingError(f"{self.name}: n must be >= 0, got {n}")
        rng = random.Random(stable_int("gen", self.name, seed, split, difficulty))
        out: list[Problem] = []
        seen: set[str] = set()
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 200 * n + 10_000:
                raise CeilingError(f"{self.name}: could not draw {n} {'distinct ' if unique else ''}{split} "
                                   f"problems at difficulty {difficulty} (the space is too small)")
            p = self.make(*self._sample(rng, difficulty), difficulty=difficulty)
            if p.split != split or (unique and p.id in seen):
                continue
            seen.add(p.id)
            out.append(p)
        return out

    # ---- solutions --------------------------------------------------------------------------
    def solution(self, problem: Problem) -> str:
        """A correct completion (the tiny-model format: just the answer; EOS is added by the tokenizer)."""
        return problem.answer

    def solutions(self, problem: Problem) -> list[str]:
        """Distinct correct completions in different surface formats (first = `solution`); all verify 1.0.
        The pretraining corpus may use them to vary format diversity."""
        return [self.solution(problem)]

    def subspace(self, problem: Problem) -> str:
        """A coarse label of the region of problem space `problem` lies in (e.g. "carries=1" for add,
        "m=7" for mod). A pretraining corpus can cover only some sub-spaces with correct solutions to
        control the base model's breadth; the labels are few (about 2 to 20 per family at difficulty 1)."""
        return "all"

    def perturb_answer(self, problem: Problem, rng: random.Random) -> str:
        """A plausible *wrong* completion (verifies to 0.0): the kind of mistake a learner makes
        (off-by-one digit, dropped carry, swapped elements...). Deterministic given `rng`'s state."""
        for _ in range(20):
            text = self._perturb(problem, rng)
            if self.verify(problem, text) == 0.0:
                return text
        return self._fallback_wrong(problem)

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        return self._fallback_wrong(problem)

    def _fallback_wrong(self, problem: Problem) -> str:
        value = extract.parse_number(problem.answer)
        return extract.format_number(value + 1) if value is not None else problem.answer + "?"

    # ---- verification -----------------------------------------------------------------------
    def extract_answer(self, completion: Any) -> str | None:
        """The final answer in a completion, normalized (numbers as canonical decimals), or None."""
        text = completion_text(completion)
        if text is None:
            return None
        try:
            return self._extract(text)
        except Exception:  # noqa: BLE001 - a verifier never raises
            return None

    def _extract(self, text: str) -> str | None:
        return extract.extract_number(text)

    def verify(self, problem: Problem, completion: Any) -> float:
        """Reward in [0, 1] (here 1.0 if correct else 0.0). Never raises, whatever `completion` is."""
        try:
            text = completion_text(completion)
            if text is None:
                return 0.0
            return float(min(1.0, max(0.0, self._score(problem, text))))
        except Exception:  # noqa: BLE001 - a verifier never raises
            return 0.0

    def _score(self, problem: Problem, text: str) -> float:
        got = self._extract(text)
        return 1.0 if got is not None and extract.same_number(got, problem.answer) else 0.0

    # ---- prompts back to problems -------------------------------------------------------------
    def _parse_prompt(self, text: str) -> tuple | None:
        return None

    def parse_prompt(self, prompt: Any) -> Problem | None:
        """Rebuild the problem from its prompt text (also found at the end of a longer chat prompt);
        None if the prompt is not one of this family's. The difficulty is unknown (0)."""
        text = completion_text(prompt)
        if text is None:
            return None
        try:
            ops = self._parse_prompt(text[-400:].rstrip())
            return None if ops is None else self.make(*ops)
        except Exception:  # noqa: BLE001
            return None

    def __repr__(self) -> str:
        return f"<TaskFamily {self.name}>"
