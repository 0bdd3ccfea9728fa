"""The GRPO-family math against hand-computed values: advantages, token weights, clipped losses, KL estimators."""
from __future__ import annotations

import math

import pytest
import torch

from ceiling.errors import CeilingError
from ceiling.rl.grpo import (
    GRPOConfig,
    clipped_surrogate,
    group_advantages,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_summary,
    learning_rate,
    policy_loss,
    step_seed,
    token_weights,
)

REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])


def test_group_advantages_group_std_is_bessel_corrected():
    adv = group_advantages(REWARDS, group_size=4, std_scaling="group", eps=0.0)
    # group 1: mean 1/4, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    # group 2: mean 1/2, unbiased std sqrt(4 * 0.25 / 3) = 1/sqrt(3); group 3 has std 0 -> advantage 0/0
    expected = [1.5, -0.5, -0.5, -0.5] + [0.5 * math.sqrt(3)] * 2 + [-0.5 * math.sqrt(3)] * 2
    assert adv[:8].tolist() == pytest.approx(expected, abs=1e-6)
    adv_eps = group_advantages(REWARDS, group_size=4, std_scaling="group")  # default eps keeps 0, not NaN
    assert adv_eps[8:].tolist() == [0.0] * 4
    assert adv_eps[0].item() == pytest.approx(0.75 / (0.5 + 1e-4))


def test_group_advantages_batch_and_none():
    centred = [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    none = group_advantages(REWARDS, group_size=4, std_scaling="none")
    assert none.tolist() == pytest.approx(centred)
    # batch std over all 12 rewards (7 ones, 5 zeros), Bessel-corrected: var = 12/11 * (7/12)(5/12)
    batch_std = math.sqrt(12 / 11 * (7 / 12) * (5 / 12))
    batch = group_advantages(REWARDS, group_size=4, std_scaling="batch", eps=0.0)
    assert batch.tolist() == pytest.approx([c / batch_std for c in centred], abs=1e-6)
    with pytest.raises(ValueError):
        group_advantages(REWARDS, group_size=4, std_scaling="bogus")


MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
ADV = torch.tensor([2.0, -1.0])


def test_token_weights_per_loss_type():
    assert token_weights(MASK, "grpo", 4).tolist() == [[0.25, 0.25, 0, 0], [0.5, 0, 0, 0]]
    assert token_weights(MASK, "dr_grpo", 4).tolist() == [[0.125, 0.125, 0, 0], [0.125, 0, 0, 0]]
    third = pytest.approx(1 / 3)
    assert token_weights(MASK, "dapo", 4).tolist() == [[third, third, 0, 0], [third, 0, 0, 0]]


@pytest.mark.parametrize(
    "loss_type, value, grad_row0, grad_row1",
    [
        # on-policy (ratio 1): loss = -sum(w * A); d loss / d logp = -w * A
        ("grpo", -(0.25 * 2 * 2 + 0.5 * -1), -0.5, 0.5),
        ("dr_grpo", -(0.125 * 2 * 2 + 0.125 * -1), -0.25, 0.125),
        ("dapo", -(2 * 2 - 1) / 3, -2 / 3, 1 / 3),
    ],
)
def test_policy_loss_on_policy_values_and_gradients(loss_type, value, grad_row0, grad_row1):
    logp = torch.tensor([[-1.0, -2.0, -0.5, -0.5], [-0.3, -0.1, -0.1, -0.1]], requires_grad=True)
    w = token_weights(MASK, loss_type, max_new_tokens=4)
    loss, parts = policy_loss(logp, logp.detach(), ADV, w)
    assert loss.item() == pytest.approx(value)
    assert parts["policy"] == pytest.approx(value)
    loss.backward()
    expected = torch.tensor([[grad_row0, grad_row0, 0, 0], [grad_row1, 0, 0, 0]])
    torch.testing.assert_close(logp.grad, expected)
    assert parts["clip_low"] == 0 and parts["clip_high"] == 0


def test_clipped_surrogate_hand_values():
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.25]])
    old = torch.zeros_like(ratios)
    logp = torch.log(ratios)
    # one sequence, one advantage per call
    pos, low_p, high_p = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.2)
    neg, low_n, high_n = clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2, 0.2)
    # A = +1: -min(r, clip(r)) ; A = -1: -min(-r, -clip(r)) = max(r, clip(r))
    assert pos[0].tolist() == pytest.approx([-1.2, -0.5, -0.5, -1.2, -1.2])
    assert neg[0].tolist() == pytest.approx([1.5, 0.8, 0.8, 1.5, 1.25])
    assert high_p[0].tolist() == [True, False, False, True, True] and not low_p.any()
    assert low_n[0].tolist() == [False, True, True, False, False] and not high_n.any()
    # clip-higher (DAPO): with epsilon_high 0.28 a ratio of 1.25 is not clipped, 1.5 still is
    dapo, _, high = clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2, 0.28)
    assert dapo[0].tolist() == pytest.approx([-1.28, -0.5, -0.5, -1.28, -1.25])
    assert high[0].tolist() == [True, False, False, True, False]


