"""Predicted verified reward at compute budgets, for planning documents (`predictions.csv`, `ceiling predict`).

Every number comes from the ceiling fit's own `predict(x, band=...)`; this module only chooses budgets,
flags the ones that lie beyond what the fit was validated on, and formats the table.

A budget is flagged (`beyond_validated=True`, with a note) when it lies outside the range the fit was made
on: above the largest fitted compute (an extrapolation; the note says whether the fit's extrapolation
backtest reached that far, and with what error) or below the first fitted compute (inside the early window
the fit leaves out). When the ceiling is not identifiable every note says so.

predictions.csv columns:
    budget            the compute budget (FLOPs; steps when the ceiling was fitted against steps, see `x`)
    x                 what the budget counts: "compute" or "step"
    prediction        the fitted curve at the budget
    conf_low/high     95% confidence band of the curve (bootstrap percentiles)
    pred_low/high     95% prediction band of a new observation (curve band plus resampled residuals)
    beyond_validated  True outside the fitted range
    note              why it is flagged, in words (empty when not flagged)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError
from ceiling.io import atomic_write_text
from ceiling.report.results import Fits, as_fits

COLUMNS = ["budget", "x", "prediction", "conf_low", "conf_high", "pred_low", "pred_high", "beyond_validated",
           "note"]


def default_budgets(fits: Fits | object, n: int = 8) -> np.ndarray:
    """`n` log-spaced budgets from the first observed compute to 10x the last one."""
    f = as_fits(fits)
    rng, first = f.ceiling_range(), f.first_observed_x()
    if rng is None or first is None:
        raise CeilingError("fits: the ceiling fit records no observed compute range; give budgets explicitly")
    if first <= 0:
        return np.linspace(first, 10 * rng[1], n)
    return np.geomspace(first, 10 * rng[1], n)


def _note(budget: float, lo: float, hi: float, backtest: tuple[float, float, float] | None, unit: str) -> str:
    if budget < lo * (1 - 1e-9):
        return f"below the fitted range (the first fitted {unit} is {lo:.3g})"
    if budget <= hi * (1 + 1e-9):
        return ""
    text = f"extrapolated {budget / hi:.3g}x beyond the largest fitted {unit} ({hi:.3g})"
    if backtest is None:
        return text + "; no extrapolation backtest"
    frac, reach, err = backtest
    where = "within" if budget / hi <= reach else "beyond"
    return text + (f"; {where} the backtested reach (a fit on the first {frac:.0%} of the range extrapolated "
                   f"{reach:.3g}x with RMSE {err:.3g})")


def predictions(fits: Fits | object, budgets: Sequence[float] | np.ndarray | None = None) -> pd.DataFrame:
    """One row per budget: the fit's prediction, its 95% confidence and prediction bands, and a flag.

    `fits` is a FitReport, a fits.json dict or a path to fits.json. `budgets` default to `default_budgets`.
    """
    f = as_fits(fits)
    result = f.ceiling_result()
    if result is None:
        why = f.unavailable_reason("ceiling") or "the 'ceiling' section is missing"
        raise CeilingError(f"field 'ceiling': no ceiling fit to predict from ({why})")
    x = np.asarray(default_budgets(f) if budgets is None else budgets, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise CeilingError("budgets: give one or more finite numbers")
    y = np.asarray(result.predict(x), dtype=float)
    conf = f.band(result, x, "confidence")
    pred = f.band(result, x, "prediction")
    lo, hi = f.ceiling_range() or (float("nan"), float("nan"))
    backtest = f.backtest_reach()
    unit = f.ceiling_x()
    notes = [_note(b, lo, hi, backtest, unit) for b in x]
    caveat = f.ceiling_caveat()
    if caveat:
        notes = [f"{n}; {caveat}" if n else caveat for n in notes]
    return pd.DataFrame({
        "budget": x, "x": unit, "prediction": y, "conf_low": conf[0], "conf_high": conf[1],
        "pred_low": pred[0], "pred_high": pred[1],
        "beyond_validated": [bool(b < lo * (1 - 1e-9) or b > hi * (1 + 1e-9)) for b in x],
        "note": notes,
    }, columns=COLUMNS)


def write_predictions(fits: Fits | object, budgets: Sequence[float] | np.ndarray | None, path: str | Path) -> Path:
    """Write `predictions(fits, budgets)` as CSV (numbers with 6 significant digits) atomically; return the path."""
    return atomic_write_text(path, to_csv(predictions(fits, budgets)))


def to_csv(df: pd.DataFrame) -> str:
    """The CSV text of a predictions frame (6 significant digits, Unix newlines)."""
    return df.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def parse_budgets(text: str, field: str = "--at") -> list[float]:
    """Budgets from a comma-separated string such as "1e15,3e15,1e16" (a one-line CeilingError otherwise)."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise CeilingError(f"field {field!r}: {part!r} is not a number (give e.g. 1e15,1e16)") from None
        if not np.isfinite(v) or v < 0:
            raise CeilingError(f"field {field!r}: {part!r} must be a finite number >= 0")
        out.append(v)
    if not out:
        raise CeilingError(f"field {field!r}: give at least one budget (e.g. 1e15,1e16)")
    return out


def flag_text(beyond: bool, note: str) -> str:
    """The flag column in words."""
    return ("beyond the validated range" if beyond else "within the fitted range") + (f": {note}" if note else "")


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A Markdown table of a predictions frame, ready to paste into a planning document."""
    unit = str(df["x"].iloc[0]) if len(df) else "compute"
    head = (f"| {unit} budget | predicted verified reward | 95% confidence band | 95% prediction band | flag |\n"
            "|---:|---:|:---:|:---:|:---|\n")
    d = digits
    rows = [f"| {r.budget:.3g} | {r.prediction:.{d}f} | [{r.conf_low:.{d}f}, {r.conf_high:.{d}f}] "
            f"| [{r.pred_low:.{d}f}, {r.pred_high:.{d}f}] | {flag_text(r.beyond_validated, r.note)} |"
            for r in df.itertuples(index=False)]
    return head + "\n".join(rows) + "\n"
