"""`ceiling.models.load` on a checkpoint saved without a tokenizer (issue 18, item 9): it takes the base's
tokenizer and says so on stderr, or fails with one line naming the folder.

The checkpoints are the shipped tiny-low base's weights laid out as TRL lays out `output_dir/checkpoint-N/`
(config.json, model.safetensors, trainer_state.json) with the tokenizer files left out.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ceiling.errors import CeilingError
from ceiling.models import load
from ceiling.models.loading import TOKENIZER_FILES

BASE = Path(__file__).resolve().parents[1] / "data" / "bases" / "tiny-low"
pytestmark = pytest.mark.skipif(not (BASE / "model.safetensors").is_file(), reason="tiny-low base not built")


def checkpoint(root: Path, name: str = "checkpoint-4", tokenizer_beside: bool = False,
               name_or_path: str | None = None) -> Path:
    """`root/name/` with the base's weights and no tokenizer; the tokenizer in `root/` when asked."""
    ck = root / name
    ck.mkdir(parents=True)
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(BASE / f, ck / f)
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 4, "log_history": []}))
    if name_or_path is not None:
        cfg = json.loads((ck / "config.json").read_text())
        cfg["_name_or_path"] = name_or_path  # what transformers 4 writes
        (ck / "config.json").write_text(json.dumps(cfg))
    if tokenizer_beside:
        for f in TOKENIZER_FILES:
            if (BASE / f).is_file():
                shutil.copy(BASE / f, root / f)
    assert not any((ck / f).exists() for f in TOKENIZER_FILES)
    return ck


def test_checkpoint_without_tokenizer_takes_the_output_folders(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ck = checkpoint(tmp_path / "out", tokenizer_beside=True)
    loaded = load(ck, device="cpu")
    base = load(BASE, device="cpu")
    assert loaded.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    assert loaded.tokenizer("12+3")["input_ids"] == base.tokenizer("12+3")["input_ids"]
    err = capsys.readouterr().err
    assert f"{ck} has no tokenizer files; using the tokenizer of {tmp_path / 'out'}" in err
    assert "training output folder" in err


def test_checkpoint_without_tokenizer_takes_the_base_its_config_names(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ck = checkpoint(tmp_path / "out", name_or_path=str(BASE))
    loaded = load(ck, device="cpu")
    assert loaded.tokenizer.get_vocab() == load(BASE, device="cpu").tokenizer.get_vocab()
    assert "_name_or_path" in capsys.readouterr().err
    ck2 = checkpoint(tmp_path / "out2", name="weights")
    assert load(ck2, device="cpu", tokenizer="tiny-low").tokenizer.get_vocab() == loaded.tokenizer.get_vocab()
    assert "(as asked)" in capsys.readouterr().err


def test_checkpoint_without_any_tokenizer_is_a_one_line_error(tmp_path: Path) -> None:
    ck = checkpoint(tmp_path / "out")
    with pytest.raises(CeilingError, match=r"checkpoint-4: no tokenizer files in this model folder.*tokenizer=BASE") as info:
        load(ck, device="cpu")
    assert "\n" not in str(info.value)


def test_folder_with_its_own_tokenizer_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    load(BASE, device="cpu")
    assert "no tokenizer" not in capsys.readouterr().err
