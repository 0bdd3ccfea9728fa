"""Saturating curves of a metric against compute (or steps): robust fit, block bootstrap, identifiability.

    fit = fit_curve(compute, reward, form="sigmoid")
    fit.params["A"], fit.ci["A"], fit.identifiable, fit.reasons
    center, low, high = fit.predict([1e18, 1e19], band="prediction")

Fitting: a grid over the nonlinear parameters with the linear ones (R0 and A, or A and D) in closed form
(variable projection) gives the best few starts; a damped Gauss-Newton (Levenberg-Marquardt) minimises a
robust loss (soft-L1 by default) from each of them within bounds.

Early window: by default the points with x below 5% of the largest x are left out. The first stretch of
an RL run is dominated by format learning (the reward jumps as the model learns to emit a parsable answer),
which no saturating law describes; ScaleRL (Khatri et al. 2025) likewise drops roughly the first 1.5k
GPU-hours of its runs. 5% of the range drops that stretch, and step 0 (the base), while keeping the rise
that fixes R0 and the midpoint. Points at x <= 0 are always left out of the power law (C^-B is infinite).
The excluded points still bound R0 from above (R0, the level before training, is at most a one-sided 99%
upper bound on the mean of the first three logged values, with the noise sd read from the first differences
of the whole series); without that, a series already flat inside the window could equally be
read as one that has not started rising, with any ceiling.

Intervals (default, `resample="ar1"`): an AR(1) bootstrap of the residuals. The noise's AR(1) coefficient is
the residuals' lag-1 autocorrelation corrected for the bias a p-parameter fit puts on it (`ar1_coefficient`;
0 when not positive, and then this is the plain residual bootstrap); its innovations are resampled and
filtered into replicate series (`ar_resample`). Residuals are inflated by sqrt(n / (n - p)) (and mean-centred
only for the plain squared loss, since a robust fit's residuals are centred at a robust location); every
replicate is refitted (all at once, see `solve.lm_batch`), and expanded percentile intervals (Hesterberg 2015)
are read from the replicate parameters: the percentiles at level 2 Phi(t_dof) - 1 instead of `level`, which
widens the interval by t_dof / z. dof is the effective residual degrees of freedom n (1 - rho) / (1 + rho) - p
(Santer et al. 2000; n - p under white noise), so the widening accounts for a noise level estimated from
fewer independent residuals when the checkpoints are autocorrelated (`effective_dof`). Confidence bands are
such percentiles of the replicate curves; prediction bands add a resampled residual to each.
Why not blocks: checkpoints evaluated on the same prompts with the same sampling seed carry correlated
evaluation errors (on the committed example the error of a 24-prompt evaluation has lag-1 correlation about
0.55 from one checkpoint to the next), and blocks of Carlstein's length keep only part of the long-run
variance of such noise (coverage 0.83 at AR(1) 0.6, n = 80; this bootstrap 0.94). `resample="block"` keeps
the circular block bootstrap (block length by Carlstein's rule, t on n - p dof) for comparison; it covers
0.95 only under independent noise (benchmarks/RESULTS.md, calibration).

Identifiability: the ceiling is reported as not identifiable (with the reasons in words) when
- the fitted curve has covered less than `min_progress` (default 0.6) of its rise from the first fitted
  point to A by the last point (the data stop before or near the midpoint), or for the sigmoid when the
  last point lies before C_mid;
- the interval on A is wider than `max_ci_width` (default 0.10, in the metric's units, i.e. 10 points of
  accuracy for metrics in [0, 1]), or so is the profile-likelihood range of A (the A values whose refit
  stays within the chi-square(1) 95% threshold of the best fit): this catches a bootstrap that, started at
  a fit which mistook the middle of the rise for a plateau, is confidently wrong;
- A sits at its bound in the point fit or in more than 10% of the replicates;
- more than 20% of the bootstrap refits did not converge.
A ceiling at the metric's own bound (1 for a reward in [0, 1]) is identifiable when the fitted curve ends within
max_ci_width / 2 of it and its interval [low, 1], low the lower of the bootstrap's and the profile's, is narrower
than `max_ci_width`: the data then pin it from below and the metric's range from above ("at the metric's
maximum"). A bound that is not the metric's (an unbounded metric's range widened 3x) still counts as pinned.

The plateau (`form="plateau"`, `compare_forms`' fallback when no rising form is identifiable): a run whose reward
rises before its first evaluations and then holds level has no rise left for a curve to fit, and every rising
form then admits any ceiling (a slow enough rise fits a flat series). What the data do say is the level held and
how little it still moves. The plateau is the mean of the points in the last doubling of x (x >= max(x) / 2),
with the same AR(1) bootstrap and t widening as above (the AR(1) coefficient from its own points, or `ar1` when
given: the rising forms' residuals are no better a source when the rise is misfitted, which is when the plateau is
needed); it is identifiable when its interval is narrower
than `max_ci_width` and the gain per doubling of x (the slope of y on log2 x over the same points, with its own
AR(1) interval) is shown to lie within +-`plateau_tol` (default max_ci_width / 2) by an equivalence test: two
one-sided tests at 5%, i.e. its 90% interval inside the band (Schuirmann 1987), and is not significantly
different from 0 (the same interval contains 0: a slow but steady rise is a rise, and its next doubling may add
more). A tail with no variation at all (e.g. a reward of exactly 0) gets no interval and is not identifiable.
Its estimand is the level the run holds, not an asymptote: a further gain of up to `plateau_tol` per doubling of x is not excluded, and the
report says so.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal as sps_signal
from scipy import stats as sps

from ceiling.errors import CeilingError
from ceiling.fit.common import (
    SCHEMA_VERSION,
    as_float,
    check_xy,
    fingerprint,
    first_reason,
    fmt,
    fnum,
    interval,
    join_reasons,
    percentile_ci,
    table_row,
)
from ceiling.fit.forms import RISING_FORMS, Form, get_form, to_theta
from ceiling.fit.solve import (
    LOSSES,
    carlstein_block_length,
    circular_block_indices,
    cost,
    lag1_autocorr,
    lm_batch,
    varpro_grid,
)

DEFAULT_EXCLUDE_FRAC = 0.05
DEFAULT_MAX_CI_WIDTH = 0.10
DEFAULT_MIN_PROGRESS = 0.6
MAX_STORED_DRAWS = 1000


@dataclass
class CurveFit:
    """A fitted saturating curve with bootstrap intervals and an identifiability verdict."""

    form: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    identifiable: bool
    reasons: list[str]
    method: str
    x_label: str
    x_scale: float
    draws: np.ndarray  # bootstrap replicates of the natural parameters, (B, p); empty when n_boot = 0
    residuals: np.ndarray
    loss: str
    f_scale: float
    level: float
    window: dict[str, Any]
    bootstrap: dict[str, Any]
    data: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    reason_codes: list[str] = field(default_factory=list)  # one code per reason (what logic may test)

    # ------------------------------------------------------------------ numbers a reader plans with
    @property
    def estimate(self) -> float:
        """The ceiling A."""
        return self.params["A"]

    @property
    def ci_low(self) -> float | None:
        return self.ci.get("A", (None, None))[0]

    @property
    def ci_high(self) -> float | None:
        return self.ci.get("A", (None, None))[1]

    @property
    def _form(self) -> Form:
        return get_form(self.form)

    def _theta(self, natural: np.ndarray) -> np.ndarray:
        return to_theta(self._form, natural, self.x_scale)

    def predict(self, x: Any, band: str | None = None, level: float | None = None,
                seed: int = 0) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted curve at x; with band="confidence" or "prediction" also its (low, high) band.

        The confidence band covers the curve itself; the prediction band covers a new observation (it adds a
        resampled residual to each bootstrap curve).
        """
        xa = np.atleast_1d(np.asarray(x, dtype=float))
        if not np.all(np.isfinite(xa)):
            raise CeilingError("predict: x must be finite numbers")
        if self._form.needs_positive_x and np.any(xa <= 0):
            raise CeilingError(f"predict: the {self.form} form is defined for x > 0 only")
        u = xa / self.x_scale
        nat = np.array([[self.params[k] for k in self._form.natural_names]])
        center = self._form.f(u, self._theta(nat))[0]
        if band is None:
            return center
        if band not in ("confidence", "prediction"):
            raise CeilingError(f"predict: band must be None, 'confidence' or 'prediction', not {band!r}")
        if self.draws.size == 0:
            raise CeilingError("predict: this fit has no bootstrap draws (fitted with n_boot=0); no band")
        lev = self.level if level is None else level
        if self.bootstrap.get("dof") is not None:  # the small-sample widening the intervals use
            lev = expanded_level(lev, float(self.bootstrap["dof"]))
        curves = self._form.f(u, self._theta(self.draws))
        if band == "prediction":
            rng = np.random.default_rng(seed)
            pool = self.residuals * self.bootstrap.get("inflation", 1.0)
            curves = curves + rng.choice(pool, size=curves.shape, replace=True)
        with warnings.catch_warnings():  # a plateau is undefined (NaN) before its start
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = percentile_ci(curves, lev, axis=0)
        bounds = self.data.get("a_bounds")
        if bounds is not None:  # a bounded metric (a reward in [0, 1]): no band leaves its range
            lo, hi = np.clip(lo, bounds[0], bounds[1]), np.clip(hi, bounds[0], bounds[1])
        return center, lo, hi

    def beyond_data(self, x: Any) -> np.ndarray:
        """True where x lies beyond the last fitted point (an extrapolation)."""
        return np.atleast_1d(np.asarray(x, dtype=float)) > self.data["x_max"]

    # ------------------------------------------------------------------ presentation
    def summary(self) -> str:
        """A readable table of the parameters with their intervals, the verdict and the reasons."""
        pct = round(self.level * 100)
        lines = [f"{self.form} fit of y against {self.x_label}: {self._form.formula}",
                 f"{'param':<8}{'estimate':>12}{f'{pct}% low':>12}{f'{pct}% high':>12}"]
        for k, v in self.params.items():
            lo, hi = self.ci.get(k, (None, None))
            lines.append(f"{k:<8}{fnum(v):>12}{fnum(lo):>12}{fnum(hi):>12}")
        lines.append(f"n={self.data['n']} fitted ({len(self.window['excluded_x'])} excluded), "
                     f"x in [{fnum(self.data['x_min'])}, {fnum(self.data['x_max'])}], rmse={fnum(self.stats.get('rmse'))}, "
                     f"AIC={fnum(self.stats.get('aic'))}")
        lines.append(f"method: {self.method}")
        verdict = "ceiling identifiable" if self.identifiable else "ceiling NOT identifiable"
        lines.append(verdict + (": " + "; ".join(self.reasons) if self.reasons else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------ the report's words (fits.json section "ceiling")
    title = "ceiling"

    @property
    def metric(self) -> str:
        """The verified metric the ceiling was fitted on."""
        return str(self.extra.get("metric") or "verified/reward")

    def headline(self) -> str:
        where = f"{self.form} fit of {self.metric} against {self.x_label}"
        if self.caveat():
            where = (f"{self.metric} against {self.x_label}, no rising curve identifiable; " if self.form == "plateau"
                     else where + "; ") + str(self.caveat())
        if not self.identifiable:
            more = len(self.reasons) - 1
            return (f"not identifiable: {first_reason(self.reasons)}"
                    + (f" (and {more} more reason{'s' if more > 1 else ''}, see the warnings)" if more > 0 else "")
                    + f". The point fit A = {fmt(self.estimate)} ({where}) is not a forecast.")
        return f"{fmt(self.estimate)}, 95% interval {interval(self.ci_low, self.ci_high)} ({where})"

    @property
    def ceiling_kind(self) -> str | None:
        """What an identifiable ceiling's number is when it is not a fitted asymptote inside the metric's range:
        "plateau" (the level held) or "at_maximum" (at the metric's maximum, a one-sided interval); else None."""
        if not self.identifiable:
            return None
        if self.form == "plateau":
            return "plateau"
        return "at_maximum" if self.stats.get("at_bound") == "maximum" else None

    def caveat(self) -> str | None:
        """`ceiling_kind` in words (None when the number is a plain fitted asymptote or not identifiable)."""
        kind = self.ceiling_kind
        if kind == "plateau":
            g = self.stats.get("gain_per_doubling") or [np.nan] * 3
            lv = f"{float(self.stats.get('gain_level') or 0.9):.0%}"
            return (f"plateau: the level held over the last doubling of {self.x_label} (gain {fmt(g[0])} per doubling, "
                    f"{lv} interval {interval(g[1], g[2])}); a further gain of up to "
                    f"{fmt(self.stats.get('plateau_tol'))} per doubling is not excluded")
        if kind == "at_maximum":
            return "at the metric's maximum: the data bound it from below, the metric from above"
        return None

    def note(self) -> str | None:
        """The figure annotation when the ceiling is not identifiable."""
        return None if self.identifiable else "ceiling not identifiable: " + first_reason(self.reasons)

    def warnings(self) -> list[str]:
        out = [f"ceiling not identifiable: {r}" for r in self.reasons] if not self.identifiable else []
        return out + [f"ceiling fit: {n}" for n in self.extra.get("notes") or []
                      if f"ceiling not identifiable: {n}" not in out]

    def rows(self) -> list[dict[str, str]]:
        """The selected curve's parameters, the forms not selected, and the extrapolation backtests."""
        form, x = self.form, self.x_label
        verdict = "identifiable" if self.identifiable else "NOT identifiable: " + join_reasons(self.reasons)
        data, stats, win, boot, extra = self.data, self.stats, self.window, self.bootstrap, self.extra
        n_early = len(win.get("excluded_x") or [])
        diag = (f"{data.get('n')} points fitted, {n_early} early point{'s' if n_early != 1 else ''} left out (the "
                f"fit keeps {win.get('rule')}); "
                f"{x} in [{fmt(data.get('x_min'))}, {fmt(data.get('x_max'))}]; RMSE {fmt(stats.get('rmse'))}, "
                f"AIC {fmt(stats.get('aic'))}, residual lag-1 autocorrelation {fmt(stats.get('lag1_autocorr'))}, "
                f"progress to the ceiling {fmt(stats.get('progress'))}; {_scheme_words(boot)}, "
                f"{boot.get('n_not_converged', 0)} of {boot.get('n_boot')} refits not converged")
        metric = extra.get("metric") or "verified reward"
        rows = [table_row("ceiling", f"A: ceiling of {metric} ({form})", self.estimate, self.ci_low, self.ci_high,
                          str(self.method), verdict, diag)]
        rows += [table_row("ceiling", f"{k} ({form})", v, *self.ci.get(k, (None, None)), "same fit", "", "")
                 for k, v in self.params.items() if k != "A"]
        sel = extra.get("selection") or {}
        lfo = {r.get("form"): r.get("lfo_rmse") for r in sel.get("table") or []}
        for r in sel.get("table") or []:
            if r.get("form") == form:
                continue
            note = f"; {r['note']}" if r.get("note") else ""
            rows.append(table_row("ceiling", f"A under the {r.get('form')} form (not selected)", r.get("A"),
                                  r.get("ci_low"), r.get("ci_high"),
                                  f"same data; {sel.get('criterion', 'form comparison')}",
                                  "identifiable" if r.get("identifiable") else "not identifiable",
                                  f"leave-future-out RMSE {fmt(r.get('lfo_rmse'))} vs {fmt(lfo.get(form))} for "
                                  f"{form}; AIC {fmt(r.get('aic'))}{note}"))
        for r in extra.get("backtest") or []:
            note = f"; {r['note']}" if r.get("note") else ""
            rows.append(table_row("ceiling", f"backtest: RMSE on the rest after fitting the first "
                                  f"{float(r['fraction']):.0%} of {x}", r.get("rmse"), None, None,
                                  f"{form} point fit on the early part, scored on later points", "",
                                  f"{r.get('n_fit')} points fitted, {r.get('n_test')} scored; A from the early part "
                                  f"{fmt(r.get('A'))} vs {fmt(r.get('A_full'))} from all{note}"))
        return rows

    def __repr__(self) -> str:
        lo, hi = self.ci.get("A", (np.nan, np.nan))
        return (f"CurveFit(form={self.form!r}, A={self.estimate:.4g} [{fnum(lo)}, {fnum(hi)}], "
                f"identifiable={self.identifiable})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with provenance; `CurveFit.from_dict` rebuilds the object (bands included)."""
        return {
            "kind": "curve", "schema_version": SCHEMA_VERSION,
            "estimate": as_float(self.estimate), "ci_low": as_float(self.ci_low), "ci_high": as_float(self.ci_high),
            "method": self.method, "identifiable": bool(self.identifiable), "reasons": list(self.reasons),
            "form": self.form, "formula": self._form.formula, "x": self.x_label, "x_scale": self.x_scale,
            "params": {k: as_float(v) for k, v in self.params.items()},
            "ci": {k: [as_float(a), as_float(b)] for k, (a, b) in self.ci.items()},
            "level": self.level, "loss": self.loss, "f_scale": self.f_scale, "window": self.window,
            "bootstrap": {**self.bootstrap, "param_names": list(self._form.natural_names),
                          "draws": np.round(self.draws, 10).tolist()},
            "residuals": np.round(self.residuals, 10).tolist(), "data": self.data, "stats": self.stats,
            **({"extra": self.extra} if self.extra else {}),
            **({"reason_codes": list(self.reason_codes)} if self.reason_codes else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurveFit:
        """Rebuild a fit stored by `to_dict` (no refitting)."""
        try:
            form = get_form(d["form"])
            draws = np.asarray(d["bootstrap"].get("draws") or [], dtype=float)
            if draws.size == 0:
                draws = np.empty((0, len(form.natural_names)))
            return cls(form=d["form"], params={k: float(v) if v is not None else np.nan for k, v in d["params"].items()},
                       ci={k: (v[0], v[1]) for k, v in d["ci"].items()}, identifiable=bool(d["identifiable"]),
                       reasons=list(d["reasons"]), method=d["method"], x_label=d["x"], x_scale=float(d["x_scale"]),
                       draws=draws, residuals=np.asarray(d["residuals"], dtype=float), loss=d["loss"],
                       f_scale=float(d["f_scale"]), level=float(d["level"]), window=d["window"],
                       bootstrap={k: v for k, v in d["bootstrap"].items() if k not in ("draws", "param_names")},
                       data=d["data"], stats=d.get("stats", {}), extra=d.get("extra", {}),
                       reason_codes=list(d.get("reason_codes") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise CeilingError(f"fits: stored curve fit is malformed ({exc.__class__.__name__}: {exc})") from None


# ---------------------------------------------------------------------------------------------- fitting
def _window(x: np.ndarray, form: Form, exclude_frac: float, x_min: float | None,
            x_max: float | None = None) -> np.ndarray:
    """Boolean mask of the points kept for fitting."""
    top = float(x.max()) if x_max is None else float(x_max)
    cut = exclude_frac * top if x_min is None else float(x_min)
    keep = x >= cut if x_min is not None else x > cut if exclude_frac > 0 else np.ones_like(x, dtype=bool)
    if x_max is not None:
        keep &= x <= x_max
    if form.needs_positive_x:
        keep &= x > 0
    if form.name == "sigmoid":
        keep &= x >= 0
    return keep


def _y_bounds(y: np.ndarray, a_bounds: tuple[float, float] | None) -> tuple[float, float]:
    if a_bounds is not None:
        return float(a_bounds[0]), float(a_bounds[1])
    if y.min() >= 0.0 and y.max() <= 1.0:
        return 0.0, 1.0
    span = float(np.ptp(y))
    return float(y.min() - 3 * span), float(y.max() + 3 * span)


def _theta_bounds(form: Form, u: np.ndarray, ylo: float, yhi: float, span: float) -> tuple[np.ndarray, np.ndarray]:
    lo = np.empty(len(form.theta_names))
    hi = np.empty(len(form.theta_names))
    nlo, nhi = form.bounds_nl(u)
    lo[list(form.nonlinear)], hi[list(form.nonlinear)] = nlo, nhi
    for i in form.linear:
        name = form.theta_names[i]
        if name in ("A", "R0"):
            lo[i], hi[i] = ylo, yhi
        else:  # D of the power law
            lo[i], hi[i] = -1e6 * max(span, 1e-12), 1e6 * max(span, 1e-12)
    return lo, hi


def _point_fit(form: Form, u: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, loss: str,
               f_scale: float | None) -> tuple[np.ndarray, float, bool]:
    starts = varpro_grid(form, u, y)
    if f_scale is None:
        r0 = y - form.f(u, starts[:1])[0]
        sigma = 1.4826 * float(np.median(np.abs(r0 - np.median(r0))))
        f_scale = 1.5 * max(sigma, 1e-6 * max(float(np.ptp(y)), 1e-12))
    theta, c, ok = lm_batch(form, u, y, starts, lo, hi, loss=loss, f_scale=f_scale)
    best = int(np.argmin(np.where(np.isfinite(c), c, np.inf)))
    return theta[best], float(f_scale), bool(ok[best])


@dataclass(frozen=True)
class CurveFitter:
    """A saturating-curve estimator in the scikit-learn manner: the settings here, the data in `fit`.

        fitter = CurveFitter(form="sigmoid", n_boot=1000)
        fit = fitter.fit(compute, reward)              # -> CurveFit
        replace(fitter, form="power", n_boot=0)        # a variant (model selection and backtests do this)
    """

    form: str = "sigmoid"
    """"sigmoid" (ScaleRL), "power" (A - D x^-B) or "exponential"."""
    loss: str = "soft_l1"
    """"soft_l1", "huber" or "linear"."""
    f_scale: float | None = None
    """Residual scale where the robust loss bends (default 1.5 x a MAD estimate of the noise)."""
    exclude_frac: float = DEFAULT_EXCLUDE_FRAC
    """Leave out points with x <= exclude_frac * max(x) (the early window, see the module doc)."""
    x_min: float | None = None
    """Instead of exclude_frac: keep exactly the points with x >= x_min."""
    x_max: float | None = None
    """Drop points after x_max (e.g. after a collapse, see `detect_collapse`)."""
    n_boot: int = 1000
    """Bootstrap replicates (0: a point fit only)."""
    block: int | None = None
    """Bootstrap block length (default: Carlstein's rule from the residual autocorrelation)."""
    resample: str = "ar1"
    """"ar1": AR(1) bootstrap of the residuals with a bias-corrected coefficient (`ar1_coefficient`) and t on the
    effective dof (`effective_dof`); calibrated under independent and AR(1) noise (benchmarks/RESULTS.md).
    "block": circular block bootstrap (Carlstein's length, t on n - p dof), which under-covers autocorrelated
    checkpoints (kept for comparison)."""
    level: float = 0.95
    """Interval level."""
    seed: int = 0
    """Resampling seed."""
    a_bounds: tuple[float, float] | None = None
    """Bounds on A and R0 (default [0, 1] for data in [0, 1], else the data range widened 3x)."""
    max_ci_width: float = DEFAULT_MAX_CI_WIDTH
    """Identifiability: the widest interval on A that still pins the ceiling down."""
    min_progress: float = DEFAULT_MIN_PROGRESS
    """Identifiability: the share of the fitted rise the data must cover."""
    x_label: str = "compute"
    """What x is ("compute", "step"), recorded in the result."""
    r0: float | None = None
    """Fix R0 (sigmoid, exponential) at a known starting level, as ScaleRL does, instead of fitting it."""
    ar1: float | None = None
    """Fix the AR(1) coefficient of the noise (default: estimated from the residuals; `resample="ar1"` only)."""
    plateau_tol: float | None = None
    """Plateau form: the largest gain per doubling of x (either sign) that still counts as level
    (default max_ci_width / 2)."""

    def fit(self, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> CurveFit:
        """Fit the curve y(x) (x strictly increasing, finite; y not constant) and bootstrap it."""
        return _fit(self, x, y)


def fit_curve(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, form: str = "sigmoid",
              **settings: Any) -> CurveFit:
    """`CurveFitter(form=form, **settings).fit(x, y)`: a one-call form (settings as CurveFitter's fields)."""
    unknown = set(settings) - {f.name for f in fields(CurveFitter)}
    if unknown:
        raise CeilingError(f"fit_curve: unknown setting(s) {', '.join(sorted(unknown))}")
    return CurveFitter(form=form, **settings).fit(x, y)


def _fit(cfg: CurveFitter, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> CurveFit:
    if cfg.form == "plateau":
        return _fit_plateau(cfg, x, y)
    form, loss, f_scale, exclude_frac, x_min, x_max = (cfg.form, cfg.loss, cfg.f_scale, cfg.exclude_frac,
                                                        cfg.x_min, cfg.x_max)
    n_boot, block, level, seed, a_bounds = cfg.n_boot, cfg.block, cfg.level, cfg.seed, cfg.a_bounds
    max_ci_width, min_progress, x_label, r0 = cfg.max_ci_width, cfg.min_progress, cfg.x_label, cfg.r0
    fm = get_form(form)
    if loss not in LOSSES:
        raise CeilingError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if not 0 < level < 1:
        raise CeilingError(f"level must be in (0, 1), got {level}")
    if cfg.resample not in ("block", "ar1"):
        raise CeilingError(f"resample must be 'block' or 'ar1', not {cfg.resample!r}")
    xa, ya = check_xy(x, y, name_x=x_label, name_y="y", min_points=3)
    keep = _window(xa, fm, exclude_frac, x_min, x_max)
    xf, yf = xa[keep], ya[keep]
    p = len(fm.theta_names)
    if xf.size < p + 3:
        raise CeilingError(f"too few points after the early window for a {form} fit "
                           f"({xf.size} kept of {xa.size}; need at least {p + 3})")
    if np.ptp(yf) == 0:
        raise CeilingError("the series is constant after the early window; there is no curve to fit")
    x_scale = float(xf.max())
    u = xf / x_scale
    ylo, yhi = _y_bounds(ya, a_bounds)
    natural_bounds = a_bounds is not None or bool(ya.min() >= 0.0 and ya.max() <= 1.0)
    lo, hi = _theta_bounds(fm, u, ylo, yhi, float(np.ptp(yf)))
    if "R0" in fm.theta_names and (~keep).any() and xa[0] < xf[0]:
        # R0 is the level before training: it cannot sit above the earliest logged values (those excluded
        # from the window still say where the run started). Without this, a series that is already flat
        # could equally be read as "has not started rising yet" with any ceiling.
        i0 = fm.theta_names.index("R0")
        hi[i0] = min(hi[i0], max(_start_upper(ya), lo[i0]))
    if r0 is not None:
        if "R0" not in fm.theta_names:
            raise CeilingError(f"r0: the {form} form has no R0")
        i0 = fm.theta_names.index("R0")
        lo[i0] = hi[i0] = float(r0)
    theta, fs, converged = _point_fit(fm, u, yf, lo, hi, loss, f_scale)
    yhat = fm.f(u, theta[None, :])[0]
    resid = yf - yhat
    n = xf.size
    inflation = float(np.sqrt(n / max(n - p, 1)))
    nat = fm.natural(theta[None, :], x_scale)[0]
    params = {k: float(v) for k, v in zip(fm.natural_names, nat)}

    draws = np.empty((0, p))
    boot: dict[str, Any] = {"scheme": "none", "n_boot": 0}
    ci: dict[str, tuple[float, float]] = {}
    n_failed = 0
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        # a robust fit's residuals are centred at a robust location, not at their mean: keep them as they are
        centered = ((resid - resid.mean()) if loss == "linear" else resid) * inflation
        blk, rho1 = None, None
        if cfg.resample == "ar1" and block is None:
            rho1 = ar1_coefficient(resid, int(np.sum(hi > lo))) if cfg.ar1 is None else float(cfg.ar1)
            estar = ar_resample(rho1, centered, n_boot, rng, centre=loss == "linear")
        else:
            blk = block if block is not None else carlstein_block_length(resid)
            estar = centered[circular_block_indices(n, n_boot, blk, rng)]
        ystar = yhat[None, :] + estar
        th_b, _, ok_b = lm_batch(fm, u, ystar, np.repeat(theta[None, :], n_boot, axis=0), lo, hi, loss=loss,
                                 f_scale=fs)
        n_failed = int((~ok_b).sum())
        draws = fm.natural(th_b, x_scale)
        # residual degrees of freedom (a pinned parameter is not fitted), fewer when the noise is autocorrelated
        dof = effective_dof(n, 0.0 if rho1 is None else rho1, int(np.sum(hi > lo)))
        lo_ci, hi_ci = percentile_ci(draws, expanded_level(level, dof))
        ci = {k: (float(a), float(b)) for k, a, b in zip(fm.natural_names, lo_ci, hi_ci)}
        scheme = "circular block bootstrap of residuals" if rho1 is None else "AR(1) bootstrap of residuals"
        boot = {"scheme": scheme, "n_boot": n_boot, "block": blk, **({} if rho1 is None else {"ar1": rho1}),
                **({"ar1_source": "given"} if cfg.ar1 is not None and rho1 is not None else {}),
                "seed": seed, "inflation": inflation,
                "interval": "expanded percentile", "dof": dof, "n_not_converged": n_failed}
        if draws.shape[0] > MAX_STORED_DRAWS:
            draws = draws[:MAX_STORED_DRAWS]

    reasons = _identifiability(fm, params, ci, draws, xf, u, theta, yhat, ylo, yhi, n_boot, n_failed,
                               max_ci_width, min_progress, natural_bounds)
    profile = None
    if n_boot > 0:
        profile = _profile_a(fm, u, yf, theta, lo, hi, loss, fs, ylo, yhi, resid, p)
        width = profile[1] - profile[0]
        if width > max_ci_width:
            reasons.append(("wide_profile", f"the profile likelihood admits any ceiling in [{profile[0]:.3g}, "
                                            f"{profile[1]:.3g}] (wider than {max_ci_width:g}): the data do not pin "
                                            "the ceiling down, they may stop before or near the midpoint"))
    side = _bound_side(params["A"], ylo, yhi) if natural_bounds else None
    if side and n_boot > 0 and not any(c == "pinned" for c, _ in reasons):
        # a ceiling at the metric's own bound: the data must get near it, and the interval's far end is the lower
        # of the bootstrap's and the profile's (a bootstrap started at the bound can sit above what the data allow)
        top = side == "maximum"
        last = float(yhat[int(np.argmax(xf))])
        short = (yhi - last) if top else (last - ylo)
        if short > max_ci_width / 2:
            reasons.append(("pinned", f"the ceiling sits at the metric's {'maximum' if top else 'minimum'} "
                                      f"({params['A']:.4g}), but the fitted curve ends at {last:.4g}, more than "
                                      f"{max_ci_width / 2:g} from it: the data do not show that it gets there"))
        elif profile is not None:
            lo_a, hi_a = ci["A"]
            ci["A"] = (min(lo_a, profile[0]), hi_a) if top else (lo_a, max(hi_a, profile[1]))
            if ci["A"][1] - ci["A"][0] > max_ci_width and not any(c == "wide_interval" for c, _ in reasons):
                reasons.append(("wide_interval", f"the interval on the ceiling is {ci['A'][1] - ci['A'][0]:.3g} "
                                                 f"wide (> {max_ci_width:g}) once the profile's end is included"))
    if not converged:
        reasons.append(("not_converged", "the point fit did not converge"))
    ssr = float(np.sum(resid**2))
    stats = {"rmse": float(np.sqrt(ssr / n)), "aic": float(n * np.log(max(ssr, 1e-300) / n) + 2 * p),
             "lag1_autocorr": lag1_autocorr(resid), "converged": converged,
             "progress": _progress(fm, u, theta, params["A"]),
             "profile_A": None if profile is None else [profile[0], profile[1]],
             **({"at_bound": side} if side and not reasons else {})}
    method = (f"{form} fit, {loss} loss (f_scale={fs:.3g}), variable-projection grid + Levenberg-Marquardt"
              + (f"; {_scheme_words(boot)} (B={n_boot}), expanded-percentile {level:.0%} intervals "
                 f"(t with {_dof_words(boot)}); profile-likelihood check on A" if n_boot > 0
                 else "; no bootstrap"))
    window = {"r0_fixed": r0, "rule": _window_rule(cfg),
              "exclude_frac": exclude_frac, "x_min": x_min, "x_max": x_max, "kept": int(n),
              "excluded_x": [float(v) for v in xa[~keep]]}
    data = {"n": int(n), "n_total": int(xa.size), "x_min": float(xf.min()), "x_max": float(xf.max()),
            "y_min": float(yf.min()), "y_max": float(yf.max()), "fingerprint": fingerprint(xa, ya),
            "a_bounds": [ylo, yhi]}
    return CurveFit(form=form, params=params, ci=ci, identifiable=not reasons, reasons=[m for _, m in reasons],
                    method=method, x_label=x_label, x_scale=x_scale, draws=draws, residuals=resid, loss=loss,
                    f_scale=fs, level=level, window=window, bootstrap=boot, data=data, stats=stats,
                    reason_codes=[c for c, _ in reasons])


def _scheme_words(boot: dict[str, Any]) -> str:
    if boot.get("ar1") is None:
        return f"circular block bootstrap of residuals (block={boot.get('block')})"
    source = boot.get("ar1_source") or "bias-corrected from the residuals' lag-1 autocorrelation"
    return f"AR(1) bootstrap of residuals (coefficient {boot.get('ar1', 0.0):.2f}, {source})"


def _dof_words(boot: dict[str, Any]) -> str:
    if boot.get("ar1"):
        return f"{boot['dof']:.3g} effective residual dof, n (1 - rho) / (1 + rho) - p"
    return f"{boot['dof']:.3g} residual dof"


def expanded_level(level: float, dof: float) -> float:
    """The percentile level that widens a bootstrap interval for a small sample (Hesterberg 2015's expanded
    percentile interval): 2 Phi(t_dof) - 1 with t_dof the Student quantile at `level`, so the interval's
    half-width is t_dof / z times the plain percentile's (1.18x at 8 residual degrees of freedom, 1.02x at 45).
    dof below 1 counts as 1."""
    return float(2.0 * sps.norm.cdf(sps.t.ppf(0.5 + level / 2.0, max(dof, 1.0))) - 1.0)


def effective_dof(n: int, rho: float, n_params: int) -> float:
    """Residual degrees of freedom of n points with AR(1) noise of coefficient rho and n_params fitted:
    n (1 - rho) / (1 + rho) - n_params (the effective sample size of Santer et al. 2000, J. Geophys. Res. 105,
    7337), at least 1; n - n_params for rho <= 0. E.g. n = 80, rho = 0.6, 4 parameters: 16."""
    r = max(float(rho), 0.0)
    return float(max(n * (1.0 - r) / (1.0 + r) - n_params, 1.0))


def ar1_coefficient(resid: np.ndarray, n_params: int) -> float:
    """The AR(1) coefficient of the noise behind a fit's residuals, corrected for the bias of the residuals'
    lag-1 autocorrelation; 0 when that is not positive (independent resampling is then the conservative choice).

    A fit with p parameters absorbs part of the noise, most of all its slow swings, so the residuals' lag-1
    autocorrelation r1 runs low: E[r1] ~ rho - ((1 + 3 rho) + p (1 + rho)) / n (Marriott-Pope's (1 + 3 rho) / n
    for an estimated mean, plus (1 + rho) / n for each fitted parameter; measured on sigmoid fits: -0.064 at
    rho = 0, -0.095 at 0.3, -0.124 at 0.6 with n = 80, p = 4, against -0.063, -0.089, -0.124 from the formula).
    Solved for rho and capped at 0.95.
    """
    n = resid.size
    r1 = lag1_autocorr(resid)
    rho = (r1 + (1.0 + n_params) / n) / max(1.0 - (3.0 + n_params) / n, 0.5)
    return float(min(max(rho, 0.0), 0.95))


def ar_resample(rho: float, resid: np.ndarray, n_boot: int, rng: np.random.Generator,
                centre: bool = True) -> np.ndarray:
    """Replicate residual series (n_boot, n) of an AR(1) with coefficient `rho` and the residuals' variance:
    the innovations e_t = r_t - rho r_{t-1} are drawn with replacement (mean-centred when `centre`), scaled so
    that the series' variance equals the residuals' mean square, and filtered through the AR(1) after a
    burn-in that forgets the zero start. With rho = 0 this is the plain independent residual bootstrap."""
    n = resid.size
    if rho <= 0:
        return resid[rng.integers(0, n, size=(n_boot, n))]
    innov = resid[1:] - rho * resid[:-1]
    if centre:
        innov = innov - innov.mean()
    ms = float(np.mean(innov**2))
    if ms > 0:
        innov = innov * np.sqrt(float(np.mean(resid**2)) * (1.0 - rho**2) / ms)
    burn = int(np.ceil(np.log(1e-6) / np.log(rho))) if rho < 0.999 else 10 * n
    e = innov[rng.integers(0, innov.size, size=(n_boot, n + burn))]
    e[:, 0] /= np.sqrt(1.0 - rho**2)  # a stationary start
    return sps_signal.lfilter([1.0], [1.0, -rho], e, axis=1)[:, burn:]


def _start_upper(y: np.ndarray, k: int = 3) -> float:
    """One-sided 99% upper bound on the level of the first k points (noise sd from first differences)."""
    d = np.diff(y)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)
    return float(np.mean(y[:k]) + 2.326 * sigma / np.sqrt(k))


def _profile_a(fm: Form, u: np.ndarray, y: np.ndarray, theta: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               loss: str, fs: float, ylo: float, yhi: float, resid: np.ndarray, p: int,
               points: int = 41) -> tuple[float, float]:
    """Profile-likelihood range of A: the A values whose best fit (other parameters refitted) is within the
    95% chi-square(1) threshold of the best fit. Catches the case where the bootstrap, started at a fit that
    mistook the middle of the rise for a plateau, is confidently wrong."""
    ia = fm.theta_names.index("A")
    grid_a = np.linspace(ylo, yhi, points)
    shifts = [0.0, 1.0, 2.0]  # move the nonlinear parameters outwards: a later midpoint / slower approach
    outward = {"log_c": 1.0, "log_k": -1.0, **({"B": -0.3} if fm.name == "power" else {})}
    starts, los, his = [], [], []
    for a in grid_a:
        for sh in shifts:
            t = theta.copy()
            t[ia] = a
            for j in fm.nonlinear:
                t[j] = np.clip(t[j] + sh * outward.get(fm.theta_names[j], 0.0), lo[j], hi[j])
            l_, h_ = lo.copy(), hi.copy()
            l_[ia] = h_[ia] = a
            starts.append(t), los.append(l_), his.append(h_)
    _, c, _ = lm_batch(fm, u, y, np.array(starts), np.array(los), np.array(his), loss=loss, f_scale=fs,
                        max_iter=40)
    prof = c.reshape(points, len(shifts)).min(axis=1)
    best = min(float(prof.min()), float(cost_of(fm, u, y, theta, loss, fs)))
    sigma2 = float(np.sum(resid**2) / max(resid.size - p, 1))
    ok = grid_a[prof - best <= 0.5 * 3.841 * sigma2]
    a_hat = float(theta[ia])
    return (min(float(ok.min()), a_hat), max(float(ok.max()), a_hat)) if ok.size else (a_hat, a_hat)


def cost_of(fm: Form, u: np.ndarray, y: np.ndarray, theta: np.ndarray, loss: str, fs: float) -> float:
    """Robust cost of one parameter vector."""
    return float(cost(y[None, :] - fm.f(u, theta[None, :]), loss, fs)[0])


def _progress(fm: Form, u: np.ndarray, theta: np.ndarray, a: float) -> float:
    """Share of the rise from the first fitted point to the ceiling covered by the last fitted point."""
    ends = fm.f(np.array([u.min(), u.max()]), theta[None, :])[0]
    total = a - ends[0]
    return float((ends[1] - ends[0]) / total) if abs(total) > 1e-12 else 1.0


def _identifiability(fm: Form, params: dict[str, float], ci: dict[str, tuple[float, float]], draws: np.ndarray,
                     xf: np.ndarray, u: np.ndarray, theta: np.ndarray, yhat: np.ndarray, ylo: float, yhi: float,
                     n_boot: int, n_failed: int, max_ci_width: float, min_progress: float,
                     natural_bounds: bool = False) -> list[tuple[str, str]]:
    """Why the ceiling is not identifiable, as (code, message) pairs; empty when it is.

    `natural_bounds`: the bounds are the metric's own (a reward in [0, 1]); a ceiling at one of them with a
    narrow interval is then pinned by the data from one side and by the metric from the other: identifiable."""
    reasons: list[tuple[str, str]] = []
    a = params["A"]
    prog = _progress(fm, u, theta, a)
    if prog < min_progress:
        reasons.append(("early_stop", f"the data stop at {prog:.1%} of the fitted rise to the ceiling (before or "
                                      f"near the midpoint; need {min_progress:.0%})"))
    if fm.name == "sigmoid" and xf.max() < params["C_mid"]:
        reasons.append(("before_midpoint", f"the last point (x={xf.max():.4g}) lies before the fitted midpoint "
                                           f"C_mid={params['C_mid']:.4g}"))
    start = float(fm.f(np.array([u.min()]), theta[None, :])[0, 0])
    if a < start:
        reasons.append(("declines", f"the fitted curve falls (from {start:.4g} towards {a:.4g}): the metric declines "
                                    "over the window, which is a collapse, not a rise to a ceiling"))
    tol = 1e-6 * max(yhi - ylo, 1e-12)
    narrow = n_boot > 0 and ci["A"][1] - ci["A"][0] <= max_ci_width
    at_metric_bound = natural_bounds and narrow  # the interval, not the bound, then says where the ceiling is
    if _bound_side(a, ylo, yhi) and not at_metric_bound:
        reasons.append(("pinned", f"the ceiling is pinned at its bound ({a:.4g}); the data do not constrain it"))
    if n_boot > 0:
        lo, hi = ci["A"]
        if hi - lo > max_ci_width:
            reasons.append(("wide_interval", f"the interval on the ceiling is {hi - lo:.3g} wide (> {max_ci_width:g})"))
        if not lo <= a <= hi:
            reasons.append(("unstable", f"the bootstrap interval [{lo:.4g}, {hi:.4g}] does not contain the fitted "
                                        f"ceiling {a:.4g} (an unstable fit)"))
        ia = fm.natural_names.index("A")
        at_bound = np.mean((draws[:, ia] >= yhi - tol) | (draws[:, ia] <= ylo + tol))
        if at_bound > 0.10 and not any(code == "pinned" for code, _ in reasons) and not at_metric_bound:
            reasons.append(("pinned_in_bootstrap", f"{at_bound:.0%} of bootstrap refits put the ceiling at its bound"))
        if n_failed > 0.2 * n_boot:
            reasons.append(("not_converged", f"{n_failed} of {n_boot} bootstrap refits did not converge"))
    return reasons


def _bound_side(a: float, ylo: float, yhi: float) -> str | None:
    """"maximum" or "minimum" when A sits at that bound (within 1e-6 of the range), else None."""
    tol = 1e-6 * max(yhi - ylo, 1e-12)
    return "maximum" if a >= yhi - tol else "minimum" if a <= ylo + tol else None


PLATEAU_MIN_POINTS = 6


def _fit_plateau(cfg: CurveFitter, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> CurveFit:
    """The level held over the last doubling of x, with its interval and the plateau test (module doc)."""
    fm = get_form("plateau")
    if not 0 < cfg.level < 1:
        raise CeilingError(f"level must be in (0, 1), got {cfg.level}")
    xa, ya = check_xy(x, y, name_x=cfg.x_label, name_y="y", min_points=3)
    keep = _window(xa, fm, cfg.exclude_frac, cfg.x_min, cfg.x_max)
    if not keep.any() or xa[keep].max() <= 0:
        raise CeilingError(f"a plateau needs points at {cfg.x_label} > 0")
    top = float(xa[keep].max())
    tail = keep & (xa >= 0.5 * top)
    xf, yf = xa[tail], ya[tail]
    n = xf.size
    if n < PLATEAU_MIN_POINTS:
        raise CeilingError(f"too few points in the last doubling of {cfg.x_label} for a plateau "
                           f"({n}; need {PLATEAU_MIN_POINTS})")
    ylo, yhi = _y_bounds(ya, cfg.a_bounds)
    tol_gain = cfg.max_ci_width / 2.0 if cfg.plateau_tol is None else float(cfg.plateau_tol)
    level_hat = float(yf.mean())
    resid = yf - level_hat
    t = np.log2(xf / top)
    tc = t - t.mean()
    gain = float(np.sum(tc * yf) / np.sum(tc**2))
    line_resid = yf - level_hat - gain * tc
    x0 = float(xf.min())
    params = {"A": level_hat, "C_from": x0}
    ci: dict[str, tuple[float, float]] = {}
    draws = np.empty((0, 2))
    boot: dict[str, Any] = {"scheme": "none", "n_boot": 0}
    gain_ci = (float("nan"), float("nan"))
    if cfg.n_boot > 0:
        rng = np.random.default_rng(cfg.seed)
        # the noise's AR(1) from the residuals about the tail's mean, counted as one fitted parameter beyond the
        # mean that `ar1_coefficient`'s Marriott-Pope term already covers: at n = 8 that extra term is what keeps
        # the interval's coverage near 95% (the slope's residuals with the mean alone: 0.95 / 0.905 / 0.83 at
        # AR(1) 0 / 0.3 / 0.6; this: 0.96 / 0.93 / 0.905; benchmarks/RESULTS.md)
        rho = ar1_coefficient(resid, 1) if cfg.ar1 is None else float(cfg.ar1)
        inflation = float(np.sqrt(n / (n - 1)))
        a_star = level_hat + ar_resample(rho, resid * inflation, cfg.n_boot, rng).mean(axis=1)
        dof = effective_dof(n, rho, 1)
        a_lo, a_hi = percentile_ci(a_star, expanded_level(cfg.level, dof))
        ci = {"A": (float(max(a_lo, ylo)), float(min(a_hi, yhi))), "C_from": (x0, x0)}
        g_star = gain + ar_resample(rho, line_resid * float(np.sqrt(n / (n - 2))), cfg.n_boot, rng) @ tc / np.sum(tc**2)
        # an equivalence test (two one-sided tests at 1 - level each) reads the interval at 2 level - 1 (90%)
        g_lo, g_hi = percentile_ci(g_star, expanded_level(2.0 * cfg.level - 1.0, effective_dof(n, rho, 2)))
        gain_ci = (float(g_lo), float(g_hi))
        draws = np.column_stack([np.clip(a_star, ylo, yhi), np.full(cfg.n_boot, x0)])[:MAX_STORED_DRAWS]
        boot = {"scheme": "AR(1) bootstrap of residuals", "n_boot": cfg.n_boot, "block": None, "ar1": rho,
                "ar1_source": "estimated from the tail" if cfg.ar1 is None else "given",
                "seed": cfg.seed, "inflation": inflation, "interval": "expanded percentile", "dof": dof,
                "n_not_converged": 0}
    reasons: list[tuple[str, str]] = []
    what = f"over the last doubling of {cfg.x_label} ({fnum(x0)} to {fnum(top)})"
    tost = f"{2.0 * cfg.level - 1.0:.0%}"
    gain_words = f"{gain:+.3g} per doubling, {tost} interval [{gain_ci[0]:+.3g}, {gain_ci[1]:+.3g}]"
    if cfg.n_boot <= 0:
        reasons.append(("no_bootstrap", "a plateau needs its bootstrap (n_boot > 0) to test that it holds level"))
    else:
        up, down = gain_ci[1] > tol_gain, gain_ci[0] < -tol_gain
        limit = f"(a plateau moves less than {tol_gain:g} per doubling, either way, and not significantly)"
        if up and down:
            reasons.append(("unsettled", f"the metric is too noisy {what} to show that it holds level: gain "
                                         f"{gain_words} {limit}"))
        elif up or gain_ci[0] > 0:  # a significant rise, however slow, is a rise: its next doubling may add more
            reasons.append(("still_rising", f"the metric {'still rises' if gain_ci[0] > 0 else 'may still rise'} "
                                            f"{what}: gain {gain_words} {limit}"))
        elif down or gain_ci[1] < 0:
            reasons.append(("declines", f"the metric {'falls' if gain_ci[1] < 0 else 'may fall'} {what}: gain "
                                        f"{gain_words} {limit}"))
        if np.ptp(yf) == 0:
            reasons.append(("constant", f"the metric is constant {what} ({level_hat:.4g}): its residuals carry no "
                                        "noise, so they cannot give an interval (evaluation error is not in them)"))
        if not ci["A"][0] <= level_hat <= ci["A"][1]:
            reasons.append(("unstable", f"the interval [{ci['A'][0]:.4g}, {ci['A'][1]:.4g}] does not contain the "
                                        f"level {level_hat:.4g} (it lies outside the bounds {ylo:g}-{yhi:g})"))
        if ci["A"][1] - ci["A"][0] > cfg.max_ci_width:
            reasons.append(("wide_interval", f"the interval on the plateau is {ci['A'][1] - ci['A'][0]:.3g} wide "
                                             f"(> {cfg.max_ci_width:g})"))
    ssr = float(np.sum(resid**2))
    stats = {"rmse": float(np.sqrt(ssr / n)), "aic": float(n * np.log(max(ssr, 1e-300) / n) + 2),
             "lag1_autocorr": lag1_autocorr(resid), "converged": True, "progress": None, "profile_A": None,
             "gain_per_doubling": [gain, *gain_ci], "gain_level": 2.0 * cfg.level - 1.0, "plateau_tol": tol_gain}
    method = (f"plateau: mean of the {n} points {what}"
              + (f"; {_scheme_words(boot)} (B={cfg.n_boot}), expanded-percentile {cfg.level:.0%} intervals "
                 f"(t with {_dof_words(boot)}); plateau test (equivalence, two one-sided tests at "
                 f"{1.0 - cfg.level:.0%}): gain {gain_words} of {cfg.x_label}, within +-{tol_gain:g}; a further "
                 f"gain of up to {tol_gain:g} per doubling is not excluded"
                 if cfg.n_boot > 0 else "; no bootstrap"))
    window = {"r0_fixed": None, "rule": f"x >= max(x) / 2 (the last doubling), within {_window_rule(cfg)}",
              "exclude_frac": cfg.exclude_frac, "x_min": cfg.x_min, "x_max": cfg.x_max, "kept": int(n),
              "excluded_x": [float(v) for v in xa[~tail]]}
    data = {"n": int(n), "n_total": int(xa.size), "x_min": x0, "x_max": top, "y_min": float(yf.min()),
            "y_max": float(yf.max()), "fingerprint": fingerprint(xa, ya), "a_bounds": [ylo, yhi]}
    return CurveFit(form="plateau", params=params, ci=ci, identifiable=not reasons, reasons=[m for _, m in reasons],
                    method=method, x_label=cfg.x_label, x_scale=top, draws=draws, residuals=resid, loss="linear",
                    f_scale=0.0, level=cfg.level, window=window, bootstrap=boot, data=data, stats=stats,
                    reason_codes=[c for c, _ in reasons])


def _window_rule(cfg: CurveFitter) -> str:
    return ((f"x >= {cfg.x_min:g}" if cfg.x_min is not None else f"x > {cfg.exclude_frac:g} * max(x)")
            + (f" and x <= {cfg.x_max:g}" if cfg.x_max is not None else ""))


def detect_collapse(x: Any, y: Any, drop: float = 0.5, smooth_frac: float = 0.05) -> float | None:
    """The x after which a rising series collapses, or None.

    The series is smoothed by a centred running mean over `smooth_frac` of the points (at least 5). A
    collapse is the first point where the smoothed value has fallen below its running maximum by more than
    `drop` of the rise from the start to that maximum, and stays there for the next 2 * `smooth_frac` of the
    series. The returned x is the last point before that fall: fitting up to it keeps the saturating part
    and leaves out the collapse.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = ya.size
    w = max(5, round(smooth_frac * n))
    if n < 3 * w:
        return None
    sm = pd.Series(ya).rolling(w, center=True, min_periods=max(2, w // 2)).mean().to_numpy()
    start = sm[0]
    runmax = np.maximum.accumulate(sm)
    rise = runmax - start
    fallen = (runmax - sm) > drop * np.maximum(rise, 1e-12)
    fallen &= rise > 0
    for i in np.flatnonzero(fallen):
        if fallen[i:min(n, i + 2 * w)].all():
            return float(xa[max(i - 1, 0)])
    return None


# --------------------------------------------------------------------------------- selection, backtests
@dataclass
class FormComparison:
    """Forms compared by leave-future-out error (fit on the early part, score on later points), AIC second."""

    table: pd.DataFrame
    best: str
    fits: dict[str, CurveFit]

    def summary(self) -> str:
        return ("forms by leave-future-out RMSE (lower is better), AIC secondary\n"
                + self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}") + f"\nselected: {self.best}")

    def to_dict(self) -> dict[str, Any]:
        rows = self.table.replace({np.nan: None}).to_dict(orient="records")
        return {"best": self.best, "criterion": "leave-future-out RMSE (AIC secondary)", "table": rows}


def _lfo_rmse(x: np.ndarray, y: np.ndarray, fitter: CurveFitter, cut_fracs: Sequence[float]) -> float:
    point = replace(fitter, n_boot=0, exclude_frac=0.0, x_min=None)
    errs = []
    for f in cut_fracs:
        cut = x.min() + f * (x.max() - x.min())
        tr, te = x <= cut, x > cut
        if te.sum() < 2 or tr.sum() < len(get_form(fitter.form).theta_names) + 3:
            continue
        try:
            fit = point.fit(x[tr], y[tr])
        except CeilingError:
            continue
        errs.append(float(np.sqrt(np.mean((fit.predict(x[te]) - y[te]) ** 2))))
    return float(np.mean(errs)) if errs else float("nan")


def compare_forms(x: Any, y: Any, forms: Sequence[str] = RISING_FORMS,
                  cut_fracs: Sequence[float] = (0.5, 0.7), fitter: CurveFitter | None = None,
                  tie_tol: float = 0.05, plateau_fallback: bool = True) -> FormComparison:
    """Fit every form on all the data (with bootstrap) and score each by leave-future-out RMSE.

    `fitter` holds every other setting (default `CurveFitter()`); each form is `replace(fitter, form=...)`.
    Leave-future-out: for each cut fraction f, fit on the points within the first f of the x range (after
    the early-window exclusion) and take the RMSE on the points after it; the mean over cuts is the score.
    The best identifiable form wins (if none is identifiable, the best of all); forms whose score is within
    `tie_tol` (5%) of the best are tied, since such differences are within the noise of the held-out
    points, and a tie goes to the earlier form in `forms` (the ScaleRL sigmoid by default). AIC is
    reported beside the score.

    `plateau_fallback`: when no form is identifiable, the plateau (`CurveFitter(form="plateau")`, the level held
    over the last doubling of x) is fitted too and wins if it is identifiable. A rising form, when identifiable, always wins over it: a plateau's estimand is
    the level held, not an asymptote.
    """
    fitter = fitter or CurveFitter()
    xa, ya = check_xy(x, y, name_x=fitter.x_label)
    fits: dict[str, CurveFit] = {}
    rows = []
    for name in forms:
        variant = replace(fitter, form=name)
        try:
            fit = variant.fit(xa, ya)
        except CeilingError as exc:
            rows.append({"form": name, "lfo_rmse": np.nan, "aic": np.nan, "A": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan, "identifiable": False, "note": str(exc)})
            continue
        fits[name] = fit
        keep = _window(xa, get_form(name), fitter.exclude_frac, None)
        score = _lfo_rmse(xa[keep], ya[keep], variant, cut_fracs)
        rows.append({"form": name, "lfo_rmse": score, "aic": fit.stats["aic"], "A": fit.estimate,
                     "ci_low": fit.ci_low, "ci_high": fit.ci_high, "identifiable": fit.identifiable, "note": ""})
    table = pd.DataFrame(rows)
    if not fits:
        raise CeilingError("no curve form could be fitted: " + "; ".join(str(r["note"]) for r in rows))
    ok = table[table["form"].isin(list(fits))].copy()
    ok["_rank"] = (~ok["identifiable"].astype(bool)).astype(int)
    pool = ok[ok["_rank"] == ok["_rank"].min()]
    score = pool["lfo_rmse"].fillna(np.inf)
    tied = pool[score <= (1.0 + tie_tol) * score.min()] if np.isfinite(score.min()) else pool
    best = str(tied.iloc[0]["form"])  # ties go to the earlier form in `forms` (ScaleRL's sigmoid first)
    if plateau_fallback and "plateau" not in fits and not any(f.identifiable for f in fits.values()):
        variant = replace(fitter, form="plateau")  # its own AR(1) coefficient: a misfit rise's residuals inflate theirs
        try:
            flat = variant.fit(xa, ya)
        except CeilingError as exc:
            row = {"form": "plateau", "lfo_rmse": np.nan, "aic": np.nan, "A": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "identifiable": False, "note": f"fallback: {exc}"}
        else:
            fits["plateau"] = flat
            keep = _window(xa, get_form("plateau"), fitter.exclude_frac, None)
            row = {"form": "plateau", "lfo_rmse": _lfo_rmse(xa[keep], ya[keep], variant, cut_fracs),
                   "aic": flat.stats["aic"], "A": flat.estimate, "ci_low": flat.ci_low, "ci_high": flat.ci_high,
                   "identifiable": flat.identifiable,
                   "note": "fallback (no rising form is identifiable); its AIC is on the last doubling only"}
            if flat.identifiable:
                best = "plateau"
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return FormComparison(table=table, best=best, fits=fits)


def backtest(x: Any, y: Any, fitter: CurveFitter | None = None,
             fractions: Sequence[float] = (0.25, 0.5, 0.75)) -> pd.DataFrame:
    """Extrapolation backtest: fit on the first fraction f of x, report the error on the rest.

    `fitter` gives the form and settings (default `CurveFitter()`); the early fits are point fits.
    Columns: fraction, n_fit, n_test, rmse, mae (on the held-out later points), A (fitted on the early part),
    A_full (fitted on everything), identifiable (the early fit's verdict, point fit only), note.
    """
    fitter = fitter or CurveFitter()
    xa, ya = check_xy(x, y, name_x=fitter.x_label)
    keep = _window(xa, get_form(fitter.form), fitter.exclude_frac, None)
    xk, yk = xa[keep], ya[keep]
    point = replace(fitter, n_boot=0, exclude_frac=0.0, x_min=None)
    try:
        a_full = point.fit(xk, yk).estimate
    except CeilingError:
        a_full = np.nan
    rows = []
    for f in fractions:
        cut = xk.min() + f * (xk.max() - xk.min())
        tr, te = xk <= cut, xk > cut
        row: dict[str, Any] = {"fraction": f, "n_fit": int(tr.sum()), "n_test": int(te.sum()), "rmse": np.nan,
                               "mae": np.nan, "A": np.nan, "A_full": a_full, "identifiable": False, "note": ""}
        try:
            fit = point.fit(xk[tr], yk[tr])
            err = fit.predict(xk[te]) - yk[te]
            row.update(rmse=float(np.sqrt(np.mean(err**2))) if te.any() else np.nan,
                       mae=float(np.mean(np.abs(err))) if te.any() else np.nan, A=fit.estimate,
                       identifiable=fit.identifiable)
        except CeilingError as exc:
            row["note"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows)
