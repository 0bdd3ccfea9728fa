"""`ceiling` command line. Each sub-command lives in its own module exposing
`add_arguments(parser)` and `main(args) -> int`; this file only dispatches.

Errors a user can cause (CeilingError) print as one line, without a traceback, and exit with status 2.
Before any command imports torch, `main` sets OMP_WAIT_POLICY=PASSIVE unless the user set it: OpenMP threads
that spin while they wait made a run 10x slower on a machine shared with one busy process.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ceiling.errors import CeilingError

DESCRIPTION = ("Measure and forecast the limits of RLVR: train (GRPO), evaluate checkpoints, fit ceilings, the "
               "entropy law and the collapse threshold, and report; or fit another framework's training log.")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ceiling.commands.run", "the main job: RL on a base, evaluate checkpoints, fit, report"),
    "pretrain": ("ceiling.commands.pretrain", "pretrain tiny base models of controlled diversity"),
    "train": ("ceiling.commands.train", "GRPO-family RLVR training with checkpoints and exact resume"),
    "eval": ("ceiling.commands.eval", "evaluate checkpoints and the base: reward, pass@k, entropy, KL, diversity"),
    "fit": ("ceiling.commands.fit", "fit ceilings, the entropy law and the collapse threshold to a run or a log"),
    "report": ("ceiling.commands.report", "rebuild the report of a run directory from stored results"),
    "predict": ("ceiling.commands.predict", "predicted verified reward at compute budgets, as a Markdown table"),
    "sweep": ("ceiling.commands.sweep", "a grid of runs over bases, seeds and beta, with an aggregated report"),
    "watch": ("ceiling.commands.watch", "early warning while a run trains: follow a growing log, alarm on a turn"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser. Only the module of `command` is imported (the others are listed by name), so that
    e.g. `ceiling fit` does not pay for importing torch and transformers."""
    parser = argparse.ArgumentParser(prog="ceiling", description=DESCRIPTION,
                                     epilog="`ceiling COMMAND --help` describes one command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != command:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ceiling"):
                p.set_defaults(_unavailable=f"'ceiling {name}' is not available in this build")
                continue
            raise
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named in argv (the first argument that is a known command), if any."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def passive_omp_waits(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy. Must run before torch is imported: the OpenMP
    runtime reads it once, when it loads."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    passive_omp_waits()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "_unavailable", None):
        print(f"ceiling: error: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except CeilingError as exc:
        print(f"ceiling: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ceiling: interrupted; completed checkpoints and log lines are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
