"""Malformed logs, every reader: a one-line error naming the file (and the line where the damage sits on one),
or a non-empty result that says what it dropped. Never a traceback, never a silent empty result.

The cases come from tools/malformed_logs.py (hypothesis strategies over real fixture logs; that script runs
>= 500 of them and prints the tally). Here: 12 derandomized cases per reader, 120 in all, plus fixed cases.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("malformed_logs", ROOT / "tools" / "malformed_logs.py")
ml = importlib.util.module_from_spec(_spec)
sys.modules["malformed_logs"] = ml
_spec.loader.exec_module(ml)

CASES_PER_READER = 12
SETTINGS = settings(max_examples=CASES_PER_READER, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
# TensorBoard's EventFileLoader stops at a corrupt record without a word: the events after it vanish
# (tools/malformed_logs.py: "silent-loss"). Reported for ceiling/ingest/tensorboard.py; strict, so the
# marker must go when that is fixed.
KNOWN = {"tensorboard": pytest.mark.xfail(strict=True, reason="a corrupt record silently ends the event file")}


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # the repr of a binary case is large
@pytest.mark.parametrize("reader", [pytest.param(r, marks=KNOWN.get(r, ())) for r in ml.readers()])
def test_damaged_logs_give_a_one_line_error_or_a_result_that_says_what_it_dropped(reader: str) -> None:
    verdicts: list = []

    @SETTINGS
    @given(case=ml.damaged(ml.source(reader).data))
    def one(case: tuple[str, bytes, int | None]) -> None:
        v = ml.classify(reader, *case)
        verdicts.append(v)
        assert not v.failed, f"{reader} / {v.kind}: {v.outcome}: {v.detail}"

    one()
    assert len(verdicts) >= CASES_PER_READER


def test_the_cases_reach_at_least_100_and_every_outcome_kind_is_a_real_one() -> None:
    assert len(ml.readers()) * CASES_PER_READER >= 100
    # the classifier itself: a crash, a multi-line error and an empty frame are failures
    assert ml.Verdict("csv", "cut", "crash").failed and ml.Verdict("csv", "cut", "silent-loss").failed
    assert not ml.Verdict("csv", "cut", "error-file-line").failed


@pytest.mark.parametrize(("reader", "payload_of", "where"), [
    ("jsonl", lambda d: d.replace(b"\n", b"\n{\"step\": 3, \"reward\n", 1), ":2"),
    ("run-metrics", lambda d: d.replace(b"\n", b"\n[1, 2]\n", 1), ":2"),
    ("trl", lambda d: d[: len(d) // 2], ":"),
    ("csv", lambda d: b"", "log.csv"),
])
def test_fixed_damages_name_the_file_and_line(reader: str, payload_of, where: str) -> None:
    data = ml.source(reader).data
    v = ml.classify(reader, "fixed", payload_of(data), None)
    assert v.outcome.startswith("error-file"), v
    assert ml.source(reader).file in v.detail and where in v.detail, v.detail


def test_a_bad_value_is_reported_not_silently_lost() -> None:
    data = ml.source("csv").data
    lines = data.splitlines(keepends=True)
    cells = lines[10].split(b",")
    j = next(i for i, c in enumerate(cells[1:], 1) if c.strip() and c[:1].isdigit())
    cells[j] = b"abc"
    v = ml.classify("csv", "bad_value", b"".join(lines[:10] + [b",".join(cells)] + lines[11:]), 11)
    assert v.outcome in ("result", "error-file-line"), v  # a result only when it notes the dropped value
