"""The aggregated sweep report: index.html (self-contained), report.md, one PNG per figure, sweep.csv and
sweep_fits.json, from a `SweepAnalysis` and the cells' evaluation curves. Nothing time- or machine-dependent
is written, so the same cells give byte-identical files.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import ceiling
from ceiling.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ceiling.report import figures as F
from ceiling.report.page import CSS, figures_html
from ceiling.fit.common import fmt, interval
from ceiling.sweep.aggregate import (
    KL_METRIC,
    LEVEL,
    MEASURE_NAMES,
    SweepAnalysis,
    value_at,
)

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
CONTROL = "#7f7f7f"
FIGURES = ("ceiling_vs_diversity", "predicted_vs_realized", "coverage", "threshold_vs_beta", "unverified_vs_kl",
           "control_gain")


@dataclass(frozen=True)
class SweepFigure:
    name: str
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None


def curves(analysis: SweepAnalysis, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """(cell, step, kl, unverified, verified) at every evaluated step of every complete cell."""
    rows = []
    for cell, ev in sorted(frames.items()):
        for step in sorted(ev["step"].unique()):
            rows.append({"cell": cell, "step": int(step), "kl": value_at(ev, KL_METRIC, int(step), "all")[0],
                         "unverified": value_at(ev, "unverified/score", int(step), "unverified")[0],
                         "verified": value_at(ev, "verified/reward", int(step), "verified")[0]})
    return pd.DataFrame(rows, columns=["cell", "step", "kl", "unverified", "verified"])


def _colors(table: pd.DataFrame) -> dict[str, str]:
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(dict.fromkeys(table["base"]))}


def _figure(ncols: int = 1, width: float | None = None) -> tuple[Figure, list]:
    fig = Figure(figsize=(width or F.FIGSIZE[0], F.FIGSIZE[1]), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _render(build: Any, *args: Any) -> bytes:
    with matplotlib.rc_context(F.STYLE):
        return F.png_bytes(build(*args))


def _err(lo: Any, hi: Any, v: Any) -> np.ndarray | None:
    lo, hi, v = (np.asarray(a, float) for a in (lo, hi, v))
    if not (np.isfinite(lo).any() and np.isfinite(hi).any()):
        return None
    return np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)]).clip(min=0)


def _jitter(df: pd.DataFrame, col: str, span: float) -> np.ndarray:
    """Spread runs that share an x (seeds of one base) a little, deterministically."""
    x = df[col].to_numpy(float).copy()
    for idx in df.groupby(col).groups.values():
        idx = list(idx)
        for j, i in enumerate(idx):
            x[df.index.get_loc(i)] += (j - (len(idx) - 1) / 2) * 0.012 * span
    return x


def _legend(ax, **kw: Any) -> None:
    """A legend when something is labelled (none otherwise, without matplotlib's warning)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _diagonal(ax, lo: float, hi: float, label: str) -> None:
    ax.plot([lo, hi], [lo, hi], color="#555555", lw=1, ls="--", label=label)


# ---------------------------------------------------------------------------------------------- figures
def _fig_ceiling(a: SweepAnalysis, reg: pd.DataFrame, colors: dict[str, str]) -> Figure:
    measures = [m for m in MEASURE_NAMES if reg[m].notna().any()]
    fig, axes = _figure(len(measures), width=4.0 * len(measures))
    for ax, m in zip(axes, measures):
        d = reg[reg[m].notna()].reset_index(drop=True)
        span = float(np.ptp(d[m])) or 1.0
        x = _jitter(d, m, span)
        ident = d["identifiable"].astype(bool).to_numpy()
        if a.across is not None and m in a.across.regressions:
            lo_x, hi_x = float(d[m].min()) - 0.05 * span, float(d[m].max()) + 0.05 * span
            gx = np.linspace(lo_x, hi_x, 100)
            c, lo, hi = a.across.predict(gx, band="confidence", measure=m)
            r = a.across.regressions[m]
            ax.fill_between(gx, lo, hi, color=F.FIT, alpha=0.18, lw=0, label=f"{LEVEL:.0%} confidence band")
            ax.plot(gx, c, color=F.FIT, lw=1.8, label=f"fit: slope {fmt(r['slope'])} {interval(*r['slope_ci'])}")
        if m == "base_pass@kmax":
            _diagonal(ax, 0.0, 1.0, "ceiling = base pass@k (the cap)")
        for base in dict.fromkeys(d["base"]):
            s = (d["base"] == base).to_numpy()
            on = s & ident
            if on.any():
                ax.errorbar(x[on], d["ceiling"][on], yerr=_err(d["ci_low"][on], d["ci_high"][on], d["ceiling"][on]),
                            fmt="o", color=colors[base], ms=6, capsize=3, label=base)
            off = s & ~ident & np.isfinite(d["ceiling"].to_numpy(float))
            if off.any():
                ax.scatter(x[off], d["ceiling"][off], facecolors="none", edgecolors=colors[base], s=40,
                           label=f"{base} (not identifiable)")
        ax.set_xlabel(MEASURE_NAMES[m])
        ax.set_ylabel("fitted ceiling A of verified reward")
        _legend(ax, loc="best")
    fig.suptitle(f"Fitted RL ceiling against the base's diversity (beta {a.reference_beta:g})", fontsize=11,
                 fontweight="bold")
    return fig


def _fig_families(a: SweepAnalysis, colors: dict[str, str]) -> Figure:
    ft = a.family_table
    ft = ft[(ft["status"] == "complete") & (ft["reward"] == "verified") & (ft["beta"] == a.reference_beta)]
    fams = list(dict.fromkeys(ft["family"]))
    fig = Figure(figsize=(5.0 * len(fams), F.FIGSIZE[1] + 1.8), layout="constrained")  # room for the legends below
    axes = [fig.add_subplot(1, len(fams), i + 1) for i in range(len(fams))]
    for ax, fam in zip(axes, fams):
        d = ft[ft["family"] == fam].reset_index(drop=True)
        _diagonal(ax, 0.0, 1.0, "ceiling = base pass@k (the cap)")
        x = _jitter(d, "base_pass@kmax", 1.0)
        for (base, arm), g in d.groupby(["base", "arm"], sort=False):
            idx = g.index.to_numpy()
            ident = g["ceiling_identifiable"].astype(bool).to_numpy()
            marker = "o" if arm == "rl" else "s"
            label = base if arm == "rl" else f"{base} ({arm})"
            on = idx[ident]
            if on.size:
                ax.errorbar(x[on], d["ceiling"][on], yerr=_err(d["ceiling_low"][on], d["ceiling_high"][on],
                                                                d["ceiling"][on]),
                            fmt=marker, color=colors.get(base, CONTROL), ms=6, capsize=3, label=label,
                            mfc="white" if arm != "rl" else None)
            # a ceiling that is not identifiable has no number to draw: its run's final held-out reward (measured,
            # no curve) stands in, as a cross, so a misfitted point fit does not land where the data never were
            off = idx[~ident & np.isfinite(g["final_reward"].to_numpy(float))]
            if off.size:
                ax.scatter(x[off], d["final_reward"][off], color=colors.get(base, CONTROL), s=36,
                           marker="x" if arm == "rl" else "+", label=f"{label}: final reward (ceiling not identifiable)")
        r = a.families.get(fam) or {}
        reach = r.get("final_minus_base") or {}
        est, lo_, hi_ = (reach.get(k) for k in ("estimate", "ci_low", "ci_high"))
        words = ("-" if est is None else f"{est:+.3f} [{lo_:+.3f}, {hi_:+.3f}]" if lo_ is not None else f"{est:+.3f}")
        ax.set_title(f"{fam}: RL final reward - base pass@k\n{words}\n(o: RL at beta {a.reference_beta:g}; "
                     "squares: other arms; x, +: final reward)", loc="left", fontsize=9)
        ax.set_xlabel(f"base pass@k at the largest k on {fam}")
        ax.set_ylabel(f"ceiling of {fam}'s held-out reward (or final reward)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.05)
        _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7.5, frameon=False)
        missing = int((~np.isfinite(d["ceiling"].to_numpy(float))).sum())
        if missing:
            ax.text(0.99, 0.01, f"{missing} run(s) without a fitted ceiling (see sweep_families.csv)",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5, color="0.4")
    fig.suptitle("Each family's ceiling against its base's reach", fontsize=11, fontweight="bold")
    return fig


def _fig_prediction(a: SweepAnalysis, colors: dict[str, str]) -> Figure:
    p = pd.DataFrame(a.prediction["rows"])
    fig, (ax,) = _figure()
    lo = float(np.nanmin(p[["low", "realized_low", "predicted", "realized"]].to_numpy(float)))
    hi = float(np.nanmax(p[["high", "realized_high", "predicted", "realized"]].to_numpy(float)))
    _diagonal(ax, lo, hi, "prediction = realized")
    for base in dict.fromkeys(p["base"]):
        s = p[p["base"] == base]
        ax.errorbar(s["predicted"], s["realized"],
                    xerr=_err(s["low"], s["high"], s["predicted"]),
                    yerr=_err(s["realized_low"], s["realized_high"], s["realized"]),
                    fmt="o", color=colors.get(base, CONTROL), capsize=3, label=base)
    ax.set_xlabel(f"ceiling predicted from the base alone ({MEASURE_NAMES.get(a.prediction['measure'], '')})")
    ax.set_ylabel("realized (fitted) ceiling")
    ax.set_title(f"leave one base out: RMSE {fmt(a.prediction['rmse'])}, mean error {fmt(a.prediction['mean_error'])}",
                 loc="left", fontsize=9, fontweight="normal")
    _legend(ax, loc="best")
    fig.suptitle("Ceiling predicted from the base vs realized", fontsize=11, fontweight="bold")
    return fig


def _fig_coverage(done: pd.DataFrame, colors: dict[str, str]) -> Figure:
    fig, axes = _figure(2, width=9.0)
    kmax = int(done["k_max"].max()) if done["k_max"].notna().any() else 0
    for ax, key, label in ((axes[0], "pass@kmax", f"pass@{kmax}"), (axes[1], "pass@1", "pass@1")):
        cols = [f"{w}_{key}{e}" for w in ("base", "final") for e in ("", "_low", "_high") if f"{w}_{key}{e}" in done]
        vals = done[cols].to_numpy(float)
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        pad = 0.05 * (hi - lo or 1.0)
        _diagonal(ax, lo - pad, hi + pad, "final = base")
        for (base, reward), s in done.groupby(["base", "reward"], sort=False):
            ctrl = reward == "random"
            yerr = (_err(s[f"final_{key}_low"], s[f"final_{key}_high"], s[f"final_{key}"])
                    if f"final_{key}_low" in s else None)
            ax.errorbar(s[f"base_{key}"], s[f"final_{key}"], yerr=yerr, fmt="x" if ctrl else "o",
                        color=CONTROL if ctrl else colors[base], capsize=3, alpha=0.85,
                        label=f"{base}{' (random reward)' if ctrl else ''}")
        ax.set_xlabel(f"base {label}")
        ax.set_ylabel(f"final checkpoint {label}")
        ax.set_title(label, loc="left", fontsize=9, fontweight="normal")
    _legend(axes[0], loc="best")
    fig.suptitle("Does RL shrink coverage? Base vs final checkpoint, held-out verified problems", fontsize=11,
                 fontweight="bold")
    return fig


def _fig_threshold(done: pd.DataFrame, colors: dict[str, str]) -> Figure:
    fig, (ax,) = _figure()
    betas = sorted(done["beta"].unique())
    pos = {b: i for i, b in enumerate(betas)}
    for (base, reward), s in done.groupby(["base", "reward"], sort=False):
        ctrl = reward == "random"
        color = CONTROL if ctrl else colors[base]
        x = np.array([pos[b] for b in s["beta"]], float) + (list(colors).index(base) - 1) * 0.08 + (0.04 if ctrl else 0)
        det = s["threshold_detected"].astype(bool).to_numpy()
        if det.any():
            ax.errorbar(x[det], s["threshold"][det], yerr=_err(s["threshold_low"][det], s["threshold_high"][det],
                                                                s["threshold"][det]),
                        fmt="o", color=color, capsize=3, label=f"{base}{' (random)' if ctrl else ''}: threshold")
        if (~det).any():
            ax.scatter(x[~det], s["max_kl"][~det], marker="v", facecolors="none", edgecolors=color, s=45,
                       label=f"{base}{' (random)' if ctrl else ''}: none detected (at max KL reached)")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_xlim(-0.5, len(betas) - 0.5)
    ax.set_xlabel("KL coefficient beta")
    ax.set_ylabel("KL(policy || base), k3, per sequence [nats]")
    _legend(ax, loc="best", fontsize=7.5)
    fig.suptitle("KL threshold of each run against beta", fontsize=11, fontweight="bold")
    return fig


def _fig_unverified(done: pd.DataFrame, cur: pd.DataFrame, colors: dict[str, str], ref_beta: float) -> Figure:
    fig, (ax,) = _figure()
    styles = ["-", "--", ":", "-."]
    other = [b for b in sorted(done["beta"].unique()) if b != ref_beta]
    for r in done.itertuples(index=False):
        c = cur[cur["cell"] == r.cell].sort_values("step")
        if c.empty:
            continue
        ctrl = r.reward == "random"
        ls = ":" if ctrl else ("-" if r.beta == ref_beta else styles[1 + other.index(r.beta) % 3])
        ax.plot(c["kl"], c["unverified"], ls=ls, marker="o", ms=3, lw=1.2, alpha=0.85,
                color=CONTROL if ctrl else colors[r.base], label=r.cell)
    ax.set_xlabel("KL(policy || base), k3, per sequence [nats]")
    ax.set_ylabel("unverified score (never-rewarded families)")
    _legend(ax, loc="best", fontsize=6.5, ncol=2)
    fig.suptitle("Unverified score against KL, all runs", fontsize=11, fontweight="bold")
    return fig


def _fig_control(done: pd.DataFrame, colors: dict[str, str]) -> Figure:
    fig, (ax,) = _figure()
    groups = list(dict.fromkeys(zip(done["base"], done["reward"])))
    for i, (base, reward) in enumerate(groups):
        s = done[(done["base"] == base) & (done["reward"] == reward)]
        ctrl = reward == "random"
        half = np.sqrt(((s["final_reward_high"] - s["final_reward_low"]) / 2) ** 2
                       + ((s["base_reward_high"] - s["base_reward_low"]) / 2) ** 2)
        x = i + np.linspace(-0.15, 0.15, len(s)) if len(s) > 1 else np.array([float(i)])
        ax.errorbar(x, s["gain"], yerr=np.vstack([half, half]), fmt="x" if ctrl else "o",
                    color=CONTROL if ctrl else colors[base], capsize=3)
    ax.axhline(0, color="#555555", lw=1)
    ax.set_xticks(range(len(groups)), [f"{b}\n{'random reward' if r == 'random' else 'verified reward'}"
                                       for b, r in groups], fontsize=7.5)
    ax.set_ylabel("verified reward: final - base (held-out)")
    fig.suptitle("Gain of each run: verified reward vs the random-reward control", fontsize=11, fontweight="bold")
    return fig


def sweep_figures(a: SweepAnalysis, cur: pd.DataFrame) -> list[SweepFigure]:
    """The report's figures as PNG bytes (or the reason each was skipped)."""
    t = a.table
    colors = _colors(t)
    arm = t["arm"].fillna("rl") if "arm" in t.columns else pd.Series("rl", index=t.index)
    # the RL runs and their controls; other arms (the SFT mix-in) have their own table and the family figure
    done = t[(t["status"] == "complete") & t["base_reward"].notna() & (arm == "rl")].reset_index(drop=True)
    from ceiling.sweep.aggregate import regression_table
    from ceiling.sweep.config import SweepConfig

    reg = regression_table(t, SweepConfig(a.name, [], reference_beta=a.reference_beta, reference_lr=a.reference_lr))
    out = []
    if reg.empty or not reg[list(MEASURE_NAMES)].notna().any().any():
        out.append(SweepFigure("ceiling_vs_diversity", "Ceiling against base diversity", "",
                               skipped="no complete real-reward run at the reference beta"))
    elif not np.isfinite(reg["ceiling"].astype(float)).any():
        out.append(SweepFigure("ceiling_vs_diversity", "Ceiling against base diversity", "",
                               skipped="no run at the reference beta has a fitted ceiling (see each run's fits.json "
                                       "for the reason)"))
    else:
        cap = (f"Each dot: the fitted ceiling A of one real-reward run at beta {a.reference_beta:g} with its "
               f"{LEVEL:.0%} interval (from its fits.json), against its base's diversity floor measured at step 0 of "
               "its evaluation; seeds of one base are spread slightly. Hollow: ceiling not identifiable (left out "
               "of the regression). Red: the random-effects regression across runs with its confidence band. "
               "Left panel, dashed: ceiling = the base's pass@k at the largest k (a ceiling above it would mean "
               "RL reached problems the base never solves).")
        out.append(SweepFigure("ceiling_vs_diversity", "Ceiling against base diversity", cap,
                               _render(_fig_ceiling, a, reg, colors)))
    if not a.family_table.empty:
        out.append(SweepFigure("ceiling_by_family", "Each family's ceiling against its base's reach",
                               "One panel per verified family: each run's fitted ceiling of that family's held-out "
                               f"reward ({LEVEL:.0%} interval; circles: RL at the reference beta, squares: other arms, "
                               "e.g. the SFT mix-in; where the ceiling is not identifiable, a cross at the run's final "
                               "held-out reward instead, measured with no curve) against its base's pass@k at the "
                               "largest k on the same family, at step 0. "
                               "On the dashed line the ceiling is exactly what the base could sample (the floor "
                               "binds); above it RL reached problems the base never solved (the skill carried over).",
                               _render(_fig_families, a, colors)))
    if a.prediction.get("rows"):
        out.append(SweepFigure("predicted_vs_realized", "Ceiling predicted from the base vs realized",
                               "Each run's ceiling predicted from its base's diversity by a regression on the other "
                               f"bases' runs only (horizontal bars: {LEVEL:.0%} prediction band), against the ceiling "
                               "the run realized (vertical bars: its interval). Dashed: the 45-degree line.",
                               _render(_fig_prediction, a, colors)))
    else:
        why = "; ".join(a.prediction.get("reasons") or []) or "too few bases with identifiable ceilings"
        out.append(SweepFigure("predicted_vs_realized", "Ceiling predicted from the base vs realized", "",
                               skipped=f"no leave-one-base-out prediction: {why}"))
    if done.empty:
        for name, title in (("coverage", "pass@k at large k: base vs final"), ("threshold_vs_beta", "KL threshold"),
                            ("unverified_vs_kl", "Unverified score against KL"), ("control_gain", "Control")):
            out.append(SweepFigure(name, title, "", skipped="no complete run"))
        return out
    out.append(SweepFigure("coverage", "pass@k at large k: base vs final checkpoint",
                           "Each marker is a run (crosses: random-reward controls): its base's pass@k against its "
                           f"final checkpoint's, with the final's {LEVEL:.0%} bootstrap interval. Below the dashed "
                           "line RL narrowed what the model can solve at all (Yue et al. 2025); the right panel "
                           "(pass@1) shows the sharpening that usually comes with it.",
                           _render(_fig_coverage, done, colors)))
    out.append(SweepFigure("threshold_vs_beta", "KL threshold against beta",
                           "Dots: the KL past which the run's unverified score falls (its collapse fit, with its "
                           f"{LEVEL:.0%} interval). Hollow triangles: no threshold detected; drawn at the largest KL "
                           "the run reached, below which there is none.", _render(_fig_threshold, done, colors)))
    if cur.empty or not np.isfinite(cur["kl"]).any():
        out.append(SweepFigure("unverified_vs_kl", "Unverified score against KL", "",
                               skipped="no evaluated KL (kl/policy_base_k3) in the cells' eval.csv"))
    else:
        out.append(SweepFigure("unverified_vs_kl", "Unverified score against KL, all runs",
                               "One line per run through its evaluated checkpoints (step 0 = the base at KL 0), "
                               f"coloured by base; solid: beta {a.reference_beta:g}, dashed: other betas, dotted grey: "
                               "random-reward controls.",
                               _render(_fig_unverified, done, cur, colors, a.reference_beta)))
    out.append(SweepFigure("control_gain", "Gain: verified reward vs random-reward control",
                           "Held-out verified reward of the final checkpoint minus the base's, per RL run (every beta "
                           "of the grid: the conclusion compares the controls with the runs at the same beta; other "
                           "arms are in the Arms table), with the two "
                           f"evaluation intervals combined ({LEVEL:.0%}). Crosses: random-reward controls (reward drawn "
                           "independently of correctness): a gain there is a side effect of the update, not learning.",
                           _render(_fig_control, done, colors)))
    return out


# ---------------------------------------------------------------------------------------------- page
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ceiling_mark(d: dict[str, Any]) -> str:
    """What a run's ceiling number is: not identifiable, a plateau level, at the metric's maximum, or a fitted
    asymptote (no mark)."""
    if not np.isfinite(d["ceiling"]):
        return ""
    if not d["ceiling_identifiable"]:
        return " (not identifiable)"
    return {"plateau": " (plateau level)", "at_maximum": " (at the metric's maximum)"}.get(d.get("ceiling_kind"), "")


def runs_display(t: pd.DataFrame) -> pd.DataFrame:
    """The per-run table of the page, as strings."""
    def iv(v: Any, lo: Any, hi: Any) -> str:
        return "-" if v is None or not np.isfinite(v) else f"{fmt(v)} {interval(lo, hi)}"

    rows = []
    for d in t.to_dict(orient="records"):
        rows.append({
            "run": d["cell"], "reward": d["reward"], "status": d["status"],
            "ceiling A [95%]": iv(d["ceiling"], d["ceiling_low"], d["ceiling_high"]) + _ceiling_mark(d),
            "base pass@kmax": fmt(d["base_pass@kmax"]), "base entropy": fmt(d["base_entropy"]),
            "base distinct": fmt(d["base_distinct_answers"]),
            "reward base -> final": f"{fmt(d['base_reward'])} -> {fmt(d['final_reward'])}",
            "pass@kmax base -> final": f"{fmt(d['base_pass@kmax'])} -> {fmt(d['final_pass@kmax'])}",
            "unverified base -> final": f"{fmt(d['base_unverified'])} -> {fmt(d['final_unverified'])}",
            "max KL": fmt(d["max_kl"]),
            "KL threshold [95%]": iv(d["threshold"], d["threshold_low"], d["threshold_high"])
            if d["threshold_detected"] else "none detected",
        })
    return pd.DataFrame(rows)


def _int(v: Any) -> str:
    return str(int(v)) if v is not None and np.isfinite(v) else "-"


def bases_display(t: pd.DataFrame) -> pd.DataFrame:
    """Each base's diversity floor: at step 0 of the sweep's evaluation, and as measured at pretraining."""
    rows = []
    for base, g in t.groupby("base", sort=False):
        d = g.iloc[0].to_dict()
        k, kd = d.get("k_max"), d.get("div_k")
        rows.append({"base": base,
                     "eval: pass@k (k)": f"{fmt(d['base_pass@kmax'])} ({_int(k)})",
                     "eval: entropy": fmt(d["base_entropy"]), "eval: distinct answers": fmt(d["base_distinct_answers"]),
                     "pretraining: pass@k (k)": f"{fmt(d['div_pass@k'])} ({_int(kd)})",
                     "pretraining: entropy": fmt(d["div_entropy"]),
                     "pretraining: distinct answers": fmt(d["div_distinct_answers"])})
    return pd.DataFrame(rows)


def across_display(a: SweepAnalysis) -> pd.DataFrame | None:
    if a.across is None:
        return None
    rows = []
    for m, r in a.across.regressions.items():
        rows.append({"measure": MEASURE_NAMES.get(m, m), "slope [95%]": f"{fmt(r['slope'])} {interval(*r['slope_ci'])}",
                     "intercept [95%]": f"{fmt(r['intercept'])} {interval(*r['intercept_ci'])}",
                     "p (slope)": fmt(r["p_slope"]), "between-run sd": fmt(np.sqrt(r["tau2"])), "runs": r["k"],
                     "LOO rmse": fmt(r.get("loo_rmse"))})
    return pd.DataFrame(rows)


def families_display(a: SweepAnalysis) -> pd.DataFrame | None:
    """Per verified family: ceilings against the base's reach, the regression and the leave-one-base-out error."""
    if not a.families:
        return None
    verdicts = {f.text.split(":", 1)[0]: f.verdict for f in a.findings
                if f.claim == "1. ceiling set by base diversity" and not f.key and ":" in f.text}
    rows = []
    for fam, r in a.families.items():
        gap, lobo = r["gap"], r["prediction"]
        by_base = "; ".join(f"{b}: {fmt(r['ceiling_by_base'].get(b))} vs {fmt(v)}" for b, v in r["base_pass@kmax"].items())
        rows.append({"family": fam, "identifiable runs": f"{r['identifiable']} of {r['runs']}",
                     "ceiling vs base pass@k, by base": by_base,
                     "ceiling - base pass@k [95%]": f"{fmt(gap['estimate'])} {interval(gap['ci_low'], gap['ci_high'])}",
                     "slope on base pass@k [95%]": (f"{fmt(r['slope'])} {interval(*r['slope_ci'])}"
                                                    if r["slope"] is not None else "-"),
                     "leave-one-base-out RMSE (offset / free line)":
                         f"{fmt(lobo.get('rmse'))} / {fmt((r.get('prediction_line') or {}).get('rmse'))}",
                     "verdict": verdicts.get(fam, "-")})
    return pd.DataFrame(rows)


def arms_display(a: SweepAnalysis) -> pd.DataFrame | None:
    if not a.arms:
        return None
    rows = []
    for r in a.arms:
        d = r["final_reward_difference"]
        rows.append({"arm": r["arm"], "family": r["family"], "pairs": r["pairs"],
                     "final reward: arm vs RL alone": f"{fmt(r['arm_final_reward'])} vs {fmt(r['rl_final_reward'])}",
                     "paired difference [95%]": f"{fmt(d['estimate'])} {interval(d['ci_low'], d['ci_high'])}",
                     "base pass@k (mean over bases)": fmt(r["base_pass@kmax"]),
                     "arm runs clearly past base pass@k": f"{r['n_pass@kmax_above_base']} of {r['runs']}"})
    return pd.DataFrame(rows)


FAMILIES_NOTE = ("Each verified family's held-out reward has its own ceiling fit (fits.json, section family_ceilings), "
                 "and its base's floor is read on that family alone at step 0. A knowledge family (cipher) can only be "
                 "answered where the base was shown its table; a skill (sort) can carry over to what the base never "
                 "solved. Every number is in sweep_families.csv.")
ARMS_NOTE = ("Other training recipes against RL alone on the same base, seed and beta, at the same steps: e.g. the "
             "SFT mix-in adds supervised examples of sub-spaces the base's corpus never covered (see `ceiling.rl`). "
             "The question: does external data lift a family past its base's pass@k at large k?")


BASES_NOTE = ("Measured on the sweep's held-out evaluation at step 0 (what the regression uses: pass@k at the "
              "largest k of the verified families, token entropy in nats, distinct final answers per prompt), and as "
              "recorded in the base's diversity.json at pretraining (its own prompts and k).")
RUNS_NOTE = ("Every number per run, unrounded, is in sweep.csv; the across-run fits and the verdicts in "
             "sweep_fits.json. Each run is an ordinary run directory, <runs-dir>/<sweep>/<run>/, with its own report "
             "in <runs-dir>/<sweep>/cell-reports/<run>/.")


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _subtitle(a: SweepAnalysis, description: str) -> str:
    t = a.table
    n_done = int((t["status"] == "complete").sum())
    n_ctrl = int((t["reward"] == "random").sum())
    return (f"{len(t)} runs ({int((t['reward'] == 'verified').sum())} verified-reward, "
            f"{n_ctrl} random-reward control{'' if n_ctrl == 1 else 's'}), {n_done} complete; "
            f"{t['base'].nunique()} bases, seeds {', '.join(str(s) for s in sorted(t['seed'].unique()))}, "
            f"beta {', '.join(f'{b:g}' for b in sorted(t['beta'].unique()))}. " + description).strip()


def _warnings(a: SweepAnalysis) -> list[str]:
    t = a.table
    out = [f"{r.cell}: {r.status} (not in the analysis)" for r in t.itertuples(index=False) if r.status != "complete"]
    if a.across is not None:
        out += [f"across runs: {r}" for r in a.across.reasons]
        out += [f"across runs: left out {e}" for e in a.across.excluded]
    return out


def render_html(a: SweepAnalysis, figs: list[SweepFigure], description: str) -> str:
    title = f"ceiling sweep: {a.name}"
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
           f"<p class=\"sub\">{_e(_subtitle(a, description))}</p>", "<h2>Conclusion</h2>", "<div class=\"headline\">"]
    for claim, verdict in a.verdicts.items():
        out.append(f"<div class=\"card\"><div class=\"label\">{_e(claim)}</div><div class=\"value\">"
                   f"<strong>{_e(verdict)}</strong></div></div>")
    out.append("</div><ul>")
    out += [f"<li><strong>{_e(f.verdict)}</strong> ({_e(f.claim)}): {_e(f.text)}</li>" for f in a.findings]
    out.append("</ul>")
    warns = _warnings(a)
    if warns:
        out.append("<div class=\"warn\"><strong>Warnings</strong><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warns)
                   + "</ul></div>")
    out += figures_html(figs)
    out.append(f"<h2>The bases' diversity floor</h2><p>{_e(BASES_NOTE)}</p>" + _html_table(bases_display(a.table)))
    acr = across_display(a)
    out.append("<h2>Across-run regression</h2>")
    if acr is not None:
        out.append(f"<p>{_e(a.across.method)}.</p>" + _html_table(acr))
    else:
        out.append(f"<p class=\"skip\">Not available: {_e(a.across_reason)}</p>")
    fam = families_display(a)
    if fam is not None:
        out.append(f"<h2>Per family</h2><p>{_e(FAMILIES_NOTE)}</p>" + _html_table(fam))
    arms = arms_display(a)
    if arms is not None:
        out.append(f"<h2>Arms</h2><p>{_e(ARMS_NOTE)}</p>" + _html_table(arms))
    out.append(f"<h2>Runs</h2><p>{_e(RUNS_NOTE)}</p>" + _html_table(runs_display(a.table)))
    out.append(f"<footer>{_e(_footer())}</footer></body></html>")
    return "\n".join(out) + "\n"


