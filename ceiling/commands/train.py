"""`ceiling train`: GRPO-family RLVR on a base model, with checkpoints and exact resume.

Every `GRPOConfig` field is a flag (`--group-size 8`, `--beta 0.04`, `--random-reward`, ...). Settings are
taken, later ones winning, from: the training settings of `ceiling run`'s default preset (so that
`ceiling train --out DIR` learns), the run's stored `config.json` (with `--resume`), a `--config FILE.json`,
and the flags given on the command line.

    ceiling train --out runs/demo                          # the default preset's training, ~1 min on a CPU
    ceiling train --base tiny-low --beta 0.05 --steps 50 --out runs/demo2
    ceiling train --out runs/demo --steps 120 --resume     # continue (here: extend) the same run
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ceiling.config import add_flags, given_flags
from ceiling.io import read_json
from ceiling.pipeline import preset
from ceiling.rl.grpo import RENAMED, GRPOConfig


def defaults() -> dict[str, Any]:
    """The settings `ceiling train` starts from: GRPOConfig's, overridden by the default preset's training."""
    return {**GRPOConfig().to_dict(), **preset("default").train}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE.json", help="settings as a JSON object (GRPOConfig field names)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last complete checkpoint")
    parser.add_argument("--engine", default="native", choices=["native", "trl"],
                        help="native (ceiling.rl, one process) or trl (TRL's GRPOTrainer; docs/engines.md)")
    parser.add_argument("--processes", type=int, default=1,
                        help="trl engine: processes under `accelerate launch` (GPUs, or CPU processes)")
    parser.add_argument("--watch", action="store_true",
                        help="early warning while it trains (ceiling.fit.monitor; alarms printed beside the progress)")
    parser.add_argument("--watch-stop", metavar="KINDS", default="",
                        help="with --watch: alarm kinds that stop the run, e.g. collapse,over_optimisation (or any)")
    parser.add_argument("--watch-arl0", type=float, metavar="STEPS",
                        help="with --watch: expected steps between false alarms on a run that does not change (10000)")
    group = parser.add_argument_group("training settings (GRPOConfig; defaults: `ceiling run`'s default preset)")
    add_flags(group, GRPOConfig, defaults=defaults())


def build_config(args: argparse.Namespace) -> GRPOConfig:
    """Merge defaults, the stored run config (resume), --config and explicit flags into a validated config."""
    given = given_flags(args, GRPOConfig)
    from_file: dict[str, Any] = {}
    if getattr(args, "config", None):
        from_file = read_json(args.config, what="settings file")
        GRPOConfig.from_dict(from_file, where=args.config)  # name a bad field against the file
        from_file = {RENAMED.get(k, k): v for k, v in from_file.items()}
    settings = defaults()
    out = given.get("out", from_file.get("out"))
    stored = Path(out) / "config.json" if out else None
    if getattr(args, "resume", False) and stored is not None and stored.is_file():
        settings.update(GRPOConfig.from_dict(read_json(stored, what="run config"), where=stored).to_dict())
    settings.update(from_file)
    settings.update(given)
    return GRPOConfig.from_dict(settings)


def main(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    from ceiling.engines import train_with

    if getattr(args, "watch", False):
        from ceiling.integrations.native import train_watched

        run = train_watched(args, cfg)
    else:
        run = train_with(args.engine, cfg, resume=bool(args.resume), processes=args.processes)
    print(f"run directory: {run}  (metrics.jsonl, checkpoints/)")
    return 0
