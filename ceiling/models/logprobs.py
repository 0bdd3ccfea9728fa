"""Per-token log-probabilities and full-vocabulary entropy of completions, memory-bounded.

The decoder runs once over prompt + completion (each distinct prompt only once: `ceiling.models.prefix`);
the LM head is applied only to the hidden states that predict completion tokens (and only where the
completion mask is 1), in chunks of `chunk` token rows, so a 49k-vocabulary model never holds a [B, T, V]
logits tensor. With autograd on, `HeadStats` computes the head, log-probs and entropy in one function with
its own backward: it keeps each chunk's probabilities (one [N, V] float32 block, the only copy) and writes
the head's weight gradient into one buffer, where autograd would keep logits, log-softmax and their
products and allocate a [V, H] gradient per chunk. A bias-less `nn.Linear` head is assumed; other heads
take autograd with each chunk checkpointed (its logits recomputed in backward).

Assumes the usual causal-LM layout `logits = lm_head(decoder(x).last_hidden_state)` (Llama, SmolLM2, ...).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
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


class HeadStats(torch.autograd.Function):
    """(log p(target), entropy) of softmax(hidden @ weight.T) for token rows, with a lean backward.

    forward(hidden [N, H], weight [V, H], targets [N], chunk) -> (logp [N], entropy [N]), float32.
    The backward of log p(y) and H with respect to the logits z of a row is, with p = softmax(z),
        d log p(y) / dz = onehot(y) - p,        dH / dz = -p * (log p + H),
    so it needs only p: the forward keeps p (float32 [N, V]) and nothing else of size V. Gradients of
    the weight from all chunks are summed into one [V, H] buffer. Matmuls run in the autocast dtype when
    autocast is on (as a plain `head(hidden)` would); softmax arithmetic is float32. One backward per graph.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        logps, ents, probs = [], [], []
        for i in range(0, hidden.shape[0], chunk):
            logits = F.linear(hidden[i : i + chunk], weight)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            logits -= torch.logsumexp(logits, dim=-1, keepdim=True)  # now log p, in place
            logps.append(logits.gather(-1, targets[i : i + chunk, None]).squeeze(-1))
            p = logits.exp()
            ents.append(-(p * logits).sum(-1))  # not linalg.vecdot: autocast would run that in bf16
            probs.append(p)
        entropy = torch.cat(ents)
        ctx.save_for_backward(hidden, weight, targets, entropy)
        ctx.probs, ctx.chunk = probs, chunk
        return torch.cat(logps), entropy

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp: torch.Tensor, grad_ent: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        hidden, weight, targets, ent = ctx.saved_tensors
        probs, chunk = ctx.probs, ctx.chunk
        if probs is None:
            raise RuntimeError("HeadStats keeps its probabilities for one backward only")
        ctx.probs = None
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        wide = torch.promote_types(weight.dtype, torch.float32)  # the weight gradient is summed at least in float32
        grad_weight = torch.zeros_like(weight, dtype=wide) if ctx.needs_input_grad[1] else None
        with_entropy = bool(grad_ent.any())
        for n, i in enumerate(range(0, hidden.shape[0], chunk)):
            p, g = probs[n], grad_logp[i : i + chunk]
            if with_entropy:  # -g p - ge (p log p + p H), with p log p = 0 where p underflowed to 0
                ge = grad_ent[i : i + chunk]
                p_log_p = torch.special.xlogy(p, p).mul_(ge[:, None])
                grad_z = p.mul_(-(ge * ent[i : i + chunk] + g)[:, None]).sub_(p_log_p)
            else:
                grad_z = p.mul_(-g[:, None])  # p is not needed again
            rows = torch.arange(grad_z.shape[0], device=grad_z.device)
            grad_z.index_put_((rows, targets[i : i + chunk]), g, accumulate=True)
            if grad_hidden is not None:
                grad_hidden[i : i + chunk] = grad_z.to(weight.dtype) @ weight
            if grad_weight is not None:
                grad_weight.addmm_(grad_z.to(wide).t(), hidden[i : i + chunk].to(wide))
            probs[n] = None
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def _lean_head(head: torch.nn.Module) -> bool:
    """`HeadStats` applies: a plain linear head without bias."""
    return isinstance(head, torch.nn.Linear) and head.bias is None


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
    grad = torch.is_grad_enabled() and (rows.requires_grad or any(w.requires_grad for w in head.parameters()))
    if grad and _lean_head(head) and rows.shape[0] > 0:
        lp, en = HeadStats.apply(rows, head.weight, wanted, chunk)
        logp = lp.new_zeros(targets.shape).masked_scatter(keep, lp)
        return logp, (en.new_zeros(targets.shape).masked_scatter(keep, en) if entropy else None)
    use_ckpt = grad and rows.shape[0] > chunk
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
