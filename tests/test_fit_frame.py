"""fit_frame -> FitReport -> fits.json and back; sections that cannot be fitted; the two genuine logs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from ceiling.fit import (
    CollapseFit,
    CurveFit,
    FitReport,
    NotAvailable,
    fit_collapse,
    fit_curve,
    fit_frame,
    load_fits,
    save_fits,
)

# the genuine logs: ../shared relative to the repo root where present, else the copies inside the repo
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_logs"
REAL = _SHARED if (_SHARED / "7_3_plus_tracking_metrics.csv").is_file() else Path(__file__).resolve().parent / "fixtures" / "real_logs"


def synthetic_run(run: str, rng: np.random.Generator, coverage: float = 0.6, n: int = 150,
                  with_kl: bool = True) -> pd.DataFrame:
    """A run whose verified reward follows a sigmoid in compute, entropy the entropy law, and whose unverified
    score peaks against KL (Gao form)."""
    steps = np.arange(n + 1)
    compute = steps * 1e12
    a = 0.3 + 0.5 * coverage
    cmid = 40e12
    reward = 0.1 + (a - 0.1) / (1 + (cmid / np.maximum(compute, 1.0)) ** 2.0) + rng.normal(0, 0.01, steps.size)
    entropy = np.log((0.9 - reward) / 0.6 + 1e-3).clip(0.01) + rng.normal(0, 0.01, steps.size)
    kl = 0.2 * steps
    d = np.sqrt(kl)
    unverified = 0.3 + 0.10 * d - 0.05 * np.where(d > 0, d * np.log(np.where(d > 0, d, 1)), 0)
    unverified = unverified + rng.normal(0, 0.008, steps.size)
    rows = [("verified/reward", reward), ("policy/entropy", entropy), ("unverified/score", unverified)]
    if with_kl:
        rows.append(("kl/policy_base_k3", kl))
    frames = [pd.DataFrame({"run": run, "step": steps, "compute": compute, "metric": m, "value": v})
              for m, v in rows]
    frames.append(pd.DataFrame({"run": run, "step": 0, "compute": 0.0, "metric": "verified/pass@k",
                                "value": [coverage * 0.5, coverage], "k": [1.0, 64.0], "family": "all"}))
    return pd.concat(frames, ignore_index=True)


def test_fit_frame_fits_every_section_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = synthetic_run("sim", rng)
    report = fit_frame(frame, n_boot=200)
    assert isinstance(report.ceiling, CurveFit) and report.ceiling.x_label == "compute"
    assert report.ceiling.identifiable, report.ceiling.reasons
    assert abs(report.ceiling.estimate - 0.6) < 0.03
    assert report.ceiling.extra["selection"]["best"] == report.ceiling.form
    assert len(report.ceiling.extra["backtest"]) == 3
    assert isinstance(report.collapse, CollapseFit) and report.collapse.x_label == "kl/policy_base_k3"
    assert report.collapse.detected and abs(report.collapse.estimate / np.e**2 - 1) < 0.15
    assert report.entropy_law.to_dict()["kind"] == "entropy_law"
    assert isinstance(report.across_runs, NotAvailable)

    path = save_fits(tmp_path / "fits.json", report)
    d = json.loads(path.read_text())
    assert d["schema_version"] == 1 and d["run"] == "sim"
    for name in ("ceiling", "entropy_law", "collapse"):
        for key in ("estimate", "ci_low", "ci_high", "method", "reasons"):
            assert key in d[name], (name, key)
    assert "identifiable" in d["ceiling"] and "detected" in d["collapse"]
    assert d["across_runs"]["not_available"] is True and "run" in d["across_runs"]["reason"]
    back = load_fits(path)
    assert isinstance(back, FitReport)
    budgets = np.array([50e12, 200e12, 1e15])
    for band in (None, "prediction"):
        np.testing.assert_allclose(np.asarray(back.ceiling.predict(budgets, band=band)),
                                   np.asarray(report.ceiling.predict(budgets, band=band)), rtol=1e-6)
    assert "== collapse ==" in back.summary()


def test_sections_that_cannot_be_fitted_say_why() -> None:
    rng = np.random.default_rng(1)
    frame = synthetic_run("nokl", rng, with_kl=False)
    frame = frame[frame["metric"] != "policy/entropy"]
    frame.loc[frame["metric"] == "verified/reward", "compute"] = np.nan
    report = fit_frame(frame, n_boot=100)
    assert report.ceiling.x_label == "step"
    assert any("compute" in n for n in report.ceiling.extra["notes"])
    assert isinstance(report.entropy_law, NotAvailable) and "policy/entropy" in report.entropy_law.reason
    assert report.collapse.x_label == "compute"  # the unverified rows still carry compute
    assert any("KL not logged" in r for r in report.collapse.reasons)
    only = frame[frame["metric"] == "unverified/score"]
    rep2 = fit_frame(only, n_boot=50)
    assert isinstance(rep2.ceiling, NotAvailable) and "verified" in rep2.ceiling.reason
    assert rep2.to_dict()["ceiling"]["estimate"] is None


def test_across_runs_from_a_frame_of_several_runs() -> None:
    rng = np.random.default_rng(2)
    covs = [0.2, 0.4, 0.6, 0.8, 0.9]
    frame = pd.concat([synthetic_run(f"r{i}", rng, coverage=c, n=100) for i, c in enumerate(covs)])
    report = fit_frame(frame, run="r2", n_boot=100)
    ar = report.across_runs
    assert ar is not None and ar.to_dict()["kind"] == "across_runs", getattr(ar, "reason", "")
    assert ar.primary == "base_pass@kmax"
    assert ar.ci_low <= 0.5 <= ar.ci_high
    assert abs(float(ar.predict([0.7])[0]) - 0.65) < 0.05
    with pytest.raises(CeilingError, match="runs"):
        fit_frame(frame)
    with pytest.raises(CeilingError, match="not in the frame"):
        fit_frame(frame, run="nope")


def test_load_fits_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "fits.json"
    bad.write_text("{not json")
    with pytest.raises(CeilingError, match="fits.json"):
        load_fits(bad)
    bad.write_text(json.dumps({"schema_version": 99, "ceiling": None}))
    with pytest.raises(CeilingError, match="schema_version"):
        load_fits(bad)
    with pytest.raises(CeilingError, match="no such file"):
        load_fits(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------ genuine logs
def _read_7_3() -> pd.DataFrame:
    df = pd.read_csv(REAL / "7_3_plus_tracking_metrics.csv")
    return df[df["total_steps"] == 500]  # the first five rows are an aborted run (total_steps=300)


@pytest.mark.skipif(not REAL.exists(), reason="shared real logs not present")
def test_real_log_7_3_ceiling_and_collapse_are_sane() -> None:
    df = _read_7_3()
    assert df["step"].is_unique
    rows = []
    for col, metric in (("reward_avg", "verified/reward"), ("entropy_avg", "policy/entropy"),
                        ("eval_acc", "unverified/score")):
        s = df[["step", col]].dropna()
        rows.append(pd.DataFrame({"run": "7_3", "step": s["step"], "compute": np.nan, "metric": metric,
                                  "value": s[col]}))
    report = fit_frame(pd.concat(rows), x="step", n_boot=200)
    ceiling = report.ceiling
    assert isinstance(ceiling, CurveFit)
    # the reward collapses with the entropy blow-up around steps 250-300: the fit stops before that
    assert ceiling.extra["collapse_at"] is not None and 180 <= ceiling.extra["collapse_at"] <= 260
    assert ceiling.data["x_max"] <= ceiling.extra["collapse_at"]
    assert 0.6 <= ceiling.estimate <= 0.95 and ceiling.ci_low <= ceiling.estimate <= ceiling.ci_high
    # the entropy law cannot describe an entropy blow-up: it must not claim a ceiling
    assert not report.entropy_law.identifiable
    # eval_acc (MATH-500, percent, every 50 steps) drifts down from the start: no threshold, labelled by step
    col = report.collapse
    assert isinstance(col, CollapseFit) and col.x_label == "step" and col.data["n"] == 10
    assert not col.detected and 0 <= col.p_value <= 1
    direct = fit_collapse(*df[["step", "eval_acc"]].dropna().to_numpy().T, x_label="step", n_boot=200, n_null=99)
    assert direct.methods["segmented"]["slope_after"] < 0  # the score falls
    assert json.dumps(report.to_dict(), allow_nan=True)


@pytest.mark.skipif(not REAL.exists(), reason="shared real logs not present")
def test_real_length_collapse_log_is_not_read_as_a_ceiling() -> None:
    df = pd.read_csv(REAL / "rlvr_grpo_original_no_kl_metrics.csv")
    whole = fit_curve(df["step"], df["reward_avg"], x_label="step", n_boot=200)
    assert not whole.identifiable and whole.reasons  # a saturating fit through the fall to 0 is flagged
    frame = pd.DataFrame({"run": "len", "step": df["step"], "compute": np.nan, "metric": "verified/reward",
                          "value": df["reward_avg"]})
    report = fit_frame(frame, x="step", n_boot=200)
    cut = report.ceiling.extra["collapse_at"]
    assert cut is not None and 180 <= cut <= 240  # the window ends before the length collapse
    assert report.ceiling.data["x_max"] <= cut
    assert isinstance(report.collapse, NotAvailable) and isinstance(report.entropy_law, NotAvailable)


def test_per_family_rows_are_averaged_when_no_aggregate_row_exists() -> None:
    rng = np.random.default_rng(4)
    frame = synthetic_run("fam", rng)
    rew = frame[frame["metric"] == "verified/reward"]
    fam_a = rew.assign(family="add", value=rew["value"] + 0.05)
    fam_b = rew.assign(family="mul", value=rew["value"] - 0.05)
    frame = pd.concat([frame[frame["metric"] != "verified/reward"], fam_a, fam_b], ignore_index=True)
    report = fit_frame(frame, n_boot=100, across=False)
    assert isinstance(report.ceiling, CurveFit)
    assert abs(report.ceiling.estimate - 0.6) < 0.03  # the mean of the two families
    assert report.across_runs is None and report.to_dict()["across_runs"] is None
