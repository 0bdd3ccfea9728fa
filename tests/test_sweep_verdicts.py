"""The sweep's verdicts on constructed aggregates where the right answer is known.

Each claim (1: the ceiling is set by base diversity; 2: past a critical KL, verified gains cost unverified
reasoning), the coverage claim (RL narrows pass@k at large k) and the random-reward control are decided by
`ceiling.sweep.aggregate.analyse` on a sweep table built here row by row (the table `collect` reads from the
cells), once where the numbers support the claim, once where they contradict it, and once where they cannot
decide it. The tests read verdict values, never wording: `verdict()` and `finding_verdicts()` below are the
only places that know how a claim is named.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from scipy import stats as sps

from ceiling.sweep.aggregate import (
    COLUMNS,
    CONTRADICT,
    Claim,
    SUPPORT,
    UNDECIDED,
    Interval,
    analyse,
    difference,
    mean_interval,
)
from ceiling.sweep.config import SweepConfig

LR = 1e-3
CONFIG = SweepConfig(name="constructed", cells=[], reference_beta=0.0, reference_lr=LR)
CLAIM_NAMES = {"claim1": ("claim 1", Claim.CEILING), "claim2": ("claim 2", Claim.KL_COST),
               "coverage": ("coverage", Claim.COVERAGE), "control": ("control", Claim.CONTROL)}


def verdict(analysis, claim: str) -> str:
    """The overall verdict on `claim` ("claim1", "claim2", "coverage", "control")."""
    key = CLAIM_NAMES[claim][0]
    found = [v for k, v in analysis.verdicts.items() if key in k]
    assert len(found) == 1, (claim, list(analysis.verdicts))
    return found[0]


def finding_verdicts(analysis, claim: str) -> list[str]:
    """The verdicts of the findings about `claim`, in order."""
    return [f.verdict for f in analysis.findings if f.claim == CLAIM_NAMES[claim][1]]


def is_undecided(v: str) -> bool:
    return v.startswith(UNDECIDED)  # claim 2 may add why, e.g. "(no threshold ... up to KL 4 nats)"


def row(cell: str, base: str, *, seed: int = 0, beta: float = 0.0, reward: str = "verified", x: float = 0.5,
        ceiling: float | None = None, ceiling_half: float = 0.02, identifiable: bool = True,
        base_reward: float = 0.2, final_reward: float = 0.5, reward_half: float = 0.03,
        base_cov: float = 0.6, final_cov: float = 0.6, cov_half: float = 0.03,
        base_unv: float = 0.4, final_unv: float = 0.4, unv_half: float = 0.02,
        threshold: float | None = None, max_kl: float = 4.0) -> dict:
    """One run of the sweep table, as `cell_row` makes it from a cell's fits.json and eval.csv."""
    r = {"cell": cell, "base": base, "seed": seed, "beta": beta, "lr": LR, "reward": reward, "status": "complete",
         "ceiling": np.nan if ceiling is None else ceiling,
         "ceiling_low": np.nan if ceiling is None else ceiling - ceiling_half,
         "ceiling_high": np.nan if ceiling is None else ceiling + ceiling_half,
         "ceiling_identifiable": bool(identifiable and ceiling is not None), "ceiling_form": "sigmoid",
         "base_pass@kmax": base_cov, "k_max": 32.0, "base_entropy": 0.5 + x, "base_distinct_answers": 2 + 3 * x,
         "final_step": 60, "max_kl": max_kl, "threshold_detected": threshold is not None,
         "threshold": np.nan if threshold is None else threshold, "threshold_p": 0.01 if threshold else 0.5}
    for name, (b, f, h) in {"reward": (base_reward, final_reward, reward_half),
                            "pass@kmax": (base_cov, final_cov, cov_half),
                            "unverified": (base_unv, final_unv, unv_half)}.items():
        r.update({f"base_{name}": b, f"base_{name}_low": b - h, f"base_{name}_high": b + h,
                  f"final_{name}": f, f"final_{name}_low": f - h, f"final_{name}_high": f + h})
    r.update(gain=final_reward - base_reward, coverage_change=final_cov - base_cov,
             unverified_change=final_unv - base_unv)
    return r


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[COLUMNS]


