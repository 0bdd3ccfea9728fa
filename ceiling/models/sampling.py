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
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ceiling.models.tokenizer import decode_completions, encode_text


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
    probs = scaled.softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


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
) -> Rollout:
    """Sample `n_per_prompt` completions for each prompt string (already formatted: see `format_prompts`).

    Prompts are tokenised without adding special tokens. Output tensors live on the model's device and
    are ordinary tensors (usable with autograd afterwards).
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
            stops, pad_id, return_logprobs,
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


@functools.lru_cache(maxsize=None)
def _cache_keyword(model_cls: type) -> str:
    """Name of the KV-cache argument of `forward`: `cache` (transformers >= 5.2x) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


def _cache_of(out: object) -> object:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values")


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
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = _cache_of(out)
    cache_kw = _cache_keyword(type(model))
    if n > 1:
        cache.batch_repeat_interleave(n)
    logits = out.logits[:, -1].repeat_interleave(n, 0)
    mask = torch.cat(
        [prompt_mask.repeat_interleave(n, 0), torch.ones((batch, max_new_tokens), dtype=torch.long, device=device)], 1
    )
    next_pos = prompt_mask.sum(dim=1).repeat_interleave(n, 0)  # position of the first generated token
    live = torch.arange(batch, device=device)  # original row index of each row still in the batch
    stop_t = torch.as_tensor(stops, device=device)
    width = prompt_ids.shape[1]
    steps = 0
    for t in range(max_new_tokens):
        tokens = pick_tokens(logits, temperature, top_p, generator)
        out_ids[live, t] = tokens
        out_mask[live, t] = 1
        if out_lp is not None:
            out_lp[live, t] = logits.float().log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
        steps = t + 1
        keep = ~torch.isin(tokens, stop_t)
        if t == max_new_tokens - 1 or not bool(keep.any()):
            break
        if not bool(keep.all()):
            idx = keep.nonzero().squeeze(-1)
            cache.batch_select_indices(idx)
            live, tokens, mask, next_pos = live[idx], tokens[idx], mask[idx], next_pos[idx]
        out = model(
            input_ids=tokens[:, None],
            attention_mask=mask[:, : width + t + 1],
            position_ids=(next_pos + t)[:, None],
            use_cache=True,
            **{cache_kw: cache},
        )
        cache = _cache_of(out)
        logits = out.logits[:, -1]
    out_ids, out_mask = out_ids[:, :steps], out_mask[:, :steps]
    return out_ids, out_mask, None if out_lp is None else out_lp[:, :steps]
