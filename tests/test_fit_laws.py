"""The entropy law, the KL collapse threshold (three methods) and the across-run regression, on known truth."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from ceiling.fit import (
    AcrossRunsFit,
    CollapseFit,
    EntropyLawFit,
    fit_across_runs,
    fit_collapse,
    fit_entropy_law,
    from_dict,
)
from ceiling.io import dumps


def ar1(n: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    e = np.zeros(n)
    e[0] = rng.normal(0, sd)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return e


# ---------------------------------------------------------------------------------------- entropy law
def test_entropy_law_recovers_ceiling_with_autocorrelated_noise() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(200, dtype=float)
    h = 0.1 + 1.4 * np.exp(-steps / 60)  # entropy collapses during RL
    a, b = 0.15, 0.85
    r = -a * np.exp(h) + b + ar1(steps.size, 0.6, 0.01, rng)
    fit = fit_entropy_law(h, r, steps=steps)
    assert fit.identifiable, fit.reasons
    assert fit.ci_low <= b - a <= fit.ci_high
    assert abs(fit.params["a"] - a) < 0.02
    # the interval is Newey-West's, not OLS's: with AR(1) 0.6 noise its standard error is ~1.6x the OLS one
    # (the covariance itself is computed by hand in test_calibration.py)
    design = np.column_stack([np.ones_like(h), np.exp(h)])
    beta = np.linalg.lstsq(design, r, rcond=None)[0]
    ols = np.linalg.inv(design.T @ design) * np.sum((r - design @ beta) ** 2) / (h.size - 2)
    g = np.array([1.0, 1.0])
    assert np.sqrt(g @ fit.cov @ g) > 1.3 * np.sqrt(g @ ols @ g)
    assert fit.ci_high - fit.ci_low < 0.02  # and not wider than it has to be (0.006 here)
    assert fit.backtest["rmse"] is not None and fit.backtest["rmse"] < 0.05
    assert fit.backtest["n_fit"] == int(np.sum(steps <= 0.15 * 199))
    c, lo, hi = fit.predict([0.0, 1.0], band="prediction")
    assert abs(c[0] - fit.estimate) < 1e-12 and np.all(lo < c) and np.all(c < hi)
    back = from_dict(json.loads(dumps(fit.to_dict())))
    assert isinstance(back, EntropyLawFit)
    np.testing.assert_allclose(back.predict([0.3, 0.9], band="confidence"), fit.predict([0.3, 0.9], band="confidence"))


def test_entropy_law_without_trade_off_is_not_identifiable() -> None:
    rng = np.random.default_rng(1)
    h = rng.uniform(0.2, 1.2, 100)
    r = 0.5 + rng.normal(0, 0.02, 100)
    fit = fit_entropy_law(h, r)
    assert not fit.identifiable
    assert any("trade-off" in x for x in fit.reasons)


def test_entropy_law_bad_input() -> None:
    with pytest.raises(CeilingError, match="constant"):
        fit_entropy_law([0.5] * 10, np.linspace(0, 1, 10))
    with pytest.raises(CeilingError, match="NaN"):
        fit_entropy_law([0.5, np.nan, 0.3, 0.2, 0.1, 0.05], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


# ---------------------------------------------------------------------------------------- collapse
def gao_series(rng: np.random.Generator, n: int = 150, alpha: float = 0.10, beta: float = 0.05,
               noise: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Unverified score peaking at KL* = exp(2 (alpha / beta - 1)); verified score rising throughout."""
    kl_star = float(np.exp(2 * (alpha / beta - 1)))
    kl = np.linspace(0, 4 * kl_star, n)
    d = np.sqrt(kl)
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1)), 0)
    u = 0.3 + alpha * d - beta * dlogd + ar1(n, 0.3, noise, rng)
    v = 0.2 + 0.5 * (1 - np.exp(-kl / kl_star)) + rng.normal(0, noise, n)
    return kl, u, v, kl_star


def test_planted_over_optimisation_peak_is_recovered_within_10_percent() -> None:
    rng = np.random.default_rng(0)
    kl, u, v, kl_star = gao_series(rng)
    fit = fit_collapse(kl, u, v, n_boot=400, n_null=199)
    assert fit.detected and fit.p_value < 0.05
    gao = fit.methods["gao"]
    assert gao["detected"]
    assert abs(gao["estimate"] / kl_star - 1) < 0.10
    assert gao["ci_low"] <= kl_star <= gao["ci_high"]
    assert abs(fit.estimate / kl_star - 1) < 0.10
    seg = fit.methods["segmented"]
    assert seg["detected"] and seg["slope_after"] < 0
    assert 0 < seg["estimate"] < kl.max()
    assert set(fit.methods) == {"gao", "segmented", "sign"}
    center, lo, hi = fit.predict([kl_star], band="confidence")
    assert lo[0] <= center[0] <= hi[0]
    assert "segmented" in fit.summary() and "DETECTED" in fit.summary()
    back = from_dict(json.loads(dumps(fit.to_dict())))
    assert isinstance(back, CollapseFit) and back.detected and back.estimate == pytest.approx(fit.estimate)
    np.testing.assert_allclose(back.predict([1.0, 5.0]), fit.predict([1.0, 5.0]))


