"""`build_report`: frames + fit results -> index.html, report.md, PNGs, fits.json and predictions.csv.

    from ceiling.report import build_report
    build_report(frame, fits, "reports/my-run", title="my run", eval_frame=eval_df)

The report reads frames and fit results only (never models), and writes nothing that depends on the time or
the machine, so the same inputs give byte-identical HTML and Markdown (`ceiling report DIR` relies on it).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import ceiling
from ceiling.errors import CeilingError
from ceiling.evaluate.floor import diversity_floor as base_floor
from ceiling.frame import normalize_frame, one_family_set
from ceiling.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ceiling.report import figures as F
from ceiling.report.page import FigureEntry, Page, render_html, render_markdown
from ceiling.report.predictions import default_budgets, predictions, to_csv
from ceiling.report.results import Fits, as_fits, kl_label

N_GRID = 200


# ---------------------------------------------------------------------------------------------- data
def _frames(frame: pd.DataFrame | None, eval_frame: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if frame is None and eval_frame is None:
        raise CeilingError("build_report: give a training frame, an evaluation frame, or both")
    ev = normalize_frame(eval_frame, "eval frame") if eval_frame is not None else None
    tr = normalize_frame(frame, "frame") if frame is not None else ev.iloc[0:0]
    return tr, ev


def _combine(tr: pd.DataFrame, ev: pd.DataFrame | None) -> pd.DataFrame:
    """One frame: a metric the evaluation measured comes from the evaluation rows only (as `ceiling.ingest`
    reads run directories), every other metric from the training frame."""
    if ev is None or ev.empty:
        return tr
    return pd.concat([tr[~tr["metric"].isin(set(ev["metric"]))], ev], ignore_index=True)


def _run_filter(df: pd.DataFrame, run: str | None) -> pd.DataFrame:
    """Keep one run: the fitted one when named and present, else the first run in the frame."""
    if df.empty:
        return df
    runs = list(dict.fromkeys(df["run"]))
    if run in runs or len(runs) == 1:
        return df[df["run"] == (run if run in runs else runs[0])]
    raise CeilingError(f"build_report: the fits are of run {run!r}, which is not among the frame's runs "
                       f"({', '.join(map(str, runs[:5]))})")


def _aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate rows only (family empty, 'all', 'verified' or 'unverified'; no k), as the fits read them."""
    fam = df["family"]
    return df[(fam.isna() | fam.isin(["all", "verified", "unverified"])) & df["k"].isna()]


