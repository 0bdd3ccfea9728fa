"""Pure statistics of the evaluator (numpy only, no model code).

Everything here works on per-problem arrays so that intervals resample *problems* (prompts), the unit that
is drawn independently: samples of one prompt are correlated and must stay together.

- `k_grid(n)`: the k values 1, 2, 4, ..., n of a pass@k curve.
- `pass_at_k_table(n, c, ks)`: unbiased pass@k per problem and k (wraps `ceiling.stats.pass_at_k`).
- `bootstrap_weights(m, n_boot, rng)`: problem-level bootstrap as multinomial counts, shared across metrics.
- `mean_ci`, `ratio_ci`, `t_interval`: a point estimate with a 95% (or other) interval.
- `crossover_k(ks, policy, base)`: the k at which the base's pass@k catches up with the policy's.
- `kl_sequence(logp_sample, logp_other, mask)`: per-sequence k1 and k3 estimates of KL(sampler || other).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ceiling.stats import pass_at_k


@dataclass(frozen=True)
class Estimate:
    """A value with an interval and the sample size behind it (number of problems, usually)."""

    value: float
    ci_low: float
    ci_high: float
    n: int


def k_grid(n: int) -> list[int]:
    """Powers of two up to n, plus n itself when n is not a power of two: [1, 2, 4, ..., n]."""
    if n < 1:
        raise ValueError("k_grid needs n >= 1")
    ks = [1 << i for i in range(int(np.floor(np.log2(n))) + 1)]
    if ks[-1] != n:
        ks.append(n)
    return ks


def pass_at_k_table(n: int, c: np.ndarray, ks: list[int]) -> np.ndarray:
    """Unbiased pass@k for each problem (rows) and each k in `ks` (columns); `c` = correct counts out of n."""
    c = np.asarray(c, dtype=np.int64)
    out = np.empty((c.size, len(ks)), dtype=np.float64)
    for j, k in enumerate(ks):
        out[:, j] = pass_at_k(n, c, k) if c.size else np.empty(0)
    return out


def bootstrap_weights(m: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, m] resampling counts of m problems (each row sums to m): a problem-level bootstrap.

    Resampled means are `weights @ values / m`, so one draw serves every metric on the same problems.
    """
    if m == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)


def _quantiles(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along axis 0 (replicates may contain +inf)."""
    a = (1.0 - level) / 2.0
    lo = np.quantile(boot, a, axis=0, method="inverted_cdf")
    hi = np.quantile(boot, 1.0 - a, axis=0, method="inverted_cdf")
    return lo, hi


def mean_ci(values: np.ndarray, weights: np.ndarray, level: float = 0.95) -> list[Estimate]:
    """Mean over problems of `values` ([m] or [m, K]) with a percentile bootstrap interval per column."""
    v = np.asarray(values, dtype=np.float64)
    v2 = v.reshape(v.shape[0], -1)
    m = v2.shape[0]
    if m == 0:
        return [Estimate(np.nan, np.nan, np.nan, 0) for _ in range(v2.shape[1])]
    point = v2.mean(axis=0)
    boot = weights @ v2 / m
    lo, hi = _quantiles(boot, level)
    return [Estimate(float(point[j]), float(lo[j]), float(hi[j]), m) for j in range(v2.shape[1])]


def ratio_ci(num: np.ndarray, den: np.ndarray, weights: np.ndarray, level: float = 0.95) -> Estimate:
    """sum(num) / sum(den) over problems (e.g. a token-weighted mean) with a problem-level bootstrap interval."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.sum() <= 0:
        return Estimate(np.nan, np.nan, np.nan, int(num.size))
    point = num.sum() / den.sum()
    bn, bd = weights @ num, weights @ den
    boot = np.where(bd > 0, bn / np.where(bd > 0, bd, 1.0), point)
    lo, hi = _quantiles(boot, level)
    return Estimate(float(point), float(lo), float(hi), int(num.size))


def t_interval(values: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean with a Student-t interval; identical values give a zero-width interval."""
    v = np.asarray(values, dtype=np.float64)
    m = v.size
    if m == 0:
        return Estimate(np.nan, np.nan, np.nan, 0)
    mean = float(v.mean())
    if m == 1:
        return Estimate(mean, np.nan, np.nan, 1)
    half = float(sps.t.ppf(0.5 + level / 2.0, m - 1) * v.std(ddof=1) / np.sqrt(m))
    return Estimate(mean, mean - half, mean + half, m)


def group_means(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of `values` within each group id 0..n_groups-1 (NaN for an empty group)."""
    sums = np.bincount(group, weights=values, minlength=n_groups)
    counts = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def crossover_k(ks: list[int] | np.ndarray, policy: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The smallest k at which the base's pass@k reaches the policy's, interpolated in log2 k.

    `policy` and `base` are pass@k curves over `ks`, shape [K] or [B, K] (bootstrap replicates).
    Returns k (>= ks[0]) per curve: ks[0] when the base is already at least as good at the smallest k,
    a log-linear interpolation between the last k where the policy leads and the first where it does not,
    and +inf when the policy leads at every k in the grid ("no crossover").
    """
    lk = np.log2(np.asarray(ks, dtype=np.float64))
    d = np.atleast_2d(np.asarray(policy, dtype=np.float64) - np.asarray(base, dtype=np.float64))
    caught = d <= 0.0
    first = np.where(caught.any(axis=1), caught.argmax(axis=1), -1)
    out = np.full(d.shape[0], np.inf)
    out[first == 0] = ks[0]
    rows = np.flatnonzero(first > 0)
    if rows.size:
        j = first[rows]
        d0, d1 = d[rows, j - 1], d[rows, j]
        t = d0 / (d0 - d1)  # d0 > 0 >= d1, so 0 < t <= 1
        out[rows] = 2.0 ** (lk[j - 1] + t * (lk[j] - lk[j - 1]))
    return out if np.ndim(policy) > 1 else out[:1]


def crossover_ci(ks: list[int], policy: np.ndarray, base: np.ndarray, weights: np.ndarray,
                 level: float = 0.95) -> Estimate:
    """Crossover k of per-problem pass@k tables ([m, K] each, same problems) with a paired bootstrap interval.

    The value is NaN when there is no crossover in the grid; the upper bound is +inf when more than
    (1 - level) / 2 of the replicates show none.
    """
    m = policy.shape[0]
    if m == 0:
        return Estimate(np.nan, np.nan, np.nan, 0)
    point = float(crossover_k(ks, policy.mean(axis=0), base.mean(axis=0))[0])
    boot = crossover_k(ks, weights @ policy / m, weights @ base / m)
    lo, hi = _quantiles(boot, level)
    return Estimate(point if np.isfinite(point) else np.nan, float(lo), float(hi), m)


def kl_sequence(logp_sample: np.ndarray, logp_other: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence k1 and k3 estimates of KL(sampler || other) from sequences drawn from the sampler.

    With r_t = log other(y_t) - log sampler(y_t) on the sampled tokens (mask = 1 on completion tokens):
    k1 = sum_t -r_t and k3 = sum_t (exp(r_t) - 1 - r_t). Both are unbiased for the sequence-level KL
    (E[exp(r_t) | prefix] = 1 when the other model covers the sampler's support); k3 is never negative.
    """
    mask = np.asarray(mask, dtype=np.float64)
    r = (np.asarray(logp_other, dtype=np.float64) - np.asarray(logp_sample, dtype=np.float64)) * mask
    k1 = -r.sum(axis=1)
    k3 = ((np.expm1(r) - r) * mask).sum(axis=1)
    return k1, k3
