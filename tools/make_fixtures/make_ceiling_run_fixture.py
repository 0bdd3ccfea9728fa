"""Write a genuine run directory of our own loop: `ceiling.rl.grpo.train` on a tiny random base, on CPU.

    python tools/make_fixtures/make_ceiling_run_fixture.py tests/fixtures/ceiling_train

The base is a freshly initialised tiny Llama (seed 0) with the project's char tokenizer, so nothing is
downloaded; the fixture keeps `config.json` and `metrics.jsonl` (checkpoints are deleted: they are large
and the ingest tests do not need them).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from ceiling.models import build_char_tokenizer, save, tiny_config
from ceiling.rl.grpo import GRPOConfig, train


def main(out: Path) -> None:
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = LlamaForCausalLM(tiny_config(len(tok), hidden_size=32, num_layers=2, num_heads=2))
    with tempfile.TemporaryDirectory() as tmp:
        base = save(model, tok, Path(tmp) / "base")
        run = Path(tmp) / "run"
        train(GRPOConfig(base=str(base), steps=12, prompts_per_step=4, group_size=4, max_new_tokens=12,
                         checkpoint_every=100, out=str(run), device="cpu", log=False, seed=0))
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "metrics.jsonl"):
            shutil.copy(run / name, out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ceiling_train"))
