"""Property-based fuzzing of every ceiling.ingest parser.

Each example takes a real fixture (cut to a few dozen rows to stay fast), corrupts it at random (truncated
lines, wrong types, shuffled / dropped / repeated lines, binary junk), and reads it back. The only allowed
outcomes: a CeilingError whose text is one line, or a well-formed canonical frame. Any other exception
fails. Where the corruption keeps each row intact (shuffles, drops, repeats), every value read must be one
the input holds at that step under that key.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceiling.errors import CeilingError
from ceiling.frame import COLUMNS, METRICS
from ceiling.ingest import read_log

FIX = Path(__file__).resolve().parent / "fixtures"
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def head_lines(path: Path, n: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def small_trl() -> bytes:
    state = json.loads((FIX / "trl" / "trainer_state.json").read_text())
    state["log_history"] = state["log_history"][:8] + state["log_history"][-1:]
    return json.dumps(state, indent=2).encode()


# (name of the file to write, its bytes, the format to force or "auto")
SOURCES: dict[str, tuple[str, bytes]] = {
    "csv": ("log.csv", head_lines(FIX / "real_logs" / "7_3_plus_tracking_metrics.csv", 60)),
    "wandb": ("history.csv", (FIX / "wandb" / "history.csv").read_bytes()),
    "jsonl": ("log.jsonl", head_lines(FIX / "ceiling_run" / "metrics.jsonl", 12)),
    "loop": ("loop.jsonl", head_lines(FIX / "loop_jsonl" / "metrics.jsonl", 30)),  # record kinds, grpo_step
    "verl": ("metrics.jsonl", head_lines(FIX / "verl" / "metrics.jsonl", 30)),
    "verl-console": ("console.log", head_lines(FIX / "verl" / "console.log", 34)),
    "trl": ("trainer_state.json", small_trl()),
    "tensorboard": (min((FIX / "tensorboard_verl").glob("events.*")).name,
                    min((FIX / "tensorboard_verl").glob("events.*")).read_bytes()),
}
FORMAT_OF = {"verl-console": "verl", "loop": "jsonl"}

JUNK_VALUES = [b"abc", b"[1, 2]", b"{}", b"null", b"1e999", b"-", b"", b"\"0.5\"", b"true", b"NaN", b"\xff\xfe",
               b"\x00", b",", b"\"", b"-inf", b"99999999999999999999999999"]


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """One random corruption of `data`, and its kind."""
    kind = draw(st.sampled_from(["truncate", "junk", "overwrite", "wrong_type", "shuffle", "drop", "repeat"]))
    lines = data.splitlines(keepends=True)
    if kind == "truncate":
        return kind, data[:draw(st.integers(0, len(data)))]
    if kind == "junk":
        at = draw(st.integers(0, len(data)))
        return kind, data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
    if kind == "overwrite":
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        junk = draw(st.binary(min_size=1, max_size=16))
        return kind, data[:at] + junk + data[at + len(junk):]
    if kind == "wrong_type":
        pieces = data.split(b",")
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(pieces) - 1))
            tail = b"\n" if pieces[i].endswith(b"\n") else b""
            pieces[i] = draw(st.sampled_from(JUNK_VALUES)) + tail
        return kind, b",".join(pieces)
    head, body = (lines[:1], lines[1:]) if data[:1] not in (b"{", b"(") else ([], lines)
    if kind == "shuffle":
        return kind, b"".join(head + draw(st.permutations(body)))
    if kind == "drop":
        keep = draw(st.lists(st.booleans(), min_size=len(body), max_size=len(body)))
        return kind, b"".join(head + [ln for ln, k in zip(body, keep) if k])
    idx = draw(st.lists(st.integers(0, max(len(body) - 1, 0)), max_size=6))
    extra = [body[i] for i in idx] if body else []
    return kind, b"".join(head + body + extra)


def check_outcome(name: str, payload: bytes) -> object:
    """Read the corrupted file; return the IngestResult or the CeilingError, fail on anything else."""
    fname, _ = SOURCES[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / fname
        path.write_bytes(payload)
        try:
            res = read_log(path, format=FORMAT_OF.get(name, name))
        except CeilingError as exc:
            assert "\n" not in str(exc) and str(exc)
            return exc
        try:
            auto = read_log(path)  # detection on corrupted content: a CeilingError or a result, nothing else
        except CeilingError:
            auto = None
        assert path.read_bytes() == payload  # never modified
    f = res.frame
    assert list(f.columns[:len(COLUMNS)]) == COLUMNS
    assert f["step"].dtype == np.int64 and (f["step"] >= 0).all()
    assert np.isfinite(f["value"].to_numpy()).all()
    assert all(m in METRICS or m.startswith("raw/") for m in f["metric"])
    assert not f.duplicated(["step", "source_key"]).any()
    assert f["step"].is_monotonic_increasing
    assert auto is None or len(auto.frame) > 0
    return res


def cells_by_step(name: str, payload: bytes) -> dict[tuple[int, str], set[float]]:
    """(step, key) -> the values of every intact row of a CSV or JSONL input."""
    out: dict[tuple[int, str], set[float]] = {}
    if name == "csv":
        rows = list(csv.reader(io.StringIO(payload.decode("utf-8-sig"))))
        header = rows[0]
        for r in rows[1:]:
            if len(r) == len(header) and r[0].strip():
                for k, v in zip(header[1:], r[1:]):
                    if v.strip():
                        out.setdefault((int(r[0]), k), set()).add(float(v))
    else:
        for line in payload.decode().splitlines():
            obj = json.loads(line)
            data = obj.get("data", obj)
            step = obj.get("step", obj.get("grpo_step"))
            if step is None:
                continue
            prefix = f"{obj['type']}/" if "type" in obj else ""
            for k, v in data.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    out.setdefault((int(step), prefix + k), set()).add(float(v))
    return out


def _fuzz(name: str, data: st.DataObject) -> None:
    kind, payload = data.draw(corrupted(SOURCES[name][1]), label="corruption")
    res = check_outcome(name, payload)
    if isinstance(res, CeilingError) or kind not in ("shuffle", "drop", "repeat") or \
            name not in ("csv", "jsonl", "verl", "loop"):
        return
    source = cells_by_step(name, payload)
    for step, key, value in res.frame[["step", "source_key", "value"]].itertuples(index=False):
        logged = source.get((step, key), set())
        # a value logged at that step under that key, or the mean of several (rows of one step merge)
        assert logged and (any(math.isclose(v, value, rel_tol=1e-9) for v in logged)
                           or min(logged) - 1e-12 <= value <= max(logged) + 1e-12), (step, key, value, logged)


@SETTINGS
@given(st.data())
def test_fuzz_csv(data: st.DataObject) -> None:
    _fuzz("csv", data)


@SETTINGS
@given(st.data())
def test_fuzz_wandb(data: st.DataObject) -> None:
    _fuzz("wandb", data)


@SETTINGS
@given(st.data())
def test_fuzz_jsonl(data: st.DataObject) -> None:
    _fuzz("jsonl", data)


@SETTINGS
@given(st.data())
def test_fuzz_mixed_record_jsonl(data: st.DataObject) -> None:
    _fuzz("loop", data)


@SETTINGS
@given(st.data())
def test_fuzz_verl_jsonl(data: st.DataObject) -> None:
    _fuzz("verl", data)


@SETTINGS
@given(st.data())
def test_fuzz_verl_console(data: st.DataObject) -> None:
    _fuzz("verl-console", data)


@SETTINGS
@given(st.data())
def test_fuzz_trl(data: st.DataObject) -> None:
    _fuzz("trl", data)


@SETTINGS
@given(st.data())
def test_fuzz_tensorboard(data: st.DataObject) -> None:
    _fuzz("tensorboard", data)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(which=st.sampled_from(["metrics.jsonl", "eval.csv"]), cut=st.floats(0, 1), junk=st.binary(max_size=20))
def test_fuzz_ceiling_run_dir(which: str, cut: float, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(FIX / "ceiling_run", run)
        target = run / which
        data = target.read_bytes()
        at = int(cut * len(data))
        target.write_bytes(data[:at] + junk + data[at:])
        try:
            res = read_log(run)
        except CeilingError as exc:
            assert "\n" not in str(exc)
            return
        assert list(res.frame.columns[:len(COLUMNS)]) == COLUMNS
        assert (res.frame["step"] >= 0).all()
