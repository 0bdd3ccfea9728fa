"""The sampling interface every evaluation engine implements: `ceiling.models.sample`'s signature.

    sampler(model, tokenizer, prompts, n_per_prompt, max_new_tokens, temperature, top_p, generator,
            return_logprobs=False) -> Rollout

`ceiling.models.sample` (the in-house batched KV-cache sampler) is one implementation, `ceiling.engines.vllm.
VLLMSampler` (vLLM's offline engine) another; the evaluator takes either (`evaluate_checkpoints(...,
sampler=...)`). The contract, checked on the in-house side by tests/test_engines_sampling.py:

- `prompts` are formatted strings (`format_prompts`), tokenised without special tokens added;
- B = len(prompts) x n_per_prompt rows, prompt-major: row i answers prompt `group[i]` = i // n_per_prompt;
- `input_ids` / `attention_mask` [B, P+T]: the prompt left-padded to P, then the completion; `completion_mask`
  is 1 up to and including the first stop token, `lengths` counts those tokens, `truncated` marks rows with no
  stop token within `max_new_tokens`; `texts` are the completions decoded without special tokens;
- temperature 0 is greedy; the same generator state gives the same completions;
- `logprobs` (with `return_logprobs`) are log p(token) under the model at temperature 1 before top-p: the
  model's own, equal to scoring the completion with `ceiling.models.token_logprobs`, whatever the sampling
  temperature.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from ceiling.models import Rollout
from ceiling.models.sampling import left_pad
from ceiling.models.tokenizer import decode_completions


@runtime_checkable
class Sampler(Protocol):
    """Draws `n_per_prompt` completions per formatted prompt and returns them as a `Rollout`."""

    def __call__(self, model: Any, tokenizer: Any, prompts: Sequence[str], n_per_prompt: int = 1,
                 max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None, return_logprobs: bool = False) -> Rollout: ...


def rollout_from_tokens(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                        n_per_prompt: int, stops: Sequence[int], pad_id: int, tokenizer: Any,
                        prompts: Sequence[str], logprobs: Sequence[Sequence[float]] | None = None,
                        device: torch.device | str = "cpu") -> Rollout:
    """A `Rollout` from token lists (an engine's output): one prompt per group, B completions prompt-major.

    Each completion is cut after its first stop token (the mask convention of `ceiling.models.sample`)."""
    rows, lps = [], []
    for r, comp in enumerate(completion_ids):
        comp = list(comp)
        stop_at = next((i for i, t in enumerate(comp) if t in stops), None)
        keep = len(comp) if stop_at is None else stop_at + 1
        rows.append(comp[:keep])
        if logprobs is not None:
            lps.append(list(logprobs[r])[:keep])
    p_ids, p_mask = left_pad([list(p) for p in prompt_ids], pad_id)
    p_ids, p_mask = p_ids.repeat_interleave(n_per_prompt, 0), p_mask.repeat_interleave(n_per_prompt, 0)
    width = max([len(r) for r in rows] + [1])
    c_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    c_mask = torch.zeros((len(rows), width), dtype=torch.long)
    lp = torch.zeros((len(rows), width), dtype=torch.float32) if logprobs is not None else None
    for i, r in enumerate(rows):
        c_ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long) if r else c_ids[i, :0]
        c_mask[i, : len(r)] = 1
        if lp is not None and r:
            lp[i, : len(r)] = torch.as_tensor(lps[i], dtype=torch.float32)
    lengths = c_mask.sum(dim=1)
    ended = torch.tensor([bool(r) and r[-1] in stops for r in rows])
    return Rollout(
        input_ids=torch.cat([p_ids, c_ids], dim=1).to(device),
        attention_mask=torch.cat([p_mask, c_mask], dim=1).to(device),
        prompt_len=int(p_ids.shape[1]), completion_ids=c_ids.to(device), completion_mask=c_mask.to(device),
        lengths=lengths.to(device), truncated=(~ended).to(device), texts=decode_completions(tokenizer, rows),
        group=torch.arange(len(prompt_ids), device=device).repeat_interleave(n_per_prompt),
        prompts=list(prompts), logprobs=None if lp is None else lp.to(device))


def seed_from(generator: torch.Generator | None) -> int:
    """A seed for an engine with its own RNG, drawn from `generator` (so successive calls differ and the
    same generator state gives the same seed); 0 without a generator."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
