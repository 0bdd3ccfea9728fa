"""`TaskSet`: which families RL is rewarded on (verified) and which are only measured (unverified).

Presets (`TaskSet.preset(name)`), all at difficulty 1 unless a spec says otherwise:

- ``default``: verified add, sub; unverified mul, mod, sort, parity. See the package docstring for why.
- ``wide``: verified add, sub; unverified mul, mod, sort, count, parity, countdown.
- ``arith``: verified add, sub, mul; unverified mod, count.
- ``countdown``: verified countdown; unverified add, sub, mul.
- ``all``: every built-in family verified, none unverified.
- ``smoke``: verified add; unverified mul (the smallest useful set, for quick checks).

Spec strings (`TaskSet.parse`): a preset name; a path to a JSONL file of user tasks (all verified); or
``key=value`` pairs separated by ";" with keys ``preset`` (start from a preset), ``verified``,
``unverified`` (comma-separated family names or JSONL paths, each optionally ``name:D`` for difficulty
D), ``difficulty`` (the default level) and ``verifier`` (``exact`` or ``numeric``, for JSONL files), e.g.
``verified=add,sub;unverified=mul:2,sort;difficulty=1``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Mapping

from ceiling.errors import CeilingError, error_at
from ceiling.tasks.core import Problem, TaskFamily, check_split, stable_int
from ceiling.tasks.jsonl import VERIFIERS, JsonlFamily, load_jsonl_tasks
from ceiling.tasks.registry import FAMILIES, get_family

PRESETS: dict[str, dict[str, Any]] = {
    "default": {"verified": ["add", "sub"], "unverified": ["mul", "mod", "sort", "parity"]},
    "wide": {"verified": ["add", "sub"], "unverified": ["mul", "mod", "sort", "count", "parity", "countdown"]},
    "arith": {"verified": ["add", "sub", "mul"], "unverified": ["mod", "count"]},
    "countdown": {"verified": ["countdown"], "unverified": ["add", "sub", "mul"]},
    "all": {"verified": list(FAMILIES), "unverified": []},
    "smoke": {"verified": ["add"], "unverified": ["mul"]},
    # The shipped tiny bases: their pretraining corpus (70% sorting) and the default RL run. Sorting is what an
    # 866k-parameter char model learns within its 2-minute budget well enough for the diversity knob to show
    # in its samples; mod and count are never rewarded, partly learned skills that RL can damage. (Two-digit
    # addition needs about 10x that budget at this size: greedy accuracy ~0.05 after 2 minutes.)
    "tiny-rl": {"verified": ["sort"], "unverified": ["mod", "count"]},
    # The cipher bases and the sweep: a knowledge family (tables only the corpus shows) beside sorting (a skill
    # that carries over to sub-spaces the corpus does not cover).
    "tiny-cipher": {"verified": ["sort", "cipher"], "unverified": ["mod", "count"]},
}
WHICH = ("verified", "unverified", "all")


def _resolve(item: str | TaskFamily, verifier: str) -> TaskFamily:
    if isinstance(item, TaskFamily):
        return item
    if item in FAMILIES:
        return FAMILIES[item]
    if item.endswith(".jsonl") or Path(item).is_file():
        return load_jsonl_tasks(item, verifier=verifier)
    return get_family(item)  # raises with the list of known names


class TaskSet:
    """Verified (rewarded) and unverified (measured only) families, each at a difficulty level."""

    def __init__(self, verified: Iterable[str | TaskFamily] = (), unverified: Iterable[str | TaskFamily] = (),
                 difficulty: int | Mapping[str, int] = 1, name: str = "custom", verifier: str = "exact") -> None:
        self.verified = [_resolve(f, verifier) for f in verified]
        self.unverified = [_resolve(f, verifier) for f in unverified]
        self.name = name
        names = [f.name for f in self.verified + self.unverified]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CeilingError(f"task family listed twice (verified and unverified?): {', '.join(dupes)}")
        if not self.verified and not self.unverified:
            raise CeilingError("a task set needs at least one family")
        if isinstance(difficulty, Mapping):
            self.difficulties = {n: int(difficulty.get(n, 1)) for n in names}
        else:
            self.difficulties = {n: int(difficulty) for n in names}
        bad = {n: d for n, d in self.difficulties.items() if d < 1}
        if bad:
            raise CeilingError(f"difficulty must be >= 1, got {bad}")

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, difficulty: int = 1) -> TaskSet:
        """A named preset (see the module docstring)."""
        if name not in PRESETS:
            raise CeilingError(f"unknown task preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(difficulty=difficulty, name=name, **PRESETS[name])

    @classmethod
    def parse(cls, spec: str | TaskSet | Mapping[str, Any]) -> TaskSet:
        """A task set from a CLI string (preset, JSONL path, or key=value;... spec), a dict, or a TaskSet."""
        if isinstance(spec, TaskSet):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if not isinstance(spec, str) or not spec.strip():
            raise CeilingError(f"tasks: expected a preset name, a .jsonl path or key=value;... spec, got {spec!r}")
        spec = spec.strip()
        if spec in PRESETS:
            return cls.preset(spec)
        if "=" not in spec:
            if spec.endswith(".jsonl") or Path(spec).is_file():
                return cls(verified=[load_jsonl_tasks(spec)], name=Path(spec).stem)
            raise CeilingError(f"tasks: unknown preset {spec!r}; give one of {', '.join(PRESETS)}, a .jsonl "
                               "path, or e.g. 'verified=add,sub;unverified=mul;difficulty=1'")
        return cls._parse_pairs(spec)

    @classmethod
    def _parse_pairs(cls, spec: str) -> TaskSet:
        pairs: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in ("preset", "verified", "unverified", "difficulty", "verifier"):
                raise error_at(None, "unknown key in tasks spec (use preset, verified, unverified, difficulty, "
                                     "verifier)", field=key or part)
            pairs[key] = value.strip()
        base = PRESETS.get(pairs.get("preset", ""), None)
        if "preset" in pairs and base is None:
            raise error_at(None, f"unknown preset {pairs['preset']!r}; known: {', '.join(PRESETS)}", field="preset")
        try:
            default = int(pairs.get("difficulty", "1"))
        except ValueError:
            raise error_at(None, f"not an integer: {pairs['difficulty']!r}", field="difficulty") from None
        verifier = pairs.get("verifier", "exact")
        if verifier not in VERIFIERS:
            raise error_at(None, f"must be one of {', '.join(VERIFIERS)}", field="verifier")
        levels: dict[str, int] = {}

        def items(key: str) -> list[TaskFamily]:
            raw = pairs[key].split(",") if key in pairs else (base or {}).get(key, [])
            out = []
            for item in filter(None, (s.strip() for s in raw)):
                name, _, level = item.rpartition(":") if ":" in item else (item, "", "")
                if level and not level.isdigit():
                    name, level = item, ""
                fam = _resolve(name, verifier)
                levels[fam.name] = int(level) if level else default
                out.append(fam)
            return out

        verified, unverified = items("verified"), items("unverified")
        return cls(verified, unverified, difficulty=levels, name=pairs.get("preset", "custom"), verifier=verifier)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (for config.json) that `from_dict` turns back into an equal task set."""
        return {
            "name": self.name,
            "verified": [f.name for f in self.verified],
            "unverified": [f.name for f in self.unverified],
            "difficulty": dict(self.difficulties),
            "jsonl": {f.name: f.to_dict() for f in self.verified + self.unverified if isinstance(f, JsonlFamily)},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSet:
        try:
            jsonl = d.get("jsonl") or {}
            fams: dict[str, TaskFamily] = {
                n: load_jsonl_tasks(j["path"], verifier=j.get("verifier", "exact"), name=j.get("name", n),
                                    split=j.get("split", "hash")) for n, j in jsonl.items()}
            return cls([fams.get(n, n) for n in d.get("verified", [])],
                       [fams.get(n, n) for n in d.get("unverified", [])],
                       difficulty=d.get("difficulty", 1), name=d.get("name", "custom"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise error_at(None, f"malformed task set record ({exc.__class__.__name__}: {exc})", field="tasks") from None

    # ---- use ------------------------------------------------------------------------------------
    def families(self, which: str = "all") -> list[TaskFamily]:
        """The verified, unverified, or all families (verified first)."""
        if which not in WHICH:
            raise CeilingError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
        if which == "verified":
            return list(self.verified)
        if which == "unverified":
            return list(self.unverified)
        return self.verified + self.unverified

    def family(self, name: str) -> TaskFamily:
        for f in self.verified + self.unverified:
            if f.name == name:
                return f
        raise CeilingError(f"task family {name!r} is not in this task set ({', '.join(self.names())})")

    def names(self, which: str = "all") -> list[str]:
        return [f.name for f in self.families(which)]

    def is_verified(self, problem: Problem) -> bool:
        return any(f.name == problem.family for f in self.verified)

    def sample(self, n: int, seed: int, split: str = "train", which: str = "verified", *,
               unique: bool = False) -> list[Problem]:
        """`n` problems spread evenly over the chosen families (the first n % F families get one more),
        each at its difficulty, then shuffled; deterministic in (seed, split, which). `unique`: no
        problem twice (see `TaskFamily.generate`)."""
        check_split(split)
        fams = self.families(which)
        if not fams:
            raise CeilingError(f"this task set has no {which} families")
        out: list[Problem] = []
        for i, fam in enumerate(fams):
            count = n // len(fams) + (1 if i < n % len(fams) else 0)
            out.extend(fam.generate(count, seed, split=split, difficulty=self.difficulties[fam.name], unique=unique))
        random.Random(stable_int("taskset", seed, split, which)).shuffle(out)
        return out

    def verify(self, problem: Problem, completion: Any) -> float:
        """The problem's family verifier (never raises; 0.0 for an unknown family)."""
        try:
            fam = next((f for f in self.verified + self.unverified if f.name == problem.family), None)
            fam = fam or FAMILIES.get(problem.family)
            return 0.0 if fam is None else fam.verify(problem, completion)
        except Exception:  # noqa: BLE001
            return 0.0

    def find(self, prompt: Any, which: str = "all") -> Problem | None:
        """The problem whose prompt this is (first family that recognises it), or None."""
        for fam in self.families(which):
            problem = fam.parse_prompt(prompt)
            if problem is not None:
                return problem
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskSet) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        v = ",".join(f"{n}:{self.difficulties[n]}" for n in self.names("verified"))
        u = ",".join(f"{n}:{self.difficulties[n]}" for n in self.names("unverified"))
        return f"TaskSet(name={self.name!r}, verified=[{v}], unverified=[{u}])"
