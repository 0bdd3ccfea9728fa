"""`ceiling sweep --engine ray`: every run of a sweep is one Ray task, on a local cluster or any cluster.

    ceiling sweep --config configs/sweep_default.json --engine ray                       # local cluster
    ceiling sweep --config configs/sweep_default.json --engine ray --ray-address auto    # a running cluster
    ceiling sweep --config my_sweep.json --engine ray --cpus-per-run 4 --gpus-per-run 1

A task runs `ceiling.sweep.engine.run_cell`, the function the local engine runs in its processes, so a cell
gives the same numbers whichever engine ran it (same seeds, same torch threads: `threads` per run, 1 by
default). Each task states what it needs (`num_cpus`, `num_gpus`); Ray places it where that is free.
Finished runs are not redone: cells whose `sweep_cell.json` says complete (same settings, same base
weights, fits newer than their inputs) are skipped before anything is submitted, and a half-finished cell
resumes from its last checkpoint, as with the local engine. Every worker writes into the same runs
directory, so on a multi-node cluster it must be a shared file system (and `ceiling` importable on every
node, e.g. `runtime_env={"working_dir": ...}` or the same install).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceiling.engines import require
from ceiling.sweep.config import Cell, SweepConfig


@dataclass
class RayResources:
    """What each run asks Ray for, and where the cluster is."""

    cpus_per_run: float = 1.0
    """Ray `num_cpus` of each run's task (also its torch threads, rounded down, at least 1)."""
    gpus_per_run: float = 0.0
    """Ray `num_gpus` of each run's task (set the runs' device to cuda in the sweep config to use them)."""
    address: str | None = None
    """A cluster to join (`auto`, `ray://host:10001`, ...); None starts a local one."""
    num_cpus: int | None = None
    """CPUs of a local cluster (None = all of this machine's); ignored with `address`."""

    def threads(self) -> int:
        return max(1, int(self.cpus_per_run))


def connect(resources: RayResources) -> Any:
    """`ray.init` for the local cluster or the given address (reusing a session already open in this process)."""
    ray = require("ray")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"env_vars": {"MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}}}
        if resources.address:
            ray.init(address=resources.address, **kwargs)
        else:
            ray.init(num_cpus=resources.num_cpus, **kwargs)
    return ray


def run_cells_ray(config: SweepConfig, runs_dir: str | Path = "runs", resources: RayResources | None = None,
                  fresh: bool = False, cells: list[Cell] | None = None,
                  progress: Callable[[Any, int, int], None] | None = None) -> list[Any]:
    """Run every cell that is not complete as a Ray task; one `CellResult` per cell, in config order
    (`done` for a cell skipped as complete). Same arguments and results as `ceiling.sweep.run_cells`."""
    from ceiling.sweep.engine import CellResult, is_complete, prepare_cells, run_cell

    resources = resources or RayResources()
    ray = connect(resources)
    root, cells, reports = prepare_cells(config, runs_dir, cells, fresh)
    results: dict[str, CellResult] = {}
    task = ray.remote(num_cpus=resources.cpus_per_run, num_gpus=resources.gpus_per_run, max_retries=0)(run_cell)
    pending: dict[Any, Cell] = {}
    for c in cells:
        if is_complete(root / c.name, c):
            results[c.name] = CellResult(c.name, "done")
            if progress:
                progress(results[c.name], len(results), len(cells))
        else:
            pending[task.remote(c, str(root), str(reports), resources.threads())] = c
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        c = pending.pop(ready[0])
        try:
            results[c.name] = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 -- the worker itself died; the other runs go on
            results[c.name] = CellResult(c.name, "failed", error=f"{exc.__class__.__name__}: "
                                                                 f"{(str(exc).strip().splitlines() or [''])[0]}")
        if progress:
            progress(results[c.name], len(results), len(cells))
    return [results[c.name] for c in cells]


def run_sweep_ray(config: SweepConfig, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports",
                  resources: RayResources | None = None, fresh: bool = False,
                  progress: Callable[[Any, int, int], None] | None = None) -> Any:
    """`ceiling.sweep.run_sweep` with Ray tasks for the runs: run or resume every cell, then the report."""
    from ceiling.sweep import SweepOutcome, build_sweep_report

    results = run_cells_ray(config, runs_dir, resources, fresh=fresh, progress=progress)
    analysis, path = build_sweep_report(config, runs_dir, reports_dir)
    return SweepOutcome(results, analysis, path)
