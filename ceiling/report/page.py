"""Render the report as one self-contained HTML page and as Markdown, from plain values (no fitting here).

Order on the page: headline numbers, warnings in plain words, figures (or the reason each was skipped),
the table of every fitted number, the predictions. Nothing time-dependent is written, so the same inputs
give byte-identical pages.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from ceiling.report.predictions import flag_text

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1020px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:.8em;margin:1em 0}
.card{border:1px solid #d8dee9;border-radius:6px;padding:.7em .9em;background:#f8fafc}
.card .label{font-size:.8em;text-transform:uppercase;letter-spacing:.04em;color:#667}
.card .value{font-size:1.05em;margin-top:.25em}
.warn{background:#fff8e1;border:1px solid #e0c36a;border-radius:6px;padding:.5em 1em}
.warn li{margin:.2em 0}
figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}
.skip{color:#666;font-style:italic;border-left:3px solid #ccc;padding-left:.7em}
table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{border-bottom:1px solid #e5e5e5;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f4f6} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
footer{margin-top:2.5em;font-size:.8em;color:#888}
"""


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report: its PNG bytes and file name, or the reason it was skipped."""

    name: str                 # file stem, e.g. "reward_vs_compute"
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None  # plain-words reason when png is None
    figure: Any = None          # the matplotlib Figure before it is rendered to png


@dataclass(frozen=True)
class Page:
    """Everything the page shows, already in words and numbers."""

    title: str
    subtitle: str
    headline: list[tuple[str, str]]   # (label, text)
    warnings: list[str]
    figures: list[FigureEntry]
    table: pd.DataFrame               # the fitted numbers (see ceiling.report.results.TABLE_COLUMNS)
    predictions: pd.DataFrame | None  # see ceiling.report.predictions.COLUMNS
    footer: str


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(df: pd.DataFrame, numeric: set[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(f"<td class=\"num\">{_e(v)}</td>" if c in numeric else f"<td>{_e(v)}</td>"
                        for c, v in zip(df.columns, row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_cell(v: object) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def predictions_display(df: pd.DataFrame) -> pd.DataFrame:
    """The predictions frame as display strings (the same columns as `ceiling predict` prints)."""
    unit = str(df["x"].iloc[0]) if len(df) else "compute"
    return pd.DataFrame({
        f"{unit} budget": [f"{v:.3g}" for v in df["budget"]],
        "predicted verified reward": [f"{v:.3f}" for v in df["prediction"]],
        "95% confidence band": [f"[{a:.3f}, {b:.3f}]" for a, b in zip(df["conf_low"], df["conf_high"])],
        "95% prediction band": [f"[{a:.3f}, {b:.3f}]" for a, b in zip(df["pred_low"], df["pred_high"])],
        "flag": [flag_text(f, n) for f, n in zip(df["beyond_validated"], df["note"])],
    })


def render_html(page: Page) -> str:
    """The self-contained HTML page (figures embedded as base64 PNG, inline CSS, no external assets)."""
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
           f"<title>{_e(page.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(page.title)}</h1>", f"<p class=\"sub\">{_e(page.subtitle)}</p>",
           "<div class=\"headline\">"]
    for label, text in page.headline:
        out.append(f"<div class=\"card\"><div class=\"label\">{_e(label)}</div>"
                   f"<div class=\"value\">{_e(text)}</div></div>")
    out.append("</div>")
    if page.warnings:
        out.append("<div class=\"warn\"><strong>Warnings</strong><ul>")
        out += [f"<li>{_e(w)}</li>" for w in page.warnings]
        out.append("</ul></div>")
    out += figures_html(page.figures)
    out.append("<h2>Fitted numbers</h2>")
    out.append(_html_table(page.table, numeric={"estimate", "95% interval"}))
    if page.predictions is not None and len(page.predictions):
        out.append("<h2>Predicted verified reward at compute budgets</h2>")
        out.append("<p>From <code>predictions.csv</code>. Budgets outside the fitted range are flagged: beyond "
                   "it they are extrapolations, and the note says how far the fit's backtest reached.</p>")
        disp = predictions_display(page.predictions)
        out.append(_html_table(disp, numeric=set(disp.columns[:4])))
    out.append(f"<footer>{_e(page.footer)}</footer></body></html>")
    return "\n".join(out) + "\n"


def render_markdown(page: Page) -> str:
    """The same report in Markdown, linking the PNG files written beside it."""
    out = [f"# {page.title}", "", page.subtitle, "", "## Headline", ""]
    out += [f"- **{label}:** {text}" for label, text in page.headline]
    if page.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in page.warnings]
    out += ["", "## Figures", ""]
    for i, fig in enumerate(page.figures, start=1):
        out.append(f"### {i}. {fig.title}")
        out.append("")
        if fig.png is None:
            out.append(f"*Skipped: {fig.skipped}*")
        else:
            out += [f"![{fig.title}]({fig.name}.png)", "", fig.caption]
        out.append("")
    out += ["## Fitted numbers", "", _md_table(page.table), ""]
    if page.predictions is not None and len(page.predictions):
        out += ["## Predicted verified reward at compute budgets", "", "From `predictions.csv`.", "",
                _md_table(predictions_display(page.predictions)), ""]
    out += ["---", "", page.footer, ""]
    return "\n".join(out)


def figures_html(figures: Sequence[Any]) -> list[str]:
    """A "Figures" section: each figure (name, title, caption, png bytes or None and a `skipped` reason)
    numbered, embedded as base64 PNG, or its reason for being skipped."""
    out = ["<h2>Figures</h2>"]
    for i, fig in enumerate(figures, start=1):
        if fig.png is None:
            out.append(f"<h3>{i}. {_e(fig.title)}</h3><p class=\"skip\">Skipped: {_e(fig.skipped)}</p>")
            continue
        data = base64.b64encode(fig.png).decode("ascii")
        out.append(f"<figure id=\"{_e(fig.name)}\"><h3>{i}. {_e(fig.title)}</h3>"
                   f"<img alt=\"{_e(fig.title)}\" src=\"data:image/png;base64,{data}\">"
                   f"<figcaption>{_e(fig.caption)}</figcaption></figure>")
    return out
