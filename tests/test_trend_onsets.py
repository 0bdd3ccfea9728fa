"""The onset statistics of ceiling.fit.trend on cases with known answers: the prefix isotonic and concave fits,
the joint rise-then-ramp fall onset, the cost of a fall that ends early, and the knee of a saturating rise (a
plateau's onset)."""
from __future__ import annotations

import numpy as np
import pytest

from ceiling.fit.trend import (FallSeries, _ramp_table, bin_series, decline_onset, joint_fall_onset, piecewise_fit,
                               prefix_concave, prefix_isotonic, saturation_onset)

X = np.arange(0, 201, 10.0)


def test_prefix_isotonic_levels_and_ssr_by_hand():
    """y = 1, 3, 2: prefixes end on 1, 3, then 3 and 2 pool to 2.5 (SSR 0.5); with weight 3 on the last point
    they pool to (3 + 3 * 2) / 4 = 2.25, SSR 0.75^2 + 3 * 0.25^2 = 0.75."""
    lev, ssr = prefix_isotonic(np.array([1.0, 3.0, 2.0]), np.ones(3))
    assert np.isnan(lev[0]) and lev[1:].tolist() == [1.0, 3.0, 2.5]
    assert ssr.tolist() == [0.0, 0.0, 0.0, 0.5]
    lev, ssr = prefix_isotonic(np.array([1.0, 3.0, 2.0]), np.array([1.0, 1.0, 3.0]))
    assert lev[3] == pytest.approx(2.25) and ssr[3] == pytest.approx(0.75)
    # 1, 4, 5, 0: the last three pool at 3 (above 1), SSR 0 + 1 + 4 + 9; 1, 2, 3, -6 pools back to the first
    # point: one block at 0, SSR 1 + 4 + 9 + 36
    lev, ssr = prefix_isotonic(np.array([1.0, 4.0, 5.0, 0.0]), np.ones(4))
    assert lev[4] == pytest.approx(3.0) and ssr[4] == pytest.approx(14.0)
    lev, ssr = prefix_isotonic(np.array([1.0, 2.0, 3.0, -6.0]), np.ones(4))
    assert lev[4] == pytest.approx(0.0) and ssr[4] == pytest.approx(50.0) and ssr[3] == 0.0


def test_prefix_concave_levels_and_ssr_by_hand():
    """y = 0, 2, 2, 3 at x = 0..3 is non-decreasing (isotonic SSR 0) but not concave (slopes 2, 0, 1): the last three
    points share one line (mean 7/3, slope 1/2), joined to the first point at x = 1 (slope 11/6 >= 1/2), residuals
    1/6, -1/3, 1/6: SSR 1/6, last level 17/6. The prefix 0, 2, 2 is concave already (SSR 0, level 2). y = 1, 3, 2
    (a fall at the end) pools its last two points at 2.5, as the isotonic fit does."""
    lev, ssr = prefix_concave(np.arange(4.0), np.array([0.0, 2.0, 2.0, 3.0]), np.ones(4))
    assert np.isnan(lev[0]) and lev[1:4].tolist() == pytest.approx([0.0, 2.0, 2.0])
    assert ssr[:4].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0], abs=1e-12)
    assert lev[4] == pytest.approx(17 / 6) and ssr[4] == pytest.approx(1 / 6)
    assert prefix_isotonic(np.array([0.0, 2.0, 2.0, 3.0]), np.ones(4))[1][4] == 0.0
    lev, ssr = prefix_concave(np.arange(3.0), np.array([1.0, 3.0, 2.0]), np.ones(3))
    assert lev[3] == pytest.approx(2.5) and ssr[3] == pytest.approx(0.5)


def test_fall_after_a_saturating_rise_noiseless():
    """A rise with diminishing returns to step 120, then a straight fall to the end: the onset is 120 exactly (the
    concave non-decreasing fit before it is exact)."""
    y = np.where(X <= 120, 0.3 + 0.2 * (1 - np.exp(-X / 60)), 0.3 + 0.2 * (1 - np.exp(-2.0)) - 0.001 * (X - 120))
    fo = decline_onset(X, y, n_boot=0)
    assert fo.tau == 120.0 and not fo.from_start


