"""What every reader shares: value cleaning, restart handling, key mapping, and the canonical frame.

A reader streams its file once and hands each logged row to a `Collector` as `(step, {key: value},
location, kind)`. The collector cleans values (numbers, numeric strings and booleans kept; null/NaN/empty
skipped as "not logged"; inf and text dropped with a note), detects restarts, and at the end maps keys to
canonical metrics (`mappings.resolve_keys`) and builds the canonical long frame.

Restart rule: a row at step `s` that logs a key already logged at a step > `s`, or at `s` itself once the
records of its kind have moved past `s` (bookkeeping keys such as `epoch` aside), means the run was
restarted or resumed from an earlier checkpoint. The later segment
supersedes the earlier one: every earlier value at a step >= `s` is dropped, with a note. A row whose step
goes back without repeating a key (an eval row logged late) is kept, and the frame is sorted by step.

Several rows at one step (a loop that logs a rollout record, two optimizer records and an eval record per
step) merge while that step is the latest of their kind (an async loop may log the next rollout before
this step's optimizer records): a key logged more than once at it gets the mean of its values
(bookkeeping keys: the last value), with a note that counts them.
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
from ceiling.ingest.mappings import (EVAL_N_KEYS, FLAG_METRICS, FRACTION_METRICS, HELDOUT_METRIC, is_bookkeeping,
                                     is_heldout_kind, resolve_keys)

MAX_STEP = 2**62
DROPPED_COLUMNS = ["step", "source_key", "value", "location", "reason"]


@dataclass
class IngestResult:
    """The outcome of reading one log.

    frame: canonical long frame (`ceiling.frame.COLUMNS`); unmapped keys appear as metric `raw/<key>`.
    format: the format that was read (`ceiling`, `trl`, `verl`, `wandb`, `tensorboard`, `csv`, `jsonl`).
    notes: what was assumed, converted or dropped, in words (one line each).
    dropped: one row per value left out: step, source_key, value, location, reason
        (`restart`, `non-finite`, `non-numeric`, `truncated`).
    mapping: source key -> metric, for the keys that were mapped (canonical, or `raw/eval/<dataset>`).
    step_key: how the step was read, in words (the key and the rule that chose it).
    kinds: record kind -> number of records, for logs whose records name their kind (else empty).
    kind_key: the key that names the record kinds (`type`, `split`, ...), or None.
    ignored: keys left out of the frame and why (only text, only null), one line each.
    runs: the runs in the frame, in the order they were read.
    eval_n_from: where the `n` of verified/eval_acc came from (a key of the log, `--eval-n`), or "".
    keys: the source keys that gave numbers, in the order the log first shows them.
    """

    frame: pd.DataFrame
    format: str
    notes: list[str] = field(default_factory=list)
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DROPPED_COLUMNS))
    mapping: dict[str, str] = field(default_factory=dict)
    step_key: str = ""
    kinds: dict[str, int] = field(default_factory=dict)
    kind_key: str | None = None
    ignored: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    eval_n_from: str = ""
    keys: list[str] = field(default_factory=list)


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


def short_list(items: list[str], limit: int = 8) -> str:
    """'a, b, c, ...' (at most `limit` items)."""
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


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
        self.null_keys: set[str] = set()
        self.notes: list[str] = []
        self.max_step = -1
        self.kind_max: dict[str, int] = {}  # record kind ("" for none) -> the largest step its records logged
        self.late_rows = 0
        self.step_key = ""  # how the step was read, in words (set by the reader)
        self.kind_key: str | None = None  # the key naming record kinds (set by the reader)
        self.kinds: dict[str, int] = {}  # record kind -> records
        self.merged: dict[str, int] = {}  # record kind ("" for none) -> rows merged into an earlier row of a step
        self.children: dict[str, Collector] = {}  # one per run, for files holding several runs
        self.eval_n_from = ""  # where the n of verified/eval_acc came from

    def where(self, loc: int) -> str:
        return f"{self.unit} {loc}"

    def child(self, run: str) -> Collector:
        """The collector of one run of a file that holds several (a W&B chart export)."""
        if run not in self.children:
            self.children[run] = Collector(self.path, unit=self.unit)
        return self.children[run]

    def add(self, step: int, row: dict[str, Any], loc: int, kind: str | None = None) -> None:
        """Add the values one log row holds at `step` (found at location `loc`; `kind`: its record kind)."""
        if kind is not None:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        clean: dict[str, float] = {}
        for key, raw in row.items():
            x = to_number(raw)
            if x is None:
                self.null_keys.add(key)
                continue
            if isinstance(x, str):
                self.bad[x][key] = self.bad[x].get(key, 0) + 1
                self.dropped.append((step, key, raw if isinstance(raw, (int, float, str)) else repr(raw)[:80], loc, x))
                continue
            clean[key] = x
        if not clean:
            return
        if step <= self.max_step:  # a step seen before: a restart, a late row, or another row of this step
            # a key logged again at a step its record kind had moved past (at or after it): the run went back
            kind_max = self.kind_max.get(kind or "", -1)
            repeated = [k for k in clean if not is_bookkeeping(k) and (self.key_max.get(k, -1) > step or (
                self.key_max.get(k, -1) == step < kind_max))]
            if repeated:
                self._restart(step, loc, repeated[0])
            else:
                if any(not is_bookkeeping(k) and self.key_max.get(k, -1) == step for k in clean):
                    self.merged[kind or ""] = self.merged.get(kind or "", 0) + 1
                if step < self.max_step and not all(is_bookkeeping(k) for k in clean):
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
        self.kind_max[kind or ""] = max(self.kind_max.get(kind or "", -1), step)

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
        self.kind_max = {k: min(v, step - 1) for k, v in self.kind_max.items()}

    def drop_truncated(self, loc: int, text: str) -> None:
        """Record a final line cut short by a crash (skipped, not an error)."""
        self.dropped.append((-1, "", text[:80], loc, "truncated"))
        self.notes.append(f"{self.where(loc)} is the last one and is cut short (a crash mid-write): skipped")

    def note(self, text: str) -> None:
        self.notes.append(text)

    # -- the end ---------------------------------------------------------------------------------------
    def seen_keys(self) -> list[str]:
        """Every key with at least one kept number, in first-seen order."""
        return [k for k in self.key_names if self.good_count.get(k, 0) > 0]

    def result(self, fmt: str, run: str, mapping: dict[str, str] | None = None,
               keep_raw: set[str] | None = None, eval_n: int | None = None) -> IngestResult:
        """Map keys to canonical metrics and build the frame.

        mapping: canonical metric -> source key (from `check_mapping`, without 'step').
        keep_raw: canonical metrics this log must not provide (another file of the run has them).
        eval_n: the number of held-out problems behind verified/eval_acc, where the log does not give it.
        """
        overrides = {m: k for m, k in (mapping or {}).items() if m != "step"}
        ignored = self._ignored()
        if not self.values:
            raise error_at(self.path, "no numeric values found" + (
                " (every value was dropped; see above)" if self.dropped else ""))
        keys = self.seen_keys()
        missing = [k for k in overrides.values() if k not in keys]
        if missing:
            raise error_at(self.path, f"mapping: no numeric key {missing[0]!r} in this log (keys: {short_list(keys, 12)})")
        kinds = {k: is_heldout_kind(k) for k in self.kinds}
        mapped, notes = resolve_keys(keys, fmt, overrides, kinds=kinds)
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
        self._merged_note()
        names = np.asarray(self.key_names, dtype=object)
        metrics = np.asarray([mapped.get(k, f"raw/{k}") for k in self.key_names], dtype=object)
        ids = np.asarray(self.keys, dtype=np.int64)
        df = pd.DataFrame({"step": np.asarray(self.steps, dtype=np.int64), "key_id": ids,
                           "value": np.asarray(self.values, dtype=np.float64)})
        df = _merge_steps(df, np.asarray([is_bookkeeping(k) for k in self.key_names], dtype=bool))
        df["source_key"] = names[df["key_id"].to_numpy()]
        df["metric"] = metrics[df["key_id"].to_numpy()]
        df = df.drop(columns="key_id")
        df["run"] = run
        self._percent_notes(df)
        flops = df.loc[df["metric"] == "compute/flops"].groupby("step")["value"].last()
        df["compute"] = df["step"].map(flops) if len(flops) else np.nan
        df = normalize_frame(df, where=str(self.path))
        df = self._eval_n(df, mapped, eval_n)
        df = df.sort_values(["step", "metric"], kind="stable").reset_index(drop=True)
        dropped = pd.DataFrame(self.dropped, columns=DROPPED_COLUMNS)
        return IngestResult(frame=df, format=fmt, notes=self.notes, dropped=dropped, mapping=mapped,
                            step_key=self.step_key, kinds=dict(self.kinds), kind_key=self.kind_key,
                            ignored=ignored, runs=[run], eval_n_from=self.eval_n_from, keys=keys)

    def _eval_n(self, df: pd.DataFrame, mapped: dict[str, str], eval_n: int | None) -> pd.DataFrame:
        """Fill the `n` column of verified/eval_acc: from a count key beside it in the log, else `eval_n`."""
        acc_key = next((k for k, m in mapped.items() if m == HELDOUT_METRIC), None)
        if acc_key is None:
            if eval_n is not None:
                self.notes.append(f"--eval-n {eval_n} not used: no held-out accuracy (verified/eval_acc) in this log")
            return df
        rows = df["metric"] == HELDOUT_METRIC
        n_key = find_n_key(acc_key, set(df["source_key"]))
        if n_key is not None:
            counts = df.loc[df["source_key"] == n_key].set_index("step")["value"]
            df.loc[rows, "n"] = df.loc[rows, "step"].map(counts).to_numpy()
            self.eval_n_from = n_key
        if eval_n is not None:
            fill = rows & df["n"].isna()
            if fill.any():
                df.loc[fill, "n"] = float(eval_n)
                self.eval_n_from = f"{n_key} and --eval-n" if n_key else "--eval-n"
            else:
                self.notes.append(f"--eval-n {eval_n} not used: the log gives n ({n_key}) at every held-out step")
        return df

    def _merged_note(self) -> None:
        for kind, count in self.merged.items():
            if kind:
                total = self.kinds.get(kind, 0)
                self.notes.append(f"{kind!r}: {total} records at {total - count} steps (several at one step): "
                                  "values averaged per step")
            else:
                self.notes.append(f"{count} {self.unit}s log a key again at the same step: values averaged per step")

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

    def _percent_notes(self, df: pd.DataFrame) -> None:
        """Accuracy-like metrics logged in percent (values > 1, all <= 100) are kept as logged, with a note."""
        for metric in sorted(set(df["metric"]) & FRACTION_METRICS):
            vals = df.loc[df["metric"] == metric, "value"]
            key = df.loc[df["metric"] == metric, "source_key"].iloc[0]
            if vals.max() > 1.0 and vals.min() >= 0.0 and vals.max() <= 100.0:
                self.notes.append(f"{key!r} ({metric}) is in percent (max {vals.max():g}): kept as logged")
            elif vals.max() > 1.0:
                self.notes.append(f"{key!r} ({metric}) has values outside [0, 1] and outside [0, 100]: kept as logged")

    def _ignored(self) -> list[str]:
        """Keys that gave no numbers (one line per reason), and notes on dropped values."""
        out: list[str] = []
        text_only: list[str] = []
        for reason, counts in self.bad.items():
            for key, n in counts.items():
                if self.good_count.get(key, 0) == 0 and reason == "non-numeric":
                    text_only.append(f"{key!r} ({n} value{'s' if n > 1 else ''})")
                else:
                    self.notes.append(f"{key!r}: {n} {reason} value{'s' if n > 1 else ''} dropped")
        if text_only:
            out.append(f"ignored, only text: {short_list(text_only, 6)}")
        nulls = sorted(k for k in self.null_keys if k not in self.key_id and k not in self.bad["non-numeric"]
                       and k not in self.bad["non-finite"])
        if nulls:
            out.append(f"ignored, always null or empty (not logged): {short_list(nulls, 6)}")
        self.notes.extend(out)
        return out


def _merge_steps(df: pd.DataFrame, bookkeeping: np.ndarray) -> pd.DataFrame:
    """One value per (step, key): the mean of a key's values at a step; the last for bookkeeping keys."""
    if not df.duplicated(["step", "key_id"]).any():
        return df
    grouped = df.groupby(["step", "key_id"], sort=False)["value"]
    out = grouped.mean().rename("value").reset_index()
    last = grouped.last().to_numpy()
    book = bookkeeping[out["key_id"].to_numpy()]
    out.loc[book, "value"] = last[book]
    return out


