"""The sweep config: a grid of cells over bases, seeds, beta (and optionally lr), plus random-reward controls.

A config file is a JSON object:

    {
      "name": "sweep-default",                 # runs go to <runs-dir>/<name>/<cell>, the report to <reports-dir>/<name>
      "description": "...",                    # optional, shown on the report
      "preset": "default",                     # the `ceiling run` preset every cell starts from
      "train": {...}, "eval": {...}, "fit": {...},   # shared overrides of the preset (as in a run config)
      "grid": [                                # one object or a list; each is a full product, the union is taken
        {"base": ["tiny-low", "tiny-medium", "tiny-high"], "seed": [0, 1], "beta": [0.0]},
        {"base": ["tiny-medium"], "seed": [0, 1], "beta": [0.02, 0.1], "lr": [3e-4]}
      ],
      "controls": [{"base": ["tiny-medium"], "seed": [0], "beta": [0.0]}],   # random reward, same axes
      "arms": [{"arm": "sft", "base": ["tiny-medium"], "seed": [0],  # other training recipes, same axes,
                "train": {"sft_examples_per_step": 4}}],             # each with its own train overrides
      "reference_beta": 0.0                    # runs at this beta (and the first lr) feed the across-run regression
    }

A base is a shipped name (`tiny-low`, ...) or a model folder. Every cell is an ordinary `ceiling run` setup
(`RunSpec`); the cell's seed seeds training only, so that every cell is evaluated on the same held-out
prompts with the same sampling stream (evaluation and fit seeds stay those of the shared settings).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceiling.pipeline import RunSpec, merge_sections, preset
from ceiling.errors import error_at
from ceiling.io import read_json

TOP_LEVEL = ("name", "description", "preset", "train", "eval", "fit", "grid", "controls", "arms", "reference_beta")
AXES = ("base", "seed", "beta", "lr")


@dataclass(frozen=True)
class Cell:
    """One point of the sweep: a run of `base` with `seed`, `beta`, `lr`, and a real or random reward."""

    name: str
    """Run name and folder name, made from the coordinates (e.g. `tiny-low-s0-b0`)."""
    base: str
    """Base model: a shipped name or a model folder."""
    seed: int
    """Training seed (evaluation and fit keep the shared seeds)."""
    beta: float
    """KL penalty coefficient."""
    lr: float
    """Peak learning rate."""
    control: bool
    """True for a random-reward control (reward drawn independently of correctness)."""
    spec: RunSpec = field(compare=False, hash=False)
    """The full `ceiling run` setup of this cell."""
    arm: str = "rl"
    """The training recipe: "rl" (the grid and controls) or an `arms` block's name (e.g. "sft": RL with a
    supervised mix-in), compared against the "rl" cells of the same base, seed and beta."""

    def coordinates(self) -> dict[str, Any]:
        return {"cell": self.name, "base": self.base, "seed": self.seed, "beta": self.beta, "lr": self.lr,
                "reward": "random" if self.control else "verified", "arm": self.arm}

    def spec_hash(self) -> str:
        """A hash of everything the cell's results depend on (its train, eval and fit settings)."""
        data = {"train": self.spec.train, "eval": self.spec.eval, "fit": self.spec.fit}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SweepConfig:
    """A parsed sweep config (see the module docstring)."""

    name: str
    """Sweep name: runs go to <runs-dir>/<name>/<cell>, the report to <reports-dir>/<name>."""
    cells: list[Cell]
    """The grid's cells, then the random-reward controls (no duplicates)."""
    description: str = ""
    """Shown on the report."""
    reference_beta: float = 0.0
    """Cells at this beta (and `reference_lr`) feed the across-run regression."""
    reference_lr: float = 0.0
    """The learning rate of the first grid cell at `reference_beta`."""
    source: str = ""
    """The config file it was read from."""

    def real_cells(self) -> list[Cell]:
        return [c for c in self.cells if not c.control and c.arm == "rl"]

    def arm_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.arm != "rl"]

    def control_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.control]


def base_label(base: str) -> str:
    """A short name for a base: a shipped name as is, a folder by its last component."""
    label = Path(base.rstrip("/")).name or base
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def cell_name(base: str, seed: int, beta: float, lr: float | None, control: bool, arm: str = "rl") -> str:
    """`<base>-s<seed>-b<beta>[-lr<lr>][-random][-<arm>]`, e.g. `tiny-low-s0-b0.05`."""
    name = f"{base_label(base)}-s{seed}-b{beta:g}"
    if lr is not None:
        name += f"-lr{lr:g}"
    return name + ("-random" if control else "") + ("" if arm == "rl" else f"-{arm}")


