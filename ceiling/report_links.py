"""Where a report's data live and where a run's report went, so that `ceiling report` rebuilds a report in place.

Two small JSON files, written whenever a report is built (by `ceiling run` and `ceiling report`):

    <report folder>/source.json          {"run_dir": "../../runs/default", "title": "ceiling run: default", ...}
    <run folder>/report_location.json    {"report_dir": "../../reports/default", "title": "ceiling run: default"}

Paths are relative to the folder holding the file, so a project folder can move as a whole. With them,
`ceiling report reports/default` reads runs/default and rewrites reports/default under the same title, and
`ceiling report runs/default` writes to reports/default, not to a second copy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceiling.errors import error_at
from ceiling.io import atomic_write_json, read_json

SOURCE_FILE = "source.json"
"""In a report folder: the run folder (or log) it was built from, and its title."""
LOCATION_FILE = "report_location.json"
"""In a run folder: the report folder last built from it, and its title."""


@dataclass
class ReportSource:
    """How a report folder was built: enough to build it again, byte for byte."""

    run_dir: Path
    """The run folder holding fits.json (and metrics.jsonl / eval.csv unless `log` is given)."""
    title: str
    """The page title."""
    log: str | None = None
    """The training log read instead of run_dir's files (`ceiling report --log`), if any."""
    format: str = "auto"
    """The format of `log`."""
    at: str | None = None
    """The compute budgets of predictions.csv (`--at`), if given."""


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def record_links(report_dir: str | Path, source: ReportSource) -> None:
    """Write report_dir/source.json and run_dir/report_location.json (atomically)."""
    report_dir, run_dir = Path(report_dir), Path(source.run_dir)
    data: dict[str, Any] = {"run_dir": _relative(run_dir, report_dir), "title": source.title}
    if source.log is not None:
        data.update(log=str(Path(source.log).resolve()), format=source.format)
    if source.at is not None:
        data["at"] = source.at
    atomic_write_json(report_dir / SOURCE_FILE, data)
    atomic_write_json(run_dir / LOCATION_FILE, {"report_dir": _relative(report_dir, run_dir), "title": source.title})


def _text(data: dict[str, Any], key: str, path: Path, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise error_at(path, "must be a non-empty string", field=key)
    return value


def source_of(report_dir: str | Path) -> ReportSource | None:
    """The recorded source of a report folder, or None when it has no source.json."""
    path = Path(report_dir) / SOURCE_FILE
    if not path.is_file():
        return None
    data = read_json(path, what="report source")
    if not isinstance(data, dict):
        raise error_at(path, "must be a JSON object")
    run_dir = Path(os.path.normpath(Path(report_dir) / str(_text(data, "run_dir", path))))
    return ReportSource(run_dir=run_dir, title=str(_text(data, "title", path)),
                        log=_text(data, "log", path, required=False),
                        format=_text(data, "format", path, required=False) or "auto",
                        at=_text(data, "at", path, required=False))


def report_of(run_dir: str | Path) -> tuple[Path, str] | None:
    """(report folder, title) last built from a run folder, or None when it has no report_location.json."""
    path = Path(run_dir) / LOCATION_FILE
    if not path.is_file():
        return None
    data = read_json(path, what="report location")
    if not isinstance(data, dict):
        raise error_at(path, "must be a JSON object")
    return Path(os.path.normpath(Path(run_dir) / str(_text(data, "report_dir", path)))), str(_text(data, "title", path))
