"""Row-per-step text logs, streamed line by line: any CSV, W&B history and chart CSV exports, any JSONL
(including the mixed-record JSONL of hand-made loops), verl's file logger JSONL and verl's console lines,
and our own metrics.jsonl.

CSV and JSONL records go through `RecordReader`: from the first SNIFF_RECORDS records it chooses the step
key (`choose_step_key`, the documented rule) and the record-kind key (`choose_kind_key`: `type`, `split`,
...), then reads every record's keys as `<kind>/<key>` when it names its kind.

Malformed input raises a one-line CeilingError naming the file and line. The one exception is the last line
of a file that does not end with a newline and does not parse: a crash cut it short, so it is skipped with
a note (as `ceiling.io.read_jsonl` does).
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from ceiling.errors import CeilingError, error_at
from ceiling.ingest.core import Collector, flatten, parse_step, short_list, to_number
from ceiling.ingest.mappings import BATCH_KEYS, RECORD_KIND_KEYS, STEP_KEYS


def ends_with_newline(path: Path) -> bool:
    """True when the file's last byte is a newline (or the file is empty)."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) in (b"\n", b"\r")


# -- the step and the record kinds -------------------------------------------------------------------
SNIFF_RECORDS = 1000  # records looked at to choose the step key and the record-kind key
STEP_SHARE = 0.9  # a step key must be in this share of the records that carry any step key
MAX_KINDS = 50  # a record-kind key names at most this many kinds in the sniffed records


@dataclass
class StepChoice:
    """Which key holds the step, and why."""

    key: str  # the source key, or "epoch+batch"
    text: str  # the choice in words, for the notes
    epoch_key: str | None = None  # for "epoch+batch": the epoch key
    batch_key: str | None = None  # for "epoch+batch": the batch key


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _whole(value: Any) -> bool:
    x = to_number(value)
    return isinstance(x, float) and x == int(x) and x >= 0


def _actual(name: str, keys: set[str], lower: dict[str, str]) -> str | None:
    """The log's spelling of a step key name (exact first, then any case)."""
    return name if name in keys else lower.get(name.lower())


def choose_step_key(records: list[dict[str, Any]], fmt: str, mapping: dict[str, str], path: Path,
                    columns: list[str] | None = None) -> StepChoice:
    """The step key of a CSV/JSONL log, from its first records (the documented rule, docs/ingest.md).

    `--step KEY` wins. Otherwise, among the names of STEP_KEYS[fmt] the log holds: the first (in that list)
    present in at least 90% of the records that carry any of them; when none is, the one present in the
    most records. `epoch+batch` counts where both are present; `epoch` alone only when it holds whole
    numbers. `records`: the first records, each a dict of the keys it has values for.
    """
    keys: set[str] = set(columns or [])
    for r in records:
        keys.update(r)
    if "step" in mapping:
        if mapping["step"] not in keys:
            shown = short_list(sorted(keys), 12)
            raise error_at(path, f"mapping: no column {mapping['step']!r} for the step (columns: {shown})")
        return StepChoice(mapping["step"], f"{mapping['step']} (--step)")
    lower = {k.lower(): k for k in sorted(keys, reverse=True)}
    epoch = _actual("epoch", keys, lower)
    batch = next((b for name in BATCH_KEYS if (b := _actual(name, keys, lower))), None)
    counts: dict[str, int] = {}
    for name in STEP_KEYS[fmt]:
        if name == "epoch+batch":
            if epoch and batch:
                counts[name] = sum(1 for r in records if _present(r.get(epoch)) and _present(r.get(batch)))
            continue
        key = _actual(name, keys, lower)
        if key is None or key in counts:
            continue
        values = [r[key] for r in records if _present(r.get(key))]
        if name == "epoch" and not all(_whole(v) for v in values):
            continue
        counts[key] = len(values)
    carrying = sum(1 for r in records if any(_present(r.get(k)) for k in counts if k != "epoch+batch")
                   or ("epoch+batch" in counts and _present(r.get(epoch)) and _present(r.get(batch))))
    looked = ", ".join(STEP_KEYS[fmt])
    if not counts or carrying == 0:
        raise error_at(path, f"no step key (looked for {looked}); name it with --step KEY")
    chosen = next((k for k, c in counts.items() if c >= STEP_SHARE * carrying), None)
    others = [f"{k} in {c}" for k, c in counts.items() if k != chosen and c > 0]
    if chosen is not None:
        why = "in every record" if counts[chosen] == carrying else f"in {counts[chosen]} of {carrying} records"
        if others:
            why += "; the first step key of the documented list in >= 90% of the records"
    else:
        chosen = max(counts, key=lambda k: counts[k])  # max keeps the first of equal counts: the list order
        why = f"in {counts[chosen]} of {carrying} records, the most of any step key"
        others = [o for o in others if not o.startswith(f"{chosen} in ")]
    text = f"{chosen} ({why}{'; also present (kept raw): ' + ', '.join(others) + ' records' if others else ''})"
    if chosen == "epoch+batch":
        return StepChoice(chosen, text.replace("epoch+batch", f"{epoch} * batches per epoch + {batch}", 1),
                          epoch_key=epoch, batch_key=batch)
    return StepChoice(chosen, text)