def diversity_runs(ceiling_of, noise=(0.004, -0.004)) -> list[dict]:
    """Two seeds on each of three bases whose pass@k at the largest k is 0.4, 0.6, 0.8."""
    return [row(f"b{i}-s{s}", f"b{i}", seed=s, x=x, base_cov=x, final_cov=x, ceiling=ceiling_of(x) + noise[s])
            for i, x in enumerate((0.4, 0.6, 0.8)) for s in (0, 1)]


# ------------------------------------------------------------------------------------ claim 1
def test_claim1_supported_when_ceilings_rise_with_base_diversity():
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)))
    assert a.across is not None and a.across.regressions["base_pass@kmax"]["slope_ci"][0] > 0
    assert verdict(a, "claim1") == SUPPORT
    # saturation (6 of 6 identifiable), regression, prediction from the base alone, cap: all support it
    assert finding_verdicts(a, "claim1") == [SUPPORT] * 4
    assert a.prediction["coverage"] == 1.0 and a.prediction["rmse"] < 0.02 and not a.prediction["reasons"]


def test_claim1_contradicted_when_ceilings_fall_with_base_diversity():
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.4 - 0.3 * x)))
    assert a.across.regressions["base_pass@kmax"]["slope_ci"][1] < 0
    assert verdict(a, "claim1") == CONTRADICT


def test_claim1_contradicted_by_a_ceiling_above_what_the_base_reaches():
    """Ceilings rise with diversity (the regression supports) but lie above the base's pass@k at the largest
    k: the cap finding contradicts, so the claim is not called supported."""
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.35 + 0.5 * x)))
    found = finding_verdicts(a, "claim1")
    assert SUPPORT in found and found[-1] == CONTRADICT
    assert verdict(a, "claim1") not in (SUPPORT, UNDECIDED)


@pytest.mark.parametrize("case", ["flat", "too_few_identifiable"])
def test_claim1_cannot_decide(case):
    if case == "flat":  # no relation: the slope's interval includes 0
        rows = diversity_runs(lambda x: 0.3, noise=(0.03, -0.03))
    else:  # two identifiable ceilings only: no regression
        rows = diversity_runs(lambda x: 0.1 + 0.5 * x)
        for r in rows[2:]:
            r["ceiling_identifiable"] = False
    a = analyse(CONFIG, table(rows))
    assert is_undecided(verdict(a, "claim1"))
    if case == "too_few_identifiable":
        assert a.across is None
        saturation, regression, prediction, cap = finding_verdicts(a, "claim1")
        assert (saturation, regression, prediction) == (UNDECIDED, UNDECIDED, UNDECIDED)  # 2 of 6 identifiable
        assert cap == SUPPORT  # the two identifiable ceilings lie below their bases' pass@k
        why = a.prediction["reasons"]
        assert why and why[0] in [f.text for f in a.findings if f.claim == Claim.CEILING][2]


# ------------------------------------------------------------------------------------ claim 2
def claim2_runs(unverified_change: float, detected: int, gain: float = 0.3) -> list[dict]:
    return [row(f"r{i}", f"b{i % 2}", seed=i, final_reward=0.2 + gain + 0.01 * i,
                final_unv=0.4 + unverified_change + 0.005 * i, threshold=2.0 + i if i < detected else None)
            for i in range(4)]


def test_claim2_supported_when_gains_cost_unverified_past_detected_thresholds():
    a = analyse(CONFIG, table(claim2_runs(unverified_change=-0.1, detected=4)))
    assert a.unverified["change"]["ci_high"] < 0 and a.thresholds["n_detected"] == 4
    assert verdict(a, "claim2") == SUPPORT


def test_claim2_contradicted_when_thresholds_pass_without_unverified_loss():
    a = analyse(CONFIG, table(claim2_runs(unverified_change=0.02, detected=2)))
    assert a.unverified["change"]["ci_low"] >= 0
    assert CONTRADICT in finding_verdicts(a, "claim2")
    assert verdict(a, "claim2") == CONTRADICT


