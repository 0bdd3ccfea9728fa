"""Adversarial inputs for `ceiling.fit`: series a fit cannot (or can barely) support, and what the fits say.

    python tools/adversarial_fits.py                 # 1,000 series x 4 entry points, prints the tally
    python tools/adversarial_fits.py --n 100 --seed 3

Each series is drawn from one category (flat, 2 points, NaN/inf, decreasing, huge or tiny scales, duplicated or
unsorted steps, constant or negative KL, ...; `CATEGORIES`) or a mix of two, then given to four entry points:
`fit_frame` (as a canonical frame), `fit_curve` (compute, reward), `fit_entropy_law` (entropy, reward) and
`fit_collapse` (KL, unverified score, reward). Allowed outcomes:

- a fit, with finite numbers and an ordered interval where it claims a ceiling / threshold;
- "not identifiable" / "not detected" / `NotAvailable` with at least one reason in words;
- a one-line `CeilingError` (the direct entry points document their input contract: finite, increasing x).

Anything else is a failure: another exception (a crash), a hang (> 60 s), a claimed fit with non-finite
numbers or an unordered interval, a verdict without reasons, or a result that `to_dict()` / JSON cannot take.
Failures are written, with their inputs, to tools/adversarial_failures.json (the fit modules are not patched
from here). Exit status 1 when there is any failure.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ceiling.errors import CeilingError  # noqa: E402
from ceiling.fit import NotAvailable, fit_collapse, fit_curve, fit_entropy_law, fit_frame  # noqa: E402

FAILURES = ROOT / "tools" / "adversarial_failures.json"
TIMEOUT_S = 60
SERIES = ("step", "compute", "reward", "entropy", "unverified", "kl")

Series = dict[str, np.ndarray]


# ------------------------------------------------------------------------------------------ the inputs
def base(rng: np.random.Generator, n: int | None = None) -> Series:
    """A plausible run: a saturating reward against compute, the entropy falling with it, KL growing, an
    unverified score that rises then falls; seeded noise."""
    n = int(rng.integers(12, 120)) if n is None else n
    with np.errstate(all="ignore"):
        return _base(rng, n)


def _base(rng: np.random.Generator, n: int) -> Series:
    step = np.arange(n, dtype=float)
    compute = step * 10 ** rng.uniform(9, 15)
    a, mid = rng.uniform(0.3, 0.95), rng.uniform(0.1, 0.8) * max(compute[-1], 1.0)
    reward = 0.05 + (a - 0.05) / (1 + (mid / np.maximum(compute, 1e-300)) ** rng.uniform(0.8, 3))
    reward = reward + rng.normal(0, rng.uniform(0.001, 0.05), n)
    entropy = np.clip(1.2 - reward + rng.normal(0, 0.02, n), 0.01, None)
    kl = np.cumsum(np.abs(rng.normal(0.05, 0.03, n)))
    d = np.sqrt(kl)
    unverified = 0.3 + 0.1 * d - 0.06 * d * np.log(np.maximum(d, 1e-12)) + rng.normal(0, 0.01, n)
    return {"step": step, "compute": compute, "reward": reward, "entropy": entropy, "unverified": unverified, "kl": kl}


def _sprinkle(rng: np.random.Generator, s: Series, values: list[float], share: float) -> Series:
    for key in rng.choice(SERIES[1:], size=int(rng.integers(1, 5)), replace=False):
        mask = rng.random(s[key].size) < share
        s[key] = np.where(mask, rng.choice(values, s[key].size), s[key])
    return s


def _take(s: Series, idx: np.ndarray) -> Series:
    return {k: v[idx] for k, v in s.items()}


CATEGORIES: dict[str, Callable[[np.random.Generator, Series], Series]] = {
    "control": lambda rng, s: s,
    "flat": lambda rng, s: {**s, "reward": np.full(s["step"].size, rng.uniform(0, 1))},
    "flat_with_float_noise": lambda rng, s: {**s, "reward": 0.5 + rng.normal(0, 1e-15, s["step"].size)},
    "all_flat": lambda rng, s: {k: (v if k == "step" else np.full(v.size, rng.uniform(0, 1))) for k, v in s.items()},
    "empty": lambda rng, s: _take(s, np.arange(0)),
    "one_point": lambda rng, s: _take(s, np.arange(1)),
    "two_points": lambda rng, s: _take(s, np.array([0, s["step"].size - 1])),
    "three_points": lambda rng, s: _take(s, np.array([0, s["step"].size // 2, s["step"].size - 1])),
    "nan_sprinkled": lambda rng, s: _sprinkle(rng, s, [math.nan], rng.uniform(0.05, 0.6)),
    "inf_sprinkled": lambda rng, s: _sprinkle(rng, s, [math.inf, -math.inf], rng.uniform(0.02, 0.3)),
    "all_nan": lambda rng, s: {**s, "reward": np.full(s["step"].size, math.nan)},
    "decreasing": lambda rng, s: {**s, "reward": s["reward"][::-1].copy()},
    "decreasing_to_zero": lambda rng, s: {**s, "reward": np.linspace(0.9, 0.0, s["step"].size)},
    "huge_scale": lambda rng, s: {**s, "reward": s["reward"] * 1e12, "compute": s["compute"] * 1e25,
                                  "kl": s["kl"] * 1e9, "unverified": s["unverified"] * 1e10},
    "tiny_scale": lambda rng, s: {**s, "reward": s["reward"] * 1e-12, "compute": s["compute"] * 1e-30,
                                  "kl": s["kl"] * 1e-12, "entropy": s["entropy"] * 1e-9},
    "duplicated_steps": lambda rng, s: _take(s, np.sort(rng.integers(0, s["step"].size, s["step"].size * 2))),
    "duplicated_steps_other_values": lambda rng, s: {
        k: (np.concatenate([v, v]) if k in ("step", "compute") else np.concatenate([v, v + rng.normal(0, 0.1, v.size)]))
        for k, v in s.items()},
    "unsorted_steps": lambda rng, s: _take(s, rng.permutation(s["step"].size)),
    "reversed_steps": lambda rng, s: _take(s, np.arange(s["step"].size)[::-1]),
    "constant_kl": lambda rng, s: {**s, "kl": np.full(s["step"].size, rng.uniform(0, 3))},
    "zero_kl": lambda rng, s: {**s, "kl": np.zeros(s["step"].size)},
    "negative_kl": lambda rng, s: {**s, "kl": -s["kl"]},
    "kl_around_zero": lambda rng, s: {**s, "kl": rng.normal(0, 0.01, s["step"].size)},
    "zero_compute": lambda rng, s: {**s, "compute": np.zeros(s["step"].size)},
    "negative_compute": lambda rng, s: {**s, "compute": -s["compute"]},
    "constant_compute": lambda rng, s: {**s, "compute": np.full(s["step"].size, 1e15)},
    "step_gap": lambda rng, s: {**s, "step": np.where(s["step"] > s["step"].size // 2, s["step"] + 10 ** 7, s["step"])},
    "spike": lambda rng, s: {**s, "reward": np.where(np.arange(s["step"].size) == rng.integers(0, s["step"].size),
                                                     1e6, s["reward"])},
    "binary_reward": lambda rng, s: {**s, "reward": (rng.random(s["step"].size) < 0.5).astype(float)},
    "outside_unit": lambda rng, s: {**s, "reward": rng.uniform(-5, 5, s["step"].size)},
    "negative_entropy": lambda rng, s: {**s, "entropy": -s["entropy"]},
    "zero_entropy": lambda rng, s: {**s, "entropy": np.zeros(s["step"].size)},
    "huge_entropy": lambda rng, s: {**s, "entropy": s["entropy"] * 1e3},
    "pure_noise": lambda rng, s: {k: (v if k == "step" else rng.normal(0, 1, v.size)) for k, v in s.items()},
    "long": lambda rng, s: base(rng, 3000),
}


@dataclass
class Case:
    """One adversarial series."""

    index: int
    """Position in the campaign."""
    category: str
    """`CATEGORIES` key, or two joined by '+'."""
    series: Series
    """step, compute, reward, entropy, unverified, kl (equal lengths)."""


def cases(n: int, seed: int) -> list[Case]:
    """n cases: every category in turn (so each appears), a quarter of them mixed with a second category."""
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    out = []
    for i in range(n):
        first = names[i % len(names)]
        s = CATEGORIES[first](rng, base(rng))
        label = first
        if i >= len(names) and rng.random() < 0.25:
            second = str(rng.choice(names))
            s = CATEGORIES[second](rng, s)
            label = f"{first}+{second}"
        out.append(Case(i, label, {k: np.asarray(v, dtype=float) for k, v in s.items()}))
    return out


def frame_of(s: Series) -> pd.DataFrame:
    """The canonical frame of a series (the reader's NaN dropping is not applied: the fits get it raw)."""
    metrics = {"reward": "verified/reward", "entropy": "policy/entropy", "unverified": "unverified/score",
               "kl": "kl/policy_base_k3"}
    parts = [pd.DataFrame({"run": "adv", "step": s["step"], "compute": s["compute"], "metric": m, "value": s[k]})
             for k, m in metrics.items()]
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------ the checks
def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float, np.floating)) and math.isfinite(float(x)) for x in xs)