def _metric(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """(step, compute, value) of one metric, one row per step (mean over duplicates), sorted by step; of one
    family set (verified first, as the fits read them: `ceiling.fit.fitreport.FAMILY_SETS`)."""
    sub = _aggregate(df)
    sub = sub[(sub["metric"] == name) & np.isfinite(sub["value"])]
    sub = one_family_set(sub)
    if sub.empty:
        return pd.DataFrame({"step": pd.Series(dtype="int64"), "compute": pd.Series(dtype=float),
                             "value": pd.Series(dtype=float)})
    return sub.groupby("step", as_index=False).agg(compute=("compute", "mean"), value=("value", "mean"))


def _paired(df: pd.DataFrame, x_metric: str, y_metric: str) -> pd.DataFrame:
    """Rows (step, x, y) where both metrics were measured at the same step."""
    x, y = _metric(df, x_metric), _metric(df, y_metric)
    out = x[["step", "value"]].merge(y[["step", "value"]], on="step", suffixes=("_x", "_y"))
    return out.rename(columns={"value_x": "x", "value_y": "y"})


def _grid(lo: float, hi: float, log: bool) -> np.ndarray:
    if log and lo > 0:
        return np.geomspace(lo, hi, N_GRID)
    return np.linspace(lo, hi, N_GRID)


# ---------------------------------------------------------------------------------------------- figures
def _fig_ceiling(f: Fits, both: pd.DataFrame) -> FigureEntry:
    x_name, metric = f.ceiling_x(), f.ceiling_metric()
    name, title = "reward_vs_compute", f"Verified reward against {x_name}"
    pts = _metric(both, metric)
    if x_name == "compute":
        pts = pts[np.isfinite(pts["compute"])]
    if pts.empty:
        return FigureEntry(name, title, "", skipped=f"the log has no {metric}"
                           + (" with compute" if x_name == "compute" else ""))
    x = pts["compute" if x_name == "compute" else "step"].to_numpy(float)
    y = pts["value"].to_numpy(float)
    result = f.ceiling_result()
    curve, level, note, excluded, obs_max = None, None, None, None, None
    if result is not None:
        lo, hi = f.ceiling_range()
        positive = x[x > 0]
        start = float(positive.min()) if positive.size else lo
        gx = _grid(start, 10 * hi, log=True)
        center, conf, pred = f.curve_with_bands(result, gx)
        curve = F.Curve(gx, center, f"{f.ceiling_form()} fit", conf, pred)
        level = f.ceiling_level()
        excluded = f.ceiling_excluded(x) | (x > hi)  # the early window, and points after a detected collapse
        obs_max = hi
    note = f.ceiling_note()
    zero = f" Points at {x_name} 0 (the base) are off the log axis." if (x <= 0).any() else ""
    from_eval = "source_key" in pts and bool((pts["source_key"] == "eval.csv").all())
    where = "at each evaluated checkpoint (held-out, eval.csv)" if from_eval else "at each logged step"
    if result is None:
        caption = f"Dots: {metric} {where}.{zero} No ceiling fit is available: {note}."
    else:
        caption = (f"Dots: {metric} {where} ({len(x)} points; grey ones were left out of the fit: the early "
                   f"window and anything after a collapse).{zero} "
                   f"Red: the fitted {f.ceiling_form()} curve with its 95% confidence band (dark) and prediction band "
                   f"(light), drawn to 10x the last fitted {x_name} (dotted line). "
                   + ("Green: the ceiling A with its 95% interval." if level is not None else
                      "No ceiling line: the ceiling is not identifiable from these data (see the warnings)."))
    x_label = f"{x_name} (training FLOPs)" if x_name == "compute" else f"{x_name} (compute not logged)"
    fig = F.reward_vs_compute(x, y, x_label, metric, curve, level, note=note, excluded=excluded,
                              observed_max=obs_max)
    return FigureEntry(name, title, caption, figure=fig)


def _passk_rows(ev: pd.DataFrame, metric: str) -> pd.DataFrame:
    """pass@k rows of one metric, one per (step, k): the aggregate row if logged, else the mean over families."""
    rows = ev[(ev["metric"] == metric) & np.isfinite(ev["k"]) & np.isfinite(ev["value"])]
    if rows.empty:
        return rows
    agg = rows[rows["family"].isin(["all", "verified", "unverified"]) | rows["family"].isna()]
    if not agg.empty:
        return agg.groupby(["step", "k"], as_index=False).agg(
            value=("value", "last"), ci_low=("ci_low", "last"), ci_high=("ci_high", "last"))
    mean = rows.groupby(["step", "k"], as_index=False)["value"].mean()
    return mean.assign(ci_low=np.nan, ci_high=np.nan)


def _fig_passk(ev: pd.DataFrame) -> FigureEntry:
    name, title = "passk", "pass@k of the base and the checkpoints"
    if not ev["metric"].isin(["verified/pass@k", "unverified/pass@k"]).any():
        return FigureEntry(name, title, "", skipped="no pass@k rows (the evaluator's eval.csv); run `ceiling eval` "
                           "to measure pass@k of the base and the checkpoints")
    panels = {}
    for metric, label in (("verified/pass@k", "verified families (rewarded)"),
                          ("unverified/pass@k", "unverified families (never rewarded)")):
        rows = _passk_rows(ev, metric)
        if not rows.empty:
            panels[label] = rows
    has_base = any((rows["step"] == 0).any() for rows in panels.values())
    caption = ("Unbiased pass@k against k (log2 axis) with 95% problem-level bootstrap intervals where measured. "
               + ("Dashed black: the base model (step 0). " if has_base else "The base (step 0) was not evaluated. ")
               + "Coloured: up to six checkpoints spread over the run, dark to light by step. Where a checkpoint's "
               "curve falls below the base's at large k, RL has narrowed the set of problems the model can solve "
               "at all.")
    return FigureEntry(name, title, caption, figure=F.passk_curves(panels))


def _fig_collapse(f: Fits, both: pd.DataFrame) -> FigureEntry:
    name, title = "score_vs_kl", "Unverified score against KL to the base"
    x_metric, y_metric = f.collapse_axes(set(both["metric"]))
    if not (both["metric"] == y_metric).any():
        return FigureEntry(name, title, "", skipped=f"the data hold no unverified score ({y_metric}): nothing "
                           "measures what RL may damage (evaluate never-rewarded families, or map a held-out "
                           "benchmark with --unverified)")
    if x_metric in ("step", "compute"):
        pts = _metric(both, y_metric)
        pts = pts.assign(x=pts[x_metric].astype(float), y=pts["value"])
        pts = pts[np.isfinite(pts["x"])]
        x_label = f"{x_metric} (KL to the base was not logged)"
    else:
        if not (both["metric"] == x_metric).any():
            return FigureEntry(name, title, "", skipped=f"the data hold no KL to the base ({x_metric}); the log "
                               "does not measure how far the policy moved")
        pts = _paired(both, x_metric, y_metric)
        x_label = kl_label(x_metric)
    if pts.empty:
        return FigureEntry(name, title, "", skipped=f"{y_metric} and {x_metric} were never measured at the same step")
    x, y = pts["x"].to_numpy(float), pts["y"].to_numpy(float)
    result = f.collapse_result()
    curve = None
    if result is not None and x.size:
        gx = _grid(0.0, float(np.nanmax(x)) * 1.05, log=False)
        center, conf, pred = f.curve_with_bands(result, gx)
        curve = F.Curve(gx, center, f.collapse_form_label(), conf, pred)
    threshold = f.threshold_level()
    note = f.collapse_note()
    caption = (f"Dots: unverified score (never rewarded) against {x_label} at each measured step. "
               + (f"Red: {f.collapse_form_label()} with its 95% confidence band. " if curve is not None else "")
               + ("Green: the threshold past which gains in verified reward come with losses in unverified score, "
                  "with its 95% interval." if threshold is not None else "No threshold was detected."))
    fig = F.score_vs_kl(x, y, x_label, curve, threshold, note=note)
    return FigureEntry(name, title, caption, figure=fig)


def _fig_entropy(f: Fits, both: pd.DataFrame) -> FigureEntry:
    name, title = "reward_vs_entropy", "Verified reward against policy entropy"
    if not (both["metric"] == "policy/entropy").any():
        return FigureEntry(name, title, "", skipped="the data hold no policy entropy (policy/entropy); the log "
                           "does not record it")
    metric = f.entropy_metric()
    pts = _paired(both, "policy/entropy", metric)
    if pts.empty:
        return FigureEntry(name, title, "", skipped=f"entropy and {metric} were never measured at the same step")
    h, r, steps = pts["x"].to_numpy(float), pts["y"].to_numpy(float), pts["step"].to_numpy(float)
    result = f.entropy_result()
    curve = None
    if result is not None:
        gx = _grid(0.0, float(h.max()) * 1.02, log=False)
        center, conf, pred = f.curve_with_bands(result, gx)
        curve = F.Curve(gx, center, "entropy law R = -a exp(H) + b", conf, pred)
    level = f.entropy_level()
    note = f.entropy_note()
    caption = ("Dots: verified reward against the policy's mean full-vocabulary token entropy (nats) at each step, "
               "coloured by step; training moves right as entropy is spent. "
               + ("Red: the entropy law R = -a exp(H) + b (Cui et al. 2025) with its 95% confidence band, drawn to "
                  "H = 0. " if curve is not None else "No entropy-law fit is available. ")
               + ("Green: its ceiling b - a at zero entropy, with its 95% interval." if level is not None else
                  ("No ceiling marker: the ceiling at H = 0 is not identifiable (see the warnings)."
                   if curve is not None else "")))
    bounds = (0.0, 100.0) if r.max() > 1.5 else (0.0, 1.0)
    if curve is not None and r.min() >= 0:  # a bounded score: draw the law inside its range
        curve = F.Curve(curve.x, np.clip(curve.y, *bounds), curve.label,
                        None if curve.conf is None else tuple(np.clip(b, *bounds) for b in curve.conf),
                        None if curve.pred is None else tuple(np.clip(b, *bounds) for b in curve.pred))
    fig = F.reward_vs_entropy(h, r, steps, metric, curve, level, note=note)
    return FigureEntry(name, title, caption, figure=fig)


def _fig_regimes(f: Fits, both: pd.DataFrame) -> FigureEntry:
    name, title = "regimes", "What the run is doing: scores against steps, by regime"
    d = f.diagnosis_result()
    if d is None:
        return FigureEntry(name, title, "", skipped=f.diagnosis_note() or "no run diagnosis")
    labels = {"held_out": "held-out accuracy", "proxy": "training reward", "never_rewarded": "never-rewarded score"}
    series = []
    for role in ("held_out", "proxy", "never_rewarded"):
        metric = d.roles.get(role)
        if not metric:
            continue
        pts = _metric(both, metric)
        if pts.empty:
            continue
        y = pts["value"].to_numpy(float)
        scale = 100.0 if d.data.get("percent", {}).get(role) else 1.0
        series.append((f"{labels[role]} ({metric})", pts["step"].to_numpy(float), y / scale))
    spans = [(s.regime, s.start, s.end) for s in d.sequence]
    first = min((float(x.min()) for _, x, _ in series if x.size), default=None)
    before = first is not None and bool(spans) and first < spans[0][1]  # the base, before the first regime
    onsets = [(s.regime, s.onset.step, s.onset.step_low, s.onset.step_high) for s in d.sequence if s.onset]
    fig = F.regimes_over_steps(series, spans, onsets)  # each span carries its regime's name: no second label
    caption = ("Each stretch of the run is shaded by the regime the diagnosis assigns to it (improving, plateau, "
               "trade-off, over-optimisation, collapse) and named at its top; "
               + (f"the stretch before step {spans[0][1]:g} is left unshaded: the diagnosis reads regimes from the "
                  "first evaluation after the start (a base point at step 0 often sits far below the rest); "
                  if before else "")
               + (f"dashed lines are the onsets ({len(onsets)}) with their 95% intervals shaded. " if onsets else
                  "there is no onset line: the run holds one regime throughout. ")
               + f"Verdict: {d.headline()}")
    return FigureEntry(name, title, caption, figure=fig)


# ---------------------------------------------------------------------------------------------- headline
def diversity_floor(eval_frame: pd.DataFrame | None) -> str | None:
    """The base model's diversity floor on the verified families, in words (`ceiling.evaluate.floor`, the one
    definition: entropy, pass@k at the largest k, distinct answers, each with its interval), or None."""
    floor = base_floor(eval_frame, "verified")
    return floor.words() if floor is not None else None


def summary_lines(fits: Fits | object, eval_frame: pd.DataFrame | None = None,
                  report_path: str | Path | None = None) -> list[str]:
    """The short terminal summary `ceiling run` prints: ceiling, diversity floor, KL threshold, report path."""
    f = as_fits(fits)
    lines = [f"{label}: {text}" for label, text in _headline(f, eval_frame)]
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return lines


def _headline(f: Fits, eval_frame: pd.DataFrame | None) -> list[tuple[str, str]]:
    floor = diversity_floor(eval_frame)
    rows = f.diagnosis_headlines()
    rows += [("Ceiling of the verified reward", f.ceiling_headline())]
    per_family = f.family_ceilings_headline()
    if per_family:
        rows.append(("Ceiling per verified family", per_family))
    rows += [("Diversity floor of the base", floor or "not measured (no rows for the base, step 0; run `ceiling eval`)"),
            ("KL threshold", f.threshold_headline())]
    ent = f.entropy_headline()
    if ent:
        rows.append(("Entropy-law ceiling (H -> 0)", ent))
    return rows


# ---------------------------------------------------------------------------------------------- the report
def _data(frame: pd.DataFrame | None, f: Fits, eval_frame: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the training frame of the fitted run, that frame combined with the run's evaluation rows)."""
    tr, ev = _frames(frame, eval_frame)
    tr = _run_filter(tr, f.run)
    return tr, _combine(tr, _run_filter(ev, f.run) if ev is not None else None)


def _figures(f: Fits, both: pd.DataFrame) -> list[FigureEntry]:
    figures = [_fig_ceiling(f, both), _fig_passk(both), _fig_collapse(f, both), _fig_entropy(f, both)]
    if f.has_diagnosis():
        figures.insert(0, _fig_regimes(f, both))
    return figures


def report_figures(frame: pd.DataFrame | None, fits: Fits | object,
                   eval_frame: pd.DataFrame | None = None) -> dict[str, Figure | str]:
    """The report's four figures as matplotlib Figures (for a notebook), or the reason one is skipped.

    Keys: reward_vs_compute, passk, score_vs_kl, reward_vs_entropy. Arguments as for `build_report`.
    """
    f = as_fits(fits)
    _, both = _data(frame, f, eval_frame)
    return {e.name: e.figure if e.figure is not None else f"skipped: {e.skipped}" for e in _figures(f, both)}


def build_report(frame: pd.DataFrame | None, fits: Fits | object, out_dir: str | Path, title: str = "ceiling report",
                 eval_frame: pd.DataFrame | None = None, budgets: Sequence[float] | None = None) -> Path:
    """Write the report of one run into `out_dir` and return the path of its index.html.

    Args:
        frame: the canonical frame the fits were made from (e.g. `ceiling.ingest.read_log(run_dir).frame`, or an
            ingested log); may be None with `eval_frame`. Only the fitted run is shown (`fits.run`).
        fits: a FitReport (`ceiling.fit.fit_frame`), a fits.json dict, or the path of a fits.json.
        out_dir: created if needed; receives index.html (self-contained), report.md, one PNG per figure,
            fits.json (the fit results as given) and predictions.csv (when a ceiling fit exists).
        title: the page title.
        eval_frame: the evaluator's frame (eval.csv), for pass@k, the base's diversity floor, the unverified
            score and KL. A metric present in both frames is taken from `eval_frame` only, as `ceiling.ingest`
            does when it reads a run directory (so passing the combined frame as `frame` is fine too).
        budgets: compute budgets for predictions.csv (default: log-spaced from the first observed compute to
            10x the last).
    """
    out = Path(out_dir)
    f = as_fits(fits)
    tr, both = _data(frame, f, eval_frame)
    figures = [replace(e, png=F.png_bytes(e.figure), figure=None) if e.figure is not None else e
               for e in _figures(f, both)]
    preds = None
    if f.ceiling_result() is not None:
        preds = predictions(f, default_budgets(f) if budgets is None else budgets)
    n_steps = int(tr["step"].nunique()) if not tr.empty else 0
    n_eval = int(both.loc[both["metric"].str.contains("pass@k", regex=False), "step"].nunique())
    subtitle = (f"run {f.run or (tr['run'].iloc[0] if not tr.empty else '?')}: {n_steps} logged steps, "
                + (f"{n_eval} evaluated checkpoints (pass@k)" if n_eval else "no pass@k evaluation"))
    page = Page(title=title, subtitle=subtitle, headline=_headline(f, both), warnings=f.warnings(),
                figures=figures, table=f.table(), predictions=preds,
                footer=f"Generated by ceiling {ceiling.__version__} from fits.json (schema version "
                       f"{f.schema_version}) and the run's logs; every number is reproducible with "
                       "`ceiling report DIR`.")
    out.mkdir(parents=True, exist_ok=True)
    for fig in figures:
        if fig.png is not None:
            atomic_write_bytes(out / f"{fig.name}.png", fig.png)
        else:  # a figure of an earlier build that no longer applies
            (out / f"{fig.name}.png").unlink(missing_ok=True)
    atomic_write_json(out / "fits.json", f.data)
    if preds is not None:
        atomic_write_text(out / "predictions.csv", to_csv(preds))
    else:
        (out / "predictions.csv").unlink(missing_ok=True)
    atomic_write_text(out / "report.md", render_markdown(page))
    return atomic_write_text(out / "index.html", render_html(page))
