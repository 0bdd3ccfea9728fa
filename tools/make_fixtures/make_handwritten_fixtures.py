"""Write the fixtures that cannot be produced by the real tool on this machine, from documented key names.

    python tools/make_fixtures/make_handwritten_fixtures.py tests/fixtures

- verl (needs Ray, vLLM/SGLang and GPUs): `verl/metrics.jsonl` in the file logger's format
  (`{"step": N, "data": {...}}`) and `verl/console.log` in the console logger's format
  (`step:N - key:value - ...`, values "%.3f", Ray's "(TaskRunner pid=...)" prefix, other console noise).
  Keys as verl's `compute_data_metrics` / actor / validation code name them. The run crashes after step 25
  and resumes from the step-20 checkpoint (steps 21-25 logged twice); validation before training (step 0)
  and every 10 steps.
- W&B (a history export needs a W&B server): `wandb/history.csv` as `run.history().to_csv()` writes it for
  a TRL run logged through transformers' WandbCallback (`_step`, `_runtime`, `_timestamp`,
  `train/global_step`, `train/*` rows and sparse `eval/*` rows, a summary row, a text column).
- ceiling (our RL loop may not exist yet when this runs): `ceiling_run/` with `config.json`,
  `metrics.jsonl` (the keys of docs/design.md) and a canonical `eval.csv`.

The numbers follow a saturating reward curve with seeded noise (seed 0), so the files are reproducible.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np


def curve(steps: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Reward saturating towards 0.7, entropy falling, KL rising, length growing."""
    t = steps.astype(float)
    return {
        "reward": np.clip(0.15 + 0.55 * (1 - np.exp(-t / 15)) + rng.normal(0, 0.03, t.shape), 0, 1),
        "entropy": 1.2 * np.exp(-t / 25) + 0.1 + rng.normal(0, 0.01, t.shape),
        "kl": 0.002 * t + rng.normal(0, 0.0005, t.shape).clip(0),
        "length": 120 + 2.0 * t + rng.normal(0, 5, t.shape),
        "val": 0.2 + 0.45 * (1 - np.exp(-t / 15)),
    }


def verl_rows(rng: np.random.Generator) -> list[tuple[int, dict[str, float]]]:
    """The dicts verl's trainer would log: step 0 validation, steps 1-25, then a resume at 21-40."""
    rows: list[tuple[int, dict[str, float]]] = []
    segments = [np.arange(0, 26), np.arange(21, 41)]
    for seg in segments:
        c = curve(seg, rng)
        for i, step in enumerate(seg):
            data: dict[str, float] = {}
            if step > 0:
                data.update({
                    "training/global_step": float(step), "training/epoch": 0.0,
                    "actor/entropy": float(c["entropy"][i]), "actor/kl_loss": float(c["kl"][i]),
                    "actor/kl_coef": 0.001, "actor/pg_loss": float(rng.normal(0, 0.01)),
                    "actor/pg_clipfrac": float(abs(rng.normal(0.002, 0.001))), "actor/ppo_kl": float(abs(rng.normal(0, 1e-4))),
                    "actor/grad_norm": float(abs(rng.normal(0.3, 0.05))), "actor/lr": 1e-6,
                    "critic/score/mean": float(c["reward"][i]), "critic/score/max": 1.0, "critic/score/min": 0.0,
                    "critic/rewards/mean": float(c["reward"][i]), "critic/advantages/mean": 0.0,
                    "critic/advantages/max": 1.8, "critic/advantages/min": -1.8,
                    "response_length/mean": float(c["length"][i]), "response_length/max": 512.0,
                    "response_length/min": 20.0, "response_length/clip_ratio": 0.0,
                    "prompt_length/mean": 104.5, "timing_s/gen": 12.5, "timing_s/step": 31.2,
                    "perf/total_num_tokens": 250000.0, "perf/time_per_step": 31.2, "perf/throughput": 1001.6,
                })
            if step % 10 == 0:
                data["val-core/openai/gsm8k/reward/mean@1"] = float(c["val"][i])
                data["val-aux/openai/gsm8k/reward/std@1"] = 0.0
            rows.append((int(step), data))
    return rows


def write_verl(out: Path, rng: np.random.Generator) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = verl_rows(rng)
    with open(out / "metrics.jsonl", "w") as fh:
        fh.writelines(json.dumps({"step": step, "data": data}) + "\n" for step, data in rows)
    with open(out / "console.log", "w") as fh:
        fh.write("(TaskRunner pid=2187) Using dataset class: RLHFDataset\n")
        for step, data in rows:
            parts = [f"step:{step}"] + [f"{k}:{v:.3f}" for k, v in data.items()]
            fh.write("(TaskRunner pid=2187) " + " - ".join(parts) + "\n")
            if step == 25 and "actor/entropy" in data:
                fh.write("(TaskRunner pid=2187) Training Progress:  62%|######2   | 25/40 [13:02<07:49, 31.3s/it]\n")
                fh.write("Traceback (most recent call last): RayTaskError(OutOfMemoryError)\n")
                fh.write("(TaskRunner pid=3301) Resuming from global_step_20\n")