def _check_verdict(name: str, result: Any, claimed: bool) -> list[str]:
    """Problems with one fit result: a claim needs finite, ordered numbers; a refusal needs reasons."""
    problems = []
    if claimed:
        if not _finite(result.estimate, result.ci_low, result.ci_high):
            problems.append(f"{name}: claims a result with non-finite numbers "
                            f"({result.estimate}, [{result.ci_low}, {result.ci_high}])")
        elif not result.ci_low <= result.estimate <= result.ci_high:
            problems.append(f"{name}: estimate {result.estimate} outside its interval [{result.ci_low}, {result.ci_high}]")
    elif not [r for r in (result.reasons or []) if str(r).strip()]:
        problems.append(f"{name}: no result and no reason given")
    try:
        json.dumps(result.to_dict(), default=str)
    except Exception as exc:  # noqa: BLE001 - any failure to serialise is a finding
        problems.append(f"{name}: to_dict()/JSON fails: {exc.__class__.__name__}: {exc}")
    return problems


def _section(name: str, section: Any) -> tuple[str, list[str]]:
    if section is None:
        return "absent", []
    if isinstance(section, NotAvailable):
        return "not analysed", [] if str(section.reason).strip() else [f"{name}: NotAvailable without a reason"]
    claimed = bool(getattr(section, "identifiable", getattr(section, "detected", False)))
    return ("fit" if claimed else "not identifiable"), _check_verdict(name, section, claimed)


