"""Write two log layouts that real runs produce, each with the tidy CSV that holds the same numbers.

    python tools/make_fixtures/make_layout_fixtures.py tests/fixtures

- `loop_jsonl/metrics.jsonl`: the one JSONL file a hand-made GRPO loop writes (the layout of a
  Qwen2.5-Math-1.5B run, 200 GRPO steps): a `config` record, then per `grpo_step` one `rollout` record
  (training reward, accuracy, lengths), two `train` records (one per optimizer step, with `optimizer_step`,
  loss, grad norm, token entropy, PPO's `approx_kl`, `reference_kl` and `train_reward`), and every 5 steps
  (and before training, step 0) an `eval` record: held-out `answer_accuracy` on `num_examples` = 1024
  problems. A `timestamp` text field on every record.
- `verl_old/console.log`: the console output of an older verl (the PPO quickstart: Qwen2.5-0.5B-Instruct on
  GSM8K, 435 steps, `test_freq=10`), with Ray's `(main_task pid=...)` prefix, values printed "%.3f", the
  key names of that generation (`actor/entropy_loss`, `critic/kl`, `val/test_score/openai/gsm8k`), a
  validation line before training (step 0), validation inside the step-10, 20, ... lines, the final
  validation logged alone at step 435 (the last training line is step 434), and console noise between.
- `<layout>/tidy.csv`: the numbers a reader must get from that log, one row per step (the mean of the two
  optimizer records of a step; verl's values as printed): step, reward_mean, entropy, reference_kl (or kl),
  response_length_mean, eval_acc.

Numbers follow seeded curves (seed 0): the reward saturates, entropy falls, KL rises, and the held-out
accuracy rises then sags a little at the end. The files are reproducible.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

LOOP_STEPS = 200
LOOP_EVAL_EVERY = 5
LOOP_EVAL_N = 1024
VERL_STEPS = 435
VERL_TEST_FREQ = 10


def _write_tidy(path: Path, rows: dict[int, dict[str, float]], cols: list[str], fmt: str = "{!r}") -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", *cols])
        for step in sorted(rows):
            w.writerow([step, *(fmt.format(rows[step][c]) if c in rows[step] else "" for c in cols)])


def loop_curves(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(0, LOOP_STEPS + 1, dtype=float)
    eval_acc = 0.285 + 0.27 * (1 - np.exp(-t / 40)) - 0.04 * np.clip((t - 150) / 50, 0, None)
    return {
        "reward": np.clip(0.22 + 0.55 * (1 - np.exp(-t / 35)) + rng.normal(0, 0.035, t.shape), 0, 1),
        "entropy": 0.62 * np.exp(-t / 90) + 0.12,
        "kl": 0.0004 * t ** 1.1,
        "length": 410 - 0.6 * t,
        "eval": eval_acc,
    }


def write_loop(out: Path, rng: np.random.Generator) -> None:
    out.mkdir(parents=True, exist_ok=True)
    c = loop_curves(rng)
    tidy: dict[int, dict[str, float]] = {}
    lines: list[dict[str, object]] = [{
        "type": "config", "timestamp": "2025-03-14T09:00:00", "model": "Qwen/Qwen2.5-Math-1.5B",
        "group_size": 8, "prompts_per_step": 32, "lr": 1e-6, "beta": 0.04, "eval_every": LOOP_EVAL_EVERY}]
    opt = 0
    clock = 0.0

    def stamp() -> str:
        return f"2025-03-14T{9 + int(clock // 3600):02d}:{int(clock % 3600) // 60:02d}:{int(clock % 60):02d}"

    def eval_record(step: int) -> None:
        # the share of 1024 problems answered correctly: a multiple of 1/1024
        acc = round(float(c["eval"][step] + rng.normal(0, 0.01)) * LOOP_EVAL_N) / LOOP_EVAL_N
        lines.append({"type": "eval", "grpo_step": step, "timestamp": stamp(), "answer_accuracy": acc,
                      "format_accuracy": round(min(1.0, 0.8 + step / 500), 4), "num_examples": LOOP_EVAL_N,
                      "mean_length": round(float(c["length"][step] + rng.normal(0, 8)), 2)})
        tidy.setdefault(step, {})["eval_acc"] = acc

    eval_record(0)
    for step in range(1, LOOP_STEPS + 1):
        clock += 95.0
        reward = float(c["reward"][step])
        length = float(c["length"][step] + rng.normal(0, 12))
        lines.append({"type": "rollout", "grpo_step": step, "timestamp": stamp(), "reward_mean": reward,
                      "reward_std": round(float(0.3 + rng.normal(0, 0.02)), 4), "accuracy": reward,
                      "response_length_mean": length, "response_length_max": 1024,
                      "frac_zero_std": round(float(np.clip(0.25 + reward / 3 + rng.normal(0, 0.03), 0, 1)), 4)})
        entropies, kls = [], []
        for _ in range(2):
            opt += 1
            h = float(c["entropy"][step] + rng.normal(0, 0.01))
            k = float(c["kl"][step] * (1 + rng.normal(0, 0.05)))
            entropies.append(h)
            kls.append(k)
            lines.append({"type": "train", "grpo_step": step, "optimizer_step": opt, "timestamp": stamp(),
                          "loss": float(rng.normal(0, 0.02)), "grad_norm": float(abs(rng.normal(0.25, 0.08))),
                          "entropy": h, "approx_kl": float(abs(rng.normal(0, 2e-4))), "reference_kl": k,
                          "train_reward": reward, "lr": 1e-6, "clip_frac": float(abs(rng.normal(0.002, 0.001)))})
        tidy.setdefault(step, {}).update({"reward_mean": reward, "entropy": (entropies[0] + entropies[1]) / 2,
                                          "reference_kl": (kls[0] + kls[1]) / 2, "response_length_mean": length})
        if step % LOOP_EVAL_EVERY == 0:
            eval_record(step)
    with open(out / "metrics.jsonl", "w") as fh:
        fh.writelines(json.dumps(rec) + "\n" for rec in lines)
    _write_tidy(out / "tidy.csv", tidy, ["reward_mean", "entropy", "reference_kl", "response_length_mean", "eval_acc"])


def verl_rows(rng: np.random.Generator) -> list[tuple[int, dict[str, float]]]:
    """The dicts the older verl trainer logs: step 0 validation, steps 1-434, the final validation at 435."""
    t = np.arange(0, VERL_STEPS + 1, dtype=float)
    score = np.clip(0.02 + 0.52 * (1 - np.exp(-t / 60)) + rng.normal(0, 0.025, t.shape), 0, 1)
    val = 0.03 + 0.50 * (1 - np.exp(-t / 70)) - 0.03 * np.clip((t - 330) / 100, 0, None)
    entropy = 0.42 * np.exp(-t / 200) + 0.08 + rng.normal(0, 0.006, t.shape)
    kl = 0.0015 * t + rng.normal(0, 0.01, t.shape)  # the KL-in-reward estimate: noisy, can dip below 0
    length = 240 - 90 * (1 - np.exp(-t / 80)) + rng.normal(0, 6, t.shape)
    rows: list[tuple[int, dict[str, float]]] = [(0, {"val/test_score/openai/gsm8k": float(val[0])})]
    for s in range(1, VERL_STEPS):
        d: dict[str, float] = {
            "global_seqlen/min": 5710.0, "global_seqlen/max": 5904.0, "global_seqlen/minmax_diff": 194.0,
            "global_seqlen/balanced_min": 5800.0, "global_seqlen/balanced_max": 5801.0, "global_seqlen/mean": 5800.5,
            "critic/kl": float(kl[s]), "critic/kl_coeff": 0.001, "critic/vf_loss": float(abs(rng.normal(0.05, 0.02))),
            "critic/vf_clipfrac": 0.0, "critic/vpred_mean": float(rng.normal(0.3, 0.1)),
            "critic/grad_norm": float(abs(rng.normal(8, 3))), "mfu/critic": 0.0, "critic/lr": 0.0,
            "actor/entropy_loss": float(entropy[s]), "actor/pg_loss": float(rng.normal(0, 0.01)),
            "actor/pg_clipfrac": float(abs(rng.normal(0.002, 0.001))), "actor/ppo_kl": float(abs(rng.normal(0, 2e-4))),
            "actor/grad_norm": float(abs(rng.normal(1, 0.5))), "mfu/actor": 0.0, "actor/lr": 0.0,
        }
        if s % VERL_TEST_FREQ == 0:
            d["val/test_score/openai/gsm8k"] = float(val[s])
        d.update({
            "critic/score/mean": float(score[s]), "critic/score/max": 1.0, "critic/score/min": 0.0,
            "critic/rewards/mean": float(score[s] - 0.001 * kl[s]), "critic/rewards/max": 1.0,
            "critic/rewards/min": -0.01, "critic/advantages/mean": 0.0, "critic/advantages/max": 3.2,
            "critic/advantages/min": -1.2, "critic/returns/mean": float(score[s] * 0.9), "critic/returns/max": 1.0,
            "critic/returns/min": 0.0, "critic/values/mean": 0.3, "critic/values/max": 0.6, "critic/values/min": 0.0,
            "critic/vf_explained_var": float(rng.normal(0.1, 0.1)), "response_length/mean": float(length[s]),
            "response_length/max": 256.0, "response_length/min": 31.0,
            "response_length/clip_ratio": float(abs(rng.normal(0.01, 0.005))), "prompt_length/mean": 104.9,
            "prompt_length/max": 175.0, "prompt_length/min": 68.0, "prompt_length/clip_ratio": 0.0,
            "timing_s/gen": float(abs(rng.normal(21, 1))), "timing_s/ref": 4.3, "timing_s/values": 5.9,
            "timing_s/adv": 0.1, "timing_s/update_critic": 15.6, "timing_s/update_actor": 20.4,
        })
        if s % VERL_TEST_FREQ == 0:
            d["timing_s/testing"] = 38.5
        d["timing_s/step"] = 68.4
        rows.append((s, d))
    rows.append((VERL_STEPS, {"val/test_score/openai/gsm8k": float(val[VERL_STEPS])}))
    return rows


def write_verl_old(out: Path, rng: np.random.Generator) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = verl_rows(rng)
    ray = "(main_task pid=2187) "
    tidy: dict[int, dict[str, float]] = {}
    printed = {"critic/score/mean": "reward_mean", "actor/entropy_loss": "entropy", "critic/kl": "kl",
               "response_length/mean": "response_length_mean", "val/test_score/openai/gsm8k": "eval_acc"}
    with open(out / "console.log", "w") as fh:
        fh.write("2025-01-20 10:02:11,342\tINFO worker.py:1821 -- Started a local Ray instance.\n")
        fh.write(f"{ray}Using dataset class: RLHFDataset\n")
        fh.write(f"{ray}Size of train dataloader: 29\n{ray}Total training steps: {VERL_STEPS}\n")
        for step, data in rows:
            if step == 0:
                fh.write(f"{ray}\"Initial validation metrics: {{'val/test_score/openai/gsm8k': {data['val/test_score/openai/gsm8k']}}}\"\n")
            if step == VERL_STEPS:
                fh.write(f"{ray}\"Final validation metrics: {{'val/test_score/openai/gsm8k': {data['val/test_score/openai/gsm8k']}}}\"\n")
            if step % 50 == 3:
                fh.write(f"{ray}[prompt] Natalia sold clips to 48 of her friends in April, and then she sold half "
                         "as many clips in May. How many clips did Natalia sell altogether in April and May?\n")
                fh.write(f"{ray}[response] Natalia sold 48 / 2 = 24 clips in May. #### 72\n{ray}[score] 1.0\n")
            fh.write(ray + " - ".join([f"step:{step}"] + [f"{k}:{v:.3f}" for k, v in data.items()]) + "\n")
            for key, col in printed.items():
                if key in data:
                    tidy.setdefault(step, {})[col] = float(f"{data[key]:.3f}")
    _write_tidy(out / "tidy.csv", tidy, ["reward_mean", "entropy", "kl", "response_length_mean", "eval_acc"],
                fmt="{:.3f}")


def main(root: Path) -> None:
    write_loop(root / "loop_jsonl", np.random.default_rng(0))
    write_verl_old(root / "verl_old", np.random.default_rng(1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"))
