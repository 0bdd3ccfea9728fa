"""Aggregating a sweep: one row per cell from its own fits.json and eval.csv, the across-run regression of the
fitted ceilings on the base's diversity, leave-one-base-out predictions, and the verdicts on the claim.

Every per-run number is read, not refitted: the ceiling A and its interval come from the cell's fits.json
(`ceiling` section), the KL threshold from its `collapse` section, rewards, pass@k and KL from its eval.csv
(held-out evaluation, step 0 = the base). The base's diversity floor is the one definition of
`ceiling.evaluate.floor` on the verified families, read at step 0 of eval.csv and, where the base folder has
one, from the diversity.json written at pretraining.

The claim under test has two parts:
  1. verified reward saturates at a ceiling set by the base's diversity;
  2. past a critical KL, verified gains cost unverified reasoning.
`verdicts()` says for each part whether the numbers support it, contradict it or cannot decide, and why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ceiling.errors import CeilingError
from ceiling.evaluate.floor import diversity_floor
from ceiling.fit import CollapseFit, CurveFit, fit_across_runs, load_fits
from ceiling.fit.families import FamilyCeilings
from ceiling.fit.common import fmt
from ceiling.frame import normalize_frame
from ceiling.sweep.config import Cell, SweepConfig
from ceiling.sweep.engine import base_folder, cell_dir, is_complete

SCHEMA_VERSION = 1
MEASURES = ("base_pass@kmax", "base_entropy", "base_distinct_answers")
MEASURE_NAMES = {"base_pass@kmax": "base pass@k at the largest k",
                 "base_entropy": "base token entropy on the verified families (nats)",
                 "base_distinct_answers": "base distinct answers per prompt on the verified families"}
KL_METRIC = "kl/policy_base_k3"
LEVEL = 0.95


# ------------------------------------------------------------------------------------------ reading a cell
def read_eval(run_dir: Path) -> pd.DataFrame | None:
    """The cell's eval.csv as a canonical frame (None when missing)."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return None
    return normalize_frame(pd.read_csv(path), where=str(path))


def _aggregate_rows(ev: pd.DataFrame, metric: str, family: str | None) -> pd.DataFrame:
    rows = ev[(ev["metric"] == metric) & np.isfinite(ev["value"])]
    fam = rows["family"]
    pick = fam.isna() | fam.isin(["all", "verified", "unverified"]) if family is None else fam == family
    return rows[pick]


def value_at(ev: pd.DataFrame, metric: str, step: int, family: str | None = None,
             k: float | None = None) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of an aggregate row of `metric` at `step` (NaN when absent)."""
    rows = _aggregate_rows(ev, metric, family)
    rows = rows[rows["step"] == step]
    rows = rows[rows["k"] == k] if k is not None else rows[rows["k"].isna()]
    if rows.empty:
        return (np.nan, np.nan, np.nan)
    r = rows.iloc[0]
    return float(r["value"]), float(r["ci_low"]), float(r["ci_high"])


def diversity_record(base: str) -> dict[str, Any]:
    """The base's diversity.json (measured at pretraining), {} when it has none."""
    folder = base_folder(base)
    if folder is None or not (folder / "diversity.json").is_file():
        return {}
    try:
        return json.loads((folder / "diversity.json").read_text())
    except ValueError:
        return {}


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def _ceiling_columns(ceil: Any) -> dict[str, Any]:
    """The ceiling columns of a table row from a fitted section (a CurveFit, a NotAvailable, or None)."""
    fitted = isinstance(ceil, CurveFit)
    return {"ceiling": _num(ceil.estimate) if fitted else np.nan,
            "ceiling_low": _num(ceil.ci_low) if fitted else np.nan,
            "ceiling_high": _num(ceil.ci_high) if fitted else np.nan,
            "ceiling_identifiable": bool(ceil.identifiable) if fitted else False,
            "ceiling_form": ceil.form if fitted else None,
            "ceiling_kind": ceil.ceiling_kind if fitted else None,
            "ceiling_note": (("; ".join(ceil.reasons) or ceil.caveat() or "")[:300] if fitted
                             else getattr(ceil, "reason", None))}


def cell_row(cell: Cell, run_dir: Path) -> dict[str, Any]:
    """One row of sweep.csv: the cell's coordinates, its fitted ceiling and threshold, its base's diversity
    floor, and base-vs-final numbers from its evaluation."""
    row: dict[str, Any] = cell.coordinates()
    complete = is_complete(run_dir, cell)
    row["status"] = "complete" if complete else ("incomplete" if run_dir.exists() else "missing")
    fits = load_fits(run_dir / "fits.json") if complete else None
    ceil = fits.ceiling if fits is not None else None
    row.update(_ceiling_columns(ceil))
    col = fits.collapse if fits is not None else None
    analysed = isinstance(col, CollapseFit)
    detected = analysed and bool(col.detected)
    row.update({"threshold_detected": detected,
                "threshold": _num(col.estimate) if detected else np.nan,
                "threshold_low": _num(col.ci_low) if detected else np.nan,
                "threshold_high": _num(col.ci_high) if detected else np.nan,
                "threshold_p": _num(col.p_value) if analysed else np.nan,
                "threshold_x": col.x_label if analysed else None})
    ev = read_eval(run_dir) if complete else None
    if ev is not None and not ev.empty:
        ev = ev.assign(run=cell.name)
        first, last = int(ev["step"].min()), int(ev["step"].max())
        floor = diversity_floor(ev, "verified")  # the floor's one definition (ceiling.evaluate.floor)
        row.update(floor.measures() if floor is not None else {})
        pk = _aggregate_rows(ev, "verified/pass@k", "verified")
        kmax = float(pk["k"].max()) if not pk.empty else np.nan
        row.update({"k_max": kmax, "final_step": last})
        for key, metric, fam, k in (("reward", "verified/reward", "verified", None),
                                    ("pass@kmax", "verified/pass@k", "verified", kmax),
                                    ("pass@1", "verified/pass@k", "verified", 1.0),
                                    ("unverified", "unverified/score", "unverified", None)):
            for when, step in (("base", first), ("final", last)):
                v, lo, hi = value_at(ev, metric, step, fam, k)
                row.update({f"{when}_{key}": v, f"{when}_{key}_low": lo, f"{when}_{key}_high": hi})
        kl = _aggregate_rows(ev, KL_METRIC, "all")
        row["max_kl"] = float(kl["value"].max()) if not kl.empty else np.nan
        row["gain"] = row["final_reward"] - row["base_reward"]
        row["unverified_change"] = row["final_unverified"] - row["base_unverified"]
        row["coverage_change"] = row["final_pass@kmax"] - row["base_pass@kmax"]
    div = diversity_record(cell.base)
    kdiv = (div.get("settings") or {}).get("k")
    row.update({"div_entropy": _num(div.get("entropy")),
                "div_pass@k": _num(div.get(f"pass@{kdiv}")) if kdiv else np.nan, "div_k": _num(kdiv),
                "div_distinct_answers": _num(div.get("distinct_answers"))})
    return row


