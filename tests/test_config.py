"""One config style (`ceiling.config`): docs, JSON and flag parsing by type, old field names, CLI defaults."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ceiling import config
from ceiling.errors import CeilingError, error_at
from ceiling.evaluate import EvalConfig
from ceiling.rl.grpo import GRPOConfig

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Toy:
    """A config with one field of each supported type."""

    count: int = 3
    """How many (a doc that
    runs over two lines)."""
    rate: float = 0.5
    """A rate."""
    name: str | None = None
    """A name, or None."""
    flag: bool = False
    """A switch."""
    ks: tuple[int, ...] | None = None
    """Some integers."""

    def __post_init__(self) -> None:
        if self.count < 0:
            raise error_at(None, "must be >= 0", field="count")


def test_field_docs_are_the_strings_under_the_fields():
    docs = config.field_docs(Toy)
    assert docs == {"count": "How many (a doc that runs over two lines).", "rate": "A rate.",
                    "name": "A name, or None.", "flag": "A switch.", "ks": "Some integers."}
    # every field of the real configs is documented
    for cls in (GRPOConfig, EvalConfig):
        assert set(config.field_docs(cls)) == set(cls.__dataclass_fields__), cls


def test_from_dict_checks_types_and_names_the_file_and_field():
    toy = config.from_dict(Toy, {"count": 2.0, "rate": 1, "name": None, "flag": True, "ks": [1, 4]})
    assert toy == Toy(count=2, rate=1.0, name=None, flag=True, ks=(1, 4))
    assert isinstance(toy.count, int) and isinstance(toy.rate, float)
    assert config.to_dict(toy) == {"count": 2, "rate": 1.0, "name": None, "flag": True, "ks": [1, 4]}
    bad = [({"count": 2.5}, "field 'count': expected int, got 2.5"), ({"count": True}, "expected int"),
           ({"flag": 1}, "field 'flag': expected bool"), ({"name": 3}, "field 'name': expected str"),
           ({"ks": [1, "x"]}, "field 'ks': expected int"), ({"rate": "fast"}, "expected float"),
           ({"size": 1}, "field 'size': unknown setting \\(known: count, rate"),
           ({"count": -1}, "field 'count': must be >= 0")]
    for data, message in bad:
        with pytest.raises(CeilingError, match=f"^cfg.json: {message}" if "field" in message else message):
            config.from_dict(Toy, data, where="cfg.json")
    with pytest.raises(CeilingError, match="must be a JSON object"):
        config.from_dict(Toy, [1, 2])
    assert config.from_dict(Toy, {"old_count": 7}, renamed={"old_count": "count"}).count == 7


def test_flags_come_from_the_fields():
    parser = argparse.ArgumentParser()
    config.add_flags(parser, Toy, defaults={"count": 9})
    help_text = parser.format_help()
    assert "How many (a doc that runs over two lines) (default: 9)" in " ".join(help_text.split())
    args = parser.parse_args(["--count", "4", "--ks", "1,8", "--flag", "--name", "x"])
    assert config.given_flags(args, Toy) == {"count": 4, "ks": (1, 8), "flag": True, "name": "x"}
    assert config.given_flags(parser.parse_args([]), Toy) == {}  # flags not given set nothing
    assert config.given_flags(parser.parse_args(["--no-flag"]), Toy) == {"flag": False}


def test_eval_config_round_trips_and_validates():
    cfg = EvalConfig.from_dict({"n_samples": 8, "ks": [1, 4, 8], "temperature": 0.7})
    assert cfg.ks == (1, 4, 8) and EvalConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict()))["ks"] == [1, 4, 8]
    with pytest.raises(CeilingError, match="^preset: field 'ks'"):
        EvalConfig.from_dict({"n_samples": 4, "ks": [8]}, where="preset")
    with pytest.raises(CeilingError, match="field 'n_samples'"):
        EvalConfig(n_samples=0)


def test_old_run_configs_load_and_keep_their_hash():
    """A config.json saved when `num_minibatches` was called `minibatches` loads, and its hash (stored in each
    checkpoint and checked on resume) is the one it was saved with."""
    stored = json.loads((FIXTURES / "ceiling_train" / "config.json").read_text())
    cfg = GRPOConfig.from_dict(stored)
    assert "minibatches" in stored and "num_minibatches" not in stored
    assert cfg.num_minibatches == stored["minibatches"]
    assert cfg.config_hash() == "0ade84a9a7c3f831"  # computed by the code that wrote this file
    assert GRPOConfig.from_dict({**stored, "minibatches": 2}).config_hash() != cfg.config_hash()
    assert "minibatches" not in cfg.to_dict()  # saved again under the new name


def test_ceiling_train_defaults_are_the_default_run_presets():
    """`ceiling train --out DIR` trains as `ceiling run` does (its old defaults learned nothing)."""
    from ceiling.cli import build_parser
    from ceiling.commands.train import build_config
    from ceiling.pipeline import preset

    cfg = build_config(build_parser("train").parse_args(["train", "--out", "x"]))
    assert {k: getattr(cfg, k) for k in preset("default").train} == preset("default").train
    assert cfg.out == "x"
    cfg = build_config(build_parser("train").parse_args(["train", "--out", "x", "--steps", "3", "--beta", "0.1"]))
    assert (cfg.steps, cfg.beta, cfg.base) == (3, 0.1, preset("default").train["base"])