def write_wandb(out: Path, rng: np.random.Generator) -> None:
    """A TRL run (30 steps, eval every 10) as W&B history rows."""
    out.mkdir(parents=True, exist_ok=True)
    cols = ["_step", "_runtime", "_timestamp", "train/global_step", "train/epoch", "train/loss", "train/reward",
            "train/reward_std", "train/kl", "train/entropy", "train/completions/mean_length",
            "train/learning_rate", "eval/reward", "eval/loss", "eval/runtime", "train/train_runtime",
            "train/total_flos", "checkpoint_path"]
    steps = np.arange(1, 31)
    c = curve(steps, rng)
    rows: list[dict[str, object]] = []
    t0, wstep = 1764400000.0, 0
    for i, step in enumerate(steps):
        runtime = 14.2 * step
        rows.append({"_step": wstep, "_runtime": runtime, "_timestamp": t0 + runtime, "train/global_step": step,
                     "train/epoch": step / 30, "train/loss": rng.normal(0, 0.01), "train/reward": c["reward"][i],
                     "train/reward_std": 0.3, "train/kl": c["kl"][i], "train/entropy": c["entropy"][i],
                     "train/completions/mean_length": c["length"][i], "train/learning_rate": 1e-6 * (1 - step / 30)})
        wstep += 1
        if step % 10 == 0:
            rows.append({"_step": wstep, "_runtime": runtime + 3, "_timestamp": t0 + runtime + 3,
                         "train/global_step": step, "train/epoch": step / 30, "eval/reward": c["val"][i],
                         "eval/loss": "NaN", "eval/runtime": 3.1,
                         "checkpoint_path": f"out/checkpoint-{step}"})
            wstep += 1
    rows.append({"_step": wstep, "_runtime": 440.0, "_timestamp": t0 + 440, "train/global_step": 30,
                 "train/epoch": 1.0, "train/train_runtime": 440.0, "train/total_flos": 0.0})
    with open(out / "history.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def write_ceiling_run(out: Path, rng: np.random.Generator) -> None:
    """A run directory as docs/design.md specifies it (metrics.jsonl every step, eval.csv at checkpoints)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"base": "tiny-medium", "steps": 40, "beta": 0.0, "seed": 0}, indent=2) + "\n")
    steps = np.arange(1, 41)
    c = curve(steps, rng)
    flops_per_step = 3.2e12
    with open(out / "metrics.jsonl", "w") as fh:
        for i, step in enumerate(steps):
            rec = {"step": int(step), "reward/mean": c["reward"][i], "reward/std": 0.35, "reward/zero_std_frac": 0.1,
                   "kl/policy_base_k1_token": c["kl"][i] / 60, "kl/policy_base_k3_token": c["kl"][i] / 64,
                   "kl/policy_base_k1_seq": c["kl"][i] * 1.05, "kl/policy_base_k3_seq": c["kl"][i],
                   "policy/entropy": c["entropy"][i], "length/mean": c["length"][i] / 4, "length/max": 64,
                   "length/truncated_frac": 0.0, "clip/low_frac": 0.0, "clip/high_frac": 0.001,
                   "optim/grad_norm": 0.8, "optim/lr": 1e-4, "tokens/prompt": 2048, "tokens/completion": 4096,
                   "compute/flops": flops_per_step * step, "compute/wall_seconds": 0.9 * step,
                   "speed/completions_per_s": 70.0, "loss/policy": 0.0, "loss/kl": 0.0, "loss/entropy": 0.0}
            fh.write(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in rec.items()}) + "\n")
    with open(out / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "step", "compute", "metric", "value", "ci_low", "ci_high", "n", "estimator", "family", "k"])
        for step in (0, 10, 20, 30, 40):
            v = 0.2 + 0.45 * (1 - math.exp(-step / 15))
            comp = flops_per_step * step
            w.writerow(["ceiling_run", step, comp, "verified/reward", f"{v:.4f}", f"{v - 0.03:.4f}", f"{v + 0.03:.4f}",
                        8192, "mean@64", "verified", ""])
            w.writerow(["ceiling_run", step, comp, "unverified/score", f"{0.5 - 0.004 * step:.4f}", "", "", 4096,
                        "mean@64", "unverified", ""])
            for k in (1, 8):
                w.writerow(["ceiling_run", step, comp, "verified/pass@k", f"{min(1.0, v + 0.05 * k ** 0.5):.4f}", "",
                            "", 128, "unbiased pass@k", "verified", k])


def main(root: Path) -> None:
    rng = np.random.default_rng(0)
    write_verl(root / "verl", rng)
    write_wandb(root / "wandb", rng)
    write_ceiling_run(root / "ceiling_run", rng)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))
