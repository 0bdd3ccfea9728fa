"""`ceiling sweep`: the CI miniature (configs/sweep_smoke.json) end to end, resume, aggregation, config errors.

The miniature runs on three tiny bases pretrained here in seconds (placed where the shipped ones live, via
$CEILING_DATA), so the test does not depend on the shipped weights and the three bases really differ in
diversity.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.cli import main as cli_main
from ceiling.errors import CeilingError
from ceiling.sweep import (
    build_sweep_report,
    cell_dir,
    is_complete,
    load_sweep,
    parse_sweep,
    run_sweep,
    threads_per_worker,
)
from ceiling.sweep.aggregate import mean_interval
from ceiling.sweep.engine import CELL_JSON

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "sweep_smoke.json"
DEFAULT = ROOT / "configs" / "sweep_default.json"


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Path:
    """tiny-low / tiny-medium / tiny-high: miniature pretrained bases with a measured diversity.json."""
    import torch

    from ceiling.io import atomic_write_json
    from ceiling.models import load
    from ceiling.pretrain import (
        PRESETS,
        CorpusSpec,
        TrainConfig,
        measure_diversity,
        pretrain,
    )

    torch.set_num_threads(1)
    data = tmp_path_factory.mktemp("data")
    cfg = TrainConfig(steps=40, batch_size=32, lr=1e-2, warmup=4, hidden_size=32, num_layers=1, num_heads=2,
                      log_every=0)
    for name in ("tiny-low", "tiny-medium", "tiny-high"):  # the bases the smoke sweep uses
        diversity = PRESETS[name]
        out = pretrain(data / "bases" / name, diversity, seed=0, cfg=cfg, tasks="smoke", measure=False)
        taskset = CorpusSpec(diversity=diversity, seed=0, tasks="smoke").taskset()
        measured = measure_diversity(load(out, device="cpu"), taskset, n_prompts=4, n_samples=8, k=8, max_new_tokens=8)
        atomic_write_json(out / "diversity.json", measured)
    return data


@pytest.fixture(scope="module")
def swept(bases, tmp_path_factory):
    """The miniature sweep, run once through the CLI with two parallel workers."""
    old = os.environ.get("CEILING_DATA")
    os.environ["CEILING_DATA"] = str(bases)
    try:
        root = tmp_path_factory.mktemp("sweep")
        runs, reports = root / "runs", root / "reports"
        code = cli_main(["sweep", "--config", str(SMOKE), "--jobs", "2", "--runs-dir", str(runs),
                         "--reports-dir", str(reports)])
        yield load_sweep(SMOKE), runs, reports, code
    finally:
        if old is None:
            os.environ.pop("CEILING_DATA", None)
        else:
            os.environ["CEILING_DATA"] = old


def test_smoke_sweep_makes_every_cell_and_the_report(swept):
    config, runs, reports, code = swept
    assert code == 0
    assert [c.name for c in config.cells] == ["tiny-low-s0-b0", "tiny-medium-s0-b0", "tiny-high-s0-b0",
                                              "tiny-medium-s0-b0-random", "tiny-medium-s0-b0-sft"]
    for c in config.cells:
        d = cell_dir(runs, config, c)
        assert (d / "fits.json").is_file() and (d / "eval.csv").is_file()
        assert json.loads((d / "config.json").read_text())["random_reward"] is c.control
        assert json.loads((d / "config.json").read_text()).get("sft_examples_per_step", 0) == (2 if c.arm == "sft" else 0)
        assert is_complete(d, c)
        assert json.loads((d / CELL_JSON).read_text())["threads"] == threads_per_worker(2)
    out = reports / config.name
    html = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    assert "Conclusion" in html and "## Conclusion" in md
    for claim in ("claim 1", "claim 2"):
        assert claim in md
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert {"coverage", "threshold_vs_beta", "unverified_vs_kl", "control_gain"} <= set(pngs)
    for name in pngs:  # every written figure is on the page and linked from the Markdown
        assert f'id="{name}"' in html and f"({name}.png)" in md


def test_aggregation_equals_each_runs_fits_and_eval(swept):
    config, runs, reports, _ = swept
    table = pd.read_csv(reports / config.name / "sweep.csv")
    stored = json.loads((reports / config.name / "sweep_fits.json").read_text())
    assert len(table) == len(stored["runs"]) == 5 and set(table["status"]) == {"complete"}
    assert dict(zip(table["cell"], table["arm"]))["tiny-medium-s0-b0-sft"] == "sft"
    for c in config.cells:
        row = table[table["cell"] == c.name].iloc[0]
        fits = json.loads((cell_dir(runs, config, c) / "fits.json").read_text())
        # 8 steps make no plateau: no cell has a ceiling curve, and its row must carry no ceiling (rows with a
        # curve equal its numbers: test_synthetic_sweep_where_diversity_sets_the_ceiling)
        assert fits["ceiling"]["kind"] != "curve", c.name
        assert math.isnan(row["ceiling"]) and math.isnan(row["ceiling_low"]) and math.isnan(row["ceiling_high"])
        assert not row["ceiling_identifiable"]
        assert bool(row["threshold_detected"]) is bool(fits["collapse"].get("detected", False))
        ev = pd.read_csv(cell_dir(runs, config, c) / "eval.csv")
        rew = ev[(ev["metric"] == "verified/reward") & (ev["family"] == "verified")].sort_values("step")
        assert row["base_reward"] == pytest.approx(rew["value"].iloc[0])
        assert row["final_reward"] == pytest.approx(rew["value"].iloc[-1])
        assert row["gain"] == pytest.approx(rew["value"].iloc[-1] - rew["value"].iloc[0])
    # the diversity floor comes from each base: the three bases differ, the control shares tiny-medium's
    floor = table.set_index("cell")["base_pass@kmax"]
    assert floor["tiny-medium-s0-b0"] == floor["tiny-medium-s0-b0-random"]
    assert table["div_entropy"].notna().all()
    assert stored["conclusion"]["findings"] and len(stored["conclusion"]["verdicts"]) == 5  # + the converse (arm)
    (arm,) = stored["arms"]
    sft, rl = (table.set_index("cell").loc[n] for n in ("tiny-medium-s0-b0-sft", "tiny-medium-s0-b0"))
    assert arm["pairs"] == 1 and arm["final_reward_difference"]["estimate"] == pytest.approx(
        sft["final_reward"] - rl["final_reward"])
    assert stored["controls"][0]["control_runs"] == ["tiny-medium-s0-b0-random"]


def test_resume_skips_complete_cells_and_reruns_a_damaged_one(swept, bases, monkeypatch, capsys):
    config, runs, reports, _ = swept
    monkeypatch.setenv("CEILING_DATA", str(bases))
    out = reports / config.name
    before = (out / "index.html").read_bytes(), (out / "sweep.csv").read_bytes()
    damaged = config.cells[0]  # half-finished: the last checkpoint and the fits are gone
    d = cell_dir(runs, config, damaged)
    (d / "fits.json").unlink()
    last = d / "checkpoints" / "step_000008"
    shutil.rmtree(last)
    n_lines = len((d / "metrics.jsonl").read_text().splitlines())
    mtimes = {c.name: (cell_dir(runs, config, c) / "fits.json").stat().st_mtime_ns for c in config.cells[1:]}
    outcome = run_sweep(config, runs, reports, jobs=1)
    assert [r.status for r in outcome.results] == ["ran", "done", "done", "done", "done"]
    for c in config.cells[1:]:  # untouched
        assert (cell_dir(runs, config, c) / "fits.json").stat().st_mtime_ns == mtimes[c.name]
    assert "== RL" in (d / "sweep_cell.log").read_text()
    assert last.is_dir() and len((d / "metrics.jsonl").read_text().splitlines()) == n_lines
    # the cell was finished from its step-7 checkpoint, exactly as before: the report is unchanged
    assert (out / "sweep.csv").read_bytes() == before[1]
    assert (out / "index.html").read_bytes() == before[0]


def test_a_failed_cell_is_reported_and_the_others_go_on(swept, bases, monkeypatch, tmp_path):
    config, runs, _reports, _ = swept
    monkeypatch.setenv("CEILING_DATA", str(bases))
    data = json.loads(SMOKE.read_text())
    data["grid"]["base"] = ["tiny-low", str(tmp_path / "no-such-model")]
    data.pop("controls")
    data.pop("arms")
    broken = parse_sweep(data, SMOKE)
    # reuse the finished tiny-low cell: copy nothing, point the sweep at the same runs folder
    outcome = run_sweep(broken, runs, tmp_path / "reports", jobs=1)
    status = {r.cell: r.status for r in outcome.results}
    assert status == {"tiny-low-s0-b0": "done", "no-such-model-s0-b0": "failed"}
    assert outcome.failed[0].error and "\n" not in outcome.failed[0].error
    md = (tmp_path / "reports" / config.name / "report.md").read_text()
    assert "no-such-model-s0-b0: incomplete" in md


def test_config_errors_name_the_field(tmp_path):
    base = json.loads(SMOKE.read_text())
    cases = [({"grid": {"base": ["tiny-low"], "seed": [-1]}}, "grid[0].seed"),
             ({"grid": {"base": ["tiny-low"], "beta": ["x"]}}, "grid[0].beta"),
             ({"grid": {"base": ["tiny-low"], "temperature": [1]}}, "grid[0].temperature"),
             ({"train": {"beta": 0.1}}, "train.beta"),
             ({"colour": 1}, "colour"),
             ({"reference_beta": 0.3}, "reference_beta"),
             ({"arms": [{"arm": "rl", "base": ["tiny-low"]}]}, "arms[0].arm"),
             ({"arms": [{"arm": "sft", "base": ["tiny-low"], "train": {"seed": 3}}]}, "arms[0].train.seed"),
             ({"arms": [{"arm": "sft", "base": ["tiny-low"], "lr_typo": 1}]}, "arms[0].lr_typo")]
    for change, field in cases:
        with pytest.raises(CeilingError, match=re.escape(f"field '{field}'")):
            parse_sweep({**base, **change}, tmp_path / "s.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",\n "grid": }')
    with pytest.raises(CeilingError, match=r"bad.json:2"):
        load_sweep(bad)


def test_default_config_is_a_real_grid_with_a_control():
    config = load_sweep(DEFAULT)
    real, ctrl = config.real_cells(), config.control_cells()
    assert {c.base for c in real} == {"tiny-cipher-low", "tiny-cipher-medium", "tiny-cipher-high"}
    arms = config.arm_cells()
    assert arms and {c.arm for c in arms} == {"sft"} and all(c.spec.train["sft_examples_per_step"] > 0 for c in arms)
    assert len(ctrl) >= 3  # enough controls for the Welch comparison to decide
    assert len({c.seed for c in real}) >= 2 and 0.0 in {c.beta for c in real} and len({c.beta for c in real}) >= 2
    assert ctrl and all(c.spec.train["random_reward"] for c in ctrl)
    assert len({c.name for c in config.cells}) == len(config.cells)


def test_mean_interval():
    one = mean_interval([0.2], [0.05])
    assert (one.low, one.high, one.n) == (pytest.approx(0.15), pytest.approx(0.25), 1)
    two = mean_interval([0.1, 0.3])
    assert two.estimate == pytest.approx(0.2) and two.low < 0.1 and two.high > 0.3  # t with 1 dof is wide
    assert not mean_interval([float("nan")]).n


# ---------------------------------------------------------------------------------------------- synthetic sweeps
def _synthetic_eval(run: str, coverage: float, ceiling: float, seed: int, steps: int = 40) -> pd.DataFrame:
    """An eval.csv of a run that saturates at `ceiling` from a base of pass@32 `coverage`; the unverified score
    falls once KL passes 3 nats."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(0, steps + 1, 2):
        kl = 0.25 * s
        reward = 0.1 + (ceiling - 0.1) * (1 - np.exp(-s / 6)) + rng.normal(0, 0.004)
        unverified = 0.5 - 0.04 * max(0.0, kl - 3.0) + rng.normal(0, 0.004)
        common = {"run": run, "step": s, "compute": 1e12 * s, "n": 64.0, "estimator": "synthetic"}
        rows += [{**common, "metric": "verified/reward", "value": reward, "ci_low": reward - 0.02,
                  "ci_high": reward + 0.02, "family": "verified", "k": np.nan},
                 {**common, "metric": "unverified/score", "value": unverified, "ci_low": unverified - 0.02,
                  "ci_high": unverified + 0.02, "family": "unverified", "k": np.nan},
                 {**common, "metric": "kl/policy_base_k3", "value": kl, "ci_low": kl, "ci_high": kl, "family": "all",
                  "k": np.nan},
                 {**common, "metric": "policy/entropy", "value": 1.0 + coverage - 0.01 * s, "ci_low": np.nan,
                  "ci_high": np.nan, "family": "all", "k": np.nan},
                 {**common, "metric": "diversity/distinct_answers", "value": 2 + 4 * coverage - 0.02 * s,
                  "ci_low": np.nan, "ci_high": np.nan, "family": "verified", "k": np.nan}]
        if s in (0, steps):
            for k, v in ((1, reward), (32, coverage - (0.06 if s else 0.0))):
                rows.append({**common, "metric": "verified/pass@k", "value": v, "ci_low": v - 0.02,
                             "ci_high": v + 0.02, "family": "verified", "k": float(k)})
    return pd.DataFrame(rows)


