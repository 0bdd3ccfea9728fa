"""Batched sampling with a KV cache: the hot path of RL and evaluation.

`sample` tokenises the prompts, left-pads them, runs one prefill over the *distinct* prompts, repeats the
cache `n_per_prompt` times, then decodes one token per step for all live rows. Rows that have emitted EOS
are dropped from the batch (their cache rows are removed), and the loop ends as soon as every row stopped.
Position ids count real tokens only, so left padding does not shift positions.

Randomness comes only from `generator` (a `torch.Generator`); on CPU the same seed gives the same tokens.
`temperature=0` is greedy decoding; `top_p` keeps the smallest set of tokens whose probability reaches p.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ceiling.models.llama import attention, signed_sin
from ceiling.models.tokenizer import decode_completions, encode_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

COMPACT_AT = 0.75  # drop finished rows once at most this share of the batch is still generating
# The lean decoding step fuses q/k/v and gate/up of models up to this hidden size, at the cost of one copy of
# those weights per rollout (figures: benchmarks/RESULTS.md).
FUSE_MAX_HIDDEN = 1024
TRANSPOSED_MIN_HIDDEN = 512  # ... and from this hidden size computes its matmuls as (W @ x.T).T (`_linear_t`)
GROW_FROM = 16  # the lean decoding cache starts with room for this many new tokens and doubles as needed


@dataclass
class Rollout:
    """Sampled completions. B = len(prompts) * n_per_prompt rows, grouped by prompt (row i -> group[i]).

    input_ids / attention_mask: [B, P+T] prompt (left-padded to P) followed by the completion.
    completion_ids / completion_mask: [B, T]; the mask is 1 for generated tokens up to and including EOS,
    0 for padding after it. T is the longest completion (at most max_new_tokens).
    lengths [B]: completion tokens incl. EOS; truncated [B]: no EOS within max_new_tokens.
    texts: decoded completions, special tokens removed. prompts: the prompt strings (one per group).
    logprobs [B, T] (if requested): log p(token) under the model at temperature 1, before top-p; 0 on padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: int
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    lengths: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]
    group: torch.Tensor
    prompts: list[str]
    logprobs: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.completion_ids.shape[0])


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eos_token_id: int | Sequence[int] | None = None) -> list[int]:
    """Stop-token ids: the given ones, else the tokenizer's EOS plus the generation config's EOS ids."""
    if eos_token_id is not None:
        return [eos_token_id] if isinstance(eos_token_id, int) else [int(i) for i in eos_token_id]
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in [gen] if isinstance(gen, int) else list(gen or []):
        if int(i) not in ids:
            ids.append(int(i))
    if not ids:
        raise ValueError("no EOS token id: pass eos_token_id")
    return ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows to the longest: (ids [N, P], attention_mask [N, P])."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens (0 for left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row from last-position logits [N, V]: greedy, or temperature + nucleus sampling."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_p < 1.0:
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
        scaled = torch.full_like(scaled, float("-inf")).scatter(-1, order, sorted_logits)
    return sample_categorical(scaled.softmax(dim=-1), generator)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of probs [N, V] by inverting the CDF: one uniform per row and a binary search.

    `torch.multinomial` draws V exponentials per row; this costs one cumulative sum. The CDF is summed in float64,
    so the tail of the vocabulary keeps its mass; tokens of probability 0 (top-p's cut) are never drawn.
    """
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    where = generator.device if generator is not None else probs.device
    u = torch.rand((probs.shape[0], 1), generator=generator, dtype=torch.float64, device=where).to(probs.device)
    total = cdf[:, -1:].contiguous()
    if not bool(torch.isfinite(total).all()):  # multinomial raised here too; searchsorted would return junk
        raise ValueError("sampling: the model's next-token probabilities are not finite (NaN or inf logits)")
    picked = torch.searchsorted(cdf, u * total, right=True)
    last = torch.searchsorted(cdf, total, right=False)  # the last token of nonzero probability, should u * total round up
    return torch.minimum(picked, last).squeeze(-1)


def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n_per_prompt: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    return_logprobs: bool = False,
    fast: bool | None = None,
) -> Rollout:
    """Sample `n_per_prompt` completions for each prompt string (already formatted: see `format_prompts`).

    Prompts are tokenised without adding special tokens. Output tensors live on the model's device and
    are ordinary tensors (usable with autograd afterwards). `fast` picks the decoding step: the lean Llama
    step with a preallocated cache (`True`), the model's own forward with a `DynamicCache` (`False`), or the
    former whenever the model is a plain Llama (`None`).
    """
    if not prompts:
        raise ValueError("sample() needs at least one prompt")
    if n_per_prompt < 1 or max_new_tokens < 0:
        raise ValueError("n_per_prompt must be >= 1 and max_new_tokens >= 0")
    stops = eos_ids(model, tokenizer, eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    encoded = [encode_text(tokenizer, p) for p in prompts]
    if any(len(e) == 0 for e in encoded):
        raise ValueError("empty prompt: every prompt needs at least one token")
    prompt_ids, prompt_mask = left_pad(encoded, pad_id)
    with torch.inference_mode():
        gen_ids, gen_mask, gen_lp = _decode(
            model, prompt_ids, prompt_mask, n_per_prompt, max_new_tokens, temperature, top_p, generator,
            stops, pad_id, return_logprobs, fast,
        )
    device = model.device
    prompt_ids = prompt_ids.repeat_interleave(n_per_prompt, 0).to(device)
    prompt_mask = prompt_mask.repeat_interleave(n_per_prompt, 0).to(device)
    completion_ids, completion_mask = gen_ids.clone(), gen_mask.clone()  # leave inference mode
    lengths = completion_mask.sum(dim=1)
    stop_t = torch.as_tensor(stops, device=device)
    hit_eos = (torch.isin(completion_ids, stop_t) & completion_mask.bool()).any(dim=1)
    rows = [completion_ids[i, : int(lengths[i])].tolist() for i in range(completion_ids.shape[0])]
    return Rollout(
        input_ids=torch.cat([prompt_ids, completion_ids], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        prompt_len=int(prompt_ids.shape[1]),
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        lengths=lengths,
        truncated=~hit_eos,
        texts=decode_completions(tokenizer, rows),
        group=torch.arange(len(prompts), device=device).repeat_interleave(n_per_prompt),
        prompts=list(prompts),
        logprobs=None if gen_lp is None else gen_lp.clone(),
    )


@functools.cache
def _cache_keyword(model_cls: type) -> str:
    """Name of the KV-cache argument of `forward`: `cache` (transformers >= 5.2x) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _layer_kv(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) [B, kv_heads, P, head_dim] of one layer of a transformers cache (old or new layout)."""
    if hasattr(layer, "keys"):
        return layer.keys, layer.values
    return layer[0], layer[1]


class HFStepper:
    """Decoding through the model's own forward with a transformers `DynamicCache` (works for any causal LM)."""

    def __init__(self, model: PreTrainedModel, cache: Any, n: int, mask: torch.Tensor, next_pos: torch.Tensor) -> None:
        self.model, self.cache, self.mask, self.next_pos = model, cache, mask, next_pos
        self.width = mask.shape[1]
        self.kw = _cache_keyword(type(model))
        if n > 1:
            cache.batch_repeat_interleave(n)

    def select(self, idx: torch.Tensor) -> None:
        self.cache.batch_select_indices(idx)
        self.mask, self.next_pos = self.mask[idx], self.next_pos[idx]

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        """Feed the token sampled at step t (a column after the prompt); return next-token logits [N, V]."""
        cols = self.width + t + 1
        ones = torch.ones((tokens.shape[0], cols - self.mask.shape[1]), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], 1) if ones.shape[1] else self.mask
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=(self.next_pos + t)[:, None],
            use_cache=True,
            **{self.kw: self.cache},
        )
        self.cache = _cache_of(out)
        return out.logits[:, -1]