def choose_kind_key(records: list[dict[str, Any]]) -> str | None:
    """The key naming each record's kind: the first of RECORD_KIND_KEYS whose values are text (not numbers)
    in the first records, naming at most MAX_KINDS kinds."""
    for name in RECORD_KIND_KEYS:
        values = [r[name] for r in records if _present(r.get(name))]
        if values and all(isinstance(v, str) and to_number(v) == "non-numeric" for v in values) \
                and len(set(values)) <= MAX_KINDS:
            return name
    return None


def kind_of(value: Any) -> str | None:
    """A record's kind from its kind-key value (text only; '/' would split the key, so it becomes '_')."""
    if isinstance(value, str) and value.strip() and to_number(value) == "non-numeric":
        return value.strip().replace("/", "_")
    return None


def _epoch_batch_steps(rows: list[tuple[int, dict[str, Any]]], choice: StepChoice, path: Path) -> tuple[int, int]:
    """(batches per epoch, first batch index) over the whole log, for the epoch+batch step."""
    batches = [parse_step(r.get(choice.batch_key), path, line=line, field=choice.batch_key)
               for line, r in rows if _present(r.get(choice.batch_key))]
    if not batches:
        return 1, 0
    return max(batches) - min(batches) + 1, min(batches)


class RecordReader:
    """Turns the raw records of a CSV/JSONL log into (step, row, kind) for the collector: chooses the step
    key and the record-kind key from the first records, namespaces keys by kind, skips records without a
    step (counted)."""

    def __init__(self, path: Path, collector: Collector, fmt: str, mapping: dict[str, str],
                 kinds: bool = True) -> None:
        self.path, self.collector, self.fmt, self.mapping, self.use_kinds = path, collector, fmt, mapping, kinds
        self.choice: StepChoice | None = None
        self.kind_key: str | None = None
        self.missing: dict[str, int] = {}

    def read(self, records: Iterator[tuple[int, dict[str, Any]]], columns: list[str] | None = None) -> None:
        head: list[tuple[int, dict[str, Any]]] = []
        for item in records:
            head.append(item)
            if len(head) >= SNIFF_RECORDS:
                break
        present = [{k: v for k, v in r.items() if _present(v)} for _, r in head]
        self.choice = choose_step_key(present, self.fmt, self.mapping, self.path, columns)
        self.kind_key = choose_kind_key(present) if self.use_kinds else None
        self.collector.step_key = self.choice.text
        self.collector.kind_key = self.kind_key
        stream: Iterator[tuple[int, dict[str, Any]]] = chain(head, records)
        per_epoch, first_batch = 1, 0
        if self.choice.key == "epoch+batch":
            rows = list(stream)  # the batches per epoch need the whole log
            per_epoch, first_batch = _epoch_batch_steps(rows, self.choice, self.path)
            stream = iter(rows)
            self.collector.step_key += f"; {per_epoch} batches per epoch"
        for line, row in stream:
            self._add(line, dict(row), per_epoch, first_batch)
        for kind, n in self.missing.items():
            what = (f"{kind!r} record" if kind else self.collector.unit) + ("s" if n > 1 else "")
            self.collector.note(f"{n} {what} without a value for the step ({self.choice.key}): skipped")

    def _add(self, line: int, row: dict[str, Any], per_epoch: int, first_batch: int) -> None:
        assert self.choice is not None
        kind = None
        if self.kind_key:
            value = row.pop(self.kind_key, None)
            kind = kind_of(value)
            if kind is None and isinstance(to_number(value), float):
                row[self.kind_key] = value  # a number where a kind was expected stays, as a raw key
        if self.choice.key == "epoch+batch":
            e, b = row.pop(self.choice.epoch_key, None), row.pop(self.choice.batch_key, None)
            epoch = parse_step(e, self.path, line=line, field=self.choice.epoch_key)
            batch = parse_step(b, self.path, line=line, field=self.choice.batch_key)
            step = None if epoch is None or batch is None else epoch * per_epoch + batch - first_batch
        else:
            step = parse_step(row.pop(self.choice.key, None), self.path, line=line, field=self.choice.key)
        if step is None:
            self.missing[kind or ""] = self.missing.get(kind or "", 0) + 1
            return
        if kind is not None:
            row = {f"{kind}/{k}": v for k, v in row.items()}
        self.collector.add(step, row, line, kind)


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