def _fake_sweep(tmp_path, monkeypatch, slope: float):
    """Cells on disk as a finished sweep would leave them, their fits.json made by the real fit_frame."""
    from ceiling.fit import fit_frame, save_fits
    from ceiling.sweep.engine import write_cell_record

    monkeypatch.setenv("CEILING_DATA", str(tmp_path / "no-data"))
    data = json.loads(SMOKE.read_text())
    data.update(name="synthetic", grid={"base": ["tiny-low", "tiny-medium", "tiny-high"], "seed": [0, 1],
                                        "beta": [0.0]})
    data.pop("controls")
    data.pop("arms")
    config = parse_sweep(data, SMOKE)
    coverage = {"tiny-low": 0.3, "tiny-medium": 0.5, "tiny-high": 0.7}
    runs = tmp_path / "runs"
    for c in config.cells:
        d = cell_dir(runs, config, c)
        d.mkdir(parents=True)
        ceiling = 0.25 + slope * (coverage[c.base] - 0.3) + 0.01 * c.seed
        ev = _synthetic_eval(c.name, coverage[c.base], ceiling, seed=c.seed + 10 * len(c.base))
        (d / "config.json").write_text("{}")
        (d / "metrics.jsonl").write_text("")
        ev.to_csv(d / "eval.csv", index=False)
        save_fits(d / "fits.json", fit_frame(ev, run=c.name, n_boot=60, across=False))
        write_cell_record(d, c, "complete")
    return config, runs


