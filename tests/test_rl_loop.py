"""The RL loop end to end on a tiny model: metrics, checkpoints, exact resume, transformers loading, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from ceiling.cli import main as cli_main
from ceiling.errors import CeilingError
from ceiling.io import read_jsonl
from ceiling.models import build_char_tokenizer, save, tiny_config
from ceiling.rl import GRPOConfig, latest_checkpoint, list_checkpoints, train

# Fields that measure the machine, not the computation: excluded from identity checks.
CLOCK_KEYS = ("compute/wall_seconds", "speed/seconds_per_step", "speed/completions_per_s")

REQUIRED_KEYS = [
    "step", "reward/mean", "reward/std", "reward/zero_std_frac", "kl/policy_base_k1_token",
    "kl/policy_base_k3_token", "kl/policy_base_k1_seq", "kl/policy_base_k3_seq", "policy/entropy",
    "length/mean", "length/max", "length/truncated_frac", "tokens/prompt", "tokens/completion",
    "compute/flops", "compute/wall_seconds", "speed/completions_per_s",
]
UPDATE_KEYS = ["clip/low_frac", "clip/high_frac", "optim/grad_norm", "optim/lr", "loss/policy", "loss/kl",
               "loss/entropy"]


@pytest.fixture(scope="module")
def random_base(tmp_path_factory) -> Path:
    """A randomly initialised tiny Llama with the char tokenizer (small, so every step is fast)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(hidden_size=64, num_layers=2, num_heads=2))
    return save(model, build_char_tokenizer(), tmp_path_factory.mktemp("bases") / "random")


def small_config(base: Path, out: Path, **over) -> GRPOConfig:
    settings = dict(base=str(base), tasks="smoke", steps=4, prompts_per_step=3, group_size=4, max_new_tokens=6,
                    lr=3e-3, beta=0.04, checkpoint_every=2, out=str(out), log=False, num_threads=1)
    settings.update(over)
    return GRPOConfig(**settings)


def without_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in CLOCK_KEYS} for r in rows]


