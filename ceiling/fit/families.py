"""The ceiling of each verified family on its own (section `family_ceilings` of fits.json).

A run rewarded on several families can hold two kinds of floor at once: a skill that carries over to sub-spaces
the base never solved (sorting) and knowledge that cannot (`cipher`: tables the corpus never showed). Their pooled
reward mixes a ceiling that binds with one that need not, so each verified family's held-out reward gets its own
ceiling fit, with the same estimator, forms, window and bootstrap as the pooled `ceiling` section
(`CurveFitter`, best form by leave-future-out error). The section exists only when an evaluation table holds at
least two verified families; a family whose fit fails is stored as not available, with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceiling.fit.common import SCHEMA_VERSION, NotAvailable, fmt, interval, table_row
from ceiling.fit.curve import CurveFit

FamilyFit = CurveFit | NotAvailable
KIND_WORDS = {"plateau": " (plateau: the level held)", "at_maximum": " (at the metric's maximum)"}


@dataclass
class FamilyCeilings:
    """One ceiling fit per verified family; `estimate` is none (each family carries its own)."""

    fits: dict[str, FamilyFit]
    """Family name -> its ceiling fit (or why it could not be fitted), in the evaluation table's order."""
    metric: str = "verified/reward"
    """The verified metric fitted per family."""
    reasons: list[str] = field(default_factory=list)
    """Notes on the section as a whole."""

    kind = "family_ceilings"
    title = "ceiling per verified family"
    estimate = None
    ci_low = None
    ci_high = None
    method = "each family's curve fitted as the pooled ceiling is (see the ceiling section)"

    @property
    def identifiable(self) -> bool:
        """True when every family's ceiling is identifiable."""
        return bool(self.fits) and all(isinstance(f, CurveFit) and f.identifiable for f in self.fits.values())

    detected = False

    def ceiling(self, family: str) -> FamilyFit | None:
        return self.fits.get(family)

    # ------------------------------------------------------------------ the report's words
    def _words(self, family: str, fit: FamilyFit) -> str:
        if not isinstance(fit, CurveFit):
            return f"{family}: not fitted ({fit.reason})"
        if not fit.identifiable:
            return f"{family}: not identifiable (point fit {fmt(fit.estimate)})"
        kind = KIND_WORDS.get(fit.ceiling_kind or "", "")
        return f"{family}: {fmt(fit.estimate)} {interval(fit.ci_low, fit.ci_high)}{kind}"

    def headline(self) -> str:
        return "; ".join(self._words(name, fit) for name, fit in self.fits.items())

    def summary(self) -> str:
        return f"ceiling per verified family ({self.metric}): " + self.headline()

    def note(self) -> str | None:
        return None

    def warnings(self) -> list[str]:
        out = [f"{name} ceiling: {w}" for name, fit in self.fits.items() for w in fit.warnings()
               if "not identifiable" in w or isinstance(fit, NotAvailable)]
        return out + [f"ceiling per family: {r}" for r in self.reasons]

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for name, fit in self.fits.items():
            if isinstance(fit, CurveFit):
                verdict = "identifiable" if fit.identifiable else "NOT identifiable: " + "; ".join(fit.reasons)
                rows.append(table_row(self.title, f"ceiling of {name}", fit.estimate, fit.ci_low, fit.ci_high,
                                      f"{fit.form}; {fit.method}", verdict,
                                      f"{fit.data.get('n')} points, x = {fit.x_label}"))
            else:
                rows.append(table_row(self.title, f"ceiling of {name}", None, None, None, "-", "not fitted",
                                      fit.reason))
        return rows

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schema_version": SCHEMA_VERSION, "estimate": None, "ci_low": None,
                "ci_high": None, "method": self.method, "identifiable": self.identifiable, "metric": self.metric,
                "reasons": list(self.reasons), "families": {n: f.to_dict() for n, f in self.fits.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilyCeilings:
        fits: dict[str, FamilyFit] = {}
        for name, f in (d.get("families") or {}).items():
            fits[name] = (NotAvailable.from_dict(f, f"ceiling of {name}") if f.get("kind") == "not_available"
                          else CurveFit.from_dict(f))
        return cls(fits=fits, metric=d.get("metric") or "verified/reward", reasons=list(d.get("reasons") or []))


__all__ = ["FamilyCeilings"]
