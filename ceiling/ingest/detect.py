"""Tell a log's format from its name, extension and first bytes (never more than SNIFF_BYTES are read).

Rules, in order:
- a folder: `metrics.jsonl` or `eval.csv` inside -> ceiling; `trainer_state.json` -> trl; event files
  anywhere below -> tensorboard;
- `events.out.tfevents.*` -> tensorboard; `trainer_state.json`, or JSON whose head holds `"log_history"` -> trl;
- `metrics.jsonl` next to a `config.json`, or `eval.csv` with run/step/metric/value columns -> ceiling;
- JSON lines whose first object is `{"step": ..., "data": {...}}` -> verl; other JSON lines -> jsonl;
- CSV whose header has `_step` or `_runtime`, or W&B chart columns (`Step`, `<run> - <key>`) -> wandb;
  other CSV -> csv;
- text with a line `step:N - key:value` -> verl (console).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ceiling.errors import CeilingError, error_at

FORMATS = ("ceiling", "trl", "verl", "wandb", "tensorboard", "csv", "jsonl")
SNIFF_BYTES = 65536
_VERL_CONSOLE = re.compile(rb"(?:^|[\s)\]])step:\d+ - [^\n]*:")


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(SNIFF_BYTES)


def _first_json_object(head: bytes) -> dict | None:
    for raw in head.split(b"\n"):
        if raw.strip():
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return None
            return obj if isinstance(obj, dict) else None
    return None


def _csv_header(head: bytes) -> list[str]:
    first = head.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip("\r\n")
    return [c.strip().strip('"') for c in first.split(",")]


def detect_format(path: Path) -> str:
    """The format of the log at `path` (one of FORMATS), or a CeilingError asking for --format."""
    if path.is_dir():
        if (path / "metrics.jsonl").is_file() or (path / "eval.csv").is_file():
            return "ceiling"
        if (path / "trainer_state.json").is_file():
            return "trl"
        if next(path.rglob("events.out.tfevents.*"), None) is not None:
            return "tensorboard"
        raise CeilingError(f"{path}: cannot tell the log format of this folder (no metrics.jsonl, eval.csv, "
                           "trainer_state.json or event files); give a file, or --format")
    name = path.name
    if name.startswith("events.out.tfevents"):
        return "tensorboard"
    if name == "trainer_state.json":
        return "trl"
    head = _head(path)
    suffix = path.suffix.lower()
    if name == "metrics.jsonl" and (path.parent / "config.json").is_file():
        return "ceiling"
    if suffix == ".csv" or (suffix in ("", ".txt") and head[:1] not in (b"{", b"[")
                            and b"," in head.split(b"\n", 1)[0] and b"step:" not in head.split(b"\n", 1)[0]):
        header = _csv_header(head)
        if name == "eval.csv" and {"run", "step", "metric", "value"} <= set(header):
            return "ceiling"
        if "_step" in header or "_runtime" in header or (
                "Step" in header and any(" - " in h for h in header)):
            return "wandb"
        return "csv"
    stripped = head.lstrip()
    if stripped.startswith(b"{") and b'"log_history"' in head:
        return "trl"
    if suffix in (".jsonl", ".json", ".ndjson") or stripped.startswith(b"{"):
        obj = _first_json_object(head)
        if obj is not None and "step" in obj and isinstance(obj.get("data"), dict):
            return "verl"
        if suffix == ".json" and obj is None:
            raise error_at(path, "a JSON file that is neither a trainer_state.json nor JSON lines; give --format")
        return "jsonl"
    if _VERL_CONSOLE.search(head):
        return "verl"
    raise error_at(path, "cannot tell the log format; give --format (one of " + ", ".join(FORMATS) + ")")
