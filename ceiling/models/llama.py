"""A plain-PyTorch Llama: the same function as transformers' `LlamaForCausalLM`, without its framework.

Why: the RL loop and the evaluator spend their time in many small forward passes. For the tiny bases the
cost of a pass is mostly per-call overhead (mask building, output capturing, cache objects), and the import
of transformers' modelling stack alone is about 150 MB of resident memory, more than the tiny model and
all its activations together. This module reads and writes the same Hugging Face folder layout
(`config.json`, `model.safetensors` with the same tensor names, `generation_config.json`), so a folder
saved here loads in `AutoModelForCausalLM.from_pretrained` and the other way round.

What it covers (`unsupported_reason` says why a folder is not covered; `load` then falls back to
transformers): `model_type` "llama" with the `LlamaForCausalLM` head, SiLU SwiGLU MLP without biases,
attention without biases, grouped-query attention, RoPE of type "default" (any theta), tied or untied
output embeddings, no tensor-parallel split (`pretraining_tp` 1), no quantisation. The tiny bases and
SmolLM2 are such models; Llama 3.x (rope type "llama3"), Qwen (attention biases) and others are not.

Interface: the subset of the transformers model API the rest of `ceiling` uses, with the same module tree
and names (`model.layers[i].self_attn.q_proj`, ...) so the lean decoding step of `ceiling.models.sampling`
and the shared-prompt scoring of `ceiling.models.prefix` run on it unchanged. Arithmetic follows
transformers' Llama: RMSNorm in float32, RoPE tables in float32, `scaled_dot_product_attention`.
Simplified: no attention dropout (the bases use none), no sliding windows, no flash-attention varlen path.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE = "config.json"
GENERATION_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"


def unsupported_reason(config: dict[str, Any]) -> str | None:
    """Why this `config.json` is outside what `Llama` implements exactly, or None when it is inside."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    checks = [
        (config.get("model_type") == "llama", f"model_type {config.get('model_type')!r} is not 'llama'"),
        ((config.get("architectures") or ["LlamaForCausalLM"]) == ["LlamaForCausalLM"],
         f"architectures {config.get('architectures')} is not ['LlamaForCausalLM']"),
        (config.get("hidden_act", "silu") == "silu", f"hidden_act {config.get('hidden_act')!r} is not 'silu'"),
        (not config.get("attention_bias", False) and not config.get("mlp_bias", False), "linear layers with biases"),
        (rope.get("rope_type", rope.get("type", "default")) == "default", f"rope type {rope.get('rope_type')!r}"),
        (config.get("pretraining_tp", 1) == 1, "pretraining_tp > 1"),
        ("quantization_config" not in config, "a quantised model"),
        (not config.get("attention_dropout", 0.0), "attention dropout"),
    ]
    for ok, why in checks:
        if not ok:
            return why
    return None


class LlamaConfig:
    """The `config.json` of a Llama folder: its fields as attributes, and the dict itself for saving."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = dict(raw)
        self.hidden_size = int(raw["hidden_size"])
        self.num_hidden_layers = int(raw["num_hidden_layers"])
        self.num_attention_heads = int(raw["num_attention_heads"])
        self.num_key_value_heads = int(raw.get("num_key_value_heads") or self.num_attention_heads)
        self.head_dim = int(raw.get("head_dim") or self.hidden_size // self.num_attention_heads)
        self.intermediate_size = int(raw["intermediate_size"])
        self.vocab_size = int(raw["vocab_size"])
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-6))
        rope = raw.get("rope_parameters") or {}
        self.rope_theta = float(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        self.max_position_embeddings = int(raw.get("max_position_embeddings", 2048))
        self.model_type = "llama"
        self.pretraining_tp = 1
        self.rope_parameters = {"rope_type": "default", "rope_theta": self.rope_theta}
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(self, key, raw.get(key))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


class GenerationConfig:
    """The fields of `generation_config.json` that sampling reads (stop ids), and the dict for saving."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = dict(raw)
        self.eos_token_id = raw.get("eos_token_id")


@dataclass
class Output:
    """What a forward returns: logits (head) or last_hidden_state (decoder), and the KV cache when asked."""

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    past_key_values: KVCache | None = None


