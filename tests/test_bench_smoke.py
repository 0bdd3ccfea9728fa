"""Smoke runs of the benchmark scripts' code paths (tiny settings; TRL parts skip when trl is absent)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common
import bench_loop

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

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench_loop.build_tiny_standin(tmp_path_factory.mktemp("bench") / "tiny")


def run_child_side(side: str, spec: bench_loop.LoopSpec, tmp_path: Path) -> dict:
    """One side through the child's entry point (in this process: the spawn itself is tested above)."""
    spec_file, result_file = tmp_path / "spec.json", tmp_path / f"{side}.json"
    spec_file.write_text(json.dumps(dataclasses.asdict(spec)))
    assert bench_loop.child_main(side, spec_file, result_file) == 0
    return json.loads(result_file.read_text())


def test_both_sides_run_and_see_the_same_prompts(tiny_model: Path, tmp_path: Path):
    spec = bench_loop.LoopSpec(model="tiny-test", path=str(tiny_model), prompts_per_step=2, group_size=2,
                               max_new_tokens=4, warmup=0, steps=1, threads=1)
    ours = run_child_side("ours", spec, tmp_path)
    assert ours["timed_steps"] == 1 and len(ours["steps"]) == 1 and ours["peak_anon_mib"] > 0
    assert ours["self_peak_rss_mib"] >= ours["import_rss_mib"] > 50
    assert ours["completions_per_s"] == pytest.approx(spec.batch / ours["seconds_per_step"])
    assert spec.batch <= ours["completion_tokens_per_step"] <= spec.batch * spec.max_new_tokens
    if not HAS_TRL:
        pytest.skip("trl is not installed: the TRL side is not exercised")
    trl = run_child_side("trl", spec, tmp_path)
    settings = trl["trl_settings"]
    assert trl["timed_steps"] == 1 and settings["use_cpu"] and settings["num_iterations"] == 1
    assert settings["generation_batch_size"] == spec.batch == settings["per_device_train_batch_size"]
    assert settings["gradient_checkpointing"] is False and settings["steps_per_generation"] == 1
    # same problems, same formatting, same tokenizer: the prompt tokens of the step agree exactly
    assert trl["prompt_tokens_per_step"] == ours["prompt_tokens_per_step"] > 0
    assert spec.batch <= trl["completion_tokens_per_step"] <= spec.batch * spec.max_new_tokens


def test_command_line_defaults_per_model():
    tiny = bench_loop.make_spec(bench_loop.parse_args(["--model", "tiny-medium"]), "p", "")
    smol = bench_loop.make_spec(bench_loop.parse_args(["--model", "smollm2", "--steps", "2"]), "p", "")
    assert (tiny.warmup, tiny.steps, tiny.max_new_tokens, tiny.batch, tiny.beta) == (2, 5, 32, 64, 0.04)
    assert (smol.warmup, smol.steps, smol.max_new_tokens, smol.dtype) == (1, 2, 64, "float32")
    assert bench_loop.model_kind(smol) == "smollm2" and bench_loop.model_kind(tiny) == "tiny"
    with pytest.raises(SystemExit):
        bench_loop.main(["--sides", "ours,vllm"])


def test_summarise_divides_work_by_time():
    records = [bench_loop.StepRecord(seconds=2.0, completions=64, completion_tokens=640.0, prompt_tokens=100.0, reward=0.5),
               bench_loop.StepRecord(seconds=6.0, completions=64, completion_tokens=960.0, prompt_tokens=100.0, reward=0.0)]
    fig = bench_loop.summarise(records)
    assert fig["seconds_per_step"] == 4.0 and fig["completions_per_s"] == 16.0 and fig["tokens_per_s"] == 200.0
    assert fig["completion_tokens_per_step"] == 800.0 and fig["reward_mean"] == 0.25
    assert fig["fastest_step_s"] == 2.0 and fig["slowest_step_s"] == 6.0 and fig["best_completions_per_s"] == 32.0


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


def test_gguf_marker_is_dropped_in_a_linked_copy(tmp_path: Path):
    src = tmp_path / "cache"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    out = bench_loop.without_gguf_marker(src, tmp_path / "plain")
    assert out == tmp_path / "plain" and (out / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((out / "config.json").read_text()) == {"model_type": "llama"}
    assert "quantization_config" in json.loads((src / "config.json").read_text())  # the cache is untouched
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert bench_loop.without_gguf_marker(clean, tmp_path / "unused") == clean
