"""Reports: page content and order, self-contained HTML, byte-identical rebuilds, predictions against the fit.

The run is simulated with known truth (no model): a ScaleRL-style sigmoid of verified reward against compute
(A = 0.70), entropy that follows the entropy law, KL growing with steps, an unverified score with a planted
over-optimisation peak, and pass@k curves that sharpen with training. It is written in the formats the loop
and the evaluator write (metrics.jsonl with the loop's keys, eval.csv as the canonical frame), then read
back with `ceiling.ingest.read_log`, fitted with `ceiling.fit.fit_frame` and reported.
"""
from __future__ import annotations

import argparse
import base64
import html as html_lib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.commands import predict as predict_cmd
from ceiling.commands import report as report_cmd
from ceiling.errors import CeilingError
from ceiling.fit import fit_frame, load_fits, save_fits
from ceiling.ingest import read_log
from ceiling.ingest.ceiling_run import read_eval_csv
from ceiling.io import append_jsonl, atomic_write_text
from ceiling.report import (Fits, build_report, default_budgets, predictions, report_figures, summary_lines,
                            write_predictions)

N_BOOT = 100
TITLE = "ceiling report: sim"


# ------------------------------------------------------------------------------------------ simulated run
def simulate(n_steps: int = 60, seed: int = 0, stop_step: int | None = None) -> tuple[list[dict], pd.DataFrame]:
    """metrics.jsonl records (the loop's keys) and eval.csv rows (canonical frame) of a simulated run."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n_steps + 1)
    compute = steps * 1e12
    a, r0, c_mid, b = 0.70, 0.10, 15e12, 1.8
    reward = r0 + (a - r0) / (1 + (c_mid / np.maximum(compute, 1.0)) ** b)
    noise = np.zeros(steps.size)
    for i in range(1, steps.size):
        noise[i] = 0.3 * noise[i - 1] + rng.normal(0, 0.015)
    reward = np.clip(reward + noise, 0, 1)
    entropy = np.log((1.0 - reward) / 0.25) + rng.normal(0, 0.02, steps.size)  # R = -0.25 e^H + 1
    kl = 40 * (steps / n_steps) ** 1.5
    d = np.sqrt(kl)
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    unverified = 0.30 + 0.105 * d - 0.05 * dlogd + rng.normal(0, 0.008, steps.size)  # peak at KL = 8.6
    last = n_steps if stop_step is None else stop_step
    records = [{"step": int(s), "reward/mean": float(reward[s]), "policy/entropy": float(entropy[s]),
                "kl/policy_base_k3_seq": float(kl[s]), "compute/flops": float(compute[s])} for s in steps[: last + 1]]
    rows = []
    ks = 2.0 ** np.arange(7)
    for s in range(0, last + 1, 3):
        base = dict(run="sim", step=s, compute=compute[s])
        sharp = s / n_steps
        rows.append({**base, "metric": "unverified/score", "value": unverified[s], "family": "unverified"})
        rows.append({**base, "metric": "policy/entropy", "value": entropy[s], "family": "all"})
        rows.append({**base, "metric": "diversity/distinct_answers", "value": 6 - 4 * sharp, "family": "all"})
        for fam, cover, p1 in (("verified", 0.95 - 0.15 * sharp, 0.15 + 0.5 * sharp),
                               ("unverified", 0.80 - 0.30 * sharp, 0.10 + 0.05 * sharp)):
            pk = cover - (cover - p1) * np.exp(-(ks - 1) / (8 - 6 * sharp))
            rows += [{**base, "metric": f"{fam}/pass@k", "value": v, "family": fam, "k": k, "ci_low": v - 0.03,
                      "ci_high": min(1.0, v + 0.03), "estimator": "unbiased pass@k"} for k, v in zip(ks, pk)]
    return records, pd.DataFrame(rows)


def write_run(folder: Path, records: list[dict], eval_rows: pd.DataFrame | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        append_jsonl(folder / "metrics.jsonl", rec)
    if eval_rows is not None:
        atomic_write_text(folder / "eval.csv", eval_rows.to_csv(index=False))
    return folder


def run_command(module, argv: list[str]) -> int:
    """Parse argv with the command's own arguments and run it (what `ceiling <name>` does)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A simulated run directory with fits.json and a report built from the live FitReport in first/."""
    records, eval_rows = simulate()
    folder = write_run(tmp_path_factory.mktemp("runs") / "sim", records, eval_rows)
    frame = read_log(folder, format="ceiling").frame
    fits = fit_frame(frame, n_boot=N_BOOT)
    save_fits(folder / "fits.json", fits)
    build_report(frame, fits, folder / "first", title=TITLE, eval_frame=read_eval_csv(folder / "eval.csv", "sim"))
    return folder


