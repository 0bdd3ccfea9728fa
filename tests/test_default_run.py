"""The committed example is the default preset's run, whole, and it reaches its plateau (issue 16 item 1).

The run itself takes minutes, so these tests read what `ceiling run` committed in reports/example/ (regenerated
with `ceiling run --name example`, its run files copied to reports/example/run/): the settings are the preset's,
every checkpoint was evaluated, the held-out reward's last stretch lies inside the fitted ceiling's interval
(a run stopped mid-rise, or a fit biased below its plateau, fails), and the README describes this run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.fit import CurveFit, load_fits
from ceiling.pipeline import preset

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "reports" / "example" / "run"
DEFAULT = preset("default")


def _held_out_reward() -> pd.DataFrame:
    ev = pd.read_csv(RUN / "eval.csv")
    rows = ev[(ev["metric"] == "verified/reward") & (ev["family"] == "verified")]
    return rows.sort_values("step")[["step", "value"]].reset_index(drop=True)


def test_example_is_the_default_preset() -> None:
    config = json.loads((RUN / "config.json").read_text())
    assert {k: config[k] for k in DEFAULT.train} == DEFAULT.train
    eval_config = json.loads((RUN / "eval_config.json").read_text())["config"]
    assert {k: eval_config[k] for k in DEFAULT.eval} == DEFAULT.eval


def test_example_evaluates_every_checkpoint() -> None:
    steps, every = DEFAULT.train["steps"], DEFAULT.train["checkpoint_every"]
    assert list(_held_out_reward()["step"]) == list(range(0, steps + 1, every))
    lines = (RUN / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == steps


def test_example_reaches_its_plateau() -> None:
    """The ceiling is identifiable, and the last fifth of the evaluated checkpoints lies inside its interval."""
    ceiling = load_fits(RUN / "fits.json").ceiling
    assert isinstance(ceiling, CurveFit)
    assert ceiling.identifiable, ceiling.reasons
    reward = _held_out_reward()
    last = reward[reward["step"] >= 0.8 * DEFAULT.train["steps"]]["value"].to_numpy()
    assert len(last) >= 5
    assert ceiling.ci_low <= float(np.mean(last)) <= ceiling.ci_high, (float(np.mean(last)), ceiling.ci_low,
                                                                       ceiling.ci_high)
    assert ceiling.ci_high - ceiling.ci_low <= 0.10


def test_report_is_the_run_fits() -> None:
    assert json.loads((ROOT / "reports" / "example" / "fits.json").read_text()) == json.loads(
        (RUN / "fits.json").read_text())


def test_readme_describes_the_default_run() -> None:
    text = (ROOT / "README.md").read_text()
    steps, every = DEFAULT.train["steps"], DEFAULT.train["checkpoint_every"]
    first = text.split("**What you get:**")[0]
    assert f"({steps} GRPO steps, {steps // every} checkpoints and the base evaluated" in first
    assert not re.search(r"\b100 GRPO steps\b|\b21 checkpoints\b", first)


@pytest.mark.parametrize("name", ["smoke"])
def test_smoke_stays_a_miniature(name: str) -> None:
    """CI's preset: under 1% of the default's sampled completions and under 10% of its evaluated samples."""
    small, big = preset(name), DEFAULT

    def completions(spec) -> int:
        t = spec.train
        return t["steps"] * t["prompts_per_step"] * t["group_size"]

    def eval_samples(spec) -> int:
        return (spec.train["steps"] // spec.train["checkpoint_every"] + 1) * spec.eval["n_prompts"] * spec.eval["n_samples"]

    assert completions(small) < 0.01 * completions(big)
    assert eval_samples(small) < 0.1 * eval_samples(big)
