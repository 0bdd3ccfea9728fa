"""`ceiling run` end to end on the smoke preset: train -> eval -> fit -> report, then resume is a no-op."""
from __future__ import annotations

import json

import pytest

from ceiling.cli import main
from ceiling.pipeline import PRESETS, preset, spec_from_file


@pytest.mark.slow
def test_run_smoke_end_to_end(tmp_path, capsys):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    code = main(["run", "--preset", "smoke", "--name", "s", "--runs-dir", str(runs), "--reports-dir", str(reports)])
    assert code == 0
    out = capsys.readouterr().out
    run_dir = runs / "s"
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(PRESETS["smoke"]["train"]["steps"] + 1))
    assert (run_dir / "eval.csv").exists() and (run_dir / "fits.json").exists()
    fits = json.loads((run_dir / "fits.json").read_text())
    assert fits["schema_version"] == 1 and {"ceiling", "entropy_law", "collapse"} <= set(fits)
    html = (reports / "s" / "index.html").read_text()
    pngs = list((reports / "s").glob("*.png"))
    assert pngs and html.count("<img") == len(pngs)  # every figure written is embedded in the page
    assert json.loads((reports / "s" / "fits.json").read_text()) == fits  # the report is of this run's fits
    from html import escape

    from ceiling.report.results import fmt

    for name in ("ceiling", "entropy_law", "collapse"):  # the page prints each fitted number, or why there is none
        sec = fits[name]
        if sec.get("estimate") is not None:
            assert fmt(sec["estimate"]) in html, name
        else:
            assert escape(sec.get("reason") or sec["reasons"][0]) in html, name
    assert "== summary ==" in out and "report:" in out

    # Re-running resumes: nothing is retrained or re-evaluated, and the results are unchanged.
    before = (run_dir / "metrics.jsonl").read_text(), (run_dir / "eval.csv").read_text()
    assert main(["run", "--preset", "smoke", "--name", "s", "--runs-dir", str(runs), "--reports-dir", str(reports)]) == 0
    assert ((run_dir / "metrics.jsonl").read_text(), (run_dir / "eval.csv").read_text()) == before
    # ... but a changed setting is refused, naming the field, and nothing is lost
    capsys.readouterr()
    assert main(["run", "--preset", "smoke", "--name", "s", "--beta", "0.1", "--runs-dir", str(runs),
                 "--reports-dir", str(reports)]) == 2
    assert "beta" in capsys.readouterr().err
    assert ((run_dir / "metrics.jsonl").read_text(), (run_dir / "eval.csv").read_text()) == before


def test_presets_resolve_and_config_errors(tmp_path, capsys):
    for name in PRESETS:
        spec = preset(name)
        assert spec.train["base"] and spec.eval and spec.fit
    assert preset("tiny-high").train["steps"] == preset("default").train["steps"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"steps": 3},\n "evall": {}}')
    with pytest.raises(Exception, match="bad.json.*evall"):
        spec_from_file(bad)
    bad.write_text('{"train": {"steps": 3,}}')
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ceiling: error:") and "bad.json:1" in err and err.count("\n") == 1
    assert main(["run", "--preset", "nope"]) == 2