@pytest.mark.parametrize("case", ["no_gain", "no_threshold_no_loss"])
def test_claim2_cannot_decide(case):
    """Without a threshold the verdict says so (no threshold and no loss up to the largest KL reached)."""
    if case == "no_gain":  # verified reward did not rise reliably: no gain whose cost could be measured
        rows = claim2_runs(unverified_change=-0.1, detected=4, gain=0.0)
        for i, r in enumerate(rows):
            r["final_reward"] = 0.2 + (0.1 if i % 2 else -0.1)
            r["gain"] = r["final_reward"] - r["base_reward"]
    else:  # no threshold reached and no loss: what the claim expects below its critical KL
        rows = claim2_runs(unverified_change=0.02, detected=0)
    a = analyse(CONFIG, table(rows))
    assert is_undecided(verdict(a, "claim2"))
    assert (verdict(a, "claim2") == UNDECIDED) is (case == "no_gain")  # only the second adds the KL reached


# ------------------------------------------------------------------------------------ coverage
@pytest.mark.parametrize("change, expected", [(-0.1, SUPPORT), (0.1, CONTRADICT), (None, UNDECIDED)])
def test_coverage_verdict(change, expected):
    steps = [0.1, -0.1, 0.05, -0.05] if change is None else [change + d for d in (0.01, -0.01, 0.0, 0.005)]
    rows = [row(f"r{i}", "b", seed=i, base_cov=0.6, final_cov=0.6 + c) for i, c in enumerate(steps)]
    if change is None:  # and no reliable verified gain either
        for i, r in enumerate(rows):
            r["final_reward"] = 0.2 + (0.05 if i % 2 else -0.05)
            r["gain"] = r["final_reward"] - r["base_reward"]
    a = analyse(CONFIG, table(rows))
    assert a.coverage["change"]["estimate"] == pytest.approx(np.mean(steps))
    assert verdict(a, "coverage") == expected


def test_coverage_contradicted_when_learning_leaves_it_exactly_unchanged():
    """Reward rose reliably and pass@k at the largest k did not move at all (interval [0, 0]): RL did not
    narrow coverage, so the claim is contradicted (a lower bound of 0 counts once learning is shown)."""
    rows = [row(f"r{i}", "b", seed=i, final_reward=0.5 + 0.01 * i) for i in range(3)]
    a = analyse(CONFIG, table(rows))
    assert (a.coverage["change"]["ci_low"], a.coverage["change"]["ci_high"]) == (0.0, 0.0)
    assert verdict(a, "coverage") == CONTRADICT


def test_every_finding_has_a_verdict_and_words():
    tables = [diversity_runs(lambda x: 0.1 + 0.5 * x), claim2_runs(-0.1, 4), claim2_runs(0.02, 0),
              [row("r0", "b")]]
    for rows in tables:
        a = analyse(CONFIG, table(rows))
        for f in a.findings:
            assert f.verdict in (SUPPORT, CONTRADICT, UNDECIDED) and isinstance(f.text, str) and f.text, f


# ------------------------------------------------------------------------------------ the random-reward control
def _gains(mean: float, half: float, n: int) -> list[float]:
    """n gains with mean `mean` whose 95% t interval over runs has half-width `half`."""
    z = np.arange(n) - (n - 1) / 2
    sd_wanted = half * np.sqrt(n) / sps.t.ppf(0.975, n - 1)
    return list(mean + z / z.std(ddof=1) * sd_wanted)


def control_table(real_gain: float, real_half: float, ctrl_gain: float, ctrl_half: float) -> pd.DataFrame:
    real = [row(f"real{i}", "b", seed=i, final_reward=0.2 + g) for i, g in enumerate(_gains(real_gain, real_half, 3))]
    ctrl = [row(f"ctrl{i}", "b", seed=i, reward="random", final_reward=0.2 + g)
            for i, g in enumerate(_gains(ctrl_gain, ctrl_half, 2))]
    return table(real + ctrl)


