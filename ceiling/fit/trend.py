"""Trend statistics of one noisy series: a calibrated test for a decline, and a continuous piecewise-linear fit.

Both are the building blocks of the run diagnosis (`ceiling.fit.diagnosis`); they know nothing of metrics.

Noise models. A held-out evaluation is sparse and its points are independent, each with a variance known up
to a factor: `rel_var` (p(1 - p) / n for a binomial score on n problems, 1 when unknown) times a scale that
is estimated from the data. A training-side series is dense and autocorrelated: AR(1) with a coefficient
estimated from the residuals of a flexible fit.

`decline_test`: H0 "the series never declines" (it may rise, or rise then hold) against H1 "from some point
on it falls". The statistic is the largest one-sided t of a falling line fitted to the points from tau on,
over tau on a grid (`min_tail` points at least after tau): sup_tau -slope(tau) / se(tau). Its null
distribution is simulated from the least favourable monotone fit of the data: the isotonic (non-decreasing)
regression, plus noise of the estimated model (independent with the estimated scale, or AR(1)). The scale is
re-estimated in every simulated series exactly as on the data (a difference-based estimator), so the test is
studentised. The p-value is therefore the false-alarm rate of the decision "the series falls" on a series
that does not.

`piecewise_fit`: y = a + b x + sum_j c_j (x - tau_j)+ with 0, 1 or 2 breakpoints on a grid, weighted least
squares, the number of breakpoints by BIC. Each segment's slope comes with a standard error (inflated by the
AR(1) long-run factor sqrt((1 + phi) / (1 - phi)) for dense series), each breakpoint with a profile-likelihood
interval: the taus whose (profiled) weighted SSR exceeds the minimum by at most chi2_1(level) times the noise
scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats as sps
from scipy.optimize import isotonic_regression

from ceiling.fit.solve import lag1_autocorr


def diff_scale(y: np.ndarray, sd_rel: np.ndarray) -> np.ndarray:
    """Difference-based (Rice) noise scale of standardised series, row-wise: sqrt(mean(diff(y / sd_rel)^2) / 2).

    It ignores a smooth trend, so it estimates the noise without a model of the mean.
    """
    z = np.atleast_2d(y) / sd_rel
    return np.sqrt(np.mean(np.diff(z, axis=-1) ** 2, axis=-1) / 2.0)


def _tail_slopes(x: np.ndarray, y: np.ndarray, w: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted slope of y on x over points i >= s, and its standard error for unit noise scale, for each s.

    y may be (B, n): one row per series. Reverse cumulative sums make all tails O(n).
    """
    def rc(a: np.ndarray) -> np.ndarray:  # reverse cumulative sum along the last axis
        return np.flip(np.cumsum(np.flip(a, -1), -1), -1)

    sw, swx, swxx = rc(w), rc(w * x), rc(w * x * x)
    swy, swxy = rc(w * y), rc(w * x * y)
    sxx = swxx - swx**2 / sw
    sxy = swxy - swx * swy / sw
    sxx = np.maximum(sxx, 1e-300)
    return (sxy / sxx)[..., starts], (1.0 / np.sqrt(sxx))[..., starts]


def ar1_noise(n: int, phi: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) series with unit marginal variance, shape (size, n)."""
    e = rng.normal(size=(size, n)) * np.sqrt(1.0 - phi**2)
    out = np.empty_like(e)
    out[:, 0] = rng.normal(size=size)
    for t in range(1, n):
        out[:, t] = phi * out[:, t - 1] + e[:, t]
    return out


@dataclass
class DeclineTest:
    """Result of `decline_test`: p-value of "the series falls from some point on", and where it falls most."""

    p_value: float
    statistic: float
    tau: float  # the start of the tail with the steepest standardised fall
    slope: float  # that tail's slope (per unit of x)
    noise: str  # the noise model in words
    phi: float = 0.0
    n_sim: int = 0


def _hinge_operators(x: np.ndarray, w: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each tau: the row vector L with L @ y = the slope after tau of the WLS fit of [1, x, (x - tau)+],
    and that slope's standard error for unit noise scale. Shapes (G, n) and (G,)."""
    designs = np.stack([np.broadcast_to(np.ones_like(x), (taus.size, x.size)),
                        np.broadcast_to(x, (taus.size, x.size)), np.maximum(x[None, :] - taus[:, None], 0.0)], axis=-1)
    inv = np.linalg.pinv(np.einsum("gni,n,gnj->gij", designs, w, designs))  # tau = x[0]: a plain line
    c = np.array([0.0, 1.0, 1.0])
    ci = np.einsum("i,gij->gj", c, inv)  # (G, 3)
    op = np.einsum("gj,gnj->gn", ci, designs) * w[None, :]
    se = np.sqrt(np.maximum(np.einsum("gj,j->g", ci, c), 1e-300))
    return op, se


