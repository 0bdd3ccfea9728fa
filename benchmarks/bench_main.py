"""bench_main: wall time of the default `ceiling run`, stage by stage, and the loop's distance to the
machine's physical limit (model-FLOP utilisation against the measured fp32 matmul peak).

    python benchmarks/bench_main.py [--preset default] [--threads 1] [--json OUT]

Target (issue 7/8): the whole default run in at most 3 minutes on 2 CPU cores. Runs in a temporary folder;
nothing in the repository is touched. The matmul peak is measured in the same process, right before the run,
so both figures see the same machine state.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, format_table, machine  # noqa: E402

from ceiling.pipeline import preset, run  # noqa: E402
from ceiling.io import read_jsonl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    info = machine(measure=True)
    print(describe_machine(info))
    spec = preset(args.preset)
    if args.threads is not None:
        spec.train["num_threads"] = args.threads
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run(spec, Path(tmp) / "runs", Path(tmp) / "reports", log=False)
        total = time.perf_counter() - t0
        metrics = read_jsonl(out["run_dir"] / "metrics.jsonl")
    flops = float(metrics[-1]["compute/flops"])
    rl_wall = float(metrics[-1]["compute/wall_seconds"])
    peak = float(info.get("fp32_matmul_gflops") or float("nan")) * 1e9
    mfu = flops / rl_wall / peak if rl_wall > 0 and peak > 0 else float("nan")
    rows = [[stage, f"{sec:.1f}"] for stage, sec in out["timings"].items()] + [["total", f"{total:.1f}"]]
    print(format_table(["stage", "seconds"], rows, markdown=True))
    completions = len(metrics) * spec.train["prompts_per_step"] * spec.train["group_size"]
    print(f"\nRL: {flops / 1e12:.3f} TFLOP (model FLOPs, 6N/2N accounting) in {rl_wall:.1f} s of loop time "
          f"= {flops / rl_wall / 1e9:.2f} GFLOP/s; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s -> MFU {mfu:.1%}; "
          f"{completions / rl_wall:.0f} completions/s")
    verdict = "met" if total <= 180 else "MISSED"
    print(f"target: default run <= 180 s on 2 cores: {total:.0f} s ({verdict})")
    for line in out["summary"]:
        print("  " + line)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "timings": out["timings"], "total_s": total,
                                               "rl_flops": flops, "rl_wall_s": rl_wall, "mfu": mfu}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
