"""Regenerate analysis.ipynb (cells only, no outputs): python tools/make_notebook.py"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell("""# Exploring an RLVR run with `ceiling`

This notebook sits on the same API as the CLI. By default it loads the committed example run
(`reports/example/run/`: the `metrics.jsonl`, `eval.csv` and `fits.json` of `ceiling run`); point `CEILING_RUN`
at any run directory of yours, or at another framework's log (TRL `trainer_state.json`, verl JSONL, a W&B CSV,
TensorBoard events), and run it top to bottom.

`CEILING_NB_BOOT` sets the bootstrap size (small in CI, 1000 for real work)."""),
    new_code_cell("""import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ceiling.fit import CurveFitter, backtest, compare_forms, fit_curve, fit_frame
from ceiling.frame import series
from ceiling.ingest import read_log
from ceiling.report import report_figures

ROOT = Path(os.environ.get("CEILING_ROOT", "."))
RUN = Path(os.environ.get("CEILING_RUN", ROOT / "reports" / "example" / "run"))
N_BOOT = int(os.environ.get("CEILING_NB_BOOT", "1000"))
log = read_log(RUN)
frame = log.frame
print(f"{RUN}: format {log.format}, {len(frame)} rows, metrics: {sorted(frame.metric.unique())[:12]} ...")
for note in log.notes:
    print("note:", note)"""),
    new_markdown_cell("""## The fits
`fit_frame` fits what the data allow: the ceiling of verified reward against compute, the entropy law, and the
KL collapse threshold. Every number carries an interval, the method, and a verdict with reasons."""),
    new_code_cell("""fits = fit_frame(frame, n_boot=N_BOOT, seed=0)
print(fits.summary())"""),
    new_code_cell("""eval_frame = frame[frame.source_key == "eval.csv"] if (frame.source_key == "eval.csv").any() else None
figures = report_figures(frame, fits, eval_frame=eval_frame)
for name, fig in figures.items():
    if isinstance(fig, str):
        print(name, "->", fig)
    else:
        display(fig)
        plt.close(fig)"""),
    new_markdown_cell("""## Explore: the fit window
ScaleRL drops an early window before fitting; how sensitive is the ceiling to that choice?"""),
    new_code_cell("""metric = fits.meta.get("ceiling_metric") or "verified/reward"
s = series(frame[frame.family.isna() | frame.family.isin(["all", "verified"])], metric)
s = s.groupby("step", as_index=False).agg(compute=("compute", "mean"), value=("value", "mean"))
use_compute = s.compute.notna().all() and (s.compute.diff().dropna() > 0).all()
x = (s.compute if use_compute else s.step).to_numpy(float)
y = s.value.to_numpy(float)
ok = x > 0
x, y = x[ok], y[ok]
rows = []
for frac in (0.0, 0.05, 0.1, 0.2, 0.3):
    try:
        f = fit_curve(x, y, form="sigmoid", exclude_frac=frac, n_boot=N_BOOT, seed=0)
        rows.append(dict(exclude_frac=frac, A=f.estimate, ci_low=f.ci_low, ci_high=f.ci_high,
                         identifiable=f.identifiable, reasons="; ".join(f.reasons)[:80]))
    except Exception as exc:  # too few points left: say so
        rows.append(dict(exclude_frac=frac, A=np.nan, reasons=str(exc)[:80]))
pd.DataFrame(rows)"""),
    new_markdown_cell("""## Explore: compare curve forms
Leave-future-out error (fit early, score later) decides between ScaleRL's sigmoid, a power law with an
asymptote and exponential saturation; AIC stands beside it."""),
    new_code_cell("""comparison = compare_forms(x, y, fitter=CurveFitter(n_boot=N_BOOT, seed=0))
print(comparison.summary())"""),
    new_code_cell("""backtest(x, y, CurveFitter(form="sigmoid"), fractions=(0.4, 0.6, 0.8))"""),
    new_markdown_cell("""## Explore: compare runs
Every run directory under `runs/` (or the cells of a sweep) can be overlaid; here, the runs found next to the
example, if any, else only the example."""),
    new_code_cell("""run_dirs = sorted(p for p in (ROOT / "runs").glob("*") if (p / "metrics.jsonl").exists())[:6] or [RUN]
fig, ax = plt.subplots(figsize=(6, 3.5))
for d in run_dirs:
    fr = read_log(d).frame
    m = "verified/reward"
    s = series(fr[fr.family.isna() | fr.family.isin(["all", "verified"])], m)
    if len(s):
        ax.plot(s.step, s.value, marker="o", ms=3, label=d.name)
ax.set_xlabel("step"); ax.set_ylabel("verified reward (held-out mean@n)"); ax.legend(fontsize=7)
plt.show()"""),
    new_markdown_cell("""## Your own logs
The same analysis on a genuine GRPO log from another project (Qwen3-0.6B on MATH, see
`tests/fixtures/real_logs/README.md`): the training reward's ceiling against steps, and MATH-500 accuracy
treated as the unverified score."""),
    new_code_cell("""real = ROOT / "tests" / "fixtures" / "real_logs" / "7_3_plus_tracking_metrics.csv"
ext = read_log(real, mapping={"unverified": "eval_acc"})
for note in ext.notes:
    print("note:", note)
ext_fits = fit_frame(ext.frame, x="step", n_boot=N_BOOT, seed=0)
print(ext_fits.summary())"""),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                          "language_info": {"name": "python"}})
Path(__file__).resolve().parents[1].joinpath("analysis.ipynb").write_text(nbformat.writes(nb))
print("wrote analysis.ipynb")
