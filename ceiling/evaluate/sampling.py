"""The model side of the evaluator: draw samples once per model, score them under another model.

All n samples per prompt feed reward, pass@k and diversity; the first `score_samples` of each prompt are
kept as tensors (`Chunk`s, one per `ceiling.models.sample` call) and scored by the model itself (log-probs,
entropy) and by the other model (KL in both directions, NLL fallback). Scoring is memory-bounded and
skips most padding (`_score_rows`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import Callable, Sequence

import numpy as np
import torch

from ceiling.evaluate.config import EvalConfig
from ceiling.evaluate.estimators import kl_sequence
from ceiling.evaluate.measures import SampleArrays
from ceiling.models import LoadedModel, Rollout, format_prompts, sample, token_logprobs

SCORE_TOKENS = 2 ** 16
"""Most tokens (rows x width) run through one scoring forward pass, to bound activation memory."""
SCORE_ROWS = 256
"""Most rows per scoring pass: rows of similar completion length are scored together, cut to their longest."""


@dataclass
class Chunk:
    """The scored rows of one batched generation: tensors, global prompt index of each row, own log-probs."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    prompt_len: int
    prompt_index: np.ndarray
    logp: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class ModelSamples:
    """One model's samples: `arrays` has all of them; `chunks` keep the scored ones as tensors (for KL)."""

    chunks: list[Chunk]
    arrays: SampleArrays

    @property
    def scored_prompt_index(self) -> np.ndarray:
        """Prompt index of each scored sequence, in the order of `sequence_kl`'s output."""
        return np.concatenate([ch.prompt_index for ch in self.chunks])


