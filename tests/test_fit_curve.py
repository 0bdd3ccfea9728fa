"""Saturating curve fits: recovery of known truth, intervals, identifiability flags, bad input, round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ceiling.errors import CeilingError
from ceiling.fit import CurveFit, CurveFitter, backtest, compare_forms, fit_curve, from_dict
from ceiling.fit.curve import detect_collapse
from ceiling.io import dumps

# ScaleRL (Khatri et al. 2025) Table 1 parameter sets: (C_mid, B, A)
SCALERL_SETS = [(2542, 1.92, 0.610), (10909, 1.70, 0.645), (4242, 1.65, 0.710), (1675, 1.09, 0.615)]
R0 = 0.2
NOISE = 0.015


def sigmoid(c: np.ndarray, cmid: float, b: float, a: float, r0: float = R0) -> np.ndarray:
    return r0 + (a - r0) / (1.0 + (cmid / c) ** b)


def scalerl_curve(cmid: float, b: float, a: float, rng: np.random.Generator, n: int = 200,
                  rise: float = 0.95, noise: float = NOISE) -> tuple[np.ndarray, np.ndarray]:
    """n checkpoints evenly spaced in compute up to where the true curve has covered `rise` of its climb."""
    cmax = cmid * (rise / (1 - rise)) ** (1 / b)
    c = np.linspace(cmax / n, cmax, n)
    return c, sigmoid(c, cmid, b, a) + rng.normal(0, noise, n)


@pytest.mark.parametrize("cmid,b,a", SCALERL_SETS)
def test_recovers_scalerl_parameter_sets(cmid: float, b: float, a: float) -> None:
    rng = np.random.default_rng(int(cmid))
    c, y = scalerl_curve(cmid, b, a, rng)
    fit = fit_curve(c, y, n_boot=300, seed=1)
    assert fit.identifiable, fit.reasons
    assert abs(fit.estimate - a) < 0.03
    assert fit.ci_low <= a <= fit.ci_high
    assert fit.ci_low < fit.estimate < fit.ci_high
    # holding the truth is not enough: a 95% interval at this noise is about 0.02 wide (bench_fit: median
    # error 0.004-0.006), so one twice too wide fails here; finer miscalibration fails test_calibration.py
    assert 0.005 < fit.ci_high - fit.ci_low < 0.035
    assert abs(fit.params["C_mid"] / cmid - 1) < 0.35


def test_small_accuracy_check() -> None:
    """A modest Monte Carlo on the first set: the error of the point estimate (coverage, with the power to
    tell 95% from 90% and 99%, is tests/test_calibration.py; full size in bench_fit / bench_calibration)."""
    cmid, b, a = SCALERL_SETS[0]
    rng = np.random.default_rng(11)
    errs = []
    for r in range(16):
        c, y = scalerl_curve(cmid, b, a, rng, n=120)
        errs.append(abs(fit_curve(c, y, n_boot=0).estimate - a))
    assert np.median(errs) <= 0.01


def test_curve_stopping_before_midpoint_is_flagged() -> None:
    cmid, b, a = SCALERL_SETS[0]
    rng = np.random.default_rng(5)
    c = np.linspace(50, 0.7 * cmid, 80)
    for _ in range(4):
        fit = fit_curve(c, sigmoid(c, cmid, b, a) + rng.normal(0, NOISE, c.size), n_boot=200)
        assert not fit.identifiable
        assert any("midpoint" in r for r in fit.reasons), fit.reasons
    c = np.linspace(50, 0.5 * cmid, 80)
    fit = fit_curve(c, sigmoid(c, cmid, b, a) + rng.normal(0, NOISE, c.size), n_boot=200)
    assert not fit.identifiable
    assert any("midpoint" in r for r in fit.reasons), fit.reasons


def test_power_law_before_saturation_does_not_claim_a_ceiling() -> None:
    """The classic failure: a power law fitted before saturation reaches for 1.0 where the truth is 0.65."""
    rng = np.random.default_rng(2)
    c = np.linspace(100, 4000, 100)
    y = 0.1 + (0.65 - 0.1) / (1 + (4000 / c) ** 1.5) + rng.normal(0, 0.01, c.size)
    fit = fit_curve(c, y, form="power", n_boot=300)
    assert fit.estimate > 0.8  # the confident wrong number it would otherwise give
    assert not fit.identifiable
    assert len(fit.reasons) >= 2


def test_bands_and_prediction() -> None:
    rng = np.random.default_rng(0)
    c, y = scalerl_curve(2542, 1.92, 0.61, rng)
    fit = fit_curve(c, y, n_boot=300)
    x = np.array([1000.0, 5000.0, 1e5])
    center = fit.predict(x)
    mid, lo, hi = fit.predict(x, band="confidence")
    _, plo, phi = fit.predict(x, band="prediction")
    np.testing.assert_allclose(center, mid)
    assert np.all(lo <= center) and np.all(center <= hi)
    assert np.all(phi - plo > hi - lo)  # a new observation scatters more than the curve
    assert abs(center[-1] - fit.estimate) < 0.01  # far out the curve reaches its ceiling
    assert fit.beyond_data(x).tolist() == [False, False, True]
    with pytest.raises(CeilingError):
        fit.predict(x, band="wide")


def test_round_trip_through_json_predicts_identically() -> None:
    rng = np.random.default_rng(1)
    c, y = scalerl_curve(4242, 1.65, 0.71, rng)
    fit = fit_curve(c, y, n_boot=200)
    d = json.loads(dumps(fit.to_dict()))
    for key in ("estimate", "ci_low", "ci_high", "method", "identifiable", "reasons", "form", "loss", "window",
                "bootstrap", "data"):
        assert key in d
    assert d["bootstrap"]["n_boot"] == 200 and d["data"]["fingerprint"].startswith("sha256:")
    back = from_dict(d)
    assert isinstance(back, CurveFit)
    x = np.array([500.0, 4242.0, 30000.0])
    for band in (None, "confidence", "prediction"):
        np.testing.assert_allclose(np.asarray(back.predict(x, band=band)), np.asarray(fit.predict(x, band=band)),
                                   rtol=1e-6)
    assert "A" in back.summary() and "identifiable" in back.summary()


def test_block_length_follows_autocorrelation() -> None:
    rng = np.random.default_rng(4)
    c = np.linspace(100, 20000, 300)
    truth = sigmoid(c, 2542, 1.92, 0.61)
    white = fit_curve(c, truth + rng.normal(0, NOISE, c.size), n_boot=100, resample="block")
    e = np.zeros(c.size)
    for t in range(1, c.size):
        e[t] = 0.8 * e[t - 1] + rng.normal(0, NOISE * 0.6)
    ar = fit_curve(c, truth + e, n_boot=300, resample="block")
    assert white.bootstrap["block"] <= 2
    assert ar.bootstrap["block"] >= 4
    assert ar.stats["lag1_autocorr"] > 0.5
    assert ar.ci_low <= 0.61 <= ar.ci_high


def test_default_ar1_bootstrap_follows_autocorrelation() -> None:
    """The default AR(1) bootstrap: near-zero coefficient and n - p dof on white noise; on AR(1) 0.8 noise a
    coefficient near 0.8, fewer effective dof (n (1 - rho) / (1 + rho) - p, by hand here) and a wider interval
    than the same data get from blocks."""
    rng = np.random.default_rng(4)
    c = np.linspace(100, 20000, 300)
    truth = sigmoid(c, 2542, 1.92, 0.61)
    white = fit_curve(c, truth + rng.normal(0, NOISE, c.size), n_boot=100)
    e = np.zeros(c.size)
    for t in range(1, c.size):
        e[t] = 0.8 * e[t - 1] + rng.normal(0, NOISE * 0.6)
    ar = fit_curve(c, truth + e, n_boot=300)
    blocks = fit_curve(c, truth + e, n_boot=300, resample="block")
    assert white.bootstrap["block"] is None and white.bootstrap["ar1"] < 0.1
    n_white = white.data["n"]
    assert white.bootstrap["dof"] == pytest.approx(n_white * (1 - white.bootstrap["ar1"]) / (1 + white.bootstrap["ar1"]) - 4)
    assert white.bootstrap["dof"] > n_white - 4 - 0.2 * n_white
    rho, n = ar.bootstrap["ar1"], ar.data["n"]
    assert 0.7 < rho < 0.9
    assert ar.bootstrap["dof"] == pytest.approx(n * (1 - rho) / (1 + rho) - 4)
    assert "AR(1) bootstrap" in ar.method and "effective residual dof" in ar.method
    assert ar.ci_high - ar.ci_low > 1.15 * (blocks.ci_high - blocks.ci_low)  # 1.25 on these draws
    assert ar.ci_low <= 0.61 <= ar.ci_high


def test_robust_loss_resists_outliers() -> None:
    rng = np.random.default_rng(9)
    c, y = scalerl_curve(2542, 1.92, 0.61, rng)
    y[-60::10] = 0.0  # failed evaluations logged as zero
    robust = fit_curve(c, y, n_boot=0)
    plain = fit_curve(c, y, n_boot=0, loss="linear")
    assert abs(robust.estimate - 0.61) < abs(plain.estimate - 0.61)
    assert abs(robust.estimate - 0.61) < 0.02


def test_exclusion_window_is_recorded() -> None:
    rng = np.random.default_rng(3)
    c, y = scalerl_curve(2542, 1.92, 0.61, rng, n=100)
    fit = fit_curve(c, y, n_boot=0)
    assert len(fit.window["excluded_x"]) == int(np.sum(c <= 0.05 * c.max()))
    assert fit.data["n"] + len(fit.window["excluded_x"]) == c.size
    fit2 = fit_curve(c, y, n_boot=0, x_min=c[30])
    assert fit2.data["n"] == c.size - 30


def test_form_comparison_and_backtest() -> None:
    rng = np.random.default_rng(3)
    c, y = scalerl_curve(2542, 1.92, 0.61, rng)
    cmp_ = compare_forms(c, y, fitter=CurveFitter(n_boot=100))
    assert set(cmp_.table["form"]) == {"sigmoid", "power", "exponential"}
    assert cmp_.best in cmp_.fits
    assert cmp_.best != "power"  # the power law misses the plateau
    row = cmp_.table.set_index("form")
    assert row.loc["power", "lfo_rmse"] > row.loc["sigmoid", "lfo_rmse"]
    bt = backtest(c, y, fractions=(0.25, 0.75))
    assert list(bt["fraction"]) == [0.25, 0.75]
    assert bt["n_fit"].iloc[0] < bt["n_fit"].iloc[1]
    assert np.all(np.isfinite(bt["rmse"]))
    assert bt["rmse"].iloc[1] < 0.03  # late fits predict the held-out end to about the noise level


def test_exponential_form_recovers_truth() -> None:
    rng = np.random.default_rng(8)
    x = np.linspace(1, 400, 150)
    y = 0.7 + (0.1 - 0.7) * np.exp(-x / 80) + rng.normal(0, 0.01, x.size)
    fit = fit_curve(x, y, form="exponential", n_boot=200, x_label="step")
    assert abs(fit.estimate - 0.7) < 0.02 and fit.identifiable
    assert abs(fit.params["tau"] / 80 - 1) < 0.2
    assert fit.x_label == "step"


def test_detect_collapse() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(1, 301, dtype=float)
    rise = 0.8 * (1 - np.exp(-x / 30))
    y = np.where(x < 200, rise, rise * np.exp(-(x - 200) / 15)) + rng.normal(0, 0.03, x.size)
    cut = detect_collapse(x, y)
    assert cut is not None and 185 <= cut <= 225
    assert detect_collapse(x, rise + rng.normal(0, 0.03, x.size)) is None
    fit = fit_curve(x, y, n_boot=0, x_label="step")
    assert not fit.identifiable  # a collapse is not a saturating rise


@pytest.mark.parametrize("x,y,match", [
    ([1, 2, 3, 4, 5, 6, 7, 8], [0.1, 0.2, np.nan, 0.4, 0.5, 0.5, 0.5, 0.5], "NaN"),
    ([1, 2, 3, 3, 5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5], "increasing"),
    ([1, 2, 3], [0.1, 0.2, 0.3], "too few"),
    (list(range(1, 20)), [0.4] * 19, "constant"),
    ([1, 2, 3, 4], [0.1, 0.2], "lengths differ"),
])
def test_bad_input_gives_one_line_errors(x: list, y: list, match: str) -> None:
    with pytest.raises(CeilingError, match=match) as exc:
        fit_curve(x, y)
    assert "\n" not in str(exc.value)


def test_unknown_form_and_loss() -> None:
    x = np.linspace(1, 10, 20)
    with pytest.raises(CeilingError, match="form"):
        fit_curve(x, x, form="logistic")
    with pytest.raises(CeilingError, match="loss"):
        fit_curve(x, x, loss="cauchy")


def test_fixed_r0_is_respected() -> None:
    rng = np.random.default_rng(12)
    c, y = scalerl_curve(4242, 1.65, 0.71, rng, n=120)
    fit = fit_curve(c, y, n_boot=100, r0=R0)
    assert fit.params["R0"] == R0 and fit.ci["R0"] == (R0, R0)
    assert abs(fit.estimate - 0.71) < 0.03 and fit.window["r0_fixed"] == R0
    with pytest.raises(CeilingError, match="no R0"):
        fit_curve(c, y, form="power", r0=R0)
