"""Row-per-step text logs, streamed line by line: any CSV, W&B history CSV exports, any JSONL, verl's file
logger JSONL and verl's console lines, and our own metrics.jsonl.

Malformed input raises a one-line CeilingError naming the file and line. The one exception is the last line
of a file that does not end with a newline and does not parse: a crash cut it short, so it is skipped with
a note (as `ceiling.io.read_jsonl` does).
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ceiling.errors import CeilingError, error_at
from ceiling.ingest.core import Collector, flatten, parse_step
from ceiling.ingest.mappings import STEP_KEYS


def ends_with_newline(path: Path) -> bool:
    """True when the file's last byte is a newline (or the file is empty)."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) in (b"\n", b"\r")


def find_step_key(columns: list[str], fmt: str, mapping: dict[str, str], path: Path) -> str:
    """The step column: the user's `--step`, else the first of STEP_KEYS[fmt] present (any case)."""
    if "step" in mapping:
        if mapping["step"] not in columns:
            raise error_at(path, f"mapping: no column {mapping['step']!r} for the step "
                                 f"(columns: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})")
        return mapping["step"]
    lower = {c.lower(): c for c in reversed(columns)}
    for name in STEP_KEYS[fmt]:
        if name in columns:
            return name
        if name.lower() in lower:
            return lower[name.lower()]
    raise error_at(path, f"no step column (looked for {', '.join(STEP_KEYS[fmt])}); name it with --step COLUMN")


# -- CSV ------------------------------------------------------------------------------------------------
_WANDB_PANEL = re.compile(r"^(?P<run>.+?) - (?P<key>.+)$")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each CSV record; decoding and csv errors become CeilingErrors."""
    with open(path, newline="", encoding="utf-8-sig", errors="strict") as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise error_at(path, "not UTF-8 text", line=reader.line_num + 1) from None
            except csv.Error as exc:
                raise error_at(path, f"malformed CSV ({exc})", line=reader.line_num) from None
            yield reader.line_num, row


def _wandb_columns(header: list[str], collector: Collector) -> list[str | None]:
    """W&B chart exports name columns '<run> - <key>' with '__MIN'/'__MAX' companions: keep '<key>' only."""
    runs = {m.group("run") for h in header if (m := _WANDB_PANEL.match(h))}
    if len(runs) != 1:
        return list(header)
    out: list[str | None] = []
    for h in header:
        m = _WANDB_PANEL.match(h)
        if m and (h.endswith(("__MIN", "__MAX"))):
            out.append(None)
        else:
            out.append(m.group("key") if m else h)
    collector.note(f"W&B chart export of run {next(iter(runs))!r}: '__MIN'/'__MAX' columns ignored")
    return out


def read_csv(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream a CSV (generic or W&B export) into `collector`."""
    rows = _csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise error_at(path, "empty file: no header line") from None
    header = [h.strip() for h in header]
    columns: list[str | None] = _wandb_columns(header, collector) if fmt == "wandb" else list(header)
    named = [c for c in columns if c]
    seen: set[str] = set()
    for c in named:
        if c in seen:
            raise error_at(path, f"column {c!r} appears twice in the header", line=1)
        seen.add(c)
    unnamed = sum(1 for c in columns if c == "")
    if unnamed:
        collector.note(f"{unnamed} column(s) without a name (an index column?): ignored")
    step_key = find_step_key(named, fmt, mapping, path)
    step_at = columns.index(step_key)
    complete = ends_with_newline(path)
    pending: tuple[int, list[str]] | None = None
    missing_step = 0
    for line, row in rows:
        if pending is not None:
            raise error_at(path, f"has {len(pending[1])} fields, the header has {len(columns)}", line=pending[0])
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(columns):
            pending = (line, row)  # an error, unless it is a crash-truncated last line
            continue
        step = parse_step(row[step_at], path, line=line, field=step_key)
        if step is None:
            missing_step += 1
            continue
        values = {c: v for c, v in zip(columns, row) if c and c != step_key}
        collector.add(step, values, line)
    if pending is not None:
        if complete:
            raise error_at(path, f"has {len(pending[1])} fields, the header has {len(columns)}", line=pending[0])
        collector.drop_truncated(pending[0], ",".join(pending[1]))
    if missing_step:
        collector.note(f"{missing_step} rows without a value in the step column {step_key!r}: skipped")