def _score_rows(loaded: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                entropy: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """token_logprobs over rows [B, P+T] -> numpy (logp [B, T], entropy [B, T] or None).

    Rows are sorted by completion length and scored in batches of SCORE_ROWS rows (at most SCORE_TOKENS
    tokens), each cut to its longest completion, so padding after short completions costs little.
    """
    n_rows, width = input_ids.shape[0], input_ids.shape[1] - prompt_len
    lengths = attention_mask[:, prompt_len:].sum(dim=1).cpu()
    order = torch.argsort(lengths, stable=True)
    logp = np.zeros((n_rows, width))
    ent = np.zeros((n_rows, width)) if entropy else None
    dev = loaded.model.device
    step = max(1, min(SCORE_ROWS, SCORE_TOKENS // input_ids.shape[1]))
    with torch.no_grad():
        for start in range(0, n_rows, step):
            idx = order[start:start + step]
            t = max(1, int(lengths[idx].max()))
            lp, en = token_logprobs(loaded.model, input_ids[idx, : prompt_len + t].to(dev),
                                    attention_mask[idx, : prompt_len + t].to(dev), prompt_len, entropy=entropy)
            logp[idx.numpy(), :t] = lp.double().cpu().numpy()
            if ent is not None and en is not None:
                ent[idx.numpy(), :t] = en.double().cpu().numpy()
    return logp, ent


def draw(loaded: LoadedModel, prompts: Sequence[str], verify: Callable[[int, str], float],
         extract: Callable[[int, str], str | None], cfg: EvalConfig, max_new_tokens: int,
         timings: dict[str, float] | None = None, sampler: Callable[..., Rollout] = sample) -> ModelSamples:
    """n samples per prompt (seeded: the same stream for every model) with rewards and answers; the first
    `cfg.scored_samples()` of each prompt are also scored (own log-probs and full-vocabulary entropy).

    `verify(i, text)` / `extract(i, text)` score a completion of prompt i. `sampler` has the signature of
    `ceiling.models.sample` (the default); tests pass one that returns chosen completions.
    """
    timings = timings if timings is not None else {}
    texts_in = format_prompts(loaded, list(prompts))
    n, n_scored = cfg.n_samples, cfg.scored_samples()
    per_call = max(1, cfg.batch_size // n)
    gen = torch.Generator(device=loaded.model.device).manual_seed(cfg.seed)
    chunks: list[Chunk] = []
    idx_l, texts, token_ids, lengths, ent_sum, scored = [], [], [], [], [], []
    for start in range(0, len(texts_in), per_call):
        t0 = perf_counter()
        with torch.no_grad():
            ro = sampler(loaded.model, loaded.tokenizer, texts_in[start:start + per_call], n_per_prompt=n,
                         max_new_tokens=max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, generator=gen)
        t1 = perf_counter()
        timings["generate"] = timings.get("generate", 0.0) + t1 - t0
        p_idx = start + ro.group.cpu().numpy().astype(np.int64)
        mask = ro.completion_mask.cpu().numpy().astype(np.float64)
        sel = torch.arange(ro.input_ids.shape[0]) % n < n_scored  # rows are prompt-major: sample j of a prompt
        ids, att = ro.input_ids.cpu()[sel], ro.attention_mask.cpu()[sel]
        logp, ent = _score_rows(loaded, ids, att, ro.prompt_len, entropy=True)
        cmask = ro.completion_mask.cpu()[sel]
        chunks.append(Chunk(ids, att, cmask, ro.prompt_len, p_idx[sel.numpy()], logp * cmask.numpy()))
        timings["score"] = timings.get("score", 0.0) + perf_counter() - t1
        comp = ro.completion_ids.cpu().numpy()
        token_ids.extend(tuple(comp[r, : int(mask[r].sum())].tolist()) for r in range(comp.shape[0]))
        idx_l.append(p_idx)
        texts.extend(ro.texts)
        lengths.append(mask.sum(axis=1))
        e = np.zeros(len(p_idx))
        e[sel.numpy()] = (ent * cmask.numpy()).sum(axis=1)
        ent_sum.append(e)
        scored.append(sel.numpy())
    t0 = perf_counter()
    prompt_index = np.concatenate(idx_l)
    rewards = np.array([verify(int(i), t) for i, t in zip(prompt_index, texts, strict=True)], dtype=np.float64)
    answers = [extract(int(i), t) for i, t in zip(prompt_index, texts, strict=True)]
    timings["verify"] = timings.get("verify", 0.0) + perf_counter() - t0
    greedy = None
    if cfg.greedy:
        t0 = perf_counter()
        greedy = _greedy_rewards(loaded, texts_in, verify, cfg, max_new_tokens, sampler)
        timings["greedy"] = timings.get("greedy", 0.0) + perf_counter() - t0
    arrays = SampleArrays(prompt_index, rewards, answers, texts, token_ids, np.concatenate(lengths),
                          np.concatenate(ent_sum), greedy, np.concatenate(scored))
    return ModelSamples(chunks, arrays)


def _greedy_rewards(loaded: LoadedModel, prompts: Sequence[str], verify: Callable[[int, str], float],
                    cfg: EvalConfig, max_new_tokens: int, sampler: Callable[..., Rollout] = sample) -> np.ndarray:
    out: list[float] = []
    gen = torch.Generator(device=loaded.model.device).manual_seed(cfg.seed)
    for start in range(0, len(prompts), cfg.batch_size):
        with torch.no_grad():
            ro = sampler(loaded.model, loaded.tokenizer, list(prompts[start:start + cfg.batch_size]),
                         n_per_prompt=1, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, generator=gen)
        out.extend(verify(start + i, t) for i, t in enumerate(ro.texts))
    return np.asarray(out, dtype=np.float64)


def score_under(other: LoadedModel, samples: ModelSamples) -> list[np.ndarray]:
    """Log-probs [rows, T] of `samples`' completion tokens under another model, chunk by chunk (masked)."""
    out = []
    for ch in samples.chunks:
        lp, _ = _score_rows(other, ch.input_ids, ch.attention_mask, ch.prompt_len, entropy=False)
        out.append(lp * ch.completion_mask.numpy())
    return out


def sequence_kl(samples: ModelSamples, other_logp: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence k1 and k3 estimates of KL(sampler || other), in the order of `samples.arrays`."""
    k1s, k3s = [], []
    for ch, lq in zip(samples.chunks, other_logp, strict=True):
        k1, k3 = kl_sequence(ch.logp, lq, ch.completion_mask.numpy())
        k1s.append(k1)
        k3s.append(k3)
    return np.concatenate(k1s), np.concatenate(k3s)


def sequence_nll(other_logp: list[np.ndarray], samples: ModelSamples) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence summed NLL and token counts of `samples` under the model that produced `other_logp`."""
    nll = np.concatenate([-lp.sum(axis=1) for lp in other_logp])
    tok = np.concatenate([ch.completion_mask.numpy().sum(axis=1) for ch in samples.chunks]).astype(np.float64)
    return nll, tok


def document_nll(loaded: LoadedModel, documents: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Summed NLL and token count of each tokenised document (its first token is context, the rest scored)."""
    docs = [list(d) for d in documents if len(d) >= 2]
    if not docs:
        return np.zeros(0), np.zeros(0)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(docs), max(len(d) for d in docs)), pad, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, d in enumerate(docs):  # right padding: the "prompt" is the first token, the rest a completion
        ids[r, :len(d)] = torch.tensor(d)
        att[r, :len(d)] = 1
    lp, _ = _score_rows(loaded, ids, att, 1, entropy=False)
    return -lp.sum(axis=1), att[:, 1:].sum(dim=1).numpy().astype(np.float64)
