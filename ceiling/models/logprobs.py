"""Per-token log-probabilities and full-vocabulary entropy of completions, memory-bounded.

The decoder runs once over prompt + completion (each distinct prompt only once: `ceiling.models.prefix`);
the LM head is applied only to the hidden states that predict completion tokens (and only where the
completion mask is 1), in chunks of `chunk` token rows, so a 49k-vocabulary model never holds a [B, T, V] logits tensor. With autograd on, each chunk is
checkpointed: its logits are recomputed in backward instead of being kept.

Assumes the usual causal-LM layout `logits = lm_head(decoder(x).last_hidden_state)` (Llama, SmolLM2, ...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.checkpoint import checkpoint

from ceiling.models.prefix import (
    can_pack,
    can_share,
    distinct_prompts,
    pack_max_keys,
    packed_chunks,
    packed_states,
    shared_prefix_hidden,
)
from ceiling.models.sampling import position_ids_from_mask

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _chunk_stats(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target), entropy in nats) for token rows hidden [N, H], targets [N]."""
    logp_all = head(hidden).float().log_softmax(dim=-1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(dim=-1)
    return logp, ent


def _chunk_logp(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return head(hidden).float().log_softmax(dim=-1).gather(-1, targets[:, None]).squeeze(-1)


def _contiguous(keep: torch.Tensor) -> bool:
    """Every row's mask is 1s then 0s (a `Rollout`'s completions are; packing needs it)."""
    return bool((keep == (torch.arange(keep.shape[1], device=keep.device) < keep.sum(1, keepdim=True))).all())


def _packed_rows(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                 keep: torch.Tensor) -> torch.Tensor:
    """`hidden[keep]` of the packed path: rows grouped by prompt, packed in chunks of bounded keys, put back."""
    _, inverse = distinct_prompts(input_ids, attention_mask, prompt_len)
    perm = torch.argsort(inverse, stable=True)  # a prompt's rows together: its prompt is computed once per chunk
    ids, mask, groups = input_ids[perm], attention_mask[perm], inverse[perm]
    parts = []
    for a, b in packed_chunks(keep[perm].sum(1), groups, prompt_len, pack_max_keys(model, prompt_len)):
        _, inv, counts = torch.unique_consecutive(groups[a:b], return_inverse=True, return_counts=True)
        first = counts.cumsum(0) - counts  # the chunk's rows are sorted by group: each group's first row
        parts.append(packed_states(model, ids[a:b], mask[a:b], prompt_len, first, inv))
    flat = torch.zeros(keep.shape, dtype=torch.long, device=keep.device)
    flat[keep] = torch.arange(int(keep.sum()), device=keep.device)  # each token's place in hidden[keep]
    states = torch.cat(parts)  # token by token, rows in the permuted order
    return torch.empty_like(states).index_copy(0, flat[perm][keep[perm]], states)


def token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_len: int,
    entropy: bool = True,
    chunk: int = 1024,
    share_prompts: bool = True,
    pack: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each completion token and the entropy of the model's next-token distribution there.

    input_ids / attention_mask: [B, P+T] with prompts left-padded to `prompt_len` = P (a `Rollout`'s layout).
    Returns (logp [B, T], entropy [B, T] or None), float32, zero where `attention_mask[:, P:]` is 0.
    Differentiable when autograd is on; cheap under `torch.no_grad()`. With `share_prompts`, rows whose
    prompt part (ids and mask) is identical (a GRPO group) share one prompt pass: see `ceiling.models.prefix`.
    With `pack` on a native Llama (`ceiling.models.llama`), the completions are also packed end to end so
    no padding is computed (`prefix.packed_states`) when every completion mask is contiguous (1s, then 0s).
    """
    if prompt_len < 1:
        raise ValueError("prompt_len must be >= 1 (the first completion token needs a context)")
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    batch, completion_len = input_ids.shape[0], input_ids.shape[1] - prompt_len
    targets = input_ids[:, prompt_len:]
    keep = attention_mask[:, prompt_len:].bool()
    if pack and completion_len > 0 and can_pack(model) and _contiguous(keep):  # no padding (`prefix.packed_states`)
        rows = _packed_rows(model, input_ids, attention_mask, prompt_len, keep)
    else:
        first, inverse = distinct_prompts(input_ids, attention_mask, prompt_len) if share_prompts else (None, None)
        if first is not None and inverse is not None and can_share(decoder, batch, len(first), prompt_len, completion_len):
            hidden = shared_prefix_hidden(model, input_ids, attention_mask, prompt_len, first, inverse)
        else:
            hidden = decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False,
            ).last_hidden_state[:, prompt_len - 1 : -1]
        rows = hidden[keep]  # [N, H]: the states that predict completion tokens
    wanted = targets[keep]
    use_ckpt = torch.is_grad_enabled() and rows.requires_grad and rows.shape[0] > chunk
    logps, ents = [], []
    for i in range(0, rows.shape[0], chunk):
        h, y = rows[i : i + chunk], wanted[i : i + chunk]
        if entropy:
            lp, en = checkpoint(_chunk_stats, head, h, y, use_reentrant=False) if use_ckpt else _chunk_stats(head, h, y)
            ents.append(en)
        else:
            lp = checkpoint(_chunk_logp, head, h, y, use_reentrant=False) if use_ckpt else _chunk_logp(head, h, y)
        logps.append(lp)
    logp = rows.new_zeros(targets.shape, dtype=torch.float32)
    logp = logp.masked_scatter(keep, torch.cat(logps)) if logps else logp
    ent = None
    if entropy:
        ent = rows.new_zeros(targets.shape, dtype=torch.float32)
        ent = ent.masked_scatter(keep, torch.cat(ents)) if ents else ent
    return logp, ent