def test_no_threshold_is_detected_at_no_more_than_nominal_rate() -> None:
    """Series with no threshold (flat, steadily declining, or a smooth saturating rise; AR(1) noise up to
    phi = 0.8, where a plain breakpoint fit finds a "break" almost every time): the false-positive rate."""
    rng = np.random.default_rng(123)
    n, reps = 100, 90
    kl = np.linspace(0, 20, n)
    shapes = [np.zeros(n), -0.004 * kl, 0.1 * (1 - np.exp(-kl / 4))]
    detections = 0
    for r in range(reps):
        u = 0.4 + shapes[r % 3] + ar1(n, [0.0, 0.5, 0.8][(r // 3) % 3], 0.015, rng)
        v = 0.3 + 0.02 * kl + rng.normal(0, 0.015, n)
        detections += fit_collapse(kl, u, v, n_boot=100, n_null=99, seed=r).detected
    # nominal 5%; 90 draws give a binomial sd of 2.3 points, so allow 5% + 2 sd
    assert detections / reps <= 0.10


def test_collapse_against_steps_is_labelled() -> None:
    rng = np.random.default_rng(3)
    _, u, v, _ = gao_series(rng, n=80)
    steps = np.arange(80, dtype=float)
    fit = fit_collapse(steps, u, v, x_label="step", n_boot=200, n_null=99)
    assert fit.x_label == "step"
    assert any("KL not logged" in r for r in fit.reasons)
    assert 0.0 <= fit.p_value <= 1.0


def test_sign_method_finds_opposite_moves_after_threshold() -> None:
    rng = np.random.default_rng(5)
    n = 240
    kl = np.linspace(0, 24, n)
    shocks = rng.normal(0, 0.02, n)
    late = kl > 12
    dv = shocks
    du = np.where(late, -shocks, shocks) + rng.normal(0, 0.005, n)
    v = 0.3 + np.cumsum(dv)
    u = 0.4 + np.cumsum(du)
    sign = fit_collapse(kl, u, v, n_boot=100, n_null=99).methods["sign"]
    corrs = [b["corr"] for b in sign["bins"]]
    assert corrs[0] > 0.5 and corrs[-1] < -0.5
    assert sign["detected"]
    assert 6 <= sign["estimate"] <= 18


def test_collapse_bad_input() -> None:
    with pytest.raises(CeilingError, match="too few"):
        fit_collapse(np.arange(5.0), np.arange(5.0))
    with pytest.raises(CeilingError, match="NaN"):
        fit_collapse(np.arange(20.0), np.r_[np.arange(19.0), np.nan])
    with pytest.raises(CeilingError, match="constant"):
        fit_collapse(np.arange(20.0), np.ones(20))
    with pytest.raises(CeilingError, match="length"):
        fit_collapse(np.arange(20.0), np.arange(20.0), np.arange(10.0))


# ---------------------------------------------------------------------------------------- across runs
def across_table(rng: np.random.Generator, k: int = 9) -> pd.DataFrame:
    cov = np.linspace(0.3, 0.9, k)
    ent = 0.5 + 1.5 * cov + rng.normal(0, 0.05, k)
    se = rng.uniform(0.005, 0.02, k)
    ceiling = 0.3 + 0.5 * cov + rng.normal(0, se)
    return pd.DataFrame({"run": [f"r{i}" for i in range(k)], "ceiling": ceiling, "ci_low": ceiling - 1.96 * se,
                         "ci_high": ceiling + 1.96 * se, "identifiable": True, "base_pass@kmax": cov,
                         "base_entropy": ent})


def test_across_runs_regression_recovers_slope_and_predicts_from_base() -> None:
    rng = np.random.default_rng(0)
    table = across_table(rng)
    table.loc[0, "identifiable"] = False
    fit = fit_across_runs(table, measures=["base_pass@kmax", "base_entropy"])
    assert fit.primary == "base_pass@kmax"
    assert fit.ci_low <= 0.5 <= fit.ci_high and fit.detected and fit.identifiable
    assert fit.ci_high - fit.ci_low < 0.2  # not merely wide enough to hold the truth (0.11 here)
    assert fit.excluded and fit.excluded[0].startswith("r0")
    reg = fit.regressions["base_pass@kmax"]
    assert reg["k"] == 8 and reg["loo_rmse"] is not None and reg["loo_rmse"] < 0.05
    c, lo, hi = fit.predict([0.6], band="prediction")
    assert lo[0] < 0.6 < hi[0] and abs(c[0] - 0.6) < 0.03
    _, clo, chi = fit.predict([0.6], band="confidence")
    assert hi[0] - lo[0] > chi[0] - clo[0]
    back = from_dict(json.loads(dumps(fit.to_dict())))
    assert isinstance(back, AcrossRunsFit)
    np.testing.assert_allclose(back.predict([0.4, 0.8], band="prediction"), fit.predict([0.4, 0.8], band="prediction"))
    assert "meta-regression" in fit.summary()


def test_across_runs_with_too_few_runs() -> None:
    rng = np.random.default_rng(1)
    fit = fit_across_runs(across_table(rng, k=3), measures=["base_pass@kmax"])
    assert not fit.identifiable and fit.reasons
    with pytest.raises(CeilingError, match="nothing to regress"):
        fit_across_runs(across_table(rng, k=2), measures=["base_pass@kmax"])
    with pytest.raises(CeilingError, match="missing column"):
        fit_across_runs(pd.DataFrame({"x": [1.0]}))