def run_fit_frame(s: Series) -> tuple[str, list[str]]:
    report = fit_frame(frame_of(s), x="compute", n_boot=50, seed=0, across=False)
    kinds, problems = [], []
    for name in ("ceiling", "entropy_law", "collapse"):
        kind, p = _section(name, getattr(report, name))
        kinds.append(f"{name}={kind}")
        problems += p
    try:
        json.dumps(report.to_dict(), default=str)
        report.summary()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"FitReport.to_dict()/summary() fails: {exc.__class__.__name__}: {exc}")
    return "; ".join(kinds), problems


def run_fit_curve(s: Series) -> tuple[str, list[str]]:
    fit = fit_curve(s["compute"], s["reward"], n_boot=50, seed=0)
    return ("fit" if fit.identifiable else "not identifiable"), _check_verdict("fit_curve", fit, fit.identifiable)


def run_fit_entropy_law(s: Series) -> tuple[str, list[str]]:
    fit = fit_entropy_law(s["entropy"], s["reward"], steps=s["step"])
    return ("fit" if fit.identifiable else "not identifiable"), _check_verdict("fit_entropy_law", fit, fit.identifiable)


def run_fit_collapse(s: Series) -> tuple[str, list[str]]:
    fit = fit_collapse(s["kl"], s["unverified"], s["reward"], n_boot=50, n_null=49, seed=0)
    return ("detected" if fit.detected else "not detected"), _check_verdict("fit_collapse", fit, fit.detected)