# ------------------------------------------------------------------------------------------ the page
def test_page_leads_with_headline_then_figures_then_table(run_dir: Path) -> None:
    html = (run_dir / "first" / "index.html").read_text()
    fits = load_fits(run_dir / "fits.json")
    c = fits.ceiling
    assert c.identifiable and 0.65 < c.estimate < 0.75
    headline = f"{c.estimate:.3f}, 95% interval [{c.ci_low:.3f}, {c.ci_high:.3f}]"
    positions = [html.index(headline), html.index("Diversity floor of the base"), html.index("pass@64 0.950"),
                 html.index("KL threshold"), html.index("<h2>Figures"), html.index("<h2>Fitted numbers"),
                 html.index("<h2>Predicted verified reward")]
    assert positions == sorted(positions)
    assert fits.collapse.detected and "KL(policy || base), k3 estimator" in html
    assert "Skipped:" not in html and "Warnings" not in html


def test_html_is_self_contained_and_embeds_every_png(run_dir: Path) -> None:
    out = run_dir / "first"
    html = (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert [p.stem for p in pngs] == ["passk", "regimes", "reward_vs_compute", "reward_vs_entropy", "score_vs_kl"]
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []
    assert "<link" not in html and "<script" not in html
    for p in pngs:  # no software tag or timestamp inside the PNGs
        assert b"Software" not in p.read_bytes() and b"matplotlib" not in p.read_bytes()
    md = (out / "report.md").read_text()
    assert all(f"]({p.name})" in md for p in pngs)
    assert json.loads((out / "fits.json").read_text()) == json.loads((run_dir / "fits.json").read_text())


def test_report_command_rebuilds_identical_report(run_dir: Path, capsys) -> None:
    assert run_command(report_cmd, [str(run_dir)]) == 0
    assert "report/index.html" in capsys.readouterr().out
    first, again = run_dir / "first", run_dir / "report"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir() if p.name != "source.json")  # source.json: report_links
    assert {"index.html", "report.md", "fits.json", "predictions.csv"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


# ------------------------------------------------------------------------------------------ predictions
def test_predictions_are_the_fit_objects_numbers_and_flag_extrapolation(run_dir: Path, tmp_path: Path) -> None:
    fits = load_fits(run_dir / "fits.json")
    f = Fits.load(run_dir / "fits.json")
    lo, hi = f.ceiling_range()
    frac, reach, err = f.backtest_reach()
    budgets = np.array([(lo + hi) / 2, hi * (1 + (reach - 1) / 2), hi * reach * 10])
    df = predictions(run_dir / "fits.json", budgets)
    center, c_lo, c_hi = fits.ceiling.predict(budgets, band="confidence")
    _, p_lo, p_hi = fits.ceiling.predict(budgets, band="prediction")
    np.testing.assert_allclose(df["prediction"], center, rtol=0, atol=1e-12)
    np.testing.assert_allclose(df[["conf_low", "conf_high"]].to_numpy().T, [c_lo, c_hi], atol=1e-12)
    np.testing.assert_allclose(df[["pred_low", "pred_high"]].to_numpy().T, [p_lo, p_hi], atol=1e-12)
    assert (df["pred_low"] <= df["conf_low"]).all() and (df["conf_high"] <= df["pred_high"]).all()
    assert df["beyond_validated"].tolist() == [False, True, True]
    assert df["note"][0] == "" and "within the backtested reach" in df["note"][1]
    assert "beyond the backtested reach" in df["note"][2]
    path = write_predictions(fits, budgets, tmp_path / "predictions.csv")
    back = pd.read_csv(path, keep_default_na=False)
    np.testing.assert_allclose(back["prediction"], center, rtol=1e-5)
    assert back["beyond_validated"].tolist() == [False, True, True]
    default = default_budgets(fits)
    first_compute = min([v for v in fits.ceiling.window["excluded_x"] if v > 0] + [lo])
    assert default[0] == pytest.approx(first_compute) and default[-1] == pytest.approx(10 * hi)
    assert np.allclose(np.diff(np.log(default)), np.log(default[1] / default[0]))


def test_predict_command_prints_the_fit_objects_numbers(run_dir: Path, capsys) -> None:
    budgets = [3e13, 2e14, 6e14]
    assert run_command(predict_cmd, ["--fits", str(run_dir / "fits.json"), "--at", "3e13, 2e14,6e14",
                                     "--digits", "6"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == 3 and "| compute budget | predicted verified reward |" in text
    fit = load_fits(run_dir / "fits.json").ceiling
    center, c_lo, c_hi = fit.predict(budgets, band="confidence")
    _, p_lo, p_hi = fit.predict(budgets, band="prediction")
    for i, row in enumerate(rows):
        nums = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[+-]\d+)?", row.split("|", 3)[2] + row.split("|")[3]
                                             + row.split("|")[4])]
        assert nums == pytest.approx([center[i], c_lo[i], c_hi[i], p_lo[i], p_hi[i]], abs=6e-7)
    assert rows[0].endswith("within the fitted range |") and "beyond the validated range" in rows[2]