def _wandb_columns(header: list[str], collector: Collector) -> tuple[list[str | None], list[str | None]]:
    """W&B chart exports name columns '<run> - <key>' with '__MIN'/'__MAX' companions: (keys, runs) per
    column; the companions are dropped (key None). Runs are None for a history export or a one-run chart."""
    runs = list(dict.fromkeys(m.group("run") for h in header if (m := _WANDB_PANEL.match(h))))
    if not runs:
        return list(header), [None] * len(header)
    keys: list[str | None] = []
    owners: list[str | None] = []
    for h in header:
        m = _WANDB_PANEL.match(h)
        if m and h.endswith(("__MIN", "__MAX")):
            keys.append(None)
        else:
            keys.append(m.group("key") if m else h)
        owners.append(m.group("run") if m and len(runs) > 1 else None)
    bands = "; '__MIN'/'__MAX' columns ignored" if any(h.endswith(("__MIN", "__MAX")) for h in header) else ""
    if len(runs) == 1:
        collector.note(f"W&B chart export of run {runs[0]!r}{bands}")
    else:
        collector.note(f"W&B chart export of {len(runs)} runs ({short_list(runs, 6)}): read as {len(runs)} runs{bands}")
    return keys, owners


def _csv_records(path: Path, rows: Iterator[tuple[int, list[str]]], columns: list[str | None],
                 collector: Collector) -> Iterator[tuple[int, list[str]]]:
    """The data rows with as many fields as the header; a row with another count is an error, unless it
    is the last line of a file cut short by a crash (then it is skipped with a note)."""
    complete = ends_with_newline(path)
    pending: tuple[int, list[str]] | None = None
    for line, row in rows:
        if pending is not None:
            raise error_at(path, f"has {len(pending[1])} fields, the header has {len(columns)}", line=pending[0])
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(columns):
            pending = (line, row)  # an error, unless it is a crash-truncated last line
            continue
        yield line, row
    if pending is not None:
        if complete:
            raise error_at(path, f"has {len(pending[1])} fields, the header has {len(columns)}", line=pending[0])
        collector.drop_truncated(pending[0], ",".join(pending[1]))


def read_csv(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream a CSV (generic, W&B history or chart export) into `collector` (one child per run when a W&B
    chart export holds several runs)."""
    rows = _csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise error_at(path, "empty file: no header line") from None
    header = [h.strip() for h in header]
    if fmt == "wandb":
        columns, owners = _wandb_columns(header, collector)
    else:
        columns, owners = list(header), [None] * len(header)
    named = [c for c in columns if c]
    seen: set[tuple[str | None, str]] = set()
    for c, o in zip(columns, owners):
        if c and (o, c) in seen:
            raise error_at(path, f"column {c!r} appears twice in the header", line=1)
        if c:
            seen.add((o, c))
    unnamed = sum(1 for c in columns if c == "")
    if unnamed:
        collector.note(f"{unnamed} column(s) without a name (an index column?): ignored")
    records = _csv_records(path, rows, columns, collector)
    if any(owners):
        _read_runs(path, records, columns, owners, collector, fmt, mapping)
        return
    as_dicts = ((line, {c: v for c, v in zip(columns, row) if c}) for line, row in records)
    RecordReader(path, collector, fmt, mapping).read(as_dicts, columns=named)


def _read_runs(path: Path, records: Iterator[tuple[int, list[str]]], columns: list[str | None],
               owners: list[str | None], collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """A W&B chart export of several runs: the shared columns (the step) and each run's own columns go to
    that run's collector."""
    runs = list(dict.fromkeys(o for o in owners if o))
    shared = [i for i, o in enumerate(owners) if o is None and columns[i]]
    for run in runs:
        collector.child(run)
    rows = list(records)  # a chart export is small: one row per plotted step
    for run in runs:
        mine = [i for i, o in enumerate(owners) if o == run and columns[i]]
        cols = [columns[i] for i in shared + mine]
        as_dicts = ((line, {columns[i]: row[i] for i in shared + mine}) for line, row in rows)
        child = collector.children[run]
        RecordReader(path, child, fmt, mapping).read(as_dicts, columns=[c for c in cols if c])


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
    """Stream JSON lines, one object per logged row (nested objects flattened with '/'); records may name
    their kind (`type`, `split`, ...: see RecordReader)."""
    def objects() -> Iterator[tuple[int, dict[str, Any]]]:
        for line, obj in _json_lines(path, collector):
            if not isinstance(obj, dict):
                raise error_at(path, f"expected a JSON object, got {type(obj).__name__}", line=line)
            yield line, flatten(obj)

    RecordReader(path, collector, fmt, mapping, kinds=fmt != "ceiling").read(objects())


def read_verl_jsonl(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """verl's file logger: one `{"step": N, "data": {...}}` object per line (newer versions add
    `elapsed_seconds`, kept as a raw key)."""
    collector.step_key = "step (verl's file logger)"
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
    collector.step_key = "step (verl's console lines 'step:N - ...')"
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
