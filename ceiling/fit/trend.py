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

`joint_fall_onset` / `decline_onset`: where one or more series start to fall, located between evaluation points:
non-decreasing before tau (concave for sparse evaluations: a rise with diminishing returns, flat included;
isotonic for dense training series), then a continuous straight fall from the level held to a free end tau2,
then flat (abrupt drops and gradual falls are one family; a fall that stops before the last point costs 2 noise
units, one parameter more), the series' noise-scaled SSRs summed so that series that fall together share one
onset. `saturation_onset`: the knee of a saturating rise (a plateau's onset),
a + b (1 - exp(-(min(x, tau) - x0) / (c (tau - x0)))) with c from a grid, shared by the series. Dense series are
averaged into at most 50 bins first. Both give a 95% interval joining the profile set to a parametric
bootstrap (the fitted curves plus noise of the estimated scale, AR(1) for dense series), out to the evaluation
points around it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats as sps
from scipy.optimize import isotonic_regression, nnls

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
    """Where one or more series stop being non-decreasing and start to fall (`decline_onset`, `joint_fall_onset`)."""

    tau: float  # the onset, on the x axis, located between evaluation points
    ci: tuple[float, float]  # 95% interval: profile set joined to a parametric bootstrap, out to the points around
    from_start: bool  # the interval reaches the first point: no threshold, a loss from the start
    method: str = "concave then ramp"  # how it was located


@dataclass
class FallSeries:
    """One series handed to `joint_fall_onset`: points, binomial relative variances (None: equal), AR(1) noise."""

    x: np.ndarray  # increasing positions (steps)
    y: np.ndarray  # values; a fall is the change located
    rel_var: np.ndarray | None = None  # p(1 - p) / n per point, None when unknown
    ar1: bool = False  # dense, autocorrelated (binned before fitting)


def prefix_isotonic(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every prefix y[:i] (i = 0..n): the last level and the weighted SSR of its non-decreasing (isotonic) fit.

    Incremental pool-adjacent-violators: O(n) amortised. Index 0 (the empty prefix) holds NaN and 0."""
    n = y.size
    level, ssr = np.full(n + 1, np.nan), np.zeros(n + 1)
    bw: list[float] = []
    by: list[float] = []
    bs: list[float] = []  # per block: sum w, sum w y, its SSR
    total = 0.0
    for i in range(n):
        cw, cy, cs = float(w[i]), float(w[i] * y[i]), 0.0
        while bw and by[-1] / bw[-1] >= cy / cw:
            pw_, py_, ps_ = bw.pop(), by.pop(), bs.pop()
            total -= ps_
            # merged SSR: the two SSRs plus the between-block term
            cs = cs + ps_ + pw_ * cw / (pw_ + cw) * (py_ / pw_ - cy / cw) ** 2
            cw, cy = cw + pw_, cy + py_
        bw.append(cw)
        by.append(cy)
        bs.append(cs)
        total += cs
        level[i + 1], ssr[i + 1] = cy / cw, total
    return level, ssr


def _concave_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The concave non-decreasing weighted least-squares fit of y on x: a + sum_k b_k min(x - x0, x_k - x0) with
    b_k >= 0 (every concave non-decreasing piecewise-linear function with knots at the points), the intercept
    projected out and b by non-negative least squares."""
    if y.size < 2:
        return y.astype(float).copy()
    u = x - x[0]
    basis = np.minimum(u[:, None], u[None, 1:])
    sw = w.sum()
    bm, ym = (w[:, None] * basis).sum(0) / sw, float((w * y).sum() / sw)
    b, _ = nnls((basis - bm) * np.sqrt(w)[:, None], (y - ym) * np.sqrt(w))
    return ym + (basis - bm) @ b


def prefix_concave(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every prefix y[:i] (i = 0..n): the last fitted value and the weighted SSR of its concave non-decreasing
    least-squares fit (`_concave_fit`: a rise with diminishing returns, flat included). Index 0 holds NaN and 0."""
    n = y.size
    level, ssr = np.full(n + 1, np.nan), np.zeros(n + 1)
    for i in range(1, n + 1):
        fit = _concave_fit(x[:i], y[:i], w[:i])
        level[i], ssr[i] = fit[-1], float((w[:i] * (y[:i] - fit) ** 2).sum())
    return level, ssr


def bin_series(x: np.ndarray, y: np.ndarray, w: np.ndarray, max_bins: int = 50) -> tuple[np.ndarray, ...]:
    """A dense series averaged over at most `max_bins` consecutive bins: weighted mean x and y, summed weights."""
    if y.size <= max_bins:
        return x, y, w
    edges = np.linspace(0, y.size, max_bins + 1).round().astype(int)
    sw = np.add.reduceat(w, edges[:-1])
    return np.add.reduceat(w * x, edges[:-1]) / sw, np.add.reduceat(w * y, edges[:-1]) / sw, sw


def _ramp_table(x: np.ndarray, y: np.ndarray, w: np.ndarray, taus: np.ndarray, min_tail: int,
                end_penalty: float = 0.0, before: str = "isotonic") -> tuple[np.ndarray, ...]:
    """Weighted SSR of 'non-decreasing before tau, then a straight fall to tau2, flat after' for each tau.

    The fall starts at the level the non-decreasing fit of the points <= tau ends on (`before`: "isotonic", or
    "concave" for a concave non-decreasing one; continuous at tau) and runs to tau2 (a grid of the points and
    midpoints after tau): abrupt drops (tau2 just after tau) and gradual falls to the end are one family; a tau2
    before the last point adds `end_penalty` times the difference-based noise scale^2 (in the SSR's units) to the
    SSR. Before the first point there is no level to hold: the start level is free.
    Returns ssr, the best tau2, slope and start level per tau (inf where fewer than `min_tail` points follow)."""
    n = y.size
    lev, pre = prefix_isotonic(y, w) if before == "isotonic" else prefix_concave(x, y, w)
    pen = end_penalty * float(diff_scale(y, 1.0 / np.sqrt(w))[0]) ** 2 if end_penalty else 0.0
    out = np.full(taus.size, np.inf)
    t2o, bo, lo_ = np.full(taus.size, np.nan), np.zeros(taus.size), np.full(taus.size, np.nan)
    idx = np.searchsorted(x, taus, "right")  # points < idx are before tau
    mids = np.concatenate([x, 0.5 * (x[:-1] + x[1:])])
    for i in np.unique(idx):
        if i > n - min_tail:
            continue
        m = idx == i
        tt = taus[m]
        xp, yp, wp = x[i:], y[i:], w[i:]
        t2s = np.unique(mids[mids > tt.min()])
        g = np.clip(np.minimum(xp[None, None, :], t2s[None, :, None]) - tt[:, None, None], 0.0, None)
        if i == 0:  # no points before: a free start level, (L, b) by weighted least squares
            sw_, swy = wp.sum(), (wp * yp).sum()
            sg, sgg, sgy = (wp * g).sum(-1), (wp * g * g).sum(-1), (wp * g * yp).sum(-1)
            det = sw_ * sgg - sg**2
            ok = det > 1e-12 * sw_ * np.maximum(sgg, 1e-300)
            b = np.where(ok, np.maximum((sg * swy - sw_ * sgy) / np.where(ok, det, 1.0), 0.0), 0.0)
            start = (swy + b * sg) / sw_
            r0 = yp[None, None, :] - start[..., None] + b[..., None] * g
            ssr = (wp * r0**2).sum(-1)
        else:
            r = lev[i] - yp
            sgg, sgr, srr = (wp * g * g).sum(-1), (wp * g * r).sum(-1), float((wp * r * r).sum())
            ok = sgg > 0
            b = np.where(ok, np.maximum(sgr / np.where(ok, sgg, 1.0), 0.0), 0.0)
            ssr = pre[i] + srr - 2 * b * sgr + b * b * sgg
            start = np.full(b.shape, lev[i])
        ssr = np.where(t2s[None, :] > tt[:, None], ssr, np.inf)
        if pen:  # a fall that stops before the last point costs one parameter more
            ssr = ssr + np.where(t2s < x[-1], pen, 0.0)[None, :]
        j = np.argmin(ssr, axis=1)
        r_ = np.arange(tt.size)
        out[m], t2o[m], bo[m], lo_[m] = ssr[r_, j], t2s[j], b[r_, j], start[r_, j]
    return out, t2o, bo, lo_


def _ramp_fitted(x: np.ndarray, y: np.ndarray, w: np.ndarray, tau: float, tau2: float, b: float,
                 start: float, before: str = "isotonic") -> np.ndarray:
    """The fitted 'non-decreasing (isotonic or concave), then ramp to tau2, then flat' curve at x."""
    i = int(np.searchsorted(x, tau, "right"))
    out = start - b * np.clip(np.minimum(x, tau2) - tau, 0.0, None)
    if i > 0:
        out[:i] = isotonic_regression(y[:i], weights=w[:i], increasing=True).x if before == "isotonic" else \
            _concave_fit(x[:i], y[:i], w[:i])
    return out


def _prepared(s: FallSeries, max_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(x, y, weights, difference-based noise scale^2, dense) of a series, dense ones binned."""
    x, y = np.asarray(s.x, float), np.asarray(s.y, float)
    rv = np.ones(y.size) if s.rel_var is None else np.maximum(np.asarray(s.rel_var, float), 1e-12)
    xb, yb, wb = bin_series(x, y, 1.0 / rv, max_bins) if s.ar1 else (x, y, 1.0 / rv)
    scale2 = float(diff_scale(yb, 1.0 / np.sqrt(wb))[0]) ** 2
    return xb, yb, wb, max(scale2, 1e-24), bool(s.ar1)


def _locate(prep: list[tuple], grid: np.ndarray, table, curve, level: float, n_boot: int,
            rng: np.random.Generator) -> tuple[int, np.ndarray, float, float, list] | None:
    """The grid position minimising the sum of the series' SSRs (`table(x, y, w, dense)[0]` per grid position), each
    over its difference-based noise scale^2, and its interval: the profile set (the sum within chi2_1(level) of its
    minimum, the scale^2 of a dense series inflated to the long-run variance of its bins, AR(1) rho from the
    residuals of a 0-2 break `piecewise_fit`) joined to a parametric bootstrap (each fitted `curve` plus noise of
    its scale, AR(1) for dense series, the position re-found `n_boot` times, percentile interval).
    (index, profile set, low, high, tables); None when no position can be fitted."""
    def objective(ys: list[np.ndarray], infl: list[float]) -> tuple[np.ndarray, list]:
        tot, parts = np.zeros(grid.size), []
        for (xb, _, wb, sc2, dense), yb, f in zip(prep, ys, infl):
            t = table(xb, yb, wb, dense)
            tot += t[0] / (sc2 * f)
            parts.append(t)
        return tot, parts

    ones = [1.0] * len(prep)
    tot, parts = objective([p[1] for p in prep], ones)
    if not np.isfinite(tot).any():
        return None
    j = int(np.argmin(tot))
    fitted = [curve(xb, yb, wb, t, j, dense) for (xb, yb, wb, _, dense), t in zip(prep, parts)]
    rhos = []
    for xb, yb, wb, _, dense in prep:  # from a flexible fit's residuals: a misfit of the model is not noise
        rho = 0.0
        if dense and yb.size >= 8:
            r = (yb - piecewise_fit(xb, yb, 1.0 / wb).predict(xb)) * np.sqrt(wb)
            rho = float(np.clip(lag1_autocorr(r), 0.0, 0.95)) if np.ptp(r) > 0 else 0.0
        rhos.append(rho)
    infl = [(1.0 + q) / (1.0 - q) ** 2 for q in rhos]
    tot_lr = sum(t[0] / (p[3] * f) for t, p, f in zip(parts, prep, infl))
    ok = grid[tot_lr <= np.min(tot_lr) + sps.chi2.ppf(level, 1)]
    c_lo, c_hi = min(float(ok.min()), float(grid[j])), max(float(ok.max()), float(grid[j]))
    if n_boot > 0:
        sds = [np.sqrt(p[3] / (1.0 - q) / p[2]) for p, q in zip(prep, rhos)]
        noise = [ar1_noise(f.size, q, n_boot, rng) if q > 0 else rng.normal(size=(n_boot, f.size))
                 for f, q in zip(fitted, rhos)]
        picks = np.array([grid[int(np.argmin(objective([f + e[k] * sd for f, e, sd in zip(fitted, noise, sds)],
                                                        ones)[0]))] for k in range(n_boot)])
        a = (1 - level) / 2
        c_lo = min(c_lo, float(np.quantile(picks, a, method="lower")))
        c_hi = max(c_hi, float(np.quantile(picks, 1 - a, method="higher")))
    return j, ok, c_lo, c_hi, parts


def joint_fall_onset(series: list[FallSeries], level: float = 0.95, n_boot: int = 99, min_tail: int = 3,
                     sub: int = 4, max_bins: int = 50, rng: np.random.Generator | None = None,
                     end_penalty: float = 2.0, before: str = "concave") -> FallOnset:
    """One onset shared by series that fall together (e.g. training reward and held-out accuracy in a collapse).

    Each series is fitted by `_ramp_table` (non-decreasing, then a continuous straight fall to a free end, then
    flat; the end costs `end_penalty` noise units unless it is the last point): sparse series are non-decreasing
    and concave before the fall (`before` = "concave", the default; "isotonic" drops the concavity), dense series
    isotonic and first averaged into at most `max_bins` bins (their autocorrelation then mostly averages out).
    The onset minimises the sum of the series' SSRs, each over its difference-based noise scale^2, on a grid of
    `sub` positions per gap between the sparsest series' points. 95% interval: the profile set (within
    chi2_1(level) of the minimum) joined to a parametric bootstrap (each series' fitted curve plus normal noise
    of its scale, AR(1) for dense series, the joint onset re-estimated `n_boot` times, percentile interval), out to
    the evaluation points around it. `from_start`: the profile set reaches the first grid position (no level is
    held first)."""
    if not series:
        raise ValueError("joint_fall_onset: no series")
    rng = rng or np.random.default_rng(0)
    prep = [_prepared(s, max_bins) for s in series]
    ref = min(prep, key=lambda p: p[0].size)[0]  # the sparsest series sets the grid
    lo = max(p[0][0] for p in prep)
    hi = min(p[0][-min_tail] for p in prep) if all(p[0].size > min_tail for p in prep) else lo
    pts = np.unique(np.concatenate([[lo], ref[(ref > lo) & (ref < hi)], [hi]]))
    grid = np.unique(np.concatenate([np.linspace(a, b, sub + 1)[:-1] for a, b in zip(pts[:-1], pts[1:])] + [pts[-1:]]))

    if before not in ("concave", "isotonic"):
        raise ValueError(f"joint_fall_onset: before = {before!r}, not 'concave' or 'isotonic'")

    def pre(dense: bool) -> str:  # dense training series keep the isotonic fit before the fall
        return "isotonic" if dense else before

    found = _locate(prep, grid, lambda xb, yb, wb, d: _ramp_table(xb, yb, wb, grid, min_tail, end_penalty, pre(d)),
                    lambda xb, yb, wb, t, j, d: _ramp_fitted(xb, yb, wb, grid[j], t[1][j], t[2][j], t[3][j], pre(d)),
                    level, n_boot, rng)
    if found is None:
        return FallOnset(tau=float(lo), ci=(float(lo), float(hi)), from_start=True)
    j, ok, c_lo, c_hi, _ = found
    # a break between two evaluations is located no better than that gap: out to the points around
    c_lo = float(ref[max(np.searchsorted(ref, c_lo, "right") - 1, 0)])
    c_hi = float(ref[min(np.searchsorted(ref, c_hi, "left"), ref.size - 1)])
    return FallOnset(tau=float(grid[j]), ci=(min(c_lo, float(grid[j])), max(c_hi, float(grid[j]))),
                     from_start=bool(ok.min() <= grid[0]),
                     method=f"{before} (evaluations) / isotonic (dense series) then ramp, "
                     + (f"joint over {len(series)} series" if len(series) > 1 else "one series"))


def decline_onset(x: np.ndarray, y: np.ndarray, rel_var: np.ndarray | None = None, ar1: bool = False,
                  min_tail: int = 3, level: float = 0.95, n_boot: int = 99,
                  rng: np.random.Generator | None = None) -> FallOnset:
    """Onset of the fall of one series: `joint_fall_onset` of it alone (see there)."""
    return joint_fall_onset([FallSeries(np.asarray(x, float), np.asarray(y, float), rel_var, ar1)], level=level,
                            n_boot=n_boot, min_tail=min_tail, rng=rng)


@dataclass
class Knee:
    """Where a saturating rise stops: the onset of a plateau (`saturation_onset`)."""

    tau: float  # the knee, on the x axis
    ci: tuple[float, float]  # 95% interval: profile set joined to a parametric bootstrap, out to the points around
    curvature: float  # c of the best fit (e-folding scale / rise length; large: a straight rise)
    identifiable: bool  # False when the interval spans the whole range searched


SAT_CURVATURES = (0.25, 0.4, 0.6, 1.0, 1.6, 2.5, 4.0, np.inf)


def _saturation_table(x: np.ndarray, y: np.ndarray, w: np.ndarray, taus: np.ndarray,
                      curvatures: tuple[float, ...] = SAT_CURVATURES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted SSR of y = a + b (1 - exp(-(min(x, tau) - x0) / (c (tau - x0)))), b >= 0, minimised over a, b and c
    (a grid; c = inf is a straight rise), per tau; also the best c and the fitted curve's (a, b) packed per tau."""
    x0 = x[0]
    best, best_c = np.full(taus.size, np.inf), np.full(taus.size, np.nan)
    coef = np.zeros((taus.size, 2))
    u = np.maximum(np.minimum(x[None, :], taus[:, None]) - x0, 0.0)
    sw, swy, swyy = w.sum(), (w * y).sum(), (w * y * y).sum()
    for c in curvatures:
        g = u if not np.isfinite(c) else -np.expm1(-u / (c * np.maximum(taus - x0, 1e-12))[:, None])
        sg, sgg, sgy = (w * g).sum(1), (w * g * g).sum(1), (w * g * y).sum(1)
        det = sw * sgg - sg**2
        ok = det > 1e-12 * sw * np.maximum(sgg, 1e-300)
        b = np.where(ok, np.maximum((sw * sgy - sg * swy) / np.where(ok, det, 1.0), 0.0), 0.0)
        a = (swy - b * sg) / sw
        ssr = swyy - 2 * a * swy - 2 * b * sgy + a * a * sw + 2 * a * b * sg + b * b * sgg
        better = ssr < best
        best, best_c = np.where(better, ssr, best), np.where(better, c, best_c)
        coef[better] = np.column_stack([a, b])[better]
    return best, best_c, coef


def _saturation_curve(x: np.ndarray, tau: float, c: float, a: float, b: float) -> np.ndarray:
    u = np.maximum(np.minimum(x, tau) - x[0], 0.0)
    return a + b * (u if not np.isfinite(c) else -np.expm1(-u / (c * max(tau - x[0], 1e-12))))


def saturation_onset(series: list[FallSeries], level: float = 0.95, n_boot: int = 99, sub: int = 4,
                     max_bins: int = 50, rng: np.random.Generator | None = None) -> Knee:
    """The knee of a saturating rise shared by the series (a plateau's onset), each series y = a + b (1 - exp(-(
    min(x, tau) - x0) / (c (tau - x0)))): a rise that slows on an exponential scale of its own (c from a grid, a
    straight line included) and stops at tau. A hinge on straight lines puts the knee of a curve that flattens
    gradually too early; this model reaches flat only at tau. Series (dense ones binned) are weighted by their
    difference-based noise scales and share tau only. 95% interval as in `joint_fall_onset`."""
    if not series:
        raise ValueError("saturation_onset: no series")
    rng = rng or np.random.default_rng(0)
    prep = [_prepared(s, max_bins) for s in series]
    ref = min(prep, key=lambda p: p[0].size)[0]
    lo = max(p[0][min(2, p[0].size - 1)] for p in prep)
    hi = min(p[0][max(-3, -p[0].size)] for p in prep)
    pts = ref[(ref >= lo) & (ref <= hi)]
    if pts.size < 2:
        pts = np.array([lo, max(hi, lo)])
    grid = np.unique(np.concatenate([np.linspace(a, b, sub + 1)[:-1] for a, b in zip(pts[:-1], pts[1:])] + [pts[-1:]]))

    j, ok, c_lo, c_hi, parts = _locate(prep, grid, lambda xb, yb, wb, _d: _saturation_table(xb, yb, wb, grid),
                                       lambda xb, yb, wb, t, j, _d: _saturation_curve(xb, grid[j], t[1][j], *t[2][j]),
                                       level, n_boot, rng)
    c_lo = float(ref[max(np.searchsorted(ref, c_lo, "right") - 1, 0)])
    c_hi = float(ref[min(np.searchsorted(ref, c_hi, "left"), ref.size - 1)])
    return Knee(tau=float(grid[j]), ci=(min(c_lo, float(grid[j])), max(c_hi, float(grid[j]))),
                curvature=float(parts[0][1][j]), identifiable=not (ok.min() <= grid[0] and ok.max() >= grid[-1]))
