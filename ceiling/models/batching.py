"""How the rows of a batch are cut into forward passes: how many rows one pass may take (an activation-memory
budget), and which rows go together (few padded tokens computed, a prompt group's prompt computed once, or
completions packed end to end). The RL loop asks `rows_per_forward` and `model_chunks`; the rest is the
bucketing programme they rest on. None of it changes a number: only which rows share a forward call.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ceiling.models.prefix import MIN_SAVING, can_pack, shares_prompts

AUTO_ACTIVATION_BYTES_CPU = 2 * 2**30  # rows_per_forward with no set size: training activations under this on CPU ...
AUTO_ACTIVATION_SHARE_CUDA = 0.25  # ... and under this share of the GPU's memory on CUDA
CALL_OVERHEAD_TOKENS = {"cpu": 128, "cuda": 1024}  # a forward call's fixed cost, in tokens


def rows_per_forward(model: Any, device: torch.device, prompt_len: int, longest: int, group_size: int,
                     configured: int = 0, grad: bool = True) -> int:
    """Sequences per forward: `configured`, or (0) as many as keep the training activations within budget
    (`AUTO_ACTIVATION_BYTES_CPU` on CPU, `AUTO_ACTIVATION_SHARE_CUDA` of the GPU), estimated as 4 bytes x
    (layers x (10 hidden + 4 MLP) + vocab) per token (the vocabulary term: the head's kept probabilities,
    `models.logprobs.HeadStats`) over `prompt_len + longest` tokens a row, a shared prompt counting once
    per group of `group_size`. Passes without gradients keep far less and take 4x as many."""
    if configured > 0:
        size = configured
    else:
        c = model.config
        hidden = int(getattr(c, "hidden_size", 1024))
        per_token = 4 * (int(getattr(c, "num_hidden_layers", 24)) * (10 * hidden + 4 * int(getattr(c, "intermediate_size", 4 * hidden)))
                         + int(getattr(c, "vocab_size", 32000)))
        budget = AUTO_ACTIVATION_BYTES_CPU
        if device.type == "cuda":
            budget = int(AUTO_ACTIVATION_SHARE_CUDA * torch.cuda.get_device_properties(device).total_memory)
        prompt = prompt_len
        if shares_prompts(model):  # a group's prompt is computed once (`forward_chunks` keeps groups together)
            prompt = math.ceil(prompt / max(1, group_size))
        size = max(1, budget // per_token // (prompt + max(longest, 1)))
    return size if grad else 4 * size


def model_chunks(model: Any, device: torch.device, rows: torch.Tensor, lengths: torch.Tensor, groups: torch.Tensor,
                 prompt_len: int, max_rows: int) -> list[torch.Tensor]:
    """`forward_chunks` as `model` on `device` is best served: prompts shared when the model can compute a
    group's prompt once (`models.prefix.shares_prompts`), completions packed when it scores them packed
    (`models.prefix.can_pack`), and the device's cost of a forward call."""
    overhead = CALL_OVERHEAD_TOKENS.get(device.type, CALL_OVERHEAD_TOKENS["cuda"])
    return forward_chunks(rows, lengths, prompt_len, max_rows, device, groups=groups,
                          share_prompts=shares_prompts(model), overhead_tokens=overhead, packed=can_pack(model))


def bucket_cost(width: Any, rows: Any, distinct_prompts: Any, prompt_len: int, overhead_tokens: int,
                share_prompts: bool) -> Any:
    """Tokens one forward over `rows` rows padded to `width` completion tokens computes, plus the call
    overhead: with prompt sharing (`ceiling.models.prefix`, used when it skips >= MIN_SAVING of the
    tokens) each distinct prompt is computed once and the completions run in a second call. Elementwise
    on numpy arrays (the bucketing programme prices all candidate buckets ending at a row at once)."""
    plain = np.asarray(rows) * (prompt_len + np.asarray(width))
    saved = (np.asarray(rows) - np.asarray(distinct_prompts)) * prompt_len
    shared = np.logical_and(share_prompts, saved >= MIN_SAVING * plain)
    return np.where(shared, plain - saved + 2 * overhead_tokens, plain + overhead_tokens).astype(float)


def length_buckets(lengths: list[int], prompt_len: int, max_rows: int, overhead_tokens: int,
                   groups: list[int] | None = None, share_prompts: bool = False) -> list[tuple[int, int]]:
    """Cut rows, in the given order, into contiguous buckets [(start, end), ...] of at most `max_rows` rows
    that minimise the total `bucket_cost` (padded tokens computed plus a fixed cost per forward call).
    `groups` (the prompt of each row) lets a bucket count its distinct prompts once when `share_prompts`.
    Exact dynamic programme over cut points."""
    return _buckets(lengths, prompt_len, max_rows, overhead_tokens, groups, share_prompts)[0]


