"""`ceiling report DIR`: rebuild the report of a run directory from stored results, without retraining or
refitting. Reads DIR/fits.json, DIR/metrics.jsonl and DIR/eval.csv (or an external log given with --log)
and writes DIR/report/ (or --out): index.html, report.md, the PNG figures, fits.json and predictions.csv.
The same inputs give byte-identical HTML and Markdown.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ceiling.errors import error_at
from ceiling.report import build_report
from ceiling.report.predictions import parse_budgets
from ceiling.report.results import Fits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="a run directory holding fits.json (from `ceiling run` or "
                        "`ceiling fit`) and metrics.jsonl and/or eval.csv")
    parser.add_argument("--out", default=None, help="output folder (default: DIR/report)")
    parser.add_argument("--title", default=None, help="page title (default: 'ceiling report: <run>')")
    parser.add_argument("--log", default=None, help="read the training log from this file or folder instead of "
                        "DIR (for fits of external logs made with `ceiling fit LOG --out DIR`)")
    parser.add_argument("--format", default="auto", help="format of --log (default: auto-detected)")
    parser.add_argument("--at", metavar="BUDGETS", default=None,
                        help="comma-separated compute budgets for predictions.csv (default: log-spaced from the "
                             "first observed compute to 10x the last)")


def main(args: argparse.Namespace) -> int:
    from ceiling.ingest import read_log
    from ceiling.ingest.ceiling_run import read_eval_csv

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise error_at(run_dir, "not a folder; give a run directory")
    fits_path = run_dir / "fits.json"
    if not fits_path.is_file():
        raise error_at(fits_path, "no such file; run `ceiling fit` on this run first")
    fits = Fits.load(fits_path)
    run = fits.run or run_dir.name
    if args.log is not None:
        frame = read_log(args.log, format=args.format, run=run).frame
    elif (run_dir / "metrics.jsonl").is_file() or (run_dir / "eval.csv").is_file():
        frame = read_log(run_dir, format="ceiling", run=run).frame
    else:
        raise error_at(run_dir, "no metrics.jsonl or eval.csv here; give the training log with --log")
    eval_path = run_dir / "eval.csv"
    eval_frame = read_eval_csv(eval_path, run) if eval_path.is_file() else None
    budgets = parse_budgets(args.at) if args.at is not None else None
    out = Path(args.out) if args.out else run_dir / "report"
    index = build_report(frame, fits, out, title=args.title or f"ceiling report: {run}", eval_frame=eval_frame,
                         budgets=budgets)
    print(f"report: {index}")
    return 0