class LayerKV:
    """Keys and values of one layer, [B, kv_heads, S, head_dim] (the attribute names of transformers' caches)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values = keys, values


class KVCache:
    """A growing per-layer KV cache with the batch operations `ceiling` uses (all differentiable)."""

    def __init__(self) -> None:
        self.layers: list[LayerKV] = []

    def update(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's keys/values of layer i; return the layer's full keys and values."""
        if i == len(self.layers):
            self.layers.append(LayerKV(k, v))
        else:
            layer = self.layers[i]
            layer.keys, layer.values = torch.cat([layer.keys, k], 2), torch.cat([layer.values, v], 2)
        return self.layers[i].keys, self.layers[i].values

    def length(self) -> int:
        return 0 if not self.layers else int(self.layers[0].keys.shape[2])

    def batch_repeat_interleave(self, n: int) -> None:
        for layer in self.layers:
            layer.keys, layer.values = layer.keys.repeat_interleave(n, 0), layer.values.repeat_interleave(n, 0)

    def batch_select_indices(self, idx: torch.Tensor) -> None:
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[idx], layer.values[idx]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and cast back (as transformers' LlamaRMSNorm)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:  # one fused op, the same numbers
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class Rotary(nn.Module):
    """Default RoPE: cos/sin tables [B, S, head_dim] for integer positions [B, S] (float32, as transformers)."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            freqs = position_ids[..., None].float() * self.inv_freq.float()
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float,
              causal: bool = False) -> torch.Tensor:
    """`scaled_dot_product_attention` with grouped-query heads. On CUDA with a mask, k and v are repeated to
    the query heads first (as transformers does): there SDPA's GQA mode has no masked kernel but the math one,
    which materialises the whole score matrix."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1 and mask is not None and q.device.type == "cuda":
        k, v, rep = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), 1
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=rep > 1)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """The RoPE sine table with its first half negated, so that transformers' `x * cos + rotate_half(x) * sin`
    is `x * cos + x.roll(half, -1) * signed_sin(sin)`: the same products (a sign moved between factors,
    exact in floating point) in two fewer operations."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.head_dim, self.n_heads, self.n_kv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, index: int) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]  # sin is sign-folded (`signed_sin`): rotate_half(x) * sin == roll(x) * it
        half = self.head_dim // 2
        q, k = q * cos + q.roll(half, -1) * sin, k * cos + k.roll(half, -1) * sin
        if cache is not None:
            k, v = cache.update(index, k, v)
        o = attention(q, k, v, mask, self.scaling, causal=mask is None and s > 1)
        return self.o_proj(o.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()  # registration order = transformers' (the optimizer's parameter order)
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, index: int) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask, cache, index)
        return h + self.mlp(self.post_attention_layernorm(h))


def causal_mask(attention_mask: torch.Tensor | None, query_len: int, past_len: int,
                device: torch.device | None = None) -> torch.Tensor | None:
    """Boolean mask [B, 1, S, past + S] (True = attend): causal, real keys only, and always the token itself
    (so a left-padding query row is never empty, which would give NaN). None when plain causal attention
    over the new tokens alone is exact (no cache, no padding)."""
    if attention_mask is None or (past_len == 0 and bool(attention_mask.all())):
        return None if past_len == 0 else _causal(query_len, past_len, None, device)
    return _causal(query_len, past_len, attention_mask.bool(), attention_mask.device)


def _causal(query_len: int, past_len: int, keys: torch.Tensor | None, device: torch.device | None) -> torch.Tensor:
    total = past_len + query_len
    q_pos = torch.arange(past_len, total, device=device)[:, None]
    k_pos = torch.arange(total, device=device)[None, :]
    causal = k_pos <= q_pos  # [S, K]
    if keys is None:
        return causal[None, None]
    return ((causal[None] & keys[:, None, -total:]) | (k_pos == q_pos)[None])[:, None]


class Decoder(nn.Module):
    """Embedding, blocks and final norm: `last_hidden_state` for input ids (transformers' `LlamaModel`)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.gradient_checkpointing = False
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = Rotary(cfg.head_dim, cfg.rope_theta)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool = False, attention_mask_4d: torch.Tensor | None = None, **_: Any) -> Output:
        """`attention_mask_4d` [B or 1, 1, S, past + S] (True = attend), when given, replaces the causal mask
        built from `attention_mask` (packed sequences: `ceiling.models.prefix.packed_states`)."""
        b, s = input_ids.shape
        past_len = past_key_values.length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + s, device=input_ids.device)[None].expand(b, s)
        cache = past_key_values if past_key_values is not None else (KVCache() if use_cache else None)
        h = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(h, position_ids)
        sin = signed_sin(sin)
        if attention_mask_4d is not None:
            mask = attention_mask_4d
        else:
            mask = causal_mask(attention_mask, s, past_len, input_ids.device)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, cache, i)
        return Output(last_hidden_state=self.norm(h), past_key_values=cache)


