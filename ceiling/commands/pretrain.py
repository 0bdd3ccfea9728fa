"""`ceiling pretrain`: pretrain tiny base models of controlled diversity (see `ceiling.pretrain`).

    ceiling pretrain --all                                          # tiny-{low,medium,high}, tiny-cipher-{...}
    ceiling pretrain --diversity 0.5 --name tiny-medium --seed 0    # one base into data/bases/tiny-medium
    ceiling pretrain --diversity 0.8 --out /tmp/my-base             # anywhere
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ceiling.config import add_flags, given_flags
from ceiling.errors import error_at
from ceiling.pretrain import CorpusSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="pretrain the shipped bases (tiny-low, -medium, -high and tiny-cipher-low, -medium, -high)")
    parser.add_argument("--diversity", type=float, default=None, help="the knob, in [0, 1]")
    parser.add_argument("--name", default=None, help="base name: the folder under data/bases/ (default from --out)")
    parser.add_argument("--out", default=None, help="output folder (default data/bases/NAME)")
    parser.add_argument("--seed", type=int, default=0, help="seed of corpus and initialisation (default 0)")
    add_flags(parser, CorpusSpec, ["tasks", "verified_share"])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: TrainConfig.steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2; fixed for reproducibility)")
    parser.add_argument("--no-measure", action="store_true", help="skip writing diversity.json")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _config(args: argparse.Namespace):  # -> TrainConfig
    from dataclasses import replace

    from ceiling.pretrain import TrainConfig, with_steps

    cfg = TrainConfig()
    if args.steps is not None:
        if args.steps < 1:
            raise error_at(None, f"must be >= 1, got {args.steps}", field="--steps")
        cfg = with_steps(cfg, args.steps)
    if args.threads is not None:
        if args.threads < 1:
            raise error_at(None, f"must be >= 1, got {args.threads}", field="--threads")
        cfg = replace(cfg, threads=args.threads)
    if args.quiet:
        cfg = replace(cfg, log_every=0)
    return cfg


def _summary(path: Path) -> str:
    rec = json.loads((path / "pretrain.json").read_text())
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    line = f"{path}: diversity {rec['diversity']}, {rec['log']['wall_seconds']:.0f} s training, {size / 1e6:.1f} MB"
    div = path / "diversity.json"
    if div.is_file():
        d = json.loads(div.read_text())
        line += (f"; entropy {d['entropy']:.3f} nats, pass@64 {d['pass@64']:.3f}, distinct {d['distinct_answers']:.2f}, "
                 f"greedy {d['greedy_acc']:.3f} (unverified {d['greedy_acc_unverified']:.3f})")
    return line


def main(args: argparse.Namespace) -> int:
    from ceiling.models import bases_dir
    from ceiling.pretrain import PRESETS, pretrain, preset_settings

    cfg = _config(args)
    corpus = {k: v for k, v in given_flags(args, CorpusSpec).items() if k in ("tasks", "verified_share") and v is not None}
    if args.all:
        if args.diversity is not None or args.name or args.out:
            raise error_at(None, "--all builds the shipped bases; do not combine it with --diversity/--name/--out",
                           field="--all")
        jobs = [(bases_dir() / name, d, name) for name, d in PRESETS.items()]
    else:
        if args.diversity is None:
            if args.name in PRESETS:
                args.diversity = PRESETS[args.name]
            else:
                raise error_at(None, "give --diversity D (or --all, or --name of a shipped base)", field="--diversity")
        if not args.name and not args.out:
            raise error_at(None, "give --name NAME (data/bases/NAME) or --out DIR", field="--name")
        jobs = [(Path(args.out) if args.out else bases_dir() / args.name, args.diversity, args.name or "")]
    for out, diversity, name in jobs:
        start = time.perf_counter()
        # a shipped base's own steps and corpus, unless --steps / --tasks say otherwise
        run_cfg, tasks = preset_settings(name, cfg, keep_steps=args.steps is not None)
        path = pretrain(out, diversity, seed=args.seed, cfg=run_cfg, measure=not args.no_measure,
                        **{"tasks": tasks, **corpus})
        print(_summary(path) + f" [{time.perf_counter() - start:.0f} s in all]", flush=True)
    return 0
