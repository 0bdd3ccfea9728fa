"""The canonical long frame that every stage speaks: one row per (run, step, metric[, family, k]).

Columns (required first):
    run        str    run name
    step       int    optimizer step (0 = the base model)
    compute    float  cumulative training FLOPs at that step (NaN when not derivable)
    metric     str    canonical metric name (see METRICS)
    value      float
optional:
    ci_low, ci_high  float  interval bounds (NaN when none)
    n          float  sample size behind the value
    estimator  str    how the value was computed ("mean@64", "unbiased pass@k", "k3 on policy samples", ...)
    source_key str    the key in the source log (ingested frames)
    family     str    task family, or "all", "verified", "unverified" for aggregates
    k          float  k of pass@k (NaN elsewhere)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError

REQUIRED_COLUMNS = ["run", "step", "compute", "metric", "value"]
OPTIONAL_COLUMNS = ["ci_low", "ci_high", "n", "estimator", "source_key", "family", "k"]
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

# Canonical metric names. KL names carry direction and estimator: kl/policy_base_k3 = KL(policy || base), k3.
METRICS: dict[str, str] = {
    "verified/reward": "mean verified reward (training reward for ingested logs), in [0, 1]",
    "verified/greedy_acc": "greedy accuracy on held-out verified problems",
    "verified/pass@k": "unbiased pass@k on held-out verified problems (column k)",
    "verified/eval_acc": "held-out accuracy of the rewarded task logged by a trainer (e.g. eval_acc)",
    "unverified/score": "mean score on never-rewarded families (or a held-out benchmark in ingested logs)",
    "unverified/greedy_acc": "greedy accuracy on never-rewarded families",
    "unverified/pass@k": "unbiased pass@k on never-rewarded families (column k)",
    "unverified/nll": "held-out negative log-likelihood per token on the base's pretraining distribution",
    "policy/entropy": "mean full-vocabulary token entropy of the policy on its own samples, nats",
    "kl/policy_base_k1": "KL(policy || base), k1 estimator, summed per sequence",
    "kl/policy_base_k3": "KL(policy || base), k3 estimator, summed per sequence",
    "kl/base_policy_k1": "KL(base || policy), k1 estimator on base samples, summed per sequence",
    "kl/base_policy_k3": "KL(base || policy), k3 estimator on base samples, summed per sequence",
    "kl/policy_base_k3_token": "KL(policy || base), k3, mean per token",
    "kl/logged": "a KL figure logged by another framework (estimator and direction as that framework defines)",
    "length/mean": "mean completion length in tokens",
    "diversity/distinct_answers": "distinct final answers per prompt",
    "diversity/distinct_2": "distinct bigrams / total bigrams of completions",
    "diversity/duplicate_share": "share of completions identical to another completion of the same prompt",
    "crossover/k": "smallest k at which the base's pass@k reaches the checkpoint's (log2-interpolated; NaN = no "
                   "crossover up to the largest k; ci_high may be inf)",
    "compute/flops": "cumulative training FLOPs",
    "compute/wall_seconds": "cumulative wall-clock seconds",
}


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})


def _dtype(col: str) -> str:
    return "object" if col in ("run", "metric", "estimator", "source_key", "family") else (
        "int64" if col == "step" else "float64")


def normalize_frame(df: pd.DataFrame, where: str = "frame") -> pd.DataFrame:
    """Return `df` with every canonical column present and typed; raise a CeilingError if a required one is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CeilingError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}")
    out = df.copy()
    for c in OPTIONAL_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan if _dtype(c) == "float64" else None
    out["step"] = pd.to_numeric(out["step"], errors="coerce")
    out = out[out["step"].notna()]
    out["step"] = out["step"].astype("int64")
    for c in ("compute", "value", "ci_low", "ci_high", "n", "k"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["run"] = out["run"].astype(str)
    out["metric"] = out["metric"].astype(str)
    return out[COLUMNS + [c for c in out.columns if c not in COLUMNS]].reset_index(drop=True)


def series(df: pd.DataFrame, metric: str, run: str | None = None, family: str | None = None,
           k: float | None = None) -> pd.DataFrame:
    """One metric as a (step, compute, value, ci_low, ci_high) frame sorted by step, NaN values dropped."""
    m = df["metric"] == metric
    if run is not None:
        m &= df["run"] == run
    if family is not None and "family" in df.columns:
        m &= df["family"] == family
    if k is not None and "k" in df.columns:
        m &= df["k"] == k
    sub = df.loc[m]
    sub = sub[np.isfinite(pd.to_numeric(sub["value"], errors="coerce").astype(float))]
    return sub.sort_values("step").reset_index(drop=True)


FAMILY_SETS = ("verified", "all", "unverified")
"""Of one metric's aggregate rows, the family set read: the first present, never a mean of the sets (eval.csv
has a row per set, e.g. policy/entropy; the verified set is the diversity floor's, `ceiling.evaluate.floor`)."""


def one_family_set(rows: pd.DataFrame) -> pd.DataFrame:
    """Aggregate rows of one metric reduced to one family set: the first of FAMILY_SETS present, else the rows
    with no family (ingested logs)."""
    fam = rows["family"]
    for name in FAMILY_SETS:
        if (fam == name).any():
            return rows[fam == name]
    return rows[fam.isna()]


def wide(df: pd.DataFrame, run: str | None = None) -> pd.DataFrame:
    """Pivot to one row per (run, step) and one column per metric (aggregate rows only: family NaN/'all')."""
    sub = df if run is None else df[df["run"] == run]
    if "family" in sub.columns:
        sub = sub[sub["family"].isna() | sub["family"].isin(["all", "verified", "unverified"])]
    if "k" in sub.columns:
        sub = sub[sub["k"].isna()]
    return sub.pivot_table(index=["run", "step"], columns="metric", values="value", aggfunc="last").reset_index()
