"""The RL loop's per-step measurements (`rollout_metrics`) on a batch written out by hand.

Two prompts x three completions with chosen rewards, lengths, log-probs and entropies: every number of the
metrics line is computed here from those, the entropy as a token mean (not a mean of sequence means).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ceiling.models import Rollout
from ceiling.rl.grpo import Batch, rollout_metrics
from ceiling.tasks import Problem

LENGTHS = [1, 3, 2, 4, 4, 2]  # completion tokens of each row; rows 3 and 4 hit max_new_tokens = 4 (truncated)
REWARDS = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # group 0 mixed, group 1 all wrong (zero std)
PROMPT_TOKENS = [3, 3, 3, 5, 5, 5]  # two prompts of 3 and 5 tokens, left-padded to 5


def batch_and_tensors():
    b, t, p = 6, 4, 5
    mask = torch.zeros((b, t))
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1
    prompt_mask = torch.zeros((b, p), dtype=torch.long)
    for i, n in enumerate(PROMPT_TOKENS):
        prompt_mask[i, p - n:] = 1
    rollout = Rollout(input_ids=torch.zeros((b, p + t), dtype=torch.long),
                      attention_mask=torch.cat([prompt_mask, mask.long()], 1), prompt_len=p,
                      completion_ids=torch.zeros((b, t), dtype=torch.long), completion_mask=mask.long(),
                      lengths=torch.tensor(LENGTHS), truncated=torch.tensor([False, False, False, True, True, False]),
                      texts=[""] * b, group=torch.tensor([0, 0, 0, 1, 1, 1]), prompts=["a", "b"])
    problems = [Problem("sort", "sort 21=", "12", 1, "train", "sort/21", {}),
                Problem("add", "1+1=", "2", 1, "train", "add/1+1", {})]
    rewards = torch.tensor(REWARDS)
    batch = Batch(problems, rollout, rewards, rewards, torch.zeros(b))
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand((b, t), generator=gen) * mask
    ref = -torch.rand((b, t), generator=gen) * mask
    ent = (0.5 + torch.arange(t, dtype=torch.float32)) * mask  # entropy grows along a completion
    return batch, logp, ref, ent, mask


def test_rollout_metrics_by_hand():
    batch, logp, ref, ent, mask = batch_and_tensors()
    m = rollout_metrics(batch, logp, ref, ent, ["sort", "add"], random_reward=False)
    r = np.array(REWARDS)
    assert m["reward/mean"] == pytest.approx(2 / 6)
    assert m["reward/std"] == pytest.approx(math.sqrt(np.mean((r - r.mean()) ** 2)))  # population std
    assert m["reward/zero_std_frac"] == pytest.approx(0.5)  # group 1's rewards are all equal
    assert m["reward/family/sort"] == pytest.approx(2 / 3) and m["reward/family/add"] == pytest.approx(0.0)
    assert "reward/train_mean" not in m
    tokens = sum(LENGTHS)
    ent_sum = sum(sum(0.5 + j for j in range(n)) for n in LENGTHS)
    assert m["policy/entropy"] == pytest.approx(ent_sum / tokens)
    per_sequence = np.mean([sum(0.5 + j for j in range(n)) / n for n in LENGTHS])
    assert abs(per_sequence - m["policy/entropy"]) > 0.1  # the two means differ on these lengths
    lp, rf, mk = logp.double().numpy(), ref.double().numpy(), mask.double().numpy()
    k1 = (lp - rf) * mk
    k3 = (np.exp(rf - lp) - 1 - (rf - lp)) * mk
    assert m["kl/policy_base_k1_token"] == pytest.approx(k1.sum() / tokens, rel=1e-5)
    assert m["kl/policy_base_k3_token"] == pytest.approx(k3.sum() / tokens, rel=1e-5)
    assert m["kl/policy_base_k1_seq"] == pytest.approx(k1.sum(1).mean(), rel=1e-5)
    assert m["kl/policy_base_k3_seq"] == pytest.approx(k3.sum(1).mean(), rel=1e-5)
    assert m["length/mean"] == pytest.approx(tokens / 6) and m["length/max"] == 4.0
    assert m["length/truncated_frac"] == pytest.approx(2 / 6)
    assert m["tokens/prompt"] == sum(PROMPT_TOKENS) and m["tokens/completion"] == tokens
    batch.rewards = torch.zeros(6)  # every group without spread
    assert rollout_metrics(batch, logp, ref, ent, ["sort"], random_reward=False)["reward/zero_std_frac"] == 1.0
    batch.rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # none
    assert rollout_metrics(batch, logp, ref, ent, ["sort"], random_reward=False)["reward/zero_std_frac"] == 0.0


def test_random_reward_control_reports_both_rewards():
    batch, logp, ref, ent, _ = batch_and_tensors()
    batch.train_rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    m = rollout_metrics(batch, logp, ref, ent, ["sort"], random_reward=True)
    assert m["reward/train_mean"] == pytest.approx(4 / 6) and m["reward/mean"] == pytest.approx(2 / 6)
    assert "reward/family/add" not in m  # only the verified families asked for


def test_roll_out_random_reward_control_is_seeded_and_independent_of_correctness():
    """The control trains on coins of probability p drawn from (seed, step): the same step draws the same coins,
    another step others; the verified rewards are still measured; problems come from the train split."""
    from transformers import LlamaForCausalLM

    from ceiling.models import LoadedModel, build_char_tokenizer, tiny_config
    from ceiling.models.llama import from_model
    from ceiling.rl.grpo import GRPOConfig, group_advantages, roll_out
    from ceiling.tasks import TaskSet

    torch.manual_seed(0)
    model = from_model(LlamaForCausalLM(tiny_config(hidden_size=16, num_layers=1, num_heads=2)).eval())
    policy = LoadedModel(model, build_char_tokenizer(), "rand", "rand", False, None)
    cfg = GRPOConfig(tasks="smoke", prompts_per_step=8, group_size=4, max_new_tokens=1, random_reward=True,
                     random_reward_p=0.3, seed=5, log=False)
    taskset = TaskSet.parse("smoke")
    cpu = torch.device("cpu")
    first, again, other = (roll_out(policy, taskset, cfg, step, cpu) for step in (3, 3, 4))
    assert torch.equal(first.train_rewards, again.train_rewards)
    assert not torch.equal(first.train_rewards, other.train_rewards)
    coins = torch.cat([roll_out(policy, taskset, cfg, s, cpu).train_rewards for s in range(10)])
    assert set(coins.tolist()) <= {0.0, 1.0} and 0.2 < coins.mean() < 0.4  # 320 coins of p = 0.3 (sd 0.026)
    assert first.rewards.sum() == 0  # a random model answers nothing; the control trains on coins anyway
    assert torch.allclose(first.advantages, group_advantages(first.train_rewards, 4, "group"))
    assert {p.split for p in first.problems} == {"train"} and {p.family for p in first.problems} == {"add"}


def test_policy_loss_defaults_and_its_terms_when_off():
    """The KL penalty's default estimator is k3; a term that is off is reported as 0 under its own name."""
    from ceiling.rl.grpo import kl_k3, policy_loss, token_weights

    gen = torch.Generator().manual_seed(1)
    logp = -torch.rand((2, 3), generator=gen)
    ref = -torch.rand((2, 3), generator=gen)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = token_weights(mask, "grpo", 3)
    adv = torch.tensor([1.0, -1.0])
    default, parts = policy_loss(logp, logp.detach(), adv, w, ref_logp=ref, beta=0.1)
    explicit, _ = policy_loss(logp, logp.detach(), adv, w, ref_logp=ref, beta=0.1, kl_estimator="k3")
    assert float(default) == pytest.approx(float(explicit))
    assert parts["kl"] == pytest.approx(0.1 * float((w * kl_k3(logp, ref)).sum()))
    _, off = policy_loss(logp, logp.detach(), adv, w)
    assert (off["kl"], off["entropy"]) == (0.0, 0.0) and off["policy"] == pytest.approx(float((w * -adv[:, None]).sum()))


def test_clipped_token_counts_skip_padding_and_dapo_weights_of_one_token():
    from ceiling.rl.grpo import policy_loss, token_weights

    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w = token_weights(mask, "grpo", 3)
    old = torch.zeros((1, 3))
    logp = torch.tensor([[0.5, 0.0, 0.5]])  # ratio e^0.5 = 1.65 > 1.2 at tokens 0 and 2; token 2 is padding
    _, parts = policy_loss(logp, old, torch.tensor([1.0]), w)
    assert (parts["clip_high"], parts["clip_low"]) == (1.0, 0.0)
    one = torch.tensor([[1.0, 0.0]])
    assert torch.equal(token_weights(one, "dapo", 2), one)  # a batch of one token: its weight is 1
