"""Reports: figures, a self-contained HTML page, Markdown, predictions.csv, from frames and fit results only.

    from ceiling.report import build_report, write_predictions, summary_lines
    index = build_report(frame, fits, "reports/my-run", title="my run", eval_frame=eval_df)
    write_predictions(fits, [1e15, 1e16], "predictions.csv")
    print("\\n".join(summary_lines(fits, eval_df, report_path=index)))

`fits` is anything `ceiling.fit` produces or stores: a FitReport, a fits.json dict, or the path of a fits.json.
"""
from ceiling.report.build import build_report, diversity_floor, report_figures, summary_lines
from ceiling.report.predictions import default_budgets, markdown_table, predictions, write_predictions
from ceiling.report.results import Fits, as_fits

__all__ = ["Fits", "as_fits", "build_report", "default_budgets", "diversity_floor", "markdown_table",
           "predictions", "report_figures", "summary_lines", "write_predictions"]