def _buckets(lengths: list[int], prompt_len: int, max_rows: int, overhead_tokens: int,
             groups: list[int] | None, share_prompts: bool) -> tuple[list[tuple[int, int]], float]:
    n = len(lengths)
    if n == 0:
        return [], 0.0
    band = min(max_rows, n)
    lens = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    grp = np.asarray(groups if groups is not None else range(n), dtype=np.int64)
    # Price every candidate bucket [j - d, j] (last row j, d + 1 rows) at once, as arrays [n, band]:
    # its width (longest completion) and its distinct prompts, grown one row leftwards per column d.
    order = np.lexsort((np.arange(n), grp))
    same_next = np.full(n, n, dtype=np.int64)  # the next row of the same prompt group (n: none)
    follows = grp[order][1:] == grp[order][:-1]
    same_next[order[:-1][follows]] = order[1:][follows]
    ends = np.arange(n)
    width = np.zeros((n, band), dtype=np.int32)  # int32 / float32: n x band arrays (2,048 rows: ~4 MB each)
    distinct = np.zeros((n, band), dtype=np.int32)
    width[:, 0], distinct[:, 0] = lens, 1
    for d in range(1, band):
        start = ends - d
        ok = start >= 0
        s_idx = np.where(ok, start, 0)
        width[:, d] = np.maximum(width[:, d - 1], lens[s_idx])
        distinct[:, d] = distinct[:, d - 1] + (same_next[s_idx] > ends)  # a prompt not seen further right
    rows = np.arange(1, band + 1)[None, :]
    cost = bucket_cost(width, rows, distinct, prompt_len, overhead_tokens, share_prompts)
    cost[ends[:, None] - rows + 1 < 0] = math.inf  # buckets that would start before row 0
    best = np.zeros(n + 1)  # best[j]: cost of rows [0, j)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        k = min(band, j)  # candidate buckets [j - 1 - d, j), d = 0 .. k - 1
        total = best[j - 1 - np.arange(k)] + cost[j - 1, :k]
        d = int(np.argmin(total))  # the first minimum: the shortest bucket among equals
        best[j], cut[j] = total[d], j - 1 - d
    spans, j = [], n
    while j > 0:
        spans.append((int(cut[j]), j))
        j = int(cut[j])
    return spans[::-1], float(best[n])


def forward_chunks(rows: torch.Tensor, lengths: torch.Tensor, prompt_len: int, max_rows: int,
                   device: torch.device, groups: torch.Tensor | None = None,
                   share_prompts: bool = False, overhead_tokens: int = 128, packed: bool = False) -> list[torch.Tensor]:
    """Row indices in forward-pass chunks that compute few tokens: rows sorted by completion length (little
    padding), or, when prompts can be shared, whole prompt groups kept together (each prompt computed
    once; groups ordered by their longest completion, rows by length within a group), whichever order's
    best cut (`length_buckets`, a call costing `overhead_tokens` besides its tokens) computes fewer tokens.
    `packed` (the model scores packed completions, `models.prefix.packed_states`): padding costs nothing,
    so the grouped order is cut into as few chunks of `max_rows` as there can be."""
    lens = lengths[rows].cpu()
    by_length = grouped = torch.argsort(lens, stable=True)
    grp = groups[rows].cpu() if groups is not None else None
    if (share_prompts or packed) and grp is not None:
        longest = torch.zeros(int(grp.max()) + 1, dtype=lens.dtype).scatter_reduce(0, grp, lens, reduce="amax")
        grouped = by_length[torch.argsort(grp[by_length], stable=True)]  # stable sorts, last key first: length
        grouped = grouped[torch.argsort(longest[grp[grouped]], stable=True)]  # in a group, groups by their longest
    if packed:
        order = rows[grouped.to(rows.device)]
        return [order[a : a + max_rows] for a in range(0, len(order), max_rows)]
    candidates = [by_length] if grouped is by_length else [by_length, grouped]
    best: tuple[float, list[tuple[int, int]], torch.Tensor] | None = None
    for perm in candidates:
        spans, cost = _buckets(lens[perm].tolist(), prompt_len, max_rows, overhead_tokens,
                               None if grp is None else grp[perm].tolist(), share_prompts)
        if best is None or cost < best[0]:
            best = (cost, spans, perm)
    assert best is not None
    order = rows[best[2].to(rows.device)]
    return [order[a:b] for a, b in best[1]]