def find_n_key(acc_key: str, keys: set[str]) -> str | None:
    """The key beside `acc_key` that counts its held-out problems (`eval/num_examples` for `eval/accuracy`)."""
    prefix = acc_key.rsplit("/", 1)[0] + "/" if "/" in acc_key else ""
    for name in EVAL_N_KEYS:
        if prefix + name in keys:
            return prefix + name
    return None


def concat_results(parts: list[IngestResult], fmt: str) -> IngestResult:
    """Join the results of several files (or runs) of one read (frames, notes, dropped rows, mappings)."""
    frames = [p.frame for p in parts if len(p.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    dropped = pd.concat([p.dropped for p in parts if len(p.dropped)] or [pd.DataFrame(columns=DROPPED_COLUMNS)],
                        ignore_index=True)
    notes = [n for p in parts for n in p.notes]
    mapping = {k: v for p in parts for k, v in p.mapping.items()}
    kinds: dict[str, int] = {}
    for p in parts:
        for k, c in p.kinds.items():
            kinds[k] = kinds.get(k, 0) + c
    runs = list(dict.fromkeys(r for p in parts for r in p.runs))
    first = next((p for p in parts if p.step_key), parts[0] if parts else None)
    return IngestResult(frame=frame, format=fmt, notes=notes, dropped=dropped, mapping=mapping,
                        step_key=first.step_key if first else "", kinds=kinds,
                        kind_key=next((p.kind_key for p in parts if p.kind_key), None),
                        ignored=[i for p in parts for i in p.ignored], runs=runs,
                        eval_n_from=next((p.eval_n_from for p in parts if p.eval_n_from), ""),
                        keys=list(dict.fromkeys(k for p in parts for k in p.keys)))
