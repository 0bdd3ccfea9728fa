"""Engines (issue 17): the GRPOConfig -> TRL mapping, the TRL engine's metric definitions against the native
loop's, one-line errors for missing extras, and a 2-process TRL run whose directory `ceiling eval` and
`ceiling fit` accept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ceiling.engines import EXTRAS, check_engine, require, train_with
from ceiling.errors import CeilingError
from ceiling.rl.grpo import GRPOConfig

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(**kw) -> GRPOConfig:
    settings = dict(base="tiny-medium", tasks="tiny-rl", steps=3, prompts_per_step=4, group_size=4,
                    max_new_tokens=8, lr=3e-4, checkpoint_every=2, seed=0, num_threads=1, device="cpu",
                    out="unused")
    settings.update(kw)
    return GRPOConfig(**settings)


# ------------------------------------------------------------------------------------- the mapping
def test_trl_settings_map_batch_and_algorithm():
    from ceiling.engines.trl import trl_settings

    cfg = tiny_cfg(prompts_per_step=8, group_size=4, num_minibatches=2, updates_per_batch=3, warmup_steps=2,
                   loss_type="dr_grpo", epsilon_high=0.28, beta=0.04, steps=10, checkpoint_every=5)
    s = trl_settings(cfg, world_size=2, output_dir="x")
    # 32 completions per step, 2 minibatches of 16 over 2 processes -> 8 per process per optimizer step
    assert s["per_device_train_batch_size"] == 8 and s["gradient_accumulation_steps"] == 1
    assert s["steps_per_generation"] == 2 and s["num_iterations"] == 3 and s["num_generations"] == 4
    u = 2 * 3  # optimizer steps per step of ours
    assert s["max_steps"] == 11 * u and s["save_steps"] == 5 * u and s["warmup_steps"] == 2 * u
    assert s["loss_type"] == "dr_grpo" and s["scale_rewards"] == "none"  # dr_grpo's default std scaling
    assert (s["epsilon"], s["epsilon_high"], s["beta"]) == (0.2, 0.28, 0.04)
    assert s["use_cpu"] is True and s["shuffle_dataset"] is False and s["max_completion_length"] == 8


def test_trl_settings_micro_batches_become_accumulation():
    from ceiling.engines.trl import trl_settings

    s = trl_settings(tiny_cfg(prompts_per_step=8, group_size=8, micro_batch_size=16), world_size=1, output_dir="x")
    assert s["per_device_train_batch_size"] == 16 and s["gradient_accumulation_steps"] == 4
    assert s["steps_per_generation"] == 4  # one generated batch = one optimizer step of 4 accumulated micro-batches


@pytest.mark.parametrize("kw, field", [({"entropy_coef": 0.01}, "entropy_coef"), ({"random_reward": True}, "random_reward"),
                                       ({"sft_examples_per_step": 4}, "sft_examples_per_step"),
                                       ({"beta": 0.1, "kl_estimator": "k1"}, "kl_estimator"),
                                       ({"num_minibatches": 3}, "num_minibatches")])
def test_trl_settings_refuse_what_does_not_map(kw, field):
    from ceiling.engines.trl import trl_settings

    with pytest.raises(CeilingError, match=field):
        trl_settings(tiny_cfg(**kw), world_size=2, output_dir="x")


def test_missing_extra_is_one_line_naming_it():
    with pytest.raises(CeilingError) as err:
        require("vllm_not_installed_module_xyz", "vllm")
    text = str(err.value)
    assert "\n" not in text and "vllm engine" in text and 'pip install -e ".[' in text
    assert EXTRAS["trl"] == "trl" and EXTRAS["ray"] == "ray" and EXTRAS["vllm"] == "vllm"
    with pytest.raises(CeilingError, match="known: native, trl"):
        check_engine("deepspeed", ("native", "trl"), "train")
    with pytest.raises(CeilingError, match="--engine trl"):
        train_with("native", tiny_cfg(), processes=2)


# ---------------------------------------------------------------- metric definitions = the native loop's
def test_trl_rollout_metrics_equal_native_definitions():
    """The engine reduces per-completion sums gathered from all processes; the result must equal the native
    loop's kl_summary / masked means over the padded [B, T] tensors."""
    import torch

    from ceiling.engines.trl import rollout_metrics
    from ceiling.rl.grpo import kl_k1, kl_k3, kl_summary, masked_mean

    g = torch.Generator().manual_seed(0)
    b, t, group = 12, 7, 4
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    logp = -torch.rand(b, t, generator=g) * 3 * mask
    ref = -torch.rand(b, t, generator=g) * 3 * mask
    ent = torch.rand(b, t, generator=g) * mask
    rewards = (torch.rand(b, generator=g) < 0.5).float()
    rewards[:group] = 1.0  # one group with zero std
    truncated = (lengths == t).float()
    prompt_tokens = torch.full((b,), 5.0)
    rows = torch.stack([(kl_k1(logp, ref) * mask).sum(1), (kl_k3(logp, ref) * mask).sum(1), mask.sum(1),
                        (ent * mask).sum(1), truncated, prompt_tokens], dim=1)
    got = rollout_metrics(rows, rewards, ["sort"] * b, group)
    want = kl_summary(logp, ref, mask)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert got["policy/entropy"] == pytest.approx(masked_mean(ent, mask), rel=1e-6)
    assert got["length/mean"] == pytest.approx(float(lengths.float().mean()))
    assert got["length/max"] == float(lengths.max())
    assert got["reward/mean"] == pytest.approx(float(rewards.mean()))
    assert got["reward/std"] == pytest.approx(float(rewards.std(unbiased=False)))
    by_group = rewards.reshape(-1, group).std(dim=1, unbiased=False) == 0
    assert got["reward/zero_std_frac"] == pytest.approx(float(by_group.float().mean()))
    assert got["tokens/prompt"] == 5.0 * b and got["tokens/completion"] == float(lengths.sum())