class Llama(nn.Module):
    """A Llama causal LM over a Hugging Face folder's config and weights (see the module docstring)."""

    lean_llama = True  # `ceiling.models.sampling` decodes it with the preallocated-cache step

    def __init__(self, config: LlamaConfig, generation_config: GenerationConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation_config or GenerationConfig({"eos_token_id": config.eos_token_id})
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    def get_decoder(self) -> Decoder:
        return self.model

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool = False, logits_to_keep: int = 0, **_: Any) -> Output:
        out = self.model(input_ids, attention_mask, position_ids, past_key_values, use_cache)
        h = out.last_hidden_state
        h = h[:, -logits_to_keep:] if logits_to_keep else h
        return Output(logits=self.lm_head(h), past_key_values=out.past_key_values)

    # ---- Hugging Face folder I/O ------------------------------------------------------------------------

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors under transformers' names; a tied output head is stored once (as transformers does)."""
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        return state

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True, **_: Any) -> None:
        """Write `config.json`, `generation_config.json` and `model.safetensors` into the folder `path`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        raw = self.config.to_dict()
        raw["dtype"] = str(self.dtype).removeprefix("torch.")
        raw["architectures"] = ["LlamaForCausalLM"]  # what this model is (an in-memory config may say None)
        (path / CONFIG_FILE).write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
        (path / GENERATION_FILE).write_text(json.dumps(self.generation_config.raw, indent=2, sort_keys=True) + "\n")
        save_file({k: v.cpu() for k, v in self.hf_state_dict().items()}, str(path / WEIGHTS_FILE), metadata={"format": "pt"})


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Build layers without initialising them (their tensors are replaced right after)."""
    saved = {cls: cls.reset_parameters for cls in (nn.Linear, nn.Embedding)}
    try:
        for cls in saved:
            cls.reset_parameters = lambda self: None  # type: ignore[method-assign]
        yield
    finally:
        for cls, fn in saved.items():
            cls.reset_parameters = fn  # type: ignore[method-assign]


def read_config(path: Path) -> dict[str, Any]:
    return json.loads((path / CONFIG_FILE).read_text())


def _weight_files(path: Path) -> list[Path]:
    index = path / WEIGHTS_INDEX_FILE
    if index.is_file():
        return sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
    return [path / WEIGHTS_FILE]


def from_folder(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Llama:
    """Build a `Llama` from a Hugging Face folder (safetensors weights, single file or sharded).

    `dtype` None keeps the stored tensors' dtype. Raises ValueError (naming the tensor or the reason) when
    the folder is not a supported Llama or its weights do not match its config.
    """
    from safetensors.torch import load_file

    path = Path(path)
    raw = read_config(path)
    why = unsupported_reason(raw)
    if why:
        raise ValueError(f"not a plain Llama: {why}")
    gen_file = path / GENERATION_FILE
    generation = GenerationConfig(json.loads(gen_file.read_text())) if gen_file.is_file() else None
    with _no_init():  # uninitialised (untouched, so not yet resident) tensors, replaced from the files below
        model = Llama(LlamaConfig(raw), generation)
    weights: dict[str, torch.Tensor] = {}
    for f in _weight_files(path):
        weights.update(load_file(str(f), device=str(device)))
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    expected = set(model.hf_state_dict())
    missing, unexpected = expected - set(weights), set(weights) - expected
    if missing or unexpected:
        raise ValueError(f"weights do not match config.json: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    if dtype is None:  # one dtype for the whole model, as transformers' "auto": config.json's, else the embedding's
        named = getattr(torch, str(raw.get("dtype") or raw.get("torch_dtype") or ""), None)
        dtype = named if isinstance(named, torch.dtype) else weights["model.embed_tokens.weight"].dtype
    weights = {k: v.to(dtype) for k, v in weights.items()}
    model.load_state_dict(weights, strict=False, assign=True)
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.to(device).eval()


def from_model(hf_model: Any) -> Llama:
    """A `Llama` holding copies of a transformers `LlamaForCausalLM`'s weights (for tests and conversion)."""
    raw = hf_model.config.to_dict()
    why = unsupported_reason(raw)
    if why:
        raise ValueError(f"not a plain Llama: {why}")
    gen = getattr(hf_model, "generation_config", None)
    model = Llama(LlamaConfig(raw), GenerationConfig(gen.to_dict()) if gen is not None else None)
    state = {k: v.detach().clone() for k, v in hf_model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)  # keeps the weights' dtype
    if set(missing) - {"lm_head.weight"} or unexpected:
        raise ValueError(f"weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.to(hf_model.device).eval()  # the RoPE buffer stays float32, as built


__all__ = ["KVCache", "Llama", "LlamaConfig", "from_folder", "from_model", "unsupported_reason"]
