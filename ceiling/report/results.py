"""Read fit results for the report: a FitReport, a fits.json dict or a path -> `Fits`, the numbers in words.

The report always works from the JSON form of the fits (what `fits.json` stores), rebuilt into result
objects with `ceiling.fit`'s own loader, so a report built right after fitting and one rebuilt later from
fits.json are identical. This module is the only place that knows the layout of fits.json sections.
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
from ceiling.io import dumps

SECTIONS = ("ceiling", "entropy_law", "collapse", "across_runs")
SECTION_NAMES = {"ceiling": "ceiling", "entropy_law": "entropy law", "collapse": "KL collapse threshold",
                 "across_runs": "across runs"}
TABLE_COLUMNS = ["section", "quantity", "estimate", "95% interval", "method", "verdict", "diagnostics"]


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


def fmt(v: Any, digits: int = 3) -> str:
    """A number for the page (`-` for None/NaN); large or small values in scientific notation."""
    if v is None:
        return "-"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(x):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}" if abs(x) < 10 else f"{x:.{digits + 1}g}"


def interval(lo: Any, hi: Any) -> str:
    return "-" if lo is None or hi is None else f"[{fmt(lo)}, {fmt(hi)}]"


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


def _join(reasons: Any) -> str:
    items = [str(r) for r in (reasons or []) if r]
    return "; ".join(items)


def _first(reasons: Any) -> str:
    items = [str(r) for r in (reasons or []) if r]
    return items[0] if items else "no reason recorded"


class Fits:
    """Fit results as stored in fits.json (`data`) plus the result objects rebuilt from them (`sections`).

    Everything the report says about fits comes from here: levels and notes for figures, headline texts,
    warnings, and the table of fitted numbers.
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

    # ------------------------------------------------------------------ raw access
    def section(self, name: str) -> dict[str, Any] | None:
        """The stored dict of a fitted section, or None when it is missing or could not be fitted."""
        d = self.data.get(name)
        if not isinstance(d, dict) or d.get("kind") in (None, "not_available"):
            return None
        return d

    def unavailable_reason(self, name: str) -> str | None:
        """Why a section was not fitted (None when it was, or when it was not attempted)."""
        d = self.data.get(name)
        if isinstance(d, dict) and d.get("kind") == "not_available":
            return d.get("reason") or _join(d.get("reasons")) or "not fitted"
        return None

    def result(self, name: str) -> Any | None:
        """The result object of a fitted section (with `.predict`), or None."""
        return getattr(self.report, name, None) if self.section(name) is not None else None

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

    # ------------------------------------------------------------------ run diagnosis (reads the result object)
    def has_diagnosis(self) -> bool:
        """Whether fits.json has a diagnosis section at all (files written before it existed have none)."""
        return isinstance(self.data.get("diagnosis"), dict)

    def diagnosis_result(self) -> Any | None:
        return self.report.diagnosis if self.section("diagnosis") is not None else None

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
        return self.result("ceiling")

    def ceiling_x(self) -> str:
        sec = self.section("ceiling")
        return str(sec.get("x", "compute")) if sec else "compute"

    def ceiling_form(self) -> str:
        sec = self.section("ceiling")
        return str(sec.get("form", "")) if sec else ""

    def ceiling_metric(self) -> str:
        sec = self.section("ceiling")
        return str(((sec or {}).get("extra") or {}).get("metric") or "verified/reward")

    def ceiling_range(self) -> tuple[float, float] | None:
        """(smallest, largest) x the ceiling was fitted on."""
        sec = self.section("ceiling")
        if not sec or "data" not in sec:
            return None
        return float(sec["data"]["x_min"]), float(sec["data"]["x_max"])

    def first_observed_x(self) -> float | None:
        """The smallest positive x observed (fitted or left out by the early window)."""
        sec = self.section("ceiling")
        rng = self.ceiling_range()
        if not sec or rng is None:
            return None
        xs = [float(v) for v in (sec.get("window") or {}).get("excluded_x", []) if float(v) > 0]
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
        sec = self.section("ceiling")
        rng = self.ceiling_range()
        if not sec or rng is None:
            return None
        best = None
        lo, hi = rng
        for row in (sec.get("extra") or {}).get("backtest") or []:
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
        sec = self.section("ceiling")
        if not sec or not sec.get("identifiable") or sec.get("estimate") is None:
            return None
        return Level(sec["estimate"], sec.get("ci_low"), sec.get("ci_high"),
                     f"ceiling A = {fmt(sec['estimate'])} {interval(sec.get('ci_low'), sec.get('ci_high'))}")

    def ceiling_note(self) -> str | None:
        """The figure annotation when the ceiling is not identifiable or not fitted."""
        why = self.unavailable_reason("ceiling")
        if why:
            return f"no ceiling fit: {why}"
        sec = self.section("ceiling")
        if sec is None:
            return "no ceiling fit in fits.json"
        if not sec.get("identifiable"):
            return "ceiling not identifiable: " + _first(sec.get("reasons"))
        return None

    def ceiling_caveat(self) -> str:
        """A short caveat for every prediction when the ceiling is not identifiable."""
        sec = self.section("ceiling")
        if sec is not None and not sec.get("identifiable"):
            return "the ceiling is not identifiable from these data, so predictions near it are unreliable"
        return ""

    def ceiling_headline(self) -> str:
        why = self.unavailable_reason("ceiling")
        if why:
            return f"not fitted: {why}"
        sec = self.section("ceiling")
        if sec is None:
            return "not fitted"
        where = f"{sec.get('form')} fit of {self.ceiling_metric()} against {sec.get('x')}"
        if not sec.get("identifiable"):
            more = len(sec.get("reasons") or []) - 1
            return (f"not identifiable: {_first(sec.get('reasons'))}"
                    + (f" (and {more} more reason{'s' if more > 1 else ''}, see the warnings)" if more > 0 else "")
                    + f". The point fit A = {fmt(sec.get('estimate'))} ({where}) is not a forecast.")
        return (f"{fmt(sec['estimate'])}, 95% interval {interval(sec.get('ci_low'), sec.get('ci_high'))} "
                f"({where})")

    # ------------------------------------------------------------------ entropy law
    def entropy_result(self) -> Any | None:
        return self.result("entropy_law")

    def entropy_metric(self) -> str:
        sec = self.section("entropy_law")
        return str(((sec or {}).get("data") or {}).get("metric") or "verified/reward")

    def entropy_level(self) -> Level | None:
        sec = self.section("entropy_law")
        if not sec or not sec.get("identifiable") or sec.get("estimate") is None:
            return None
        return Level(sec["estimate"], sec.get("ci_low"), sec.get("ci_high"),
                     f"R at H = 0: {fmt(sec['estimate'])} {interval(sec.get('ci_low'), sec.get('ci_high'))}")

    def entropy_note(self) -> str | None:
        why = self.unavailable_reason("entropy_law")
        if why:
            return f"no entropy-law fit: {why}"
        sec = self.section("entropy_law")
        if sec is not None and not sec.get("identifiable"):
            return "ceiling at H = 0 not identifiable: " + _first(sec.get("reasons"))
        return None

    def entropy_headline(self) -> str | None:
        sec = self.section("entropy_law")
        if sec is None:
            return None
        if not sec.get("identifiable"):
            return f"not identifiable: {_first(sec.get('reasons'))}"
        return f"{fmt(sec['estimate'])}, 95% interval {interval(sec.get('ci_low'), sec.get('ci_high'))}"

    # ------------------------------------------------------------------ collapse
    def collapse_result(self) -> Any | None:
        sec = self.section("collapse")
        return self.result("collapse") if sec and sec.get("gao_params") else None

    def collapse_axes(self, available: set[str] | None = None) -> tuple[str, str]:
        """(x metric, unverified metric) of the collapse analysis; without a fit, the first KL metric present."""
        sec = self.section("collapse")
        if sec is not None:
            return str(sec.get("x")), str((sec.get("data") or {}).get("unverified_metric") or "unverified/score")
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
        sec = self.section("collapse")
        if not sec or not sec.get("detected") or sec.get("estimate") is None:
            return None
        return Level(sec["estimate"], sec.get("ci_low"), sec.get("ci_high"),
                     f"threshold {fmt(sec['estimate'])} {interval(sec.get('ci_low'), sec.get('ci_high'))}")

    def collapse_note(self) -> str | None:
        why = self.unavailable_reason("collapse")
        if why:
            return f"no collapse analysis: {why}"
        sec = self.section("collapse")
        if sec is not None and not sec.get("detected"):
            return f"no threshold detected (p = {fmt(sec.get('p_value'))})"
        return None

    def threshold_headline(self) -> str:
        why = self.unavailable_reason("collapse")
        if why:
            return f"not analysed: {why}"
        sec = self.section("collapse")
        if sec is None:
            return "not analysed"
        if not sec.get("detected"):
            extra = _join(sec.get("reasons"))
            return f"none detected (segmented test p = {fmt(sec.get('p_value'))})" + (f": {extra}" if extra else "")
        return (f"{fmt(sec['estimate'])} {'nats ' if str(sec.get('x')).startswith('kl/') else ''}of "
                f"{self.collapse_x_words()}, 95% interval {interval(sec.get('ci_low'), sec.get('ci_high'))} "
                f"(p = {fmt(sec.get('p_value'))})")

    # ------------------------------------------------------------------ warnings and table
    def warnings(self) -> list[str]:
        """Every caveat of the fits, in plain words, one sentence each."""
        out = []
        d = self.diagnosis_result()
        if d is not None:
            out += d.warnings()
        for name in SECTIONS:
            label = SECTION_NAMES[name]
            why = self.unavailable_reason(name)
            if why and name != "across_runs":
                out.append(f"{label} not fitted: {why}")
            sec = self.section(name)
            if sec is None:
                continue
            if name == "ceiling" and not sec.get("identifiable"):
                out += [f"ceiling not identifiable: {r}" for r in sec.get("reasons") or []]
            elif name == "entropy_law" and not sec.get("identifiable"):
                out += [f"entropy-law ceiling not identifiable: {r}" for r in sec.get("reasons") or []]
            elif name == "collapse":
                out += [f"collapse analysis: {r}" for r in sec.get("reasons") or []]
            elif name == "across_runs":
                out += [f"across runs: {r}" for r in sec.get("reasons") or []]
            if name == "ceiling":
                out += [f"ceiling fit: {n}" for n in (sec.get("extra") or {}).get("notes") or []
                        if f"ceiling not identifiable: {n}" not in out]
        return out

    def table(self) -> pd.DataFrame:
        """Every fitted number: section, quantity, estimate, 95% interval, method, verdict, diagnostics."""
        rows: list[dict[str, str]] = []
        d = self.diagnosis_result()
        if d is not None:
            rows += [_row("run diagnosis", r["quantity"], r["estimate"], r["low"], r["high"], r["method"],
                          r["verdict"], r["diagnostics"]) for r in d.rows()]
        elif self.unavailable_reason("diagnosis"):
            rows.append(_row("run diagnosis", "-", None, None, None, "-", "not analysed",
                             self.unavailable_reason("diagnosis") or ""))
        for name in SECTIONS:
            sec = self.section(name)
            why = self.unavailable_reason(name)
            if sec is None:
                if why:
                    rows.append(_row(SECTION_NAMES[name], "-", None, None, None, "-", "not fitted", why))
                continue
            rows += {"ceiling": _ceiling_rows, "entropy_law": _entropy_rows, "collapse": _collapse_rows,
                     "across_runs": _across_rows}[name](sec)
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _row(section: str, quantity: str, est: Any, lo: Any, hi: Any, method: str, verdict: str,
         diagnostics: str = "") -> dict[str, str]:
    return {"section": section, "quantity": quantity, "estimate": fmt(est), "95% interval": interval(lo, hi),
            "method": method, "verdict": verdict, "diagnostics": diagnostics}


