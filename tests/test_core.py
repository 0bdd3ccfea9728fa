"""The shared primitives: atomic I/O, JSON lines after a crash, the canonical frame, the CLI's error path."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from ceiling.cli import main
from ceiling.errors import CeilingError, error_at
from ceiling.frame import COLUMNS, normalize_frame, series, wide
from ceiling.io import append_jsonl, atomic_dir, atomic_write_json, dumps, read_jsonl, repair_jsonl
from ceiling.stats import pass_at_k


def test_error_at_is_one_line():
    err = error_at("f.csv", "bad\nvalue", line=3, field="x")
    assert str(err) == "f.csv:3: field 'x': bad value"


def test_dumps_writes_standard_json():
    text = dumps({"a": np.float32(1.5), "b": [float("nan"), np.arange(2)], "c": float("inf")})
    assert json.loads(text) == {"a": 1.5, "b": [None, [0, 1]], "c": None}


def test_atomic_dir_keeps_old_folder_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "w").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "w").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "w").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)


def test_jsonl_partial_line_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 0})
    append_jsonl(path, {"step": 1})
    with open(path, "ab") as fh:
        fh.write(b'{"step": 2, "rew')  # a crash mid-write
    assert [r["step"] for r in read_jsonl(path)] == [0, 1]
    assert repair_jsonl(path) > 0
    append_jsonl(path, {"step": 2})
    assert [r["step"] for r in read_jsonl(path)] == [0, 1, 2]
    path.write_text('{"step": 0}\nnot json\n')
    with pytest.raises(CeilingError, match=r"m.jsonl:2"):
        read_jsonl(path)


def test_atomic_write_json_round_trip(tmp_path):
    p = atomic_write_json(tmp_path / "x.json", {"v": math.nan})
    assert json.loads(p.read_text()) == {"v": None}


def test_normalize_frame_and_accessors():
    df = pd.DataFrame({"run": ["r"] * 4, "step": [2, 1, 1, "x"], "compute": [2.0, 1.0, 1.0, 0.0],
                       "metric": ["m", "m", "kl", "m"], "value": [0.5, 0.25, 0.1, 1.0]})
    out = normalize_frame(df)
    assert list(out.columns[: len(COLUMNS)]) == COLUMNS
    assert len(out) == 3  # the non-numeric step is dropped
    assert series(out, "m")["step"].tolist() == [1, 2]
    assert set(wide(out).columns) >= {"run", "step", "m", "kl"}
    with pytest.raises(CeilingError, match="missing column"):
        normalize_frame(df.drop(columns=["value"]), where="x.csv")


def test_pass_at_k_edges():
    assert pass_at_k(10, 0, 5)[0] == 0.0 and pass_at_k(10, 10, 1)[0] == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_cli_prints_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["fit", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ceiling: error:") and "nope.csv" in err and err.count("\n") == 1
    assert main([]) == 0
