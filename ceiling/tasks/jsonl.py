"""User tasks from a JSONL file: one ``{"prompt": ..., "answer": ...}`` object per line.

Optional fields per line: ``"id"`` (a string or number; default ``<name>/<line>``), ``"split"`` (``"train"``
or ``"test"``, overriding the hash), ``"difficulty"`` (an integer >= 1; default 1; problems of the requested
difficulty are sampled when the file has any, otherwise all problems are). Blank lines are skipped. Any
other malformed line raises a CeilingError naming the file and line.

Verifiers: ``"exact"`` compares the extracted answer text (see `ceiling.tasks.extract.extract_text`:
surrounding whitespace, quotes, ``$``, ``**`` and a trailing period ignored, inner whitespace collapsed)
with the answer, case-sensitively; ``"numeric"`` compares numbers by exact decimal value (``"47.0"`` ==
``"47"``).

Splits: by default each problem goes to train or test by a stable hash of its prompt (`split_of`, the same
rule as the generated families), so the test split is held out. ``split="all"`` puts every problem in both
splits (use it for a small evaluation-only file).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ceiling.errors import CeilingError, error_at
from ceiling.tasks import extract
from ceiling.tasks.core import Problem, TaskFamily, check_split, completion_text, split_of, stable_int

VERIFIERS = ("exact", "numeric")


class JsonlFamily(TaskFamily):
    """A fixed list of user problems, usable wherever a generated family is."""

    def __init__(self, name: str, problems: list[Problem], verifier: str = "exact", path: str | None = None,
                 split: str = "hash") -> None:
        self.name = name
        self.description = f"user tasks from {path}" if path else "user tasks"
        self.numeric = verifier == "numeric"
        self.verifier = verifier
        self.path = path
        self.split_mode = split
        self.problems = problems
        self._by_prompt = {p.prompt: p for p in problems}

    def generate(self, n: int, seed: int, split: str = "train", difficulty: int = 1, *,
                 unique: bool = False) -> list[Problem]:
        """`n` problems of `split` drawn in a seeded order: without replacement while they last, then the
        shuffled list again (so `n` larger than the split repeats problems, or is an error if `unique`)."""
        check_split(split)
        pool = [p for p in self.problems if self.split_mode == "all" or p.split == split]
        at_level = [p for p in pool if p.difficulty == difficulty]
        pool = at_level or pool
        if not pool:
            raise CeilingError(f"{self.path or self.name}: no {split} problems (the hash put all "
                               f"{len(self.problems)} in the other split; add a \"split\" field or use split=all)")
        if unique and n > len(pool):
            raise CeilingError(f"{self.path or self.name}: only {len(pool)} distinct {split} problems, asked for {n}")
        rng = random.Random(stable_int("jsonl", self.name, seed, split, difficulty))
        out: list[Problem] = []
        while len(out) < n:
            order = pool[:]
            rng.shuffle(order)
            out.extend(order[: n - len(out)])
        if self.split_mode == "all":
            out = [Problem(p.family, p.prompt, p.answer, p.difficulty, split, p.id, p.meta) for p in out]
        return out

    def _extract(self, text: str) -> str | None:
        return extract.extract_number(text) if self.numeric else extract.extract_text(text)

    def _score(self, problem: Problem, text: str) -> float:
        got = self._extract(text)
        if got is None:
            return 0.0
        if self.numeric:
            return 1.0 if extract.same_number(got, problem.answer) else 0.0
        return 1.0 if got == " ".join(problem.answer.split()) else 0.0

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        if self.numeric:
            value = extract.parse_number(problem.answer)
            if value is not None:
                return extract.format_number(value + rng.choice((-1, 1)))
        others = [p.answer for p in self.problems if p.answer != problem.answer]
        return rng.choice(others) if others else problem.answer + "?"

    def parse_prompt(self, prompt: Any) -> Problem | None:
        text = completion_text(prompt)
        return None if text is None else self._by_prompt.get(text)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "verifier": self.verifier, "name": self.name, "split": self.split_mode}


def _field(obj: dict, key: str, path: Path, line: int) -> str:
    if key not in obj:
        raise error_at(path, "missing required key", line=line, field=key)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise error_at(path, f"must be a string or number, got {type(value).__name__}", line=line, field=key)
    text = str(value)
    if not text.strip():
        raise error_at(path, "is empty", line=line, field=key)
    return text


def load_jsonl_tasks(path: str | Path, verifier: str = "exact", name: str | None = None,
                     split: str = "hash") -> JsonlFamily:
    """Read user tasks (see the module docstring) into a family named `name` (default: the file stem)."""
    path = Path(path)
    if verifier not in VERIFIERS:
        raise error_at(path, f"verifier must be one of {', '.join(VERIFIERS)}, got {verifier!r}")
    if split not in ("hash", "all"):
        raise error_at(path, f"split must be 'hash' or 'all', got {split!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error_at(path, f"cannot read task file ({exc.strerror or exc.__class__.__name__})") from None
    name = name or path.stem
    problems: list[Problem] = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise error_at(path, f"not valid JSON ({exc.__class__.__name__})", line=i) from None
        if not isinstance(obj, dict):
            raise error_at(path, f"expected a JSON object, got {type(obj).__name__}", line=i)
        prompt = _field(obj, "prompt", path, i)
        answer = _field(obj, "answer", path, i)
        if verifier == "numeric" and extract.parse_number(answer) is None:
            raise error_at(path, f"not a number ({answer[:40]!r}) but verifier is numeric", line=i, field="answer")
        pid = str(obj["id"]) if "id" in obj and obj["id"] is not None else f"{name}/{i}"
        row_split = obj.get("split", None)
        if row_split is not None and row_split not in ("train", "test"):
            raise error_at(path, f"must be 'train' or 'test', got {row_split!r}", line=i, field="split")
        difficulty = obj.get("difficulty", 1)
        if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty < 1:
            raise error_at(path, f"must be an integer >= 1, got {difficulty!r}", line=i, field="difficulty")
        problems.append(Problem(name, prompt, answer, difficulty, row_split or split_of(name, prompt), pid,
                                {"line": i}))
    if not problems:
        raise error_at(path, "no tasks in file")
    return JsonlFamily(name, problems, verifier=verifier, path=str(path.resolve()), split=split)