# -- JSON lines ------------------------------------------------------------------------------------------
def _json_lines(path: Path, collector: Collector) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; a bad last unterminated line is skipped."""
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                if not raw.endswith(b"\n"):
                    collector.drop_truncated(line, raw.decode("utf-8", "replace"))
                    return
                kind = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "malformed JSON"
                raise error_at(path, kind, line=line) from None
            yield line, obj


def read_jsonl(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream JSON lines, one object per logged row (nested objects flattened with '/')."""
    step_key: str | None = mapping.get("step")
    missing_step = 0
    for line, obj in _json_lines(path, collector):
        if not isinstance(obj, dict):
            raise error_at(path, f"expected a JSON object, got {type(obj).__name__}", line=line)
        row = flatten(obj)
        if step_key is None:
            step_key = find_step_key(list(row), fmt, mapping, path) if _has_step(row, fmt) else None
            if step_key is None:
                raise error_at(path, f"no step key (looked for {', '.join(STEP_KEYS[fmt])}); name it with --step KEY",
                               line=line)
        step = parse_step(row.pop(step_key, None), path, line=line, field=step_key)
        if step is None:
            missing_step += 1
            continue
        collector.add(step, row, line)
    if missing_step:
        collector.note(f"{missing_step} lines without the step key {step_key!r}: skipped")


def _has_step(row: dict[str, Any], fmt: str) -> bool:
    lower = {k.lower() for k in row}
    return any(k in row or k.lower() in lower for k in STEP_KEYS[fmt])


def read_verl_jsonl(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """verl's file logger: one `{"step": N, "data": {...}}` object per line (newer versions add
    `elapsed_seconds`, kept as a raw key)."""
    for line, obj in _json_lines(path, collector):
        if not isinstance(obj, dict) or "step" not in obj or not isinstance(obj.get("data"), dict):
            raise error_at(path, 'expected {"step": N, "data": {...}} (verl file logger)', line=line)
        step = parse_step(obj["step"], path, line=line, field="step")
        if step is None:
            raise error_at(path, "step is null", line=line, field="step")
        row = flatten(obj["data"])
        row.update({k: v for k, v in obj.items() if k not in ("step", "data")})
        collector.add(step, row, line)


# -- verl console ----------------------------------------------------------------------------------------
# verl's console logger prints `step:N - key:value - key:value` (values formatted "%.3f"); under Ray the
# line carries a prefix such as "(TaskRunner pid=123) ". Other console lines are ignored.
_VERL_LINE = re.compile(r"(?:^|[\s)\]])step:(\d+)((?: - .*)?)$")


def read_verl_console(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream a verl console log: metric lines are parsed, everything else is skipped."""
    matched = 0
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            last_cut = not raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                if last_cut:
                    collector.drop_truncated(line, raw.decode("utf-8", "replace"))
                    break
                raise error_at(path, "not UTF-8 text", line=line) from None
            m = _VERL_LINE.search(text)
            if not m:
                continue
            try:
                row = _verl_pairs(m.group(2))
            except ValueError as exc:
                if last_cut:
                    collector.drop_truncated(line, text)
                    break
                raise error_at(path, f"malformed verl metric line ({exc})", line=line) from None
            matched += 1
            step = parse_step(m.group(1), path, line=line, field="step")
            assert step is not None
            collector.add(step, row, line)
    if matched == 0:
        raise error_at(path, "no verl metric lines ('step:N - key:value - ...') found")
    collector.note(f"{matched} verl console lines read (values are rounded to 3 decimals by verl's console logger)")


def _verl_pairs(rest: str) -> dict[str, str]:
    """' - a:1.0 - b/c:2.0' -> {'a': '1.0', 'b/c': '2.0'}."""
    out: dict[str, str] = {}
    if not rest.strip():
        return out
    for part in rest[3:].split(" - "):
        key, sep, value = part.rpartition(":")
        if not sep or not key.strip():
            raise ValueError(f"segment {part[:40]!r} is not key:value")
        out[key.strip()] = value.strip()
    return out


def check_readable(path: Path) -> None:
    """A CeilingError (not an OSError traceback) when a path cannot be read."""
    if not path.exists():
        raise CeilingError(f"{path}: no such file or directory")
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise error_at(path, f"cannot read ({exc.strerror})") from None
