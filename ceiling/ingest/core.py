"""What every reader shares: value cleaning, restart handling, key mapping, and the canonical frame.

A reader streams its file once and hands each logged row to a `Collector` as `(step, {key: value},
location)`. The collector cleans values (numbers, numeric strings and booleans kept; null/NaN/empty skipped
as "not logged"; inf and text dropped with a note), detects restarts, and at the end maps keys to
canonical metrics (`mappings.resolve_keys`) and builds the canonical long frame.

Restart rule: a row at step `s` that logs a key already logged at a step >= `s` (bookkeeping keys such as
`epoch` aside) means the run was restarted or resumed from an earlier checkpoint. The later segment
supersedes the earlier one: every earlier value at a step >= `s` is dropped, with a note. A row whose step
goes back without repeating a key (an eval row logged late) is kept, and the frame is sorted by step.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError, error_at
from ceiling.frame import METRICS, empty_frame, normalize_frame
from ceiling.ingest.mappings import FLAG_METRICS, FRACTION_METRICS, is_bookkeeping, resolve_keys

MAX_STEP = 2**62


@dataclass
class IngestResult:
    """The outcome of reading one log.

    frame: canonical long frame (`ceiling.frame.COLUMNS`); unmapped keys appear as metric `raw/<key>`.
    format: the format that was read (`ceiling`, `trl`, `verl`, `wandb`, `tensorboard`, `csv`, `jsonl`).
    notes: what was assumed, converted or dropped, in words (one line each).
    dropped: one row per value left out: step, source_key, value, location, reason
        (`restart`, `non-finite`, `non-numeric`, `truncated`).
    mapping: source key -> canonical metric, for the keys that were mapped.
    """

    frame: pd.DataFrame
    format: str
    notes: list[str] = field(default_factory=list)
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DROPPED_COLUMNS))
    mapping: dict[str, str] = field(default_factory=dict)


DROPPED_COLUMNS = ["step", "source_key", "value", "location", "reason"]


def to_number(value: Any) -> float | None | str:
    """A logged value as a float; None when not logged (null, NaN, empty); 'non-finite' or 'non-numeric'."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None if not value.strip() else "non-numeric"
    elif isinstance(value, bool):
        return float(value)
    elif isinstance(value, (int, float, np.integer, np.floating)):
        try:
            x = float(value)
        except OverflowError:
            return "non-finite"
    else:
        return "non-numeric"
    if math.isnan(x):
        return None
    if x in (math.inf, -math.inf):
        return "non-finite"
    return x


