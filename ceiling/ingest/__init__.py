"""Read other frameworks' training logs into the canonical long frame.

    from ceiling.ingest import read_log
    res = read_log("trainer_state.json")                 # format auto-detected
    res = read_log("metrics.csv", mapping={"unverified": "eval_acc"}, eval_n=500)
    res.frame, res.format, res.notes, res.dropped, res.mapping, res.step_key, res.kinds, res.ignored

Formats: `ceiling` (our run dir), `trl` (trainer_state.json), `verl` (file-logger JSONL or console log),
`wandb` (history CSV export), `tensorboard` (event files), `csv` and `jsonl` (any, with mapping flags).
The key tables live in `ceiling.ingest.mappings` and are listed in docs/ingest.md. Input files are only
ever opened for reading.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ceiling.errors import CeilingError, error_at
from ceiling.ingest.ceiling_run import read_ceiling_run
from ceiling.ingest.core import Collector, IngestResult, check_mapping, concat_results
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
             run: str | None = None, eval_n: int | None = None) -> IngestResult:
    """Read one training log into the canonical frame.

    path: a log file or folder. format: "auto" or one of FORMATS. mapping: {"step" | "verified" |
    "unverified" | "kl" | "entropy" | "compute" | a canonical metric name: source key}; the user's mapping
    wins over the tables. run: the run name (default: from the path); for a file holding several runs (a
    W&B chart export), the one run to keep. eval_n: the number of held-out problems behind
    verified/eval_acc (the frame's `n`) where the log does not give it.
    Raises CeilingError (one line naming the file and line) for anything it cannot read.
    """
    path = Path(path)
    check_readable(path)
    fmt = detect_format(path) if format in (None, "", "auto") else format
    if fmt not in FORMATS:
        raise CeilingError(f"unknown format {format!r}; one of auto, {', '.join(FORMATS)}")
    if eval_n is not None and (not isinstance(eval_n, int) or eval_n < 1):
        raise CeilingError(f"eval_n must be a whole number >= 1, not {eval_n!r}")
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
        if collector.children:
            result = _several_runs(collector, fmt, user, run, eval_n)
        else:
            result = collector.result(fmt, name, user, eval_n=eval_n)
    result.notes.insert(0, f"read {path} as {fmt}" + (" (auto-detected)" if format in (None, "", "auto") else ""))
    return result


def _several_runs(collector: Collector, fmt: str, user: dict[str, str], run: str | None,
                  eval_n: int | None) -> IngestResult:
    """One result for a file that holds several runs (each its own collector): all of them, or `run`."""
    runs = list(collector.children)
    if run is not None:
        if run not in collector.children:
            raise error_at(collector.path, f"no run {run!r} in this file (runs: {', '.join(runs[:10])})")
        runs = [run]
    parts = []
    for name in runs:
        child = collector.children[name]
        if not child.values:
            collector.note(f"run {name!r}: no numeric values")
            continue
        parts.append(child.result(fmt, name, user, eval_n=eval_n))
    if not parts:
        raise error_at(collector.path, "no numeric values found in any run")
    result = concat_results(parts, fmt)
    result.notes[:0] = collector.notes
    return result
