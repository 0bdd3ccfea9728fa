"""`ceiling predict --fits fits.json --at 1e15,1e16`: predicted verified reward at compute budgets, as a
Markdown table ready to paste (budget, prediction, 95% confidence band, 95% prediction band, flag).

Every number is the stored ceiling fit's own `predict(x, band=...)`; nothing is refitted.
"""
from __future__ import annotations

import argparse

from ceiling.errors import CeilingError, error_at
from ceiling.report.predictions import markdown_table, parse_budgets, predictions, write_predictions
from ceiling.fit.common import fmt, interval
from ceiling.report.results import Fits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fits", required=True, metavar="FITS_JSON", help="a fits.json written by `ceiling fit` "
                        "or `ceiling run`")
    parser.add_argument("--at", metavar="BUDGETS", default=None,
                        help="comma-separated compute budgets, e.g. 1e15,1e16 (in the fit's x units: FLOPs, or "
                             "steps when the fit was against steps); default: 8 log-spaced budgets from the first "
                             "observed compute to 10x the last")
    parser.add_argument("--digits", type=int, default=3, help="decimals of the predicted values (default 3)")
    parser.add_argument("--csv", metavar="PATH", default=None, help="also write the table as predictions.csv here")


def main(args: argparse.Namespace) -> int:
    budgets = parse_budgets(args.at) if args.at is not None else None
    fits = Fits.load(args.fits)
    try:
        df = predictions(fits, budgets)
    except CeilingError as exc:
        raise error_at(args.fits, str(exc)) from None
    c = fits.ceiling_result()
    verdict = (f"ceiling {fmt(c.estimate)} {interval(c.ci_low, c.ci_high)}"
               if c is not None and c.identifiable else "ceiling not identifiable")
    print(f"Predicted {fits.ceiling_metric()} of run {fits.run} ({fits.ceiling_form() or None} fit against "
          f"{fits.ceiling_x()}; {verdict}; 95% bands from the fit's bootstrap).\n")
    print(markdown_table(df, digits=args.digits), end="")
    if args.csv:
        write_predictions(fits, df["budget"].to_numpy(), args.csv)
    return 0
