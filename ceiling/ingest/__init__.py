"""Read other frameworks' training logs into the canonical long frame.

    from ceiling.ingest import read_log
    res = read_log("trainer_state.json")                 # format auto-detected
    res = read_log("metrics.csv", mapping={"unverified": "eval_acc"})
    res.frame, res.format, res.notes, res.dropped, res.mapping

Formats: `ceiling` (our run dir), `trl` (trainer_state.json), `verl` (file-logger JSONL or console log),
`wandb` (history CSV export), `tensorboard` (event files), `csv` and `jsonl` (any, with mapping flags).
The key tables live in `ceiling.ingest.mappings` and are listed in docs/ingest.md. Input files are only
ever opened for reading.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ceiling.errors import CeilingError
from ceiling.ingest.ceiling_run import read_ceiling_run
from ceiling.ingest.core import Collector, IngestResult, check_mapping
from ceiling.ingest.detect import FORMATS, detect_format
from ceiling.ingest.mappings import TABLES
from ceiling.ingest.tabular import check_readable, read_csv, read_jsonl, read_verl_console, read_verl_jsonl
from ceiling.ingest.tensorboard import read_tensorboard
from ceiling.ingest.trl import read_trainer_state

__all__ = ["FORMATS", "TABLES", "IngestResult", "detect_format", "read_log", "run_name"]

Reader = Callable[[Path, Collector, str, dict[str, str]], None]

_GENERIC_NAMES = {"trainer_state.json", "metrics.jsonl", "metrics.csv", "eval.csv", "log.txt", "train.log"}


def run_name(path: Path) -> str:
    """A run name from the path: the folder for generic file names and event files, else the file stem."""
    path = path.resolve()
    if path.is_dir():
        return path.parent.name if path.name.startswith("checkpoint-") else path.name
    if path.name in _GENERIC_NAMES or path.name.startswith("events.out.tfevents"):
        parent = path.parent
        if parent.name.startswith("checkpoint-"):  # TRL: output_dir/checkpoint-N/trainer_state.json
            parent = parent.parent
        return parent.name or path.stem
    return path.stem


def _trl_path(path: Path) -> Path:
    if path.is_dir():
        found = path / "trainer_state.json"
        if not found.is_file():
            raise CeilingError(f"{path}: no trainer_state.json in this folder")
        return found
    return path


def _verl_reader(path: Path) -> Reader:
    """verl's file-logger JSONL or its console log, told apart by the first non-blank byte."""
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    return read_verl_jsonl if head.startswith(b"{") else read_verl_console


def read_log(path: str | Path, format: str = "auto", mapping: dict[str, str] | None = None,
             run: str | None = None) -> IngestResult:
    """Read one training log into the canonical frame.

    path: a log file or folder. format: "auto" or one of FORMATS. mapping: {"step" | "verified" |
    "unverified" | "kl" | "entropy" | "compute" | a canonical metric name: source key}; the user's mapping
    wins over the tables. run: the run name (default: from the path).
    Raises CeilingError (one line naming the file and line) for anything it cannot read.
    """
    path = Path(path)
    check_readable(path)
    fmt = detect_format(path) if format in (None, "", "auto") else format
    if fmt not in FORMATS:
        raise CeilingError(f"unknown format {format!r}; one of auto, {', '.join(FORMATS)}")
    user = check_mapping(mapping)
    name = run or run_name(path)
    if fmt == "ceiling":
        result = read_ceiling_run(path, name, user, run_given=run is not None)
    else:
        if fmt == "trl":
            path = _trl_path(path)
        elif fmt != "tensorboard" and path.is_dir():
            raise CeilingError(f"{path}: a folder; give the {fmt} log file itself")
        reader: Reader = {
            "trl": read_trainer_state,
            "verl": _verl_reader(path) if fmt == "verl" else read_verl_jsonl,
            "wandb": read_csv,
            "tensorboard": read_tensorboard,
            "csv": read_csv,
            "jsonl": read_jsonl,
        }[fmt]
        unit = {"trl": "entry", "tensorboard": "event"}.get(fmt, "line")
        collector = Collector(path, unit=unit)
        reader(path, collector, fmt, user)
        result = collector.result(fmt, name, user)
    result.notes.insert(0, f"read {path} as {fmt}" + (" (auto-detected)" if format in (None, "", "auto") else ""))
    return result
