"""The run diagnosis (ceiling.fit.diagnosis) and its statistics (ceiling.fit.trend) on cases with known answers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.fit import fit_frame
from ceiling.fit.diagnosis import RunDiagnosis, diagnose
from ceiling.fit.fitreport import FitReport
from ceiling.fit.simulate import draw_spec, simulate_corpus, simulate_run
from ceiling.fit.trend import decline_onset, decline_test, piecewise_fit
from ceiling.ingest import read_log

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "real_logs"
LOGS = SHARED if SHARED.is_dir() else REPO / "tests" / "fixtures" / "real_logs"


def _binomial(rng, p, n):
    return rng.binomial(n, p) / n, p * (1 - p) / n


# ----------------------------------------------------------------------------------------- trend statistics
def test_decline_test_false_alarm_rate_is_nominal_and_power_is_high():
    """300 saturating (never falling) series: the 5% test rejects 1-9% of them (a 3x too liberal test, or one
    that ignores the noise scale, fails); a 6-SD late fall is found in >= 85% of 60 series."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 300, 14)
    p_sat = 0.3 + 0.3 * (1 - np.exp(-x / 60))
    rejections = []
    for _ in range(300):
        y, rv = _binomial(rng, p_sat, 400)
        rejections.append(decline_test(x, y, rv, n_sim=99, rng=rng).p_value < 0.05)
    assert 0.01 <= np.mean(rejections) <= 0.09
    sd = np.sqrt(0.6 * 0.4 / 400)
    p_fall = p_sat - 6 * sd * np.maximum(x - 150, 0) / 150
    hits = [decline_test(x, *_binomial(rng, p_fall, 400), n_sim=99, rng=rng).p_value < 0.05 for _ in range(60)]
    assert np.mean(hits) >= 0.85


def test_decline_test_ar1_is_calibrated():
    """A dense AR(1) series (phi 0.6) that only rises: rejections at most 10% of 80 (white-noise calibration
    would reject far more often)."""
    rng = np.random.default_rng(1)
    x = np.arange(200.0)
    out = []
    for _ in range(80):
        e = np.zeros(200)
        for t in range(1, 200):
            e[t] = 0.6 * e[t - 1] + rng.normal() * 0.04
        out.append(decline_test(x, 0.5 + 0.2 * (1 - np.exp(-x / 40)) + e, ar1=True, n_sim=99, rng=rng).p_value < 0.05)
    assert np.mean(out) <= 0.10


def test_decline_onset_recovers_a_hinge():
    x = np.arange(0, 200, 10.0)
    y = np.where(x < 120, 0.6, 0.6 - 0.002 * (x - 120))
    fo = decline_onset(x, y + np.random.default_rng(0).normal(0, 0.002, x.size))
    assert abs(fo.tau - 120) <= 10 and fo.ci[0] <= 120 <= fo.ci[1] and not fo.from_start
    falls_from_start = decline_onset(x, 0.6 - 0.001 * x + np.random.default_rng(1).normal(0, 0.002, x.size))
    assert falls_from_start.from_start


def test_piecewise_fit_finds_two_breaks_and_slopes():
    x = np.arange(0, 300, 5.0)
    y = np.interp(x, [0, 100, 200, 300], [0.2, 0.6, 0.6, 0.4]) + np.random.default_rng(0).normal(0, 0.003, x.size)
    pw = piecewise_fit(x, y)
    assert len(pw.breaks) == 2
    assert abs(pw.breaks[0] - 100) < 12 and abs(pw.breaks[1] - 200) < 12
    assert pw.slopes[0] == pytest.approx(0.004, rel=0.1) and abs(pw.slopes[1]) < 3e-4
    assert pw.slopes[2] == pytest.approx(-0.002, rel=0.15)
    for (lo, hi), b in zip(pw.break_ci, (100, 200)):
        assert lo <= b <= hi


# ----------------------------------------------------------------------------------------- diagnose
def _frame(metrics: dict[str, tuple[np.ndarray, np.ndarray]], n: dict[str, float] | None = None) -> pd.DataFrame:
    rows = []
    for m, (x, y) in metrics.items():
        for s, v in zip(x, y):
            rows.append({"run": "r", "step": int(s), "compute": np.nan, "metric": m, "value": float(v),
                         "n": (n or {}).get(m, np.nan)})
    return pd.DataFrame(rows)


def test_gradual_trade_off_rate_per_nat_is_recovered():
    """Verified rises, the never-rewarded score loses 0.05 per nat of KL from the start: trade_off with no
    threshold, rate -0.05 inside its interval, the interval excludes 0."""
    rng = np.random.default_rng(3)
    steps = np.arange(0, 201, 10)
    kl = 2.0 * steps / 200
    ver = 0.3 + 0.4 * (1 - np.exp(-steps / 50))
    unv = 0.40 - 0.05 * kl
    f = _frame({"verified/eval_acc": (steps, rng.binomial(2000, ver) / 2000),
                "verified/reward": (np.arange(1, 201), 0.3 + 0.4 * (1 - np.exp(-np.arange(1, 201) / 50))
                                    + rng.normal(0, 0.02, 200)),
                "unverified/score": (steps, rng.binomial(4000, unv) / 4000),
                "kl/policy_base_k3": (np.arange(1, 201), 2.0 * np.arange(1, 201) / 200)},
               n={"verified/eval_acc": 2000, "unverified/score": 4000})
    d = diagnose(f, n_sim=199)
    assert d.regime == "trade_off" and d.axis == "kl/policy_base_k3"
    rate = next(r for r in d.tradeoff if r.metric == "unverified/score" and r.segment == "all")
    assert rate.ci_low <= -0.05 <= rate.ci_high and rate.ci_high < 0
    assert abs(rate.rate + 0.05) < 0.012
    assert "per nat" in d.headline() and "gradual from the start" in d.headline()
    assert d.kl_budget is not None and d.kl_budget["regime"] == "trade_off"
    # the two series tested for a fall share the false-alarm rate (Bonferroni): 0.025 each
    assert sorted(t.alpha for t in d.tests if t.role in ("held_out", "never_rewarded")) == [0.025, 0.025]


