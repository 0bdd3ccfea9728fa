"""The tiny models' character tokenizer, and the one way prompts and documents are tokenised.

Vocabulary (100 ids, fixed order, so ids are the same on every machine):

    0 <pad>   1 <bos>   2 <eos>   3 <unk>   4 "\\n"   5..99 the printable ASCII characters 32..126

Each character is one token: a BPE model whose vocabulary is the alphabet and which has no merges, with no
normalizer and no pre-tokenizer, and a `Fuse` decoder (tokens are concatenated, never joined by spaces).
Characters outside the alphabet become `<unk>`.

Tokenisation contract shared by pretraining, RL and evaluation (tiny models):

    document = <bos> + prompt + completion + <eos>          (`encode_document`)
    prompt   = <bos> + prompt                               (`format_prompts` / `encode_prompt`)

so a prompt fed to `sample` is exactly the prefix of a pretraining document. The tokenizer itself adds no
special tokens (no post-processor); the helpers add them explicitly.
"""
from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
ALPHABET: str = "\n" + "".join(chr(c) for c in range(32, 127))


def char_vocab() -> dict[str, int]:
    """Token -> id for the char tokenizer: the specials first, then "\\n", then ASCII 32..126."""
    tokens = list(SPECIAL_TOKENS) + list(ALPHABET)
    return {tok: i for i, tok in enumerate(tokens)}


def build_char_tokenizer(model_max_length: int = 4096) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` with one token per character (see the module docstring for ids).

    It round-trips through `save_pretrained` / `AutoTokenizer.from_pretrained`, and
    `decode(encode(text)) == text` for any text over the alphabet.
    """
    core = Tokenizer(models.BPE(vocab=char_vocab(), merges=[], unk_token=UNK))
    core.add_special_tokens(list(SPECIAL_TOKENS))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    return tok


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added (special-token strings inside it are matched)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer: PreTrainedTokenizerBase, formatted_prompt: str) -> list[int]:
    """Token ids of a prompt already passed through `format_prompts` (which adds <bos> or a chat template)."""
    return encode_text(tokenizer, formatted_prompt)


def encode_document(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> list[int]:
    """Pretraining document ids: <bos> + prompt + completion + <eos>.

    Prompt and completion are tokenised separately, so the prompt part equals what `sample` sees for
    `format_prompts`'d prompts (this matters for BPE tokenizers; the char tokenizer is indifferent).
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return bos + encode_text(tokenizer, prompt) + encode_text(tokenizer, completion) + eos


def decode_completions(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Sequence[int]]) -> list[str]:
    """Decode completion token rows to text with special tokens removed."""
    return [tokenizer.decode(list(r), skip_special_tokens=True) for r in rows]
