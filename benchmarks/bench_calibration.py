"""Benchmark: do the 95% intervals cover 95% of the time? Ceiling, entropy law, across-run regression.

Usage:
    python benchmarks/bench_calibration.py                 # 1000 draws per case (about 25 min on 2 busy cores)
    python benchmarks/bench_calibration.py --draws 200     # a quicker look
    python benchmarks/bench_calibration.py --only entropy  # one method (ceiling, plateau, entropy, across)

Each case simulates series with a known truth, fits them with the library's public functions, and counts
how often the 95% interval holds the truth. Printed per case: the coverage with a 95% Clopper-Pearson
interval on it (so "0.95 is inside" can be read off), the coverage of the 90% and 99% intervals of the same
fits (what a mis-labelled interval would show), and seconds per fit. Target: 0.93-0.97 at 95%.

Cases (the test suite, tests/test_calibration.py, runs cheaper versions of the first case of each method):
- ceiling: ScaleRL's first parameter set (C_mid 2542, B 1.92, A 0.61, R0 0.2), noise sd 0.015, n points up
  to 95% of the rise; the grid n = 12, 40, 80 x AR(1) phi = 0, 0.3, 0.6 (200 resamples) for the default (AR(1)
  bootstrap, t on the effective dof n (1 - rho) / (1 + rho) - p) and the circular block bootstrap (t on n - p);
  n = 200 with 1000 resamples (bench_fit's size); blocks of one under AR(1) 0.6 (what non-contiguous
  resampling amounts to); the residual inflation sqrt(n / (n - p)) removed (emulated by shrinking the
  replicates towards the estimate by 1 / inflation) at n = 12.
- plateau (the ceiling's fallback when no rising form is identifiable): a sweep-like run, 15 evaluations at
  x = 20, 40, ..., 300 holding level 0.6 with AR(1) noise (sd 0.02, phi = 0, 0.3, 0.6); the level's interval
  with the AR(1) coefficient estimated from the 8 tail points, and from all 15 points' deviations from their
  mean (as `compare_forms` passes the rising fit's). Then how often the plateau test declares a plateau on a
  series that still moves by `gain` per doubling of x (phi 0.3): it should at gains past the tolerance 0.05
  only rarely (a false plateau), and at gain 0 mostly (its power).
- entropy law: R = -0.15 exp(H) + 0.85, H decaying from 1.5 to 0.1 over n checkpoints, white and AR(1)
  noise (sd 0.01); the library's EWC (equal-weighted cosine HAC) intervals and plain OLS t intervals on the same draws.
- across runs: k runs with base measure x evenly in [0.3, 0.9], ceilings 0.3 + 0.5 x + between-run scatter
  (sd tau) + their own estimation error (sd s_i ~ U(0.005, 0.03), reported as ci = ceiling +- 1.96 s_i);
  coverage of the true slope 0.5.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as sps

from ceiling.fit import fit_across_runs, fit_curve, fit_entropy_law
from ceiling.fit.common import percentile_ci
from ceiling.fit.curve import expanded_level

LEVELS = (0.90, 0.95, 0.99)


@dataclass
class Result:
    case: str
    draws: int
    covered: dict[float, int]
    seconds: float

    def line(self) -> str:
        k, n = self.covered[0.95], self.draws
        lo = sps.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        hi = sps.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        verdict = "ok" if 0.93 <= k / n <= 0.97 else ("LOW" if k / n < 0.93 else "HIGH")
        return (f"{self.case:<72} {n:>5}  {k / n:6.3f} [{lo:.3f}, {hi:.3f}] {verdict:<4}  "
                f"{self.covered[0.90] / n:6.3f}  {self.covered[0.99] / n:6.3f}  {self.seconds / n:7.4f}")


def ar1(n: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    e = np.zeros(n)
    e[0] = rng.normal(0, sd)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return e


def measure(case: str, draws: int, one: Callable[[int, np.random.Generator], dict[float, bool]]) -> Result:
    rng = np.random.default_rng(20261130)
    covered = {lv: 0 for lv in LEVELS}
    t0 = time.perf_counter()
    for i in range(draws):
        for lv, ok in one(i, rng).items():
            covered[lv] += bool(ok)
    return Result(case, draws, covered, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ ceiling
CMID, B, A, R0, NOISE = 2542.0, 1.92, 0.61, 0.2, 0.015


def ceiling_case(n: int, n_boot: int, phi: float = 0.0, block: int | None = None, no_inflation: bool = False,
                 resample: str = "ar1", plain: bool = False,
                 widths: list[float] | None = None) -> Callable[[int, np.random.Generator], dict[float, bool]]:
    """`plain`: read plain percentile intervals (no small-sample expansion); `widths` collects 95% widths."""
    cmax = CMID * 19.0 ** (1.0 / B)
    c = np.linspace(cmax / n, cmax, n)
    truth = R0 + (A - R0) / (1.0 + (CMID / c) ** B)

    def one(i: int, rng: np.random.Generator) -> dict[float, bool]:
        noise = ar1(n, phi, NOISE, rng) if phi else rng.normal(0, NOISE, n)
        fit = fit_curve(c, truth + noise, n_boot=n_boot, seed=i, block=block, resample=resample)
        a = fit.draws[:, list(fit.params).index("A")]
        if no_inflation:
            a = fit.estimate + (a - fit.estimate) / fit.bootstrap["inflation"]
        lev = {lv: lv if plain else expanded_level(lv, fit.bootstrap["dof"]) for lv in LEVELS}
        ci = {lv: percentile_ci(a, lev[lv]) for lv in LEVELS}
        if not (plain or no_inflation):
            assert np.allclose(ci[0.95], (fit.ci_low, fit.ci_high))  # the library's own interval
        if widths is not None:
            widths.append(float(ci[0.95][1] - ci[0.95][0]))
        return {lv: ci[lv][0] <= A <= ci[lv][1] for lv in LEVELS}

    return one


def ceiling_cases(draws: int) -> Iterator[Result]:
    def with_width(name: str, **kw: object) -> Result:
        widths: list[float] = []
        res = measure(name, draws, ceiling_case(widths=widths, **kw))  # type: ignore[arg-type]
        res.case += f" (width {np.mean(widths):.4f})"
        return res

    for n in (12, 40, 80):
        for phi in (0.0, 0.3, 0.6):
            for resample in ("ar1", "block"):
                yield with_width(f"ceiling: n={n}, AR(1) {phi}, {resample}", n=n, n_boot=200, phi=phi,
                                 resample=resample)
    yield with_width("ceiling: n=200, iid, 1000 resamples (default)", n=200, n_boot=1000)
    yield with_width("ceiling: n=12, iid, plain percentile (default draws)", n=12, n_boot=200, plain=True)
    yield measure("ceiling: n=80, AR(1) 0.6 noise, blocks of one", draws,
                  ceiling_case(80, 200, phi=0.6, block=1, resample="block"))
    yield measure("ceiling: n=12, inflation removed (emulated)", draws, ceiling_case(12, 200, no_inflation=True))


# ------------------------------------------------------------------------------------------------ entropy law
def entropy_case(n: int, phi: float) -> Callable[[int, np.random.Generator], dict[float, bool]]:
    steps = np.arange(n, dtype=float)
    h = 0.1 + 1.4 * np.exp(-steps / (n / 3))

    def one(i: int, rng: np.random.Generator) -> dict[float, bool]:
        r = -0.15 * np.exp(h) + 0.85 + (ar1(n, phi, 0.01, rng) if phi else rng.normal(0, 0.01, n))
        fit = fit_entropy_law(h, r, steps=steps)
        se = np.sqrt(fit.cov[0, 0] + fit.cov[1, 1] + 2 * fit.cov[0, 1])
        return {lv: abs(fit.estimate - 0.7) <= sps.t.ppf(0.5 + lv / 2, fit.dof) * se for lv in LEVELS}

    return one


def ols_case(n: int, phi: float) -> Callable[[int, np.random.Generator], dict[float, bool]]:
    """Plain OLS t intervals on the same series (what the HAC covariance replaces)."""
    steps = np.arange(n, dtype=float)
    h = 0.1 + 1.4 * np.exp(-steps / (n / 3))
    design = sm.add_constant(np.exp(h))

    def one(i: int, rng: np.random.Generator) -> dict[float, bool]:
        r = -0.15 * np.exp(h) + 0.85 + (ar1(n, phi, 0.01, rng) if phi else rng.normal(0, 0.01, n))
        res = sm.OLS(r, design).fit()
        g = np.array([1.0, 1.0])
        se = float(np.sqrt(g @ res.cov_params() @ g))
        return {lv: abs(float(g @ res.params) - 0.7) <= sps.t.ppf(0.5 + lv / 2, n - 2) * se for lv in LEVELS}

    return one


def entropy_cases(draws: int) -> Iterator[Result]:
    n_draws = 3 * draws  # a fit takes a millisecond
    yield measure("entropy law: n=200, white noise (the test's case)", n_draws, entropy_case(200, 0.0))
    yield measure("entropy law: n=100, white noise", n_draws, entropy_case(100, 0.0))
    for phi in (0.3, 0.6):
        yield measure(f"entropy law: n=200, AR(1) {phi} noise, EWC (library)", n_draws, entropy_case(200, phi))
        yield measure(f"entropy law: n=200, AR(1) {phi} noise, plain OLS", n_draws, ols_case(200, phi))


# ------------------------------------------------------------------------------------------------ across runs
def across_case(k: int, tau: float) -> Callable[[int, np.random.Generator], dict[float, bool]]:
    x = np.linspace(0.3, 0.9, k)

    def one(i: int, rng: np.random.Generator) -> dict[float, bool]:
        s = rng.uniform(0.005, 0.03, k)
        y = 0.3 + 0.5 * x + rng.normal(0, tau, k) + rng.normal(0, s)
        table = pd.DataFrame({"run": [f"r{j}" for j in range(k)], "ceiling": y, "ci_low": y - 1.959964 * s,
                              "ci_high": y + 1.959964 * s, "x": x})
        reg = fit_across_runs(table, measures=["x"]).regressions["x"]
        se = float(np.sqrt(np.asarray(reg["cov"])[1, 1]))
        return {lv: abs(reg["slope"] - 0.5) <= sps.t.ppf(0.5 + lv / 2, reg["dof"]) * se for lv in LEVELS}

    return one


def across_cases(draws: int) -> Iterator[Result]:
    yield measure("across runs: k=8, tau=0.02 (the test's case)", draws, across_case(8, 0.02))
    yield measure("across runs: k=5, tau=0.02", draws, across_case(5, 0.02))
    yield measure("across runs: k=15, tau=0.05", draws, across_case(15, 0.05))
    yield measure("across runs: k=8, tau=0 (no between-run scatter)", draws, across_case(8, 0.0))


# ------------------------------------------------------------------------------------------------ plateau
PLATEAU_X = np.arange(20.0, 320.0, 20.0)
PLATEAU_LEVEL, PLATEAU_SD = 0.6, 0.02


def plateau_case(phi: float, rho_from: str, gain: float = 0.0) -> Callable[[int, np.random.Generator],
                                                                             dict[float, bool]]:
    """`rho_from`: "tail" (estimated by the plateau fit from its own points) or "series" (from all 15 points'
    deviations from their mean, 1 parameter, bias-corrected). Coverage of the level (gain 0) at each level."""
    from ceiling.fit import CurveFitter
    from ceiling.fit.curve import ar1_coefficient

    def one(i: int, rng: np.random.Generator) -> dict[float, bool]:
        y = PLATEAU_LEVEL + gain * np.log2(PLATEAU_X / PLATEAU_X.max()) + ar1(PLATEAU_X.size, phi, PLATEAU_SD, rng)
        rho = None if rho_from == "tail" else ar1_coefficient(y - y.mean(), 1)
        out = {}
        for lv in LEVELS:
            fit = CurveFitter(form="plateau", n_boot=300, seed=i, ar1=rho, level=lv).fit(PLATEAU_X, y)
            out[lv] = fit.ci_low <= PLATEAU_LEVEL + gain * np.mean(np.log2(PLATEAU_X[7:] / 300.0)) <= fit.ci_high
        return out

    return one


def plateau_declared(draws: int, gain: float, phi: float = 0.3) -> str:
    """How often the plateau test calls a series that moves `gain` per doubling a plateau."""
    from ceiling.fit import CurveFitter

    rng = np.random.default_rng(20261206)
    hits = 0
    for i in range(draws):
        y = PLATEAU_LEVEL + gain * np.log2(PLATEAU_X / PLATEAU_X.max()) + ar1(PLATEAU_X.size, phi, PLATEAU_SD, rng)
        hits += CurveFitter(form="plateau", n_boot=300, seed=i).fit(PLATEAU_X, y).identifiable
    return f"plateau declared: gain {gain:+.2f} per doubling, AR(1) {phi}, sd {PLATEAU_SD}: {hits}/{draws} = {hits / draws:.3f}"


def plateau_cases(draws: int) -> Iterator[Result]:
    for phi in (0.0, 0.3, 0.6):
        for rho_from in ("tail", "series"):
            yield measure(f"plateau level: 8 tail points of 15, AR(1) {phi}, rho from the {rho_from}", draws,
                          plateau_case(phi, rho_from))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=1000, help="simulated series per case")
    ap.add_argument("--only", choices=("ceiling", "plateau", "entropy", "across"), default=None)
    args = ap.parse_args()
    groups = {"ceiling": ceiling_cases, "plateau": plateau_cases, "entropy": entropy_cases, "across": across_cases}
    print(f"{'case':<72} {'draws':>5}  {'95% coverage [95% CI]':<22} {'':<4}  {'90%':>6}  {'99%':>6}  {'s/fit':>7}")
    for name, cases in groups.items():
        if args.only in (None, name):
            for result in cases(args.draws):
                print(result.line(), flush=True)
            if name == "plateau":
                for gain in (0.0, 0.05, 0.1, 0.2):
                    print(plateau_declared(args.draws, gain), flush=True)


if __name__ == "__main__":
    main()
