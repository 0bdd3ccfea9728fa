"""The plateau (the level a run holds over its last doubling of x) and a ceiling at the metric's maximum."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal

from ceiling.errors import CeilingError
from ceiling.fit import CurveFitter, compare_forms, from_dict
from ceiling.io import dumps

X = np.arange(20.0, 320.0, 20.0)  # 15 evaluations, as a 300-step run checkpointed every 20 steps


def _ar1(n: int, rho: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    e = rng.normal(0.0, sd * np.sqrt(1.0 - rho**2), n + 50)
    e[0] = rng.normal(0.0, sd)
    return signal.lfilter([1.0], [1.0, -rho], e)[50:]


def test_plateau_numbers_are_the_tail_mean_and_the_log2_slope() -> None:
    rng = np.random.default_rng(3)
    y = 0.4 + 0.02 * rng.standard_normal(X.size)
    fit = CurveFitter(form="plateau", n_boot=200).fit(X, y)
    tail = X >= X.max() / 2  # 160 ... 300: the last doubling
    assert fit.data["n"] == 8 and fit.params["C_from"] == 160.0
    assert fit.estimate == pytest.approx(y[tail].mean(), abs=1e-12)
    slope = np.polyfit(np.log2(X[tail]), y[tail], 1)[0]
    assert fit.stats["gain_per_doubling"][0] == pytest.approx(slope, abs=1e-12)
    lo, hi = fit.stats["gain_per_doubling"][1:]
    assert lo < slope < hi
    assert fit.ci_low < fit.estimate < fit.ci_high


# cipher on tiny-cipher-low, seed 1, of the sweep evaluated on 24 prompts (the reward jumps before the first
# evaluation and then holds level): held-out reward at steps 0, 20, ..., 300
CIPHER_LOW = [0.138, 0.241, 0.277, 0.255, 0.276, 0.279, 0.241, 0.245, 0.285, 0.273, 0.285, 0.281, 0.288, 0.289,
              0.284, 0.289]


def test_flat_from_the_start_series_gets_the_plateau_and_the_rising_forms_do_not() -> None:
    """Every rising form admits almost any ceiling on this series (a slow rise fits a level one); the plateau
    says where it is."""
    x = np.arange(0.0, 320.0, 20.0)
    y = np.array(CIPHER_LOW)
    cmp_ = compare_forms(x, y, fitter=CurveFitter(n_boot=300, a_bounds=(0.0, 1.0)))
    assert not any(cmp_.fits[f].identifiable for f in ("sigmoid", "power", "exponential"))
    assert cmp_.best == "plateau"
    fit = cmp_.fits["plateau"]
    assert fit.identifiable
    assert fit.estimate == pytest.approx(np.mean(CIPHER_LOW[8:]), abs=1e-12)  # steps 160-300
    assert 0.27 < fit.ci_low < fit.estimate < fit.ci_high < 0.30
    assert np.isnan(fit.predict([100.0])[0])  # the plateau says nothing about the rise before it
    assert fit.predict([300.0, 3000.0]) == pytest.approx([fit.estimate] * 2)
    _, lo, hi = fit.predict([100.0, 300.0], band="confidence")
    assert np.isnan(lo[0]) and lo[1] <= fit.estimate <= hi[1]
    assert "last doubling" in fit.headline() and "not excluded" in fit.headline()


def test_an_identifiable_rising_form_beats_the_plateau() -> None:
    rng = np.random.default_rng(1)
    x = np.linspace(10, 400, 30)
    y = 0.2 + 0.6 * (1 - np.exp(-x / 60)) + 0.01 * rng.standard_normal(x.size)
    cmp_ = compare_forms(x, y, fitter=CurveFitter(n_boot=300))
    assert cmp_.best != "plateau" and "plateau" not in cmp_.fits
    assert cmp_.fits[cmp_.best].ci_low <= 0.8 <= cmp_.fits[cmp_.best].ci_high


@pytest.mark.parametrize("slope, code", [(0.25, "still_rising"), (-0.25, "declines")])
def test_a_tail_that_still_moves_is_not_a_plateau(slope: float, code: str) -> None:
    rng = np.random.default_rng(2)
    y = 0.5 + slope * np.log2(X / X.max()) + 0.01 * rng.standard_normal(X.size)
    fit = CurveFitter(form="plateau", n_boot=300).fit(X, y)
    assert not fit.identifiable and code in fit.reason_codes


def test_plateau_interval_covers_at_its_level_under_ar1_noise() -> None:
    """Coverage of the level's 95% interval on flat tails with AR(1) noise (rho 0.3): within binomial error of
    95% over 200 draws (about 0.92-0.98); a plain t interval that ignored the autocorrelation covers less."""
    rng = np.random.default_rng(11)
    hits = naive = 0
    reps = 200
    for i in range(reps):
        y = 0.6 + _ar1(X.size, 0.3, 0.02, rng)
        fit = CurveFitter(form="plateau", n_boot=300, seed=i, ar1=0.3).fit(X, y)
        hits += fit.ci_low <= 0.6 <= fit.ci_high
        tail = y[X >= 160]
        half = 2.365 * tail.std(ddof=1) / np.sqrt(tail.size)
        naive += abs(tail.mean() - 0.6) <= half
    assert 0.91 <= hits / reps <= 0.99
    assert naive < hits


def test_plateau_round_trips_through_json_and_needs_a_tail() -> None:
    rng = np.random.default_rng(4)
    y = 0.7 + 0.01 * rng.standard_normal(X.size)
    fit = CurveFitter(form="plateau", n_boot=100).fit(X, y)
    back = from_dict(json.loads(dumps(fit.to_dict())))
    np.testing.assert_allclose(back.predict([200.0, 900.0]), fit.predict([200.0, 900.0]))
    np.testing.assert_allclose(back.predict([250.0], band="confidence")[1], fit.predict([250.0], band="confidence")[1])
    with pytest.raises(CeilingError, match="too few points in the last doubling"):
        CurveFitter(form="plateau", n_boot=100).fit(X[:6], y[:6])


def test_a_ceiling_at_the_metric_maximum_with_a_narrow_interval_is_identifiable() -> None:
    """Accuracy on 400 problems saturating at 1: the point fit sits at the bound (seed 0), the data bound the
    ceiling from below and the metric from above. Before, 'pinned at its bound' made this not identifiable."""
    rng = np.random.default_rng(0)
    x = np.linspace(10, 600, 40)
    y = rng.binomial(400, 1.0 - 0.8 * np.exp(-x / 60)) / 400
    fit = CurveFitter(form="exponential", n_boot=300, a_bounds=(0.0, 1.0)).fit(x, y)
    assert fit.estimate == 1.0
    assert fit.identifiable, fit.reasons
    assert fit.ci_high == 1.0 and 0.99 < fit.ci_low < 1.0
    assert fit.stats["at_bound"] == "maximum" and "metric's maximum" in fit.headline()


def test_a_ceiling_at_the_bound_with_a_wide_interval_stays_not_identifiable() -> None:
    """Still rising fast at the last point: the fit runs to the bound, and the interval says it may be far below."""
    rng = np.random.default_rng(6)
    x = np.linspace(10, 200, 20)
    y = 0.1 + 0.004 * x + 0.03 * rng.standard_normal(x.size)
    fit = CurveFitter(form="exponential", n_boot=300, a_bounds=(0.0, 1.0)).fit(x, y)
    assert not fit.identifiable


def test_a_slow_steady_rise_or_fall_is_not_a_plateau() -> None:
    """Inside +-0.05 per doubling but significantly moving: a fall of 0.04 per doubling of x, and a rise linear in
    x (0.08 over the run, whose next doubling adds 0.08), are not "the level held"."""
    x = np.arange(10.0, 310.0, 10.0)
    rng = np.random.default_rng(7)
    falling = 0.6 - 0.04 * np.log2(x / 10) + 0.003 * rng.standard_normal(x.size)
    rising = 0.5 + 0.08 * x / 300 + 0.003 * rng.standard_normal(x.size)
    for y, code in ((falling, "declines"), (rising, "still_rising")):
        fit = CurveFitter(form="plateau", n_boot=300).fit(x, y)
        assert not fit.identifiable and code in fit.reason_codes, fit.reasons
        cmp_ = compare_forms(x, y, fitter=CurveFitter(n_boot=200, a_bounds=(0.0, 1.0)))
        assert cmp_.best != "plateau" or not cmp_.fits["plateau"].identifiable


def test_a_constant_tail_or_an_out_of_bounds_level_gets_no_plateau() -> None:
    zeros = np.zeros(X.size)
    zeros[:3] = [0.02, 0.01, 0.005]
    fit = CurveFitter(form="plateau", n_boot=100).fit(X, zeros)
    assert not fit.identifiable and "constant" in fit.reason_codes
    y = 0.6 + 0.01 * np.random.default_rng(8).standard_normal(X.size)
    fit = CurveFitter(form="plateau", n_boot=100, a_bounds=(0.0, 0.5)).fit(X, y)
    assert not fit.identifiable and "unstable" in fit.reason_codes


def test_a_straight_rise_that_stops_short_of_the_maximum_is_not_a_ceiling_at_the_maximum() -> None:
    """A line from 0.4 to 0.85 with tiny noise: the sigmoid runs to the bound 1, but the data end 0.15 below it,
    so this is not 'at the metric's maximum' (it was, before the review of this rule)."""
    x = np.arange(0.0, 320.0, 20.0)
    y = 0.4 + 0.45 * x / 300 + 0.005 * np.random.default_rng(9).standard_normal(x.size)
    cmp_ = compare_forms(x, y, fitter=CurveFitter(n_boot=300, a_bounds=(0.0, 1.0)))
    for name, fit in cmp_.fits.items():
        if name != "plateau" and fit.estimate >= 1.0 - 1e-9:
            assert not fit.identifiable, (name, fit.ci_low, fit.ci_high)
    assert not (cmp_.fits[cmp_.best].identifiable and cmp_.fits[cmp_.best].estimate >= 1.0 - 1e-9)


def test_the_equivalence_test_reads_the_90_percent_interval() -> None:
    """Two one-sided 5% tests = the 90% interval inside +-0.05. On this draw (seed 0, sd 0.012) the 90% interval
    of the gain is [-0.041, +0.011] but the 95% one reaches -0.051: read at 95%, the plateau would be refused."""
    y = 0.6 + 0.012 * np.random.default_rng(0).standard_normal(X.size)
    fit = CurveFitter(form="plateau", n_boot=400).fit(X, y)
    wider = CurveFitter(form="plateau", n_boot=400, level=0.975).fit(X, y)  # same draws, its gain interval at 95%
    assert fit.stats["gain_level"] == pytest.approx(0.90) and wider.stats["gain_level"] == pytest.approx(0.95)
    assert -0.05 < fit.stats["gain_per_doubling"][1] and wider.stats["gain_per_doubling"][1] < -0.05
    assert fit.identifiable and not wider.identifiable