def test_control_difference_is_welch_with_more_power_than_combining_intervals():
    """Gains 0.30 +- 0.15 (3 runs) against 0.05 +- 0.15 (2 runs): the difference 0.25 gets a Welch t interval,
    computed here by hand from the five gains. It is narrower than the two t intervals combined in quadrature
    (0.212), and far narrower than their half-widths added (0.30), which would not decide."""
    from scipy import stats as sps

    a = analyse(CONFIG, control_table(0.30, 0.15, 0.05, 0.15))
    (k,) = a.controls
    assert (k["real"]["ci_high"] - k["real"]["ci_low"]) / 2 == pytest.approx(0.15)
    assert (k["control"]["ci_high"] - k["control"]["ci_low"]) / 2 == pytest.approx(0.15)
    x, y = np.array(_gains(0.30, 0.15, 3)), np.array(_gains(0.05, 0.15, 2))
    vx = sum((g - x.mean()) ** 2 for g in x) / 2 / 3
    vy = sum((g - y.mean()) ** 2 for g in y) / 1 / 2
    dof = (vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 1)
    half = sps.t.ppf(0.975, dof) * (vx + vy) ** 0.5
    d = k["difference"]
    assert d["estimate"] == pytest.approx(0.25)
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(0.25 - half), pytest.approx(0.25 + half))
    assert half < np.hypot(0.15, 0.15) < 0.30
    assert "Welch" in d["method"]
    assert verdict(a, "control") == SUPPORT


def test_control_contradicted_when_random_rewards_gain_as_much():
    a = analyse(CONFIG, control_table(0.30, 0.05, 0.45, 0.05))
    assert verdict(a, "control") == CONTRADICT


@pytest.mark.parametrize("real_gain, ctrl_gain", [(0.30, 0.25), (0.0, 0.0)])
def test_control_cannot_decide(real_gain, ctrl_gain):
    a = analyse(CONFIG, control_table(real_gain, 0.1, ctrl_gain, 0.1))
    assert is_undecided(verdict(a, "control"))
    no_controls = analyse(CONFIG, table([row("r0", "b"), row("r1", "b", seed=1)]))
    assert is_undecided(verdict(no_controls, "control"))


# ------------------------------------------------------------------------------------ the intervals behind them
def test_difference_combines_half_widths_in_quadrature():
    d = difference(Interval(1.0, 0.7, 1.3, 3, ""), Interval(0.2, -0.2, 0.6, 2, ""))
    assert (d.estimate, d.low, d.high, d.n) == (pytest.approx(0.8), pytest.approx(0.3), pytest.approx(1.3), 5)
    assert np.isnan(difference(Interval(np.nan, 0, 0, 0, ""), Interval(0.2, 0.1, 0.3, 1, "")).estimate)
    open_ended = difference(Interval(1.0, -np.inf, np.inf, 3, ""), Interval(0.2, 0.1, 0.3, 1, ""))
    assert open_ended.estimate == pytest.approx(0.8) and np.isnan(open_ended.low) and np.isnan(open_ended.high)


def test_interval_excludes_zero():
    assert Interval(0.3, 0.1, 0.5, 2, "").excludes_zero() and Interval(-0.3, -0.5, -0.1, 2, "").excludes_zero()
    assert not Interval(0.3, -0.1, 0.5, 2, "").excludes_zero() and not Interval(0.0, 0.0, 0.5, 2, "").excludes_zero()
    assert not Interval(0.3, np.nan, 0.5, 2, "").excludes_zero() and not Interval(0.3, 0.1, np.nan, 2, "").excludes_zero()


def test_mean_interval_by_hand():
    v = [0.1, 0.4, 0.3, 0.2]
    e = mean_interval(v)
    half = sps.t.ppf(0.975, 3) * np.std(v, ddof=1) / 2
    assert (e.estimate, e.low, e.high, e.n) == (pytest.approx(0.25), pytest.approx(0.25 - half),
                                                pytest.approx(0.25 + half), 4)
    one = mean_interval([0.3, np.nan], [0.04, 9.0])  # a single finite run keeps its own half-width
    assert (one.low, one.high, one.n) == (pytest.approx(0.26), pytest.approx(0.34), 1)
    assert np.isnan(mean_interval([0.3]).low) and mean_interval([]).n == 0