def test_synthetic_sweep_where_diversity_sets_the_ceiling(tmp_path, monkeypatch):
    config, runs = _fake_sweep(tmp_path, monkeypatch, slope=0.8)
    assert all(is_complete(cell_dir(runs, config, c), c) for c in config.cells)
    analysis, index = build_sweep_report(config, runs, tmp_path / "reports")
    table = pd.read_csv(index.parent / "sweep.csv")
    for c in config.cells:  # the aggregated numbers are the per-run fits, unchanged
        fits = json.loads((cell_dir(runs, config, c) / "fits.json").read_text())
        row = table[table["cell"] == c.name].iloc[0]
        assert fits["ceiling"]["kind"] == "curve"
        assert row["ceiling"] == fits["ceiling"]["estimate"] and row["ceiling_high"] == fits["ceiling"]["ci_high"]
        assert row["ceiling_low"] == fits["ceiling"]["ci_low"]
        assert bool(row["ceiling_identifiable"]) is fits["ceiling"]["identifiable"]
        assert bool(row["threshold_detected"]) is fits["collapse"]["detected"]
        assert row["base_pass@kmax"] == pytest.approx(0.3 if "low" in c.name else 0.5 if "medium" in c.name else 0.7)
    assert table["ceiling_identifiable"].all()
    reg = analysis.across.regressions["base_pass@kmax"]
    assert reg["slope_ci"][0] > 0.5 and reg["slope_ci"][1] < 1.1 and reg["k"] == 6
    assert analysis.prediction["rows"] and analysis.prediction["rmse"] < 0.05  # leave one base out
    verdicts = list(analysis.verdicts.values())
    assert verdicts[0] == "supported"       # claim 1
    assert verdicts[2] == "supported"       # coverage shrinks by 0.06 in every run
    md = (index.parent / "report.md").read_text()
    assert "slope" in md and "6 runs" in md and "ceiling_vs_diversity.png" in md
    assert (index.parent / "predicted_vs_realized.png").is_file()


def test_synthetic_sweep_where_it_does_not(tmp_path, monkeypatch):
    config, runs = _fake_sweep(tmp_path, monkeypatch, slope=-0.5)
    analysis, _ = build_sweep_report(config, runs, tmp_path / "reports")
    assert analysis.across.regressions["base_pass@kmax"]["slope_ci"][1] < 0
    assert next(iter(analysis.verdicts.values())) == "contradicted"