def test_clipped_tokens_get_no_gradient():
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)
    w = token_weights(torch.ones(1, 2), "dapo", 2)
    loss, parts = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), w, 0.2, 0.2)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0  # ratio 1.5 > 1.2 with A > 0: clipped, no gradient
    assert logp.grad[0, 1].item() == pytest.approx(-0.5 * 1.1)  # d(-w * r)/d logp = -w * r
    assert parts["clip_high"] == 1


def test_policy_loss_kl_and_entropy_terms():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    ent = torch.tensor([[0.7, 0.3]])
    w = token_weights(torch.ones(1, 2), "grpo", 2)
    loss, parts = policy_loss(logp, logp, torch.tensor([0.0]), w, ref_logp=ref, beta=0.1, kl_estimator="k3",
                              entropy=ent, entropy_coef=0.01)
    k3 = [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]
    assert parts["kl"] == pytest.approx(0.1 * sum(k3) / 2)
    assert parts["entropy"] == pytest.approx(0.01 * 0.5)
    assert loss.item() == pytest.approx(parts["policy"] + parts["kl"] - parts["entropy"])
    assert loss.item() == pytest.approx(0.1 * sum(k3) / 2 - 0.01 * 0.5)


def test_kl_estimators_hand_values():
    lp, lq = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_k1(lp, lq).item() == pytest.approx(1.0)
    assert kl_k2(lp, lq).item() == pytest.approx(0.5)
    assert kl_k3(lp, lq).item() == pytest.approx(math.exp(-1) - 1 + 1)


def test_kl_estimators_against_exact_categorical_kl():
    gen = torch.Generator().manual_seed(0)
    for trial in range(3):
        p = torch.softmax(torch.randn(6, generator=gen) * 1.5, 0).double()
        q = torch.softmax(torch.randn(6, generator=gen) * 1.5, 0).double()
        exact = float((p * (p.log() - q.log())).sum())
        x = torch.multinomial(p, 400_000, replacement=True, generator=gen)
        lp, lq = p.log()[x], q.log()[x]
        for fn in (kl_k1, kl_k3):
            est = fn(lp, lq)
            se = float(est.std()) / math.sqrt(est.numel())
            assert abs(float(est.mean()) - exact) < 4 * se + 1e-9, (fn.__name__, trial)
        k3 = kl_k3(lp, lq)
        assert float(k3.min()) >= 0.0
        assert float(kl_k2(lp, lq).min()) >= 0.0
    # k3 is non-negative even for extreme log ratios
    r = torch.linspace(-30, 30, 601)
    assert float(kl_k3(torch.zeros_like(r), r).min()) >= 0.0