def render_markdown(a: SweepAnalysis, figs: list[SweepFigure], description: str) -> str:
    out = [f"# ceiling sweep: {a.name}", "", _subtitle(a, description), "", "## Conclusion", ""]
    out += [f"- **{claim}:** {verdict}" for claim, verdict in a.verdicts.items()]
    out += [""] + [f"- *{f.verdict}* ({f.claim}): {f.text}" for f in a.findings]
    warns = _warnings(a)
    if warns:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warns]
    out += ["", "## Figures", ""]
    for i, fig in enumerate(figs, start=1):
        out += [f"### {i}. {fig.title}", ""]
        out += ([f"*Skipped: {fig.skipped}*"] if fig.png is None else [f"![{fig.title}]({fig.name}.png)", "", fig.caption])
        out.append("")
    out += ["## The bases' diversity floor", "", BASES_NOTE, "", _md_table(bases_display(a.table)), ""]
    out += ["## Across-run regression", ""]
    acr = across_display(a)
    out += [a.across.method + ".", "", _md_table(acr)] if acr is not None else [f"*Not available: {a.across_reason}*"]
    fam = families_display(a)
    if fam is not None:
        out += ["", "## Per family", "", FAMILIES_NOTE, "", _md_table(fam)]
    arms = arms_display(a)
    if arms is not None:
        out += ["", "## Arms", "", ARMS_NOTE, "", _md_table(arms)]
    out += ["", "## Runs", "", RUNS_NOTE, "", _md_table(runs_display(a.table)), "", "---", "", _footer(), ""]
    return "\n".join(out)


def _footer() -> str:
    return (f"Generated by ceiling {ceiling.__version__} (`ceiling sweep`) from each run's fits.json and eval.csv; "
            "rebuild with `ceiling sweep --config CONFIG --report-only`.")


def write_report(a: SweepAnalysis, cur: pd.DataFrame, out_dir: str | Path, description: str = "") -> Path:
    """Write index.html, report.md, the PNGs, sweep.csv and sweep_fits.json into `out_dir`; return index.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = sweep_figures(a, cur)
    for fig in figs:
        if fig.png is not None:
            atomic_write_bytes(out / f"{fig.name}.png", fig.png)
        else:
            (out / f"{fig.name}.png").unlink(missing_ok=True)
    atomic_write_text(out / "sweep.csv", a.table.to_csv(index=False))
    if not a.family_table.empty:
        atomic_write_text(out / "sweep_families.csv", a.family_table.to_csv(index=False))
    atomic_write_json(out / "sweep_fits.json", a.to_dict())
    atomic_write_text(out / "report.md", render_markdown(a, figs, description))
    return atomic_write_text(out / "index.html", render_html(a, figs, description))
