"""ceiling.models.llama (the plain-PyTorch Llama) against transformers' LlamaForCausalLM, and backend choice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from ceiling.errors import CeilingError
from ceiling.models import build_char_tokenizer, load, sample, save, tiny_config, token_logprobs
from ceiling.models.llama import Llama, from_folder, from_model, unsupported_reason
from ceiling.models.sampling import position_ids_from_mask

CONFIGS = {
    "mha": dict(hidden_size=64, num_layers=2, initializer_range=0.2),
    "gqa": dict(hidden_size=96, num_layers=2, num_heads=6, num_kv_heads=2, initializer_range=0.2, rope_theta=1e5),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request):
    torch.manual_seed(0)
    hf = LlamaForCausalLM(tiny_config(**CONFIGS[request.param])).eval()
    return hf, from_model(hf)


def padded_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (5, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[3, :1] = 0
    ids[mask == 0] = 0
    return ids, mask, position_ids_from_mask(mask)


def test_forward_equals_transformers_with_left_padding(pair):
    hf, nat = pair
    ids, mask, pos = padded_batch()
    with torch.no_grad():
        a = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        b = nat(ids, mask, pos).logits
        real = mask.bool()
        torch.testing.assert_close(b[real], a[real], atol=1e-6, rtol=1e-6)
        assert torch.isfinite(b).all()  # padding rows attend to themselves: no NaN anywhere
        torch.testing.assert_close(nat(ids[:1]).logits, hf(input_ids=ids[:1]).logits, atol=1e-6, rtol=1e-6)


def test_cached_continuation_equals_full_forward(pair):
    _, nat = pair
    ids, mask, pos = padded_batch(2)
    with torch.no_grad():
        full = nat(ids, mask, pos).logits
        head = nat(ids[:, :6], mask[:, :6], pos[:, :6], use_cache=True)
        cache = head.past_key_values
        cache.batch_repeat_interleave(2)
        cache.batch_select_indices(torch.arange(0, 10, 2))  # back to one row each
        tail = nat(ids[:, 6:], mask, pos[:, 6:], past_key_values=cache, use_cache=True)
    torch.testing.assert_close(tail.logits, full[:, 6:], atol=1e-5, rtol=1e-5)
    assert cache.length() == ids.shape[1]


def test_gradients_equal_transformers(pair):
    hf, nat = pair
    ids, mask, pos = padded_batch(3)
    real = mask.bool()
    for m in (hf, nat):
        m.zero_grad()
        out = m(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        out[real].log_softmax(-1)[:, 7].sum().backward()
    names = [n for n, _ in hf.named_parameters()]
    assert names == [n for n, _ in nat.named_parameters()]  # same order: optimizer states are interchangeable
    for (name, p), q in zip(hf.named_parameters(), nat.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    hf.zero_grad()
    nat.zero_grad()


def test_token_logprobs_and_sampling_equal_transformers(pair):
    hf, nat = pair
    tok = build_char_tokenizer()
    prompts = ["<bos>12+34=", "<bos>a", "<bos>sort: 3 1 2 ->"]
    kw = dict(n_per_prompt=3, max_new_tokens=9, eos_token_id=list(range(4, 30)), return_logprobs=True)
    ra = sample(hf, tok, prompts, generator=torch.Generator().manual_seed(4), **kw)
    rb = sample(nat, tok, prompts, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(ra.completion_ids, rb.completion_ids)
    with torch.no_grad():
        la, ea = token_logprobs(hf, ra.input_ids, ra.attention_mask, ra.prompt_len)
        lb, eb = token_logprobs(nat, rb.input_ids, rb.attention_mask, rb.prompt_len)
    torch.testing.assert_close(lb, la, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eb, ea, atol=1e-5, rtol=1e-5)


def test_folder_round_trips_both_ways(tmp_path, pair):
    hf, nat = pair
    tok = build_char_tokenizer()
    save(nat, tok, tmp_path / "native")  # written by us, read by transformers
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "native").eval()
    save(hf, tok, tmp_path / "hf")  # written by transformers, read by us
    ours = from_folder(tmp_path / "hf")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # tied weights stay one tensor
    ids, mask, pos = padded_batch(5)
    real = mask.bool()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits[real]
        assert torch.equal(back(input_ids=ids, attention_mask=mask, position_ids=pos).logits[real], want)
        assert torch.equal(ours(ids, mask, pos).logits[real], nat(ids, mask, pos).logits[real])
    stored = json.loads((tmp_path / "native" / "config.json").read_text())
    assert stored["model_type"] == "llama" and stored["num_key_value_heads"] == hf.config.num_key_value_heads
    assert stored["architectures"] == ["LlamaForCausalLM"]
    for folder in ("native", "hf"):  # both folders come back in the native backend
        assert isinstance(load(tmp_path / folder, device="cpu").model, Llama)


def test_backend_choice(tmp_path):
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    plain = save(LlamaForCausalLM(tiny_config(hidden_size=32, num_layers=1, num_heads=2)), tok, tmp_path / "plain")
    assert isinstance(load(plain, device="cpu").model, Llama)
    assert isinstance(load(plain, device="cpu", backend="transformers").model, LlamaForCausalLM)
    cfg = tiny_config(hidden_size=32, num_layers=1, num_heads=2)
    cfg.attention_bias = True  # outside what the native Llama implements
    biased = save(LlamaForCausalLM(cfg), tok, tmp_path / "biased")
    assert unsupported_reason(json.loads((biased / "config.json").read_text())) == "linear layers with biases"
    assert isinstance(load(biased, device="cpu").model, LlamaForCausalLM)  # auto falls back
    with pytest.raises(CeilingError, match="backend.*biases"):
        load(biased, device="cpu", backend="native")
    with pytest.raises(CeilingError, match="backend"):
        load(plain, device="cpu", backend="jax")


def test_loop_process_does_not_import_transformers_models_or_dynamo():
    """The memory claim behind the native backend and ceiling's AdamW: a tiny-base RL process never loads
    transformers' modelling stack or torch._dynamo (together about 220 MB resident)."""
    code = (
        "import sys, torch\n"
        "from ceiling.models import build_char_tokenizer, save\n"
        "from ceiling.models.llama import Llama, LlamaConfig\n"
        "from ceiling.rl.grpo import GRPOConfig, train\n"
        "import tempfile, pathlib\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "raw = {'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'hidden_size': 32,\n"
        "       'num_hidden_layers': 1, 'num_attention_heads': 2, 'num_key_value_heads': 2,\n"
        "       'intermediate_size': 96, 'vocab_size': 100, 'tie_word_embeddings': True,\n"
        "       'rms_norm_eps': 1e-5, 'max_position_embeddings': 128, 'pad_token_id': 0, 'bos_token_id': 1,\n"
        "       'eos_token_id': 2, 'rope_parameters': {'rope_type': 'default', 'rope_theta': 10000.0}}\n"
        "torch.manual_seed(0)\n"
        "m = Llama(LlamaConfig(raw))\n"
        "save(m, build_char_tokenizer(), d / 'base')\n"
        "train(GRPOConfig(base=str(d / 'base'), tasks='tiny-rl', steps=2, prompts_per_step=2, group_size=2,\n"
        "                 max_new_tokens=4, beta=0.04, checkpoint_every=1, out=str(d / 'run'), log=False))\n"
        "bad = [m for m in ('transformers.modeling_utils', 'torch._dynamo') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, out.stdout


@pytest.mark.parametrize("max_keys", [512, 20])  # 20: several packed chunks per call
def test_packed_scoring_equals_padded(pair, max_keys, monkeypatch):
    """Packed completions (no padding computed) give the padded forward's log-probs, entropies and gradients,
    whatever the row order (here groups interleave) and however the rows are cut into packed calls."""
    import ceiling.models.prefix as prefix

    monkeypatch.setattr(prefix, "PACK_MIN_KEYS", max_keys)
    monkeypatch.setattr(prefix, "PACK_KEYS_PER_HIDDEN", 0.0)
    _, nat = pair
    tok = build_char_tokenizer()
    prompts = ["<bos>12+34=", "<bos>a", "<bos>sort: 3 1 2 ->"]
    r = sample(nat, tok, prompts, n_per_prompt=4, max_new_tokens=10, generator=torch.Generator().manual_seed(3),
               eos_token_id=list(range(4, 24)))
    shuffle = torch.randperm(r.batch_size, generator=torch.Generator().manual_seed(0))
    r.input_ids, r.attention_mask = r.input_ids[shuffle], r.attention_mask[shuffle]
    r.completion_mask, r.lengths = r.completion_mask[shuffle], r.lengths[shuffle]
    assert r.lengths.min() == 1 and r.lengths.max() > 3  # one-token and longer completions both present
    results = []
    for pack in (False, True):
        nat.zero_grad()
        logp, ent = token_logprobs(nat, r.input_ids, r.attention_mask, r.prompt_len, pack=pack)
        (0.7 * logp.sum() + ent.sum()).backward()
        results.append((logp.detach(), ent.detach(), [p.grad.clone() for p in nat.parameters()]))
    (lp_a, en_a, g_a), (lp_b, en_b, g_b) = results
    torch.testing.assert_close(lp_b, lp_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(en_b, en_a, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=1e-4)
    assert torch.all(lp_b[r.completion_mask == 0] == 0)
    nat.zero_grad()


def test_packed_forward_chunks_keep_groups_and_cover_rows():
    from ceiling.models.batching import forward_chunks

    lengths = torch.tensor([5, 1, 9, 3, 2, 8, 7, 4, 6, 2, 2, 3])
    groups = torch.arange(4).repeat_interleave(3)
    chunks = forward_chunks(torch.arange(12), lengths, prompt_len=6, max_rows=6, device=torch.device("cpu"),
                           groups=groups, packed=True)
    assert [len(c) for c in chunks] == [6, 6]
    assert sorted(torch.cat(chunks).tolist()) == list(range(12))
    for c in chunks:  # whole prompt groups, each prompt computed once per chunk
        assert all((groups[c] == g).sum() in (0, 3) for g in range(4))


def test_non_contiguous_completion_masks_fall_back_to_the_padded_forward(pair):
    _, nat = pair
    ids, mask, _ = padded_batch(6)
    mask[0, 8] = 0  # a hole inside row 0's completion (prompt_len 5: completion columns 5..10)
    with torch.no_grad():
        packed = token_logprobs(nat, ids, mask, 5, pack=True)[0]
        padded = token_logprobs(nat, ids, mask, 5, pack=False)[0]
    assert torch.equal(packed, padded)


def _bias_and_bf16_models():
    torch.manual_seed(0)
    cfg = tiny_config(hidden_size=64, num_layers=2, initializer_range=0.2)
    cfg.attention_bias = True
    cfg.mlp_bias = True
    biased = LlamaForCausalLM(cfg).eval()
    torch.manual_seed(1)
    bf16 = LlamaForCausalLM(tiny_config(hidden_size=64, num_layers=2, initializer_range=0.2)).eval()
    with torch.no_grad():
        for name, p in biased.named_parameters():
            if name.endswith("bias"):
                p.normal_()
        for name, p in bf16.named_parameters():
            if "norm" in name:  # norm weights other than 1 expose where a rounding happens
                p.uniform_(0.5, 1.5)
    return {"biases": biased, "bf16 weights": bf16.to(torch.bfloat16)}


@pytest.mark.parametrize("kind", ["biases", "bf16 weights"])
def test_lean_decoding_step_equals_the_models_own_step(kind):
    """The small-model (fused) decoding step must not apply to models it would compute differently."""
    model = _bias_and_bf16_models()[kind]
    tok = build_char_tokenizer()
    kw = dict(n_per_prompt=3, max_new_tokens=8, temperature=0.0, return_logprobs=True, eos_token_id=[999])
    fast = sample(model, tok, ["<bos>12+34=", "<bos>a"], fast=True, **kw)
    slow = sample(model, tok, ["<bos>12+34=", "<bos>a"], fast=False, **kw)
    assert torch.equal(fast.completion_ids, slow.completion_ids)
    torch.testing.assert_close(fast.logprobs, slow.logprobs, atol=1e-6, rtol=0)


def test_from_model_refuses_what_it_cannot_compute_and_keeps_dtype():
    models = _bias_and_bf16_models()
    with pytest.raises(ValueError, match="biases"):
        from_model(models["biases"])
    nat = from_model(models["bf16 weights"])
    assert nat.dtype == torch.bfloat16 and nat.model.rotary_emb.inv_freq.dtype == torch.float32


def test_mixed_dtype_folder_loads_in_the_config_dtype(tmp_path, pair):
    from safetensors.torch import load_file, save_file

    hf, _ = pair
    folder = save(hf, build_char_tokenizer(), tmp_path / "mixed")
    weights = load_file(str(folder / "model.safetensors"))
    weights = {k: v.to(torch.bfloat16) if "proj" in k else v for k, v in weights.items()}  # norms stay fp32
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model = from_folder(folder)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # config.json says float32
    ids, mask, pos = padded_batch(7)
    with torch.no_grad():
        assert torch.isfinite(model(ids, mask, pos).logits).all()