def _as_list(value: Any, path: Path, where: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise error_at(path, "must not be empty", field=where)
    return values


def _axis(block: dict[str, Any], axis: str, default: Any, path: Path, where: str) -> list[Any]:
    """Values of one axis, checked: base -> str, seed -> int >= 0, beta -> float >= 0, lr -> float > 0."""
    values = _as_list(block.get(axis, default), path, f"{where}.{axis}")
    out: list[Any] = []
    for v in values:
        bad = (axis == "base" and not (isinstance(v, str) and v)) or (
            axis == "seed" and (isinstance(v, bool) or not isinstance(v, int) or v < 0)) or (
            axis in ("beta", "lr") and (isinstance(v, bool) or not isinstance(v, (int, float))
                                        or v < 0 or (axis == "lr" and v == 0)))
        if bad:
            kind = {"base": "a base name or model folder", "seed": "an integer >= 0", "beta": "a number >= 0",
                    "lr": "a number > 0"}[axis]
            raise error_at(path, f"{v!r} is not {kind}", field=f"{where}.{axis}")
        out.append(float(v) if axis in ("beta", "lr") else v)
    return out


def _blocks(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    raw = data.get(key, [] if key in ("controls", "arms") else None)
    if raw is None:
        raise error_at(path, "a sweep needs a grid (bases x seeds x beta)", field=key)
    blocks = raw if isinstance(raw, list) else [raw]
    for i, b in enumerate(blocks):
        if not isinstance(b, dict):
            raise error_at(path, "must be a JSON object with lists base / seed / beta / lr", field=f"{key}[{i}]")
        known = AXES + (("arm", "train") if key == "arms" else ())
        unknown = set(b) - set(known)
        if unknown:
            raise error_at(path, f"unknown axis (known: {', '.join(known)})", field=f"{key}[{i}].{min(unknown)}")
        if key == "arms":
            arm = b.get("arm")
            if not isinstance(arm, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", arm) or arm == "rl":
                raise error_at(path, "an arm needs a name of lowercase letters, digits or '_' (not 'rl')",
                               field=f"{key}[{i}].arm")
            if not isinstance(b.get("train", {}), dict):
                raise error_at(path, "must be a JSON object of train settings", field=f"{key}[{i}].train")
    return blocks


def _cells(blocks: list[dict[str, Any]], shared: RunSpec, control: bool, key: str, path: Path) -> list[Cell]:
    out = []
    for i, b in enumerate(blocks):
        where = f"{key}[{i}]"
        bases = _axis(b, "base", shared.train.get("base", "tiny-medium"), path, where)
        seeds = _axis(b, "seed", shared.train.get("seed", 0), path, where)
        betas = _axis(b, "beta", shared.train.get("beta", 0.0), path, where)
        lrs = _axis(b, "lr", shared.train.get("lr", 1e-4), path, where)
        arm = b.get("arm", "rl")
        extra = b.get("train", {})
        clash = set(AXES + ("random_reward", "out")) & set(extra)
        if clash:
            raise error_at(path, "set this through the arm's axes", field=f"{where}.train.{min(clash)}")
        for base, seed, beta, lr in itertools.product(bases, seeds, betas, lrs):
            name = cell_name(base, seed, beta, lr if "lr" in b else None, control, arm)
            spec = copy.deepcopy(shared)
            spec.name = name
            spec.train.update({**copy.deepcopy(extra), "base": base, "seed": seed, "beta": beta, "lr": lr,
                               "random_reward": control})
            out.append(Cell(name=name, base=base, seed=seed, beta=beta, lr=lr, control=control, arm=arm, spec=spec))
    return out


def parse_sweep(data: Any, path: str | Path = "<sweep config>") -> SweepConfig:
    """A SweepConfig from a config object (one-line errors naming the field)."""
    path = Path(path)
    if not isinstance(data, dict):
        raise error_at(path, "a sweep config must be a JSON object")
    unknown = set(data) - set(TOP_LEVEL)
    if unknown:
        raise error_at(path, f"unknown key (known: {', '.join(TOP_LEVEL)})", field=min(unknown))
    shared = merge_sections(preset(str(data.get("preset", "default"))), data, path)
    clash = set(AXES + ("random_reward", "out")) & set(data.get("train", {}))
    if clash:
        raise error_at(path, "set this through the grid, not the shared train settings", field=f"train.{min(clash)}")
    cells = (_cells(_blocks(data, "grid", path), shared, False, "grid", path)
             + _cells(_blocks(data, "controls", path), shared, True, "controls", path)
             + _cells(_blocks(data, "arms", path), shared, False, "arms", path))
    seen: dict[str, Cell] = {}
    for c in cells:
        if c.name in seen and seen[c.name].base != c.base:
            raise error_at(path, f"two bases share the cell name {c.name!r} ({seen[c.name].base}, {c.base}); "
                                 "give model folders distinct names", field="grid")
        seen.setdefault(c.name, c)
    unique = list(seen.values())
    if not any(not c.control for c in unique):
        raise error_at(path, "the grid holds no cell", field="grid")
    name = str(data.get("name", path.stem))
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise error_at(path, "use letters, digits, '.', '_' or '-' only", field="name")
    real = [c for c in unique if not c.control and c.arm == "rl"]
    ref_beta = data.get("reference_beta", min(c.beta for c in real))
    if isinstance(ref_beta, bool) or not isinstance(ref_beta, (int, float)):
        raise error_at(path, "must be a number", field="reference_beta")
    if not any(c.beta == float(ref_beta) for c in real):
        raise error_at(path, f"no grid cell has beta {ref_beta}", field="reference_beta")
    ref_lr = next(c.lr for c in real if c.beta == float(ref_beta))
    return SweepConfig(name=name, cells=unique, description=str(data.get("description", "")),
                       reference_beta=float(ref_beta), reference_lr=float(ref_lr), source=str(path))


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and parse a sweep config file."""
    return parse_sweep(read_json(path, what="sweep config"), path)