# ------------------------------------------------------------------------- a real 2-process TRL run
def _launch(config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "ignore"}
    from ceiling.engines.trl import launch_command

    cmd = launch_command(config, resume="--resume" in extra, processes=2)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # two `accelerate launch` runs of 2 processes that each import TRL (~12 s each on 2 cores)
def test_trl_engine_two_processes_writes_a_run_dir_eval_and_fit_accept(tmp_path):
    pytest.importorskip("trl", reason='the trl extra is not installed (pip install -e ".[trl]")')
    from ceiling.cli import main as cli
    from ceiling.engines.trl import step_rows
    from ceiling.models import count_parameters, encode_text, load
    from ceiling.rl.checkpoint import list_checkpoints, read_state
    from ceiling.rl.grpo import step_flops

    run = tmp_path / "trl-run"
    cfg = tiny_cfg(out=str(run))
    config = tmp_path / "train.json"
    config.write_text(json.dumps(cfg.to_dict()))
    done = _launch(config)
    assert done.returncode == 0, done.stderr[-3000:]

    engine = json.loads((run / "engine.json").read_text())
    assert engine["engine"] == "trl" and engine["processes"] == 2 and "MULTI_CPU" in engine["distributed_type"]
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()  # the contract: our config, as is
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2, 3]
    keys = {"reward/mean", "reward/std", "reward/zero_std_frac", "kl/policy_base_k1_token", "kl/policy_base_k3_token",
            "kl/policy_base_k1_seq", "kl/policy_base_k3_seq", "policy/entropy", "length/mean", "length/max",
            "length/truncated_frac", "tokens/prompt", "tokens/completion", "compute/flops", "compute/wall_seconds"}
    assert all(keys <= set(m) for m in lines)
    assert all("optim/grad_norm" in m for m in lines[:3]) and "optim/grad_norm" not in lines[3]
    # KL to the base is measured at beta 0: exactly 0 for the base itself (step 0), positive once it moved
    assert lines[0]["kl/policy_base_k3_seq"] == 0.0 and lines[0]["kl/policy_base_k1_token"] == 0.0
    assert max(m["kl/policy_base_k3_seq"] for m in lines[1:]) > 0
    assert all(0 < m["policy/entropy"] < 5 for m in lines)
    # the problems of every step are the native loop's (prompt tokens: group_size x the step's prompt lengths)
    base = load("tiny-medium", device="cpu")
    rows = step_rows(cfg, cfg.steps + 1, chat=False, bos=base.tokenizer.bos_token)
    for m in lines:
        step_prompts = rows[m["step"] * cfg.prompts_per_step:(m["step"] + 1) * cfg.prompts_per_step]
        assert m["tokens/prompt"] == cfg.group_size * sum(len(encode_text(base.tokenizer, r["prompt"])) for r in step_prompts)
    # compute: the native loop's 6N/2N accounting, cumulative
    n = count_parameters(base.model, non_embedding=True)
    for prev, cur in zip(lines, lines[1:]):
        want = step_flops(n, prev["tokens/prompt"], prev["tokens/completion"], cfg, separate_old_forward=False,
                          trained=True)
        assert cur["compute/flops"] - prev["compute/flops"] == pytest.approx(want, rel=1e-12)
    # checkpoints: HF folders + our state, loadable by ceiling.models, step_3 moved away from the base
    found = list_checkpoints(run)
    assert [s for s, _ in found] == [0, 2, 3]
    assert read_state(found[-1][1])["flops"] == pytest.approx(lines[3]["compute/flops"])
    import torch

    last = load(str(found[-1][1]), device="cpu")
    assert not torch.equal(last.model.get_input_embeddings().weight, base.model.get_input_embeddings().weight)

    # resumable: extend to 4 steps; line 3 is measured again from the restored state, identically
    cfg4 = tiny_cfg(out=str(run), steps=4)
    config.write_text(json.dumps(cfg4.to_dict()))
    done = _launch(config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    again = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [0, 1, 2, 3, 4]
    for key in ("reward/mean", "kl/policy_base_k3_seq", "policy/entropy", "tokens/completion", "compute/flops"):
        assert again[3][key] == pytest.approx(lines[3][key], rel=1e-6), key
    assert [s for s, _ in list_checkpoints(run)] == [0, 2, 3, 4]

    # `ceiling eval` and `ceiling fit` take the directory unchanged
    assert cli(["eval", "--run", str(run), "--n-samples", "4", "--n-prompts", "3", "--score-samples", "2",
                "--n-boot", "20", "--nll-documents", "4"]) == 0
    import pandas as pd

    ev = pd.read_csv(run / "eval.csv")
    assert sorted(ev["step"].unique()) == [0, 2, 3, 4]
    assert ev.loc[ev["step"] == 4, "compute"].iloc[0] == pytest.approx(again[4]["compute/flops"])
    assert cli(["fit", str(run)]) == 0
    fits = json.loads((run / "fits.json").read_text())
    assert {"ceiling", "entropy_law", "collapse"} <= set(fits)
