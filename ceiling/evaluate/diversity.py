"""Output diversity of the n completions of one prompt (pure Python; averaged over prompts by the caller).

- `distinct_answers`: how many different final answers the samples give (unparseable ones excluded).
- `distinct_n`: distinct n-grams / total n-grams over the prompt's completions (token ids), 1.0 when none.
- `duplicate_share`: share of completions identical to another completion of the same prompt; 1.0 means
  every sample repeats another one (the degenerate, repetitive outputs of model collapse).
"""
from __future__ import annotations

from collections import Counter
from typing import Hashable, Sequence


def distinct_answers(answers: Sequence[str | None]) -> int:
    """Number of distinct final answers; `None` (no answer found) is not counted."""
    return len({a for a in answers if a is not None})


def distinct_n(completions: Sequence[Sequence[Hashable]], n: int = 2) -> float:
    """Distinct n-grams divided by all n-grams across the given token sequences (1.0 if there are none)."""
    total = 0
    seen: set[tuple[Hashable, ...]] = set()
    for seq in completions:
        seq = tuple(seq)
        for i in range(len(seq) - n + 1):
            seen.add(seq[i:i + n])
            total += 1
    return len(seen) / total if total else 1.0


def duplicate_share(texts: Sequence[Hashable]) -> float:
    """Share of items equal to at least one other item in the list (0.0 when all differ)."""
    if not texts:
        return 0.0
    counts = Counter(texts)
    return sum(c for c in counts.values() if c > 1) / len(texts)
