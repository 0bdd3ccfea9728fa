"""The report's figures, as pure functions of plain data (points, fitted curves, levels) -> matplotlib Figure.

Nothing here knows about fit objects or files: `ceiling.report.build` turns frames and fit results into the
`Curve` / `Level` values below, and `png_bytes` renders a figure to deterministic PNG bytes (no software tag,
no timestamp), so the same inputs give byte-identical files.
"""
from __future__ import annotations

import functools
import io
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg", force=False)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ceiling.report.results import Level  # noqa: E402

# A light, seaborn-like look applied per figure (never changes the caller's global matplotlib state).
STYLE: dict[str, object] = {
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#bbbbbb",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "font.family": "DejaVu Sans",
}
POINTS = "#4c72b0"      # observed data
FIT = "#c44e52"         # fitted curve
CONF = "#c44e52"        # confidence band (darker)
PRED = "#dd8452"        # prediction band (lighter)
LEVEL = "#2ca02c"       # ceiling / threshold lines
MUTED = "#9a9a9a"       # excluded points, notes
FIGSIZE = (7.2, 4.3)
DPI = 110


@dataclass(frozen=True)
class Curve:
    """A fitted curve evaluated on a grid, with optional confidence and prediction bands."""

    x: np.ndarray
    y: np.ndarray
    label: str
    conf: tuple[np.ndarray, np.ndarray] | None = None
    pred: tuple[np.ndarray, np.ndarray] | None = None


