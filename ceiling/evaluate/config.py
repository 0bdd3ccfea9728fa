"""`EvalConfig`: every knob of the evaluator, recorded next to its results (`eval_config.json`).
Written in the style of every config (`ceiling.config`): a doc under each field, validated on creation."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceiling import config
from ceiling.errors import error_at
from ceiling.io import dumps


@dataclass
class EvalConfig:
    """How checkpoints are evaluated. The same config on the same checkpoints gives the same numbers."""

    n_samples: int = 64
    """Samples per held-out prompt (the n of mean@n and pass@k)."""
    n_prompts: int = 32
    """Held-out (test split) prompts per task family, verified and unverified families alike."""
    temperature: float = 1.0
    """Sampling temperature (KL and entropy are the models' own, at T = 1; other T: tempered samples, biased)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0 = off)."""
    max_new_tokens: int | None = None
    """Completion length cap; None = the run's own `max_new_tokens` (config.json), else 64."""
    ks: tuple[int, ...] | None = None
    """k values of pass@k (on the command line: 1,8,64); None = 1, 2, 4, ..., n_samples."""
    score_samples: int = 16
    """Samples per prompt (the first, at most n_samples) scored by both models for entropy, KL and NLL."""
    greedy: bool = True
    """Also decode one greedy completion per prompt (greedy accuracy)."""
    n_boot: int = 1000
    """Bootstrap resamples of problems for the intervals."""
    level: float = 0.95
    """Interval coverage."""
    correct_threshold: float = 1.0
    """A sample counts as correct for pass@k when its reward is at least this."""
    nll_documents: int = 256
    """Held-out pretraining documents for unverified/nll (tiny bases)."""
    seed: int = 0
    """Seed of prompt choice, sampling (the same stream for every checkpoint) and bootstrap."""
    split: str = "test"
    """Task split the prompts come from (held out from RL training)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    batch_size: int = 2048
    """Sequences per generation / scoring call (whole prompts' groups of n_samples are kept together)."""

    def __post_init__(self) -> None:
        if self.ks is not None:
            self.ks = tuple(int(k) for k in self.ks)
        self.validate()

    def validate(self, where: str | Path | None = None) -> EvalConfig:
        """Raise a one-line CeilingError naming the first bad field."""
        checks = [
            ("n_samples", self.n_samples >= 1), ("score_samples", self.score_samples >= 1),
            ("n_prompts", self.n_prompts >= 1),
            ("temperature", self.temperature >= 0), ("top_p", 0 < self.top_p <= 1),
            ("n_boot", self.n_boot >= 10), ("level", 0 < self.level < 1),
            ("batch_size", self.batch_size >= 1), ("split", self.split in ("train", "test")),
            ("max_new_tokens", self.max_new_tokens is None or self.max_new_tokens >= 1),
            ("nll_documents", self.nll_documents >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise error_at(where, f"invalid value {getattr(self, name)!r}", field=name)
        if self.ks is not None and (not self.ks or any(k < 1 or k > self.n_samples for k in self.ks)):
            raise error_at(where, f"every k must be in 1..n_samples={self.n_samples}, got {list(self.ks)}",
                           field="ks")
        return self

    def scored_samples(self) -> int:
        """Samples per prompt scored for entropy and KL: min(score_samples, n_samples)."""
        return min(self.score_samples, self.n_samples)

    def k_values(self) -> list[int]:
        """The pass@k grid: `ks` sorted, or powers of two up to n_samples (plus n_samples)."""
        from ceiling.evaluate.estimators import k_grid

        return sorted(set(self.ks)) if self.ks else k_grid(self.n_samples)

    def to_dict(self) -> dict[str, Any]:
        return config.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path | None = None) -> EvalConfig:
        """An EvalConfig from a JSON object (a preset's "eval" settings); one-line errors name the field."""
        return config.from_dict(cls, data, where)

    def fingerprint(self, **context: Any) -> str:
        """A short hash of everything that changes the numbers (all fields plus `context`, e.g. base and tasks)."""
        text = dumps({"config": self.to_dict(), **context})
        return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