def test_a_fall_that_stops_early_costs_end_penalty_noise_units():
    """Flat at 1 to x = 4, then 0.9, 0.8, 0.7, 0.65 (the fall slows at its end). Its difference-based noise scale^2
    is mean(diff^2) / 2 = (3 * 0.01 + 0.0025) / 8 / 2 = 0.00203125. At tau = 4 (held level 1) a fall to the end
    (tau2 = 8, g = 1..4, r = 0.1, 0.2, 0.3, 0.35) has slope sum(g r) / sum(g^2) = 2.8 / 30 and SSR
    0.2625 - 2.8^2 / 30 = 7 / 6000; a fall stopping at the midpoint 7.5 fits 1 - 0.1 (x - 4) exactly: SSR 0. With a
    penalty of 2 noise units (0.0040625 > 7 / 6000) the fall to the end wins; without one, the early end does."""
    x, y, w = np.arange(9.0), np.array([1, 1, 1, 1, 1, 0.9, 0.8, 0.7, 0.65]), np.ones(9)
    tau = np.array([4.0])
    ssr0, t20, b0, _ = _ramp_table(x, y, w, tau, 3)
    assert ssr0[0] == pytest.approx(0.0, abs=1e-12) and t20[0] == 7.5 and b0[0] == pytest.approx(0.1)
    ssr2, t22, b2, _ = _ramp_table(x, y, w, tau, 3, end_penalty=2.0)
    assert t22[0] == 8.0 and b2[0] == pytest.approx(2.8 / 30) and ssr2[0] == pytest.approx(7 / 6000)


def test_bin_series_weighted_means():
    x, y, w = bin_series(np.arange(6.0), np.array([0, 0, 1, 1, 2, 2.0]), np.array([1, 3, 1, 1, 1, 1.0]), max_bins=3)
    assert x.tolist() == pytest.approx([0.75, 2.5, 4.5]) and y.tolist() == [0, 1, 2] and w.tolist() == [4, 2, 2]


def test_fall_onset_between_evaluations_noiseless():
    """Level 0.6 to step 85, then -0.002 a step: the onset is 85 (between the evaluations at 80 and 90), not a
    grid point of the data; an abrupt drop of 0.1 starting at 125 and done by 130 is found at 125."""
    y = np.where(X <= 85, 0.6, 0.6 - 0.002 * (X - 85))
    fo = decline_onset(X, y)
    assert fo.tau == 85.0 and fo.ci[0] <= 85 <= fo.ci[1] and not fo.from_start
    drop = np.where(X <= 120, 0.6, 0.5)
    fo = decline_onset(X, drop, n_boot=0)
    assert 120 <= fo.tau < 130 and fo.ci[0] <= 120 and fo.ci[1] >= 130


def test_joint_onset_pools_series_that_fall_together():
    """Two noisy series falling from 120 (a sparse binomial one and a dense one): the joint onset is within one
    evaluation of 120 and its interval covers it; a series given twice is located where it is alone."""
    rng = np.random.default_rng(0)
    p = np.where(X <= 120, 0.5, 0.5 - 0.0015 * (X - 120))
    sparse = FallSeries(X, rng.binomial(800, p) / 800, p * (1 - p) / 800)
    t = np.arange(1, 201.0)
    dense = FallSeries(t, np.where(t <= 120, 0.7, 0.7 - 0.003 * (t - 120)) + rng.normal(0, 0.03, t.size), ar1=True)
    fo = joint_fall_onset([sparse, dense], rng=np.random.default_rng(1))
    assert abs(fo.tau - 120) <= 10 and fo.ci[0] <= 120 <= fo.ci[1], fo
    alone = decline_onset(sparse.x, sparse.y, sparse.rel_var, n_boot=0).tau
    assert joint_fall_onset([sparse, sparse], n_boot=0).tau == alone


def test_saturation_knee_noiseless_and_the_hinge_bias_it_removes():
    """A rise 0.3 + 0.2 (1 - exp(-min(x, 120) / 72)) (c = 0.6) stops at 120: the knee is 120 with c 0.6, where a
    straight-line hinge puts its last break about 6 steps early; a straight rise to 100 gives 100 and c = inf."""
    y = 0.3 + 0.2 * (1 - np.exp(-np.minimum(X, 120) / 72))
    k = saturation_onset([FallSeries(X, y)])
    assert k.tau == 120.0 and k.curvature == 0.6 and k.identifiable and k.ci[0] <= 120 <= k.ci[1]
    assert max(piecewise_fit(X, y).breaks) < 117
    k = saturation_onset([FallSeries(X, 0.3 + 0.002 * np.minimum(X, 100))], n_boot=0)
    assert k.tau == 100.0 and k.curvature == np.inf


def test_saturation_knee_noisy_with_a_dense_partner():
    """Held-out accuracy (n = 500) and a dense training reward both saturate at 150 with c = 0.4: the shared knee
    is within one evaluation (10 steps) of 150 and its interval covers 150."""
    rng = np.random.default_rng(2)
    x = np.arange(10, 301, 10.0)
    p = 0.3 + 0.15 * (1 - np.exp(-np.minimum(x, 150) / 60))
    t = np.arange(1, 301.0)
    r = 0.2 + 0.25 * (1 - np.exp(-np.minimum(t, 150) / 60)) + rng.normal(0, 0.03, t.size)
    k = saturation_onset([FallSeries(x, rng.binomial(500, p) / 500, p * (1 - p) / 500), FallSeries(t, r, ar1=True)],
                         rng=np.random.default_rng(3))
    assert abs(k.tau - 150) <= 10 and k.ci[0] <= 150 <= k.ci[1], k
