"""Countdown: reach a target from given numbers with + - * (each number used at most once).

Prompt ``24 from 2 3 8=`` (numbers listed ascending), completion an expression such as ``3*8``. Any
expression that evaluates to the target and uses each given number at most once (as a multiset) earns 1.0;
the stored `answer` is the expression the generator built, one solution among possibly many.

Difficulty d: d+2 numbers drawn from 1..(9, 12, 25, then 10d), the generator combines d+1 of them with d
random operations in a random tree (intermediate results kept non-negative), and keeps the problem if the
target is positive, at most 999, and not itself one of the numbers.

Expressions are read by a small recursive-descent parser (integers, + - *, parentheses; no unary signs,
no division), never `eval`. Extraction: in the answer span (see `ceiling.tasks.extract`), the first run of
expression characters that contains an operator, e.g. "3 * 8 = 24" -> "3*8", "24 = (2+1)*8" -> "(2+1)*8".
"""
from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

from ceiling.tasks import extract
from ceiling.tasks.core import Problem, TaskFamily

MAX_EXPR_CHARS = 96
MAX_DEPTH = 24
_RUN = re.compile(r"[0-9(][0-9+\-*() ]*")
_TRANSLATE = str.maketrans({"\u00d7": "*", "x": "*", "X": "*", "\u2212": "-", "\u00b7": "*", "[": "(", "]": ")"})


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor ('*' factor)* ; factor := INT | '(' expr ')'."""

    def __init__(self, text: str) -> None:
        self.toks = re.findall(r"[0-9]+|[+\-*()]|\S", text)
        self.i = 0
        self.used: list[int] = []

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expr(self, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ValueError("too deep")
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> int:
        value = self.factor(depth)
        while self.peek() == "*":
            self.take()
            value *= self.factor(depth)
        return value

    def factor(self, depth: int) -> int:
        tok = self.peek()
        if tok is None:
            raise ValueError("unexpected end")
        if tok == "(":
            self.take()
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise ValueError("missing )")
            self.take()
            return value
        if tok.isdigit() and len(tok) <= 6:
            self.take()
            self.used.append(int(tok))
            return int(tok)
        raise ValueError(f"unexpected {tok!r}")


def evaluate(expr: str) -> tuple[int, list[int]] | None:
    """(value, numbers used) of an expression with integers, + - * and parentheses; None if invalid."""
    if not expr or len(expr) > MAX_EXPR_CHARS:
        return None
    p = _Parser(expr)
    try:
        value = p.expr(0)
    except (ValueError, IndexError):
        return None
    return (value, p.used) if p.peek() is None else None


def check(expr: str, numbers: list[int], target: int) -> bool:
    """True when `expr` evaluates to `target` using each of `numbers` at most once."""
    result = evaluate(expr)
    if result is None:
        return False
    value, used = result
    return value == target and not (Counter(used) - Counter(numbers))


def _fmt(node: Any, parent: str | None = None, right: bool = False) -> str:
    if isinstance(node, int):
        return str(node)
    op, left, rgt = node
    text = f"{_fmt(left, op)}{op}{_fmt(rgt, op, True)}"
    if op in "+-" and (parent == "*" or (parent == "-" and right)):
        return f"({text})"
    return text


def _value(node: Any) -> int:
    if isinstance(node, int):
        return node
    op, a, b = node
    x, y = _value(a), _value(b)
    return x + y if op == "+" else (x - y if op == "-" else x * y)


class Countdown(TaskFamily):
    name = "countdown"
    description = "reach a target from given numbers with + - * (each used at most once)"
    numeric = False

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        hi = {1: 9, 2: 12, 3: 25}.get(difficulty, 10 * difficulty)
        while True:
            numbers = [rng.randint(1, hi) for _ in range(difficulty + 2)]
            pool: list[Any] = rng.sample(numbers, difficulty + 1)
            while len(pool) > 1:
                a = pool.pop(rng.randrange(len(pool)))
                b = pool.pop(rng.randrange(len(pool)))
                op = rng.choice("+-*")
                if op == "-" and _value(a) < _value(b):
                    a, b = b, a
                pool.append((op, a, b))
            target = _value(pool[0])
            if 0 < target <= 999 and target not in numbers:
                return tuple(sorted(numbers)), target, _fmt(pool[0])

    def _build(self, numbers: tuple[int, ...], target: int, expr: str | None = None
               ) -> tuple[str, str, str, dict[str, Any]]:
        nums = " ".join(map(str, sorted(numbers)))
        key = f"{target} from {nums}"
        answer = expr if expr is not None else ""
        return key, key + "=", answer, {"numbers": sorted(numbers), "target": target}

    def _parse_prompt(self, text: str) -> tuple | None:
        m = None
        for m in re.finditer(r"(?<![0-9A-Za-z])([0-9]{1,6}) from ([0-9]{1,6}(?: [0-9]{1,6}){0,15})=", text):
            pass
        if m is None:
            return None
        return tuple(int(x) for x in m.group(2).split()), int(m.group(1))

    def _extract(self, text: str) -> str | None:
        span, _ = extract.answer_span(text)
        span = span[: extract.MAX_SCAN].replace("\\times", "*").replace("\\cdot", "*").translate(_TRANSLATE)
        for m in _RUN.finditer(span):
            run = m.group(0).replace(" ", "")
            if re.search(r"[0-9)][+\-*][0-9(]", run):
                return run
        return None

    def _score(self, problem: Problem, text: str) -> float:
        expr = self._extract(text)
        meta = problem.meta
        return 1.0 if expr is not None and check(expr, list(meta["numbers"]), int(meta["target"])) else 0.0

    def solution(self, problem: Problem) -> str:
        if problem.answer:
            return problem.answer
        return self._search(list(problem.meta["numbers"]), int(problem.meta["target"])) or ""

    def solutions(self, problem: Problem) -> list[str]:
        sol = self.solution(problem)
        return [sol, f"{sol}={problem.meta['target']}"] if sol else []

    def _search(self, numbers: list[int], target: int) -> str | None:
        """A solution by exhaustive search over combination trees (small inputs only), or None."""
        if len(numbers) > 5:
            return None

        def go(items: list[tuple[int, Any]]) -> str | None:
            for v, node in items:
                if v == target:
                    return _fmt(node)
            for i in range(len(items)):
                for j in range(len(items)):
                    if i == j:
                        continue
                    rest = [items[k] for k in range(len(items)) if k not in (i, j)]
                    (x, a), (y, b) = items[i], items[j]
                    for op in "+-*":
                        if op in "+*" and i > j:
                            continue
                        v = x + y if op == "+" else (x - y if op == "-" else x * y)
                        if v < 0:
                            continue
                        hit = go(rest + [(v, (op, a, b))])
                        if hit is not None:
                            return hit
            return None

        return go([(n, n) for n in numbers])

    def subspace(self, problem: Problem) -> str:
        """The set of operations in the stored solution, e.g. "ops=*+" ("ops=?" when none is stored)."""
        ops = "".join(sorted(set(c for c in problem.answer if c in "+-*")))
        return f"ops={ops or '?'}"

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        expr = self.solution(problem)
        ops = [i for i, c in enumerate(expr) if c in "+-*"]
        if rng.random() < 0.5 and ops:
            i = rng.choice(ops)
            return expr[:i] + rng.choice([o for o in "+-*" if o != expr[i]]) + expr[i + 1:]  # wrong operator
        nums = list(re.finditer(r"[0-9]+", expr))
        m = rng.choice(nums)
        n = int(m.group(0)) + rng.choice((-1, 1))  # a number misread by one
        return expr[: m.start()] + str(max(n, 0)) + expr[m.end():]

    def _fallback_wrong(self, problem: Problem) -> str:
        return f"{self.solution(problem) or '0'}+{int(problem.meta['target']) + 1}"
