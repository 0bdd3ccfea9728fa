"""The `smollm2` preset (reports/smollm2): its task files, their generator and the run's shape."""
import runpy
from pathlib import Path

import pytest

from ceiling.pipeline import preset
from ceiling.tasks import TaskSet

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "data" / "tasks"


def test_smollm2_preset_shape():
    train = preset("smollm2").train
    assert train["base"] == "smollm2" and train["steps"] >= 150
    assert 10 <= train["steps"] // train["checkpoint_every"] <= 16  # checkpoints evaluated
    assert train["num_threads"] == 1


def test_smollm2_task_files_parse_from_the_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    ts = TaskSet.parse(preset("smollm2").train["tasks"])
    assert ts.names("verified") == ["smollm2_mul"] and ts.names("unverified") == ["smollm2_add"]
    mul = ts.family("smollm2_mul")
    assert len(mul.problems) == 8 * 18 and sum(p.split == "test" for p in mul.problems) == 72
    by_prompt = {p.prompt: p for p in mul.problems}
    p = by_prompt["What is 7 * 13? Answer with just the number."]
    assert p.answer == "91" and p.split == "test"
    assert mul.verify(p, "7 * 13 = 91") == 1.0 and mul.verify(p, "91.0") == 1.0 and mul.verify(p, "93") == 0.0
    add = ts.family("smollm2_add")
    assert len(add.problems) == 3000
    first = add.problems[0]
    a, b = (int(x) for x in first.prompt.removeprefix("What is ").split("?")[0].split(" + "))
    assert 10 <= a <= 99 and 10 <= b <= 99 and first.answer == str(a + b)


def test_smollm2_task_files_regenerate_byte_for_byte(tmp_path):
    runpy.run_path(str(TASKS / "make_smollm2_tasks.py"))["main"](tmp_path)
    for name in ("smollm2_mul.jsonl", "smollm2_add.jsonl"):
        assert (tmp_path / name).read_bytes() == (TASKS / name).read_bytes(), name
