"""Smoke runs of the benchmark scripts' code paths (tiny settings; TRL parts skip when trl is absent)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import bench_loop  # noqa: E402

HAS_TRL = importlib.util.find_spec("trl") is not None


# ---- _common ---------------------------------------------------------------------------------------

def test_format_table_aligns_columns_and_rejects_ragged_rows():
    text = _common.format_table(["figure", "ours", "trl"], [["seconds / step", 0.5, 2.0], ["tokens", 12345.0, None]])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # header, rule, two rows, equal widths
    assert lines[2].endswith("2.00") and "12,345" in lines[3] and lines[3].endswith("-")
    md = _common.format_table(["a", "b"], [["x", 1.0]], markdown=True).splitlines()
    assert md[0].startswith("| a") and md[1].endswith(":|") and md[2] == "| x | 1.00 |"
    with pytest.raises(ValueError):
        _common.format_table(["a", "b"], [["only one"]])


def test_ratio_and_fmt():
    assert _common.ratio(3.0, 1.5) == 2.0
    assert _common.ratio(1.0, 0.0) is None and _common.ratio(None, 1.0) is None
    assert _common.fmt(None) == "-" and _common.fmt(0.123456) == "0.12" and _common.fmt(7) == "7"


def test_run_child_reports_that_childs_own_peak_memory_and_status():
    big = _common.run_child([sys.executable, "-c", "b = bytearray(200 * 2**20); import sys; print('hi'); sys.exit(3)"])
    small = _common.run_child([sys.executable, "-c", "pass"])
    assert big.returncode == 3 and big.stdout.strip() == "hi"
    assert big.peak_rss_mib >= 200 and small.peak_rss_mib < 100  # per child, not the max over all children
    assert small.returncode == 0 and small.wall_s > 0
    with pytest.raises(RuntimeError, match="status 3"):
        big.check("big")


def test_run_child_kills_past_its_timeout():
    slow = _common.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert slow.returncode == -9 and slow.wall_s < 20


def test_memory_sampler_sees_an_allocation():
    with _common.MemorySampler("RssAnon", interval=0.005) as mem:
        before = _common.proc_status_bytes("RssAnon") or 0
        block = torch.ones(100 * 2**20 // 4)  # 100 MiB, touched
        assert float(block[-1]) == 1.0
    if before == 0:
        pytest.skip("no /proc/self/status on this platform")
    assert mem.peak_bytes >= before + 90 * 2**20


def test_machine_description_and_matmul_peak():
    info = _common.machine(measure=False)
    assert info["cpu"] and info["usable_cores"] >= 1 and info["versions"]["torch"] == torch.__version__
    gflops = _common.matmul_gflops(torch.float32, n=128, min_seconds=0.05)
    assert math.isfinite(gflops) and gflops > 0.01
    text = _common.describe_machine({**info, "fp32_matmul_gflops": gflops, "bf16_matmul_gflops": 1.0})
    assert "GFLOP/s" in text and info["cpu"] in text


# ---- bench_loop --------------------------------------------------------------------------------------

def tiny_spec(path: Path) -> bench_loop.LoopSpec:
    return bench_loop.LoopSpec(model="tiny-test", path=str(path), prompts_per_step=2, group_size=2,
                               max_new_tokens=4, warmup=1, steps=1, threads=1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench_loop.build_tiny_standin(tmp_path_factory.mktemp("bench") / "tiny")


def test_both_sides_run_the_same_prompts(tiny_model: Path):
    spec = tiny_spec(tiny_model)
    ours = bench_loop.run_ours(spec)
    assert len(ours) == spec.steps and ours[0].completions == spec.batch
    assert ours[0].seconds > 0 and spec.batch <= ours[0].completion_tokens <= spec.batch * spec.max_new_tokens
    figures = bench_loop.summarise(ours)
    assert figures["completions_per_s"] == pytest.approx(spec.batch / ours[0].seconds)
    if not HAS_TRL:
        pytest.skip("trl is not installed: the TRL side is not exercised")
    trl, extra = bench_loop.run_trl(spec)
    assert len(trl) == spec.steps and extra["trl_settings"]["generation_batch_size"] == spec.batch
    assert extra["trl_settings"]["gradient_checkpointing"] is False and extra["trl_settings"]["num_iterations"] == 1
    # same problems, same formatting, same tokenizer: the prompt tokens of the timed step agree exactly
    assert trl[0].prompt_tokens == ours[0].prompt_tokens > 0
    assert spec.batch <= trl[0].completion_tokens <= spec.batch * spec.max_new_tokens


def test_trl_rows_follow_our_problem_order():
    spec = bench_loop.LoopSpec(model="x", path="unused", prompts_per_step=3, warmup=1, steps=1)
    problems = [p for step in bench_loop.step_problems(spec) for p in step]
    rows = bench_loop.trl_rows(spec, chat=False, bos="<bos>")
    assert [r["prompt"] for r in rows] == ["<bos>" + p.prompt for p in problems] and len(rows) == 6
    chat_rows = bench_loop.trl_rows(spec, chat=True, bos="")
    assert chat_rows[0]["prompt"] == [{"role": "user", "content": problems[0].prompt}]
    assert [r["answer"] for r in chat_rows] == [p.answer for p in problems]


def test_compare_and_report_judge_targets():
    spec = bench_loop.LoopSpec(model="tiny-medium", path="unused", note="synthetic")
    ours = {"seconds_per_step": 1.0, "completions_per_s": 64.0, "tokens_per_s": 2000.0, "peak_rss_mib": 400.0,
            "peak_anon_mib": 300.0, "import_rss_mib": 380.0, "completion_tokens_per_step": 2000.0,
            "prompt_tokens_per_step": 400.0, "reward_mean": 0.1}
    trl = {**ours, "seconds_per_step": 4.0, "completions_per_s": 16.0, "tokens_per_s": 500.0, "peak_rss_mib": 700.0}
    cmp = bench_loop.compare(ours, trl, "tiny")
    assert cmp["ratios"]["completions_per_s"] == 4.0 and cmp["targets"]["completions_per_s"]["met"]
    assert cmp["ratios"]["peak_rss_mib"] == pytest.approx(400 / 700) and not cmp["targets"]["peak_rss_mib"]["met"]
    text = bench_loop.report(spec, {"ours": ours, "trl": trl}, cmp, _common.machine(measure=False))
    assert "4.00x -> met" in text and "MISSED" in text and "WARNING" not in text
    mismatch = bench_loop.report(spec, {"ours": ours, "trl": {**trl, "prompt_tokens_per_step": 410.0}}, cmp,
                                 _common.machine(measure=False))
    assert "WARNING: prompt tokens differ" in mismatch


def test_main_runs_a_side_in_a_child_and_writes_json(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "loop.json"
    rc = bench_loop.main(["--model", str(tiny_model), "--sides", "ours", "--prompts-per-step", "2",
                          "--group-size", "2", "--max-new-tokens", "4", "--warmup", "0", "--steps", "1",
                          "--threads", "1", "--no-matmul", "--json", str(out)])
    data = json.loads(out.read_text())
    ours = data["sides"]["ours"]
    assert rc == 0 and data["comparison"] is None and data["spec"]["group_size"] == 2
    assert ours["peak_rss_mib"] >= ours["import_rss_mib"] > 50 and ours["completions_per_s"] > 0
