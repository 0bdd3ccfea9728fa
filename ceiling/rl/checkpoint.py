"""Checkpoints of an RL run: atomic save, discovery of the last complete one, exact resume.

A checkpoint is the folder `<run>/checkpoints/step_NNNNNN/` holding
- the policy in Hugging Face format (`save_pretrained`: `config.json`, `model.safetensors`, tokenizer files),
  loadable by `AutoModelForCausalLM.from_pretrained`;
- `optimizer.safetensors`: the optimizer's tensors (`state.<param index>.<name>`), with its param groups as
  JSON in the safetensors metadata (no pickle anywhere);
- `trainer_state.json`: step, config hash, cumulative counters, and the RNG states as JSON lists.

The folder is built under a temporary name and renamed into place (`ceiling.io.atomic_dir`), so a crash
mid-write leaves no folder called `step_NNNNNN`; only such complete folders count as checkpoints.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ceiling.errors import error_at
from ceiling.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    dumps,
    read_jsonl,
    repair_jsonl,
)

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """`<run>/checkpoints/step_NNNNNN` (six digits, more when needed)."""
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, as (step, folder), oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file() and any(p.glob("model*.safetensors")):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """The last complete checkpoint (step, folder), or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# ---- RNG state as JSON ---------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) global RNG states, as JSON-able lists."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` recorded (CUDA states only when CUDA is present)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# ---- optimizer state as safetensors ----------------------------------------------------------------

def optimizer_tensors(optimizer: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split `optimizer.state_dict()` into tensors (`state.<i>.<name>`) and JSON metadata (everything else)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = {"param_groups": dumps(sd["param_groups"]), "scalars": dumps(scalars), "format": str(FORMAT_VERSION)}
    return tensors, meta


def save_optimizer(optimizer: Any, path: str | Path) -> None:
    tensors, meta = optimizer_tensors(optimizer)
    save_file(tensors, str(path), metadata=meta)


def load_optimizer(optimizer: Any, path: str | Path) -> None:
    """Load what `save_optimizer` wrote into `optimizer` (same parameters, same order)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    tensors = load_file(str(path))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, extra in json.loads(meta.get("scalars", "{}")).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = json.loads(meta["param_groups"])
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    if sum(len(g["params"]) for g in groups) != n_params:
        raise error_at(path, "optimizer state does not match the model's parameters")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---- whole checkpoints -----------------------------------------------------------------------------

def save_checkpoint(run_dir: str | Path, step: int, model: Any, tokenizer: Any,
                    optimizer: Any, state: dict[str, Any]) -> Path:
    """Write checkpoint `step` atomically: HF model + tokenizer, optimizer tensors, trainer state + RNG."""
    path = checkpoint_path(run_dir, step)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_optimizer(optimizer, tmp / OPTIMIZER_FILE)
        record = {"format": FORMAT_VERSION, "step": step, **state, "rng": rng_state()}
        atomic_write_json(tmp / STATE_FILE, record, indent=None)
    return path


def read_state(path: str | Path) -> dict[str, Any]:
    """The `trainer_state.json` of a checkpoint folder."""
    file = Path(path) / STATE_FILE
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise error_at(file, f"unreadable trainer state ({exc.__class__.__name__})") from None


def truncate_metrics(path: str | Path, keep_before: int) -> int:
    """Keep only the metrics lines with step < keep_before (atomic rewrite). Returns the number dropped.

    A trailing partial line (a crash mid-append) is cut off first."""
    path = Path(path)
    if not path.exists():
        return 0
    repair_jsonl(path)
    rows = read_jsonl(path)
    kept = [r for r in rows if int(r.get("step", -1)) < keep_before]
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in kept))
    return len(rows) - len(kept)