COLUMNS = ["cell", "base", "seed", "beta", "lr", "reward", "arm", "status", "ceiling", "ceiling_low", "ceiling_high",
           "ceiling_identifiable", "ceiling_form", "base_pass@kmax", "k_max", "base_entropy", "base_distinct_answers",
           "div_pass@k", "div_k", "div_entropy", "div_distinct_answers", "final_step", "base_reward",
           "base_reward_low", "base_reward_high", "final_reward", "final_reward_low", "final_reward_high", "gain",
           "base_pass@kmax_low", "base_pass@kmax_high", "final_pass@kmax", "final_pass@kmax_low",
           "final_pass@kmax_high", "coverage_change", "base_pass@1", "final_pass@1", "base_unverified",
           "base_unverified_low", "base_unverified_high", "final_unverified", "final_unverified_low",
           "final_unverified_high", "unverified_change", "max_kl", "threshold_detected", "threshold",
           "threshold_low", "threshold_high", "threshold_p", "threshold_x", "ceiling_note", "ceiling_kind"]


def sweep_table(config: SweepConfig, runs_dir: str | Path) -> pd.DataFrame:
    """One row per cell (config order), columns `COLUMNS`."""
    rows = [cell_row(c, cell_dir(runs_dir, config, c)) for c in config.cells]
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[COLUMNS]


FAMILY_COLUMNS = ["cell", "base", "seed", "beta", "lr", "reward", "arm", "status", "family", "ceiling", "ceiling_low",
                  "ceiling_high", "ceiling_identifiable", "ceiling_form", "k_max", "base_pass@kmax",
                  "base_pass@kmax_low", "base_pass@kmax_high", "final_pass@kmax", "final_pass@kmax_low",
                  "final_pass@kmax_high", "base_reward", "base_reward_low", "base_reward_high", "final_reward",
                  "final_reward_low", "final_reward_high", "gain", "coverage_change", "base_pass@1", "final_pass@1",
                  "base_entropy", "base_distinct_answers", "ceiling_note", "ceiling_kind"]


def family_rows(cell: Cell, run_dir: Path) -> list[dict[str, Any]]:
    """One row per verified family of a complete cell whose fits.json has a `family_ceilings` section: the
    family's own ceiling, and its base and final held-out numbers (its floor: pass@k at the largest k, entropy
    and distinct answers of the base on that family alone)."""
    if not is_complete(run_dir, cell):
        return []
    fits = load_fits(run_dir / "fits.json")
    fam = fits.family_ceilings
    ev = read_eval(run_dir)
    if not isinstance(fam, FamilyCeilings) or ev is None or ev.empty:
        return []
    first, last = int(ev["step"].min()), int(ev["step"].max())
    rows = []
    for name, fit in fam.fits.items():
        row: dict[str, Any] = {**cell.coordinates(), "status": "complete", "family": name}
        row.update(_ceiling_columns(fit))
        pk = ev[(ev["metric"] == "verified/pass@k") & (ev["family"] == name)]
        kmax = float(pk["k"].max()) if not pk.empty else np.nan
        row["k_max"] = kmax
        for key, metric, k in (("reward", "verified/reward", None), ("pass@kmax", "verified/pass@k", kmax),
                               ("pass@1", "verified/pass@k", 1.0)):
            for when, step in (("base", first), ("final", last)):
                v, lo, hi = value_at(ev, metric, step, name, k)
                row.update({f"{when}_{key}": v, f"{when}_{key}_low": lo, f"{when}_{key}_high": hi})
        row["base_entropy"] = value_at(ev, "policy/entropy", first, name)[0]
        row["base_distinct_answers"] = value_at(ev, "diversity/distinct_answers", first, name)[0]
        row["gain"] = row["final_reward"] - row["base_reward"]
        row["coverage_change"] = row["final_pass@kmax"] - row["base_pass@kmax"]
        rows.append(row)
    return rows


def family_table(config: SweepConfig, runs_dir: str | Path) -> pd.DataFrame:
    """One row per (cell, verified family), for cells rewarded on at least two families (columns
    `FAMILY_COLUMNS`); empty when no cell has per-family ceilings."""
    rows = [r for c in config.cells for r in family_rows(c, cell_dir(runs_dir, config, c))]
    df = pd.DataFrame(rows, columns=FAMILY_COLUMNS)
    return df[FAMILY_COLUMNS]


# ------------------------------------------------------------------------------------------ statistics
@dataclass
class Interval:
    """A mean over runs with its interval; `method` says how the interval was obtained."""

    estimate: float
    low: float
    high: float
    n: int
    method: str

    def excludes_zero(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": _finite(self.estimate), "ci_low": _finite(self.low), "ci_high": _finite(self.high),
                "n": self.n, "method": self.method}


