"""Splits: RL draws only from the train split, evaluation only from the test split, and the two share no problem.

The RL check reads what the loop really did: with a task file whose train prompts are 3 characters and test
prompts 9, the prompt tokens each step logs say which split its problems came from.
"""
from __future__ import annotations

import pytest
import torch

from ceiling.evaluate import EvalConfig, eval_problems
from ceiling.io import read_jsonl
from ceiling.models import build_char_tokenizer, save, tiny_config
from ceiling.rl import GRPOConfig, train
from ceiling.tasks import TaskSet, load_jsonl_tasks, split_of

from test_compute import TEST_PROMPT_CHARS, TRAIN_PROMPT_CHARS, write_tasks


def test_rl_draws_only_train_problems(tmp_path):
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    base = save(LlamaForCausalLM(tiny_config(hidden_size=16, num_layers=1, num_heads=2)), build_char_tokenizer(),
                tmp_path / "base")
    tasks = write_tasks(tmp_path / "tasks.jsonl")
    cfg = GRPOConfig(base=str(base), tasks=str(tasks), steps=4, prompts_per_step=4, group_size=2, max_new_tokens=1,
                     checkpoint_every=100, out=str(tmp_path / "run"), log=False, num_threads=1)
    rows = read_jsonl(train(cfg) / "metrics.jsonl")
    assert len(rows) == 5
    for r in rows:  # 4 prompts x 2 completions, each <bos> + a 3-character train prompt (a test prompt has 9)
        assert r["tokens/prompt"] == 4 * 2 * (1 + TRAIN_PROMPT_CHARS) != 4 * 2 * (1 + TEST_PROMPT_CHARS)


def test_evaluation_draws_only_test_problems(tmp_path):
    taskset = TaskSet.parse(str(write_tasks(tmp_path / "tasks.jsonl")))
    probs = eval_problems(taskset, EvalConfig(n_prompts=25, n_samples=2)).problems
    assert len(probs) == 25 and {p.split for p in probs} == {"test"}
    assert all(p.prompt.startswith("test-") for p in probs)
    for preset in ("default", "tiny-rl"):
        ep = eval_problems(TaskSet.preset(preset), EvalConfig(n_prompts=20, n_samples=2))
        for p, kind in zip(ep.problems, ep.kinds):
            assert p.split == "test" and ep.taskset.find(p.prompt).split == "test", p
        assert set(ep.kinds) == {"verified", "unverified"}


@pytest.mark.parametrize("preset", ["default", "tiny-rl"])
def test_train_and_test_share_no_problem(preset):
    taskset = TaskSet.preset(preset)
    for fam in taskset.verified + taskset.unverified:
        train_p = fam.generate(300, seed=1, split="train")
        test_p = fam.generate(300, seed=1, split="test")
        assert {p.split for p in train_p} == {"train"} and {p.split for p in test_p} == {"test"}
        assert not {p.prompt for p in train_p} & {p.prompt for p in test_p}, fam.name
        assert not {p.id for p in train_p} & {p.id for p in test_p}, fam.name
        for p in train_p[:50] + test_p[:50]:  # the split is the problem's, whoever parses the prompt back
            assert fam.parse_prompt(p.prompt).split == p.split
    rl = taskset.sample(200, seed=5, split="train", which="verified")
    held_out = {p.prompt for p in eval_problems(taskset, EvalConfig(n_prompts=50, n_samples=2)).problems}
    assert not {p.prompt for p in rl} & held_out


def test_user_task_files_split_by_hash_and_keep_explicit_splits(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(f'{{"prompt": "p{i}?", "answer": "{i}"}}\n' for i in range(200)))
    fam = load_jsonl_tasks(path)
    by_split = {s: {p.prompt for p in fam.problems if p.split == s} for s in ("train", "test")}
    assert by_split["train"] and by_split["test"] and not by_split["train"] & by_split["test"]
    for p in fam.problems:
        assert p.split == split_of(fam.name, p.prompt)
    assert {p.prompt for p in fam.generate(40, seed=0, split="test")} <= by_split["test"]
    assert {p.prompt for p in fam.generate(40, seed=0, split="train")} <= by_split["train"]
