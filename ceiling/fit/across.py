"""Across runs: do the base model's diversity measures predict the RL ceiling?

Each run contributes its fitted ceiling A_i with its own standard error s_i (from its bootstrap interval,
s_i = width / (2 z)). For each diversity measure x (base entropy, base pass@k coverage at the largest k, ...)
we fit a random-effects meta-regression

    A_i = b0 + b1 x_i + u_i + e_i,   e_i ~ N(0, s_i^2) (known),   u_i ~ N(0, tau^2) (between-run scatter),

tau^2 by the method of moments (DerSimonian-Laird for regression), then weighted least squares with weights
1 / (s_i^2 + tau^2) and Knapp-Hartung intervals (t with k - 2 degrees of freedom, variance scaled by
max(1, Q / (k - 2))), which keep their level with few runs. Precise ceilings count more; runs whose
ceiling was not identifiable are left out and listed.

Predicting a run's ceiling from its base alone: `predict(x)` gives the regression line with a confidence
band, and a prediction band that adds tau^2 and a typical s_i^2 (what a newly fitted ceiling would scatter
by). Leave-one-run-out predictions (`loo`) check this against each run's fitted ceiling.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ceiling.errors import CeilingError
from ceiling.fit.common import SCHEMA_VERSION, as_float, fingerprint, fmt, fnum, interval, table_row


def _meta_regression(x: np.ndarray, y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    k = y.size
    design = np.column_stack([np.ones(k), x])
    w = 1.0 / s**2
    xtwx = design.T @ (design * w[:, None])
    beta_fe = np.linalg.solve(xtwx, design.T @ (w * y))
    q_fe = float(np.sum(w * (y - design @ beta_fe) ** 2))
    trace = float(np.sum(w) - np.trace(np.linalg.solve(xtwx, design.T @ (design * (w**2)[:, None]))))
    tau2 = max(0.0, (q_fe - (k - 2)) / trace) if trace > 0 else 0.0
    ws = 1.0 / (s**2 + tau2)
    xtwx_s = design.T @ (design * ws[:, None])
    beta = np.linalg.solve(xtwx_s, design.T @ (ws * y))
    q = float(np.sum(ws * (y - design @ beta) ** 2))
    scale = max(1.0, q / (k - 2)) if k > 2 else 1.0
    cov = np.linalg.inv(xtwx_s) * scale
    return {"beta": beta, "cov": cov, "tau2": tau2, "dof": k - 2, "q": q, "scale": scale}


@dataclass
class AcrossRunsFit:
    """Ceilings regressed on base diversity measures; `estimate` is the slope on the primary measure."""

    primary: str
    regressions: dict[str, dict[str, Any]]
    table: pd.DataFrame
    excluded: list[str]
    level: float
    identifiable: bool
    detected: bool
    reasons: list[str]
    method: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, float]:
        out = {}
        for name, r in self.regressions.items():
            out[f"{name}:intercept"], out[f"{name}:slope"] = r["intercept"], r["slope"]
        return out

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        out = {}
        for name, r in self.regressions.items():
            out[f"{name}:intercept"] = tuple(r["intercept_ci"])
            out[f"{name}:slope"] = tuple(r["slope_ci"])
        return out

    @property
    def estimate(self) -> float:
        return self.regressions[self.primary]["slope"]

    @property
    def ci_low(self) -> float:
        return self.regressions[self.primary]["slope_ci"][0]

    @property
    def ci_high(self) -> float:
        return self.regressions[self.primary]["slope_ci"][1]

    def predict(self, x: Any, band: str | None = None, measure: str | None = None,
                level: float | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted ceiling for a base with diversity measure x (the primary measure unless `measure`)."""
        name = measure or self.primary
        if name not in self.regressions:
            raise CeilingError(f"predict: no regression on {name!r}; have {', '.join(self.regressions)}")
        r = self.regressions[name]
        xa = np.atleast_1d(np.asarray(x, dtype=float))
        design = np.column_stack([np.ones_like(xa), xa])
        center = design @ np.array([r["intercept"], r["slope"]])
        if band is None:
            return center
        if band not in ("confidence", "prediction"):
            raise CeilingError(f"predict: band must be None, 'confidence' or 'prediction', not {band!r}")
        var = np.einsum("ij,jk,ik->i", design, np.asarray(r["cov"]), design)
        if band == "prediction":
            var = var + r["tau2"] + r["typical_s2"]
        t = sps.t.ppf(0.5 + (self.level if level is None else level) / 2, max(r["dof"], 1))
        half = t * np.sqrt(var)
        return center, center - half, center + half

    def summary(self) -> str:
        lines = ["ceilings across runs: random-effects meta-regression on base diversity measures",
                 f"{'measure':<26}{'slope':>10}{'low':>10}{'high':>10}{'tau':>9}{'LOO rmse':>10}{'runs':>6}"]
        for name, r in self.regressions.items():
            lines.append(f"{name:<26}{fnum(r['slope']):>10}{fnum(r['slope_ci'][0]):>10}{fnum(r['slope_ci'][1]):>10}"
                         f"{fnum(np.sqrt(r['tau2'])):>9}{fnum(r.get('loo_rmse')):>10}{r['k']:>6}")
        lines.append(f"primary: {self.primary}; relation detected: {self.detected}")
        if self.excluded:
            lines.append("left out: " + ", ".join(self.excluded))
        if self.reasons:
            lines.append("notes: " + "; ".join(self.reasons))
        return "\n".join(lines)

    # ------------------------------------------------------------------ the report's words (section "across_runs")
    title = "across runs"

    def headline(self) -> str:
        r = self.regressions.get(self.primary) or {}
        return (f"slope of the ceiling on {self.primary}: {fmt(r.get('slope'))} "
                f"{interval(*(r.get('slope_ci') or [None, None]))}")

    def warnings(self) -> list[str]:
        return [f"across runs: {r}" for r in self.reasons]

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for name, r in self.regressions.items():
            verdict = "detected" if self.detected and name == self.primary else ""
            diag = f"{r.get('k')} runs; between-run sd {fmt(np.sqrt(r['tau2']) if r.get('tau2') is not None else None)}"
            if r.get("loo_rmse") is not None:
                diag += f"; leave-one-run-out RMSE {fmt(r.get('loo_rmse'))}"
            rows.append(table_row("across runs", f"slope of the ceiling on {name}", r.get("slope"),
                                  *(r.get("slope_ci") or [None, None]), str(self.method), verdict, diag))
            rows.append(table_row("across runs", f"intercept ({name})", r.get("intercept"),
                                  *(r.get("intercept_ci") or [None, None]), "same regression", "", ""))
        if self.excluded:
            rows.append(table_row("across runs", "runs left out", None, None, None, "-", "",
                                  ", ".join(map(str, self.excluded))))
        return rows

    def to_dict(self) -> dict[str, Any]:
        regs = {n: {k: (np.asarray(v).tolist() if k == "cov" else v) for k, v in r.items()}
                for n, r in self.regressions.items()}
        return {"kind": "across_runs", "schema_version": SCHEMA_VERSION, "estimate": as_float(self.estimate),
                "ci_low": as_float(self.ci_low), "ci_high": as_float(self.ci_high), "method": self.method,
                "identifiable": bool(self.identifiable), "detected": bool(self.detected), "reasons": self.reasons,
                "primary": self.primary, "level": self.level, "regressions": regs,
                "runs": self.table.replace({np.nan: None}).to_dict(orient="records"), "excluded": self.excluded,
                "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AcrossRunsFit:
        try:
            return cls(primary=d["primary"], regressions=d["regressions"], table=pd.DataFrame(d["runs"]),
                       excluded=list(d["excluded"]), level=float(d["level"]), identifiable=bool(d["identifiable"]),
                       detected=bool(d["detected"]), reasons=list(d["reasons"]), method=d["method"],
                       data=d.get("data", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CeilingError(f"fits: stored across-runs fit is malformed ({exc})") from None


def fit_across_runs(table: pd.DataFrame, measures: Sequence[str] | None = None, ceiling: str = "ceiling",
                    ci_low: str = "ci_low", ci_high: str = "ci_high", identifiable: str | None = "identifiable",
                    level: float = 0.95, run: str = "run") -> AcrossRunsFit:
    """Regress per-run ceilings on base diversity measures (one simple regression per measure).

    `table` has one row per run: `run`, `ceiling`, `ci_low`, `ci_high` (the ceiling's interval at `level`),
    optionally `identifiable`, and one column per measure (default: every other numeric column). The first
    measure is the primary one.
    """
    for col in (ceiling, ci_low, ci_high):
        if col not in table.columns:
            raise CeilingError(f"across runs: missing column {col!r}")
    df = table.copy()
    if run not in df.columns:
        df[run] = [f"run{i}" for i in range(len(df))]
    if measures is None:
        skip = {run, ceiling, ci_low, ci_high, identifiable}
        measures = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
    if not measures:
        raise CeilingError("across runs: no diversity measure columns given")
    excluded: list[str] = []
    keep = np.isfinite(df[[ceiling, ci_low, ci_high]].astype(float)).all(axis=1)
    if identifiable and identifiable in df.columns:
        keep &= df[identifiable].astype(bool)
    excluded += [f"{r} (ceiling not identifiable or no interval)" for r in df.loc[~keep, run]]
    df = df[keep].reset_index(drop=True)
    z = sps.norm.ppf(0.5 + level / 2)
    s = ((df[ci_high] - df[ci_low]).astype(float) / (2 * z)).clip(lower=1e-6).to_numpy()
    y = df[ceiling].astype(float).to_numpy()
    regs: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for m in measures:
        if m not in df.columns:
            reasons.append(f"measure {m!r} missing")
            continue
        x = pd.to_numeric(df[m], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0:
            reasons.append(f"{m}: fewer than 3 runs with distinct values")
            continue
        r = _meta_regression(x[ok], y[ok], s[ok])
        t = sps.t.ppf(0.5 + level / 2, max(r["dof"], 1))
        se = np.sqrt(np.diag(r["cov"]))
        reg = {"intercept": float(r["beta"][0]), "slope": float(r["beta"][1]),
               "intercept_ci": [float(r["beta"][0] - t * se[0]), float(r["beta"][0] + t * se[0])],
               "slope_ci": [float(r["beta"][1] - t * se[1]), float(r["beta"][1] + t * se[1])],
               "p_slope": float(2 * sps.t.sf(abs(r["beta"][1] / se[1]), max(r["dof"], 1))),
               "cov": r["cov"].tolist(), "tau2": r["tau2"], "dof": r["dof"], "k": int(ok.sum()),
               "typical_s2": float(np.median(s[ok] ** 2)), "x_range": [float(x[ok].min()), float(x[ok].max())]}
        reg.update(_loo(x[ok], y[ok], s[ok], df.loc[ok, run].tolist(), level))
        regs[m] = reg
    if not regs:
        raise CeilingError("across runs: nothing to regress (" + "; ".join(reasons or ["no usable runs"]) + ")")
    primary = next(m for m in measures if m in regs)
    pr = regs[primary]
    detected = bool(pr["slope_ci"][0] > 0 or pr["slope_ci"][1] < 0)
    ident = pr["k"] >= 4
    if not ident:
        reasons.append(f"only {pr['k']} runs: the regression has {pr['dof']} degree(s) of freedom")
    method = ("random-effects meta-regression of fitted ceilings on each base measure (DerSimonian-Laird tau^2, "
              f"weights 1/(s_i^2 + tau^2), Knapp-Hartung t intervals at {level:.0%}); leave-one-run-out check")
    data = {"n_runs": len(df), "fingerprint": fingerprint(y, s)}
    return AcrossRunsFit(primary=primary, regressions=regs, table=df, excluded=excluded, level=level,
                         identifiable=ident, detected=detected, reasons=reasons, method=method, data=data)


def _loo(x: np.ndarray, y: np.ndarray, s: np.ndarray, runs: list[str], level: float) -> dict[str, Any]:
    """Leave-one-run-out: predict each run's ceiling from the others, compare with its fitted ceiling."""
    k = y.size
    if k < 4:
        return {"loo": [], "loo_rmse": None, "loo_coverage": None}
    rows, errs, covered = [], [], []
    for i in range(k):
        m = np.arange(k) != i
        if np.ptp(x[m]) == 0:
            continue
        r = _meta_regression(x[m], y[m], s[m])
        d = np.array([1.0, x[i]])
        pred = float(d @ r["beta"])
        sd = float(np.sqrt(d @ r["cov"] @ d + r["tau2"] + s[i] ** 2))
        half = sps.t.ppf(0.5 + level / 2, max(r["dof"], 1)) * sd
        errs.append(pred - y[i])
        covered.append(abs(pred - y[i]) <= half)
        rows.append({"run": runs[i], "fitted": float(y[i]), "predicted": pred, "low": pred - half, "high": pred + half})
    return {"loo": rows, "loo_rmse": float(np.sqrt(np.mean(np.square(errs)))) if errs else None,
            "loo_coverage": float(np.mean(covered)) if covered else None}