def _finite(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def mean_interval(values: Any, half_widths: Any = None, level: float = LEVEL) -> Interval:
    """Mean of per-run values with a t interval over runs (n >= 2); for a single run, its own interval
    (`half_widths`, e.g. from the evaluation's bootstrap), else none."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    v = v[ok]
    if v.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0, "no runs")
    if v.size >= 2:
        half = sps.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        return Interval(float(v.mean()), float(v.mean() - half), float(v.mean() + half), int(v.size),
                        f"mean over {v.size} runs, {level:.0%} t interval")
    h = np.asarray(half_widths, dtype=float)[ok] if half_widths is not None else np.array([np.nan])
    if h.size and np.isfinite(h[0]):
        return Interval(float(v[0]), float(v[0] - h[0]), float(v[0] + h[0]), 1,
                        "a single run: its evaluation intervals combined (no seed-to-seed variation)")
    return Interval(float(v[0]), np.nan, np.nan, 1, "a single run: no interval")


def _diff_half(df: pd.DataFrame, a: str, b: str) -> np.ndarray:
    """Half-width of (a - b) from the two evaluation intervals, combined as if independent."""
    ha = (df[f"{a}_high"] - df[f"{a}_low"]) / 2
    hb = (df[f"{b}_high"] - df[f"{b}_low"]) / 2
    return np.sqrt(ha.to_numpy(float) ** 2 + hb.to_numpy(float) ** 2)


def difference(a: Interval, b: Interval) -> Interval:
    """a - b with half-widths combined in quadrature (independent groups)."""
    if not (np.isfinite(a.estimate) and np.isfinite(b.estimate)):
        return Interval(np.nan, np.nan, np.nan, 0, "not available")
    ha, hb = (a.high - a.low) / 2, (b.high - b.low) / 2
    h = float(np.sqrt(ha**2 + hb**2)) if np.isfinite(ha) and np.isfinite(hb) else np.nan
    d = a.estimate - b.estimate
    return Interval(d, d - h, d + h, a.n + b.n, "difference of the two means, half-widths combined in quadrature")


def welch_difference(a: Any, b: Any, level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) with a Welch t interval (unequal variances, Welch-Satterthwaite degrees of freedom);
    needs at least 2 finite values in each group (else NaN: use `difference` of the two intervals)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return Interval(np.nan, np.nan, np.nan, int(x.size + y.size), "Welch interval needs 2 runs a group")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = float(np.sqrt(vx + vy))
    d = float(x.mean() - y.mean())
    if se == 0:
        return Interval(d, d, d, int(x.size + y.size), "difference of means; no spread in either group")
    dof = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(sps.t.ppf(0.5 + level / 2, dof)) * se
    return Interval(d, d - half, d + half, int(x.size + y.size),
                    f"difference of means, {level:.0%} Welch t interval ({dof:.1f} degrees of freedom)")


# ------------------------------------------------------------------------------------------ the analyses
def _with_arm(df: pd.DataFrame) -> pd.DataFrame:
    """Tables made before arms existed (or by hand, arm left empty) hold RL cells only."""
    return df.assign(arm=df["arm"].fillna("rl") if "arm" in df.columns else "rl")


def reference_rows(df: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """Complete real-reward RL cells at the reference beta and lr (of the sweep table or the family table)."""
    df = _with_arm(df)
    return df[(df["reward"] == "verified") & (df["arm"] == "rl") & (df["status"] == "complete")
              & (df["beta"] == config.reference_beta) & (df["lr"] == config.reference_lr)]


def _as_regression(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.rename(columns={"cell": "run", "ceiling_low": "ci_low", "ceiling_high": "ci_high",
                               "ceiling_identifiable": "identifiable"})
    return out[["run", "base", "seed", "ceiling", "ci_low", "ci_high", "identifiable", *MEASURES]].reset_index(drop=True)


def regression_table(df: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """The runs of the across-run regression: complete real-reward RL cells at the reference beta and lr."""
    return _as_regression(reference_rows(df, config))


def across(table: pd.DataFrame) -> tuple[Any | None, str | None]:
    """(AcrossRunsFit, None) or (None, the reason it could not be fitted)."""
    measures = [m for m in MEASURES if m in table.columns and table[m].notna().any()]
    if table.empty:
        return None, "no complete real-reward run at the reference beta"
    if not measures:
        return None, "no base diversity measures at step 0 of the evaluations"
    n_id = int(table["identifiable"].astype(bool).sum())
    if n_id < 3:
        return None, (f"only {n_id} of {len(table)} runs have an identifiable ceiling; the regression needs at "
                      "least 3 (with distinct bases)")
    try:
        return fit_across_runs(table.drop(columns=["base", "seed"]), measures=measures, level=LEVEL), None
    except CeilingError as exc:
        return None, str(exc)


def _offset_band(train: pd.DataFrame, measure: str) -> tuple[float, float]:
    """The offset c (mean of the training bases' mean gaps ceiling - measure) and the half-width of a 95%
    prediction band for one run on a new base: t(b - 1) sqrt(s_b^2 (1 + 1/b) + s_w^2), with b training bases, s_b
    the SD of their mean gaps and s_w the pooled within-base SD of runs. The new base is a new draw of the offset,
    so seeds of the same base do not count as independent draws of it (with 2 training bases, t has 1 dof)."""
    gap = (train["ceiling"] - train[measure]).astype(float)
    by_base = gap.groupby(train["base"])
    means = by_base.mean().to_numpy()
    b = means.size
    within = [g.to_numpy() - g.mean() for _, g in by_base if g.size > 1]
    dof_w = sum(w.size - 1 for w in within)
    s_w2 = float(sum(float(np.sum(w**2)) for w in within) / dof_w) if dof_w else 0.0
    if b < 2:
        return float(means.mean()), float("inf")
    s_b2 = float(np.var(means, ddof=1))
    return float(means.mean()), float(sps.t.ppf(0.5 + LEVEL / 2, b - 1) * np.sqrt(s_b2 * (1 + 1 / b) + s_w2))


def leave_one_base_out(table: pd.DataFrame, measure: str, model: str = "line") -> dict[str, Any]:
    """Predict each base's ceiling from the other bases' runs alone, against the ceilings its runs realized. Only
    identifiable ceilings take part, as in the regression.

    model "line": regress the other bases' ceilings on `measure` (`fit_across_runs`), its 95% prediction band.
    model "offset": the claim's own model for a measure in the ceiling's units (the base's pass@k at the largest
    k): ceiling = measure + c, with c the mean of the other bases' mean gaps ceiling - measure and a 95% prediction
    band for one run on a new base (`_offset_band`: between-base and within-base spread, t on bases - 1). One
    parameter: with three bases, a free line is fitted to two of them and its slope swings when it extrapolates;
    the offset does not."""
    if model not in ("line", "offset"):
        raise CeilingError(f"leave_one_base_out: model must be 'line' or 'offset', not {model!r}")
    t = table[table["identifiable"].astype(bool) & np.isfinite(table["ceiling"].astype(float))]
    rows, reasons = [], []
    if t["base"].nunique() < 3:
        reasons.append(f"identifiable ceilings on {t['base'].nunique()} base(s) only; predicting a base from the "
                       "others needs at least 3 bases with identifiable ceilings")
    for base in sorted(t["base"].unique()) if not reasons else []:
        train, test = t[t["base"] != base], t[t["base"] == base]
        x = float(test[measure].iloc[0])
        if model == "offset":
            c, half = _offset_band(train, measure)
            center, lo, hi = [x + c], [x + c - half], [x + c + half]
        else:
            try:
                fit = fit_across_runs(train.drop(columns=["base", "seed"]), measures=[measure], level=LEVEL)
            except CeilingError as exc:
                reasons.append(f"{base}: {exc}")
                continue
            center, lo, hi = fit.predict([x], band="prediction")
        for r in test.itertuples(index=False):
            rows.append({"run": r.run, "base": base, "x": x, "predicted": float(center[0]), "low": float(lo[0]),
                         "high": float(hi[0]), "realized": float(r.ceiling), "realized_low": float(r.ci_low),
                         "realized_high": float(r.ci_high), "error": float(center[0] - r.ceiling),
                         "covered": bool(lo[0] <= r.ceiling <= hi[0])})
    err = np.array([r["error"] for r in rows])
    how = (f"regress the other bases' ceilings on {measure}" if model == "line" else
           f"ceiling = {measure} + c, c the mean of the other bases' mean gaps")
    return {"method": f"leave one base out: {how}, predict this base's ceiling with a {LEVEL:.0%} prediction band",
            "model": model, "measure": measure, "rows": rows,
            "rmse": _finite(float(np.sqrt(np.mean(err**2)))) if err.size else None,
            "mean_error": _finite(float(err.mean())) if err.size else None,
            "coverage": _finite(float(np.mean([r["covered"] for r in rows]))) if rows else None,
            "reasons": reasons}


def control_comparison(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Each random-reward control against the real-reward RL runs of the same base, beta and lr (Welch interval
    on the difference of mean gains when both groups hold 2 runs or more)."""
    df = _with_arm(df)
    out = []
    done = df[df["status"] == "complete"]
    for (base, beta, lr), ctrl in done[done["reward"] == "random"].groupby(["base", "beta", "lr"], sort=True):
        real = done[(done["reward"] == "verified") & (done["arm"] == "rl") & (done["base"] == base)
                    & (done["beta"] == beta) & (done["lr"] == lr)]
        g_real = mean_interval(real["gain"], _diff_half(real, "final_reward", "base_reward"))
        g_ctrl = mean_interval(ctrl["gain"], _diff_half(ctrl, "final_reward", "base_reward"))
        welch = welch_difference(real["gain"], ctrl["gain"])
        diff = welch if np.isfinite(welch.estimate) else difference(g_real, g_ctrl)
        out.append({"base": base, "beta": float(beta), "lr": float(lr), "real": g_real.to_dict(),
                    "control": g_ctrl.to_dict(), "difference": diff.to_dict(),
                    "real_runs": real["cell"].tolist(), "control_runs": ctrl["cell"].tolist()})
    return out


# ------------------------------------------------------------------------------------------ verdicts
SUPPORT, CONTRADICT, UNDECIDED = "supported", "contradicted", "cannot decide"


def _ci(d: dict[str, Any] | Interval) -> str:
    d = d.to_dict() if isinstance(d, Interval) else d
    return f"{fmt(d['estimate'])} [{fmt(d['ci_low'])}, {fmt(d['ci_high'])}]"


class Claim(str, Enum):
    """What a finding is about. The value is the words the report prints; logic compares members."""

    CEILING = "1. ceiling set by base diversity"
    KL_COST = "2. past a critical KL, verified gains cost unverified reasoning"
    COVERAGE = "coverage (Yue et al. 2025: RL narrows pass@k at large k)"
    CONTROL = "control: random reward"
    CONVERSE = "converse: external data lifts the ceiling"

    __str__ = str.__str__
    __format__ = str.__format__


@dataclass
class Finding:
    """One statement about the claim: its verdict and the numbers behind it, in words."""

    claim: Claim
    verdict: str
    text: str
    key: bool = True
    """Whether the finding decides the claim's overall verdict (False: context, e.g. saturation alone)."""

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "text": self.text, "key": self.key}


@dataclass
class SweepAnalysis:
    """Everything the aggregated report shows (`to_dict()` is sweep_fits.json, minus the table)."""

    name: str
    table: pd.DataFrame
    reference_beta: float
    reference_lr: float
    across: Any | None
    across_reason: str | None
    prediction: dict[str, Any]
    coverage: dict[str, Any]
    unverified: dict[str, Any]
    thresholds: dict[str, Any]
    controls: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    family_table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAMILY_COLUMNS))
    """One row per (cell, verified family) when cells are rewarded on several families."""
    pooled_kinds: dict[str, int] = field(default_factory=dict)
    """How many of the pooled reference runs' identifiable ceilings are plateau levels or at the metric's maximum."""
    families: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per verified family: its regression, leave-one-base-out prediction and ceiling-vs-floor gap."""
    arms: list[dict[str, Any]] = field(default_factory=list)
    """Each non-RL arm (e.g. SFT mix-in) against RL alone on the same bases, seeds and beta, per family."""

    def to_dict(self) -> dict[str, Any]:
        runs = self.table.replace({np.nan: None}).to_dict(orient="records")
        return {"schema_version": SCHEMA_VERSION, "sweep": self.name, "level": LEVEL,
                "reference": {"beta": self.reference_beta, "lr": self.reference_lr},
                "runs": runs,
                "across_runs": self.across.to_dict() if self.across is not None else
                {"kind": "not_available", "reason": self.across_reason},
                "prediction_from_base": self.prediction, "pooled_ceiling_kinds": self.pooled_kinds,
                "coverage": self.coverage,
                "unverified": self.unverified, "thresholds": self.thresholds, "controls": self.controls,
                "families": self.families, "arms": self.arms,
                "family_runs": self.family_table.replace({np.nan: None}).to_dict(orient="records"),
                "conclusion": {"verdicts": self.verdicts, "findings": [f.to_dict() for f in self.findings]}}


def _seeds_note(df: pd.DataFrame) -> str:
    per_base = df.groupby("base")["seed"].nunique()
    if per_base.empty:
        return "no runs"
    lo, hi = int(per_base.min()), int(per_base.max())
    return f"{len(per_base)} base(s), {lo if lo == hi else f'{lo}-{hi}'} seed(s) each"


def _claim1(a: SweepAnalysis, reg: pd.DataFrame) -> list[Finding]:
    out: list[Finding] = []
    c = Claim.CEILING
    n_all = len(reg)
    ident = reg[reg["identifiable"].astype(bool)]
    n_id = len(ident)
    scope = f"real-reward runs at beta {a.reference_beta:g} ({_seeds_note(reg)})"
    out.append(Finding(c, SUPPORT if n_id >= max(1, (n_all + 1) // 2) else UNDECIDED,
                       f"Saturation: {n_id} of {n_all} {scope} have an identifiable ceiling (a narrow interval"
                       f"{''.join('; ' + p for p in _kinds_parts(a.pooled_kinds))})."
                       + ("" if n_id else " Without identifiable "
                       "ceilings nothing below can be decided; longer runs would be needed."), key=False))
    if a.across is None:
        out.append(Finding(c, UNDECIDED, f"Across-run regression not available: {a.across_reason}."))
    else:
        r = a.across.regressions[a.across.primary]
        slope = {"estimate": r["slope"], "ci_low": r["slope_ci"][0], "ci_high": r["slope_ci"][1]}
        name = MEASURE_NAMES.get(a.across.primary, a.across.primary)
        if not a.across.detected:
            v, what = UNDECIDED, "its interval includes 0: no relation is detected"
        elif r["slope"] > 0:
            v, what = SUPPORT, "ceilings rise with the base's diversity"
        else:
            v, what = CONTRADICT, "ceilings fall as the base's diversity rises"
        extra = "" if a.across.identifiable else f" (only {r['k']} runs: few degrees of freedom)"
        n_bases = int(ident["base"].nunique())
        out.append(Finding(c, v, f"Regression of the fitted ceiling on {name}: slope {_ci(slope)} over "
                                 f"{r['k']} runs of {n_bases} distinct bases{extra}; {what}."))
    p = a.prediction
    if p.get("rows"):
        spread = float(np.ptp(ident["ceiling"].astype(float))) if n_id else np.nan
        cov = p.get("coverage")
        v = SUPPORT if (cov is not None and cov >= 0.5 and p["rmse"] is not None and np.isfinite(spread)
                        and p["rmse"] < spread / 2) else UNDECIDED
        out.append(Finding(c, v, f"Predicted from the base alone (leave one base out): error RMSE "
                                 f"{fmt(p['rmse'])} against a spread of ceilings of {fmt(spread)}; "
                                 f"{'-' if cov is None else f'{100 * cov:.0f}%'} of realized ceilings fall in "
                                 "the prediction band.", key=False))
    else:
        why = "; ".join(p.get("reasons") or []) or "too few bases with identifiable ceilings"
        out.append(Finding(c, UNDECIDED, f"No prediction from the base alone: {why}.", key=False))
    if n_id:
        above = ident[ident["ci_low"] > ident["base_pass@kmax"]]
        below = ident[ident["ci_high"] <= ident["base_pass@kmax"]]
        v = CONTRADICT if len(above) else (SUPPORT if len(below) == n_id else UNDECIDED)
        out.append(Finding(c, v, f"Cap: {len(below)} of {n_id} identifiable ceilings lie at or below the base's "
                                 f"pass@k at the largest k (what the base can reach at all), {len(above)} lie "
                                 "above it.", key=v == CONTRADICT))  # staying under the cap is expected anyway
    return out


def _claim2(a: SweepAnalysis, real: pd.DataFrame) -> list[Finding]:
    out: list[Finding] = []
    c = Claim.KL_COST
    t = a.thresholds
    n, d = t["n_runs"], t["n_detected"]
    by_beta = ", ".join(f"beta {b:g}: {v['detected']} of {v['runs']}" for b, v in sorted(
        ((float(k), v) for k, v in t["by_beta"].items())))
    u = a.unverified["change"]
    g = a.unverified["verified_gain"]
    if n == 0:
        return [Finding(c, UNDECIDED, "No complete real-reward run to test it on.")]
    loss = u["ci_high"] is not None and u["ci_high"] < 0
    no_loss = u["ci_low"] is not None and u["ci_low"] >= 0
    gain = g["ci_low"] is not None and g["ci_low"] > 0
    if not gain:
        v = UNDECIDED  # without a verified gain there is nothing whose cost could be measured
    elif d >= max(1, (n + 1) // 2) and loss:
        v = SUPPORT
    else:  # no threshold in range with no loss is what the claim expects below a threshold not yet reached
        v = UNDECIDED
    where = ("" if not d else f" at {fmt(t['threshold_min'])} nats" if d == 1 else
             f" at {fmt(t['threshold_min'])} to {fmt(t['threshold_max'])} nats (median {fmt(t['threshold_median'])})")
    out.append(Finding(c, v, f"KL threshold detected in {d} of {n} real-reward runs{where} ({by_beta}); the largest "
                             f"KL reached was {fmt(t['max_kl'])} nats (KL(policy || base), k3, per sequence)."))
    if not gain:
        what, v = " Verified reward did not rise reliably, so there is no gain whose cost could be measured.", UNDECIDED
    elif loss:
        what, v = " Verified gains came with unverified losses.", SUPPORT
    elif no_loss:
        what = (" Verified gains came without unverified losses up to this KL: no cost below it, which the claim "
                "allows when its critical KL lies beyond the range reached.")
        v = CONTRADICT if d else UNDECIDED  # past a detected threshold, no loss would contradict it
    else:
        what, v = " The unverified change is within noise.", UNDECIDED
    out.append(Finding(c, v, f"From base to final checkpoint, verified reward changed by {_ci(g)} and the "
                             f"never-rewarded (unverified) score by {_ci(u)} ({u['method']}).{what}"))
    return out


def _coverage_finding(a: SweepAnalysis) -> Finding:
    cv = a.coverage
    ch, g = cv["change"], a.unverified["verified_gain"]
    learned = g["ci_low"] is not None and g["ci_low"] > 0
    v = UNDECIDED
    if ch["ci_high"] is not None and ch["ci_high"] < 0:
        v = SUPPORT
    elif ch["ci_low"] is not None and (ch["ci_low"] > 0 or (ch["ci_low"] >= 0 and learned)):
        v = CONTRADICT
    return Finding(Claim.COVERAGE, v,
                   f"pass@k at the largest k, final minus base: {_ci(ch)} over {ch['n']} real-reward runs; "
                   f"{cv['n_lower']} run(s) end clearly below their base (intervals apart), {cv['n_higher']} "
                   "clearly above." + ("" if learned else " (Verified reward did not rise reliably: RL may not "
                                                          "have moved far enough to tell.)"))


def _control_findings(a: SweepAnalysis) -> list[Finding]:
    out = []
    c = Claim.CONTROL
    if not a.controls:
        return [Finding(c, UNDECIDED, "No complete random-reward control: genuine learning cannot be separated "
                                      "from side effects of the update.")]
    for k in a.controls:
        d, real = k["difference"], k["real"]
        if real["ci_low"] is None or real["ci_low"] <= 0:
            v, what = UNDECIDED, "the verified-reward runs did not gain reliably, so there is nothing to explain"
        elif d["ci_low"] is not None and d["ci_low"] > 0:
            v, what = SUPPORT, "the verified reward teaches more than a random one"
        elif d["ci_high"] is not None and d["ci_high"] <= 0:
            v, what = CONTRADICT, "random rewards did as well: the gains are side effects of the update"
        else:
            v, what = UNDECIDED, "the difference is within noise"
        out.append(Finding(c, v, f"{k['base']} at beta {k['beta']:g}: verified-reward gain {_ci(k['real'])} "
                                 f"({k['real']['n']} run(s)) vs random-reward gain {_ci(k['control'])} "
                                 f"({k['control']['n']} run(s)); difference {_ci(d)}: {what}."))
    return out


BINDS_MARGIN = 0.05
"""A family's floor binds when its ceilings sit no more than this above the base's pass@k at the largest k (and
none clearly above it); also the leave-one-base-out error the issue sets as the knowledge family's goal."""


