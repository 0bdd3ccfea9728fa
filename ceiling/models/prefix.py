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
