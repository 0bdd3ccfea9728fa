"""Shared-prefix scoring: run the decoder once per distinct prompt, then once over the completions.

GRPO scores G completions of each prompt; a plain forward re-processes the same prompt G times. Here the
distinct prompt rows (ids and mask, left-padded to P) go through the decoder once with a KV cache, the
cache rows are repeated to the B completion rows, and the completions [B, T] are decoded on top of it.
The result is the same causal computation (the same positions, masks and weights), differentiable
through the shared prompt pass, so `token_logprobs` gives the same values and gradients either way.
"""
from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

import torch

from ceiling.models.sampling import position_ids_from_mask

if TYPE_CHECKING:
    from transformers import PreTrainedModel

MIN_SAVING = 0.2  # share prompts when that skips at least this share of the tokens of a plain forward


def distinct_prompts(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of one representative row per distinct prompt [U], inverse: row -> its prompt's index [B])."""
    key = torch.cat([input_ids[:, :prompt_len], attention_mask[:, :prompt_len].to(input_ids.dtype)], dim=1)
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), key.shape[0], dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, inverse, torch.arange(key.shape[0], device=key.device), reduce="amin")
    return first, inverse


@functools.cache
def _cache_keyword(decoder_cls: type) -> str | None:
    """Name of the decoder's KV-cache argument (`cache` or `past_key_values`), None if it has neither."""
    params = inspect.signature(decoder_cls.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def shares_prompts(model: PreTrainedModel) -> bool:
    """Whether `token_logprobs` can share prompts on this model at all (a KV-cache decoder, no gradient
    checkpointing while training); whether it pays is decided per call by `can_share`."""
    decoder = model.get_decoder()
    checkpointing = bool(getattr(decoder, "gradient_checkpointing", False)) and decoder.training
    return not checkpointing and _cache_keyword(type(decoder)) is not None


def can_share(decoder: torch.nn.Module, batch: int, n_distinct: int, prompt_len: int, completion_len: int) -> bool:
    """Sharing pays and applies: it skips >= MIN_SAVING of the tokens ((batch - n_distinct) prompts of
    `prompt_len` out of batch x (prompt_len + completion_len)), some completion tokens, a decoder whose
    forward takes a KV cache, and no gradient checkpointing (transformers turns the cache off there)."""
    saved = (batch - n_distinct) * prompt_len
    checkpointing = bool(getattr(decoder, "gradient_checkpointing", False)) and decoder.training
    return (
        completion_len > 0
        and saved >= MIN_SAVING * batch * (prompt_len + completion_len)
        and not checkpointing
        and _cache_keyword(type(decoder)) is not None
    )


def shared_prefix_hidden(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         prompt_len: int, first: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, H] at the positions that predict the T completion tokens of each row.

    Row b's prompt is computed once, as row `first[inverse[b]]`; position t holds the state after the
    prompt and the first t completion tokens (the state at P - 1 + t of a full forward).
    """
    decoder = model.get_decoder()
    kw = _cache_keyword(type(decoder))
    assert kw is not None
    prompt_mask = attention_mask[first, :prompt_len]
    out = decoder(
        input_ids=input_ids[first, :prompt_len],
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
    )
    cache = getattr(out, "cache", None)
    cache = cache if cache is not None else out.past_key_values
    last_prompt = out.last_hidden_state[inverse, prompt_len - 1 :]  # predicts the first completion token
    if input_ids.shape[1] - prompt_len < 2:
        return last_prompt
    cache.batch_select_indices(inverse)  # one cache row per completion row (indexing: differentiable)
    positions = position_ids_from_mask(attention_mask)
    tail = decoder(
        input_ids=input_ids[:, prompt_len:-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, prompt_len:-1],
        use_cache=True,
        **{kw: cache},
    ).last_hidden_state
    return torch.cat([last_prompt, tail], dim=1)


# ---- packed completions (the native Llama) ---------------------------------------------------------------

PACK_MAX_HIDDEN = 512  # packed scoring for models up to this hidden size (see `can_pack`)
PACK_MIN_KEYS = 512  # a packed call may always hold this many keys (prompts + tail tokens) ...
PACK_KEYS_PER_HIDDEN = 1.5  # ... or 1.5 x hidden size: a token's wasted attention scores (against the whole
# pack's keys, ~4 x heads x head_dim FLOPs each) then stay under ~25% of its 2N/L matmul FLOPs per layer


def can_pack(model: PreTrainedModel) -> bool:
    """Packed scoring applies and pays: the model is `ceiling.models.llama.Llama` (its decoder takes a 4-D
    mask) and small (hidden size <= PACK_MAX_HIDDEN), where fewer calls and no padding win; in larger models a
    pack's attention over other rows' keys costs more than the padding it saves (benchmarks/RESULTS.md)."""
    return bool(getattr(model, "lean_llama", False)) and int(model.config.hidden_size) <= PACK_MAX_HIDDEN


def pack_max_keys(model: PreTrainedModel, prompt_len: int = 0) -> int:
    """The most keys (distinct prompt tokens + packed tail tokens) one packed call attends over; always room
    for one prompt besides, so a long prompt is not recomputed for every few completion tokens."""
    return prompt_len + max(PACK_MIN_KEYS, int(PACK_KEYS_PER_HIDDEN * int(model.config.hidden_size)))


def packed_chunks(lengths: torch.Tensor, groups: torch.Tensor, prompt_len: int, max_keys: int) -> list[tuple[int, int]]:
    """Split rows [0, B) into consecutive chunks of at most `max_keys` keys (prompt_len per distinct prompt
    group, plus each row's completion tokens but its last); a chunk has at least one row."""
    tail = (lengths.clamp(min=1) - 1).tolist()
    grp = groups.tolist()
    chunks, start, keys, seen = [], 0, 0, set()
    for i, (m, g) in enumerate(zip(tail, grp)):
        add = m + (prompt_len if g not in seen else 0)
        if i > start and keys + add > max_keys:
            chunks.append((start, i))
            start, keys, seen = i, 0, set()
            add = m + prompt_len
        keys += add
        seen.add(g)
    chunks.append((start, len(tail)))
    return chunks


def packed_states(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                  first: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The final hidden states that predict the completion tokens, [N, H] with N = real completion tokens, in
    the order of `hidden[attention_mask[:, P:] == 1]` (row by row), computed without any padding.

    The distinct prompts run once (as in `shared_prefix_hidden`). Then every row's completion tokens but
    its last (whose prediction is not needed) are laid end to end in ONE sequence of M tokens, each at its
    own position, attending to its own prompt's keys and its own row's earlier tokens through a 4-D mask
    [M, U*P + M]. The same causal computation as the padded forward (same positions, same keys), with no
    padded token computed; completions must be contiguous (mask 1 then 0, as a `Rollout`'s are).
    """
    decoder = model.get_decoder()
    P, device = prompt_len, input_ids.device
    prompt_mask = attention_mask[first, :P]
    out = decoder(input_ids=input_ids[first, :P], attention_mask=prompt_mask,
                  position_ids=position_ids_from_mask(prompt_mask), use_cache=True)
    n_groups = int(first.shape[0])
    comp = attention_mask[:, P:].bool()  # [B, T]
    batch, width = comp.shape
    last_prompt = out.last_hidden_state[:, -1]  # [U, H]: predicts each row's first completion token
    feeds = comp[:, 1:]  # [B, T-1]: completion token t is an input (its successor t + 1 exists)
    if not bool(feeds.any()):  # every completion is one token: the prompts' last states are all we need
        return last_prompt[inverse][comp[:, 0]]
    tokens = input_ids[:, P:-1][feeds]  # [M]
    row_of = torch.arange(batch, device=device)[:, None].expand(batch, width - 1)[feeds]
    t_of = torch.arange(width - 1, device=device)[None, :].expand(batch, width - 1)[feeds]
    group_of = inverse[row_of]
    positions = prompt_mask.sum(1)[group_of] + t_of
    key_group = torch.arange(n_groups, device=device).repeat_interleave(P)
    own_prompt = (group_of[:, None] == key_group[None, :]) & prompt_mask.reshape(-1).bool()[None, :]
    own_earlier = (row_of[:, None] == row_of[None, :]) & (t_of[None, :] <= t_of[:, None])
    mask = torch.cat([own_prompt, own_earlier], dim=1)[None, None]  # [1, 1, M, U*P + M]
    cache = out.past_key_values
    for layer in cache.layers:  # the U prompt caches side by side as one sequence of U*P keys
        layer.keys = layer.keys.transpose(0, 1).reshape(1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.values = layer.values.transpose(0, 1).reshape(1, layer.values.shape[1], -1, layer.values.shape[3])
    tail = decoder(input_ids=tokens[None], position_ids=positions[None], past_key_values=cache,
                   attention_mask_4d=mask).last_hidden_state[0]  # [M, H]
    index = torch.zeros((batch, width), dtype=torch.long, device=device)
    index[:, 0] = inverse
    index[:, 1:][feeds] = n_groups + torch.arange(tokens.shape[0], device=device)
    return torch.cat([last_prompt, tail])[index[comp]]