SECTION_OF = {"fit_curve": "ceiling", "fit_entropy_law": "entropy_law", "fit_collapse": "collapse"}
_TOO_SHORT = {"empty", "one_point", "two_points", "three_points", "all_flat"}
UNSUPPORTED: dict[str, set[str]] = {
    # no ceiling can be read from these rewards
    "ceiling": _TOO_SHORT | {"flat", "flat_with_float_noise", "all_nan", "decreasing", "decreasing_to_zero",
                             "pure_noise", "binary_reward", "outside_unit"},
    # nor an entropy law from these (entropy constant, absent, or no relation)
    "entropy_law": _TOO_SHORT | {"zero_entropy", "all_nan", "pure_noise", "flat", "binary_reward"},
    # nor a KL threshold along a KL that does not move
    "collapse": _TOO_SHORT | {"constant_kl", "zero_kl"},
}

TARGETS: dict[str, Callable[[Series], tuple[str, list[str]]]] = {
    "fit_frame": run_fit_frame, "fit_curve": run_fit_curve, "fit_entropy_law": run_fit_entropy_law,
    "fit_collapse": run_fit_collapse,
}


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


@dataclass
class Outcome:
    """What one entry point did with one case."""

    target: str
    """Entry point name (`TARGETS` key)."""
    case: Case
    """The input."""
    kind: str
    """fit / not identifiable / not analysed / detected / not detected (`ceiling=...; entropy_law=...;
    collapse=...` for fit_frame), or error (one-line CeilingError), crash, hang, bad-result."""
    detail: str = ""
    """The error text, the crash's last traceback line, or the problems found."""
    warned: bool = False
    """Whether the call emitted Python warnings (reported, not a failure)."""

    @property
    def failed(self) -> bool:
        return self.kind in ("crash", "hang", "bad-result")

    def verdicts(self) -> dict[str, str]:
        """Section -> verdict (one section, named after the target, for the direct entry points)."""
        if self.target == "fit_frame" and "=" in self.kind:
            return dict(part.split("=", 1) for part in self.kind.split("; "))
        return {SECTION_OF.get(self.target, "all"): self.kind}

    def questionable(self) -> list[str]:
        """Sections that claim a result on an unmixed category that cannot support one."""
        if "+" in self.case.category:
            return []
        return [sec for sec, verdict in self.verdicts().items()
                if verdict in ("fit", "detected") and self.case.category in UNSUPPORTED.get(sec, ())]


def check(target: str, case: Case) -> Outcome:
    """Run one entry point on one case and classify the outcome (never raises)."""
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TIMEOUT_S)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kind, problems = TARGETS[target]({k: v.copy() for k, v in case.series.items()})
        if problems:
            return Outcome(target, case, "bad-result", "; ".join(problems), bool(caught))
        return Outcome(target, case, kind, "", bool(caught))
    except CeilingError as exc:
        text = str(exc)
        if "\n" in text or not text.strip():
            return Outcome(target, case, "bad-result", f"CeilingError not one line: {text!r}")
        return Outcome(target, case, "error", text)
    except _Timeout:
        return Outcome(target, case, "hang", f"no answer within {TIMEOUT_S} s")
    except Exception as exc:  # noqa: BLE001 - this is what the campaign looks for
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f"{Path(f.filename).relative_to(ROOT)}:{f.lineno} in {f.name}" for f in reversed(tb)
                      if f.filename.startswith(str(ROOT / "ceiling"))), "?")
        return Outcome(target, case, "crash", f"{exc.__class__.__name__}: {exc} (at {where})")
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _jsonable(a: np.ndarray) -> list[Any]:
    return [float(x) if math.isfinite(x) else repr(float(x)) for x in a.tolist()]


