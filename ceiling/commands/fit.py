"""`ceiling fit LOG`: the ceiling, the entropy law and the collapse analysis of any training log.

LOG is one of our run directories or another framework's log (TRL trainer_state.json, verl JSONL or
console log, W&B history CSV, TensorBoard event files, any CSV/JSONL; see docs/ingest.md). It is read
(never modified), fitted with `ceiling.fit.fit_frame`, and `fits.json` plus a report (`report/index.html`)
are written into --out.

    ceiling fit runs/demo                                   # our run dir: writes runs/demo/fits.json
    ceiling fit trainer_state.json --out reports/my-trl-run
    ceiling fit metrics.csv --eval-n 500                    # eval_acc -> verified/eval_acc, on 500 problems
    ceiling fit metrics.csv --unverified eval_acc --x step  # say the eval is a benchmark of another task
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ceiling.fit import fit_frame, save_fits
from ceiling.ingest import FORMATS, IngestResult, read_log
from ceiling.ingest.mappings import FLAG_METRICS
from ceiling.ingest.summary import describe, require_verified

MAX_READ_LINES = 15  # what was read, before the headline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", help="a run directory or a training log file/folder")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="the log's format (default: auto-detected from name and content)")
    parser.add_argument("--out", metavar="DIR",
                        help="where fits.json and report/ go (default: the run directory for our runs, "
                             "else reports/<run name>)")
    parser.add_argument("--run", help="run name (default: from the path)")
    parser.add_argument("--x", choices=("compute", "step"), default="compute",
                        help="x axis of the ceiling fit; compute falls back to step when the log has no FLOPs")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per fit (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument("--no-report", action="store_true", help="write fits.json only")
    maps = parser.add_argument_group("column mapping (source key in the log; overrides the built-in tables)")
    maps.add_argument("--step", metavar="KEY", help="the optimizer step")
    for flag, metric in FLAG_METRICS.items():
        what = "cumulative training FLOPs (fills the compute column)" if flag == "compute" else metric
        maps.add_argument(f"--{flag}", metavar="KEY", help=f"the key to read as {what}")
    maps.add_argument("--eval-n", type=_positive_int, metavar="N",
                      help="number of held-out problems behind the held-out accuracy (verified/eval_acc), "
                           "where the log does not give it (e.g. num_examples)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not >= 1")
    return value


def mapping_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The mapping flags that were given, as read_log's `mapping`."""
    names = ["step", *FLAG_METRICS]
    return {n: getattr(args, n) for n in names if getattr(args, n, None)}


def split_eval(result: IngestResult) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(training frame, eval frame): our run dirs keep eval.csv rows apart for the report."""
    frame = result.frame
    if result.format != "ceiling":
        return frame, None
    is_eval = frame["source_key"] == "eval.csv"
    return frame[~is_eval].reset_index(drop=True), (frame[is_eval].reset_index(drop=True) if is_eval.any() else None)


def out_dir(args: argparse.Namespace, result: IngestResult, run: str) -> Path:
    if args.out:
        return Path(args.out)
    log = Path(args.log)
    if result.format == "ceiling":
        return log if log.is_dir() else log.parent
    return Path("reports") / run


def main(args: argparse.Namespace) -> int:
    result = read_log(args.log, format=args.format, mapping=mapping_from_args(args), run=args.run,
                      eval_n=args.eval_n)
    require_verified(result, args.log)
    frame = result.frame
    run = result.runs[0] if result.runs else (str(frame["run"].iloc[0]) if len(frame) else (args.run or "run"))
    lines = describe(result, args.log, max_lines=MAX_READ_LINES - (len(result.runs) > 1))
    if len(result.runs) > 1:
        lines.append(f"  fitting run {run!r}, the first of {len(result.runs)}; pick one with --run NAME")
    print("\n".join(lines))
    report = fit_frame(frame, run=run, x=args.x, n_boot=args.n_boot, seed=args.seed)
    report.meta["source"] = {"log": str(args.log), "format": result.format, "mapping": result.mapping,
                             "notes": result.notes}
    dest = out_dir(args, result, run)
    fits_path = save_fits(dest / "fits.json", report)
    training, evals = split_eval(result)
    index = None
    if not args.no_report:
        # The report module (ceiling.report, issue 7) builds index.html, report.md, PNGs and predictions.csv.
        from ceiling.report import build_report
        index = build_report(training, report, dest / "report", title=f"ceiling fit: {run}", eval_frame=evals)
    _print_summary(report, evals, index)
    print(f"fits: {fits_path}")
    return 0


def _print_summary(report: object, evals: pd.DataFrame | None, index: Path | None) -> None:
    try:
        from ceiling.report import summary_lines
    except ImportError:  # pragma: no cover - the report module ships with the package
        print(report.summary())  # type: ignore[attr-defined]
        return
    for line in summary_lines(report, evals, report_path=index):
        print(line)