def decline_test(x: np.ndarray, y: np.ndarray, rel_var: np.ndarray | None = None, ar1: bool = False,
                 n_sim: int = 400, min_tail: int = 4, max_grid: int = 40,
                 rng: np.random.Generator | None = None) -> DeclineTest:
    """Calibrated test of a decline of y along x (see the module doc). x increasing, y finite."""
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = y.size
    rv = np.ones(n) if rel_var is None else np.maximum(np.asarray(rel_var, float), 1e-12)
    sd_rel = np.sqrt(rv)
    w = 1.0 / rv
    last = n - max(min_tail, 3)
    taus = np.unique(x[np.unique(np.linspace(0, max(last, 0), min(max_grid, last + 1)).round().astype(int))])
    op, se = _hinge_operators(x, w, taus)
    iso = isotonic_regression(y, weights=w, increasing=True).x
    phi = 0.0
    if ar1:  # from the residuals of a flexible but smooth fit (isotonic fits absorb runs of the noise)
        pw = piecewise_fit(x, y, rv)
        r = y - pw.predict(x)
        phi = float(np.clip(lag1_autocorr(r), 0.0, 0.95))
        phi = float(np.clip(phi + (1.0 + 3.0 * phi) / n, 0.0, 0.95))  # Kendall's small-sample bias correction

    def stat(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slope = ys @ op.T  # (B, G)
        scale = np.maximum(diff_scale(ys, sd_rel), 1e-12)[:, None]
        t = -slope / (se[None, :] * scale)
        return t.max(axis=1), t.argmax(axis=1), slope

    t_obs, j_obs, slope_obs = stat(y[None, :])
    # the null: the isotonic fit plus noise whose difference-based scale matches the data's
    scale = float(diff_scale(y, sd_rel)[0])
    if ar1:
        scale /= np.sqrt(max(1.0 - phi, 1e-3))  # diff scale of AR(1) = sigma sqrt(1 - phi)
    noise = ar1_noise(n, phi, n_sim, rng) if ar1 else rng.normal(size=(n_sim, n))
    t_null, _, _ = stat(iso[None, :] + noise * sd_rel * max(scale, 1e-12))
    p = float((1 + np.sum(t_null >= t_obs[0])) / (n_sim + 1))
    j = int(j_obs[0])
    return DeclineTest(p_value=p, statistic=float(t_obs[0]), tau=float(taus[j]), slope=float(slope_obs[0, j]),
                       noise=("AR(1), phi %.2f" % phi) if ar1 else "independent, scale from differences",
                       phi=phi, n_sim=n_sim)


@dataclass
class Piecewise:
    """A continuous piecewise-linear fit: breakpoints, per-segment slopes with standard errors."""

    breaks: list[float]
    break_ci: list[tuple[float, float]]
    slopes: list[float]
    slope_se: list[float]
    coef: np.ndarray
    cov: np.ndarray  # covariance of coef (noise scale included)
    scale2: float  # estimated noise scale^2 (relative to rel_var)
    phi: float
    x_range: tuple[float, float]
    bic: dict[int, float] = field(default_factory=dict)

    def design(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        return np.column_stack([np.ones_like(x), x] + [np.maximum(x - t, 0.0) for t in self.breaks])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.design(x) @ self.coef

    def predict_se(self, x: np.ndarray) -> np.ndarray:
        d = self.design(x)
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.cov, d), 0.0))

    def segments(self) -> list[tuple[float, float, float, float]]:
        """(start, end, slope, slope_se) of each segment."""
        edges = [self.x_range[0], *self.breaks, self.x_range[1]]
        return [(edges[i], edges[i + 1], self.slopes[i], self.slope_se[i]) for i in range(len(self.slopes))]


