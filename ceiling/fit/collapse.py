"""The KL collapse threshold: past which KL from the base do verified gains cost unverified reasoning?

Three estimates, reported side by side (`CollapseFit.methods`):

1. `gao`: the over-optimisation form of Gao et al. (2022), R(d) = d (alpha - beta ln d) with d = sqrt(KL),
   fitted to the *change* of the unverified score from the base. The published form has no intercept
   because R is measured relative to the initial policy; we fit u = u0 + d (alpha - beta ln d) with u0 (the
   base's score) estimated alongside, which is the same law for R = u - u0 without trusting one noisy base
   measurement. Its peak is at KL* = exp(2 (alpha / beta - 1)) when beta > 0. The interval is a percentile
   interval from a circular block bootstrap of the residuals (in step order). "Detected" here means the
   peak lies inside the inner 80% of the observed KL values (data on both sides) in the fit and in at least
   1 - alpha of the replicates.
2. `segmented`: a hinge regression u = c0 + c1 K + c2 (K - tau)_+ with tau on a grid between the 10% and
   90% quantiles of K. Whether a breakpoint exists at all is tested by the sup-F statistic
   max_tau (SSR_line - SSR_tau) / (SSR_tau / (n - 4)), calibrated by a parametric bootstrap under the
   no-break null (a straight line) with AR(1) errors (coefficient from the line's residuals with Kendall's
   small-sample bias correction, marginal scale from the hinge fit's residuals): a plain breakpoint fit on a smooth or autocorrelated series finds a "break" every time, and
   this test says how often that happens by chance. The breakpoint and slope intervals come from a
   parametric bootstrap around the hinge fit with the same AR(1) noise. "Detected" needs p < alpha and a post-break slope c1 + c2 whose
   bootstrap interval lies below zero (the unverified score really falls past tau).
3. `sign`: the correlation between step-to-step changes of the verified and unverified scores in KL bins
   (quantile bins, in step order), with Bartlett's variance correction for the autocorrelation of the
   differenced series. A threshold shows as the first bin whose correlation is significantly negative
   (one-sided, Bonferroni over bins) while the first bin's is not.

The section's verdict (`detected`, `p_value`) is the segmented test's, since it is the one calibrated
against the no-threshold null; its `estimate` is the Gao peak when that is detected too (smooth and more
precise), otherwise the hinge breakpoint. When KL is not logged, the same is done against steps or compute
and `x_label` says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from ceiling.errors import CeilingError
from ceiling.fit.common import (
    SCHEMA_VERSION,
    as_float,
    fingerprint,
    fmt,
    fnum,
    interval,
    join_reasons,
    percentile_ci,
    table_row,
)
from ceiling.fit.solve import carlstein_block_length, circular_block_indices, lag1_autocorr


@dataclass
class CollapseFit:
    """The collapse threshold by three methods; verdict from the calibrated segmented test."""

    detected: bool
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    reasons: list[str]
    x_label: str
    level: float
    methods: dict[str, dict[str, Any]]
    data: dict[str, Any]
    gao_params: dict[str, float] = field(default_factory=dict)
    gao_draws: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    residuals: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def identifiable(self) -> bool:
        return self.estimate is not None

    @property
    def params(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"threshold": self.estimate}
        out.update({f"gao_{k}": v for k, v in self.gao_params.items()})
        seg = self.methods.get("segmented", {})
        out.update({"segmented_tau": seg.get("estimate"), "segmented_slope_after": seg.get("slope_after")})
        return out

    @property
    def ci(self) -> dict[str, tuple[float | None, float | None]]:
        return {"threshold": (self.ci_low, self.ci_high),
                **{f"{k}": (m.get("ci_low"), m.get("ci_high")) for k, m in self.methods.items()}}

    def predict(self, kl: Any, band: str | None = None,
                level: float | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted Gao curve u(KL) = u0 + d (alpha - beta ln d) at kl (with a bootstrap band if asked)."""
        if not self.gao_params:
            raise CeilingError("predict: no over-optimisation curve was fitted")
        k = np.atleast_1d(np.asarray(kl, dtype=float))
        if np.any(~np.isfinite(k)) or np.any(k < 0):
            raise CeilingError("predict: KL values must be finite and >= 0")
        design = _gao_design(k)
        g = self.gao_params
        center = design @ np.array([g["u0"], g["alpha"], g["beta"]])
        if band is None:
            return center
        if band not in ("confidence", "prediction"):
            raise CeilingError(f"predict: band must be None, 'confidence' or 'prediction', not {band!r}")
        curves = self.gao_draws @ design.T
        if band == "prediction" and self.residuals.size:
            rng = np.random.default_rng(0)
            curves = curves + rng.choice(self.residuals, size=curves.shape)
        lo, hi = percentile_ci(curves, self.level if level is None else level)
        return center, lo, hi

    def summary(self) -> str:
        lines = [f"collapse threshold of the unverified score against {self.x_label}",
                 f"{'method':<11}{'detected':>9}{'threshold':>12}{'low':>11}{'high':>11}{'p':>9}"]
        for name, m in self.methods.items():
            lines.append(f"{name:<11}{m.get('detected')!s:>9}{fnum(m.get('estimate')):>12}"
                         f"{fnum(m.get('ci_low')):>11}{fnum(m.get('ci_high')):>11}{fnum(m.get('p_value'), 3):>9}")
        verdict = (f"DETECTED at {self.x_label} = {fnum(self.estimate)} [{fnum(self.ci_low)}, {fnum(self.ci_high)}], "
                   f"p = {fnum(self.p_value, 3)}" if self.detected else
                   f"no threshold detected (p = {fnum(self.p_value, 3)})")
        lines.append(verdict)
        lines.append(f"method: {self.method}")
        if self.reasons:
            lines.append("notes: " + "; ".join(self.reasons))
        return "\n".join(lines)

    # ------------------------------------------------------------------ the report's words (section "collapse")
    title = "KL collapse threshold"
    METHOD_NAMES = {"gao": "peak of the over-optimisation curve (Gao et al.)", "segmented": "hinge breakpoint",
                    "sign": "first KL bin where verified and unverified changes anti-correlate"}

    @property
    def unverified_metric(self) -> str:
        return str(self.data.get("unverified_metric") or "unverified/score")

    def headline(self, x_words: str) -> str:
        """`x_words`: how the report names the x axis (e.g. "KL(policy || base), k3 estimator, per sequence")."""
        if not self.detected:
            extra = join_reasons(self.reasons)
            return f"none detected (segmented test p = {fmt(self.p_value)})" + (f": {extra}" if extra else "")
        return (f"{fmt(self.estimate)} {'nats ' if self.x_label.startswith('kl/') else ''}of {x_words}, 95% interval "
                f"{interval(self.ci_low, self.ci_high)} (p = {fmt(self.p_value)})")

    def note(self) -> str | None:
        return None if self.detected else f"no threshold detected (p = {fmt(self.p_value)})"

    def warnings(self) -> list[str]:
        return [f"collapse analysis: {r}" for r in self.reasons]

    def rows(self) -> list[dict[str, str]]:
        x = self.x_label
        verdict = (f"detected (p = {fmt(self.p_value)})" if self.detected else f"none detected (p = {fmt(self.p_value)})")
        data = self.data
        rows = [table_row("collapse", f"threshold in {x}", self.estimate, self.ci_low, self.ci_high, str(self.method),
                          verdict, f"{data.get('n')} points, {x} in [{fmt(data.get('x_min'))}, {fmt(data.get('x_max'))}]"
                          + (f"; {join_reasons(self.reasons)}" if self.reasons else ""))]
        for key, m in self.methods.items():
            est = m.get("estimate") if m.get("estimate") is not None else m.get("breakpoint", m.get("peak_point"))
            diag = join_reasons(m.get("notes"))
            if key == "segmented":
                diag = (f"sup-F {fmt(m.get('sup_f'))}; slope before {fmt(m.get('slope_before'))}, after "
                        f"{fmt(m.get('slope_after'))} {interval(*(m.get('slope_after_ci') or [None, None]))}; AR(1) "
                        f"phi {fmt(m.get('ar1_phi'))}" + (f"; {diag}" if diag else ""))
            rows.append(table_row("collapse", f"{key}: {self.METHOD_NAMES.get(key, key)}", est, m.get("ci_low"),
                                  m.get("ci_high"), str(m.get("test") or m.get("formula") or key),
                                  ("detected" if m.get("detected") else "not detected")
                                  + f" (p = {fmt(m.get('p_value'))})", diag))
        for k, v in self.gao_params.items():
            rows.append(table_row("collapse", f"gao {k}", v, None, None, "over-optimisation curve, least squares", "",
                                  ""))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "collapse", "schema_version": SCHEMA_VERSION, "estimate": as_float(self.estimate),
                "ci_low": as_float(self.ci_low), "ci_high": as_float(self.ci_high),
                "p_value": as_float(self.p_value), "method": self.method, "detected": bool(self.detected),
                "reasons": list(self.reasons), "x": self.x_label, "level": self.level, "methods": self.methods,
                "gao_params": self.gao_params, "gao_draws": np.round(self.gao_draws, 10).tolist(),
                "residuals": np.round(self.residuals, 10).tolist(), "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollapseFit:
        try:
            draws = np.asarray(d.get("gao_draws") or [], dtype=float).reshape(-1, 3)
            return cls(detected=bool(d["detected"]), estimate=d["estimate"], ci_low=d["ci_low"], ci_high=d["ci_high"],
                       p_value=d.get("p_value"), method=d["method"], reasons=list(d["reasons"]), x_label=d["x"],
                       level=float(d["level"]), methods=d["methods"], data=d["data"],
                       gao_params=d.get("gao_params") or {}, gao_draws=draws,
                       residuals=np.asarray(d.get("residuals") or [], dtype=float))
        except (KeyError, TypeError, ValueError) as exc:
            raise CeilingError(f"fits: stored collapse fit is malformed ({exc})") from None


