"""A small Llama-style config for the tiny char models, and parameter counting for FLOP accounting.

Default sizes (vocab 100, char tokenizer): hidden 128, 4 layers, 4 heads (head dim 32), MLP 384 (SwiGLU),
128 positions, tied input/output embeddings. Parameters: 12,800 embedding + 4 x 213,248 per layer (attention
65,536, MLP 147,456, two RMSNorm 256) + 128 final norm = 865,920 in all, 853,120 non-embedding.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ceiling.models.tokenizer import char_vocab

if TYPE_CHECKING:
    from transformers import LlamaConfig


def tiny_config(
    vocab_size: int | None = None,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 128,
    num_kv_heads: int | None = None,
    rope_theta: float = 10000.0,
    initializer_range: float = 0.02,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
) -> LlamaConfig:
    """A tiny `LlamaConfig` (tied embeddings, RoPE, RMSNorm, SwiGLU MLP of `intermediate_size`, default 3 x hidden).

    `vocab_size` defaults to the char tokenizer's (100); the special ids match `build_char_tokenizer`.
    """
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(char_vocab()) if vocab_size is None else vocab_size,
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size if intermediate_size is None else intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads if num_kv_heads is None else num_kv_heads,
        hidden_act="silu",
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        rms_norm_eps=1e-5,
        use_cache=True,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        attention_bias=False,
        attention_dropout=0.0,
        mlp_bias=False,
    )


def count_parameters(model: torch.nn.Module, non_embedding: bool = True) -> int:
    """Number of distinct parameters (tied weights counted once).

    With `non_embedding=True` the input embedding (and an untied output embedding) are left out, the
    convention of the scaling-law literature: training costs about 6 N FLOPs per token and generation 2 N.
    """
    seen: set[int] = set()
    skip: set[int] = set()
    if non_embedding:
        for getter in ("get_input_embeddings", "get_output_embeddings"):
            layer = getattr(model, getter, lambda: None)()
            if layer is not None and getattr(layer, "weight", None) is not None:
                skip.add(id(layer.weight))
    total = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total
