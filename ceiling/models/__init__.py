"""Models: the tiny char tokenizer and Llama config, one loader, saving, batched sampling and log-probs.

Public API (see docs/design.md, "models"):
    build_char_tokenizer, tiny_config, count_parameters,
    load, LoadedModel, save, resolve_device, format_prompts,
    encode_prompt, encode_document, sample, Rollout, token_logprobs.
"""
from ceiling.models.config import count_parameters, tiny_config
from ceiling.models.loading import (
    SHIPPED_BASES,
    LoadedModel,
    available_bases,
    bases_dir,
    cache_dir,
    convert_smollm2,
    data_dir,
    format_prompts,
    load,
    resolve_device,
    resolve_dtype,
    save,
)
from ceiling.models.logprobs import token_logprobs
from ceiling.models.sampling import Rollout, eos_ids, left_pad, pick_tokens, position_ids_from_mask, sample
from ceiling.models.tokenizer import (
    build_char_tokenizer,
    decode_completions,
    encode_document,
    encode_prompt,
    encode_text,
)

__all__ = [
    "SHIPPED_BASES",
    "LoadedModel",
    "Rollout",
    "available_bases",
    "bases_dir",
    "build_char_tokenizer",
    "cache_dir",
    "convert_smollm2",
    "count_parameters",
    "data_dir",
    "decode_completions",
    "encode_document",
    "encode_prompt",
    "encode_text",
    "eos_ids",
    "format_prompts",
    "left_pad",
    "load",
    "pick_tokens",
    "position_ids_from_mask",
    "resolve_device",
    "resolve_dtype",
    "sample",
    "save",
    "tiny_config",
    "token_logprobs",
]
