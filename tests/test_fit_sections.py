"""The words and table rows each fit result writes about itself (`headline`, `rows`, `warnings`, `note`), checked
against the result's own numbers formatted by hand, and the shared formatting helpers on hand-written cases."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ceiling.fit import CurveFitter, fit_across_runs, fit_entropy_law
from ceiling.fit.common import (
    TABLE_COLUMNS,
    NotAvailable,
    first_reason,
    fmt,
    fnum,
    interval,
    join_reasons,
    table_row,
)


def test_number_formatting_by_hand() -> None:
    assert fmt(None) == "-" and fmt(float("nan")) == "-" and fmt(float("inf")) == "-"
    assert fmt(3.14159) == "3.142" and fmt(-0.5) == "-0.500" and fmt(0) == "0.000"
    assert fmt(12.3456) == "12.35" and fmt(123.456) == "123.5" and fmt(4321.0) == "4321"
    assert fmt(123456.0) == "1.235e+05" and fmt(0.000123) == "1.230e-04" and fmt(0.001) == "0.001"
    assert fmt(2.5, digits=1) == "2.5" and fmt("abc") == "abc"
    assert interval(0.1, 0.25) == "[0.100, 0.250]" and interval(None, 1) == "-" and interval(1, None) == "-"
    assert join_reasons(["a", "", None, "b"]) == "a; b" and join_reasons(None) == ""
    assert first_reason([]) == "no reason recorded" and first_reason(["", "x", "y"]) == "x"
    row = table_row("s", "q", 0.5, 0.4, 0.6, "m", "v", "d")
    assert list(row) == TABLE_COLUMNS
    assert row == {"section": "s", "quantity": "q", "estimate": "0.500", "95% interval": "[0.400, 0.600]",
                   "method": "m", "verdict": "v", "diagnostics": "d"}


def _sigmoid_data(n: int = 60, stop: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(1e12, stop * 1e14, n)
    y = 0.2 + (0.8 - 0.2) / (1 + (2e13 / x) ** 1.8) + rng.normal(0, 0.01, n)
    return x, y


def test_curve_fit_writes_its_own_numbers() -> None:
    x, y = _sigmoid_data()
    fit = CurveFitter(n_boot=200, a_bounds=(0.0, 1.0)).fit(x, y)
    assert fit.identifiable
    assert fit.headline() == (f"{fmt(fit.estimate)}, 95% interval {interval(fit.ci_low, fit.ci_high)} "
                              f"(sigmoid fit of verified/reward against compute)")
    assert fit.note() is None and fit.warnings() == []
    rows = fit.rows()
    top = rows[0]
    assert top["section"] == "ceiling" and top["quantity"] == "A: ceiling of verified reward (sigmoid)"
    assert top["estimate"] == fmt(fit.estimate) and top["95% interval"] == interval(fit.ci_low, fit.ci_high)
    assert top["verdict"] == "identifiable" and top["method"] == fit.method
    n_early = len(fit.window["excluded_x"])
    assert top["diagnostics"].startswith(f"{fit.data['n']} points fitted, {n_early} early point")
    assert f"RMSE {fmt(fit.stats['rmse'])}" in top["diagnostics"]
    assert f"{fit.bootstrap['n_not_converged']} of 200 refits not converged" in top["diagnostics"]
    params = {r["quantity"]: r for r in rows[1:]}
    assert set(params) == {f"{k} (sigmoid)" for k in fit.params if k != "A"}
    for k, v in fit.params.items():
        if k != "A":
            assert params[f"{k} (sigmoid)"]["estimate"] == fmt(v)
            assert params[f"{k} (sigmoid)"]["95% interval"] == interval(*fit.ci[k])


def test_curve_fit_that_is_not_identifiable_says_why_everywhere() -> None:
    x, y = _sigmoid_data(stop=0.2)  # stops before the midpoint
    fit = CurveFitter(n_boot=100, a_bounds=(0.0, 1.0)).fit(x, y)
    assert not fit.identifiable and fit.reasons and len(fit.reason_codes) == len(fit.reasons)
    more = len(fit.reasons) - 1
    head = fit.headline()
    assert head.startswith(f"not identifiable: {fit.reasons[0]}")
    assert (f"(and {more} more reason" in head) == (more > 0)
    assert head.endswith(f"The point fit A = {fmt(fit.estimate)} (sigmoid fit of verified/reward against compute) "
                         "is not a forecast.")
    assert fit.note() == f"ceiling not identifiable: {fit.reasons[0]}"
    assert fit.warnings() == [f"ceiling not identifiable: {r}" for r in fit.reasons]
    assert fit.rows()[0]["verdict"] == "NOT identifiable: " + "; ".join(fit.reasons)
    fit.extra = {"notes": ["the metric collapses after x", fit.reasons[0]]}
    assert fit.warnings()[-1] == "ceiling fit: the metric collapses after x"  # a note already said is not repeated


def test_entropy_law_rows_headline_and_range() -> None:
    rng = np.random.default_rng(1)
    h = np.linspace(1.2, 0.2, 40)
    r = -0.3 * np.exp(h) + 1.1 + rng.normal(0, 0.005, h.size)
    fit = fit_entropy_law(h, r, steps=np.arange(h.size), max_ci_width=1.0)
    assert fit.identifiable, fit.reasons
    assert fit.headline() == f"{fmt(fit.estimate)}, 95% interval {interval(fit.ci_low, fit.ci_high)}"
    rows = fit.rows()
    assert [x["quantity"] for x in rows] == ["R at H = 0 (b - a): ceiling when entropy is spent", "a", "b"]
    assert rows[1]["estimate"] == fmt(fit.params["a"]) and rows[2]["95% interval"] == interval(*fit.ci["b"])
    assert f"{h.size} steps" in rows[0]["diagnostics"] and rows[0]["verdict"] == "identifiable"
    bounded = fit_entropy_law(h, r, steps=np.arange(h.size), max_ci_width=1.0, y_bounds=(0.0, 0.75))
    assert not bounded.identifiable and "outside the score's range [0, 0.75]" in bounded.reasons[-1]
    assert bounded.note() == "ceiling at H = 0 not identifiable: " + bounded.reasons[0]
    assert bounded.warnings() == [f"entropy-law ceiling not identifiable: {x}" for x in bounded.reasons]


def test_across_runs_rows() -> None:
    table = pd.DataFrame({"run": [f"r{i}" for i in range(6)], "base_entropy": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                          "ceiling": [0.50, 0.56, 0.61, 0.69, 0.74, 0.80], "ci_low": [0.47, 0.53, 0.58, 0.66, 0.71, 0.77],
                          "ci_high": [0.53, 0.59, 0.64, 0.72, 0.77, 0.83], "identifiable": [True] * 6})
    fit = fit_across_runs(table, measures=["base_entropy"])
    reg = fit.regressions["base_entropy"]
    rows = fit.rows()
    assert rows[0]["quantity"] == "slope of the ceiling on base_entropy"
    assert rows[0]["estimate"] == fmt(reg["slope"]) and rows[0]["95% interval"] == interval(*reg["slope_ci"])
    assert rows[1]["quantity"] == "intercept (base_entropy)" and rows[1]["estimate"] == fmt(reg["intercept"])
    assert rows[0]["verdict"] == ("detected" if fit.detected else "")
    assert f"{reg['k']} runs" in rows[0]["diagnostics"]
    assert fit.warnings() == [f"across runs: {r}" for r in fit.reasons]


def test_not_available_section_words() -> None:
    na = NotAvailable("entropy_law", "policy/entropy is not logged")
    assert na.headline() == "not fitted: policy/entropy is not logged"
    assert na.warnings() == ["entropy law not fitted: policy/entropy is not logged"]
    assert na.rows() == [table_row("entropy law", "-", None, None, None, "-", "not fitted",
                                   "policy/entropy is not logged")]


# ------------------------------------------------------------------------------ numbers behind the words
def test_fnum_and_not_available_round_trip() -> None:
    assert fnum(None) == "-" and fnum(float("nan")) == "-" and fnum(1.23456) == "1.235" and fnum(2.0, 2) == "2"
    back = NotAvailable.from_dict({"kind": "not_available", "reasons": ["a", "b"]}, "ceiling")
    assert back.reason == "a; b" and back.details == {} and back.section == "ceiling"


def test_forms_jacobians_match_finite_differences_and_power_natural_scale() -> None:
    from ceiling.fit.forms import FORMS, get_form

    u = np.linspace(0.05, 1.0, 9)
    for name in FORMS:
        fm = get_form(name)
        rng = np.random.default_rng(0)
        theta = np.array([[0.8, 0.3, 1.5][: len(fm.theta_names)]]) if name == "power" else \
            np.array([np.abs(rng.normal(0.5, 0.1, len(fm.theta_names))) + 0.2])
        jac = fm.jac(u, theta)[0]
        for j in range(theta.shape[1]):
            step = np.zeros_like(theta)
            step[0, j] = 1e-6
            num = (fm.f(u, theta + step) - fm.f(u, theta - step))[0] / 2e-6
            np.testing.assert_allclose(jac[:, j], num, rtol=1e-4, atol=1e-7, err_msg=f"{name} d/d{fm.theta_names[j]}")
    power = get_form("power")
    nat = power.natural(np.array([[0.8, 0.3, 1.5]]), x_scale=100.0)[0]
    # R = A - D' (x / s)^-B = A - D' s^B x^-B: the natural D is D' s^B
    assert nat[0] == 0.8 and abs(nat[1] - 0.3 * 100.0**1.5) < 1e-9 and nat[2] == 1.5
    assert power.needs_positive_x


def test_huber_loss_and_weight_by_hand() -> None:
    from ceiling.fit.solve import irls_weight, rho

    z = np.array([0.25, 1.0, 1.5, 4.0])
    np.testing.assert_allclose(rho(z, "huber"), [0.25, 1.0, 2 * np.sqrt(1.5) - 1, 3.0])
    np.testing.assert_allclose(irls_weight(z, "huber"), [1.0, 1.0, 1 / np.sqrt(1.5), 0.5])
    np.testing.assert_allclose(rho(z, "soft_l1"), 2 * (np.sqrt(1 + z) - 1))


def test_curve_fit_bands_draws_summary_and_round_trip() -> None:
    import pytest

    from ceiling.errors import CeilingError
    from ceiling.fit import CurveFit

    x, y = _sigmoid_data(n=40, seed=3)
    y = np.clip(y + 0.17, 0, 1)  # a plateau near the bound: the prediction band would leave [0, 1] unclipped
    fit = CurveFitter(n_boot=1200, a_bounds=(0.0, 1.0)).fit(x, y)
    assert fit.draws.shape == (1000, 4)  # at most MAX_STORED_DRAWS rows are stored
    grid = np.geomspace(x[0], 10 * x[-1], 30)
    _, lo, hi = fit.predict(grid, band="prediction")
    assert hi.max() <= 1.0 and lo.min() >= 0.0
    np.testing.assert_array_equal(fit.predict(grid, band="prediction")[2], fit.predict(grid, band="prediction", seed=0)[2])
    with pytest.raises(CeilingError, match="band must be None, 'confidence' or 'prediction'"):
        fit.predict(grid, band="wide")
    for k, (a, b) in fit.ci.items():
        line = next(ln for ln in fit.summary().splitlines() if ln.startswith(f"{k:<8}"))
        assert line.split()[2:] == [fnum(a), fnum(b)]
    back = CurveFit.from_dict(fit.to_dict())
    assert back.loss == fit.loss == "soft_l1" and back.to_dict() == fit.to_dict()
    with pytest.raises(CeilingError, match="constant after the early window"):
        CurveFitter(exclude_frac=0.5).fit(np.arange(1.0, 21.0), np.r_[np.linspace(0.1, 0.5, 10), np.full(10, 0.5)])


def test_form_comparison_table_and_fit_frame_rows() -> None:
    from ceiling.fit import compare_forms, fit_frame

    x, y = _sigmoid_data(n=7, seed=4)  # too few points for some forms after the window: their rows say why
    cmp_ = compare_forms(x, y, fitter=CurveFitter(n_boot=0, exclude_frac=0.0))
    assert list(cmp_.table.columns) == ["form", "lfo_rmse", "aic", "A", "ci_low", "ci_high", "identifiable", "note"]
    steps = np.arange(0, 61)
    xs, ys = _sigmoid_data(n=61, seed=5)
    frame = pd.DataFrame({"run": "r", "step": steps, "compute": xs, "metric": "verified/reward", "value": ys})
    fit = fit_frame(frame, n_boot=100).ceiling
    rows = fit.rows()
    others = [r for r in rows if "(not selected)" in r["quantity"]]
    assert len(others) == len(fit.extra["selection"]["table"]) - 1
    assert all(r["section"] == "ceiling" and r["method"].startswith("same data; leave-future-out") for r in others)
    backtests = [r for r in rows if r["quantity"].startswith("backtest:")]
    assert len(backtests) == len(fit.extra["backtest"]) and all(r["verdict"] == "" for r in backtests)
    for r, b in zip(backtests, fit.extra["backtest"]):
        assert r["section"] == "ceiling" and r["diagnostics"].startswith(f"{b['n_fit']} points fitted, {b['n_test']} scored")
        assert f"A from the early part {fmt(b['A'])} vs {fmt(b['A_full'])} from all" in r["diagnostics"]


def test_detect_collapse_needs_a_sustained_fall() -> None:
    from ceiling.fit.curve import detect_collapse

    x = np.arange(200.0)
    rise = 0.2 + 0.6 * (1 - np.exp(-x / 30))
    dip = rise.copy()
    dip[100:112] = 0.2  # a brief dip, not a collapse
    assert detect_collapse(x, dip) is None
    fall = rise.copy()
    fall[120:] = 0.1
    cut = detect_collapse(x, fall)
    assert cut is not None and 110 <= cut <= 121


def test_entropy_law_band_and_fingerprint_by_hand() -> None:
    from scipy import stats as sps

    rng = np.random.default_rng(2)
    h = np.linspace(1.0, 0.3, 30)
    r = -0.4 * np.exp(h) + 1.2 + rng.normal(0, 0.01, h.size)
    fit = fit_entropy_law(h, r, max_ci_width=1.0)
    grid = np.array([0.0, 0.5])
    center, lo, hi = fit.predict(grid, band="confidence")
    design = np.column_stack([np.ones(2), np.exp(grid)])
    se = np.sqrt(np.einsum("ij,jk,ik->i", design, fit.cov, design))
    np.testing.assert_allclose(hi - center, sps.t.ppf(0.975, fit.dof) * se)
    other = fit_entropy_law(h + 0.01, r, max_ci_width=1.0)
    assert other.data["fingerprint"] != fit.data["fingerprint"]
    assert [row["section"] for row in fit.rows()] == ["entropy law"] * 3