def test_single_run_gain_interval_combines_its_two_evaluations():
    """One real run: its gain's half-width is sqrt(0.03^2 + 0.04^2) = 0.05 from base and final intervals."""
    r = row("r0", "b", base_reward=0.1, final_reward=0.5, reward_half=0.0)
    r.update(base_reward_low=0.07, base_reward_high=0.13, final_reward_low=0.46, final_reward_high=0.54)
    a = analyse(CONFIG, table([r]))
    g = a.unverified["verified_gain"]
    assert (g["estimate"], g["ci_low"], g["ci_high"], g["n"]) == (pytest.approx(0.4), pytest.approx(0.35),
                                                                  pytest.approx(0.45), 1)


# ------------------------------------------------------------------------------------ per family and arms
def family_table(rows: list[dict]) -> pd.DataFrame:
    """A per-family table (`family_table`'s columns) from `row` dicts with a family and an arm."""
    from ceiling.sweep.aggregate import FAMILY_COLUMNS

    df = pd.DataFrame(rows)
    for c in FAMILY_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[FAMILY_COLUMNS]


def family_runs(family: str, ceiling_of, arm: str = "rl", final_cov_of=None, final_reward_of=None) -> list[dict]:
    """Three seeds on each of three bases whose pass@k at the largest k on `family` is 0.3, 0.55, 0.8."""
    out = []
    for i, x in enumerate((0.3, 0.55, 0.8)):
        for s, e in enumerate((0.006, -0.004, -0.002)):
            r = row(f"b{i}-s{s}-{family}-{arm}", f"b{i}", seed=s, x=x, base_cov=x,
                    final_cov=final_cov_of(x) if final_cov_of else x, ceiling=ceiling_of(x) + e,
                    final_reward=(final_reward_of(x) if final_reward_of else ceiling_of(x)) + e)
            out.append({**r, "family": family, "arm": arm})
    return out


def family_verdict(a, family: str) -> str:
    found = [v for k, v in a.verdicts.items() if k == f"claim 1 on {family}"]
    assert len(found) == 1, list(a.verdicts)
    return found[0]


def test_a_binding_floor_and_a_transferring_skill_get_opposite_verdicts():
    """cipher: ceilings sit at the base's pass@k (0.3 / 0.55 / 0.8, each run off by <= 0.006): the floor binds,
    the gap's interval lies within +-0.05 and the base alone predicts the ceiling (leave-one-base-out error
    <= 0.05): supported. sort: every ceiling is 0.95, far above each base's pass@k (0.3-0.8) with intervals
    apart: contradicted. The pooled table says nothing about families, so these verdicts come from the family
    table alone."""
    ft = family_table(family_runs("cipher", lambda x: x) + family_runs("sort", lambda x: 0.95))
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), ft)
    assert family_verdict(a, "cipher") == SUPPORT
    assert family_verdict(a, "sort") == CONTRADICT
    r = a.families["cipher"]
    assert r["identifiable"] == 9 and r["bases"] == 3 and r["n_above"] == 0
    gaps = [0.006, -0.004, -0.002] * 3
    assert r["gap"]["estimate"] == pytest.approx(np.mean(gaps))
    half = sps.t.ppf(0.975, 8) * np.std(gaps, ddof=1) / 3
    assert (r["gap"]["ci_low"], r["gap"]["ci_high"]) == (pytest.approx(np.mean(gaps) - half),
                                                         pytest.approx(np.mean(gaps) + half))
    assert r["prediction"]["rmse"] <= 0.05
    assert a.families["sort"]["n_above"] == 9


def test_a_family_with_an_unpredictable_ceiling_cannot_be_decided():
    """Ceilings below the base's reach but unrelated to it (0.5 on every base, base pass@k 0.3-0.8): no run
    is above its base's pass@k by much, yet the gap is not small and the base does not predict it."""
    ft = family_table(family_runs("cipher", lambda x: 0.5, final_cov_of=lambda x: x))
    ft.loc[ft["base_pass@kmax"] < 0.5, ["base_pass@kmax", "base_pass@kmax_low", "base_pass@kmax_high"]] = [0.52, 0.49, 0.55]
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), ft)
    assert is_undecided(family_verdict(a, "cipher"))


