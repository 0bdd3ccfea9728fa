"""`ceiling report DIR`: rebuild a report from stored results, without retraining or refitting.

DIR is either
- a report folder (`reports/default`, the folder `ceiling run` printed): its source.json names the run
  folder it was built from; the report is rebuilt in place, under the same title;
- a run folder (`runs/default`) holding fits.json and metrics.jsonl and/or eval.csv, or fits.json and an
  external log given with --log: the report goes where this run's report was last written (recorded in
  report_location.json, e.g. reports/default for `ceiling run`), under the same title, else to DIR/report.

It writes index.html, report.md, the PNG figures, fits.json and predictions.csv, and records source.json
(`ceiling.report_links`). The same inputs give byte-identical files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ceiling.errors import error_at
from ceiling.report import build_report
from ceiling.report.predictions import parse_budgets
from ceiling.report.results import Fits
from ceiling.report_links import LOCATION_FILE, SOURCE_FILE, ReportSource, record_links, report_of, source_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="a report folder (rebuilt in place) or a run directory "
                        "holding fits.json (from `ceiling run` or `ceiling fit`) and metrics.jsonl and/or eval.csv")
    parser.add_argument("--out", default=None, help="output folder (default: DIR for a report folder; for a run "
                        "directory, where its report was last written, else DIR/report)")
    parser.add_argument("--title", default=None, help="page title (default: the title it was built with, else "
                        "'ceiling report: <run>')")
    parser.add_argument("--log", default=None, help="read the training log from this file or folder instead of "
                        "DIR (for fits of external logs made with `ceiling fit LOG --out DIR`)")
    parser.add_argument("--format", default=None, help="format of --log (default: auto-detected)")
    parser.add_argument("--at", metavar="BUDGETS", default=None,
                        help="comma-separated compute budgets for predictions.csv (default: log-spaced from the "
                             "first observed compute to 10x the last)")


def _has_run_files(folder: Path) -> bool:
    return (folder / "metrics.jsonl").is_file() or (folder / "eval.csv").is_file()


def resolve(args: argparse.Namespace) -> tuple[ReportSource, Path]:
    """What to build (run folder, title, log) and where, from DIR, its recorded links and the flags."""
    folder = Path(args.run_dir)
    if not folder.is_dir():
        raise error_at(folder, "not a folder; give a report folder or a run directory")
    recorded = source_of(folder) if not _has_run_files(folder) else None
    if recorded is not None:  # a report folder: rebuild it in place
        if not recorded.run_dir.is_dir():
            raise error_at(folder / SOURCE_FILE, f"the run folder this report was built from, {recorded.run_dir}, "
                                                 "is gone; give a run directory instead", field="run_dir")
        src, out = recorded, folder
    elif _has_run_files(folder) or args.log is not None or (folder / "fits.json").is_file():
        location = report_of(folder)
        if location is not None and not location[0].is_dir() and args.out is None:
            raise error_at(folder / LOCATION_FILE, f"this run's report folder {location[0]} is gone; give --out",
                           field="report_dir")
        src = ReportSource(run_dir=folder, title=location[1] if location else "")
        out = location[0] if location else folder / "report"
    else:
        raise error_at(folder, f"no metrics.jsonl or eval.csv here, and no {SOURCE_FILE} naming the run this report "
                               "was built from; give the run directory, or the training log with --log")
    if args.log is not None:
        src.log, src.format = args.log, args.format or "auto"
    elif args.format is not None and src.log is None:
        raise error_at(None, "only applies to a log given with --log", field="--format")
    src.title = args.title or src.title
    src.at = args.at if args.at is not None else src.at
    return src, Path(args.out) if args.out else out


def main(args: argparse.Namespace) -> int:
    from ceiling.ingest import read_log
    from ceiling.ingest.ceiling_run import read_eval_csv

    src, out = resolve(args)
    run_dir = src.run_dir
    fits_path = run_dir / "fits.json"
    if not fits_path.is_file():
        raise error_at(fits_path, "no such file; run `ceiling fit` on this run first")
    fits = Fits.load(fits_path)
    run = fits.run or run_dir.name
    if src.log is not None:
        frame = read_log(src.log, format=src.format, run=run).frame
    elif _has_run_files(run_dir):
        frame = read_log(run_dir, format="ceiling", run=run).frame
    else:
        raise error_at(run_dir, "no metrics.jsonl or eval.csv here; give the training log with --log")
    eval_path = run_dir / "eval.csv"
    eval_frame = read_eval_csv(eval_path, run) if eval_path.is_file() else None
    budgets = parse_budgets(src.at) if src.at is not None else None
    src.title = src.title or f"ceiling report: {run}"
    index = build_report(frame, fits, out, title=src.title, eval_frame=eval_frame, budgets=budgets)
    record_links(out, src)
    print(f"report: {index}")
    return 0
