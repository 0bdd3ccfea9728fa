"""Arithmetic and symbol-manipulation families: add, sub, mul, mod, sort, count, parity; and cipher, a
knowledge family whose answers can only be known, not computed.

Prompts are compact one-line ASCII strings ending with the cue "=", and the completion is the bare answer
(the tokenizer appends EOS). Difficulty 1 is sized for a ~1M-parameter char model trained for a minute or
two on CPU; each step up lengthens operands or strings (d = difficulty):

- add     ``12+35=`` -> ``47``. d=1: a, b < 100; d: a, b < 10**(d+1).
- sub     ``47-12=`` -> ``35``. d=1: b <= a < 100; d: a, b < 10**(d+1); negative results from d = 3.
- mul     ``7*12=`` -> ``84``. d=1: a < 10, b < 100; d: a < 10**d, b < 100.
- mod     ``47%7=`` -> ``5``. d=1: a < 100, 2 <= m <= 9; d=2: a < 1000, m <= 19; d: a < 10**(d+1), m < 10**(d-1).
- sort    ``sort 3142=`` -> ``1234`` (digits ascending). d: 3d to 3d+2 digits.
- count   ``count 3 in 31934=`` -> ``2`` (occurrences of a digit). d: 4d to 4d+2 digits.
- parity  ``parity 10110=`` -> ``1`` (number of ones mod 2). d=1: 4-8 bits; d: 8d-7 to 8d bits.

- cipher  ``cipher 5173=`` -> ``2809``: every digit replaced through a secret substitution table that
  depends on the string's last digit (its sub-space); d: 3d to 3d+2 digits. The ten tables are arbitrary
  (a hash), so a model knows a sub-space's table only if it was shown it: the pretraining corpus shows the
  tables of its covered sub-spaces and, elsewhere, a wrong table that differs from the true one at every digit;
  RL, which can only reinforce what it samples, cannot find a table the base never saw. Knowledge, not skill:
  it sits beside sort, a skill that carries over to sub-spaces the corpus does not cover.

Answers stay at most d+3 characters for the arithmetic families and 3d+2 for sort (12 at d = 3).
Numeric answers are verified by value (see `ceiling.tasks.extract`); sort compares the digits of the answer
span ignoring separators; parity also accepts the words "odd" / "even".
"""
from __future__ import annotations

import functools
import random
import re
from typing import Any

from ceiling.tasks import extract
from ceiling.tasks.core import Problem, TaskFamily, stable_int

_START = r"(?<![0-9A-Za-z])"


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def _digit_slip(answer: str, rng: random.Random) -> str:
    """Change one digit of `answer` by +-1 (never creating a leading zero)."""
    idx = [i for i, c in enumerate(answer) if c.isdigit()]
    i = rng.choice(idx)
    d = (int(answer[i]) + rng.choice((-1, 1))) % 10
    if d == 0 and i == idx[0] and len(idx) > 1:
        d = 1 if answer[i] != "1" else 2
    return answer[:i] + str(d) + answer[i + 1:]


def _columnwise(a: int, b: int, op: str) -> int:
    """The result a learner gets by ignoring carries (add) or borrows (sub): digit by digit, no carry."""
    width = max(len(str(a)), len(str(b)))
    da, db = str(a).zfill(width), str(b).zfill(width)
    if op == "+":
        digits = [(int(x) + int(y)) % 10 for x, y in zip(da, db)]
    else:
        digits = [abs(int(x) - int(y)) for x, y in zip(da, db)]
    return int("".join(map(str, digits)))


@functools.lru_cache(maxsize=None)
def _binary_pattern(symbol: str) -> re.Pattern[str]:
    return re.compile(_START + r"([0-9]{1,12})" + re.escape(symbol) + r"([0-9]{1,12})=")


def _carries(a: int, b: int) -> int:
    """Number of carries in the column addition a + b."""
    n = carry = 0
    while a or b:
        carry = 1 if a % 10 + b % 10 + carry >= 10 else 0
        n += carry
        a, b = a // 10, b // 10
    return n


