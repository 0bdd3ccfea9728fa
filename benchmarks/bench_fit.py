"""Benchmark: our sigmoid fit (with its 1000-resample bootstrap) against ScaleRL's own fitting procedure.

Usage:
    python benchmarks/bench_fit.py                  # full run (a few minutes on 2 cores)
    python benchmarks/bench_fit.py --smoke          # about a minute; what CI may run

Simulated curves: ScaleRL's (Khatri et al. 2025) Table 1 parameter sets, R0 = 0.2, 200 checkpoints evenly
spaced in compute up to where the true curve has covered 95% of its rise, Gaussian noise sd 0.015.

ScaleRL's reference procedure, implemented here from its description: a grid over A from 0.450 to 0.800 in
steps of 0.005 and over 100 linearly spaced C_mid values (spanning the observed compute), B fitted by
scipy's curve_fit at each grid point, the best by sum of squared residuals. It is given the true R0 (our fit
estimates R0), and it returns a point estimate only (ours also returns bootstrap intervals).

The faithful reference takes minutes per curve here, so its time is measured on a few draws (`--ref-draws`);
its error over all draws is measured with `scalerl_reference_fast`, the same estimator computed by a
vectorised golden-section search over B (checked equal to the faithful one on the shared draws).

Printed side by side, per parameter set: median |A_hat - A| and the time per curve for both, their ratios,
and our 95% interval coverage of the true A over many draws (target between 0.90 and 0.99). Also the time of
one sigmoid fit with a 1000-resample bootstrap on 500 points (target about 2 s or less).
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from ceiling.fit import fit_curve

SETS = [(2542.0, 1.92, 0.610), (10909.0, 1.70, 0.645), (4242.0, 1.65, 0.710), (1675.0, 1.09, 0.615)]
R0, NOISE = 0.2, 0.015


def curve(c: np.ndarray, cmid: float, b: float, a: float, r0: float = R0) -> np.ndarray:
    return r0 + (a - r0) / (1.0 + (cmid / c) ** b)


def simulate(cmid: float, b: float, a: float, rng: np.random.Generator, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    cmax = cmid * 19.0 ** (1.0 / b)  # 95% of the rise
    c = np.linspace(cmax / n, cmax, n)
    return c, curve(c, cmid, b, a) + rng.normal(0.0, NOISE, n)


def scalerl_reference(c: np.ndarray, y: np.ndarray, r0: float, thin: int = 1) -> tuple[float, float, float]:
    """Grid over (A, C_mid), B by curve_fit at each point, best by SSR. Returns (A, C_mid, B).

    `thin` > 1 keeps every thin-th grid value (smoke runs only; the timing is then scaled back up).
    """
    best = (np.inf, np.nan, np.nan, np.nan)
    a_grid = np.arange(0.450, 0.800 + 1e-9, 0.005)[::thin]
    cmid_grid = np.linspace(c.min(), c.max(), 100)[::thin]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for a in a_grid:
            for cm in cmid_grid:
                def f(x: np.ndarray, b: float, a: float = a, cm: float = cm) -> np.ndarray:
                    return r0 + (a - r0) / (1.0 + (cm / x) ** b)
                try:
                    (b,), _ = curve_fit(f, c, y, p0=[1.5], bounds=(0.05, 10.0))
                except (RuntimeError, ValueError):
                    continue
                ssr = float(np.sum((y - f(c, b)) ** 2))
                if ssr < best[0]:
                    best = (ssr, a, cm, b)
    return best[1], best[2], best[3]


def scalerl_reference_fast(c: np.ndarray, y: np.ndarray, r0: float) -> tuple[float, float, float]:
    """The same estimator as `scalerl_reference`, computed fast: min over B by a vectorised golden-section
    search in log B for all 7100 (A, C_mid) grid points at once (instead of 7100 curve_fit calls).

    Used only to measure the reference's *error* over many draws; its *time* is always measured with the
    faithful curve_fit version (`scalerl_reference`), and the two are compared on the shared draws.
    """
    a_grid = np.arange(0.450, 0.800 + 1e-9, 0.005)
    cmid_grid = np.linspace(c.min(), c.max(), 100)
    aa, cc = (g.ravel() for g in np.meshgrid(a_grid, cmid_grid, indexing="ij"))
    logr = np.log(cc[:, None] / c[None, :])  # (G, n)

    def ssr(logb: np.ndarray) -> np.ndarray:
        pred = r0 + (aa - r0)[:, None] / (1.0 + np.exp(np.clip(np.exp(logb)[:, None] * logr, -700, 700)))
        return ((y[None, :] - pred) ** 2).sum(axis=1)

    lo, hi = np.full(aa.size, np.log(0.05)), np.full(aa.size, np.log(10.0))
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = ssr(x1), ssr(x2)
    for _ in range(30):  # the bracket shrinks to 0.618^30 ~ 5e-7 of its width
        left = f1 < f2
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x2n = np.where(left, x1, lo + g * (hi - lo))
        x1n = np.where(left, hi - g * (hi - lo), x2)
        x1, x2 = x1n, x2n
        f1, f2 = ssr(x1), ssr(x2)
    logb = 0.5 * (lo + hi)
    best = int(np.argmin(ssr(logb)))
    return float(aa[best]), float(cc[best]), float(np.exp(logb[best]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=200, help="draws per parameter set for our fit (coverage)")
    ap.add_argument("--ref-draws", type=int, default=1, help="draws per set timed with the faithful reference")
    ap.add_argument("--fast-draws", type=int, default=25,
                    help="draws per set whose reference error is measured (with the fast equivalent)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--offgrid", action="store_true",
                    help="shift each draw's true A by U(-0.0025, 0.0025) so it does not sit on the reference's grid")
    ap.add_argument("--ours-r0", action="store_true", help="give our fit the true R0 too (as the reference gets)")
    ap.add_argument("--smoke", action="store_true", help="tiny run: 5 draws, 1 reference draw, first set only")
    args = ap.parse_args()
    sets = SETS[:1] if args.smoke else SETS
    draws, ref_draws = (5, 1) if args.smoke else (args.draws, args.ref_draws)
    fast_draws = 5 if args.smoke else args.fast_draws
    thin = 5 if args.smoke else 1
    rng = np.random.default_rng(args.seed)

    # warm-up (imports, BLAS threads)
    c0, y0 = simulate(*SETS[0], rng)
    fit_curve(c0, y0, n_boot=50)

    c5 = np.linspace(20.0, 20000.0, 500)
    y5 = curve(c5, *SETS[0]) + rng.normal(0, NOISE, c5.size)
    t, tc = time.perf_counter(), time.process_time()
    fit_curve(c5, y5, n_boot=1000)
    t500, c500 = time.perf_counter() - t, time.process_time() - tc
    print(f"sigmoid fit + 1000-resample bootstrap on 500 points: {t500:.2f} s wall, {c500:.2f} s CPU "
          "(target <= ~2 s)\n")

    header = (f"{'C_mid':>7} {'B':>5} {'A':>6} | {'ours err':>9} {'ref err':>8} {'err ratio':>9} | "
              f"{'ours s':>7} {'ref s':>7} {'speed-up':>8} | {'coverage':>8} {'ident':>6}")
    print(header)
    print("-" * len(header))
    all_ratio_t, all_err_o, all_err_r = [], [], []
    for cmid, b, a in sets:
        err_o, cov, ident, t_o = [], [], [], []
        err_r, t_r, err_o_same, err_fast, agree, err_o_fast = [], [], [], [], [], []
        a_set = a
        for i in range(draws):
            a = a_set + (rng.uniform(-0.0025, 0.0025) if args.offgrid else 0.0)
            c, y = simulate(cmid, b, a, rng)
            t = time.perf_counter()
            fit = fit_curve(c, y, n_boot=args.n_boot, seed=i, r0=R0 if args.ours_r0 else None)
            t_o.append(time.perf_counter() - t)
            err_o.append(abs(fit.estimate - a))
            cov.append(fit.ci_low <= a <= fit.ci_high)
            ident.append(fit.identifiable)
            a_fast = np.nan
            if i < max(fast_draws, ref_draws):
                a_fast = scalerl_reference_fast(c, y, R0)[0]
                err_fast.append(abs(a_fast - a))
                err_o_fast.append(err_o[-1])
            if i < ref_draws:  # the faithful reference on the very same curves
                t = time.perf_counter()
                a_ref, _, _ = scalerl_reference(c, y, R0, thin=thin)
                t_r.append((time.perf_counter() - t) * thin**2)
                err_r.append(abs(a_ref - a))
                err_o_same.append(err_o[-1])
                agree.append(abs(a_ref - a_fast) < 1e-9)
        a = a_set
        eo = float(np.median(err_o_same)) if err_o_same else float("nan")
        er = float(np.median(err_r)) if err_r else float("nan")
        speed = float(np.median(t_r) / np.median(t_o)) if t_r else float("nan")
        all_ratio_t.append(speed)
        ratio = f"{eo / er:9.2f}" if er > 1e-9 else f"{'ref=0':>9}"
        t_ref = float(np.median(t_r)) if t_r else float("nan")
        print(f"{cmid:7.0f} {b:5.2f} {a:6.3f} | {eo:9.4f} {er:8.4f} {ratio} | "
              f"{np.median(t_o):7.3f} {t_ref:7.2f} {speed:7.0f}x | {np.mean(cov):8.3f} {np.mean(ident):6.2f}")
        ef, eof = float(np.median(err_fast)), float(np.median(err_o_fast))
        print(f"{'':20} | ours over all {draws} draws: median |A_hat - A| {np.median(err_o):.4f} (target <= 0.01)")
        print(f"{'':20} | on {len(err_fast)} shared draws: ours {eof:.4f} vs reference {ef:.4f}, error ratio "
              f"{eof / max(ef, 1e-12):.2f} (fast reference = faithful on {sum(agree)}/{len(agree)} timed draws)")
        all_err_o += err_o_fast
        all_err_r += err_fast
    print("-" * len(header))
    print(f"overall on the shared draws: median error ours {np.median(all_err_o):.4f} vs reference "
          f"{np.median(all_err_r):.4f}; speed-up (median of sets) {np.median(all_ratio_t):.0f}x (target >= 20x)")
    print(f"ours: R0 {'given' if args.ours_r0 else 'free'}, 1000-resample circular block bootstrap with intervals; reference: true R0 given, "
          "point estimate only" + ("" if args.offgrid else ", and every true A lies exactly on its 0.005 grid"))
    if thin > 1:
        print(f"(smoke: reference grid thinned {thin}x per axis, its time scaled by {thin**2}; errors not comparable)")


if __name__ == "__main__":
    main()
