"""The base model's diversity floor: one definition, named by its family set, read the same way everywhere.

The diversity floor of a base on a family set S ("verified", "unverified" or "all") is three measures of the
base's own samples at temperature 1 on held-out (test split) prompts of S's families:

- entropy: full-vocabulary next-token entropy in nats, a token mean pooled over the sampled completions of
  all of S's prompts (not a mean of per-family or per-sequence means);
- pass@k at the largest k measured: unbiased pass@k of the n samples per prompt, mean over S's prompts
  (reward >= 1 counts as correct; verified families: `verified/pass@k`, unverified: `unverified/pass@k`;
  "all" has none, since the two kinds are scored apart);
- distinct answers: distinct extracted final answers among a prompt's n samples (a sample with no answer is
  not counted), mean over S's prompts.

The default family set is "verified": the families RL rewards, the ones whose ceiling the floor is said to
set. The same floor is read from eval.csv at step 0 (`diversity_floor`, the evaluator's rows of family S) and
from a shipped base's diversity.json written at pretraining (`floor_from_record`, its `floor` section). Both
measure the definition above; they differ only in prompts, samples and k, which the floor carries.

This module imports pandas and numpy only (no torch): the report and the sweep call it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError

FAMILY_SETS = ("verified", "unverified", "all")
"""The family sets a floor can be named by."""
ENTROPY = "policy/entropy"
DISTINCT = "diversity/distinct_answers"
PASS_AT_K = {"verified": "verified/pass@k", "unverified": "unverified/pass@k"}
NAN_CI = (math.nan, math.nan)


def _check_families(families: str) -> str:
    if families not in FAMILY_SETS:
        raise CeilingError(f"unknown family set {families!r}; known: {', '.join(FAMILY_SETS)}")
    return families


@dataclass(frozen=True)
class Floor:
    """A base model's diversity floor on one family set (NaN where a measure was not taken)."""

    families: str
    """The family set: "verified", "unverified" or "all"."""
    entropy: float
    """Full-vocabulary token entropy of the base's own samples (nats per token), pooled over the set's prompts."""
    pass_at_k: float
    """Unbiased pass@k at the largest k measured, mean over the set's prompts (NaN for "all")."""
    k: int | None
    """The k of `pass_at_k` (None when not measured)."""
    distinct_answers: float
    """Distinct final answers among a prompt's samples, mean over the set's prompts."""
    source: str
    """Where the numbers were read: "eval.csv, step 0" or "diversity.json (pretraining)"."""
    family_names: tuple[str, ...] = ()
    """The families in the set, when known (e.g. ("sort",))."""
    entropy_ci: tuple[float, float] = NAN_CI
    """95% interval of `entropy` (NaN when none)."""
    pass_at_k_ci: tuple[float, float] = NAN_CI
    """95% interval of `pass_at_k` (NaN when none)."""
    distinct_answers_ci: tuple[float, float] = NAN_CI
    """95% interval of `distinct_answers` (NaN when none)."""
    missing: tuple[str, ...] = field(default=())
    """Measures absent from the source, each with why (for the words)."""

    def measures(self) -> dict[str, float]:
        """The floor as the across-run regressors (sweep.csv and `fit_across_runs` column names)."""
        return {"base_entropy": self.entropy, "base_pass@kmax": self.pass_at_k,
                "base_distinct_answers": self.distinct_answers}

    def set_label(self) -> str:
        """"the verified families (sort)"."""
        names = f" ({', '.join(self.family_names)})" if self.family_names else ""
        return f"the {self.families} families{names}" if self.families != "all" else f"all families{names}"

    def words(self) -> str:
        """One line: entropy, pass@k and distinct answers with their intervals, and the family set they are on."""
        parts = []
        if np.isfinite(self.entropy):
            parts.append(f"entropy {self.entropy:.3g} nats/token{_ci(self.entropy_ci, '.3g')}")
        if np.isfinite(self.pass_at_k) and self.k is not None:
            parts.append(f"pass@{self.k} {self.pass_at_k:.3f}{_ci(self.pass_at_k_ci, '.3f')}")
        if np.isfinite(self.distinct_answers):
            parts.append(f"{self.distinct_answers:.3g} distinct answers per prompt"
                         f"{_ci(self.distinct_answers_ci, '.3g')}")
        text = (", ".join(parts) if parts else "no measure") + f", on {self.set_label()}"
        return text + "".join(f"; {m}" for m in self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {"families": self.families, "family_names": list(self.family_names), "entropy": _num(self.entropy),
                "entropy_ci": [_num(v) for v in self.entropy_ci], "pass@k": _num(self.pass_at_k), "k": self.k,
                "pass@k_ci": [_num(v) for v in self.pass_at_k_ci], "distinct_answers": _num(self.distinct_answers),
                "distinct_answers_ci": [_num(v) for v in self.distinct_answers_ci], "source": self.source}


def _num(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def _ci(ci: tuple[float, float], spec: str) -> str:
    lo, hi = ci
    return f" [{lo:{spec}}, {hi:{spec}}]" if np.isfinite(lo) and np.isfinite(hi) else ""


def _value(rows: pd.DataFrame) -> tuple[float, tuple[float, float]]:
    if rows.empty:
        return math.nan, NAN_CI
    r = rows.iloc[0]
    lo = float(r["ci_low"]) if "ci_low" in rows.columns and pd.notna(r["ci_low"]) else math.nan
    hi = float(r["ci_high"]) if "ci_high" in rows.columns and pd.notna(r["ci_high"]) else math.nan
    return float(r["value"]), (lo, hi)


def diversity_floor(eval_frame: pd.DataFrame | None, families: str = "verified",
                    run: str | None = None) -> Floor | None:
    """The base's diversity floor on `families`, read from the evaluator's frame (eval.csv) at step 0.

    Reads the rows of family `families` (the evaluator writes one per family set): `policy/entropy`,
    `<kind>/pass@k` at the largest k, `diversity/distinct_answers`. `run` picks one run of a frame holding
    several. None when the frame has no step 0 (the base was not evaluated). An eval.csv written before
    entropy was measured per family set has entropy on "all" only: it serves the verified set when the run
    has no unverified families (the two sets are then the same prompts); otherwise the floor says it is missing.
    """
    families = _check_families(families)
    if eval_frame is None or eval_frame.empty or not {"metric", "step", "value"} <= set(eval_frame.columns):
        return None
    ev = eval_frame
    if run is not None and "run" in ev.columns:
        ev = ev[ev["run"] == run]
    base = ev[(ev["step"] == 0) & np.isfinite(ev["value"].astype(float))]
    if base.empty:
        return None
    fam = base["family"] if "family" in base.columns else pd.Series(np.nan, index=base.index, dtype=object)
    k = base["k"] if "k" in base.columns else pd.Series(np.nan, index=base.index)
    plain = base[k.isna()]
    plain_fam = fam[k.isna()]
    missing: list[str] = []

    ent = plain[(plain["metric"] == ENTROPY) & (plain_fam == families)]
    if ent.empty and families == "verified":
        has_unverified = base["metric"].astype(str).str.startswith("unverified/").any() or (fam == "unverified").any()
        if not has_unverified:
            ent = plain[(plain["metric"] == ENTROPY) & (plain_fam == "all")]
    if ent.empty and (plain["metric"] == ENTROPY).any():
        missing.append(f"entropy not measured on the {families} families alone (this eval.csv has it for "
                       f"{', '.join(sorted(set(plain_fam[plain['metric'] == ENTROPY].dropna().astype(str))))}; "
                       "run `ceiling eval` again)")
    entropy, entropy_ci = _value(ent)

    pass_k, pass_ci, kmax = math.nan, NAN_CI, None
    if families in PASS_AT_K:
        pk = base[(base["metric"] == PASS_AT_K[families]) & (fam == families) & k.notna()]
        if not pk.empty:
            top = pk.sort_values("k").iloc[[-1]]
            kmax = int(top["k"].iloc[0])
            pass_k, pass_ci = _value(top)

    distinct, distinct_ci = _value(plain[(plain["metric"] == DISTINCT) & (plain_fam == families)])
    names = _family_names(base, fam, families)
    return Floor(families, entropy, pass_k, kmax, distinct, "eval.csv, step 0", names, entropy_ci, pass_ci,
                 distinct_ci, tuple(missing))


def _family_names(base: pd.DataFrame, fam: pd.Series, families: str) -> tuple[str, ...]:
    """The single families of a set, from the per-family score rows (verified/reward, unverified/score)."""
    kinds = ("verified", "unverified") if families == "all" else (families,)
    names: list[str] = []
    for kind in kinds:
        score = "verified/reward" if kind == "verified" else "unverified/score"
        sel = fam[(base["metric"] == score)].dropna().astype(str)
        names += [f for f in dict.fromkeys(sel) if f not in FAMILY_SETS]
    return tuple(names)


def floor_from_record(record: dict[str, Any], families: str = "verified") -> Floor | None:
    """The floor a base's diversity.json records (its `floor` section, written at pretraining), or None when the
    record predates it."""
    families = _check_families(families)
    section = (record.get("floor") or {}).get(families)
    if not isinstance(section, dict):
        return None

    def num(key: str) -> float:
        v = section.get(key)
        return float(v) if isinstance(v, (int, float)) else math.nan

    k = section.get("k")
    return Floor(families, num("entropy"), num("pass@k"), int(k) if isinstance(k, int) else None,
                 num("distinct_answers"), "diversity.json (pretraining)", tuple(section.get("family_names") or ()))
