"""The entropy law R = -a * exp(H) + b (Cui et al. 2025) and its ceiling b - a at H = 0.

The law is linear in exp(H), so ordinary least squares gives a and b; the ceiling R(H=0) = b - a is a linear
combination of the two. Consecutive checkpoints are not independent, so plain OLS intervals are too narrow
(0.68 coverage at AR(1) 0.6); the covariance is the equal-weighted cosine (EWC) estimator of Lazarus, Lewis,
Stock & Watson (2018, "HAR inference: recommendations for practice"): the long-run variance of x_t u_t is the
mean of B squared cosine transforms Lambda_j = sqrt(2/n) sum_t x_t u_t cos(pi j (t - 1/2) / n), j = 1..B, and
intervals use Student t critical values with B degrees of freedom (fixed-b asymptotics). B = round(0.3 n^(2/3))
(at least 1): LLSW's frontier rule 0.4 n^(2/3) left 0.92 coverage at n = 50 under AR(1) 0.6, 0.3 holds 0.93
there for 3-7% wider intervals. The residuals u_t are those of the fit, which has absorbed the slow part of
the noise along exp(H); the meat is therefore rescaled by S0^(1/2) S^(-1/2) (. ) S^(-1/2) S0^(1/2), with S the
meat's expectation under white noise (computed exactly from the design) and S0 = X'X its target, which makes it
unbiased under white noise (as n / (n - k) does for OLS; without it white noise covered 0.92 at n = 30).
Newey-West with floor(4 (n / 100)^(2/9)) lags and normal-theory t(n - 2) critical values, used before, covered
0.86-0.92 under AR(1) 0.3-0.6 (benchmarks/RESULTS.md). `maxlags` given: Newey-West with that many lags instead.

The ceiling is flagged as not identifiable when the slope is not significantly positive (no entropy-reward
trade-off in the data: extrapolating to H = 0 is then meaningless), when the extrapolation from the lowest
observed entropy to 0 is longer than the observed entropy range, or when its interval is wider than
`max_ci_width`, or when the law explains less than 30% of the variance (R^2 < 0.3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import statsmodels.api as sm
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
    table_row,
)


@dataclass
class EntropyLawFit:
    """R = -a exp(H) + b with HAC (EWC) intervals; `estimate` is the ceiling b - a (R at H = 0)."""

    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    cov: np.ndarray  # HAC (EWC) covariance of (b, c) with c = -a
    identifiable: bool
    reasons: list[str]
    method: str
    level: float
    resid_sd: float
    dof: int  # degrees of freedom of the t critical values (EWC's B)
    data: dict[str, Any]
    backtest: dict[str, Any] = field(default_factory=dict)

    @property
    def estimate(self) -> float:
        return self.params.get("ceiling", float("nan"))

    @property
    def ci_low(self) -> float:
        return self.ci["ceiling"][0]

    @property
    def ci_high(self) -> float:
        return self.ci["ceiling"][1]

    def predict(self, h: Any, band: str | None = None,
                level: float | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted score at entropy h; with band="confidence"/"prediction" also (low, high)."""
        ha = np.atleast_1d(np.asarray(h, dtype=float))
        design = np.column_stack([np.ones_like(ha), np.exp(ha)])
        beta = np.array([self.params["b"], -self.params["a"]])
        center = design @ beta
        if band is None:
            return center
        if band not in ("confidence", "prediction"):
            raise CeilingError(f"predict: band must be None, 'confidence' or 'prediction', not {band!r}")
        var = np.einsum("ij,jk,ik->i", design, self.cov, design)
        if band == "prediction":
            var = var + self.resid_sd**2
        t = sps.t.ppf(0.5 + (self.level if level is None else level) / 2, max(self.dof, 1))
        half = t * np.sqrt(var)
        return center, center - half, center + half

    def summary(self) -> str:
        pct = round(self.level * 100)
        lines = ["entropy law R = -a * exp(H) + b (Cui et al. 2025); ceiling = b - a at H = 0",
                 f"{'param':<9}{'estimate':>12}{f'{pct}% low':>12}{f'{pct}% high':>12}"]
        for k, v in self.params.items():
            lo, hi = self.ci.get(k, (None, None))
            lines.append(f"{k:<9}{fnum(v):>12}{fnum(lo):>12}{fnum(hi):>12}")
        if self.backtest:
            lines.append(f"early-prediction backtest: fit on first {self.backtest['fraction']:.0%} of steps, "
                         f"RMSE on the rest = {fnum(self.backtest.get('rmse'))}")
        lines.append(f"method: {self.method}")
        lines.append(("ceiling identifiable" if self.identifiable else "ceiling NOT identifiable")
                     + (": " + "; ".join(self.reasons) if self.reasons else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------ the report's words (section "entropy_law")
    title = "entropy law"

    @property
    def metric(self) -> str:
        return str(self.data.get("metric") or "verified/reward")

    def headline(self) -> str:
        if not self.identifiable:
            return f"not identifiable: {first_reason(self.reasons)}"
        return f"{fmt(self.estimate)}, 95% interval {interval(self.ci_low, self.ci_high)}"

    def note(self) -> str | None:
        return None if self.identifiable else "ceiling at H = 0 not identifiable: " + first_reason(self.reasons)

    def warnings(self) -> list[str]:
        return [] if self.identifiable else [f"entropy-law ceiling not identifiable: {r}" for r in self.reasons]

    def rows(self) -> list[dict[str, str]]:
        verdict = "identifiable" if self.identifiable else "NOT identifiable: " + join_reasons(self.reasons)
        data, bt = self.data, self.backtest
        diag = (f"{data.get('n')} steps, entropy in [{fmt(data.get('h_min'))}, {fmt(data.get('h_max'))}] nats; "
                f"R^2 {fmt(data.get('r2'))}; one-sided p of a > 0: {fmt(data.get('p_slope'))}")
        if bt.get("rmse") is not None:
            diag += (f"; early backtest (first {float(bt['fraction']):.0%} of steps) RMSE {fmt(bt['rmse'])} vs "
                     f"{fmt(bt.get('rmse_constant'))} for a constant")
        p = self.params
        return [table_row("entropy law", "R at H = 0 (b - a): ceiling when entropy is spent", self.estimate,
                          self.ci_low, self.ci_high, str(self.method), verdict, diag),
                table_row("entropy law", "a", p.get("a"), *self.ci.get("a", (None, None)), "same fit", "", ""),
                table_row("entropy law", "b", p.get("b"), *self.ci.get("b", (None, None)), "same fit", "", "")]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "entropy_law", "schema_version": SCHEMA_VERSION, "estimate": as_float(self.estimate),
                "ci_low": as_float(self.ci_low), "ci_high": as_float(self.ci_high), "method": self.method,
                "identifiable": bool(self.identifiable), "reasons": list(self.reasons),
                "formula": "R = -a * exp(H) + b", "params": {k: as_float(v) for k, v in self.params.items()},
                "ci": {k: [as_float(a), as_float(b)] for k, (a, b) in self.ci.items()},
                "cov_b_c": self.cov.tolist(), "level": self.level, "resid_sd": self.resid_sd, "dof": self.dof,
                "data": self.data, "backtest": self.backtest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntropyLawFit:
        try:
            return cls(params={k: float(v) for k, v in d["params"].items() if v is not None},
                       ci={k: (v[0], v[1]) for k, v in d["ci"].items()}, cov=np.asarray(d["cov_b_c"], dtype=float),
                       identifiable=bool(d["identifiable"]), reasons=list(d["reasons"]), method=d["method"],
                       level=float(d["level"]), resid_sd=float(d["resid_sd"]), dof=int(d["dof"]), data=d["data"],
                       backtest=d.get("backtest") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise CeilingError(f"fits: stored entropy-law fit is malformed ({exc})") from None


def ewc_b(n: int) -> int:
    """Number of cosine terms (and the t degrees of freedom) of the EWC covariance: round(0.3 n^(2/3)), >= 1."""
    return max(1, int(round(0.3 * n ** (2.0 / 3.0))))


def _msqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def ewc_covariance(x: np.ndarray, u: np.ndarray, b: int) -> np.ndarray:
    """EWC covariance of OLS coefficients (design x, residuals u, b cosine terms), corrected to be unbiased
    under white noise: bread (S0^(1/2) S^(-1/2) meat S^(-1/2) S0^(1/2)) bread, meat = (n / b) sum_j L_j L_j',
    L_j = sum_t c_jt x_t u_t, c_jt = sqrt(2 / n) cos(pi j (t + 1/2) / n) (t from 0), S = (n / b) sum_j X' C_j M
    C_j X (the meat's expectation over sigma^2 under white noise; M the residual maker), S0 = X'X."""
    n = x.shape[0]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * np.outer(np.arange(1, b + 1), np.arange(n) + 0.5) / n)
    bread = np.linalg.inv(x.T @ x)
    lam = c @ (x * u[:, None])
    meat = (n / b) * lam.T @ lam
    cx = c[:, :, None] * x[None, :, :]  # (b, n, k): C_j X
    proj = np.einsum("jnk,nm->jkm", cx, x) @ bread  # X' C_j X (X'X)^-1
    s = (n / b) * (np.einsum("jnk,jnl->kl", cx, cx) - np.einsum("jkm,jlm->kl", proj, np.einsum("jnk,nm->jkm", cx, x)))
    root = _msqrt(x.T @ x) @ np.linalg.inv(_msqrt(s))
    return bread @ (root @ meat @ root.T) @ bread


def _hac_fit(h: np.ndarray, r: np.ndarray, maxlags: int | None) -> tuple[Any, np.ndarray, int, str]:
    """OLS of r on [1, exp(H)]; (result, covariance, t degrees of freedom, words for the method)."""
    design = sm.add_constant(np.exp(h), has_constant="add")
    if maxlags is not None:
        lags = int(maxlags)
        res = sm.OLS(r, design).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True})
        return res, np.asarray(res.cov_params(), dtype=float), int(h.size - 2), \
            f"Newey-West (HAC, Bartlett, {lags} lags) covariance; t({h.size - 2}) intervals"
    res = sm.OLS(r, design).fit()
    b = ewc_b(h.size)
    cov = ewc_covariance(design, np.asarray(res.resid, dtype=float), b)
    return res, cov, b, (f"equal-weighted cosine HAC covariance (Lazarus-Lewis-Stock-Watson 2018, B = {b}, "
                         f"corrected to be unbiased under white noise); t({b}) intervals")