def test_summary_lines_name_the_three_headline_numbers(run_dir: Path) -> None:
    fits = load_fits(run_dir / "fits.json")
    lines = summary_lines(fits, read_eval_csv(run_dir / "eval.csv", "sim"), report_path="x/index.html")
    c, k = fits.ceiling, fits.collapse
    assert lines[0] == f"Run diagnosis: {fits.diagnosis.headline()}"  # the verdict leads (issue 15)
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("Ceiling of")):]
    assert lines[0].startswith("Ceiling of the verified reward: ") and f"[{c.ci_low:.3f}, {c.ci_high:.3f}]" in lines[0]
    assert "pass@64" in lines[1] and "entropy" in lines[1]
    assert lines[2].startswith("KL threshold: ") and f"{k.estimate:.3f}" in lines[2]
    assert lines[-1] == "report: x/index.html"


# ------------------------------------------------------------------------------------------ missing data
def test_missing_data_skips_figures_and_says_why_in_plain_words(tmp_path: Path) -> None:
    records, _ = simulate(stop_step=12)  # stops before the midpoint (C_mid = 15e12 = step 15)
    records = [{"step": r["step"], "reward/mean": r["reward/mean"], "compute/flops": r["compute/flops"]}
               for r in records]  # like many ingested logs: no KL, no entropy, no eval
    folder = write_run(tmp_path / "short", records, None)
    frame = read_log(folder, format="ceiling").frame
    fits = fit_frame(frame, n_boot=100)
    assert not fits.ceiling.identifiable
    index = build_report(frame, fits, tmp_path / "out", title="short")
    html = index.read_text()
    assert html.count("data:image/png;base64,") == 2  # the regimes and the ceiling figures
    skipped = re.findall(r'<p class="skip">Skipped: ([^<]+)</p>', html)
    assert len(skipped) == 3
    assert "no pass@k rows" in skipped[0] and "unverified score" in skipped[1] and "entropy" in skipped[2]
    assert "not identifiable: " in html and "Warnings" in html and "ceiling not identifiable: the" in html
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False)
    assert preds["note"].str.contains("not identifiable").all()
    figs = report_figures(frame, fits)  # the same figures for a notebook, unrendered
    assert type(figs["reward_vs_compute"]).__name__ == "Figure"
    assert [figs[k] for k in ("passk", "score_vs_kl", "reward_vs_entropy")] == [f"skipped: {html_lib.unescape(r)}" for r in skipped]
    lines = summary_lines(fits)
    assert lines[0].startswith("Run diagnosis: ")
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("Ceiling of")):]
    assert "not identifiable" in lines[0] and "not measured" in lines[1] and lines[2].startswith("KL threshold: not")


def test_user_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "nofits", [{"step": 0, "reward/mean": 0.1}], None)
    with pytest.raises(CeilingError, match=r"fits\.json: no such file"):
        run_command(report_cmd, [str(folder)])
    (folder / "fits.json").write_text("{not json")
    with pytest.raises(CeilingError, match=r"fits\.json: not valid JSON"):
        run_command(predict_cmd, ["--fits", str(folder / "fits.json")])
    with pytest.raises(CeilingError, match=r"'--at': 'abc' is not a number"):
        run_command(predict_cmd, ["--fits", str(folder / "fits.json"), "--at", "1e15,abc"])


def test_regimes_figure_agrees_with_its_caption(run_dir: Path) -> None:
    """The regimes figure draws one dashed line per onset the caption counts (or none, and the caption says
    so), names each shaded stretch once, and shades from where the diagnosis starts reading regimes (the caption
    says when the base is left unshaded before it)."""
    from matplotlib.lines import Line2D

    from ceiling.report.build import _data, _fig_regimes

    frame = read_log(run_dir, format="ceiling").frame
    fits = Fits.load(run_dir / "fits.json")
    _, both = _data(frame, fits, read_eval_csv(run_dir / "eval.csv", "sim"))
    entry = _fig_regimes(fits, both)
    ax = entry.figure.axes[0]
    d = fits.diagnosis_result()
    dashed = [ln for ln in ax.get_lines() if isinstance(ln, Line2D) and ln.get_linestyle() == "--"]
    n_onsets = sum(1 for s in d.sequence if s.onset)
    assert len(dashed) == n_onsets
    if n_onsets:
        assert f"dashed lines are the onsets ({n_onsets})" in entry.caption
    else:
        assert "there is no onset line" in entry.caption
    names = [t.get_text() for t in ax.texts]
    assert sorted(names) == sorted(s.regime.replace("_", " ") for s in d.sequence)  # no second verdict label
    first_x = min(float(ln.get_xdata().min()) for ln in ax.get_lines() if ln.get_linestyle() != "--")
    assert ax.patches and min(p.get_x() for p in ax.patches) == pytest.approx(d.sequence[0].start)  # Rectangles
    assert ("left unshaded" in entry.caption) == (first_x < d.sequence[0].start)