def _ci(sec: dict[str, Any], key: str) -> tuple[Any, Any]:
    v = (sec.get("ci") or {}).get(key) or [None, None]
    return v[0], v[1]


def _ceiling_rows(sec: dict[str, Any]) -> list[dict[str, str]]:
    """The selected curve's parameters, the forms not selected, and the extrapolation backtests."""
    form, x = sec.get("form"), sec.get("x")
    verdict = "identifiable" if sec.get("identifiable") else "NOT identifiable: " + _join(sec.get("reasons"))
    data, stats = sec.get("data") or {}, sec.get("stats") or {}
    win, boot, extra = sec.get("window") or {}, sec.get("bootstrap") or {}, sec.get("extra") or {}
    n_early = len(win.get("excluded_x") or [])
    diag = (f"{data.get('n')} points fitted, {n_early} early point{'s' if n_early != 1 else ''} left out (the fit "
            f"keeps {win.get('rule')}); "
            f"{x} in [{fmt(data.get('x_min'))}, {fmt(data.get('x_max'))}]; RMSE {fmt(stats.get('rmse'))}, "
            f"AIC {fmt(stats.get('aic'))}, residual lag-1 autocorrelation {fmt(stats.get('lag1_autocorr'))}, "
            f"progress to the ceiling {fmt(stats.get('progress'))}; bootstrap block {boot.get('block')}, "
            f"{boot.get('n_not_converged', 0)} of {boot.get('n_boot')} refits not converged")
    metric = extra.get("metric") or "verified reward"
    rows = [_row("ceiling", f"A: ceiling of {metric} ({form})", sec.get("estimate"), sec.get("ci_low"),
                 sec.get("ci_high"), str(sec.get("method")), verdict, diag)]
    rows += [_row("ceiling", f"{k} ({form})", v, *_ci(sec, k), "same fit", "", "")
             for k, v in (sec.get("params") or {}).items() if k != "A"]
    sel = extra.get("selection") or {}
    for r in sel.get("table") or []:
        if r.get("form") == form:
            continue
        note = f"; {r['note']}" if r.get("note") else ""
        rows.append(_row("ceiling", f"A under the {r.get('form')} form (not selected)", r.get("A"), r.get("ci_low"),
                         r.get("ci_high"), f"same data; {sel.get('criterion', 'form comparison')}",
                         "identifiable" if r.get("identifiable") else "not identifiable",
                         f"leave-future-out RMSE {fmt(r.get('lfo_rmse'))} vs {fmt(_lfo(sel, form))} for {form}; "
                         f"AIC {fmt(r.get('aic'))}{note}"))
    for r in extra.get("backtest") or []:
        note = f"; {r['note']}" if r.get("note") else ""
        rows.append(_row("ceiling", f"backtest: RMSE on the rest after fitting the first {float(r['fraction']):.0%} "
                         f"of {x}", r.get("rmse"), None, None,
                         f"{form} point fit on the early part, scored on later points", "",
                         f"{r.get('n_fit')} points fitted, {r.get('n_test')} scored; A from the early part "
                         f"{fmt(r.get('A'))} vs {fmt(r.get('A_full'))} from all{note}"))
    return rows


