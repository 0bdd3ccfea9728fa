"""Answer extraction from completions, lenient enough for chat models and fast on any input.

`answer_span(text)` finds where the final answer is written, in this order (the first rule that applies):

1. the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched;
2. the text after the last ``####`` (GSM8K style), to the end of that line;
3. the text after the last "answer is" / "answer:" / "answer =" (any case), to the end of that line;
4. otherwise the first non-empty line (the tiny-model format: the completion *is* the answer); for a
   number, when that line has no digit at all ("Let me compute."), the last line that has one.

`extract_number` then takes a number from that span: the *first* number after a marker (2, 3: "answer is
47 because 40+7" gives 47), the *last* number inside a box or on the fallback line ("12+35=47" gives 47).
A chat model that writes its result on a later line after a first line *with* numbers ("To add 12 and 35:
...") is read from the first line: ask chat models for "Answer: X" (or a box) in the prompt.
Numbers may carry a sign, thousands commas and a decimal part: "+47", " 47 ", "47.0", "1,234" all parse;
they compare by exact decimal value.

Speed and safety: only the first and last `MAX_SCAN` characters of a completion are examined, every regex
is linear (no nested quantifiers), and nothing here evaluates code.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MAX_SCAN = 4096
"""Characters examined at each end of a long completion."""

_NUMBER = re.compile(r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")
_DIGIT = re.compile(r"[0-9]")
_ANSWER_MARK = re.compile(r"answer\s{0,3}(?:is|:|=)", re.IGNORECASE)
_BOX_MARKS = ("\\boxed{", "\\fbox{")


def clip(text: str) -> str:
    """The part of `text` worth scanning: all of it if short, else head + tail."""
    if len(text) <= 2 * MAX_SCAN:
        return text
    return text[:MAX_SCAN] + "\n" + text[-MAX_SCAN:]


def _boxed(text: str) -> str | None:
    start = max(text.rfind(m) for m in _BOX_MARKS)
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, min(len(text), i + 512)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def answer_span(text: str) -> tuple[str, str]:
    """(span, how) where how is "boxed", "hashes", "marker" or "line"; span is "" if the text is blank."""
    text = clip(text)
    box = _boxed(text)
    if box is not None:
        return box, "boxed"
    k = text.rfind("####")
    if k >= 0:
        return _rest_of_line(text, k + 4), "hashes"
    last = None
    for last in _ANSWER_MARK.finditer(text):
        pass
    if last is not None:
        return _rest_of_line(text, last.end()), "marker"
    for line in text.splitlines():
        if line.strip():
            return line, "line"
    return "", "line"


def parse_number(text: str) -> Decimal | None:
    """The value of one number token ("+1,234.50" -> Decimal("1234.50")), or None."""
    try:
        value = Decimal(text.replace(",", "").strip())
    except (InvalidOperation, ValueError, AttributeError):
        return None
    return value if value.is_finite() else None


def format_number(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros ("47.0" -> "47", "-0" -> "0")."""
    if value == value.to_integral_value():
        return str(int(value))
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _last_line_with_digit(text: str) -> str:
    for line in reversed(text.splitlines()):
        if _DIGIT.search(line):
            return line
    return ""


def extract_number(text: str) -> str | None:
    """The final numeric answer in `text`, canonical ("47"), or None (see module docstring for rules)."""
    span, how = answer_span(text)
    span = span[:MAX_SCAN]
    if how == "line" and not _DIGIT.search(span):
        span = _last_line_with_digit(clip(text))
    if how in ("hashes", "marker"):
        m = _NUMBER.search(span)
    else:
        m = None
        for m in _NUMBER.finditer(span):
            pass
    if m is None:
        return None
    value = parse_number(m.group(0))
    return None if value is None else format_number(value)


def same_number(got: str | None, answer: str) -> bool:
    """True when `got` and `answer` are the same number by exact decimal value."""
    if got is None:
        return False
    a, b = parse_number(got), parse_number(answer)
    return a is not None and b is not None and a == b


_STRIP = " \t\r\n\"'`$*.:;"


def extract_text(text: str) -> str | None:
    """The final answer as text (for exact-match tasks): the answer span with surrounding whitespace,
    quotes, ``$``, ``**``, and a trailing period removed; internal whitespace collapsed; None if empty."""
    span, _ = answer_span(text)
    span = span[:MAX_SCAN]
    if span.startswith("\\text{") and span.endswith("}"):
        span = span[6:-1]
    cleaned = " ".join(span.strip(_STRIP).split())
    return cleaned or None
