"""Models: the tiny char tokenizer and Llama config, one loader, saving, batched sampling and log-probs.

    tok = build_char_tokenizer()                       # 100 ids: <pad> <bos> <eos> <unk> "\n" ASCII 32..126
    model = LlamaForCausalLM(tiny_config(len(tok)))    # ~0.87 M parameters by default
    save(model, tok, "out/tiny")                       # atomic folder, safetensors
    lm = load("out/tiny")                              # or "tiny-low" | "smollm2" | any HF folder
    prompts = format_prompts(lm, ["12+34="])           # "<bos>12+34=" (chat template for chat models)
    r = sample(lm.model, lm.tokenizer, prompts, n_per_prompt=8, max_new_tokens=32,
               generator=torch.Generator().manual_seed(0))
    logp, ent = token_logprobs(lm.model, r.input_ids, r.attention_mask, r.prompt_len)

Tokenisation shared by pretraining, RL and evaluation: a pretraining document is
`encode_document(tok, prompt, completion)` = <bos> + prompt + completion + <eos>; a sampled prompt is
`encode_prompt(tok, format_prompts(lm, [prompt])[0])` = <bos> + prompt, i.e. the document's prefix.
FLOPs: `count_parameters(model)` = N (non-embedding); about 6 N per trained token, 2 N per generated token.
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
from ceiling.models.sampling import (
    Rollout,
    eos_ids,
    left_pad,
    pick_tokens,
    position_ids_from_mask,
    sample,
)
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