def _lfo(sel: dict[str, Any], form: Any) -> Any:
    for r in sel.get("table") or []:
        if r.get("form") == form:
            return r.get("lfo_rmse")
    return None


def _entropy_rows(sec: dict[str, Any]) -> list[dict[str, str]]:
    verdict = "identifiable" if sec.get("identifiable") else "NOT identifiable: " + _join(sec.get("reasons"))
    data, bt = sec.get("data") or {}, sec.get("backtest") or {}
    diag = (f"{data.get('n')} steps, entropy in [{fmt(data.get('h_min'))}, {fmt(data.get('h_max'))}] nats; "
            f"R^2 {fmt(data.get('r2'))}; one-sided p of a > 0: {fmt(data.get('p_slope'))}")
    if bt.get("rmse") is not None:
        diag += (f"; early backtest (first {float(bt['fraction']):.0%} of steps) RMSE {fmt(bt['rmse'])} vs "
                 f"{fmt(bt.get('rmse_constant'))} for a constant")
    p = sec.get("params") or {}
    return [_row("entropy law", "R at H = 0 (b - a): ceiling when entropy is spent", sec.get("estimate"),
                 sec.get("ci_low"), sec.get("ci_high"), str(sec.get("method")), verdict, diag),
            _row("entropy law", "a", p.get("a"), *_ci(sec, "a"), "same fit", "", ""),
            _row("entropy law", "b", p.get("b"), *_ci(sec, "b"), "same fit", "", "")]


