"""Speed of `ceiling.models.sample` against Hugging Face `generate` on the tiny model.

    python -m ceiling.models.bench [--completions 64] [--max-new-tokens 64] [--threads 1] [--repeats 3]

Both sample the same number of completions (prompts x n_per_prompt) with temperature 1 from the default
tiny config (random weights, so nearly every row runs to max_new_tokens: equal work for both). Prints the
best-of-`repeats` seconds for each and the ratio generate / sample.
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaForCausalLM

from ceiling.models.config import tiny_config
from ceiling.models.sampling import sample
from ceiling.models.tokenizer import build_char_tokenizer

PROMPTS = ["12+34=", "7*8=", "sort: 5 2 9 ->", "count a in banana:", "91-45=", "17 mod 5 =", "3 7 2 -> 24:", "9+9="]


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of `repeats` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = LlamaForCausalLM(tiny_config(max_position_embeddings=256)).eval()
    prompts = ["<bos>" + p for p in PROMPTS]
    per = max(1, args.completions // len(prompts))
    enc = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")

    def ours() -> None:
        sample(model, tok, prompts, n_per_prompt=per, max_new_tokens=args.max_new_tokens,
               generator=torch.Generator().manual_seed(0))

    def hf() -> None:
        with torch.inference_mode():
            model.generate(**enc, do_sample=True, num_return_sequences=per, max_new_tokens=args.max_new_tokens,
                           top_k=0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

    t_ours, t_hf = best_time(ours, args.repeats), best_time(hf, args.repeats)
    n = per * len(prompts)
    print(f"threads={torch.get_num_threads()} completions={n} max_new_tokens={args.max_new_tokens}")
    print(f"ceiling.models.sample: {t_ours:.3f} s   HF generate: {t_hf:.3f} s   ratio generate/sample: {t_hf / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
