"""Running a sweep: every cell is an ordinary `ceiling run` directory, made by `ceiling.pipeline.run`.

    <runs-dir>/<sweep>/<cell>/          config.json, metrics.jsonl, checkpoints/, eval.csv, fits.json,
                                        sweep_cell.json (the cell's settings hash and timings), sweep_cell.log
    <runs-dir>/<sweep>/cell-reports/<cell>/   each cell's own run report

Resuming: a cell is *done* when its fits.json exists, is newer than its inputs (config.json, metrics.jsonl,
eval.csv) and its sweep_cell.json says `complete` with the same settings hash and the same base weights (a
hash of the base's safetensors); done cells are skipped. Any other cell is run through `run()`, which resumes
training from the last checkpoint and evaluates only new checkpoints (a cell started from other base weights
is cleared first).

Parallel cells (`jobs` > 1) run in spawned worker processes (`concurrent.futures.ProcessPoolExecutor`), each
with max(1, cores // jobs) torch threads. A cell that fails is recorded (its error in one line, the
traceback in its sweep_cell.log) and the others go on.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceiling.io import atomic_write_json
from ceiling.sweep.config import Cell, SweepConfig

CELL_JSON = "sweep_cell.json"
CELL_LOG = "sweep_cell.log"
INPUTS = ("config.json", "metrics.jsonl", "eval.csv")


@dataclass
class CellResult:
    """What happened to one cell in this invocation."""

    cell: str
    status: str
    """`done` (skipped: already complete), `ran` (completed now) or `failed`."""
    seconds: float = 0.0
    timings: dict[str, float] | None = None
    error: str | None = None


def sweep_dir(runs_dir: str | Path, config: SweepConfig) -> Path:
    return Path(runs_dir) / config.name


def cell_dir(runs_dir: str | Path, config: SweepConfig, cell: Cell) -> Path:
    return sweep_dir(runs_dir, config) / cell.name


@functools.lru_cache(maxsize=64)
def _fingerprint_files(files: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for path, _, _ in files:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def base_folder(base: str) -> Path | None:
    """The folder of a base: a model folder as given, or a shipped name under `$CEILING_DATA/bases` (else the
    repo's data/bases), as `ceiling.models.load` resolves it (without importing torch); None when not found."""
    folder = Path(base)
    if folder.is_dir():
        return folder
    data = os.environ.get("CEILING_DATA")
    shipped = (Path(data) if data else Path(__file__).resolve().parents[2] / "data") / "bases" / base
    return shipped if shipped.is_dir() else None


def base_fingerprint(base: str) -> str:
    """A hash of the base's weights (its *.safetensors files), so that a re-pretrained base reruns its cells;
    the spec itself for a base that is not a folder here (e.g. `smollm2`)."""
    folder = base_folder(base)
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    if not files:
        return base
    return _fingerprint_files(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


def is_complete(run_dir: Path, cell: Cell) -> bool:
    """True when the cell's fits.json is present, newer than its inputs, and made with the cell's settings
    from the same base weights (sweep_cell.json)."""
    fits, record = run_dir / "fits.json", run_dir / CELL_JSON
    if not (fits.is_file() and record.is_file()):
        return False
    try:
        stored = json.loads(record.read_text())
    except ValueError:
        return False
    if stored.get("status") != "complete" or stored.get("spec_hash") != cell.spec_hash() or stored.get("base_fingerprint") != base_fingerprint(cell.base):
        return False
    newest = max((run_dir / name).stat().st_mtime_ns for name in INPUTS if (run_dir / name).exists())
    return fits.stat().st_mtime_ns >= newest


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of `jobs` workers: max(1, cores // jobs)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, jobs))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}".rstrip(": ")


def write_cell_record(run_dir: Path, cell: Cell, status: str, **extra: Any) -> Path:
    """Write the cell's sweep_cell.json: `status` (`started` or `complete`), the settings hash, the base's
    fingerprint, the coordinates and settings, plus `extra` (timings)."""
    return atomic_write_json(run_dir / CELL_JSON, {
        "schema_version": 1, "status": status, "spec_hash": cell.spec_hash(),
        "base_fingerprint": base_fingerprint(cell.base), **cell.coordinates(),
        "spec": {"train": cell.spec.train, "eval": cell.spec.eval, "fit": cell.spec.fit}, **extra})


def run_cell(cell: Cell, runs_dir: str, reports_dir: str, threads: int) -> CellResult:
    """Run one cell (train / resume, evaluate, fit, report) with its output going to the cell's log.

    A cell directory started from other base weights (the base was pretrained again) is cleared first.
    Never raises: a failure comes back as a `failed` CellResult (the traceback is in the log)."""
    import torch

    from ceiling.pipeline import run

    run_dir = Path(runs_dir) / cell.name
    stored = cell_record(run_dir)
    if stored and stored.get("base_fingerprint") != base_fingerprint(cell.base):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not stored or stored.get("status") != "complete":
        write_cell_record(run_dir, cell, "started")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        with open(run_dir / CELL_LOG, "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print(f"== sweep cell {cell.name} ({threads} torch thread(s)) ==", flush=True)
            try:
                out = run(cell.spec, runs_dir, reports_dir, fresh=False, log=True)
            except Exception as exc:  # noqa: BLE001 -- a failed cell must not stop the sweep
                traceback.print_exc()
                return CellResult(cell.name, "failed", time.perf_counter() - t0, error=_one_line(exc))
        seconds = time.perf_counter() - t0
        write_cell_record(run_dir, cell, "complete", timings=out["timings"], seconds=seconds, threads=threads)
        return CellResult(cell.name, "ran", seconds, timings=out["timings"])
    finally:
        torch.set_num_threads(previous)


def _worker_init(threads: int) -> None:
    """Each worker process: a fixed number of torch threads (set again per cell by `run_cell`)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(threads)


def prepare_cells(config: SweepConfig, runs_dir: str | Path, cells: Sequence[Cell] | None,
                  fresh: bool) -> tuple[Path, list[Cell], Path]:
    """(the sweep's folder, the cells to consider, the folder of cell reports); `fresh` deletes their folders.
    Shared by every sweep engine (local processes here, Ray tasks in `ceiling.engines.ray`)."""
    root = sweep_dir(runs_dir, config)
    cells = list(config.cells if cells is None else cells)
    if fresh:
        for c in cells:
            shutil.rmtree(root / c.name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    return root, cells, root / "cell-reports"


def run_cells(config: SweepConfig, runs_dir: str | Path = "runs", jobs: int = 1, fresh: bool = False,
              threads: int | None = None, cells: list[Cell] | None = None,
              progress: Callable[[CellResult, int, int], None] | None = None) -> list[CellResult]:
    """Run every cell of the sweep that is not complete; return one CellResult per cell, in config order.

    Args:
        runs_dir: cells go to runs_dir/<sweep name>/<cell name>.
        jobs: cells run at once (1 = in this process; more = spawned worker processes).
        fresh: delete the sweep's existing cell directories first.
        threads: torch threads per cell (default max(1, cores // jobs)).
        cells: a subset of the config's cells (default all).
        progress: called after each cell with (result, number finished, total).
    """
    root, cells, reports = prepare_cells(config, runs_dir, cells, fresh)
    threads = threads or threads_per_worker(jobs)
    results: dict[str, CellResult] = {}
    todo = []
    for c in cells:
        if is_complete(root / c.name, c):
            results[c.name] = CellResult(c.name, "done")
            if progress:
                progress(results[c.name], len(results), len(cells))
        else:
            todo.append(c)
    if jobs <= 1 or len(todo) <= 1:
        for c in todo:
            results[c.name] = run_cell(c, str(root), str(reports), threads)
            if progress:
                progress(results[c.name], len(results), len(cells))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(run_cell, c, str(root), str(reports), threads): c for c in todo}
            for fut in as_completed(futures):
                c = futures[fut]
                try:
                    results[c.name] = fut.result()
                except Exception as exc:  # noqa: BLE001 -- the worker process itself died
                    results[c.name] = CellResult(c.name, "failed", error=_one_line(exc))
                if progress:
                    progress(results[c.name], len(results), len(cells))
    return [results[c.name] for c in cells]


def cell_record(run_dir: Path) -> dict[str, Any]:
    """The sweep_cell.json of a cell ({} when missing)."""
    try:
        return json.loads((run_dir / CELL_JSON).read_text())
    except (OSError, ValueError):
        return {}
