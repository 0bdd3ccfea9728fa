"""The sampling interface's contract (`ceiling.engines.sampling.Sampler`), run on the in-house sampler
`ceiling.models.sample`; the vLLM sampler is checked on a GPU (benchmarks/gpu_check.sh) and skipped here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ceiling.engines.sampling import Sampler, rollout_from_tokens, seed_from
from ceiling.models import format_prompts, load, sample, token_logprobs
from ceiling.models.sampling import eos_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = ["sort 3142=", "sort 97=", "12%5="]


@pytest.fixture(scope="module")
def tiny():
    return load("tiny-medium", device="cpu")


def draw(tiny, n=3, max_new=8, temperature=1.0, top_p=1.0, seed=0, logprobs=False, sampler: Sampler = sample):
    gen = torch.Generator().manual_seed(seed)
    return sampler(tiny.model, tiny.tokenizer, format_prompts(tiny, PROMPTS), n_per_prompt=n, max_new_tokens=max_new,
                   temperature=temperature, top_p=top_p, generator=gen, return_logprobs=logprobs)


def test_in_house_sampler_implements_the_interface(tiny):
    assert isinstance(sample, Sampler)
    ro = draw(tiny, n=3, max_new=5)
    stops = eos_ids(tiny.model, tiny.tokenizer)
    assert ro.batch_size == 9 and ro.group.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # prompt-major
    assert ro.input_ids.shape[1] == ro.prompt_len + ro.completion_ids.shape[1] <= ro.prompt_len + 5
    assert torch.equal(ro.attention_mask[:, ro.prompt_len:], ro.completion_mask)
    for i in range(ro.batch_size):
        n = int(ro.lengths[i])
        assert ro.completion_mask[i, :n].all() and not ro.completion_mask[i, n:].any()
        row = ro.completion_ids[i, :n].tolist()
        ended = bool(row) and row[-1] in stops
        assert bool(ro.truncated[i]) == (not ended)
        assert not any(t in stops for t in row[:-1])  # cut after the first stop token
        assert ro.texts[i] == tiny.tokenizer.decode(row, skip_special_tokens=True)
    prompt = tiny.tokenizer(format_prompts(tiny, PROMPTS)[1], add_special_tokens=False)["input_ids"]
    left = ro.input_ids[3, : ro.prompt_len][ro.attention_mask[3, : ro.prompt_len].bool()].tolist()
    assert left == prompt  # left-padded prompt, no special tokens added


def test_same_generator_state_same_samples_and_seeds_differ(tiny):
    a, b, c = draw(tiny, seed=1), draw(tiny, seed=1), draw(tiny, seed=2)
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    assert a.texts != c.texts
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert seed_from(g1) == seed_from(g2) and seed_from(g1) != seed_from(torch.Generator().manual_seed(6))


def test_logprobs_are_the_models_own_at_any_temperature(tiny):
    ro = draw(tiny, n=4, max_new=8, temperature=0.7, logprobs=True)
    with torch.no_grad():
        scored, _ = token_logprobs(tiny.model, ro.input_ids, ro.attention_mask, ro.prompt_len, entropy=False)
    mask = ro.completion_mask.bool()
    assert torch.allclose(ro.logprobs[mask], scored[mask], atol=1e-4)
    assert (ro.logprobs[~mask] == 0).all()


def test_temperature_zero_is_greedy(tiny):
    ro = draw(tiny, n=3, max_new=4, temperature=0.0)
    for g in range(len(PROMPTS)):
        rows = ro.completion_ids[ro.group == g]
        assert (rows == rows[0]).all()
    with torch.no_grad():
        logits = tiny.model(input_ids=ro.input_ids[:, : ro.prompt_len],
                            attention_mask=ro.attention_mask[:, : ro.prompt_len]).logits[:, -1]
    assert torch.equal(ro.completion_ids[:, 0], logits.argmax(-1))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_first_tokens_follow_the_tempered_distribution(tiny, temperature):
    """2,000 one-token draws after <bos> alone (the first token of a document: several likely ones):
    frequencies match softmax(logits / T) by a chi-square test (seeded, so the statistic is fixed; a sampler
    at the wrong temperature gives p ~ 0)."""
    from scipy.stats import chisquare

    prompt = format_prompts(tiny, [""])
    n = 2000
    ro = sample(tiny.model, tiny.tokenizer, prompt, n_per_prompt=n, max_new_tokens=1, temperature=temperature,
                generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = tiny.model(input_ids=ro.input_ids[:1, : ro.prompt_len]).logits[0, -1].double()
    probs = torch.softmax(logits / temperature, -1).numpy()
    counts = np.bincount(ro.completion_ids[:, 0].numpy(), minlength=len(probs))
    keep = probs * n >= 5  # pool rare tokens into one cell
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(probs[keep] * n, probs[~keep].sum() * n)
    if expected[-1] < 5:
        observed, expected = observed[:-1], expected[:-1] * observed[:-1].sum() / expected[:-1].sum()
    assert keep.sum() >= 2  # a real test: at least two likely tokens
    assert chisquare(observed, expected).pvalue > 1e-3


def test_rollout_from_tokens_rebuilds_the_in_house_rollout(tiny):
    """What an engine returns (token lists, possibly running past the stop token) becomes the same Rollout."""
    ro = draw(tiny, n=2, max_new=6, logprobs=True)
    stops = eos_ids(tiny.model, tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    prompts = format_prompts(tiny, PROMPTS)
    prompt_ids = [tiny.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    comps, lps = [], []
    for i in range(ro.batch_size):
        n = int(ro.lengths[i])
        comps.append(ro.completion_ids[i, :n].tolist() + [stops[0], 7])  # tokens past the stop are cut
        lps.append(ro.logprobs[i, :n].tolist() + [-1.0, -2.0])
    got = rollout_from_tokens(prompt_ids, comps, 2, stops, pad, tiny.tokenizer, prompts, lps)
    width = got.completion_ids.shape[1]
    assert got.prompt_len == ro.prompt_len and torch.equal(got.input_ids[:, : ro.prompt_len], ro.input_ids[:, : ro.prompt_len])
    assert torch.equal(got.lengths, torch.where(ro.truncated, ro.lengths + 1, ro.lengths))
    kept = ~ro.truncated
    assert torch.equal(got.completion_ids[kept][:, : ro.completion_ids.shape[1]][ro.completion_mask[kept].bool()],
                       ro.completion_ids[kept][ro.completion_mask[kept].bool()])
    assert not got.truncated.any() and width >= 1
    assert [t for t, k in zip(got.texts, kept.tolist()) if k] == [t for t, k in zip(ro.texts, kept.tolist()) if k]
    assert torch.equal(got.group, ro.group)


def test_vllm_sampler():
    from ceiling.engines.vllm import unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from ceiling.engines.vllm import VLLMSampler

    tiny = load("tiny-medium", device="cuda")
    ro = draw(tiny, n=4, max_new=8, logprobs=True, sampler=VLLMSampler(dtype="float32"))
    with torch.no_grad():
        scored, _ = token_logprobs(tiny.model, ro.input_ids, ro.attention_mask, ro.prompt_len, entropy=False)
    mask = ro.completion_mask.bool()
    assert ro.batch_size == 12 and torch.allclose(ro.logprobs[mask], scored[mask], atol=1e-3)
