"""`fit_frame`: everything that can be fitted from a canonical frame, as one `FitReport` (= fits.json).

    report = fit_frame(frame, run="my-run")
    save_fits("runs/my-run/fits.json", report)
    report = load_fits("runs/my-run/fits.json")       # no refitting
    report.ceiling.predict([1e18], band="prediction")

Sections (see SCHEMA.md): `diagnosis` (the run diagnosis: regime sequence, onsets, trade-off rates, the
checkpoint to ship), `ceiling` (the best saturating form by leave-future-out error, with the form
comparison and an extrapolation backtest), `entropy_law`, `collapse` and `across_runs` (when the frame holds
at least three runs). A section that cannot be fitted is a `NotAvailable` with the reason in words.

Adding a section: a module with a result class and one line in `ceiling.fit.registry`, plus its builder in
`fit_frame` and its field on `FitReport`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError, error_at
from ceiling.fit.across import AcrossRunsFit, fit_across_runs
from ceiling.fit.collapse import CollapseFit, fit_collapse
from ceiling.fit.common import SCHEMA_VERSION, NotAvailable, fingerprint
from ceiling.fit.curve import DEFAULT_MAX_CI_WIDTH, CurveFit, CurveFitter, backtest, compare_forms, detect_collapse
from ceiling.fit.diagnosis import RunDiagnosis, diagnose
from ceiling.fit.entropy import EntropyLawFit, fit_entropy_law
from ceiling.fit.families import FamilyCeilings
from ceiling.fit.registry import REQUIRED_SECTIONS, SECTION_KINDS, SECTIONS
from ceiling.frame import FAMILY_SETS, normalize_frame, one_family_set
from ceiling.io import atomic_write_json, read_json

VERIFIED_METRICS = ("verified/reward", "verified/greedy_acc", "verified/eval_acc")
UNVERIFIED_METRICS = ("unverified/score", "unverified/greedy_acc")
KL_METRICS = ("kl/policy_base_k3", "kl/logged", "kl/policy_base_k1", "kl/policy_base_k3_token")
ENTROPY_METRIC = "policy/entropy"
Section = RunDiagnosis | CurveFit | FamilyCeilings | EntropyLawFit | CollapseFit | AcrossRunsFit | NotAvailable
OPTIONAL_SECTIONS = ("diagnosis", "family_ceilings")  # left out of fits.json when None


@dataclass
class FitReport:
    """The fits of one run; `to_dict()` is fits.json."""

    run: str | None
    ceiling: Section
    entropy_law: Section
    collapse: Section
    across_runs: Section | None
    meta: dict[str, Any] = field(default_factory=dict)
    diagnosis: Section | None = None
    family_ceilings: Section | None = None

    def sections(self) -> dict[str, Section | None]:
        return {name: getattr(self, name) for name in SECTIONS}

    def summary(self) -> str:
        parts = [f"fits for run {self.run!r}"]
        for name, sec in self.sections().items():
            parts.append(f"== {name} ==")
            parts.append("not computed (a single run)" if sec is None else sec.summary())
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run": self.run}
        for name, sec in self.sections().items():
            if sec is None and name in OPTIONAL_SECTIONS:
                continue  # fits.json written before these sections existed (or without them) stay as they were
            out[name] = None if sec is None else sec.to_dict()
        out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitReport:
        if not isinstance(d, dict) or "schema_version" not in d:
            raise CeilingError("fits: not a fits.json object (no schema_version)")
        if d["schema_version"] != SCHEMA_VERSION:
            raise CeilingError(f"fits: schema_version {d['schema_version']} is not supported (this version reads "
                               f"{SCHEMA_VERSION})")
        secs = {name: (None if d.get(name) is None else section_from_dict(d[name], name)) for name in SECTIONS}
        for name in REQUIRED_SECTIONS:
            if secs[name] is None:
                secs[name] = NotAvailable(name, "missing from the stored file")
        return cls(run=d.get("run"), meta=d.get("meta") or {}, **secs)  # type: ignore[arg-type]


def section_from_dict(d: dict[str, Any], section: str = "") -> Section:
    """Rebuild one stored section by its `kind`."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind == "not_available":
        return NotAvailable.from_dict(d, section)
    if kind not in SECTION_KINDS:
        raise CeilingError(f"fits: section {section!r} has unknown kind {kind!r}")
    return SECTION_KINDS[kind].from_dict(d)


def from_dict(d: dict[str, Any]) -> FitReport | Section:
    """Rebuild a FitReport (a whole fits.json) or a single result from its `to_dict()`."""
    if isinstance(d, dict) and "schema_version" in d and "ceiling" in d and "kind" not in d:
        return FitReport.from_dict(d)
    return section_from_dict(d)


