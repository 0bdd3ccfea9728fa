"""Read fit results for the report: a FitReport, a fits.json dict or a path -> `Fits`.

The report always works from the JSON form of the fits (what `fits.json` stores), rebuilt into result
objects with `ceiling.fit`'s own loader, so a report built right after fitting and one rebuilt later from
fits.json are identical. Every word and number comes from the result objects' attributes and their own
`headline()`, `rows()`, `warnings()` and `note()`; nothing here reads a fits.json path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError, error_at
from ceiling.frame import METRICS
from ceiling.fit.common import TABLE_COLUMNS, NotAvailable, fmt, interval  # noqa: F401 (fmt, interval: re-exported)
from ceiling.fit.registry import SECTIONS
from ceiling.io import dumps



@dataclass(frozen=True)
class Level:
    """A fitted level (a ceiling, a threshold) with its interval, drawn as a line with a shaded band."""

    estimate: float
    low: float | None
    high: float | None
    label: str


def kl_label(metric: str) -> str:
    """An axis label for a KL metric that states direction and estimator."""
    names = {"kl/policy_base_k3": "KL(policy || base), k3 estimator, per sequence",
             "kl/policy_base_k1": "KL(policy || base), k1 estimator, per sequence",
             "kl/base_policy_k3": "KL(base || policy), k3 estimator, per sequence",
             "kl/base_policy_k1": "KL(base || policy), k1 estimator, per sequence",
             "kl/policy_base_k3_token": "KL(policy || base), k3 estimator, per token",
             "kl/logged": "KL as logged by the training framework (its direction and estimator)"}
    return names.get(metric, METRICS.get(metric, metric)) + (" [nats]" if metric.startswith("kl/") else "")


def as_fits(fits: "Fits | object") -> "Fits":
    """A `Fits` from a Fits, a FitReport (anything with `to_dict()`), a fits.json dict, or a path to fits.json."""
    if isinstance(fits, Fits):
        return fits
    if isinstance(fits, (str, Path)):
        return Fits.load(fits)
    if isinstance(fits, dict):
        return Fits(fits)
    if hasattr(fits, "to_dict"):
        return Fits(fits.to_dict())
    raise CeilingError(f"fits: expected a FitReport, a fits.json dict or a path, not {type(fits).__name__}")


class Fits:
    """Fit results as stored in fits.json (`data`) and the result objects rebuilt from them (`report`).

    What the report says about fits comes from here: levels and notes for figures, headline texts, warnings,
    and the table of fitted numbers, each taken from the section's result object.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        from ceiling.fit import FitReport  # the fit module's own loader; imported here to keep imports light

        if not isinstance(data, dict):
            raise CeilingError("fits: expected a fits.json object")
        self.data: dict[str, Any] = json.loads(dumps(data))  # exactly what fits.json holds (NaN -> null)
        self.report = FitReport.from_dict(self.data)
        self.run: str | None = self.data.get("run")
        self.schema_version = self.data.get("schema_version")

    @classmethod
    def load(cls, path: str | Path) -> "Fits":
        """Read fits.json (a one-line CeilingError naming the file when it is missing or malformed)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return cls(data)
        except FileNotFoundError:
            raise error_at(p, "no such file") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise error_at(p, f"not valid JSON ({exc.__class__.__name__})") from None
        except CeilingError as exc:
            raise error_at(p, str(exc)) from None

    # ------------------------------------------------------------------ sections
    def section(self, name: str) -> Any | None:
        """The result object of a fitted section, or None when it is missing or could not be fitted."""
        sec = getattr(self.report, name, None)
        return None if sec is None or isinstance(sec, NotAvailable) else sec

    def unavailable_reason(self, name: str) -> str | None:
        """Why a section was not fitted (None when it was, or when it was not attempted)."""
        sec = getattr(self.report, name, None)
        return (sec.reason or "not fitted") if isinstance(sec, NotAvailable) else None

    def result(self, name: str) -> Any | None:
        """The result object of a fitted section (with `.predict`), or None."""
        return self.section(name)

    @staticmethod
    def curve_with_bands(result: Any, x: np.ndarray) -> tuple[np.ndarray, tuple | None, tuple | None]:
        """(center, (conf_low, conf_high) or None, (pred_low, pred_high) or None) of `result` at x."""
        center = np.asarray(result.predict(x), dtype=float)
        bands = []
        for kind in ("confidence", "prediction"):
            try:
                _, lo, hi = result.predict(x, band=kind)
                bands.append((np.asarray(lo, float), np.asarray(hi, float)))
            except CeilingError:
                bands.append(None)
        return center, bands[0], bands[1]

    @staticmethod
    def band(result: Any, x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """The (low, high) band of `result` at x; NaN when the fit has no bootstrap draws."""
        try:
            _, lo, hi = result.predict(x, band=kind)
            return np.asarray(lo, float), np.asarray(hi, float)
        except CeilingError:
            nan = np.full(np.shape(x), np.nan)
            return nan, nan

    # ------------------------------------------------------------------ run diagnosis
    def has_diagnosis(self) -> bool:
        """Whether fits.json has a diagnosis section at all (files written before it existed have none)."""
        return self.report.diagnosis is not None

    def diagnosis_result(self) -> Any | None:
        return self.section("diagnosis")

    def diagnosis_note(self) -> str | None:
        why = self.unavailable_reason("diagnosis")
        return f"no run diagnosis: {why}" if why else None

    def diagnosis_headlines(self) -> list[tuple[str, str]]:
        """The headline's first lines: the regime sequence with onsets and cost, the checkpoint to ship."""
        if not self.has_diagnosis():
            return []
        d = self.diagnosis_result()
        if d is None:
            return [("Run diagnosis", f"not analysed: {self.unavailable_reason('diagnosis')}")]
        rows = [("Run diagnosis", d.headline())]
        if d.ship_words():
            rows.append(("Checkpoint to ship", d.ship_words() + f" (rule: {d.ship_rule_words()})"))
        if d.budget_words():
            rows.append(("KL budget", d.budget_words()))
        if d.degeneracy_words():
            rows.append(("Degeneracy", d.degeneracy_words()))
        return rows

    # ------------------------------------------------------------------ ceiling
    def ceiling_result(self) -> Any | None:
        return self.section("ceiling")

    def ceiling_x(self) -> str:
        c = self.ceiling_result()
        return c.x_label if c is not None else "compute"

    def ceiling_form(self) -> str:
        c = self.ceiling_result()
        return c.form if c is not None else ""

    def ceiling_metric(self) -> str:
        c = self.ceiling_result()
        return c.metric if c is not None else "verified/reward"

    def ceiling_range(self) -> tuple[float, float] | None:
        """(smallest, largest) x the ceiling was fitted on."""
        c = self.ceiling_result()
        return None if c is None else (float(c.data["x_min"]), float(c.data["x_max"]))

    def first_observed_x(self) -> float | None:
        """The smallest positive x observed (fitted or left out by the early window)."""
        c, rng = self.ceiling_result(), self.ceiling_range()
        if c is None or rng is None:
            return None
        xs = [float(v) for v in c.window.get("excluded_x", []) if float(v) > 0]
        return min(xs + [rng[0]])

    def ceiling_excluded(self, x: np.ndarray) -> np.ndarray:
        """True for the points the early window left out of the fit (x below the first fitted x)."""
        rng = self.ceiling_range()
        if rng is None:
            return np.zeros(np.shape(x), dtype=bool)
        return np.asarray(x, float) < rng[0]

    def backtest_reach(self) -> tuple[float, float, float] | None:
        """(fraction, reach, rmse) of the extrapolation backtest that reached farthest with a finite error.

        reach = largest fitted x / the last x of the backtest's fitting part: how many times beyond its data the
        backtest extrapolated (and was scored).
        """
        c, rng = self.ceiling_result(), self.ceiling_range()
        if c is None or rng is None:
            return None
        best = None
        lo, hi = rng
        for row in c.extra.get("backtest") or []:
            if row.get("rmse") is None:
                continue
            cut = lo + float(row["fraction"]) * (hi - lo)
            if cut <= 0:
                continue
            reach = hi / cut
            if best is None or reach > best[1]:
                best = (float(row["fraction"]), reach, float(row["rmse"]))
        return best

    def ceiling_level(self) -> Level | None:
        c = self.ceiling_result()
        if c is None or not c.identifiable or not np.isfinite(c.estimate):
            return None
        return Level(c.estimate, c.ci_low, c.ci_high, f"ceiling A = {fmt(c.estimate)} {interval(c.ci_low, c.ci_high)}")

    def ceiling_note(self) -> str | None:
        """The figure annotation when the ceiling is not identifiable or not fitted."""
        why = self.unavailable_reason("ceiling")
        if why:
            return f"no ceiling fit: {why}"
        c = self.ceiling_result()
        return "no ceiling fit in fits.json" if c is None else c.note()

    def ceiling_caveat(self) -> str:
        """A short caveat for every prediction when the ceiling is not identifiable."""
        c = self.ceiling_result()
        if c is not None and not c.identifiable:
            return "the ceiling is not identifiable from these data, so predictions near it are unreliable"
        return ""

    def ceiling_headline(self) -> str:
        why = self.unavailable_reason("ceiling")
        if why:
            return f"not fitted: {why}"
        c = self.ceiling_result()
        return "not fitted" if c is None else c.headline()

    def family_ceilings_headline(self) -> str | None:
        """Each verified family's ceiling, when the run rewards several (None otherwise)."""
        fam = self.section("family_ceilings")
        return None if fam is None or not hasattr(fam, "fits") else fam.headline()

    # ------------------------------------------------------------------ entropy law
    def entropy_result(self) -> Any | None:
        return self.section("entropy_law")

    def entropy_metric(self) -> str:
        e = self.entropy_result()
        return e.metric if e is not None else "verified/reward"

    def entropy_level(self) -> Level | None:
        e = self.entropy_result()
        if e is None or not e.identifiable or not np.isfinite(e.estimate):
            return None
        return Level(e.estimate, e.ci_low, e.ci_high, f"R at H = 0: {fmt(e.estimate)} {interval(e.ci_low, e.ci_high)}")

    def entropy_note(self) -> str | None:
        why = self.unavailable_reason("entropy_law")
        if why:
            return f"no entropy-law fit: {why}"
        e = self.entropy_result()
        return None if e is None else e.note()

    def entropy_headline(self) -> str | None:
        e = self.entropy_result()
        return None if e is None else e.headline()

    # ------------------------------------------------------------------ collapse
    def collapse_result(self) -> Any | None:
        c = self.section("collapse")
        return c if c is not None and c.gao_params else None

    def collapse_axes(self, available: set[str] | None = None) -> tuple[str, str]:
        """(x metric, unverified metric) of the collapse analysis; without a fit, the first KL metric present."""
        c = self.section("collapse")
        if c is not None:
            return c.x_label, c.unverified_metric
        for m in ("kl/policy_base_k3", "kl/logged", "kl/policy_base_k1", "kl/policy_base_k3_token"):
            if available is not None and m in available:
                return m, "unverified/score"
        return "kl/policy_base_k3", "unverified/score"

    def collapse_x_words(self) -> str:
        x = self.collapse_axes()[0]
        return kl_label(x).replace(" [nats]", "") if x.startswith("kl/") else x

    @staticmethod
    def collapse_form_label() -> str:
        return "over-optimisation fit u0 + d (alpha - beta ln d), d = sqrt(KL)"

    def threshold_level(self) -> Level | None:
        c = self.section("collapse")
        if c is None or not c.detected or c.estimate is None:
            return None
        return Level(c.estimate, c.ci_low, c.ci_high, f"threshold {fmt(c.estimate)} {interval(c.ci_low, c.ci_high)}")

    def collapse_note(self) -> str | None:
        why = self.unavailable_reason("collapse")
        if why:
            return f"no collapse analysis: {why}"
        c = self.section("collapse")
        return None if c is None else c.note()

    def threshold_headline(self) -> str:
        why = self.unavailable_reason("collapse")
        if why:
            return f"not analysed: {why}"
        c = self.section("collapse")
        return "not analysed" if c is None else c.headline(self.collapse_x_words())

    # ------------------------------------------------------------------ warnings and table
    def _sections(self) -> list[Any]:
        return [s for s in (getattr(self.report, name, None) for name in SECTIONS) if s is not None]

    def warnings(self) -> list[str]:
        """Every caveat of the fits, in plain words, one sentence each (across runs: only when it was fitted)."""
        out: list[str] = []
        for sec in self._sections():
            if isinstance(sec, NotAvailable) and sec.section == "across_runs":
                continue
            out += sec.warnings()
        return out

    def table(self) -> pd.DataFrame:
        """Every fitted number: section, quantity, estimate, 95% interval, method, verdict, diagnostics."""
        rows: list[dict[str, str]] = []
        for sec in self._sections():
            rows += sec.rows()
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)