def family_analysis(ft: pd.DataFrame, config: SweepConfig) -> dict[str, dict[str, Any]]:
    """Per verified family, on the reference real-reward RL cells: the across-run regression of the family's
    ceilings on its base pass@k at the largest k, leave-one-base-out predictions, and the gap between each
    identifiable ceiling and its base's pass@k at the largest k (mean over runs, t interval)."""
    out: dict[str, dict[str, Any]] = {}
    if ft.empty:
        return out
    for fam, rows in reference_rows(ft, config).groupby("family", sort=False):
        reg = _as_regression(rows)
        fit, reason = across(reg)
        lobo = leave_one_base_out(reg, "base_pass@kmax", model="offset")  # the claim's model (see there)
        lobo_line = leave_one_base_out(reg, "base_pass@kmax", model="line")
        ident = reg[reg["identifiable"].astype(bool)]
        gap = mean_interval(ident["ceiling"] - ident["base_pass@kmax"])
        reach = mean_interval(rows["final_reward"] - rows["base_pass@kmax"])  # measured, no curve: every run
        # past the base's reach: an identifiable ceiling, or the final checkpoint's held-out reward itself, whose
        # interval lies above the base's pass@k at the largest k (no curve needed for the latter)
        above = rows[(rows["ceiling_identifiable"].astype(bool) & (rows["ceiling_low"] > rows["base_pass@kmax_high"]))
                     | (rows["final_reward_low"] > rows["base_pass@kmax_high"])]
        out[str(fam)] = {
            "runs": len(reg), "identifiable": len(ident), "bases": int(ident["base"].nunique()),
            **_ceiling_kinds(rows),
            "regression": fit.to_dict() if fit is not None else {"kind": "not_available", "reason": reason},
            "slope": (fit.regressions[fit.primary]["slope"] if fit is not None else None),
            "slope_ci": (list(fit.regressions[fit.primary]["slope_ci"]) if fit is not None else None),
            "slope_detected": bool(fit.detected) if fit is not None else False,
            "prediction": lobo, "prediction_line": lobo_line, "gap": gap.to_dict(), "n_above": len(above), "final_minus_base": reach.to_dict(),
            "base_pass@kmax": {str(b): _finite(float(g["base_pass@kmax"].mean())) for b, g in reg.groupby("base")},
            "ceiling_by_base": {str(b): _finite(float(g["ceiling"].mean())) for b, g in ident.groupby("base")}}
    return out