def save_fits(path: str | Path, report: FitReport) -> Path:
    """Write fits.json atomically."""
    return atomic_write_json(path, report.to_dict())


def load_fits(path: str | Path) -> FitReport:
    """Read a fits.json written by `save_fits` (a one-line CeilingError naming the file otherwise)."""
    p = Path(path)
    d = read_json(p, what="fits file")
    try:
        return FitReport.from_dict(d)
    except CeilingError as exc:
        raise error_at(p, str(exc)) from None


# ------------------------------------------------------------------------------------------ frame access
def _aggregate_rows(df: pd.DataFrame) -> pd.DataFrame:
    fam = df["family"]
    return df[fam.isna() | fam.isin(["all", "verified", "unverified"])]


def _metric_series(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(step, compute, value) of one metric (k NaN), mean over duplicated steps.

    Aggregate rows are used when present, of one family set (`FAMILY_SETS`: verified first, so policy/entropy is
    the verified families' entropy in our run directories); otherwise the per-family rows are averaged per step.
    """
    sub = df[(df["metric"] == metric) & df["k"].isna()]
    sub = sub[np.isfinite(sub["value"])]
    agg = _aggregate_rows(sub)
    if not agg.empty:
        sub = one_family_set(agg)
    if sub.empty:
        return sub[["step", "compute", "value"]]
    return sub.groupby("step", as_index=False).agg(compute=("compute", "mean"), value=("value", "mean"))


def _first(df: pd.DataFrame, names: Sequence[str], min_points: int = 1) -> tuple[str | None, pd.DataFrame]:
    for m in names:
        s = _metric_series(df, m)
        if len(s) >= min_points:
            return m, s
    return None, pd.DataFrame(columns=["step", "compute", "value"])


def _is_percent(y: np.ndarray) -> bool:
    return bool(y.min() >= 0 and 1.5 < y.max() <= 100)


def _x_axis(s: pd.DataFrame, x: str) -> tuple[np.ndarray, str, list[str]]:
    notes: list[str] = []
    if x == "compute":
        c = s["compute"].to_numpy(dtype=float)
        if np.all(np.isfinite(c)) and np.all(np.diff(c) > 0):
            return c, "compute", notes
        notes.append("compute is missing or not increasing; fitted against step")
    elif x != "step":
        raise CeilingError(f"fit: x must be 'compute' or 'step', not {x!r}")
    return s["step"].to_numpy(dtype=float), "step", notes


# ------------------------------------------------------------------------------------------ fit_frame
def fit_frame(frame: pd.DataFrame, run: str | None = None, x: str = "compute", metric: str | None = None,
              forms: Sequence[str] = ("sigmoid", "power", "exponential"), n_boot: int = 1000, seed: int = 0,
              exclude_frac: float | None = None, across: bool = True) -> FitReport:
    """Fit what the frame allows for one run and return a FitReport (whose `to_dict()` is fits.json).

    Args:
        frame: the canonical long frame (ceiling.frame); several runs allowed, `run` picks one.
        x: "compute" (falls back to step, with a note, when compute is missing) or "step".
        metric: the verified metric whose ceiling is fitted (default: the first of verified/reward,
            verified/greedy_acc, verified/eval_acc present).
        forms: curve forms compared by leave-future-out error for the ceiling.
        n_boot, seed: bootstrap size and seed for every section.
        exclude_frac: early-window exclusion (default: curve.DEFAULT_EXCLUDE_FRAC).
        across: fit the across-runs section when the frame holds at least three runs.
    """
    df = normalize_frame(frame)
    runs = sorted(df["run"].unique().tolist())
    if not runs:
        raise CeilingError("fit: the frame is empty")
    if run is None:
        if len(runs) > 1:
            raise CeilingError(f"fit: the frame holds {len(runs)} runs ({', '.join(runs[:5])}...); pass run=")
        run = runs[0]
    if run not in runs:
        raise CeilingError(f"fit: run {run!r} is not in the frame (runs: {', '.join(runs[:10])})")
    rdf = df[df["run"] == run]
    fitter = CurveFitter(n_boot=n_boot, seed=seed, x_label=x,
                         **({} if exclude_frac is None else {"exclude_frac": exclude_frac}))
    # the data's fingerprint leaves out wall-clock figures, so identical runs give identical fits.json
    timed = rdf["metric"].str.contains(r"wall_seconds|speed/|per_sec|seconds_per", regex=True)
    meta: dict[str, Any] = {"x_requested": x, "fingerprint": fingerprint(rdf.loc[~timed, "step"].to_numpy(),
                                                                        rdf.loc[~timed, "value"].to_numpy()),
                            "n_rows": len(rdf)}
    diagnosis = _section("diagnosis", lambda: diagnose(rdf, n_sim=min(max(n_boot, 199), 999), seed=seed))
    ceiling = _section("ceiling", lambda: _fit_ceiling(rdf, x, metric, forms, fitter, meta))
    families = _family_ceilings(rdf, x, metric, forms, fitter)
    entropy = _section("entropy_law", lambda: _fit_entropy(rdf, metric, meta))
    collapse = _section("collapse", lambda: _fit_collapse_frame(rdf, x, metric, n_boot, seed, meta))
    across_sec: Section | None = None
    if across:
        across_sec = (NotAvailable("across_runs", f"the frame holds {len(runs)} run(s); at least 3 are needed")
                      if len(runs) < 3 else
                      _section("across_runs", lambda: _fit_across(df, runs, x, metric, replace(fitter, n_boot=min(n_boot, 300)))))
    return FitReport(run=run, ceiling=ceiling, entropy_law=entropy, collapse=collapse, across_runs=across_sec,
                     meta=meta, diagnosis=diagnosis, family_ceilings=families)


def _section(name: str, build: Any) -> Section:
    try:
        return build()
    except CeilingError as exc:  # the section names the series; the inner "field 'y': " adds nothing for a reader
        return NotAvailable(name, str(exc).replace("field 'y': ", "").replace("field 'x'/'y': ", ""))


def _verified(rdf: pd.DataFrame, metric: str | None, min_points: int) -> tuple[str, pd.DataFrame]:
    names = (metric,) if metric else VERIFIED_METRICS
    name, s = _first(rdf, names, min_points)
    if name is None:
        raise CeilingError(f"no verified metric with at least {min_points} points (looked for {', '.join(names)})")
    return name, s


def _fit_ceiling(rdf: pd.DataFrame, x: str, metric: str | None, forms: Sequence[str], fitter: CurveFitter,
                 meta: dict[str, Any]) -> CurveFit:
    name, s = _verified(rdf, metric, 8)
    xs, x_label, notes = _x_axis(s, x)
    y = s["value"].to_numpy(dtype=float)
    scale = 100.0 if _is_percent(y) else 1.0
    fitter = replace(fitter, x_label=x_label, max_ci_width=0.10 * scale,
                     a_bounds=(0.0, scale) if y.min() >= 0 and y.max() <= scale else None)
    cut = detect_collapse(xs, y)
    if cut is not None:
        notes.append(f"the metric collapses after {x_label} = {cut:.4g}; the ceiling is fitted up to there only")
        xs, y = xs[xs <= cut], y[xs <= cut]
    cmp_ = compare_forms(xs, y, forms=forms, fitter=fitter)
    fit = cmp_.fits[cmp_.best]
    bt = backtest(xs, y, replace(fitter, form=cmp_.best, max_ci_width=DEFAULT_MAX_CI_WIDTH))
    fit.extra = {"metric": name, "collapse_at": cut, "units": "percent" if scale == 100 else "as logged", "notes": notes,
                 "selection": cmp_.to_dict(),
                 "backtest": bt.replace({np.nan: None}).to_dict(orient="records")}
    meta["ceiling_metric"] = name
    return fit


def verified_families(rdf: pd.DataFrame, metric: str = "verified/reward") -> list[str]:
    """The families with their own rows of `metric` (aggregate family sets aside), in the frame's order."""
    fam = rdf.loc[(rdf["metric"] == metric) & rdf["k"].isna(), "family"].dropna()
    return list(dict.fromkeys(f for f in fam if f not in FAMILY_SETS))


def _family_ceilings(rdf: pd.DataFrame, x: str, metric: str | None, forms: Sequence[str],
                     fitter: CurveFitter) -> FamilyCeilings | None:
    """Each verified family's ceiling, fitted as the pooled one is; None with fewer than two families."""
    name = metric or "verified/reward"
    names = verified_families(rdf, name)
    if len(names) < 2:
        return None
    fits = {}
    for fam in names:
        rows = rdf[(rdf["metric"] == name) & (rdf["family"] == fam)]
        fits[fam] = _section(f"ceiling of {fam}", lambda: _fit_ceiling(rows, x, name, forms, fitter, {}))
    return FamilyCeilings(fits=fits, metric=name)


def _fit_entropy(rdf: pd.DataFrame, metric: str | None, meta: dict[str, Any]) -> EntropyLawFit:
    name, s = _verified(rdf, metric, 5)
    h = _metric_series(rdf, ENTROPY_METRIC)
    if h.empty:
        raise CeilingError(f"{ENTROPY_METRIC} is not logged")
    j = s.merge(h, on="step", suffixes=("", "_h"))
    if len(j) < 5:
        raise CeilingError(f"only {len(j)} steps carry both {name} and {ENTROPY_METRIC} (need 5)")
    y = j["value"].to_numpy(dtype=float)
    scale = 100.0 if _is_percent(y) else 1.0
    bounded = y.min() >= 0 and y.max() <= scale  # a score in [0, 1] (or percent): the law's ceiling must be too
    fit = fit_entropy_law(j["value_h"].to_numpy(dtype=float), y, steps=j["step"].to_numpy(dtype=float),
                          max_ci_width=0.10 * scale, y_bounds=(0.0, scale) if bounded else None)
    fit.data["metric"] = name
    meta["entropy_metric"] = name
    return fit


def _fit_collapse_frame(rdf: pd.DataFrame, x: str, metric: str | None, n_boot: int, seed: int,
                        meta: dict[str, Any]) -> CollapseFit:
    uname, u = _first(rdf, UNVERIFIED_METRICS, 10)
    if uname is None:
        raise CeilingError(f"no unverified score with at least 10 points (looked for {', '.join(UNVERIFIED_METRICS)})")
    kname, k = _first(rdf, KL_METRICS, 10)
    if kname is not None and np.ptp(k["value"].to_numpy(dtype=float)) == 0:
        meta["collapse_kl_note"] = f"{kname} is constant ({float(k['value'].iloc[0]):g}); analysed against {x}"
        kname = None
    if kname is not None:
        j = u.merge(k[["step", "value"]], on="step", suffixes=("", "_x"))
        xs, x_label = j["value_x"].to_numpy(dtype=float), kname
    else:
        j = u.copy()
        xs, x_label, _ = _x_axis(j, x)
        j["value_x"] = xs
    vname, v = _first(rdf, (metric,) if metric else VERIFIED_METRICS, 10)
    vv = None
    if vname is not None:
        jv = j.merge(v[["step", "value"]], on="step", how="left", suffixes=("", "_v"))
        if jv["value_v"].notna().all():
            vv = jv["value_v"].to_numpy(dtype=float)
    fit = fit_collapse(xs, j["value"].to_numpy(dtype=float), vv, x_label=x_label, n_boot=n_boot, seed=seed)
    if meta.get("collapse_kl_note"):
        fit.reasons.insert(0, meta["collapse_kl_note"])
    fit.data.update({"unverified_metric": uname, "verified_metric": vname if vv is not None else None})
    meta["collapse_x"] = x_label
    return fit


def base_measures(df: pd.DataFrame, run: str) -> dict[str, float]:
    """The base model's diversity measures of a run, read at its first step (step 0 = the base)."""
    rdf = df[df["run"] == run]
    if rdf.empty:
        return {}
    step0 = rdf["step"].min()
    b = rdf[rdf["step"] == step0]
    agg = _aggregate_rows(b)
    out: dict[str, float] = {}
    pk = agg[(agg["metric"] == "verified/pass@k") & agg["k"].notna()]
    if not pk.empty:
        kmax = pk["k"].max()
        out["base_pass@kmax"] = float(pk[pk["k"] == kmax]["value"].mean())
    for m, key in ((ENTROPY_METRIC, "base_entropy"), ("diversity/distinct_answers", "base_distinct_answers")):
        v = one_family_set(agg[(agg["metric"] == m) & agg["k"].isna()])["value"]  # the verified floor
        if v.notna().any():
            out[key] = float(v.mean())
    return out


def _fit_across(df: pd.DataFrame, runs: list[str], x: str, metric: str | None, fitter: CurveFitter) -> AcrossRunsFit:
    rows = []
    for r in runs:
        rdf = df[df["run"] == r]
        row: dict[str, Any] = {"run": r, **base_measures(df, r)}
        try:
            _, s = _verified(rdf, metric, 8)
            xs, x_label, _ = _x_axis(s, x)
            y = s["value"].to_numpy(dtype=float)
            fit = replace(fitter, form="sigmoid", x_label=x_label).fit(xs, y)
            row.update(ceiling=fit.estimate, ci_low=fit.ci_low, ci_high=fit.ci_high, identifiable=fit.identifiable)
        except CeilingError as exc:
            row.update(ceiling=np.nan, ci_low=np.nan, ci_high=np.nan, identifiable=False, note=str(exc))
        rows.append(row)
    table = pd.DataFrame(rows)
    measures = [m for m in ("base_pass@kmax", "base_entropy", "base_distinct_answers") if m in table.columns]
    if not measures:
        raise CeilingError("no base diversity measures (verified/pass@k, policy/entropy at step 0) in the frame")
    return fit_across_runs(table, measures=measures)
