"""`ceiling sweep`: does the base model's diversity set the RL ceiling? A grid of ordinary runs and one report.

    from ceiling.sweep import load_sweep, run_sweep
    config = load_sweep("configs/sweep_default.json")
    outcome = run_sweep(config, runs_dir="runs", reports_dir="reports", jobs=2)
    print(outcome.report)                   # reports/<sweep name>/index.html

Modules: `config` (the grid and its cells), `engine` (running cells, resume, parallel workers), `aggregate`
(per-run numbers from each fits.json / eval.csv, the across-run regression, leave-one-base-out predictions,
verdicts on the claim), `report` (figures, index.html, report.md, sweep.csv, sweep_fits.json).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ceiling.sweep.aggregate import SweepAnalysis, analyse, family_table, read_eval, sweep_table
from ceiling.sweep.config import Cell, SweepConfig, load_sweep, parse_sweep
from ceiling.sweep.engine import (
    CellResult,
    cell_dir,
    is_complete,
    run_cells,
    threads_per_worker,
)

__all__ = ["Cell", "CellResult", "SweepAnalysis", "SweepConfig", "SweepOutcome", "analyse", "build_sweep_report",
           "cell_dir", "is_complete", "load_sweep", "parse_sweep", "run_cells", "run_sweep",
           "threads_per_worker"]


@dataclass
class SweepOutcome:
    """What `run_sweep` did: one result per cell, the analysis, and the report's index.html."""

    results: list[CellResult]
    analysis: SweepAnalysis
    report: Path

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]


def build_sweep_report(config: SweepConfig, runs_dir: str | Path = "runs",
                       reports_dir: str | Path = "reports") -> tuple[SweepAnalysis, Path]:
    """Aggregate the sweep's cells as they are now and write reports_dir/<sweep name>/ (no training)."""
    from ceiling.sweep.report import curves, write_report

    table = sweep_table(config, runs_dir)
    analysis = analyse(config, table, family_table(config, runs_dir))
    frames = {}
    for c in config.cells:
        if is_complete(cell_dir(runs_dir, config, c), c):
            ev = read_eval(cell_dir(runs_dir, config, c))
            if ev is not None:
                frames[c.name] = ev
    path = write_report(analysis, curves(analysis, frames), Path(reports_dir) / config.name, config.description)
    return analysis, path


def run_sweep(config: SweepConfig, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports", jobs: int = 1,
              fresh: bool = False, threads: int | None = None,
              progress: Callable[[CellResult, int, int], None] | None = None) -> SweepOutcome:
    """Run (or resume) every cell, then write the aggregated report. Failed cells are reported, not raised."""
    results = run_cells(config, runs_dir, jobs=jobs, fresh=fresh, threads=threads, progress=progress)
    analysis, path = build_sweep_report(config, runs_dir, reports_dir)
    return SweepOutcome(results, analysis, path)