def test_the_sft_arm_lifts_the_ceiling_or_not():
    """The SFT arm ends 0.2 above RL alone on cipher on every base and seed, with pass@k at the largest k above
    the base's: supported. An arm that ends 0.1 below RL alone everywhere: contradicted."""
    rl = family_runs("cipher", lambda x: x)
    lifted = family_runs("cipher", lambda x: x, arm="sft", final_cov_of=lambda x: min(1.0, x + 0.2),
                         final_reward_of=lambda x: x + 0.2)
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), family_table(rl + lifted))
    (r,) = a.arms
    assert r["arm"] == "sft" and r["family"] == "cipher" and r["pairs"] == 9
    assert r["final_reward_difference"]["estimate"] == pytest.approx(0.2)
    assert a.verdicts["converse: external data lifts the ceiling"] == SUPPORT
    worse = family_runs("cipher", lambda x: x, arm="sft", final_reward_of=lambda x: x - 0.1)
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), family_table(rl + worse))
    assert a.verdicts["converse: external data lifts the ceiling"] == CONTRADICT


def test_arm_and_control_cells_stay_out_of_the_pooled_regression():
    """An SFT arm row with a huge ceiling must not move the across-run regression of RL cells."""
    from ceiling.sweep.aggregate import regression_table

    rows = diversity_runs(lambda x: 0.1 + 0.5 * x)
    arm = {**row("b0-s0-sft", "b0", x=0.4, base_cov=0.4, ceiling=0.99), "arm": "sft"}
    t = table(rows + [arm])
    t["arm"] = t["arm"].fillna("rl")
    reg = regression_table(t, CONFIG)
    assert "b0-s0-sft" not in set(reg["run"]) and len(reg) == 6


def test_a_skill_past_its_base_is_seen_without_identifiable_ceilings():
    """sort reaches 0.97 on every base (base pass@k 0.3-0.8), but every ceiling is pinned at the bound (not
    identifiable): the final held-out reward alone shows RL went past the base: contradicted, not 'cannot decide'.
    The same runs ending at their base's pass@k stay undecided (no identifiable ceiling to test the floor)."""
    past = family_table([{**r, "ceiling_identifiable": False}
                         for r in family_runs("sort", lambda x: 1.0, final_reward_of=lambda x: 0.97)])
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), past)
    assert family_verdict(a, "sort") == CONTRADICT
    r = a.families["sort"]["final_minus_base"]
    gaps = [0.97 + e - x for x in (0.3, 0.55, 0.8) for e in (0.006, -0.004, -0.002)]
    assert r["estimate"] == pytest.approx(np.mean(gaps))
    at = family_table([{**r, "ceiling_identifiable": False} for r in family_runs("sort", lambda x: x)])
    assert is_undecided(family_verdict(analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), at), "sort"))


def test_family_finding_counts_plateau_levels_and_ceilings_at_the_maximum():
    """Of nine identifiable sort ceilings, two are plateau levels and three sit at the metric's maximum: the
    family's finding says so, so a reader knows which numbers are fitted asymptotes."""
    rows = family_runs("sort", lambda x: 0.95)
    for r in rows[:2]:
        r.update(ceiling_form="plateau", ceiling_kind="plateau")
    for r in rows[2:5]:
        r.update(ceiling_form="exponential", ceiling_kind="at_maximum")
    ft = family_table(rows + family_runs("cipher", lambda x: x))
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), ft)
    r = a.families["sort"]
    assert (r["n_plateau"], r["n_at_max"]) == (2, 3)
    assert (a.families["cipher"]["n_plateau"], a.families["cipher"]["n_at_max"]) == (0, 0)
    words = [f.text for f in a.findings if f.text.startswith("sort:")]
    assert len(words) == 1 and "(2 plateau level(s), 3 at the metric's maximum)" in words[0]