def write_failures(outcomes: list[Outcome], seed: int, path: Path = FAILURES) -> None:
    bad = [o for o in outcomes if o.failed]
    record = {"seed": seed, "n_failures": len(bad), "note": "inputs: non-finite values are written as 'nan', "
              "'inf', '-inf'; rerun one with tools/adversarial_fits.py --seed SEED --only INDEX",
              "failures": [{"target": o.target, "case": o.case.index, "category": o.case.category, "kind": o.kind,
                            "detail": o.detail, "inputs": {k: _jsonable(v) for k, v in o.case.series.items()}}
                           for o in bad]}
    path.write_text(json.dumps(record, indent=1) + "\n")


def campaign(n: int, seed: int, targets: list[str] | None = None, only: int | None = None,
             progress: bool = True) -> list[Outcome]:
    all_cases = cases(n if only is None else max(n, only + 1), seed)
    chosen = [all_cases[only]] if only is not None else all_cases
    outcomes = []
    t0 = last = time.monotonic()
    for c in chosen:
        for t in targets or list(TARGETS):
            outcomes.append(check(t, c))
        if progress and time.monotonic() - last > 10:
            last = time.monotonic()
            print(f"  {c.index + 1}/{len(chosen)} cases, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return outcomes


def tally(outcomes: list[Outcome]) -> str:
    lines = [f"{len(outcomes)} calls on {len({o.case.index for o in outcomes})} series "
             f"({len({o.case.category.split('+')[0] for o in outcomes})} categories)"]
    for target in TARGETS:
        mine = [o for o in outcomes if o.target == target]
        if not mine:
            continue
        lines.append(f"  {target:16s} {len(mine):5d} calls, {sum(o.failed for o in mine)} failures, "
                     f"{sum(o.kind == 'error' for o in mine)} one-line errors, {sum(o.warned for o in mine)} with "
                     f"warnings, {sum(bool(o.questionable()) for o in mine)} questionable claims")
        ok = [o for o in mine if not o.failed and o.kind != "error"]
        for sec in dict.fromkeys(k for o in ok for k in o.verdicts()):
            kinds = Counter(o.verdicts()[sec] for o in ok)
            lines.append(f"      {sec:12s} " + ", ".join(f"{k}: {v}" for k, v in kinds.most_common()))
    odd = Counter((o.target, sec, o.case.category) for o in outcomes for sec in o.questionable())
    if odd:
        lines.append("  questionable claims (a result where the category cannot support one): "
                     + "; ".join(f"{t} {sec} on {cat}: {c}" for (t, sec, cat), c in odd.most_common(10)))
    errors = Counter(o.detail.split(": ", 1)[-1][:90] for o in outcomes if o.kind == "error")
    if errors:
        lines.append("  one-line errors, most common: " + " | ".join(f"{m} ({c})" for m, c in errors.most_common(4)))
    for o in [o for o in outcomes if o.failed][:20]:
        lines.append(f"  FAIL {o.target} case {o.case.index} ({o.case.category}): {o.kind}: {o.detail[:300]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of series (each goes to every entry point)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", action="append", choices=list(TARGETS), help="only these entry points")
    ap.add_argument("--only", type=int, default=None, help="only case INDEX (to rerun a failure)")
    ap.add_argument("--failures", default=str(FAILURES), help="where failing inputs go")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    outcomes = campaign(args.n, args.seed, args.target, args.only)
    print(tally(outcomes))
    failed = [o for o in outcomes if o.failed]
    if failed:
        write_failures(outcomes, args.seed, Path(args.failures))
        print(f"failing inputs written to {args.failures}")
    print(f"{len(outcomes)} calls, {len(failed)} failures, {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