def test_over_optimisation_vs_collapse_and_onset():
    """Held-out falls from step 150; training reward holds (over-optimisation) or falls too (collapse)."""
    rng = np.random.default_rng(4)
    steps = np.arange(0, 301, 10)
    t = np.arange(1, 301)
    gold = np.where(steps < 150, 0.5, 0.5 - 0.001 * (steps - 150))
    for proxy, want in ((0.7 + 0 * t, "over_optimisation"), (np.where(t < 150, 0.7, 0.7 - 0.004 * (t - 150)), "collapse")):
        f = _frame({"verified/eval_acc": (steps, rng.binomial(1000, gold) / 1000),
                    "verified/reward": (t, proxy + rng.normal(0, 0.03, t.size))}, n={"verified/eval_acc": 1000})
        d = diagnose(f, n_sim=199)
        assert d.regime == want, d.summary()
        span = next(s for s in d.sequence if s.regime == want)
        assert span.onset is not None and abs(span.onset.step - 150) <= 20
        assert span.onset.step_low <= span.onset.step <= span.onset.step_high
        assert d.ship is not None and d.ship["step"] <= 160  # ship before the fall
        assert d.axis == "step" and any(c == "no_kl_axis" for c, _ in d.reasons)


def test_negative_and_constant_kl_are_used_or_replaced_never_refused():
    sim = simulate_run(5, draw_spec(5, ("improving", "over_optimisation")))
    f = sim.frame.copy()
    kl = f["metric"].isin(["kl/logged", "kl/policy_base_k3"])
    f = f[~kl]
    steps = np.arange(1, sim.spec.n_steps + 1)
    neg = _frame({"kl/logged": (steps, np.linspace(-0.05, 0.8, steps.size))}).assign(run=sim.run)
    zero = _frame({"kl/logged": (steps, np.zeros(steps.size))}).assign(run=sim.run)
    d_neg = diagnose(pd.concat([f, neg]), n_sim=99)
    assert d_neg.axis == "kl/logged" and "kl_negative" in [c for c, _ in d_neg.reasons]
    d_zero = diagnose(pd.concat([f, zero]), n_sim=99)
    assert d_zero.axis == "step" and any("constant" in m for _, m in d_zero.reasons)
    rates = [r for r in d_zero.tradeoff if r.segment == "all"]
    assert rates and all(r.per == "100 steps" for r in rates)


def test_small_corpus_accuracy_and_false_alarms():
    """The labelled corpus at small size: final regime right in >= 80% of 20 runs, no-change runs rarely alarmed
    (benchmarks/bench_verdicts.py runs the 300-run version)."""
    runs = simulate_corpus(20, seed=11)
    right = alarms = nochange = 0
    for r in runs:
        d = diagnose(r.frame, n_sim=99)
        right += d.regime == r.labels.sequence[-1]
        if len(r.labels.sequence) == 1:
            nochange += 1
            alarms += d.detected
    assert right / len(runs) >= 0.8
    assert alarms <= 1 and nochange >= 5


def test_round_trip_and_fits_json_section():
    sim = simulate_run(8, draw_spec(8, ("improving", "plateau", "collapse")))
    rep = fit_frame(sim.frame, n_boot=199)
    d = rep.diagnosis
    assert isinstance(d, RunDiagnosis)
    stored = json.loads(json.dumps(rep.to_dict()))
    assert stored["diagnosis"]["regime"] == d.regime
    assert stored["diagnosis"]["regime"] in ("improving", "plateau", "trade_off", "over_optimisation", "collapse")
    back = FitReport.from_dict(stored).diagnosis
    assert back.to_dict() == stored["diagnosis"]
    assert back.headline() == d.headline()


def test_real_logs_get_a_verdict_with_no_flags():
    """The genuine GRPO logs: MATH-500 drifts 46 -> 33 while the training reward crashes late and recovers;
    the no-KL run's reward falls to 0 as responses hit the length cap (collapse with degenerate length)."""
    d73 = diagnose(read_log(LOGS / "7_3_plus_tracking_metrics.csv").frame, n_sim=199)
    assert d73.roles["held_out"] == "verified/eval_acc"
    # the training reward crashes late, then recovers while MATH-500 keeps drifting down
    assert [s.regime for s in d73.sequence][-2:] == ["collapse", "over_optimisation"]
    collapse = next(s for s in d73.sequence if s.regime == "collapse")
    assert collapse.onset is not None and 150 <= collapse.onset.step <= 300
    assert d73.first_harm.regime in ("over_optimisation", "collapse")
    dnk = diagnose(read_log(LOGS / "rlvr_grpo_original_no_kl_metrics.csv").frame, n_sim=199)
    assert dnk.regime == "collapse"
    assert 150 <= dnk.first_harm.onset.step <= 230
    length = next(t for t in dnk.degeneracy if t.metric == "length/mean")
    assert length.falls and length.last > 3 * length.first