def test_kl_summary_token_and_sequence():
    logp = torch.tensor([[-1.0, -1.0, -5.0], [-1.0, -5.0, -5.0]])
    ref = torch.tensor([[-2.0, -1.5, 0.0], [-1.5, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = kl_summary(logp, ref, mask)
    assert out["kl/policy_base_k1_token"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert out["kl/policy_base_k1_seq"] == pytest.approx((1.5 + 0.5) / 2)
    k3 = lambda d: math.exp(-d) - 1 + d  # noqa: E731  (d = log p - log q)
    assert out["kl/policy_base_k3_token"] == pytest.approx((k3(1) + 2 * k3(0.5)) / 3)
    assert out["kl/policy_base_k3_seq"] == pytest.approx((k3(1) + 2 * k3(0.5)) / 2)


def test_learning_rate_warmup_and_seeds():
    assert [learning_rate(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert learning_rate(0, 3e-4, 0) == 3e-4
    assert step_seed(0, 5, 1) == step_seed(0, 5, 1)
    assert len({step_seed(0, 5, 1), step_seed(0, 5, 2), step_seed(0, 6, 1), step_seed(1, 5, 1)}) == 4


def test_config_errors_name_the_field():
    with pytest.raises(CeilingError, match="field 'loss_type'"):
        GRPOConfig(loss_type="ppo").validate()
    with pytest.raises(CeilingError, match="field 'group_size'"):
        GRPOConfig(group_size=1).validate()
    with pytest.raises(CeilingError, match="cfg.json: field 'bogus'"):
        GRPOConfig.from_dict({"bogus": 1}, where="cfg.json")
    with pytest.raises(CeilingError, match="field 'steps': expected int"):
        GRPOConfig.from_dict({"steps": "ten"})
    assert GRPOConfig(loss_type="dr_grpo").resolved_std_scaling() == "none"
    assert GRPOConfig(loss_type="dr_grpo", std_scaling="group").resolved_std_scaling() == "group"
    cfg = GRPOConfig.from_dict({"beta": 0.04, "steps": 3})
    assert cfg.beta == 0.04 and cfg.steps == 3
    assert cfg.config_hash() == GRPOConfig(beta=0.04, steps=99, out="elsewhere").config_hash()
    assert cfg.config_hash() != GRPOConfig(beta=0.05).config_hash()


def test_length_buckets_minimise_padding():
    from ceiling.models.batching import length_buckets

    # one long completion gets its own forward pass instead of padding three short ones to its length
    assert length_buckets([1, 1, 1, 30], prompt_len=5, max_rows=4, overhead_tokens=1) == [(0, 3), (3, 4)]
    # with a large per-call overhead everything goes in one pass
    assert length_buckets([1, 1, 1, 30], prompt_len=5, max_rows=4, overhead_tokens=1000) == [(0, 4)]
    spans = length_buckets([2] * 5, prompt_len=3, max_rows=2, overhead_tokens=10)
    assert len(spans) == 3 and all(b - a <= 2 for a, b in spans)
    assert [a for a, _ in spans][1:] == [b for _, b in spans][:-1] and spans[0][0] == 0 and spans[-1][1] == 5


def test_forward_chunks_keep_prompt_groups_together_when_prompts_are_shared():
    from ceiling.models.batching import bucket_cost, forward_chunks

    gen = torch.Generator().manual_seed(0)
    groups = torch.arange(6).repeat_interleave(8)  # 6 prompts x 8 completions
    lengths = torch.randint(1, 33, (48,), generator=gen)
    rows, cpu = torch.arange(48), torch.device("cpu")

    def cost(chunks: list[torch.Tensor], share: bool) -> float:
        return sum(bucket_cost(int(lengths[c].max()), len(c), len(set(groups[c].tolist())), 40, 128, share)
                   for c in chunks)

    plain = forward_chunks(rows, lengths, prompt_len=40, max_rows=16, device=cpu)
    shared = forward_chunks(rows, lengths, prompt_len=40, max_rows=16, device=cpu, groups=groups, share_prompts=True)
    for chunks in (plain, shared):  # every row exactly once, within the row limit
        assert sorted(torch.cat(chunks).tolist()) == list(range(48)) and max(len(c) for c in chunks) <= 16
    # a 40-token prompt shared by 8 rows: whole groups per chunk, and fewer tokens than the length-sorted cut
    for c in shared:
        for g in set(groups[c].tolist()):
            assert int((groups[c] == g).sum()) == 8
    assert cost(shared, True) < cost(plain, True) and cost(shared, True) < 0.8 * cost(plain, False)
    # without sharing the grouped order is never chosen over a cheaper length-sorted one
    assert cost(forward_chunks(rows, lengths, 40, 16, cpu, groups=groups, share_prompts=False), False) == cost(plain, False)


def test_grouped_order_holds_when_lengths_exceed_the_row_count():
    from ceiling.models.batching import forward_chunks

    groups = torch.tensor([0, 0, 1, 1])
    lengths = torch.tensor([50, 3, 40, 60])  # lengths far above the 4 rows: groups must not interleave
    chunks = forward_chunks(torch.arange(4), lengths, prompt_len=200, max_rows=2, device=torch.device("cpu"),
                           groups=groups, share_prompts=True)
    # one group per chunk (its 200-token prompt computed once), group 0 (longest 50) first, by length within
    assert [c.tolist() for c in chunks] == [[1, 0], [2, 3]]