def test_leave_one_base_out_offset_model_by_hand():
    """Ceilings = base pass@k + e (e = 0.006, -0.004, -0.002 by seed on every base): leaving a base out, the
    offset learned from the other two bases is mean(e) = 0, so each run's error is -e and the RMSE is
    sqrt(mean(e^2)); the band is +-t(1) times the within-base SD of e (the bases agree, so there is no between-base
    spread; two bases are two draws of the offset, whatever the number of seeds). A free line through two bases is
    reported beside it."""
    from ceiling.sweep.aggregate import _as_regression, leave_one_base_out

    ft = family_table(family_runs("cipher", lambda x: x))
    reg = _as_regression(ft)
    off = leave_one_base_out(reg, "base_pass@kmax", model="offset")
    e = np.array([0.006, -0.004, -0.002])
    assert off["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)), abs=1e-9)
    # two training bases with the same mean gap (0): s_b = 0; within-base SD of e (4 dof over the two bases);
    # a new base is one draw of the offset, so t has 2 - 1 = 1 dof
    half = sps.t.ppf(0.975, 1) * np.std(e, ddof=1)
    r0 = [r for r in off["rows"] if r["base"] == "b0"][0]
    assert (r0["predicted"], r0["high"] - r0["predicted"]) == (pytest.approx(0.3), pytest.approx(half))
    assert off["coverage"] == 1.0 and off["model"] == "offset"
    line = leave_one_base_out(reg, "base_pass@kmax", model="line")
    assert line["model"] == "line" and line["rmse"] is not None
    a = analyse(CONFIG, table(diversity_runs(lambda x: 0.1 + 0.5 * x)), ft)
    assert a.families["cipher"]["prediction"]["model"] == "offset"
    assert a.families["cipher"]["prediction_line"]["model"] == "line"
    with pytest.raises(CeilingError, match="model must be"):
        leave_one_base_out(reg, "base_pass@kmax", model="quadratic")


def test_offset_band_counts_bases_not_seeds():
    """Bases whose mean gaps differ (0.0, +0.02, +0.04 for b0, b1, b2) with seeds off by e: leaving b2 out, the
    offset is the mean of b0's and b1's mean gaps (0.01), and the band's between-base part is the SD of those two
    means, 0.0141, widened by sqrt(1 + 1/2), plus the pooled within-base SD; t on 1 dof."""
    from ceiling.sweep.aggregate import _as_regression, leave_one_base_out

    gaps = {0.3: 0.0, 0.55: 0.02, 0.8: 0.04}
    ft = family_table(family_runs("cipher", lambda x: x + gaps[x]))
    off = leave_one_base_out(_as_regression(ft), "base_pass@kmax", model="offset")
    r2 = [r for r in off["rows"] if r["base"] == "b2"][0]
    assert r2["predicted"] == pytest.approx(0.8 + 0.01)
    e = np.array([0.006, -0.004, -0.002])
    s_b2 = np.var([0.0, 0.02], ddof=1)
    half = sps.t.ppf(0.975, 1) * np.sqrt(s_b2 * 1.5 + np.var(e, ddof=1))
    assert r2["high"] - r2["predicted"] == pytest.approx(half)


def test_pooled_saturation_and_the_runs_table_say_which_ceilings_are_plateau_levels():
    from ceiling.sweep.report import runs_display

    rows = diversity_runs(lambda x: 0.1 + 0.5 * x)
    rows[0].update(ceiling_form="plateau", ceiling_kind="plateau")
    rows[1].update(ceiling_kind="at_maximum")
    t = table(rows)
    a = analyse(CONFIG, t)
    assert a.pooled_kinds == {"n_plateau": 1, "n_at_max": 1}
    sat = [f.text for f in a.findings if f.text.startswith("Saturation")]
    assert len(sat) == 1 and "(a narrow interval; 1 plateau level(s); 1 at the metric's maximum)." in sat[0]
    marks = runs_display(a.table)["ceiling A [95%]"].tolist()
    assert marks[0].endswith("(plateau level)") and marks[1].endswith("(at the metric's maximum)")
    assert not any(m.endswith(")") and "(" in m.split("]")[-1] for m in marks[2:])