def test_resume_is_identical_to_an_uninterrupted_run(random_base, tmp_path):
    # several PPO epochs and minibatches: the optimizer state and old-policy log-probs matter on resume
    # random rewards: a random model never answers right, and the updates must move it
    over = dict(updates_per_batch=2, num_minibatches=2, warmup_steps=2, random_reward=True)
    whole = read_jsonl(train(small_config(random_base, tmp_path / "whole", **over)) / "metrics.jsonl")
    assert [r["step"] for r in whole] == [0, 1, 2, 3, 4]
    for key in REQUIRED_KEYS:
        assert all(key in r and r[key] is not None for r in whole), key
    for key in UPDATE_KEYS:
        assert all(key in r for r in whole[:-1]) and key not in whole[-1], key
    assert whole[0]["compute/flops"] == 0 and all(a["compute/flops"] < b["compute/flops"] for a, b in zip(whole, whole[1:]))
    assert whole[0]["kl/policy_base_k3_seq"] == pytest.approx(0.0, abs=1e-6)  # theta_0 is the base
    assert whole[-1]["kl/policy_base_k3_seq"] > 0
    assert [r["optim/lr"] for r in whole[:-1]] == pytest.approx([1.5e-3, 3e-3, 3e-3, 3e-3])
    assert [s for s, _ in list_checkpoints(tmp_path / "whole")] == [0, 2, 4]

    # stop after step 2, leave crash debris behind, then resume to step 4
    part = tmp_path / "part"
    train(small_config(random_base, part, **{**over, "steps": 2}))
    (part / "checkpoints" / ".step_000003.x.tmp").mkdir()  # an unfinished checkpoint write
    (part / "checkpoints" / "step_000003").mkdir()  # a folder without trainer state is no checkpoint
    with open(part / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "reward/me')  # a crash mid-line
    assert latest_checkpoint(part)[0] == 2
    train(small_config(random_base, part, **over), resume=True)
    resumed = read_jsonl(part / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert without_clock(resumed) == without_clock(whole)
    assert json.loads((part / "config.json").read_text())["steps"] == 4

    # a checkpoint is a Hugging Face model folder; the last one equals the uninterrupted run's
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / "checkpoints" / "step_000004")
    b = AutoModelForCausalLM.from_pretrained(part / "checkpoints" / "step_000004")
    base = AutoModelForCausalLM.from_pretrained(random_base)
    tok = AutoTokenizer.from_pretrained(part / "checkpoints" / "step_000004")
    assert tok.decode(tok("12+3=")["input_ids"]) == "12+3="
    for (name, pa), pb, p0 in zip(a.named_parameters(), b.parameters(), base.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, p0) for pa, p0 in zip(a.parameters(), base.parameters()))
    state = json.loads((part / "checkpoints" / "step_000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and isinstance(state["rng"]["torch"], list)
    assert not list((part / "checkpoints").glob("*.pt")) and not list((part / "checkpoints").rglob("*.bin"))


def test_resume_refuses_other_settings_and_fresh_runs_refuse_used_dirs(random_base, tmp_path):
    out = tmp_path / "run"
    train(small_config(random_base, out, steps=1, checkpoint_every=1))
    with pytest.raises(CeilingError, match=r"field 'beta'.*0\.04.*0\.1"):
        train(small_config(random_base, out, steps=2, beta=0.1), resume=True)
    with pytest.raises(CeilingError, match="already holds a run"):
        train(small_config(random_base, out, steps=2))
    # the CLI reads the stored settings on --resume; a bad flag value is a one-line error, exit status 2
    assert cli_main(["train", "--out", str(out), "--steps", "2", "--resume", "--no-log"]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert cli_main(["train", "--out", str(tmp_path / "x"), "--loss-type", "ppo"]) == 2


def test_cli_config_file_and_loss_variants(random_base, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"base": str(random_base), "tasks": "smoke", "steps": 1, "prompts_per_step": 2,
                               "group_size": 3, "max_new_tokens": 4, "loss_type": "dapo", "epsilon_high": 0.28,
                               "entropy_coef": 0.01, "kl_estimator": "k1", "num_threads": 1,
                               "out": str(tmp_path / "dapo")}))
    assert cli_main(["train", "--config", str(cfg), "--random-reward", "--micro-batch-size", "2"]) == 0
    rows = read_jsonl(tmp_path / "dapo" / "metrics.jsonl")
    assert "step     1/1" in capsys.readouterr().err  # one progress line per step
    stored = json.loads((tmp_path / "dapo" / "config.json").read_text())
    assert stored["loss_type"] == "dapo" and stored["random_reward"] is True and stored["micro_batch_size"] == 2
    assert "reward/train_mean" in rows[0] and math.isfinite(rows[0]["loss/entropy"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"group_size": "eight"}')
    assert cli_main(["train", "--config", str(bad)]) == 2
    assert "bad.json: field 'group_size'" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_run_bf16(random_base, tmp_path):
    out = train(small_config(random_base, tmp_path / "gpu", device="cuda", dtype="bfloat16", steps=2))
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["policy/entropy"]) for r in rows)
    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "step_000002")


def test_on_policy_update_returns_the_policys_statistics(random_base, tmp_path):
    """One epoch of one minibatch: `update` returns the log-probs and entropy its training forward saw, equal to
    a separate scoring pass of the policy before the update; with several minibatches the caller must pass
    `old_logp` and gets metrics only."""
    from ceiling.models import load
    from ceiling.rl.grpo import roll_out, score_all, update
    from ceiling.rl.optim import AdamW
    from ceiling.tasks import TaskSet

    cfg = small_config(random_base, tmp_path / "u", random_reward=True)
    cpu = torch.device("cpu")
    policy = load(str(random_base), device=cpu, dtype=torch.float32)
    batch = roll_out(policy, TaskSet.parse(cfg.tasks), cfg, 0, cpu)
    ref_logp, _ = score_all(policy.model, batch, cfg, cpu, entropy=False)
    logp, ent = score_all(policy.model, batch, cfg, cpu, entropy=True)
    result = update(policy.model, AdamW(policy.model.parameters(), lr=cfg.lr), batch, ref_logp, None, cfg, 0, cpu)
    torch.testing.assert_close(result.logp, logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.entropy, ent, atol=1e-5, rtol=1e-5)
    assert set(UPDATE_KEYS) <= set(result.metrics) and result.metrics["optim/updates"] == 1
    moved, _ = score_all(policy.model, batch, cfg, cpu, entropy=False)
    assert not torch.equal(moved, logp)  # the update changed the policy
    two = small_config(random_base, tmp_path / "u2", num_minibatches=2)
    with pytest.raises(ValueError, match="old_logp"):
        update(policy.model, AdamW(policy.model.parameters(), lr=two.lr), batch, ref_logp, None, two, 0, cpu)
    result = update(policy.model, AdamW(policy.model.parameters(), lr=two.lr), batch, ref_logp, moved, two, 0, cpu)
    assert result.logp is None and result.entropy is None and result.metrics["optim/updates"] == 2
