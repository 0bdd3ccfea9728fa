"""Fast paths of the RL hot loop give the same numbers as the plain ones: shared-prefix scoring."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from ceiling.models import build_char_tokenizer, sample, tiny_config, token_logprobs
from ceiling.models.prefix import can_share, distinct_prompts

PROMPTS = ["<bos>12+34=", "<bos>a", "<bos>sort: 3 1 2 ->"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(hidden_size=64, num_layers=2, initializer_range=0.2))


@pytest.fixture(scope="module")
def rollout(model):
    """Groups of 4 completions, some stopping early (EOS = many ids), rows shuffled out of group order."""
    r = sample(model, build_char_tokenizer(), PROMPTS, n_per_prompt=4, max_new_tokens=9,
               generator=torch.Generator().manual_seed(3), eos_token_id=list(range(4, 12)))
    assert 1 <= int(r.lengths.min()) < int(r.lengths.max())  # ragged completions: masks matter
    order = torch.randperm(r.batch_size, generator=torch.Generator().manual_seed(0))
    return r.input_ids[order], r.attention_mask[order], r.prompt_len


def scores_and_grads(model, ids, mask, prompt_len, share):
    model.zero_grad()
    logp, ent = token_logprobs(model, ids, mask, prompt_len, share_prompts=share)
    (logp.sum() * 0.7 + ent.sum()).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return logp.detach(), ent.detach(), grads


def test_distinct_prompts_finds_groups_in_any_row_order(rollout):
    ids, mask, P = rollout
    first, inverse = distinct_prompts(ids, mask, P)
    assert first.shape[0] == len(PROMPTS)
    assert torch.equal(ids[first[inverse], :P], ids[:, :P])  # every row maps to a row with its prompt
    assert torch.equal(torch.bincount(inverse), torch.full((3,), 4))
    assert not can_share(torch.nn.Identity(), 12, 3, 10, 5)  # a module without a KV-cache argument


def test_shared_prefix_scores_and_gradients_equal_the_plain_forward(model, rollout):
    ids, mask, P = rollout
    decoder = model.get_decoder()
    assert can_share(decoder, ids.shape[0], 3, P, ids.shape[1] - P)  # the shared path is the one taken
    plain = scores_and_grads(model, ids, mask, P, share=False)
    shared = scores_and_grads(model, ids, mask, P, share=True)
    torch.testing.assert_close(shared[0], plain[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared[1], plain[1], atol=1e-5, rtol=0)
    assert torch.all(shared[0][mask[:, P:] == 0] == 0)
    for g_shared, g_plain in zip(shared[2], plain[2]):  # float32 rounding, relative to the gradient's scale
        torch.testing.assert_close(g_shared, g_plain, atol=1e-5 * max(1.0, float(g_plain.abs().max())), rtol=1e-4)
    assert sum(float(g.abs().sum()) for g in shared[2]) > 0


def test_shared_prefix_no_grad_and_one_completion_token(model, rollout):
    ids, mask, P = rollout
    for width in (P + 1, ids.shape[1]):  # one completion token: only the prompt pass is needed
        with torch.no_grad():
            a = token_logprobs(model, ids[:, :width], mask[:, :width], P, share_prompts=False)
            b = token_logprobs(model, ids[:, :width], mask[:, :width], P, share_prompts=True)
        torch.testing.assert_close(b[0], a[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(b[1], a[1], atol=1e-5, rtol=0)


def test_sharing_is_skipped_when_it_cannot_pay_or_apply(model):
    decoder = model.get_decoder()
    assert not can_share(decoder, 8, 8, 10, 5)  # every prompt distinct
    assert not can_share(decoder, 8, 2, 10, 0)  # no completion tokens
    assert not can_share(decoder, 8, 6, 10, 5)  # would skip 2 x 10 of 8 x 15 tokens: 17% < MIN_SAVING
    assert can_share(decoder, 8, 5, 10, 5)  # skips 3 x 10 of 8 x 15 tokens: 25%
    decoder.gradient_checkpointing = True
    try:
        assert not can_share(decoder.train(), 8, 2, 10, 5)  # transformers drops the cache under checkpointing
        assert can_share(decoder.eval(), 8, 2, 10, 5)
    finally:
        decoder.gradient_checkpointing = False