def _wls_ssr(designs: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted SSR of y under each design in `designs` (G, n, p), batched through the normal equations."""
    sw = np.sqrt(w)
    a = designs * sw[None, :, None]
    b = y * sw
    ata = np.einsum("gni,gnj->gij", a, a) + 1e-10 * np.eye(a.shape[-1])
    beta = np.linalg.solve(ata, np.einsum("gni,n->gi", a, b)[..., None])[..., 0]
    r = b[None, :] - np.einsum("gni,gi->gn", a, beta)
    return np.sum(r**2, axis=1)


def piecewise_fit(x: np.ndarray, y: np.ndarray, rel_var: np.ndarray | None = None, ar1: bool = False,
                  max_breaks: int = 2, grid: int = 30, min_seg: int = 3, level: float = 0.95) -> Piecewise:
    """Continuous piecewise-linear fit with 0..max_breaks breakpoints chosen by BIC (see the module doc)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = y.size
    rv = np.ones(n) if rel_var is None else np.maximum(np.asarray(rel_var, float), 1e-12)
    w = 1.0 / rv
    # candidate breakpoints: a grid strictly inside the data, leaving min_seg points on each side
    lo_i, hi_i = min_seg - 1, n - min_seg
    taus = np.unique(np.linspace(x[lo_i], x[hi_i], grid)) if hi_i > lo_i else np.empty(0)
    ones = np.ones_like(x)
    base = np.column_stack([ones, x])
    hinge = np.maximum(x[None, :] - taus[:, None], 0.0) if taus.size else np.empty((0, n))
    results: dict[int, tuple[float, tuple[float, ...], np.ndarray | None]] = {}
    results[0] = (float(_wls_ssr(base[None], y, w)[0]), (), None)
    if taus.size and max_breaks >= 1 and n >= 2 * min_seg:
        d1 = np.concatenate([np.broadcast_to(base, (taus.size, n, 2)), hinge[:, :, None]], axis=2)
        s1 = _wls_ssr(d1, y, w)
        j = int(np.argmin(s1))
        results[1] = (float(s1[j]), (float(taus[j]),), s1)
    if taus.size >= 2 and max_breaks >= 2 and n >= 3 * min_seg:
        pairs = np.array([(i, k) for i, k in combinations(range(taus.size), 2)
                          if np.sum((x > taus[i]) & (x <= taus[k])) >= min_seg - 1])
        if pairs.size:
            d2 = np.concatenate([np.broadcast_to(base, (len(pairs), n, 2)), hinge[pairs[:, 0]][:, :, None],
                                 hinge[pairs[:, 1]][:, :, None]], axis=2)
            s2 = _wls_ssr(d2, y, w)
            j = int(np.argmin(s2))
            prof = np.full((taus.size, taus.size), np.inf)
            prof[pairs[:, 0], pairs[:, 1]] = s2
            results[2] = (float(s2[j]), (float(taus[pairs[j, 0]]), float(taus[pairs[j, 1]])), prof)
    # noise scale from the richest fit; BIC with that scale
    k_max = max(results)
    scale2 = max(results[k_max][0] / max(n - 2 - 2 * k_max, 1), 1e-12)
    bic = {k: r[0] / scale2 + (2 + 2 * k) * np.log(n) for k, r in results.items()}
    k = min(bic, key=bic.get)
    ssr, breaks, prof = results[k]
    design = np.column_stack([ones, x] + [np.maximum(x - t, 0.0) for t in breaks])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    resid = y - design @ coef
    phi = float(np.clip(lag1_autocorr(resid * sw), 0.0, 0.95)) if ar1 else 0.0
    s2 = max(ssr / max(n - design.shape[1] - k, 1), 1e-12)
    infl = (1.0 + phi) / (1.0 - phi) if ar1 else 1.0
    xtwx = design.T @ (design * w[:, None])
    cov = np.linalg.pinv(xtwx) * s2 * infl
    slopes, ses = [], []
    for seg in range(k + 1):
        c = np.zeros(design.shape[1])
        c[1:2 + seg] = 1.0
        slopes.append(float(c @ coef))
        ses.append(float(np.sqrt(max(c @ cov @ c, 0.0))))
    crit = sps.chi2.ppf(level, 1) * s2 * infl
    cis: list[tuple[float, float]] = []
    if k == 1 and prof is not None:
        ok = taus[prof <= ssr + crit]
        cis.append((float(ok.min()), float(ok.max())))
    elif k == 2 and prof is not None:
        for i, axis in enumerate((1, 0)):  # each breakpoint profiled over the other one
            ok = taus[prof.min(axis=axis) <= ssr + crit]
            cis.append((float(ok.min()), float(ok.max())) if ok.size else (breaks[i], breaks[i]))
    return Piecewise(breaks=list(breaks), break_ci=cis, slopes=slopes, slope_se=ses, coef=coef, cov=cov,
                     scale2=float(s2), phi=phi, x_range=(float(x[0]), float(x[-1])), bic=bic)


@dataclass
class FallOnset:
    """Where a series stops being non-decreasing and starts to fall (`decline_onset`)."""

    tau: float
    ci: tuple[float, float]
    from_start: bool  # the interval reaches the first point: no threshold, a loss from the start


def _split_ssr(x: np.ndarray, y: np.ndarray, w: np.ndarray, i: int) -> tuple[float, float]:
    """SSR of 'isotonic on points < i, a line on points >= i', and where the line meets the isotonic level."""
    post_x, post_y, post_w = x[i:], y[i:], w[i:]
    coef = np.polyfit(post_x, post_y, 1, w=np.sqrt(post_w))
    ssr = float(np.sum(post_w * (post_y - np.polyval(coef, post_x)) ** 2))
    if i == 0:
        return ssr, float(x[0])
    iso = isotonic_regression(y[:i], weights=w[:i], increasing=True).x
    ssr += float(np.sum(w[:i] * (y[:i] - iso) ** 2))
    level = iso[-1]
    # the fall begins where the falling line reaches the level held before it, between the two points
    tau = x[i - 1] if coef[0] >= 0 else (level - coef[1]) / coef[0]
    return ssr, float(np.clip(tau, x[i - 1], x[i]))


def _best_split(x: np.ndarray, y: np.ndarray, w: np.ndarray, splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    res = [_split_ssr(x, y, w, int(i)) for i in splits]
    return np.array([r[0] for r in res]), np.array([r[1] for r in res])


def decline_onset(x: np.ndarray, y: np.ndarray, rel_var: np.ndarray | None = None, ar1: bool = False,
                  min_tail: int = 3, level: float = 0.95, n_boot: int = 99, max_splits: int = 60,
                  rng: np.random.Generator | None = None) -> FallOnset:
    """Onset of a fall: the split minimising SSR of 'non-decreasing (isotonic) before, a line after'.

    The 95% interval joins two: the profile-likelihood set (splits whose SSR is within chi2_1(level) noise scales
    of the minimum) and a parametric bootstrap (the fitted isotonic-then-line curve plus noise of the estimated
    scale, independent or AR(1), the onset re-estimated `n_boot` times, percentile interval): the profile alone
    is too narrow for a change point. It spans the gaps between evaluations around the admissible splits.
    """
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = y.size
    rv = np.ones(n) if rel_var is None else np.maximum(np.asarray(rel_var, float), 1e-12)
    w = 1.0 / rv
    splits = np.unique(np.linspace(0, max(n - min_tail, 0), min(max_splits, max(n - min_tail, 0) + 1)).round()
                       .astype(int))
    ssr, taus = _best_split(x, y, w, splits)
    scale = float(diff_scale(y, np.sqrt(rv))[0])
    phi = 0.0
    if ar1:
        pw = piecewise_fit(x, y, rv)
        phi = float(np.clip(lag1_autocorr(y - pw.predict(x)), 0.0, 0.95))
        scale /= np.sqrt(max(1 - phi, 1e-3))  # marginal sd from the difference-based scale
    scale2 = scale**2 * ((1 + phi) / (1 - phi) if ar1 else 1.0)
    j = int(np.argmin(ssr))
    ok = splits[ssr <= ssr[j] + sps.chi2.ppf(level, 1) * max(scale2, 1e-12)]
    lo_i, hi_i = int(ok.min()), int(ok.max())
    if n_boot > 0:
        i = int(splits[j])
        fitted = np.empty(n)
        coef = np.polyfit(x[i:], y[i:], 1, w=np.sqrt(w[i:]))
        fitted[i:] = np.polyval(coef, x[i:])
        if i > 0:
            fitted[:i] = isotonic_regression(y[:i], weights=w[:i], increasing=True).x
        noise = ar1_noise(n, phi, n_boot, rng) if ar1 else rng.normal(size=(n_boot, n))
        ystar = fitted[None, :] + noise * np.sqrt(rv)[None, :] * scale
        picks = np.array([splits[int(np.argmin(_best_split(x, yb, w, splits)[0]))] for yb in ystar])
        a = (1 - level) / 2
        lo_i = min(lo_i, int(np.quantile(picks, a, method="lower")))
        hi_i = max(hi_i, int(np.quantile(picks, 1 - a, method="higher")))
    # a split at i places the onset before the point i, and after i - 2: the isotonic part may pool the first point
    # that already fell (it allows a level stretch). The interval spans those gaps.
    ci = (float(x[max(lo_i - 2, 0)]), float(x[min(hi_i, n - 1)]))
    # the data cannot place the fall after the first point: no threshold, a loss from the start
    return FallOnset(tau=float(taus[j]), ci=ci, from_start=bool(ok.min() == 0))