def png_bytes(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes without metadata that would differ between runs."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(ncols: int = 1, width: float | None = None) -> tuple[Figure, list]:
    """A figure with `ncols` axes side by side (call inside the report style)."""
    fig = Figure(figsize=(width or FIGSIZE[0], FIGSIZE[1]), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure builder inside the report style (never changes the caller's matplotlib settings)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)
    return wrapper


def _finite(v: float | None) -> bool:
    return v is not None and bool(np.isfinite(v))


def _draw_curve(ax, curve: Curve) -> None:
    if curve.pred is not None:
        ax.fill_between(curve.x, curve.pred[0], curve.pred[1], color=PRED, alpha=0.15, lw=0,
                        label="95% prediction band")
    if curve.conf is not None:
        ax.fill_between(curve.x, curve.conf[0], curve.conf[1], color=CONF, alpha=0.28, lw=0,
                        label="95% confidence band")
    ax.plot(curve.x, curve.y, color=FIT, lw=2, label=curve.label)


def _draw_hlevel(ax, level: Level) -> None:
    ax.axhline(level.estimate, color=LEVEL, lw=1.6, ls="--", label=level.label)
    if _finite(level.low) and _finite(level.high):
        ax.axhspan(level.low, level.high, color=LEVEL, alpha=0.12, lw=0)


def _draw_vlevel(ax, level: Level) -> None:
    ax.axvline(level.estimate, color=LEVEL, lw=1.6, ls="--", label=level.label)
    if _finite(level.low) and _finite(level.high):
        ax.axvspan(level.low, level.high, color=LEVEL, alpha=0.12, lw=0)


def _note(ax, text: str, width: int = 95) -> None:
    """A plain-words caveat above the axes, under the figure title (never over the data)."""
    ax.set_title(textwrap.fill(text, width), loc="left", fontsize=8.5, fontweight="normal", color="#8a5a00")


def _title(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=11, fontweight="bold")


def _scatter(ax, x, y, label: str, excluded: np.ndarray | None = None) -> None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if excluded is not None and excluded.any():
        ax.scatter(x[excluded], y[excluded], s=14, color=MUTED, alpha=0.8, lw=0, label="excluded from the fit")
        x, y = x[~excluded], y[~excluded]
    ax.scatter(x, y, s=14, color=POINTS, alpha=0.75, lw=0, label=label, zorder=3)


@_styled
def reward_vs_compute(x: np.ndarray, y: np.ndarray, x_label: str, y_label: str, curve: Curve | None,
                      ceiling: Level | None,
                      note: str | None = None, excluded: np.ndarray | None = None, log_x: bool = True,
                      observed_max: float | None = None) -> Figure:
    """Figure 1: verified reward against compute, the fitted curve with its bands, and the ceiling line."""
    fig, (ax,) = _figure()
    x, y = np.asarray(x, float), np.asarray(y, float)
    if log_x:  # points at zero (the base) cannot sit on a log axis
        keep = x > 0
        x, y = x[keep], y[keep]
        excluded = excluded[keep] if excluded is not None else None
    _scatter(ax, x, y, f"{y_label} (observed)", excluded)
    if curve is not None:
        _draw_curve(ax, curve)
    if ceiling is not None and _finite(ceiling.estimate):
        _draw_hlevel(ax, ceiling)
    if observed_max is not None and curve is not None and np.nanmax(curve.x) > observed_max:
        ax.axvline(observed_max, color=MUTED, lw=1, ls=":", label="last fitted point")
    if note:
        _note(ax, note)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    _title(fig, f"Verified reward against {x_label.split(' ')[0]}")
    ax.legend(loc="lower right")
    return fig


def pick_steps(steps: list[int], most: int = 6) -> list[int]:
    """The base (step 0) and at most `most` checkpoints evenly spread over the run, always the last one."""
    later = sorted(s for s in steps if s != 0)
    if len(later) > most:
        idx = np.unique(np.round(np.linspace(0, len(later) - 1, most)).astype(int))
        later = [later[i] for i in idx]
    return ([0] if 0 in steps else []) + later


def _passk_panel(ax, rows: pd.DataFrame, title: str) -> None:
    steps = pick_steps(list(rows["step"].unique()))
    cmap = matplotlib.colormaps["viridis"]
    later = [s for s in steps if s != 0]
    for step in steps:
        sub = rows[rows["step"] == step].sort_values("k")
        if step == 0:
            color, lw, ls, label = "#222222", 2.2, "--", "base (step 0)"
        else:
            frac = later.index(step) / max(len(later) - 1, 1)
            color, lw, ls, label = cmap(0.15 + 0.75 * frac), 1.6, "-", f"step {step}"
        ax.plot(sub["k"], sub["value"], color=color, lw=lw, ls=ls, marker="o", ms=3, label=label)
        lo, hi = sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float)
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(sub["k"], lo, hi, color=color, alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    ks = sorted(rows["k"].unique())
    ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (samples per problem, log2 axis)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)


@_styled
def passk_curves(panels: dict[str, pd.DataFrame]) -> Figure:
    """Figure 2: pass@k against k (log2 axis) for the base and the checkpoints, one panel per task group.

    `panels` maps a title ("verified families") to rows with columns step, k, value, ci_low, ci_high.
    """
    fig, axes = _figure(ncols=len(panels), width=6.2 * len(panels))
    for ax, (title, rows) in zip(axes, panels.items()):
        _passk_panel(ax, rows, title)
    axes[-1].legend(loc="lower right")
    return fig


@_styled
def score_vs_kl(x: np.ndarray, y: np.ndarray, x_label: str, curve: Curve | None, threshold: Level | None,
                note: str | None = None) -> Figure:
    """Figure 3: unverified score against KL to the base, the over-optimisation fit and the threshold."""
    fig, (ax,) = _figure()
    _scatter(ax, x, y, "unverified score (observed)")
    if curve is not None:
        _draw_curve(ax, curve)
    if threshold is not None and _finite(threshold.estimate):
        _draw_vlevel(ax, threshold)
    if note:
        _note(ax, note)
    ax.set_xlabel(x_label)
    ax.set_ylabel("unverified score")
    _title(fig, "Unverified score against distance from the base")
    ax.legend(loc="lower right")
    return fig


@_styled
def reward_vs_entropy(h: np.ndarray, r: np.ndarray, steps: np.ndarray, y_label: str, curve: Curve | None,
                      ceiling: Level | None, note: str | None = None) -> Figure:
    """Figure 4: verified reward against policy entropy, coloured by step, with the entropy law R = -a e^H + b."""
    fig, (ax,) = _figure()
    sc = ax.scatter(h, r, c=steps, cmap="viridis", s=16, lw=0, alpha=0.85, zorder=3, label="observed (colour: step)")
    fig.colorbar(sc, ax=ax, label="step", pad=0.01)
    if curve is not None:
        _draw_curve(ax, curve)
    if ceiling is not None and _finite(ceiling.estimate):
        _draw_hlevel(ax, ceiling)
    if note:
        _note(ax, note)
    ax.invert_xaxis()  # training moves right: entropy falls as reward rises
    ax.set_xlabel("policy entropy (nats per token, full vocabulary; axis reversed)")
    ax.set_ylabel(y_label)
    _title(fig, "Verified reward against entropy")
    ax.legend(loc="lower right")
    return fig


REGIME_COLORS = {"improving": "#2e7d32", "plateau": "#9e9e9e", "trade_off": "#f9a825",
                 "over_optimisation": "#ef6c00", "collapse": "#c62828"}


@_styled
def regimes_over_steps(series: list[tuple[str, np.ndarray, np.ndarray]], spans: list[tuple[str, float, float]],
                       onsets: list[tuple[str, float, float, float]], note: str | None = None) -> Figure:
    """The run's scores against steps, each stretch shaded by its regime, each onset with its 95% interval.

    series: (label, steps, values in [0, 1]); spans: (regime, start, end); onsets: (regime, step, low, high).
    """
    fig, (ax,) = _figure()
    for regime, a, b in spans:
        ax.axvspan(a, b, color=REGIME_COLORS.get(regime, MUTED), alpha=0.10, lw=0)
        ax.text(0.5 * (a + b), 0.985, regime.replace("_", " "), transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=8, color=REGIME_COLORS.get(regime, MUTED))
    markers = ["o", "s", "^", "D"]
    for i, (label, x, y) in enumerate(series):
        dense = x.size > 60
        if dense:  # per-step series are noisy: faint as logged, bold as a centred running mean
            k = max(5, x.size // 20)
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            line, = ax.plot(x, y, lw=0.6, alpha=0.25)
            ax.plot(x[k // 2: k // 2 + smooth.size], smooth, lw=1.8, color=line.get_color(),
                    label=f"{label}, running mean over {k} steps")
        else:
            ax.plot(x, y, marker=markers[i % 4], ms=4, lw=1, label=label)
    for regime, step, lo, hi in onsets:
        color = REGIME_COLORS.get(regime, LEVEL)
        ax.axvline(step, color=color, lw=1.4, ls="--")
        if hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.18, lw=0)
    ax.set_ylim(-0.02, 1.08)  # room for the regime names above the scores
    ax.set_xlabel("step")
    ax.set_ylabel("score (fraction; percent logs divided by 100)")
    ax.legend(loc="lower left", fontsize=8)
    if note:
        _note(ax, note)
    return fig