def _fast_path_ok(model: PreTrainedModel) -> bool:
    """The hand-written Llama step applies: plain Llama layers, default RoPE, full attention."""
    if getattr(model, "lean_llama", False):  # `ceiling.models.llama.Llama`: the same layers by construction
        return True
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return (
        getattr(cfg, "model_type", "") == "llama"
        and type(model).__name__ == "LlamaForCausalLM"
        and rope.get("rope_type", "default") == "default"
        and not getattr(cfg, "pretraining_tp", 1) > 1
    )


class LlamaStepper:
    """Decoding for Llama models with a preallocated KV cache and a lean per-layer step.

    Same arithmetic as the transformers Llama forward (the model's own norm / projection modules, its RoPE
    table, `scaled_dot_product_attention`), without the per-call overhead of masks, cache objects and
    module dispatch; works on transformers' `LlamaForCausalLM` and on `ceiling.models.llama.Llama` alike.
    The prompt's cache comes from one prefill by the model itself. Models with hidden <= FUSE_MAX_HIDDEN
    run q/k/v and gate/up as one matmul each, from weights concatenated once per rollout.
    """

    def __init__(self, model: Any, cache: Any, n: int, mask: torch.Tensor, next_pos: torch.Tensor,
                 max_new_tokens: int) -> None:
        inner = model.get_decoder()
        self.model, self.inner, self.layers = model, inner, list(inner.layers)
        attn = self.layers[0].self_attn
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.n_heads = model.config.num_attention_heads
        self.n_kv = model.config.num_key_value_heads
        self.width = mask.shape[1]
        batch, total = mask.shape[0], mask.shape[1] + max_new_tokens
        self.total = total
        first_k, _ = _layer_kv(cache.layers[0] if hasattr(cache, "layers") else cache[0])
        # The cache holds `capacity` columns and doubles its completion part when full: most completions stop
        # long before max_new_tokens, and fresh memory costs page faults on CPU. Columns past the current
        # one are never read before they are written, so nothing is zeroed.
        capacity = min(total, self.width + GROW_FROM)
        shape = (len(self.layers), 2, batch, self.n_kv, capacity, self.head_dim)
        self.kv = torch.empty(shape, dtype=first_k.dtype, device=first_k.device)
        self.filled = self.width
        for i in range(len(self.layers)):
            k, v = _layer_kv(cache.layers[i] if hasattr(cache, "layers") else cache[i])
            self.kv[i, 0, :, :, : self.width] = k.repeat_interleave(n, 0)
            self.kv[i, 1, :, :, : self.width] = v.repeat_interleave(n, 0)
        self.attend = torch.ones((batch, 1, 1, total), dtype=torch.bool, device=mask.device)
        self.attend[:, 0, 0, : self.width] = mask.bool()
        self.padded = not bool(mask.all())  # without left padding attention needs no mask (a faster kernel)
        self.next_pos = next_pos
        positions = torch.arange(int(next_pos.max()) + max_new_tokens + 1, device=mask.device)[None]
        probe = torch.zeros((1, 1, 1), dtype=first_k.dtype, device=first_k.device)
        cos, sin = inner.rotary_emb(probe, positions)
        # [positions, head_dim]; the sine's first half negated: rotate_half(x) * sin == x.roll(half) * this
        self.cos, self.sin = cos[0], signed_sin(sin[0])
        # Small models: q/k/v and gate/up as one matmul each (weights are fixed while sampling, and per-call
        # overhead dominates at this size); large ones keep separate calls rather than copy their weights.
        cfg = model.config
        self.fused: list[tuple[Any, ...]] | None = None
        if self._fusable(cfg):
            # per layer: (norm 1 weight, eps, W_qkv, W_o, norm 2 weight, eps, W_gate_up, W_down); called as
            # plain functions (no module dispatch), with the same arithmetic as the modules
            self.fused = [(b.input_layernorm.weight, _norm_eps(b.input_layernorm),
                           torch.cat([b.self_attn.q_proj.weight, b.self_attn.k_proj.weight, b.self_attn.v_proj.weight]),
                           b.self_attn.o_proj.weight,
                           b.post_attention_layernorm.weight, _norm_eps(b.post_attention_layernorm),
                           torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight]), b.mlp.down_proj.weight)
                          for b in self.layers]
            self.final = (inner.embed_tokens.weight, inner.norm.weight, _norm_eps(inner.norm),
                          model.get_output_embeddings().weight)
            # small matmuls keep F.linear (transposing does not pay there). CPU only: on CUDA the transposed q
            # would leave SDPA's fast kernels
            transposed = int(cfg.hidden_size) >= TRANSPOSED_MIN_HIDDEN and mask.device.type == "cpu"
            self.linear = _linear_t if transposed else F.linear

    def _fusable(self, cfg: Any) -> bool:
        """The fused step applies: a small fp32 model without biases, SiLU MLP (F.rms_norm with the weight in
        fp32 equals the norm modules; in bf16 the modules round before the weight multiply)."""
        projections = [m for b in self.layers for m in (b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj,
                                                        b.self_attn.o_proj, b.mlp.gate_proj, b.mlp.up_proj, b.mlp.down_proj)]
        return (int(cfg.hidden_size) <= FUSE_MAX_HIDDEN and getattr(cfg, "hidden_act", "silu") == "silu"
                and all(m.bias is None for m in projections)
                and all(p.dtype == torch.float32 for p in self.model.parameters()))

    def _resize(self, idx: torch.Tensor | None, capacity: int) -> None:
        """Copy the filled columns of the cache (rows `idx`, or all) into a new one of `capacity` columns."""
        kv = self.kv[:, :, :, :, : self.filled]
        kv = kv if idx is None else kv.index_select(2, idx)
        new = kv.new_empty((*kv.shape[:4], capacity, kv.shape[5]))
        new[:, :, :, :, : self.filled] = kv
        self.kv = new

    def select(self, idx: torch.Tensor) -> None:
        self._resize(idx, self.kv.shape[4])
        self.attend, self.next_pos = self.attend[idx], self.next_pos[idx]
        self.padded = not bool(self.attend.all())

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        col = self.width + t
        if col >= self.kv.shape[4]:
            self._resize(None, min(self.total, self.width + 2 * (self.kv.shape[4] - self.width)))
        self.filled = col + 1
        n = tokens.shape[0]
        pos = self.next_pos + t
        cos, sin = self.cos[pos][:, None, :], self.sin[pos][:, None, :]  # [N, 1, head_dim]; sin sign-folded
        attend = self.attend[:, :, :, : col + 1] if self.padded else None
        if self.fused is not None:
            return self._step_fused(tokens, col, cos, sin, attend)
        half, nq, nkv = self.head_dim // 2, self.n_heads, self.n_kv
        h = self.inner.embed_tokens(tokens)  # [N, H]: one position per row, kept 2-D until attention
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(n, nq, self.head_dim)
            k = attn.k_proj(x).view(n, nkv, self.head_dim)
            v = attn.v_proj(x).view(n, nkv, self.head_dim)
            q, k = q * cos + q.roll(half, -1) * sin, k * cos + k.roll(half, -1) * sin
            h = h + attn.o_proj(self._attend(i, q, k, v, col, attend))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.model.get_output_embeddings()(self.inner.norm(h))

    def _attend(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, col: int,
                attend: torch.Tensor | None) -> torch.Tensor:
        """Write this token's k, v into layer i's cache at `col`; attention output [N, heads * head_dim]."""
        self.kv[i, 0, :, :, col] = k
        self.kv[i, 1, :, :, col] = v
        o = attention(q[:, :, None], self.kv[i, 0, :, :, : col + 1], self.kv[i, 1, :, :, : col + 1], attend,
                      self.scaling)
        return o.reshape(q.shape[0], -1)

    def _step_fused(self, tokens: torch.Tensor, col: int, cos: torch.Tensor, sin: torch.Tensor,
                    attend: torch.Tensor | None) -> torch.Tensor:
        """The step of models up to FUSE_MAX_HIDDEN: q/k/v and gate/up as one matmul each, RoPE on q and k together."""
        assert self.fused is not None
        n, nq, nkv, hd = tokens.shape[0], self.n_heads, self.n_kv, self.head_dim
        embed, norm_w, norm_eps, head_w = self.final
        h = F.embedding(tokens, embed)
        size = (h.shape[-1],)
        linear = self.linear
        for i, (w1, eps1, w_qkv, w_o, w2, eps2, w_gu, w_down) in enumerate(self.fused):
            qkv = linear(F.rms_norm(h, size, w1, eps1), w_qkv).reshape(n, nq + 2 * nkv, hd)
            qk = qkv[:, : nq + nkv]
            qk = qk * cos + qk.roll(hd // 2, -1) * sin
            h = h + linear(self._attend(i, qk[:, :nq], qk[:, nq:], qkv[:, nq + nkv :], col, attend), w_o)
            gate, up = linear(F.rms_norm(h, size, w2, eps2), w_gu).chunk(2, dim=-1)
            h = h + linear(F.silu(gate) * up, w_down)
        return linear(F.rms_norm(h, size, norm_w, norm_eps), head_w).contiguous()


def _linear_t(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`F.linear(x, weight)` for a few rows x [N, in], as the transpose of weight @ x.T (a view [N, out]).

    The same dot products (bitwise equal here), but BLAS runs the weight as the left operand, which is faster
    for decoding's few rows on CPU (figures: benchmarks/RESULTS.md)."""
    return torch.mm(weight, x.t()).t()


def _norm_eps(norm: torch.nn.Module) -> float:
    """An RMSNorm's epsilon (`eps` in `ceiling.models.llama`, `variance_epsilon` in transformers)."""
    eps = getattr(norm, "eps", None)
    return float(norm.variance_epsilon if eps is None else eps)


def _decode(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    stops: list[int],
    pad_id: int,
    return_logprobs: bool,
    fast: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decoding loop (call under inference mode). Returns completion ids, mask and logprobs [B, T]."""
    device = model.device
    batch = prompt_ids.shape[0] * n
    out_ids = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    out_mask = torch.zeros((batch, max_new_tokens), dtype=torch.long, device=device)
    out_lp = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device) if return_logprobs else None
    if max_new_tokens == 0:
        return out_ids, out_mask, out_lp
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    out = model(  # prefill: the distinct prompts only, once
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1].repeat_interleave(n, 0)
    mask = prompt_mask.repeat_interleave(n, 0)
    next_pos = mask.sum(dim=1)  # position of the first generated token
    use_fast = _fast_path_ok(model) if fast is None else fast
    stepper: HFStepper | LlamaStepper
    if use_fast:
        stepper = LlamaStepper(model, _cache_of(out), n, mask, next_pos, max_new_tokens)
    else:
        stepper = HFStepper(model, _cache_of(out), n, mask, next_pos)
    live = torch.arange(batch, device=device)  # original row index of each row in the batch
    active = torch.ones(batch, dtype=torch.bool, device=device)  # rows in the batch still generating
    stop_t = torch.as_tensor(stops, device=device)
    steps = 0
    for t in range(max_new_tokens):
        tokens = pick_tokens(logits, temperature, top_p, generator)
        rows = live[active]
        out_ids[rows, t] = tokens[active]
        out_mask[rows, t] = 1
        if out_lp is not None:
            chosen = logits.float().log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
            out_lp[rows, t] = chosen[active]
        steps = t + 1
        active &= ~torch.isin(tokens, stop_t)
        n_active = int(active.sum())
        if t == max_new_tokens - 1 or n_active == 0:
            break
        if n_active <= COMPACT_AT * len(live):  # drop finished rows from the batch and the cache
            idx = active.nonzero().squeeze(-1)
            stepper.select(idx)
            live, tokens, active = live[idx], tokens[idx], active[idx]
        logits = stepper.step(tokens, t)
    out_ids, out_mask = out_ids[:, :steps], out_mask[:, :steps]
    return out_ids, out_mask, None if out_lp is None else out_lp[:, :steps]
