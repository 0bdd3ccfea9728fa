"""`ceiling train`: GRPO-family RLVR on a base model, with checkpoints and exact resume.

Every `GRPOConfig` field is a flag (`--group-size 8`, `--beta 0.04`, `--random-reward`, ...). Settings are
taken, later ones winning, from: the defaults, the run's stored `config.json` (with `--resume`), a
`--config FILE.json`, and the flags given on the command line.

    ceiling train --base tiny-medium --tasks default --steps 50 --out runs/demo
    ceiling train --out runs/demo --steps 80 --resume      # continue (here: extend) the same run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ceiling.errors import error_at
from ceiling.rl.grpo import GRPOConfig, train


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.json", help="settings as a JSON object (GRPOConfig field names)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last complete checkpoint")
    group = parser.add_argument_group("training settings (GRPOConfig)")
    for f in dataclasses.fields(GRPOConfig):
        doc = f.metadata.get("doc", "")
        text = f"{doc} (default: {f.default})"
        ann = str(f.type)
        if ann.startswith("bool"):
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            kind = int if ann.startswith("int") else float if ann.startswith("float") else str
            group.add_argument(_flag(f.name), dest=f.name, type=kind, default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=text)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise error_at(path, f"cannot read ({exc.strerror or exc.__class__.__name__})") from None
    except ValueError as exc:
        raise error_at(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error_at(path, "expected a JSON object of settings")
    return data


def build_config(args: argparse.Namespace) -> GRPOConfig:
    """Merge defaults, the stored run config (resume), --config and explicit flags into a validated config."""
    names = [f.name for f in dataclasses.fields(GRPOConfig)]
    given = {n: getattr(args, n) for n in names if hasattr(args, n)}
    from_file: dict[str, Any] = {}
    if getattr(args, "config", None):
        from_file = _read_json(Path(args.config))
        GRPOConfig.from_dict(from_file, where=args.config)  # name a bad field against the file
    settings: dict[str, Any] = {}
    out = given.get("out", from_file.get("out"))
    stored = Path(out) / "config.json" if out else None
    if getattr(args, "resume", False) and stored is not None and stored.is_file():
        settings.update(_read_json(stored))
    settings.update(from_file)
    settings.update(given)
    return GRPOConfig.from_dict(settings)


def main(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    run = train(cfg, resume=bool(args.resume))
    print(f"run directory: {run}  (metrics.jsonl, checkpoints/)")
    return 0