def _collapse_rows(sec: dict[str, Any]) -> list[dict[str, str]]:
    x = str(sec.get("x"))
    verdict = (f"detected (p = {fmt(sec.get('p_value'))})" if sec.get("detected")
               else f"none detected (p = {fmt(sec.get('p_value'))})")
    data = sec.get("data") or {}
    rows = [_row("collapse", f"threshold in {x}", sec.get("estimate"), sec.get("ci_low"), sec.get("ci_high"),
                 str(sec.get("method")), verdict,
                 f"{data.get('n')} points, {x} in [{fmt(data.get('x_min'))}, {fmt(data.get('x_max'))}]"
                 + (f"; {_join(sec.get('reasons'))}" if sec.get("reasons") else ""))]
    names = {"gao": "peak of the over-optimisation curve (Gao et al.)", "segmented": "hinge breakpoint",
             "sign": "first KL bin where verified and unverified changes anti-correlate"}
    for key, m in (sec.get("methods") or {}).items():
        est = m.get("estimate") if m.get("estimate") is not None else m.get("breakpoint", m.get("peak_point"))
        diag = _join(m.get("notes"))
        if key == "segmented":
            diag = (f"sup-F {fmt(m.get('sup_f'))}; slope before {fmt(m.get('slope_before'))}, after "
                    f"{fmt(m.get('slope_after'))} {interval(*(m.get('slope_after_ci') or [None, None]))}; AR(1) phi "
                    f"{fmt(m.get('ar1_phi'))}" + (f"; {diag}" if diag else ""))
        rows.append(_row("collapse", f"{key}: {names.get(key, key)}", est, m.get("ci_low"), m.get("ci_high"),
                         str(m.get("test") or m.get("formula") or key),
                         ("detected" if m.get("detected") else "not detected") + f" (p = {fmt(m.get('p_value'))})",
                         diag))
    for k, v in (sec.get("gao_params") or {}).items():
        rows.append(_row("collapse", f"gao {k}", v, None, None, "over-optimisation curve, least squares", "", ""))
    return rows


def _across_rows(sec: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, r in (sec.get("regressions") or {}).items():
        verdict = ("detected" if sec.get("detected") and name == sec.get("primary") else "")
        diag = f"{r.get('k')} runs; between-run sd {fmt(np.sqrt(r['tau2']) if r.get('tau2') is not None else None)}"
        if r.get("loo_rmse") is not None:
            diag += f"; leave-one-run-out RMSE {fmt(r.get('loo_rmse'))}"
        rows.append(_row("across runs", f"slope of the ceiling on {name}", r.get("slope"),
                         *(r.get("slope_ci") or [None, None]), str(sec.get("method")), verdict, diag))
        rows.append(_row("across runs", f"intercept ({name})", r.get("intercept"),
                         *(r.get("intercept_ci") or [None, None]), "same regression", "", ""))
    if sec.get("excluded"):
        rows.append(_row("across runs", "runs left out", None, None, None, "-", "",
                         ", ".join(map(str, sec["excluded"]))))
    return rows