def fit_entropy_law(entropy: Any, score: Any, steps: Any | None = None, level: float = 0.95,
                    maxlags: int | None = None, backtest_fraction: float = 0.15,
                    max_ci_width: float = 0.10, y_bounds: tuple[float, float] | None = None) -> EntropyLawFit:
    """Fit R = -a exp(H) + b to (entropy, score) pairs in step order, with EWC HAC intervals (module doc).

    `steps` (optional, same length) orders the points and defines the early-prediction backtest: fit on the
    first `backtest_fraction` of steps (default 15%, as Cui et al.), RMSE on the rest. `y_bounds`: the score's
    range (e.g. (0, 1)); a ceiling outside it is not identifiable.
    """
    h, r = check_xy(entropy, score, name_x="policy/entropy", name_y="score", increasing=False, min_points=5)
    if steps is not None:
        s = np.asarray(steps, dtype=float).ravel()
        if s.size != h.size or not np.all(np.isfinite(s)):
            raise CeilingError("field 'step': must be finite and as long as the entropy series")
        order = np.argsort(s, kind="stable")
        h, r, s = h[order], r[order], s[order]
    else:
        s = np.arange(h.size, dtype=float)
    if np.ptp(h) == 0:
        raise CeilingError("field 'policy/entropy': constant; the entropy law needs entropy to vary")
    if h.max() > 50:  # exp(H) overflows (or dwarfs everything) long before: not a per-token entropy in nats
        raise CeilingError(f"field 'policy/entropy': values up to {h.max():.4g}; the entropy law needs the mean "
                           "per-token entropy in nats (a vocabulary's entropy is at most ln(V), about 12)")
    res, cov, dof, cov_words = _hac_fit(h, r, maxlags)
    b, c = (float(v) for v in res.params)
    t = sps.t.ppf(0.5 + level / 2, dof)
    se_b, se_c = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    ceil_ = b + c
    se_ceil = float(np.sqrt(cov[0, 0] + cov[1, 1] + 2 * cov[0, 1]))
    params = {"a": -c, "b": b, "ceiling": ceil_}
    ci = {"a": (-c - t * se_c, -c + t * se_c), "b": (b - t * se_b, b + t * se_b),
          "ceiling": (ceil_ - t * se_ceil, ceil_ + t * se_ceil)}
    p_slope = float(sps.t.sf(-c / se_c, dof)) if se_c > 0 else (0.0 if c < 0 else 1.0)  # H1: a > 0
    reasons = []
    if p_slope > 1 - level:
        reasons.append(f"no significant entropy-reward trade-off (a = {-c:.3g}, one-sided p = {p_slope:.3g}); "
                       "the extrapolation to H = 0 is not supported")
    if h.min() > np.ptp(h):
        reasons.append(f"H = 0 lies {h.min():.3g} nats below the lowest observed entropy, more than the observed "
                       f"range ({np.ptp(h):.3g})")
    if ci["ceiling"][1] - ci["ceiling"][0] > max_ci_width:
        reasons.append(f"the interval on the ceiling is {ci['ceiling'][1] - ci['ceiling'][0]:.3g} wide "
                       f"(> {max_ci_width:g})")
    if res.rsquared < 0.3:
        reasons.append(f"the law fits poorly (R^2 = {res.rsquared:.2f} < 0.3)")
    if not all(np.isfinite(v) for pair in ci.values() for v in pair):
        reasons.append("the intervals are not finite (the entropies barely vary: the law is not estimable)")
    if y_bounds is not None and not y_bounds[0] <= ceil_ <= y_bounds[1]:
        reasons.append(f"the law's value at H = 0 ({ceil_:.4g}) lies outside the score's range [{y_bounds[0]:g}, "
                       f"{y_bounds[1]:g}]: the extrapolation leaves what the score can be")
    bt = _early_backtest(h, r, s, backtest_fraction)
    method = f"OLS of R on exp(H); {cov_words} at {level:.0%}; ceiling = b - a"
    data = {"n": int(h.size), "h_min": float(h.min()), "h_max": float(h.max()), "step_min": float(s.min()),
            "step_max": float(s.max()), "fingerprint": fingerprint(s, h, r), "p_slope": p_slope,
            "r2": float(res.rsquared)}
    return EntropyLawFit(params=params, ci=ci, cov=cov, identifiable=not reasons, reasons=reasons, method=method,
                         level=level, resid_sd=float(np.sqrt(res.scale)), dof=dof, data=data, backtest=bt)


def _early_backtest(h: np.ndarray, r: np.ndarray, s: np.ndarray, fraction: float) -> dict[str, Any]:
    cut = s.min() + fraction * (s.max() - s.min())
    tr, te = s <= cut, s > cut
    out: dict[str, Any] = {"fraction": fraction, "n_fit": int(tr.sum()), "n_test": int(te.sum()), "rmse": None}
    if tr.sum() < 4 or te.sum() < 1 or np.ptp(h[tr]) == 0:
        out["note"] = "too few early points to backtest"
        return out
    design = np.column_stack([np.ones(tr.sum()), np.exp(h[tr])])
    beta = np.linalg.lstsq(design, r[tr], rcond=None)[0]
    pred = beta[0] + beta[1] * np.exp(h[te])
    out["rmse"] = float(np.sqrt(np.mean((pred - r[te]) ** 2)))
    out["rmse_constant"] = float(np.sqrt(np.mean((r[tr].mean() - r[te]) ** 2)))  # naive baseline
    out["ceiling_early"] = float(beta[0] + beta[1])
    return out
