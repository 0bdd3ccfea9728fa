"""`ceiling sweep`: a grid of runs over bases, seeds and beta (plus random-reward controls), one aggregated report.

    ceiling sweep --config configs/sweep_default.json --jobs 2
    ceiling sweep --config configs/sweep_smoke.json --runs-dir /tmp/runs --reports-dir /tmp/reports
    ceiling sweep --config configs/sweep_default.json --report-only     # re-aggregate, train nothing
    ceiling sweep --config configs/sweep_default.json --list            # the cells and their state

Every cell is an ordinary run directory (runs/<sweep>/<cell>); re-running the command skips complete cells
and resumes half-finished ones. The report goes to reports/<sweep>/ (index.html, report.md, PNGs, sweep.csv,
sweep_fits.json). Exit status 1 when a cell failed (the report is still written from the others).
"""
from __future__ import annotations

import argparse
import time

from ceiling.errors import CeilingError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="sweep config (JSON: name, preset, train/eval/fit, grid, controls)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, in parallel processes (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per cell (default max(1, cores // jobs))")
    p.add_argument("--runs-dir", default="runs", help="cells go to RUNS_DIR/<sweep name>/<cell> (default runs/)")
    p.add_argument("--reports-dir", default="reports", help="the report goes to REPORTS_DIR/<sweep name> (default reports/)")
    p.add_argument("--fresh", action="store_true", help="delete the sweep's cell directories first")
    p.add_argument("--report-only", action="store_true", help="aggregate the cells as they are; train nothing")
    p.add_argument("--list", action="store_true", help="print the cells and whether each is complete, then exit")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local processes (--jobs) or one Ray task per run (the ray extra; docs/engines.md)")
    p.add_argument("--ray-address", default=None, help="ray engine: a cluster to join (e.g. auto); default: a local one")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="ray engine: num_cpus of each run's task (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="ray engine: num_gpus of each run's task (default 0)")


def main(args: argparse.Namespace) -> int:
    from ceiling.sweep import (
        build_sweep_report,
        cell_dir,
        is_complete,
        load_sweep,
        run_sweep,
        threads_per_worker,
    )

    if args.jobs < 1:
        raise CeilingError(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise CeilingError(f"--threads must be >= 1, got {args.threads}")
    config = load_sweep(args.config)
    if args.list:
        for c in config.cells:
            state = "complete" if is_complete(cell_dir(args.runs_dir, config, c), c) else "to run"
            print(f"{c.name:40s} {state}")
        return 0
    t0 = time.perf_counter()
    if args.report_only:
        analysis, path = build_sweep_report(config, args.runs_dir, args.reports_dir)
        failed = []
    else:
        threads = args.threads or threads_per_worker(args.jobs)
        print(f"sweep {config.name}: {len(config.cells)} cells, {args.jobs} at a time, {threads} torch thread(s) each; "
              f"runs in {cell_dir(args.runs_dir, config, config.cells[0]).parent}", flush=True)

        def progress(r, done: int, total: int) -> None:
            what = {"done": "complete, skipped", "ran": f"done in {r.seconds:.0f}s", "failed": f"FAILED: {r.error}"}
            print(f"[{done}/{total}] {r.cell}: {what[r.status]}", flush=True)

        if args.engine == "ray":
            from ceiling.engines.ray import RayResources, run_sweep_ray

            resources = RayResources(cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                                     address=args.ray_address)
            outcome = run_sweep_ray(config, args.runs_dir, args.reports_dir, resources, fresh=args.fresh,
                                    progress=progress)
        else:
            outcome = run_sweep(config, args.runs_dir, args.reports_dir, jobs=args.jobs, fresh=args.fresh,
                                threads=threads, progress=progress)
        analysis, path, failed = outcome.analysis, outcome.report, outcome.failed
    print("\n== conclusion ==")
    for claim, verdict in analysis.verdicts.items():
        print(f"{claim}: {verdict}")
    for f in analysis.findings:
        print(f"  - [{f.verdict}] {f.text}")
    print(f"report: {path}")
    print(f"time: {time.perf_counter() - t0:.0f}s")
    if failed:
        print(f"{len(failed)} cell(s) failed: " + ", ".join(r.cell for r in failed)
              + " (see sweep_cell.log in each cell's directory)")
        return 1
    return 0
