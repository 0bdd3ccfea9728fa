"""Write a genuine TRL `trainer_state.json` by running TRL's GRPOTrainer on CPU with a tiny random model.

Run once (about a minute on 2 cores) from the repository root:

    python tools/make_fixtures/make_trl_fixture.py tests/fixtures/trl

The old-key fixture (tests/fixtures/trl_old: `completion_length`, `rewards/{f}`) is the same script run with
TRL 0.15.2 in a virtual environment that reuses the installed torch:

    python -m venv --system-site-packages /tmp/oldtrl
    /tmp/oldtrl/bin/pip install "trl==0.15.2" "transformers==4.49.0"
    /tmp/oldtrl/bin/python tools/make_fixtures/make_trl_fixture.py tests/fixtures/trl_old

The model is a 2-layer LlamaForCausalLM with random weights and a character-level tokenizer built here, so
nothing is downloaded. Two reward functions give `rewards/{name}/mean` keys; beta > 0 makes TRL log `kl`; an
eval set with eval_steps=4 gives sparse `eval_`-prefixed rows; `trainer.save_state()` writes the file.
The output folder keeps `trainer_state.json`, the TensorBoard event file transformers' TensorBoardCallback
wrote for the same run (`tensorboard/`), and a `versions.json` recording the tools.
"""
from __future__ import annotations

import json
import shutil
import string
import sys
import tempfile
from pathlib import Path

import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig, GRPOTrainer


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII, with pad/bos/eos."""
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")


def digit_share(completions: list[str], **kwargs) -> list[float]:
    """Reward: share of characters in the completion that are digits."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def short_answer(completions: list[str], **kwargs) -> list[float]:
    """Reward: 1 for completions under 8 characters, else 0."""
    return [1.0 if len(c) < 8 else 0.0 for c in completions]


def main(out: Path) -> None:
    torch.manual_seed(0)
    tokenizer = char_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    prompts = [f"{a}+{b}=" for a in range(10) for b in range(4)]
    train = Dataset.from_dict({"prompt": prompts[:32]})
    evalset = Dataset.from_dict({"prompt": prompts[32:]})
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"  # TRL builds its reference model from a path, so save the random base
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
        args = GRPOConfig(
            output_dir=str(Path(tmp) / "run"), max_steps=16, learning_rate=1e-3, per_device_train_batch_size=8,
            per_device_eval_batch_size=8, num_generations=4, max_completion_length=12, logging_steps=1,
            eval_strategy="steps", eval_steps=4, beta=0.04, report_to=["tensorboard"], save_strategy="no",
            use_cpu=True, seed=0, temperature=1.0, bf16=False, fp16=False, disable_tqdm=True,
        )
        trainer = GRPOTrainer(model=str(base), reward_funcs=[digit_share, short_answer], args=args,
                              train_dataset=train, eval_dataset=evalset, processing_class=tokenizer)
        trainer.train()
        trainer.save_state()
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "run" / "trainer_state.json", out / "trainer_state.json")
        events = sorted((Path(tmp) / "run").rglob("events.out.tfevents.*"))
        if events:  # the same run as TensorBoard saw it (transformers' TensorBoardCallback)
            (out / "tensorboard").mkdir(exist_ok=True)
            for e in events:
                shutil.copy(e, out / "tensorboard" / e.name)
    versions = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                "made_by": "tools/make_fixtures/make_trl_fixture.py"}
    (out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/trl"))