def _ceiling_kinds(rows: pd.DataFrame) -> dict[str, int]:
    """How many identifiable ceilings are plateau levels, and how many sit at the metric's maximum."""
    kind = rows.get("ceiling_kind", pd.Series(None, index=rows.index, dtype=object))
    return {"n_plateau": int((kind == "plateau").sum()), "n_at_max": int((kind == "at_maximum").sum())}


def _kinds_parts(r: dict[str, Any]) -> list[str]:
    return [f"{r[k]} {w}" for k, w in (("n_plateau", "plateau level(s)"), ("n_at_max", "at the metric's maximum"))
            if r.get(k)]


def _kinds_words(r: dict[str, Any]) -> str:
    parts = _kinds_parts(r)
    return f" ({', '.join(parts)})" if parts else ""


def _family_findings(a: SweepAnalysis) -> list[Finding]:
    """Claim 1 on each verified family: does its floor bind (ceilings at the base's pass@k at large k, predicted
    from the base alone), or does RL go past what the base could sample (a skill that carries over)?"""
    out = []
    for fam, r in a.families.items():
        gap, lobo = r["gap"], r["prediction"]
        n, n_id, above = r["runs"], r["identifiable"], r["n_above"]
        rmse = lobo.get("rmse")
        line = (r.get("prediction_line") or {}).get("rmse")
        pred = (f"leave-one-base-out error RMSE {fmt(rmse)} over {len(lobo.get('rows') or [])} runs (ceiling = the "
                f"base's pass@k + an offset learned on the other bases"
                + (f"; a free line through the other bases: RMSE {fmt(line)}" if line is not None else "") + ")"
                if rmse is not None else "no leave-one-base-out prediction (" + "; ".join(lobo.get("reasons") or ["-"]) + ")")
        slope = (f"slope on the base's pass@k {fmt(r['slope'])} [{fmt(r['slope_ci'][0])}, {fmt(r['slope_ci'][1])}]"
                 if r["slope"] is not None else "no regression")
        head = (f"{fam}: {n_id} of {n} runs identifiable{_kinds_words(r)} on {r['bases']} bases; ceiling minus the base's pass@k at "
                f"the largest k {_ci(gap)}; final held-out reward minus it {_ci(r['final_minus_base'])} over {n} "
                f"runs, {above} clearly past it (ceiling or final reward, intervals apart); {slope}; {pred}.")
        past = r["final_minus_base"]["ci_low"]
        if above > n // 2 or (past is not None and past > BINDS_MARGIN):
            v, what = CONTRADICT, (" RL went past what the base could sample: this family's floor does not bind "
                                   "(a skill that carries over to sub-spaces the base never solved).")
        elif n_id < max(3, (n + 1) // 2):
            v, what = UNDECIDED, " Too few identifiable ceilings to tell."
        elif (above == 0 and gap["ci_high"] is not None and -BINDS_MARGIN <= gap["ci_low"] <= gap["ci_high"] <= BINDS_MARGIN
              and ((rmse is not None and rmse <= BINDS_MARGIN) or (r["slope_detected"] and (r["slope"] or 0) > 0))):
            v, what = SUPPORT, (f" The floor binds: the ceiling sits within {BINDS_MARGIN:g} of the base's pass@k at "
                                "large k and is predicted from the base alone.")
        elif gap["ci_high"] is not None and gap["ci_high"] < -BINDS_MARGIN:
            v, what = UNDECIDED, " RL stopped below what the base could sample; the floor is not what limits it."
        else:
            v, what = UNDECIDED, " Neither clearly at nor clearly above the base's reach."
        out.append(Finding(Claim.CEILING, v, head + what, key=False))
    return out


def arm_comparison(table: pd.DataFrame, ft: pd.DataFrame) -> list[dict[str, Any]]:
    """Each non-RL arm against RL alone on the same (base, seed, beta, lr) cells: per family (pooled when there
    are no families), the difference of final held-out reward (paired over matched cells, t interval) and how
    many arm runs end with pass@k at the largest k above their base's (intervals apart)."""
    out = []
    frames = [("verified", table)] if ft.empty else [(f, g) for f, g in ft.groupby("family", sort=False)]
    keys = ["base", "seed", "beta", "lr"]
    for fam, df in frames:
        done = df[(df["status"] == "complete") & (df["reward"] == "verified")]
        rl = done[done["arm"] == "rl"]
        for arm, g in done[done["arm"] != "rl"].groupby("arm", sort=True):
            m = g.merge(rl, on=keys, suffixes=("", "_rl"))
            d = mean_interval(m["final_reward"] - m["final_reward_rl"])
            past = mean_interval(g["final_reward"] - g["base_pass@kmax"])  # past the base's reach, on average
            lifted = int((g["final_pass@kmax_low"] > g["base_pass@kmax_high"]).sum())
            ceil_above = int((g["ceiling_identifiable"].astype(bool) & (g["ceiling_low"] > g["base_pass@kmax_high"])).sum())
            out.append({"arm": str(arm), "family": str(fam), "pairs": len(m), "runs": len(g),
                        "final_reward_difference": d.to_dict(), "final_minus_base": past.to_dict(),
                        "arm_final_reward": _finite(float(g["final_reward"].mean())) if len(g) else None,
                        "rl_final_reward": _finite(float(m["final_reward_rl"].mean())) if len(m) else None,
                        "base_pass@kmax": _finite(float(g["base_pass@kmax"].mean())) if len(g) else None,
                        "n_pass@kmax_above_base": lifted, "n_ceiling_above_base": ceil_above,
                        "cells": g["cell"].tolist()})
    return out


def _arm_findings(a: SweepAnalysis) -> list[Finding]:
    out = []
    for r in a.arms:
        d = r["final_reward_difference"]
        past = r["final_minus_base"]
        if r["pairs"] == 0 or d["ci_low"] is None:
            v, what = UNDECIDED, "no matched RL-alone run (or a single pair) to compare with"
        elif d["ci_low"] > 0 and past["ci_low"] is not None and past["ci_low"] > 0:
            v, what = SUPPORT, "external data lifted the family past what the base could sample"
        elif d["ci_low"] > 0:
            v, what = UNDECIDED, ("the mix-in beat RL alone, but the family did not end clearly past the base's "
                                  "pass@k at large k")
        elif d["ci_high"] is not None and d["ci_high"] <= 0:
            v, what = CONTRADICT, "the mix-in did not raise held-out reward over RL alone"
        else:
            v, what = UNDECIDED, "the difference is within noise"
        out.append(Finding(Claim.CONVERSE, v,
                           f"{r['arm']} arm on {r['family']}: final held-out reward {fmt(r['arm_final_reward'])} vs "
                           f"RL alone {fmt(r['rl_final_reward'])} at the same steps; paired difference {_ci(d)} over "
                           f"{r['pairs']} base/seed pair(s); final reward minus the base's pass@k at the largest k "
                           f"{_ci(past)}; {r['n_pass@kmax_above_base']} of {r['runs']} arm runs end "
                           f"with pass@k at the largest k clearly above their base's (intervals apart; bases' mean "
                           f"{fmt(r['base_pass@kmax'])}); "
                           f"{r['n_ceiling_above_base']} with an identifiable ceiling above it: {what}."))
    return out


def _overall(findings: list[Finding], claim: Claim) -> str:
    """The claim's verdict from its key findings: all supported -> supported; contradicted (and nothing
    supported) -> contradicted; both -> mixed; some supported, the rest undecided -> partly supported."""
    vs = [f.verdict for f in findings if f.claim == claim and f.key]
    if CONTRADICT in vs and SUPPORT in vs:
        return "mixed: some numbers support it, others contradict it"
    if CONTRADICT in vs:
        return CONTRADICT
    if vs and all(v == SUPPORT for v in vs):
        return SUPPORT
    if SUPPORT in vs:
        return "partly supported (the other parts cannot be decided)"
    return UNDECIDED


def analyse(config: SweepConfig, table: pd.DataFrame, families: pd.DataFrame | None = None) -> SweepAnalysis:
    """The across-run fits, predictions, comparisons and verdicts of a collected sweep table (and of its
    per-family table, `family_table`, when cells are rewarded on several families)."""
    table = _with_arm(table)
    reg = regression_table(table, config)
    fit, reason = across(reg)
    primary = fit.primary if fit is not None else "base_pass@kmax"
    prediction = leave_one_base_out(reg, primary) if reg[primary].notna().any() else {
        "method": "leave one base out", "measure": primary, "rows": [], "rmse": None, "mean_error": None,
        "coverage": None, "reasons": [reason or "no base measures"]}
    real = table[(table["reward"] == "verified") & (table["arm"] == "rl") & (table["status"] == "complete")]
    cov_change = mean_interval(real["coverage_change"], _diff_half(real, "final_pass@kmax", "base_pass@kmax"))
    coverage = {"change": cov_change.to_dict(),
                "n_lower": int((real["final_pass@kmax_high"] < real["base_pass@kmax_low"]).sum()),
                "n_higher": int((real["final_pass@kmax_low"] > real["base_pass@kmax_high"]).sum())}
    unverified = {"change": mean_interval(real["unverified_change"],
                                          _diff_half(real, "final_unverified", "base_unverified")).to_dict(),
                  "verified_gain": mean_interval(real["gain"], _diff_half(real, "final_reward", "base_reward")).to_dict()}
    by_beta = {f"{b:g}": {"runs": len(g), "detected": int(g["threshold_detected"].sum())}
               for b, g in real.groupby("beta", sort=True)}
    found = real.loc[real["threshold_detected"].astype(bool), "threshold"].astype(float)
    thresholds = {"n_runs": len(real), "n_detected": int(real["threshold_detected"].sum()),
                  "threshold_min": _finite(float(found.min())) if len(found) else None,
                  "threshold_median": _finite(float(found.median())) if len(found) else None,
                  "threshold_max": _finite(float(found.max())) if len(found) else None,
                  "by_beta": by_beta, "max_kl": _finite(float(real["max_kl"].max())) if len(real) else None}
    a = SweepAnalysis(name=config.name, table=table, reference_beta=config.reference_beta,
                      reference_lr=config.reference_lr, across=fit, across_reason=reason, prediction=prediction,
                      coverage=coverage, unverified=unverified, thresholds=thresholds,
                      controls=control_comparison(table))
    if families is not None and not families.empty:
        a.family_table = families
    a.families = family_analysis(a.family_table, config)
    a.arms = arm_comparison(table, a.family_table)
    a.pooled_kinds = _ceiling_kinds(reference_rows(table, config))
    a.findings = (_claim1(a, reg) + _family_findings(a) + _claim2(a, real) + [_coverage_finding(a)]
                  + _control_findings(a) + _arm_findings(a))
    claim2 = _overall(a.findings, Claim.KL_COST)
    if claim2 == UNDECIDED and thresholds["n_detected"] == 0 and thresholds["max_kl"] is not None:
        claim2 += f" (no threshold and no unverified loss up to KL {fmt(thresholds['max_kl'])} nats)"
    a.verdicts = {"claim 1: verified reward saturates at a ceiling set by base diversity": _overall(a.findings, Claim.CEILING),
                  "claim 2: past a critical KL, verified gains cost unverified reasoning": claim2,
                  "RL narrows coverage (pass@k at large k)": _overall(a.findings, Claim.COVERAGE),
                  "gains are genuine (beat the random-reward control)": _overall(a.findings, Claim.CONTROL)}
    for f in _family_findings(a):
        a.verdicts[f"claim 1 on {f.text.split(':', 1)[0]}"] = f.verdict
    if a.arms:
        a.verdicts["converse: external data lifts the ceiling"] = _family_overall(_arm_findings(a))
    return a


def _family_overall(findings: list[Finding]) -> str:
    vs = [f.verdict for f in findings]
    if vs and all(v == vs[0] for v in vs):
        return vs[0]
    return "mixed: " + "; ".join(f"{f.text.split(':', 1)[0]} {f.verdict}" for f in findings)