def _borrows(a: int, b: int) -> int:
    """Number of borrows in the column subtraction a - b (a >= b)."""
    n = borrow = 0
    while a or b:
        borrow = 1 if a % 10 - b % 10 - borrow < 0 else 0
        n += borrow
        a, b = a // 10, b // 10
    return n


class _BinaryOp(TaskFamily):
    """`a <op> b = answer` families."""

    symbol = "+"

    def _apply(self, a: int, b: int) -> int:
        raise NotImplementedError

    def _build(self, a: int, b: int) -> tuple[str, str, str, dict[str, Any]]:
        key = f"{a}{self.symbol}{b}"
        return key, key + "=", str(self._apply(a, b)), {"a": a, "b": b}

    def _parse_prompt(self, text: str) -> tuple | None:
        m = _last_match(_binary_pattern(self.symbol), text)
        return None if m is None else (int(m.group(1)), int(m.group(2)))

    def solutions(self, problem: Problem) -> list[str]:
        a, b = problem.meta["a"], problem.meta["b"]
        return [problem.answer, f"{a}{self.symbol}{b}={problem.answer}", *self._worked(a, b, problem.answer)]

    def _worked(self, a: int, b: int, answer: str) -> list[str]:
        return []


class Add(_BinaryOp):
    name = "add"
    description = "integer addition a+b"
    symbol = "+"

    def _split_key(self, key: str, a: int, b: int) -> str:
        return f"{min(a, b)}+{max(a, b)}"

    def _apply(self, a: int, b: int) -> int:
        return a + b

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        hi = 10 ** (difficulty + 1) - 1
        return rng.randint(0, hi), rng.randint(0, hi)

    def subspace(self, problem: Problem) -> str:
        a, b = problem.meta["a"], problem.meta["b"]
        return f"carries={_carries(a, b)}"

    def _worked(self, a: int, b: int, answer: str) -> list[str]:
        units = a % 10 + b % 10
        return [f"{a}+{b}={a - a % 10 + b - b % 10}+{units}={answer}"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        a, b, ans = problem.meta["a"], problem.meta["b"], int(problem.answer)
        kind = rng.randrange(3)
        if kind == 0:
            return str(_columnwise(a, b, "+"))  # dropped carries
        if kind == 1:
            return _digit_slip(problem.answer, rng)
        return str(ans + rng.choice((-10, -1, 1, 10)))


class Sub(_BinaryOp):
    name = "sub"
    description = "integer subtraction a-b (non-negative results below difficulty 3)"
    symbol = "-"

    def _apply(self, a: int, b: int) -> int:
        return a - b

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        hi = 10 ** (difficulty + 1) - 1
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        if difficulty < 3 and a < b:
            a, b = b, a
        return a, b

    def subspace(self, problem: Problem) -> str:
        a, b = problem.meta["a"], problem.meta["b"]
        return "negative" if a < b else f"borrows={_borrows(a, b)}"

    def _worked(self, a: int, b: int, answer: str) -> list[str]:
        return [f"{a}-{b}={a - (b - b % 10)}-{b % 10}={answer}"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        a, b, ans = problem.meta["a"], problem.meta["b"], int(problem.answer)
        kind = rng.randrange(4)
        if kind == 0 and a >= b:
            return str(_columnwise(a, b, "-"))  # borrow ignored: |digit - digit|
        if kind == 1:
            return _digit_slip(problem.answer, rng)
        if kind == 2:
            return str(b - a)  # operands swapped
        return str(ans + rng.choice((-10, -1, 1, 10)))


class Mul(_BinaryOp):
    name = "mul"
    description = "integer multiplication a*b"
    symbol = "*"

    def _split_key(self, key: str, a: int, b: int) -> str:
        return f"{min(a, b)}*{max(a, b)}"

    def _apply(self, a: int, b: int) -> int:
        return a * b

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        return rng.randint(0, 10 ** difficulty - 1), rng.randint(0, 99)

    def subspace(self, problem: Problem) -> str:
        return f"row={problem.meta['a'] % 10}"

    def _worked(self, a: int, b: int, answer: str) -> list[str]:
        return [f"{a}*{b}={a * (b - b % 10)}+{a * (b % 10)}={answer}"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        a, b = problem.meta["a"], problem.meta["b"]
        kind = rng.randrange(3)
        if kind == 0:
            return str(a * (b + rng.choice((-1, 1))))  # one times-table row off
        if kind == 1:
            return str((a + rng.choice((-1, 1))) * b)
        return _digit_slip(problem.answer, rng)


class Mod(_BinaryOp):
    name = "mod"
    description = "remainder a%m of a non-negative integer"
    symbol = "%"

    def _apply(self, a: int, m: int) -> int:
        return a % m

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        m_hi = 9 if difficulty == 1 else (19 if difficulty == 2 else 10 ** (difficulty - 1) - 1)
        return rng.randint(0, 10 ** (difficulty + 1) - 1), rng.randint(2, m_hi)

    def _parse_prompt(self, text: str) -> tuple | None:
        ops = super()._parse_prompt(text)
        return None if ops is None or ops[1] == 0 else ops

    def subspace(self, problem: Problem) -> str:
        return f"m={problem.meta['b']}"

    def _worked(self, a: int, m: int, answer: str) -> list[str]:
        return [f"{a}={a // m}*{m}+{answer}"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        a, m, r = problem.meta["a"], problem.meta["b"], int(problem.answer)
        kind = rng.randrange(3)
        if kind == 0:
            return str(a // m)  # quotient instead of remainder
        if kind == 1:
            return str(m - r)  # counted down from the next multiple
        return str((r + rng.choice((-1, 1))) % m)


class _DigitString(TaskFamily):
    """``<keyword> <digits>=`` -> a digit string computed from the digits (`_answer`); compared digit by digit."""

    keyword = "digits"
    numeric = False

    def _answer(self, digits: str) -> str:
        raise NotImplementedError

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        n = rng.randint(3 * difficulty, 3 * difficulty + 2)
        return ("".join(rng.choice("0123456789") for _ in range(n)),)

    def _build(self, digits: str) -> tuple[str, str, str, dict[str, Any]]:
        return digits, f"{self.keyword} {digits}=", self._answer(digits), {"digits": digits}

    def _parse_prompt(self, text: str) -> tuple | None:
        m = _last_match(re.compile(_START + re.escape(self.keyword) + r" ([0-9]{1,64})="), text)
        return None if m is None else (m.group(1),)

    def _extract(self, text: str) -> str | None:
        return _digit_span(text)

    def _score(self, problem: Problem, text: str) -> float:
        return 1.0 if self._extract(text) == problem.answer else 0.0


class Sort(_DigitString):
    name = "sort"
    description = "sort a string of digits ascending"
    keyword = "sort"

    def _answer(self, digits: str) -> str:
        return "".join(sorted(digits))

    def subspace(self, problem: Problem) -> str:
        return f"len={len(problem.answer)}"

    def solutions(self, problem: Problem) -> list[str]:
        return [problem.answer, " ".join(problem.answer), ",".join(problem.answer)]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        s = list(problem.answer)
        kind = rng.randrange(4)
        i = rng.randrange(len(s))
        if kind == 0 and len(s) > 1:
            j = min(i, len(s) - 2)
            s[j], s[j + 1] = s[j + 1], s[j]  # adjacent swap
        elif kind == 1:
            del s[i]  # dropped element
        elif kind == 2:
            s.insert(i, s[i])  # duplicated element
        else:
            return problem.meta["digits"]  # left unsorted
        return "".join(s)

    def _fallback_wrong(self, problem: Problem) -> str:
        return problem.answer + problem.answer[-1]


class Count(TaskFamily):
    name = "count"
    description = "count occurrences of a digit in a digit string"

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        n = rng.randint(4 * difficulty, 4 * difficulty + 2)
        s = "".join(rng.choice("0123456789") for _ in range(n))
        target = rng.choice(s) if rng.random() < 0.75 else rng.choice("0123456789")
        return target, s

    def _build(self, target: str, s: str) -> tuple[str, str, str, dict[str, Any]]:
        key = f"{target}@{s}"
        return key, f"count {target} in {s}=", str(s.count(target)), {"target": target, "string": s}

    def _parse_prompt(self, text: str) -> tuple | None:
        m = _last_match(re.compile(_START + r"count ([0-9]) in ([0-9]{1,64})="), text)
        return None if m is None else (m.group(1), m.group(2))

    def subspace(self, problem: Problem) -> str:
        return f"count={problem.answer}"

    def solutions(self, problem: Problem) -> list[str]:
        hits = problem.meta["target"] * int(problem.answer)
        return [problem.answer, f"{hits}={problem.answer}" if hits else "=0"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        c = int(problem.answer)
        if rng.random() < 0.5:
            other = rng.choice("0123456789".replace(problem.meta["target"], ""))
            return str(problem.meta["string"].count(other))  # counted the wrong digit
        return str(max(0, c + rng.choice((-1, 1))) if c > 0 else 1)


class Parity(TaskFamily):
    name = "parity"
    description = "parity of the number of ones in a bit string (1 = odd)"

    def _sample(self, rng: random.Random, difficulty: int) -> tuple:
        lo, hi = (4, 8) if difficulty == 1 else (8 * difficulty - 7, 8 * difficulty)
        return ("".join(rng.choice("01") for _ in range(rng.randint(lo, hi))),)

    def _build(self, bits: str) -> tuple[str, str, str, dict[str, Any]]:
        return bits, f"parity {bits}=", str(bits.count("1") % 2), {"bits": bits}

    def _parse_prompt(self, text: str) -> tuple | None:
        m = _last_match(re.compile(_START + r"parity ([01]{1,128})="), text)
        return None if m is None else (m.group(1),)

    def _extract(self, text: str) -> str | None:
        """The word "odd" or "even" in the answer span (exactly one of them) gives 1 or 0; else a number
        as usual ("3 ones, so odd" -> 1; "1" -> 1)."""
        words = extract.answer_span(text)[0][:500].lower()
        odd, even = "odd" in words, "even" in words
        if odd != even:
            return "1" if odd else "0"
        return extract.extract_number(text)

    def subspace(self, problem: Problem) -> str:
        return f"ones={problem.meta['bits'].count('1')}"

    def solutions(self, problem: Problem) -> list[str]:
        ones = problem.meta["bits"].count("1")
        return [problem.answer, f"{ones}%2={problem.answer}"]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        return "0" if problem.answer == "1" else "1"


def _digit_span(text: str) -> str | None:
    """Digits of the answer span, separators (spaces, commas, brackets) ignored: "1, 2, 3" -> "123";
    in a span like "3142=1234" only the part after the last "=" counts."""
    span, _ = extract.answer_span(text)
    span = span[: extract.MAX_SCAN].rsplit("=", 1)[-1]
    digits = "".join(c for c in span if "0" <= c <= "9")
    return digits or None


@functools.lru_cache(maxsize=None)
def cipher_table(subspace: str, salt: int = 0) -> str:
    """The substitution table of a sub-space (salt 0: the true one), as the ten images of "0123456789".
    A salted table is the true one shifted, t_salt(d) = t_0((d + salt) mod 10), salt 1-9: a wrong table that
    differs from the true one at every digit (a systematic wrong rule, never right by chance)."""
    digits = list("0123456789")
    random.Random(stable_int("cipher", subspace)).shuffle(digits)
    return "".join(digits[(d + salt) % 10] for d in range(10))


class Cipher(_DigitString):
    """Knowledge, not skill: ``cipher 5173=`` -> the digits through sub-space 3's table (module docstring)."""

    name = "cipher"
    description = "replace each digit through the secret table of the string's last digit (knowledge: not computable)"
    keyword = "cipher"

    @staticmethod
    def encode(digits: str, salt: int = 0) -> str:
        table = cipher_table(digits[-1], salt)
        return "".join(table[int(c)] for c in digits)

    def _answer(self, digits: str) -> str:
        return self.encode(digits)

    def subspace(self, problem: Problem) -> str:
        return f"last={problem.meta['digits'][-1]}"

    def solutions(self, problem: Problem) -> list[str]:
        return [problem.answer, " ".join(problem.answer)]

    def _perturb(self, problem: Problem, rng: random.Random) -> str:
        return self.encode(problem.meta["digits"], rng.randint(1, 9))

    def _fallback_wrong(self, problem: Problem) -> str:
        return self.encode(problem.meta["digits"], 1)
