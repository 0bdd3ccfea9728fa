"""`compute/flops` of the RL loop against a count by hand on a tiny configuration.

Compute is the x-axis of every ceiling fit and of `ceiling predict --at`, so the count is checked number by
number: the parameters N from the model's shapes, prompt tokens from the prompts' lengths, generated tokens
(one per completion: max_new_tokens = 1), and FLOPs per step = 2N per token for generation, 2N for the
reference (base) forward, 2N for a separate old-policy forward when one is needed, 6N per PPO epoch of training.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ceiling.io import read_jsonl
from ceiling.models import build_char_tokenizer, save, tiny_config
from ceiling.rl import GRPOConfig, train

HIDDEN, LAYERS, HEADS, KV_HEADS, MLP = 32, 2, 4, 2, 48
TRAIN_PROMPT_CHARS, TEST_PROMPT_CHARS = 3, 9


def hand_count_parameters() -> int:
    """Non-embedding parameters of the tiny Llama above, from its shapes (tied embeddings left out)."""
    head_dim = HIDDEN // HEADS
    attention = HIDDEN * HIDDEN * 2 + HIDDEN * (KV_HEADS * head_dim) * 2  # q and o; k and v (grouped)
    mlp = 3 * HIDDEN * MLP  # gate, up, down
    norms = 2 * HIDDEN
    return LAYERS * (attention + mlp + norms) + HIDDEN  # + the final norm


def write_tasks(path: Path) -> Path:
    """A task file whose train prompts are 3 characters long and whose test prompts are 9 characters long."""
    lines = [{"prompt": f"q{i}=", "answer": str(i % 10), "split": "train"} for i in range(10)]
    lines += [{"prompt": f"test-q{i:02d}=", "answer": str(i % 10), "split": "test"} for i in range(10)]
    assert {len(x["prompt"]) for x in lines if x["split"] == "train"} == {TRAIN_PROMPT_CHARS}
    assert {len(x["prompt"]) for x in lines if x["split"] == "test"} == {TEST_PROMPT_CHARS}
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compute")
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    cfg = tiny_config(hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, num_kv_heads=KV_HEADS,
                      intermediate_size=MLP)
    base = save(LlamaForCausalLM(cfg), build_char_tokenizer(), root / "base")
    return base, write_tasks(root / "tasks.jsonl"), root


def run(setup, name: str, **over) -> list[dict]:
    base, tasks, root = setup
    settings = dict(base=str(base), tasks=str(tasks), steps=3, prompts_per_step=3, group_size=2, max_new_tokens=1,
                    lr=1e-3, checkpoint_every=100, out=str(root / name), log=False, num_threads=1)
    return read_jsonl(train(GRPOConfig(**{**settings, **over})) / "metrics.jsonl")


@pytest.mark.parametrize("over, per_token", [
    ({}, 2 + 2 + 6),  # one PPO epoch, one minibatch: the training forward measures the policy (no old pass)
    ({"updates_per_batch": 2}, 2 + 2 + 2 + 2 * 6),  # two epochs: a separate old-policy forward
])
def test_flops_match_a_hand_count(setup, over, per_token):
    rows = run(setup, f"run{per_token}", **over)
    n_params = hand_count_parameters()
    assert n_params == 15520  # 2 x (q, o 2 x 1024; k, v 2 x 512; MLP 4608; norms 64) + 32
    rows_per_step = 3 * 2  # prompts x group size
    prompt_tokens = rows_per_step * (1 + TRAIN_PROMPT_CHARS)  # <bos> + the prompt, counted for every row
    completion_tokens = rows_per_step * 1  # max_new_tokens = 1: exactly one generated token per row
    for r in rows:
        assert r["tokens/prompt"] == prompt_tokens and r["tokens/completion"] == completion_tokens
    per_step = per_token * n_params * (prompt_tokens + completion_tokens)
    # line s holds the cost of producing theta_s: s updates, each with everything above
    assert [r["compute/flops"] for r in rows] == [s * per_step for s in range(4)]
    assert rows[1]["compute/flops"] == (4_656_000 if per_token == 10 else 8_380_800)  # the same count, spelt out
