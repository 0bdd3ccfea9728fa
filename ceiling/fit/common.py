"""Shared pieces of the fit results: input checks, data fingerprints, intervals, `NotAvailable`."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ceiling.errors import CeilingError

SCHEMA_VERSION = 1
# the words a report uses for each fits.json section
SECTION_TITLES = {"diagnosis": "run diagnosis", "ceiling": "ceiling", "family_ceilings": "ceiling per verified family",
                  "entropy_law": "entropy law",
                  "collapse": "KL collapse threshold", "across_runs": "across runs"}


def check_xy(x: Any, y: Any, name_x: str = "x", name_y: str = "y", increasing: bool = True,
             min_points: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Validate two series for fitting; raise a one-line CeilingError naming the field otherwise."""
    try:
        xa = np.asarray(x, dtype=float).ravel()
        ya = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise CeilingError(f"field {name_x!r}/{name_y!r}: values must be numbers") from None
    if xa.size != ya.size:
        raise CeilingError(f"field {name_x!r}/{name_y!r}: lengths differ ({xa.size} vs {ya.size})")
    for arr, nm in ((xa, name_x), (ya, name_y)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise CeilingError(f"field {nm!r}: {bad.size} NaN/inf value(s), first at index {int(bad[0])}; "
                               "drop or fill them before fitting")
    if xa.size < min_points:
        raise CeilingError(f"field {name_y!r}: too few points to fit ({xa.size} < {min_points})")
    if increasing and xa.size > 1:
        dx = np.diff(xa)
        if np.any(dx <= 0):
            i = int(np.flatnonzero(dx <= 0)[0]) + 1
            raise CeilingError(f"field {name_x!r}: must be strictly increasing (value {xa[i]:g} at index {i} "
                               f"follows {xa[i - 1]:g}); sort and de-duplicate first")
    if np.ptp(ya) <= 1e-12 * max(1.0, float(np.max(np.abs(ya)))):  # constant up to rounding noise
        raise CeilingError(f"field {name_y!r}: the series is constant ({ya[0]:g}); there is no curve to fit")
    return xa, ya


def fingerprint(*arrays: np.ndarray) -> str:
    """Short SHA-256 of the data a fit saw (float64 bytes), so a stored fit names the exact data."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def percentile_ci(draws: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws (NaN draws ignored)."""
    a = (1.0 - level) / 2.0
    return np.nanquantile(draws, a, axis=axis), np.nanquantile(draws, 1.0 - a, axis=axis)


def fnum(v: float | None, digits: int = 4) -> str:
    """Format a number for summaries (`-` for None/NaN)."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}"


def as_float(v: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf/None)."""
    if v is None:
        return None
    f = float(v)
    return f if np.isfinite(f) else None


TABLE_COLUMNS = ["section", "quantity", "estimate", "95% interval", "method", "verdict", "diagnostics"]


def fmt(v: Any, digits: int = 3) -> str:
    """A number for a page or a table (`-` for None/NaN); large or small values in scientific notation."""
    if v is None:
        return "-"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(x):
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}" if abs(x) < 10 else f"{x:.{digits + 1}g}"


def interval(lo: Any, hi: Any) -> str:
    """`[lo, hi]` formatted with `fmt` (`-` when either end is missing)."""
    return "-" if lo is None or hi is None else f"[{fmt(lo)}, {fmt(hi)}]"


def table_row(section: str, quantity: str, est: Any, lo: Any, hi: Any, method: str, verdict: str,
              diagnostics: str = "") -> dict[str, str]:
    """One row of the report's table of fitted numbers (columns `TABLE_COLUMNS`)."""
    return {"section": section, "quantity": quantity, "estimate": fmt(est), "95% interval": interval(lo, hi),
            "method": method, "verdict": verdict, "diagnostics": diagnostics}


def join_reasons(reasons: Any) -> str:
    return "; ".join(str(r) for r in (reasons or []) if r)


def first_reason(reasons: Any) -> str:
    items = [str(r) for r in (reasons or []) if r]
    return items[0] if items else "no reason recorded"


@dataclass
class NotAvailable:
    """A section of fits.json that could not be fitted, and why (in words)."""

    section: str
    reason: str
    details: dict = field(default_factory=dict)

    identifiable = False
    detected = False

    @property
    def reasons(self) -> list[str]:
        return [self.reason]

    def summary(self) -> str:
        return f"{self.section}: not available ({self.reason})"

    def headline(self) -> str:
        return f"not fitted: {self.reason}"

    def warnings(self) -> list[str]:
        return [f"{SECTION_TITLES.get(self.section, self.section)} not fitted: {self.reason}"]

    def rows(self) -> list[dict[str, str]]:
        return [table_row(SECTION_TITLES.get(self.section, self.section), "-", None, None, None, "-", "not fitted",
                          self.reason)]

    def to_dict(self) -> dict:
        return {"kind": "not_available", "not_available": True, "estimate": None, "ci_low": None,
                "ci_high": None, "method": None, "reasons": [self.reason], "reason": self.reason,
                "details": self.details}

    @classmethod
    def from_dict(cls, d: dict, section: str = "") -> NotAvailable:
        return cls(section, d.get("reason") or "; ".join(d.get("reasons") or []), d.get("details") or {})