# ------------------------------------------------------------------------------------------- helpers
def _gao_design(kl: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(kl, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    return np.column_stack([np.ones_like(d), d, -dlogd])


def _peak(coef: np.ndarray) -> np.ndarray:
    """KL* = exp(2 (alpha / beta - 1)) per row of (u0, alpha, beta); NaN where beta <= 0 (no peak)."""
    alpha, beta = coef[..., 1], coef[..., 2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.exp(np.clip(2.0 * (alpha / beta - 1.0), -700, 700))
    return np.where(beta > 0, out, np.nan)


def _ar1_noise(n: int, phi: float, sigma: float, size: int, rng: np.random.Generator) -> np.ndarray:
    e = rng.normal(0.0, sigma, size=(size, n))
    out = np.empty_like(e)
    out[:, 0] = e[:, 0] / np.sqrt(max(1.0 - phi**2, 1e-6))
    for t in range(1, n):
        out[:, t] = phi * out[:, t - 1] + e[:, t]
    return out


def _hinge_designs(k: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """(G, n, 3) designs [1, K, (K - tau)+]."""
    ones = np.ones_like(k)
    return np.stack([np.broadcast_to(ones, (taus.size, k.size)), np.broadcast_to(k, (taus.size, k.size)),
                     np.maximum(k[None, :] - taus[:, None], 0.0)], axis=-1)


def _hinge_all(designs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSR (S, G) and coefficients (S, G, 3) of every series in ys (S, n) under every design."""
    q, r = np.linalg.qr(designs)  # (G, n, 3), (G, 3, 3)
    proj = q.transpose(0, 2, 1) @ ys.T  # (G, 3, S)
    ssr = (ys**2).sum(axis=1)[None, :] - (proj**2).sum(axis=1)  # (G, S)
    coef = np.linalg.pinv(r) @ proj  # (G, 3, S); pinv: a hinge at a repeated x makes r singular
    return np.maximum(ssr, 0.0).T, coef.transpose(2, 0, 1)


def _line_ssr(k: np.ndarray, ys: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(k), k])
    coef = np.linalg.pinv(design) @ ys.T
    return ((ys.T - design @ coef) ** 2).sum(axis=0)


# ------------------------------------------------------------------------------------------- methods
def _fit_gao(k: np.ndarray, u: np.ndarray, n_boot: int, level: float, alpha: float,
             rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, float], np.ndarray, np.ndarray]:
    design = _gao_design(k)
    coef = np.linalg.lstsq(design, u, rcond=None)[0]
    resid = u - design @ coef
    n = u.size
    infl = np.sqrt(n / max(n - 3, 1))
    blk = carlstein_block_length(resid)
    idx = circular_block_indices(n, n_boot, blk, rng)
    ystar = (design @ coef)[None, :] + ((resid - resid.mean()) * infl)[idx]
    draws = (np.linalg.pinv(design) @ ystar.T).T  # (B, 3)
    peak, peaks = float(_peak(coef)), _peak(draws)
    kmin, kmax = (float(q) for q in np.quantile(k, [0.1, 0.9]))  # data on both sides of the peak
    interior = np.isfinite(peaks) & (peaks > kmin) & (peaks < kmax)
    share_out = float(1.0 - interior.mean())
    inside = bool(np.isfinite(peak) and kmin < peak < kmax)
    lo, hi = (percentile_ci(peaks[interior], level) if interior.sum() >= 10 else (np.nan, np.nan))
    detected = inside and share_out <= alpha
    notes = []
    if not np.isfinite(peak):
        notes.append("beta <= 0: the fitted curve has no peak (the unverified score does not turn down)")
    elif not inside:
        notes.append(f"the fitted peak ({peak:.4g}) lies outside the inner 80% of the observed range [{kmin:.4g}, {kmax:.4g}]")
    elif not detected:
        notes.append(f"{share_out:.0%} of bootstrap refits have no peak inside the data")
    out = {"detected": detected, "estimate": as_float(peak) if inside else None, "ci_low": as_float(lo),
           "ci_high": as_float(hi), "p_value": share_out, "p_value_meaning": "bootstrap share without an interior peak",
           "peak_point": as_float(peak), "formula": "u = u0 + d * (alpha - beta * ln d), d = sqrt(KL); KL* = exp(2 (alpha/beta - 1))",
           "block": blk, "n_boot": n_boot, "notes": notes}
    params = {"u0": float(coef[0]), "alpha": float(coef[1]), "beta": float(coef[2])}
    return out, params, draws, resid


def _fit_segmented(k: np.ndarray, u: np.ndarray, n_null: int, n_boot: int, level: float, alpha: float,
                   rng: np.random.Generator, grid: int = 40) -> dict[str, Any]:
    n = u.size
    taus = np.unique(np.quantile(k, np.linspace(0.1, 0.9, grid)))
    designs = _hinge_designs(k, taus)
    ssr, coef = _hinge_all(designs, u[None, :])
    j = int(np.argmin(ssr[0]))
    tau, c = float(taus[j]), coef[0, j]
    ssr1 = float(ssr[0, j])
    ssr0 = float(_line_ssr(k, u[None, :])[0])
    stat = (ssr0 - ssr1) / max(ssr1 / (n - 4), 1e-300)
    resid = u - designs[j] @ c
    line = np.polyfit(k, u, 1)
    # AR(1) coefficient of the null: from the straight line's residuals (right under the null, conservative
    # under the alternative), Kendall's bias correction (1 + 3 phi) / n for short series
    phi_raw = lag1_autocorr(u - np.polyval(line, k))
    phi = float(np.clip(phi_raw + (1.0 + 3.0 * phi_raw) / n, 0.0, 0.95))
    sigma = float(np.std(resid, ddof=4) * np.sqrt(1 - phi**2))
    null = np.polyval(line, k)[None, :] + _ar1_noise(n, phi, sigma, n_null, rng)
    ssr_n, _ = _hinge_all(designs, null)
    ssr1_n = ssr_n.min(axis=1)
    stat_n = (_line_ssr(k, null) - ssr1_n) / np.maximum(ssr1_n / (n - 4), 1e-300)
    p = float((1 + np.sum(stat_n >= stat)) / (n_null + 1))
    # intervals: parametric bootstrap around the hinge fit with the same (conservative) AR(1) noise
    ystar = (designs[j] @ c)[None, :] + _ar1_noise(n, phi, sigma, n_boot, rng)
    ssr_b, coef_b = _hinge_all(designs, ystar)
    jb = np.argmin(ssr_b, axis=1)
    tau_b = taus[jb]
    slope_after_b = coef_b[np.arange(n_boot), jb, 1] + coef_b[np.arange(n_boot), jb, 2]
    lo, hi = percentile_ci(tau_b, level)
    s_lo, s_hi = percentile_ci(slope_after_b, level)
    slope_after = float(c[1] + c[2])
    falls = bool(s_hi < 0)
    detected = bool(p < alpha and falls)
    notes = []
    if p >= alpha:
        notes.append(f"no breakpoint beyond what a straight line with AR(1) noise produces (p = {p:.3g})")
    elif not falls:
        notes.append("a break exists but the score does not significantly fall after it")
    return {"detected": detected, "estimate": tau if detected else None, "breakpoint": tau, "ci_low": float(lo),
            "ci_high": float(hi), "p_value": p, "sup_f": float(stat), "slope_before": float(c[1]),
            "slope_after": slope_after, "slope_after_ci": [float(s_lo), float(s_hi)], "ar1_phi": phi,
            "n_null": n_null, "n_boot": n_boot, "notes": notes,
            "test": "sup-F over the breakpoint grid, parametric bootstrap under a straight line + AR(1) noise"}


def _bartlett_corr_test(a: np.ndarray, b: np.ndarray, lags: int = 5) -> tuple[float, float]:
    """Correlation of a and b and its one-sided p-value for r < 0, variance by Bartlett's formula."""
    n = a.size
    if n < 5 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan"), float("nan")
    r = float(np.corrcoef(a, b)[0, 1])

    def acf(x: np.ndarray, k: int) -> float:
        x = x - x.mean()
        return float(np.dot(x[k:], x[:-k]) / np.dot(x, x))

    var = (1.0 + 2.0 * sum(acf(a, k) * acf(b, k) for k in range(1, min(lags, n - 2) + 1))) / n
    z = r / np.sqrt(max(var, 1e-12))
    return r, float(sps.norm.cdf(z))


def _fit_sign(k: np.ndarray, u: np.ndarray, v: np.ndarray | None, n_bins: int, alpha: float) -> dict[str, Any]:
    if v is None:
        return {"detected": False, "estimate": None, "ci_low": None, "ci_high": None, "p_value": None,
                "notes": ["no verified score given: the sign method needs both series"], "bins": []}
    du, dv = np.diff(u), np.diff(v)
    kmid = 0.5 * (k[1:] + k[:-1])
    nb = max(1, min(n_bins, du.size // 8))
    edges = np.quantile(kmid, np.linspace(0, 1, nb + 1))
    which = np.clip(np.searchsorted(edges, kmid, side="right") - 1, 0, nb - 1)
    bins = []
    for b in range(nb):
        m = which == b
        r, p = _bartlett_corr_test(dv[m], du[m])
        bins.append({"kl_low": float(edges[b]), "kl_high": float(edges[b + 1]), "n": int(m.sum()),
                     "corr": as_float(r), "p_negative": as_float(p)})
    thr = alpha / nb
    neg = [i for i, bn in enumerate(bins) if bn["p_negative"] is not None and bn["p_negative"] < thr]
    first_ok = not (bins[0]["p_negative"] is not None and bins[0]["p_negative"] < thr)
    later = [i for i in neg if i > 0]
    detected = bool(first_ok and later)
    out: dict[str, Any] = {"detected": detected, "estimate": None, "ci_low": None, "ci_high": None,
                           "p_value": None, "bins": bins, "notes": [],
                           "test": f"one-sided correlation < 0 per bin, Bartlett variance, Bonferroni over {nb} bins"}
    if detected:
        i = later[0]
        mid = [0.5 * (bn["kl_low"] + bn["kl_high"]) for bn in bins]
        out.update(estimate=bins[i]["kl_low"], ci_low=mid[i - 1], ci_high=mid[i],
                   p_value=min(1.0, bins[i]["p_negative"] * nb))
    else:
        out["notes"].append("no bin after the first shows significantly opposite moves of the two scores"
                            if first_ok else "the two scores already move in opposite directions in the first bin")
        ps = [bn["p_negative"] for bn in bins if bn["p_negative"] is not None]
        out["p_value"] = min(1.0, min(ps) * nb) if ps else None
    return out


def fit_collapse(x: Any, unverified: Any, verified: Any | None = None, x_label: str = "kl/policy_base_k3",
                 level: float = 0.95, alpha: float = 0.05, n_boot: int = 999, n_null: int = 499, n_bins: int = 4,
                 seed: int = 0) -> CollapseFit:
    """Estimate the collapse threshold of `unverified` against `x` (KL from the base, or steps/compute).

    The series are taken in the given (step) order; x need not be monotone. Returns a CollapseFit with the
    three methods side by side (see the module doc) and a verdict from the calibrated segmented test.
    """
    try:
        k = np.asarray(x, dtype=float).ravel()
        u = np.asarray(unverified, dtype=float).ravel()
        v = None if verified is None else np.asarray(verified, dtype=float).ravel()
    except (TypeError, ValueError):
        raise CeilingError("collapse: values must be numbers") from None
    for arr, nm in ((k, x_label), (u, "unverified")) + (((v, "verified"),) if v is not None else ()):
        if arr.size != k.size:
            raise CeilingError(f"field {nm!r}: length {arr.size} differs from {x_label} ({k.size})")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise CeilingError(f"field {nm!r}: {bad.size} NaN/inf value(s), first at index {int(bad[0])}")
    if k.size < 10:
        raise CeilingError(f"field 'unverified': too few points for a collapse analysis ({k.size} < 10)")
    if np.ptp(k) == 0:
        raise CeilingError(f"field {x_label!r}: constant; nothing to find a threshold along")
    if np.ptp(u) == 0:
        raise CeilingError("field 'unverified': constant series; no threshold can be estimated")
    rng = np.random.default_rng(seed)
    gao, gp, gdraws, gres = _fit_gao(k, u, n_boot, level, alpha, rng)
    seg = _fit_segmented(k, u, n_null, n_boot, level, alpha, rng)
    sign = _fit_sign(k, u, v, n_bins, alpha)
    methods = {"gao": gao, "segmented": seg, "sign": sign}
    reasons: list[str] = []
    if np.any(k < 0):
        reasons.append(f"{x_label} has negative values (a k1-style estimate); used as logged, and as 0 in the "
                       "Gao form's sqrt(KL)")
    if not x_label.startswith("kl"):
        reasons.append(f"KL not logged: the threshold is against {x_label}, not KL")
    detected = bool(seg["detected"])
    if detected and gao["detected"]:
        est, lo, hi, which = gao["estimate"], gao["ci_low"], gao["ci_high"], "gao"
    elif detected:
        est, lo, hi, which = seg["estimate"], seg["ci_low"], seg["ci_high"], "segmented"
    else:
        est, lo, hi, which = None, None, None, "segmented"
        reasons.extend(seg["notes"])
    method = (f"verdict: segmented sup-F test (parametric AR(1) bootstrap, {n_null} null draws), alpha={alpha}; "
              f"threshold from the {which} method; {n_boot} bootstrap draws for its interval")
    data = {"n": int(k.size), "x_min": float(k.min()), "x_max": float(k.max()),
            "fingerprint": fingerprint(k, u, *(() if v is None else (v,))), "has_verified": v is not None}
    return CollapseFit(detected=detected, estimate=est, ci_low=lo, ci_high=hi, p_value=seg["p_value"], method=method,
                       reasons=reasons, x_label=x_label, level=level, methods=methods, data=data, gao_params=gp,
                       gao_draws=gdraws[:1000], residuals=gres)