def parse_step(value: Any, path: Path | str, line: int | None = None, field: str | None = None) -> int | None:
    """A step as a non-negative int; None when missing; a CeilingError when it is not a whole number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    x = to_number(value)
    if not isinstance(x, float) or x != int(x) or x < 0 or x > MAX_STEP:
        raise error_at(path, f"step {str(value)[:40]!r} is not a whole number >= 0", line=line, field=field)
    return int(x)


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level, keys joined with '/'."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def check_mapping(mapping: dict[str, str] | None) -> dict[str, str]:
    """Validate a user mapping {flag or canonical metric or 'step': source key}; return it canonical."""
    out: dict[str, str] = {}
    for name, key in (mapping or {}).items():
        if key is None or key == "":
            continue
        if name == "step":
            out["step"] = str(key)
        elif name in FLAG_METRICS:
            out[FLAG_METRICS[name]] = str(key)
        elif name in METRICS:
            out[name] = str(key)
        else:
            raise CeilingError(f"mapping: unknown name {name!r}; use step, {', '.join(FLAG_METRICS)} "
                               f"or a canonical metric ({', '.join(list(METRICS)[:4])}, ...)")
    keys = [k for n, k in out.items() if n != "step"]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise CeilingError(f"mapping: source key {min(dup)!r} is mapped to two metrics")
    return out


class Collector:
    """Accumulates (step, key, value) rows from one log, handling restarts and bad values as it goes."""

    def __init__(self, path: Path | str, unit: str = "line") -> None:
        self.path = Path(path)
        self.unit = unit  # what a location counts: "line", "entry", "event"
        # one entry per kept value, in compact arrays (a huge log costs 32 bytes per value)
        self.steps = array("q")
        self.keys = array("q")  # index into key_names
        self.values = array("d")
        self.locs = array("q")
        self.key_id: dict[str, int] = {}  # source key -> index, in first-seen order
        self.key_names: list[str] = []
        self.key_max: dict[str, int] = {}
        self.dropped: list[tuple[int, str, Any, int, str]] = []
        self.bad: dict[str, dict[str, int]] = {"non-finite": {}, "non-numeric": {}}
        self.good_count: dict[str, int] = {}
        self.notes: list[str] = []
        self.max_step = -1
        self.late_rows = 0

    def where(self, loc: int) -> str:
        return f"{self.unit} {loc}"

    def add(self, step: int, row: dict[str, Any], loc: int) -> None:
        """Add the values one log row holds at `step` (found at location `loc`)."""
        clean: dict[str, float] = {}
        for key, raw in row.items():
            x = to_number(raw)
            if x is None:
                continue
            if isinstance(x, str):
                self.bad[x][key] = self.bad[x].get(key, 0) + 1
                self.dropped.append((step, key, raw if isinstance(raw, (int, float, str)) else repr(raw)[:80], loc, x))
                continue
            clean[key] = x
        if not clean:
            return
        if step <= self.max_step:  # a step seen before: a restart, a late row, or another row of this step
            repeated = [k for k in clean if not is_bookkeeping(k) and self.key_max.get(k, -1) >= step]
            if repeated:
                self._restart(step, loc, repeated[0])
            elif step < self.max_step and not all(is_bookkeeping(k) for k in clean):
                self.late_rows += 1
        for key, x in clean.items():
            kid = self.key_id.get(key)
            if kid is None:
                kid = self.key_id[key] = len(self.key_names)
                self.key_names.append(key)
            self.steps.append(step)
            self.keys.append(kid)
            self.values.append(x)
            self.locs.append(loc)
            if self.key_max.get(key, -1) < step:
                self.key_max[key] = step
            self.good_count[key] = self.good_count.get(key, 0) + 1
        self.max_step = max(self.max_step, step)

    def _restart(self, step: int, loc: int, key: str) -> None:
        """Drop every earlier value at a step >= `step`: the later segment supersedes it."""
        steps, keys = np.array(self.steps, dtype=np.int64), np.array(self.keys, dtype=np.int64)
        values, locs = np.array(self.values, dtype=np.float64), np.array(self.locs, dtype=np.int64)
        gone = steps >= step
        for s_, k, v, l_ in zip(steps[gone].tolist(), keys[gone].tolist(), values[gone].tolist(), locs[gone].tolist()):
            name = self.key_names[k]
            self.dropped.append((s_, name, v, l_, "restart"))
            self.good_count[name] -= 1
        gone_locs = np.unique(locs[gone])
        self.notes.append(
            f"restart at {self.where(loc)}: step {step} logs {key!r} again (last logged at step "
            f"{self.key_max[key]}); kept the later segment, dropped {int(gone.sum())} earlier values at steps "
            f"{int(steps[gone].min())}-{int(steps[gone].max())} ({len(gone_locs)} {self.unit}s: "
            f"{int(gone_locs[0])}-{int(gone_locs[-1])})")
        keep = ~gone
        self.steps, self.keys = array("q", steps[keep].tolist()), array("q", keys[keep].tolist())
        self.values, self.locs = array("d", values[keep].tolist()), array("q", locs[keep].tolist())
        self.key_max = {}
        for s_, k in zip(steps[keep].tolist(), keys[keep].tolist()):
            name = self.key_names[k]
            if self.key_max.get(name, -1) < s_:
                self.key_max[name] = s_
        self.max_step = int(steps[keep].max()) if keep.any() else -1

    def drop_truncated(self, loc: int, text: str) -> None:
        """Record a final line cut short by a crash (skipped, not an error)."""
        self.dropped.append((-1, "", text[:80], loc, "truncated"))
        self.notes.append(f"{self.where(loc)} is the last one and is cut short (a crash mid-write): skipped")

    def note(self, text: str) -> None:
        self.notes.append(text)

    # -- the end ---------------------------------------------------------------------------------------
    def result(self, fmt: str, run: str, mapping: dict[str, str] | None = None,
               keep_raw: set[str] | None = None) -> IngestResult:
        """Map keys to canonical metrics and build the frame.

        mapping: canonical metric -> source key (from `check_mapping`, without 'step').
        keep_raw: canonical metrics this log must not provide (another file of the run has them).
        """
        overrides = {m: k for m, k in (mapping or {}).items() if m != "step"}
        self._bad_value_notes()
        if not self.values:
            raise error_at(self.path, "no numeric values found" + (
                " (every value was dropped; see above)" if self.dropped else ""))
        keys = [k for k in self.key_names if self.good_count.get(k, 0) > 0]
        missing = [k for k in overrides.values() if k not in keys]
        if missing:
            shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
            raise error_at(self.path, f"mapping: no numeric key {missing[0]!r} in this log (keys: {shown})")
        mapped, notes = resolve_keys(keys, fmt, overrides)
        self.notes.extend(notes)
        if keep_raw:
            for key, metric in list(mapped.items()):
                if metric in keep_raw and key not in overrides.values():
                    del mapped[key]
                    self.notes.append(f"{key!r} kept as raw/{key}: {metric} comes from the run's eval.csv")
        self._unreplaced_note()
        if self.late_rows:
            self.notes.append(f"{self.late_rows} {self.unit}s log a step below an earlier one without repeating "
                              f"a key (late rows): kept, and the frame is sorted by step")
        names = np.asarray(self.key_names, dtype=object)
        metrics = np.asarray([mapped.get(k, f"raw/{k}") for k in self.key_names], dtype=object)
        ids = np.asarray(self.keys, dtype=np.int64)
        df = pd.DataFrame({"step": np.asarray(self.steps, dtype=np.int64), "source_key": names[ids],
                           "metric": metrics[ids], "value": np.asarray(self.values, dtype=np.float64)})
        # bookkeeping keys (epoch, _runtime) repeat in the several rows of one step: keep the last
        df = df.drop_duplicates(["step", "source_key"], keep="last")
        df["run"] = run
        df = self._fractions(df)
        flops = df.loc[df["metric"] == "compute/flops"].groupby("step")["value"].last()
        df["compute"] = df["step"].map(flops) if len(flops) else np.nan
        df = normalize_frame(df, where=str(self.path))
        df = df.sort_values(["step", "metric"], kind="stable").reset_index(drop=True)
        dropped = pd.DataFrame(self.dropped, columns=DROPPED_COLUMNS)
        return IngestResult(frame=df, format=fmt, notes=self.notes, dropped=dropped, mapping=mapped)

    def _unreplaced_note(self) -> None:
        """Name the values a restart dropped that the later segment never logged again."""
        if not any(d[4] == "restart" for d in self.dropped):
            return
        kept = set(zip(self.steps, self.keys))
        lost: dict[str, list[int]] = {}
        for step, key, _, _, reason in self.dropped:
            if reason == "restart" and (step, self.key_id[key]) not in kept and not is_bookkeeping(key):
                lost.setdefault(key, []).append(step)
        if lost:
            parts = [f"{k} at step{'s' if len(v) > 1 else ''} {', '.join(map(str, sorted(set(v))[:5]))}"
                     + (" ..." if len(set(v)) > 5 else "") for k, v in list(lost.items())[:5]]
            self.notes.append("dropped by a restart and not logged again by the later segment: " + "; ".join(parts))

    def _fractions(self, df: pd.DataFrame) -> pd.DataFrame:
        """Accuracy-like metrics logged in percent (values > 1, all <= 100) become fractions."""
        for metric in sorted(set(df["metric"]) & FRACTION_METRICS):
            m = df["metric"] == metric
            vals = df.loc[m, "value"]
            if vals.max() > 1.0 and vals.min() >= 0.0 and vals.max() <= 100.0:
                key = df.loc[m, "source_key"].iloc[0]
                df.loc[m, "value"] = vals / 100.0
                self.notes.append(f"{key!r} ({metric}) is in percent (max {vals.max():g}): divided by 100")
            elif vals.max() > 1.0:
                key = df.loc[m, "source_key"].iloc[0]
                self.notes.append(f"{key!r} ({metric}) has values outside [0, 1] and outside [0, 100]: kept as logged")
        return df

    def _bad_value_notes(self) -> None:
        for reason, counts in self.bad.items():
            for key, n in counts.items():
                if self.good_count.get(key, 0) == 0 and reason == "non-numeric":
                    self.notes.append(f"{key!r} holds no numbers ({n} text values): ignored")
                else:
                    self.notes.append(f"{key!r}: {n} {reason} value{'s' if n > 1 else ''} dropped")


def concat_results(parts: list[IngestResult], fmt: str) -> IngestResult:
    """Join the results of several files of one run (frames, notes, dropped rows, mappings)."""
    frames = [p.frame for p in parts if len(p.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    dropped = pd.concat([p.dropped for p in parts if len(p.dropped)] or [pd.DataFrame(columns=DROPPED_COLUMNS)],
                        ignore_index=True)
    notes = [n for p in parts for n in p.notes]
    mapping = {k: v for p in parts for k, v in p.mapping.items()}
    return IngestResult(frame=frame, format=fmt, notes=notes, dropped=dropped, mapping=mapping)
