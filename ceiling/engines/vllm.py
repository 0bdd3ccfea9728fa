"""`ceiling eval --engine vllm`: sampling through vLLM's offline engine (an optional extra, GPU only).

    pip install -e ".[vllm]"       # on a CUDA machine: vLLM brings its own CUDA build of torch
    ceiling eval --run runs/r1 --engine vllm --n-samples 256 --ks 1,4,16,64,256

`VLLMSampler` implements `ceiling.engines.sampling.Sampler` (the signature of `ceiling.models.sample`), so the
evaluator is unchanged: all n samples per prompt (reward, pass@k to k = 256, diversity) come from vLLM, into
the same eval.csv. The evaluator still scores the first `score_samples` of each prompt in-house (own
log-probs, full-vocabulary entropy, KL in both directions, NLL): full-vocabulary entropy needs the whole
next-token distribution, which vLLM does not return cheaply. vLLM's own per-token log-probs come with the
samples (`SamplingParams(logprobs=0)`, raw log-probs of the model before temperature and top-p, i.e. at
temperature 1), and `score()` gives log-probs of given completions under any model folder through
`prompt_logprobs` (the policy's samples scored under the base: what KL(policy || base) needs);
benchmarks/gpu_check.sh compares both with the in-house numbers.

A model is identified by its folder (`model.name_or_path`, set by `ceiling.models.load`); one vLLM engine per
folder is kept, at most `max_engines` at a time (the base and the checkpoint being evaluated).
"""
from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from ceiling.engines import require
from ceiling.engines.sampling import rollout_from_tokens, seed_from
from ceiling.errors import CeilingError
from ceiling.models import Rollout
from ceiling.models.sampling import eos_ids
from ceiling.models.tokenizer import encode_text


def unavailable_reason() -> str | None:
    """Why the vLLM engine cannot run here (one line), or None when it can."""
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU (none visible)"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return 'vllm is not installed: pip install -e ".[vllm]"'
    return None


def model_folder(model: Any) -> str:
    """The folder a loaded model came from (`ceiling.models.load` records it as `name_or_path`)."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path:
        raise CeilingError("the vllm engine needs models loaded from a folder (ceiling.models.load)")
    return str(path)


class VLLMSampler:
    """`ceiling.models.sample` through vLLM: same arguments, same `Rollout`, prompts tokenised the same way."""

    def __init__(self, gpu_memory_utilization: float = 0.4, max_engines: int = 2, dtype: str = "float32",
                 max_model_len: int | None = None, **llm_kwargs: Any) -> None:
        reason = unavailable_reason()
        if reason:
            raise CeilingError(f"--engine vllm: {reason}")
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_engines = max_engines
        self.llm_kwargs = {"dtype": dtype, "seed": 0, **llm_kwargs}
        if max_model_len:
            self.llm_kwargs["max_model_len"] = max_model_len
        self._engines: OrderedDict[str, Any] = OrderedDict()

    def engine(self, folder: str) -> Any:
        """The vLLM `LLM` of a model folder (made on first use; the least recently used one is closed first)."""
        if folder in self._engines:
            self._engines.move_to_end(folder)
            return self._engines[folder]
        while len(self._engines) >= self.max_engines:
            _, old = self._engines.popitem(last=False)
            del old
            gc.collect()
            torch.cuda.empty_cache()
        vllm = require("vllm")
        llm = vllm.LLM(model=folder, tokenizer=folder, gpu_memory_utilization=self.gpu_memory_utilization,
                       **self.llm_kwargs)
        self._engines[folder] = llm
        return llm

    def __call__(self, model: Any, tokenizer: Any, prompts: Sequence[str], n_per_prompt: int = 1,
                 max_new_tokens: int = 64, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None, return_logprobs: bool = False,
                 eos_token_id: int | Sequence[int] | None = None) -> Rollout:
        vllm = require("vllm")
        stops = eos_ids(model, tokenizer, eos_token_id)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
        encoded = [encode_text(tokenizer, p) for p in prompts]
        params = vllm.SamplingParams(
            n=n_per_prompt, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
            seed=seed_from(generator), stop_token_ids=list(stops), skip_special_tokens=True,
            logprobs=0 if return_logprobs else None, detokenize=False)
        outputs = self.engine(model_folder(model)).generate(
            [{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=False)
        completions, logprobs = [], []
        for out in outputs:  # in prompt order; each holds n_per_prompt completions
            for c in out.outputs:
                completions.append(list(c.token_ids))
                if return_logprobs:
                    logprobs.append([step[t].logprob for t, step in zip(c.token_ids, c.logprobs)])
        return rollout_from_tokens(encoded, completions, n_per_prompt, stops, pad_id, tokenizer, prompts,
                                   logprobs if return_logprobs else None, device=getattr(model, "device", "cpu"))

    def score(self, folder: str, rollout: Rollout) -> torch.Tensor:
        """Log-probs [B, T] of `rollout`'s completion tokens under the model in `folder` (0 on padding), from
        vLLM's `prompt_logprobs` over prompt + completion (one token generated and ignored)."""
        vllm = require("vllm")
        params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        rows = []
        for i in range(rollout.batch_size):
            ids = rollout.input_ids[i][rollout.attention_mask[i].bool()].tolist()
            rows.append(ids)
        outputs = self.engine(folder).generate([{"prompt_token_ids": r} for r in rows], params, use_tqdm=False)
        out = torch.zeros(rollout.completion_mask.shape, dtype=torch.float32)
        for i, (r, o) in enumerate(zip(rows, outputs)):
            n = int(rollout.lengths[i])
            tail = o.prompt_logprobs[len(r) - n:]
            out[i, :n] = torch.tensor([step[t].logprob for t, step in zip(r[len(r) - n:], tail)])
        return out
