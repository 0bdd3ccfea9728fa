"""ceiling.ingest: every format read from a real fixture, values checked against the source file.

Fixtures (tests/fixtures, made once by tools/make_fixtures/, never regenerated here):
- trl/trainer_state.json: genuine, TRL 1.16 GRPOTrainer on CPU (tiny random Llama), beta 0.04, eval every 4
  steps; trl/tensorboard/: the event file transformers' TensorBoardCallback wrote for the same run.
- trl_old/trainer_state.json: genuine, TRL 0.15.2 (old key names completion_length, rewards/{f}).
- tensorboard_verl/: genuine event files from torch's SummaryWriter used as verl's TensorBoard backend uses
  it, with a restart into a second event file.
- ceiling_train/: genuine, `ceiling.rl.grpo.train` on a tiny random base (config.json, metrics.jsonl).
- verl/, wandb/, ceiling_run/: HAND-WRITTEN from documented key names (verl needs Ray and GPUs, a W&B
  history export needs a W&B server), see tools/make_fixtures/make_handwritten_fixtures.py.
- real_logs/: the two genuine GRPO logs of rasbt/reasoning-from-scratch (Apache-2.0), copied with their README.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from ceiling.frame import COLUMNS, METRICS
from ceiling.ingest import read_log
from ceiling.ingest.mappings import (CEILING_KEYS, GENERIC_KEYS, HELDOUT_RECORD_KEYS, TABLES, TRACKER_KEYS, TRL_KEYS,
                                     VERL_KEYS, resolve_keys)

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"
SHARED_LOGS = REPO.parent / "shared" / "data" / "real_logs"
LOG_73 = "7_3_plus_tracking_metrics.csv"
LOG_NOKL = "rlvr_grpo_original_no_kl_metrics.csv"


def series(frame: pd.DataFrame, metric: str) -> pd.Series:
    sub = frame[frame["metric"] == metric]
    assert sub["step"].is_unique, f"{metric} has duplicate steps"
    return sub.set_index("step")["value"]


def digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def real_log_dirs() -> list:
    shared = pytest.param(SHARED_LOGS, id="shared", marks=pytest.mark.skipif(
        not (SHARED_LOGS / LOG_73).is_file(), reason=f"{SHARED_LOGS} is not present on this machine"))
    return [shared, pytest.param(FIX / "real_logs", id="fixture-copy")]


# ---------------------------------------------------------------------------------------------- real logs
@pytest.mark.parametrize("folder", real_log_dirs())
def test_real_7_3_log_restart_percent_and_sparse_eval(folder: Path) -> None:
    before = digest(folder / LOG_73)
    res = read_log(folder / LOG_73)
    assert digest(folder / LOG_73) == before
    assert res.format == "csv"
    f = res.frame
    assert list(f.columns[:len(COLUMNS)]) == COLUMNS
    reward = series(f, "verified/reward")
    # the aborted first run (rows 2-6, total_steps=300) is dropped: 500 steps remain, 1..500, once each
    assert list(reward.index) == list(range(1, 501))
    assert series(f, "raw/total_steps").eq(500).all()
    with open(folder / LOG_73, newline="") as fh:
        rows = list(csv.DictReader(fh))[5:]  # the kept segment, read independently
    assert len(rows) == 500
    np.testing.assert_allclose(reward.to_numpy(), [float(r["reward_avg"]) for r in rows])
    np.testing.assert_allclose(series(f, "policy/entropy").to_numpy(), [float(r["entropy_avg"]) for r in rows])
    evals = series(f, "verified/eval_acc")
    assert list(evals.index) == list(range(50, 501, 50))
    # percent stays as logged (the fitter reads percent), with a note
    np.testing.assert_allclose(evals.to_numpy(), [float(r["eval_acc"]) for r in rows if r["eval_acc"]])
    assert evals[50] == pytest.approx(46.2) and evals[500] == pytest.approx(33.0)
    notes = " | ".join(res.notes)
    assert "restart at line 7" in notes and "steps 1-5" in notes
    assert "eval_acc at step 1" in notes  # the aborted run's only step-1 eval is gone, and the note says so
    assert "in percent (max 46.2): kept as logged" in notes
    restart = res.dropped[res.dropped["reason"] == "restart"]
    assert sorted(restart["location"].unique()) == [2, 3, 4, 5, 6]
    assert ((restart["source_key"] == "eval_acc") & (restart["value"] == 15.6)).any()


@pytest.mark.parametrize("folder", real_log_dirs())
def test_real_no_kl_log(folder: Path) -> None:
    res = read_log(folder / LOG_NOKL)
    f = res.frame
    reward = series(f, "verified/reward")
    assert list(reward.index) == list(range(1, 259))
    length = series(f, "length/mean")
    assert length[257] == 2048.0  # the length collapse reaches the cap
    with open(folder / LOG_NOKL, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["step"]]
    np.testing.assert_allclose(reward.to_numpy(), [float(r["reward_avg"]) for r in rows])
    assert res.dropped.empty
    assert not any("restart" in n for n in res.notes)
    assert "kl/logged" not in set(f["metric"])


def test_fixture_copies_match_the_shared_logs() -> None:
    if not (SHARED_LOGS / LOG_73).is_file():
        pytest.skip(f"{SHARED_LOGS} is not present on this machine")
    for name in (LOG_73, LOG_NOKL, "README.md"):
        assert (FIX / "real_logs" / name).read_bytes() == (SHARED_LOGS / name).read_bytes()


def test_unverified_flag_maps_the_benchmark() -> None:
    res = read_log(FIX / "real_logs" / LOG_73, mapping={"unverified": "eval_acc"})
    assert res.mapping["eval_acc"] == "unverified/score"
    assert "verified/eval_acc" not in set(res.frame["metric"])
    assert series(res.frame, "unverified/score")[300] == pytest.approx(37.0)


# ---------------------------------------------------------------------------------------------------- TRL
def _trl_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["log_history"]


def test_trl_new_keys() -> None:
    path = FIX / "trl" / "trainer_state.json"
    res = read_log(path)
    assert res.format == "trl"
    assert res.mapping == {"reward": "verified/reward", "entropy": "policy/entropy",
                           "kl": "kl/policy_base_k3_token", "completions/mean_length": "length/mean",
                           "eval_reward": "verified/eval_acc"}
    rows = _trl_rows(path)
    train = [r for r in rows if "reward" in r]
    f = res.frame
    assert series(f, "verified/reward").to_dict() == pytest.approx({r["step"]: r["reward"] for r in train})
    assert series(f, "policy/entropy").to_dict() == pytest.approx({r["step"]: r["entropy"] for r in train})
    assert series(f, "kl/policy_base_k3_token").to_dict() == pytest.approx({r["step"]: r["kl"] for r in train})
    evals = {r["step"]: r["eval_reward"] for r in rows if "eval_reward" in r}
    assert sorted(evals) == [4, 8, 12, 16]
    assert series(f, "verified/eval_acc").to_dict() == pytest.approx(evals)
    # per-function rewards, eval rows and the end-of-run summary row are all kept, raw
    assert series(f, "raw/rewards/digit_share/mean").to_dict() == pytest.approx(
        {r["step"]: r["rewards/digit_share/mean"] for r in train})
    assert set(series(f, "raw/train_runtime").index) == {16}
    assert "raw/eval_entropy" in set(f["metric"])
    assert f["compute"].isna().all()  # TRL logs no FLOPs per step
    assert res.dropped.empty and not any("restart" in n for n in res.notes)


def test_trl_old_keys() -> None:
    path = FIX / "trl_old" / "trainer_state.json"
    assert json.loads((FIX / "trl_old" / "versions.json").read_text())["trl"] == "0.15.2"
    res = read_log(path)
    rows = [r for r in _trl_rows(path) if "completion_length" in r]
    assert res.mapping["completion_length"] == "length/mean"
    assert series(res.frame, "length/mean").to_dict() == pytest.approx({r["step"]: r["completion_length"] for r in rows})
    assert series(res.frame, "raw/rewards/short_answer").to_dict() == pytest.approx(
        {r["step"]: r["rewards/short_answer"] for r in rows})
    assert "policy/entropy" not in set(res.frame["metric"])  # TRL 0.15 did not log entropy


def test_trl_folder_and_checkpoint_run_name(tmp_path: Path) -> None:
    ck = tmp_path / "my-run" / "checkpoint-16"
    ck.mkdir(parents=True)
    shutil.copy(FIX / "trl" / "trainer_state.json", ck / "trainer_state.json")
    res = read_log(ck)
    assert res.format == "trl" and set(res.frame["run"]) == {"my-run"}
    assert set(read_log(ck, run="given").frame["run"]) == {"given"}


# --------------------------------------------------------------------------------------------- tensorboard
def test_tensorboard_from_trl_run_matches_trainer_state() -> None:
    res = read_log(FIX / "trl" / "tensorboard")
    assert res.format == "tensorboard"
    state = read_log(FIX / "trl" / "trainer_state.json").frame
    for metric in ("verified/reward", "policy/entropy", "kl/policy_base_k3_token", "verified/eval_acc"):
        a, b = series(res.frame, metric), series(state, metric)
        assert list(a.index) == list(b.index)
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)  # float32 in event files


def test_tensorboard_verl_restart_across_event_files() -> None:
    folder = FIX / "tensorboard_verl"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    res = read_log(folder)
    jsonl = read_log(FIX / "verl" / "metrics.jsonl").frame
    for metric in ("verified/reward", "policy/entropy", "kl/logged", "verified/eval_acc"):
        a, b = series(res.frame, metric), series(jsonl, metric)
        assert list(a.index) == list(b.index)
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)
    assert any("restart" in n and "step 21" in n for n in res.notes)
    assert not any("late rows" in n for n in res.notes)


# --------------------------------------------------------------------------------------------------- verl
def _verl_source() -> list[dict]:
    return [json.loads(line) for line in (FIX / "verl" / "metrics.jsonl").read_text().splitlines()]


def test_verl_file_logger_jsonl() -> None:
    res = read_log(FIX / "verl" / "metrics.jsonl")
    assert res.format == "verl"
    src = _verl_source()
    kept = src[:21] + src[26:]  # steps 0-20, then the resumed segment 21-40 (21-25 of the crashed run dropped)
    reward = series(res.frame, "verified/reward")
    assert list(reward.index) == list(range(1, 41))
    expected = {r["step"]: r["data"]["critic/score/mean"] for r in kept if "critic/score/mean" in r["data"]}
    assert reward.to_dict() == pytest.approx(expected)
    val = series(res.frame, "verified/eval_acc")
    assert list(val.index) == [0, 10, 20, 30, 40]
    assert res.mapping["val-core/openai/gsm8k/reward/mean@1"] == "verified/eval_acc"
    assert res.mapping["actor/kl_loss"] == "kl/logged"
    assert "raw/actor/ppo_kl" in set(res.frame["metric"])  # KL to the previous policy is not KL to the base
    assert (res.dropped["reason"] == "restart").sum() > 0
    assert set(res.dropped.loc[res.dropped["reason"] == "restart", "step"]) == {21, 22, 23, 24, 25}


def test_verl_console_log_matches_file_logger() -> None:
    res = read_log(FIX / "verl" / "console.log")
    assert res.format == "verl"
    jsonl = read_log(FIX / "verl" / "metrics.jsonl").frame
    for metric in ("verified/reward", "policy/entropy", "length/mean", "verified/eval_acc"):
        a, b = series(res.frame, metric), series(jsonl, metric)
        assert list(a.index) == list(b.index)
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=6e-4)  # console rounds to 3 decimals
    assert any("restart" in n for n in res.notes)


def test_verl_several_validation_sources_first_is_eval_acc_others_raw_eval(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    lines = [{"step": s, "data": {"critic/score/mean": 0.1 * s, "val-core/gsm8k/acc/mean@1": 0.5 + s / 100,
                                  "val-core/math/acc/mean@1": 0.3, "val-core/aime/reward/mean@1": 0.1}}
             for s in range(1, 4)]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = read_log(p)
    assert series(res.frame, "verified/eval_acc").to_list() == [0.51, 0.52, 0.53]  # the first in the log
    assert series(res.frame, "raw/eval/math").to_list() == [0.3, 0.3, 0.3]
    assert series(res.frame, "raw/eval/aime").to_list() == [0.1, 0.1, 0.1]  # another entry, another dataset
    assert any("3 held-out datasets: 'gsm8k'" in n and "math, aime" in n for n in res.notes)
    res2 = read_log(p, mapping={"unverified": "val-core/math/acc/mean@1"})
    assert series(res2.frame, "unverified/score").to_list() == [0.3, 0.3, 0.3]
    assert res2.mapping["val-core/gsm8k/acc/mean@1"] == "verified/eval_acc"


# -------------------------------------------------------------------------------------------------- wandb
def test_wandb_history_export() -> None:
    path = FIX / "wandb" / "history.csv"
    res = read_log(path)
    assert res.format == "wandb"
    src = pd.read_csv(path)
    train = src[src["train/reward"].notna()]
    reward = series(res.frame, "verified/reward")
    assert list(reward.index) == train["train/global_step"].astype(int).tolist()  # global step, not _step
    np.testing.assert_allclose(reward.to_numpy(), train["train/reward"].to_numpy())
    assert list(series(res.frame, "verified/eval_acc").index) == [10, 20, 30]
    assert any("checkpoint_path" in n and "only text" in n for n in res.ignored)
    assert "raw/eval/loss" not in set(res.frame["metric"])  # all "NaN": not logged
    assert not any("restart" in n for n in res.notes)  # eval and summary rows share steps, repeat no key


def test_wandb_chart_export(tmp_path: Path) -> None:
    p = tmp_path / "chart.csv"
    p.write_text('"Step","run-1 - train/reward","run-1 - train/reward__MIN","run-1 - train/reward__MAX"\n'
                 "1,0.2,0.1,0.3\n2,0.4,0.3,0.5\n")
    res = read_log(p)
    assert res.format == "wandb"
    assert series(res.frame, "verified/reward").to_dict() == {1: 0.2, 2: 0.4}
    assert set(res.frame["metric"]) == {"verified/reward"}


# ------------------------------------------------------------------------------------------------ ceiling
def test_ceiling_train_run_dir_from_our_loop() -> None:
    folder = FIX / "ceiling_train"
    res = read_log(folder)
    assert res.format == "ceiling"
    src = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    f = res.frame
    assert series(f, "verified/reward").to_dict() == pytest.approx({r["step"]: r["reward/mean"] for r in src})
    assert series(f, "kl/policy_base_k3").to_dict() == pytest.approx({r["step"]: r["kl/policy_base_k3_seq"] for r in src})
    assert series(f, "policy/entropy").to_dict() == pytest.approx({r["step"]: r["policy/entropy"] for r in src})
    assert f.groupby("step")["compute"].first().to_dict() == pytest.approx({r["step"]: r["compute/flops"] for r in src})
    assert series(f, "raw/reward/family/add").index.tolist() == [r["step"] for r in src]


def test_ceiling_run_dir() -> None:
    folder = FIX / "ceiling_run"
    res = read_log(folder)
    assert res.format == "ceiling"
    f = res.frame
    src = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert series(f, "kl/policy_base_k3").to_dict() == pytest.approx({r["step"]: r["kl/policy_base_k3_seq"] for r in src})
    flops = f[f["source_key"] != "eval.csv"].groupby("step")["compute"].first()
    assert flops.to_dict() == pytest.approx({r["step"]: r["compute/flops"] for r in src})
    # eval.csv is canonical and owns verified/reward; the training reward stays raw
    ev = pd.read_csv(folder / "eval.csv")
    got = f[f["metric"] == "verified/pass@k"].sort_values(["step", "k"])["value"].to_numpy()
    np.testing.assert_allclose(got, ev[ev["metric"] == "verified/pass@k"].sort_values(["step", "k"])["value"])
    assert set(f.loc[f["metric"] == "verified/reward", "source_key"]) == {"eval.csv"}
    assert "raw/reward/mean" in set(f["metric"])
    res2 = read_log(folder, mapping={"verified": "reward/mean"})
    assert set(res2.frame.loc[res2.frame["metric"] == "verified/reward", "source_key"]) == {"reward/mean"}


# ------------------------------------------------------------------------------------- generic and mess
def test_generic_jsonl_nested_mixed_types(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    rows = [{"iteration": 1, "train": {"reward_mean": "0.25"}, "kl_loss": 0.01, "note": "warmup"},
            {"iteration": 2, "train": {"reward_mean": 0.5}, "kl_loss": None, "flag": True},
            {"iteration": 3, "train": {"reward_mean": float("inf")}, "kl_loss": 0.03}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = read_log(p, mapping={"verified": "train/reward_mean"})
    assert res.format == "jsonl"
    assert series(res.frame, "verified/reward").to_dict() == {1: 0.25, 2: 0.5}
    assert series(res.frame, "kl/logged").to_dict() == {1: 0.01, 3: 0.03}
    assert series(res.frame, "raw/flag").to_dict() == {2: 1.0}
    assert any("non-finite" in n for n in res.notes)
    assert any("only text: 'note' (1 value)" in n for n in res.ignored)


def test_resume_from_earlier_checkpoint_keeps_the_steps_before_it(tmp_path: Path) -> None:
    p = tmp_path / "resumed.csv"
    body = "".join(f"{s},{s / 10}\n" for s in range(1, 11)) + "".join(f"{s},{s / 100}\n" for s in range(7, 13))
    p.write_text("step,reward\n" + body)
    res = read_log(p)
    r = series(res.frame, "verified/reward")
    assert list(r.index) == list(range(1, 13))
    assert r[6] == 0.6 and r[7] == 0.07 and r[12] == 0.12  # 1-6 from the first run, 7-12 from the resume
    assert sorted(res.dropped.loc[res.dropped["reason"] == "restart", "step"]) == [7, 8, 9, 10]


def test_late_eval_row_is_kept_and_sorted(tmp_path: Path) -> None:
    p = tmp_path / "late.jsonl"
    rows = [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}, {"step": 1, "eval_acc": 0.5},
            {"step": 3, "reward": 0.3}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = read_log(p)
    assert series(res.frame, "verified/eval_acc").to_dict() == {1: 0.5}
    assert list(series(res.frame, "verified/reward").index) == [1, 2, 3]
    assert res.frame["step"].is_monotonic_increasing
    assert any("late rows" in n for n in res.notes)


def test_truncated_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "cut.csv"
    p.write_text("step,reward,eval_acc\n1,0.1,\n2,0.2,\n3,0.")
    res = read_log(p)
    assert list(series(res.frame, "verified/reward").index) == [1, 2]
    assert any("cut short" in n for n in res.notes)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,reward,eval_acc\n1,0.1,\n2,0.2\n3,0.3,\n")
    with pytest.raises(CeilingError, match=r"bad\.csv:3: has 2 fields, the header has 3"):
        read_log(bad)
    j = tmp_path / "bad.jsonl"
    j.write_text('{"step": 1, "reward": 0.1}\n{"step": 2, "rew\n{"step": 3, "reward": 0.3}\n')
    with pytest.raises(CeilingError, match=r"bad\.jsonl:2: malformed JSON"):
        read_log(j)


@pytest.mark.parametrize("text, pattern", [
    ("step,reward\n1,0.1\n1.5,0.2\n", r"x\.csv:3: field 'step': step '1\.5' is not a whole number"),
    ("step,reward\n1,0.1\n-2,0.2\n", r"x\.csv:3: .*not a whole number >= 0"),
    ("it,reward\n1,0.1\n", r"x\.csv: no step key .*--step KEY"),
    ("step,reward,reward\n1,0.1,0.2\n", r"x\.csv:1: column 'reward' appears twice"),
    ("", r"x\.csv: empty file"),
    ("step,other\n1,\n", r"x\.csv: no numeric values found"),
])
def test_bad_input_is_one_line_error_naming_file_and_line(tmp_path: Path, text: str, pattern: str) -> None:
    p = tmp_path / "x.csv"
    p.write_text(text)
    with pytest.raises(CeilingError, match=pattern) as info:
        read_log(p)
    assert "\n" not in str(info.value)


def test_mapping_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("step,acc\n1,0.5\n")
    with pytest.raises(CeilingError, match="no numeric key 'nope'"):
        read_log(p, mapping={"unverified": "nope"})
    with pytest.raises(CeilingError, match="unknown name 'bogus'"):
        read_log(p, mapping={"bogus": "acc"})
    with pytest.raises(CeilingError, match="no column 'it' for the step"):
        read_log(p, mapping={"step": "it"})
    with pytest.raises(CeilingError, match="unknown format"):
        read_log(p, format="parquet")
    with pytest.raises(CeilingError, match="no such file"):
        read_log(tmp_path / "missing.csv")
    assert read_log(p, mapping={"verified/eval_acc": "acc"}).mapping == {"acc": "verified/eval_acc"}


def test_detection_and_forced_format(tmp_path: Path) -> None:
    p = tmp_path / "train.log"
    p.write_text("INFO starting\n(main_task pid=9) step:1 - critic/score/mean:0.250 - actor/entropy:1.000\n"
                 "step:2 - critic/score/mean:0.500\n")
    assert read_log(p).format == "verl"
    q = tmp_path / "noext"
    q.write_text("step,reward\n1,0.5\n")
    assert read_log(q).format == "csv"
    assert read_log(FIX / "real_logs" / LOG_NOKL, format="csv").format == "csv"
    with pytest.raises(CeilingError, match="cannot tell the log format"):
        (tmp_path / "junk.bin").write_bytes(b"\x00\x01binary")
        read_log(tmp_path / "junk.bin")
    with pytest.raises(CeilingError, match="cannot tell the log format of this folder"):
        read_log(tmp_path)


# ---------------------------------------------------------------------------------------- docs and tables
def test_docs_list_every_mapping_of_every_table() -> None:
    doc = (REPO / "docs" / "ingest.md").read_text()
    sections = re.split(r"\n##+ ", doc)
    for name, table in [("CEILING_KEYS", CEILING_KEYS), ("TRL_KEYS", TRL_KEYS), ("VERL_KEYS", VERL_KEYS),
                        ("TRACKER_KEYS", TRACKER_KEYS), ("GENERIC_KEYS", GENERIC_KEYS),
                        ("HELDOUT_RECORD_KEYS", HELDOUT_RECORD_KEYS)]:
        section = next(s for s in sections if re.findall(r"`(\w+_KEYS)`", s.split("\n", 1)[0])[:1] == [name])
        rows = set(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section, flags=re.MULTILINE))
        assert rows == set(table.items()), name


def test_tables_name_canonical_metrics_only() -> None:
    for tables in [*TABLES.values(), [HELDOUT_RECORD_KEYS]]:
        for table in tables:
            assert set(table.values()) <= set(METRICS)


def test_resolve_keys_first_entry_wins() -> None:
    mapped, notes = resolve_keys(["completion_length", "completions/mean_length"], "trl")
    assert mapped == {"completions/mean_length": "length/mean"} and not notes


# ------------------------------------------------------------------------------------------- ceiling fit
def run_fit(argv: list[str]) -> int:
    """`ceiling fit ARGV` as ceiling.cli runs it (its parser and its one-line error handling), without
    importing the other sub-commands (ceiling.cli imports them all, transformers included)."""
    import argparse

    from ceiling.commands import fit

    parser = argparse.ArgumentParser(prog="ceiling fit")
    fit.add_arguments(parser)
    try:
        return fit.main(parser.parse_args(argv))
    except CeilingError as exc:
        print(f"ceiling: error: {exc}", file=sys.stderr)
        return 2


def test_ceiling_fit_command_on_real_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = FIX / "real_logs" / LOG_73
    before = digest(log)
    out = tmp_path / "out"
    rc = run_fit([str(log), "--out", str(out), "--unverified", "eval_acc", "--n-boot", "20", "--x", "step"])
    assert rc == 0 and digest(log) == before
    fits = json.loads((out / "fits.json").read_text())
    assert fits["schema_version"] == 1 and fits["run"] == "7_3_plus_tracking_metrics"
    assert fits["meta"]["source"]["mapping"]["eval_acc"] == "unverified/score"
    assert (out / "report" / "index.html").is_file()
    text = capsys.readouterr().out
    assert "eval_acc -> unverified/score" in text and "restart at line 7" in text and "fits:" in text


def test_ceiling_fit_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"step": 1, "reward": 0.1}\n[1, 2]\n')
    assert run_fit([str(p), "--out", str(tmp_path / "o"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ceiling: error: ") and "bad.jsonl:2" in err
    assert not (tmp_path / "o").exists()


def test_ceiling_fit_on_our_run_dir_writes_into_it(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    shutil.copytree(FIX / "ceiling_train", run)
    assert run_fit([str(run), "--n-boot", "20", "--no-report"]) == 0
    fits = json.loads((run / "fits.json").read_text())
    assert fits["run"] == "demo" and fits["meta"]["source"]["format"] == "ceiling"


def test_reading_never_modifies_inputs() -> None:
    paths = [FIX / "trl" / "trainer_state.json", FIX / "trl" / "tensorboard", FIX / "verl" / "metrics.jsonl",
             FIX / "verl" / "console.log", FIX / "wandb" / "history.csv", FIX / "ceiling_run",
             FIX / "tensorboard_verl", FIX / "real_logs" / LOG_NOKL]
    before = {p: (digest(p), [f.stat().st_mtime_ns for f in sorted(p.rglob("*"))] if p.is_dir() else p.stat().st_mtime_ns)
              for p in paths}
    for p in paths:
        read_log(p)
    after = {p: (digest(p), [f.stat().st_mtime_ns for f in sorted(p.rglob("*"))] if p.is_dir() else p.stat().st_mtime_ns)
             for p in paths}
    assert before == after


def test_ceiling_fit_no_report_on_trl(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert run_fit([str(FIX / "trl" / "trainer_state.json"), "--out", str(out), "--n-boot", "20",
                 "--no-report"]) == 0
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits) >= {"ceiling", "entropy_law", "collapse"} and not (out / "report").exists()
    assert math.isfinite(fits["meta"]["n_rows"])


# ------------------------------------------------------------------ layouts real runs write (issue 20)
LAYOUT_METRICS = ("verified/reward", "policy/entropy", "kl/logged", "length/mean", "verified/eval_acc")


def assert_same_series(a: pd.DataFrame, b: pd.DataFrame, metrics: tuple[str, ...] = LAYOUT_METRICS) -> None:
    for metric in metrics:
        x, y = series(a, metric), series(b, metric)
        assert list(x.index) == list(y.index), metric
        np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), rtol=1e-12, err_msg=metric)


def test_hand_made_loop_jsonl_reads_like_its_tidy_csv() -> None:
    path = FIX / "loop_jsonl" / "metrics.jsonl"
    res = read_log(path)  # no flags
    tidy = read_log(FIX / "loop_jsonl" / "tidy.csv", eval_n=1024)
    assert_same_series(res.frame, tidy.frame)
    assert res.step_key.startswith("grpo_step (in every record") and "optimizer_step in 400" in res.step_key
    assert res.kind_key == "type" and res.kinds == {"eval": 41, "rollout": 200, "train": 400}
    assert res.mapping == {"eval/answer_accuracy": "verified/eval_acc", "rollout/reward_mean": "verified/reward",
                           "train/entropy": "policy/entropy", "train/reference_kl": "kl/logged",
                           "rollout/response_length_mean": "length/mean"}
    # recomputed from the source records, independently of the generator's tidy CSV
    records = [json.loads(line) for line in path.read_text().splitlines()]
    train = pd.DataFrame([r for r in records if r["type"] == "train"])
    per_step = train.groupby("grpo_step")["entropy"].mean()
    np.testing.assert_allclose(series(res.frame, "policy/entropy").to_numpy(), per_step.to_numpy(), rtol=1e-12)
    evals = [r for r in records if r["type"] == "eval"]
    acc = series(res.frame, "verified/eval_acc")
    assert list(acc.index) == [r["grpo_step"] for r in evals] == list(range(0, 201, 5))
    assert acc.to_list() == [r["answer_accuracy"] for r in evals]
    f = res.frame
    n = f.loc[f["metric"] == "verified/eval_acc", "n"]
    assert (n == 1024).all() and res.eval_n_from == "eval/num_examples"
    assert (tidy.frame.loc[tidy.frame["metric"] == "verified/eval_acc", "n"] == 1024).all()
    assert "raw/train/approx_kl" in set(f["metric"])  # PPO's KL to the old policy is not a KL to the base
    assert "raw/train/optimizer_step" in set(f["metric"])
    assert set(res.dropped["reason"]) == {"non-numeric"}  # the timestamps; no restart
    assert not any("restart" in note for note in res.notes)
    notes = " | ".join(res.notes)
    assert "1 'config' record without a value for the step (grpo_step): skipped" in notes
    assert "'train': 400 records at 200 steps" in notes
    assert any("only text" in i and "train/timestamp" in i for i in res.ignored)


def test_old_verl_console_log_reads_like_its_tidy_csv() -> None:
    res = read_log(FIX / "verl_old" / "console.log", eval_n=1319)  # the GSM8K test set
    tidy = read_log(FIX / "verl_old" / "tidy.csv", eval_n=1319)
    assert res.format == "verl"
    assert_same_series(res.frame, tidy.frame)
    assert res.mapping["val/test_score/openai/gsm8k"] == "verified/eval_acc"
    assert res.mapping["actor/entropy_loss"] == "policy/entropy"
    assert res.mapping["critic/kl"] == "kl/logged" and "raw/actor/ppo_kl" in set(res.frame["metric"])
    acc = series(res.frame, "verified/eval_acc")
    # before training (step 0), inside every 10th training line, and the final validation on its own line
    assert list(acc.index) == [*range(0, 431, 10), 435]
    assert list(series(res.frame, "verified/reward").index) == list(range(1, 435))
    assert (series(res.frame, "kl/logged") < 0).any()  # the KL-in-reward estimate is kept whatever its sign
    assert (res.frame.loc[res.frame["metric"] == "verified/eval_acc", "n"] == 1319).all()
    assert not any("restart" in n for n in res.notes)


@pytest.mark.parametrize("val_key, entropy_key", [
    ("val/test_score/openai/gsm8k", "actor/entropy_loss"),  # older verl (TinyZero era)
    ("val/openai/gsm8k/acc/mean@4", "actor/entropy"),  # versions in between
    ("val/openai/gsm8k/score/mean@1", "actor/entropy"),
    ("val-core/openai/gsm8k/acc/mean@4", "actor/entropy"),  # verl >= 0.3
    ("val-core/openai/gsm8k/reward/mean@1", "actor/entropy"),
    ("val-aux/openai/gsm8k/score/mean@1", "actor/entropy"),  # no val-core key logged
])
def test_every_verl_naming_generation_maps_the_held_out_score(tmp_path: Path, val_key: str, entropy_key: str) -> None:
    p = tmp_path / "verl.jsonl"
    rows = [{"step": s, "data": {"critic/score/mean": s / 10, entropy_key: 1 - s / 10,
                                 **({val_key: 0.2 + s / 100} if s % 2 == 0 else {})}} for s in range(0, 7)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = read_log(p)
    assert res.mapping[val_key] == "verified/eval_acc" and res.mapping[entropy_key] == "policy/entropy"
    assert series(res.frame, "verified/eval_acc").to_dict() == pytest.approx({0: 0.2, 2: 0.22, 4: 0.24, 6: 0.26})


def test_val_core_wins_over_val_aux_of_the_same_dataset(tmp_path: Path) -> None:
    p = tmp_path / "verl.jsonl"
    rows = [{"step": s, "data": {"val-aux/gsm8k/reward/mean@4": 0.9, "val-core/gsm8k/acc/mean@4": 0.4,
                                 "val-aux/gsm8k/acc/std@4": 0.1}} for s in (10, 20)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = read_log(p)
    assert res.mapping == {"val-core/gsm8k/acc/mean@4": "verified/eval_acc"}  # same dataset: the aux stays raw
    assert "raw/val-aux/gsm8k/reward/mean@4" in set(res.frame["metric"])


def test_trl_eval_keys_and_several_eval_sets(tmp_path: Path) -> None:
    p = tmp_path / "trainer_state.json"
    hist = []
    for s in (1, 2, 3, 4):
        hist.append({"step": s, "reward": s / 10, "epoch": s / 4})
        if s % 2 == 0:
            hist.append({"step": s, "eval_gsm8k_reward": 0.3 + s / 100, "eval_math_reward": 0.1, "epoch": s / 4})
    p.write_text(json.dumps({"log_history": hist, "global_step": 4}))
    res = read_log(p)
    assert res.mapping["eval_gsm8k_reward"] == "verified/eval_acc"
    assert res.mapping["eval_math_reward"] == "raw/eval/math"
    assert series(res.frame, "verified/eval_acc").to_dict() == pytest.approx({2: 0.32, 4: 0.34})
    assert any("2 held-out datasets: 'gsm8k'" in n for n in res.notes)
    q = tmp_path / "acc" / "trainer_state.json"
    q.parent.mkdir()
    q.write_text(json.dumps({"log_history": [{"step": 1, "reward": 0.1}, {"step": 1, "eval_accuracy": 0.5}]}))
    assert read_log(q).mapping["eval_accuracy"] == "verified/eval_acc"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_step_key_rule(tmp_path: Path) -> None:
    # `step` only on the train records, `grpo_step` on every record: grpo_step
    rows = [{"kind": "train", "grpo_step": s, "step": 2 * s, "reward": s} for s in range(1, 9)]
    rows += [{"kind": "eval", "grpo_step": s, "accuracy": 0.5} for s in (4, 8)]
    res = read_log(_jsonl(tmp_path / "a.jsonl", rows))
    assert res.step_key.startswith("grpo_step (in every record")
    assert list(series(res.frame, "verified/eval_acc").index) == [4, 8]
    # W&B history: `train/global_step` missing from a few rows still beats W&B's `_step`
    lines = ["_step,train/global_step,train/reward"] + [f"{i},{i // 2 + 1},{i / 10}" for i in range(19)] + ["19,,"]
    (tmp_path / "h.csv").write_text("\n".join(lines) + "\n")
    res = read_log(tmp_path / "h.csv")
    assert res.format == "wandb" and res.step_key.startswith("train/global_step (in 19 of 20 records")
    # no key in 90% of the records: the one in the most records
    rows = [{"iteration": i, "reward": i} for i in range(6)] + [{"optimizer_step": i, "loss": 1} for i in range(4)]
    res = read_log(_jsonl(tmp_path / "b.jsonl", rows))
    assert res.step_key.startswith("iteration (in 6 of 10 records, the most")
    assert any("4 lines without a value for the step (iteration): skipped" in n for n in res.notes)
    # --step wins
    res = read_log(_jsonl(tmp_path / "a2.jsonl", rows), mapping={"step": "optimizer_step"})
    assert res.step_key == "optimizer_step (--step)"
    # TRL's fractional epoch is never a step
    with pytest.raises(CeilingError, match="no step key"):
        read_log(_jsonl(tmp_path / "c.jsonl", [{"epoch": 0.25, "reward": 1}, {"epoch": 0.5, "reward": 2}]))


def test_epoch_plus_batch_step(tmp_path: Path) -> None:
    rows = [{"epoch": e, "batch": b, "reward": e + b / 10} for e in (0, 1, 2) for b in range(4)]
    res = read_log(_jsonl(tmp_path / "eb.jsonl", rows))
    reward = series(res.frame, "verified/reward")
    assert list(reward.index) == list(range(12))
    assert reward[5] == pytest.approx(1.1) and reward[11] == pytest.approx(2.3)
    assert "epoch * batches per epoch + batch" in res.step_key and "4 batches per epoch" in res.step_key


def test_several_rows_at_one_step_merge_but_a_step_going_back_is_a_restart(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("step,reward,entropy\n1,0.1,1.0\n1,0.3,\n2,0.5,0.8\n2,0.7,0.6\n3,0.9,0.5\n")
    res = read_log(p)
    assert series(res.frame, "verified/reward").to_dict() == pytest.approx({1: 0.2, 2: 0.6, 3: 0.9})
    assert series(res.frame, "policy/entropy").to_dict() == pytest.approx({1: 1.0, 2: 0.7, 3: 0.5})
    assert res.dropped.empty and any("2 lines log a key again at the same step: values averaged" in n
                                     for n in res.notes)
    q = tmp_path / "r.csv"
    q.write_text("step,reward\n1,0.1\n2,0.2\n3,0.3\n2,0.9\n3,0.8\n")
    r = series(read_log(q).frame, "verified/reward")
    assert r.to_dict() == pytest.approx({1: 0.1, 2: 0.9, 3: 0.8})


def test_split_column_and_null_keys_in_a_csv(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    lines = ["step,split,reward,accuracy,num_examples,reference_kl"]
    for s in range(1, 7):
        lines.append(f"{s},train,{s / 10},{s / 10},,")
        if s % 3 == 0:
            lines.append(f"{s},test,,{0.4 + s / 100},250,")
    p.write_text("\n".join(lines) + "\n")
    res = read_log(p)
    assert res.kind_key == "split" and res.kinds == {"train": 6, "test": 2}
    assert res.mapping["test/accuracy"] == "verified/eval_acc" and res.mapping["train/reward"] == "verified/reward"
    assert series(res.frame, "verified/eval_acc").to_dict() == pytest.approx({3: 0.43, 6: 0.46})
    assert (res.frame.loc[res.frame["metric"] == "verified/eval_acc", "n"] == 250).all()
    assert "raw/train/accuracy" in set(res.frame["metric"])  # a training accuracy is not the held-out one
    assert any("always null" in i and "train/reference_kl" in i for i in res.ignored)
    assert "kl/logged" not in set(res.frame["metric"])


def test_two_held_out_kinds_first_is_eval_acc(tmp_path: Path) -> None:
    rows = [{"type": "train", "step": s, "reward": s / 10} for s in range(1, 5)]
    rows += [{"type": "eval", "step": 4, "accuracy": 0.6}, {"type": "test", "step": 4, "accuracy": 0.3}]
    res = read_log(_jsonl(tmp_path / "k.jsonl", rows))
    assert res.mapping["eval/accuracy"] == "verified/eval_acc" and res.mapping["test/accuracy"] == "raw/eval/test"


def test_wandb_chart_export_of_several_runs(tmp_path: Path) -> None:
    p = tmp_path / "chart.csv"
    p.write_text('"Step","a - train/reward","a - train/reward__MIN","a - train/reward__MAX",'
                 '"b - train/reward","b - train/reward__MIN","b - train/reward__MAX"\n'
                 "1,0.2,0.1,0.3,0.5,0.4,0.6\n2,0.4,0.3,0.5,,,\n3,,,,0.7,0.6,0.8\n")
    res = read_log(p)
    assert res.runs == ["a", "b"] and set(res.frame["run"]) == {"a", "b"}
    f = res.frame
    a, b = f[f["run"] == "a"], f[f["run"] == "b"]
    assert series(a, "verified/reward").to_dict() == {1: 0.2, 2: 0.4}
    assert series(b, "verified/reward").to_dict() == {1: 0.5, 3: 0.7}
    assert set(f["metric"]) == {"verified/reward"}  # no "<run> - " prefixes, no __MIN/__MAX
    only_b = read_log(p, run="b")
    assert set(only_b.frame["run"]) == {"b"} and only_b.runs == ["b"]
    with pytest.raises(CeilingError, match=r"no run 'c' in this file \(runs: a, b\)"):
        read_log(p, run="c")


def _restart_log(path: Path, restarts: int = 445) -> Path:
    steps = [s for i in range(1, restarts + 1) for s in (i, i + 2)]
    path.write_text("step,reward\n" + "".join(f"{s},{0.8 - 0.6 * math.exp(-s / 80):.6f}\n" for s in steps))
    return path


def test_ceiling_fit_prints_at_most_15_lines_before_the_headline(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    log = _restart_log(tmp_path / "restarts.csv")
    res = read_log(log)
    assert sum("restart at line" in n for n in res.notes) >= 440
    assert run_fit([str(log), "--out", str(tmp_path / "o"), "--n-boot", "20", "--no-report", "--x", "step"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("read ")
    before = 1 + next(i for i, line in enumerate(out[1:]) if not line.startswith("  "))
    assert before <= 15
    assert any("restart at line" in line and "(and 44" in line and "more like it)" in line for line in out[:before])
    notes = json.loads((tmp_path / "o" / "fits.json").read_text())["meta"]["source"]["notes"]
    assert sum("restart at line" in n for n in notes) >= 440  # all kept in fits.json


def test_ceiling_fit_on_both_layouts_with_no_flags_and_on_the_real_log(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (FIX / "loop_jsonl" / "metrics.jsonl", [],
         ["eval/answer_accuracy -> verified/eval_acc (n = 1024, from eval/num_examples)",
          "record kinds ('type'): eval 41, rollout 200, train 400", "step: grpo_step"]),
        (FIX / "verl_old" / "console.log", [],
         ["val/test_score/openai/gsm8k -> verified/eval_acc (n, the number of held-out problems, unknown: give "
          "--eval-n N)", "actor/entropy_loss -> policy/entropy", "critic/score/mean -> verified/reward"]),
        (FIX / "real_logs" / LOG_73, ["--eval-n", "500"], ["eval_acc -> verified/eval_acc (n = 500, from --eval-n)"]),
    ]
    for log, flags, expect in cases:
        out = tmp_path / log.stem
        assert run_fit([str(log), "--out", str(out), "--n-boot", "20", "--no-report", *flags]) == 0
        text = capsys.readouterr().out
        for line in expect:
            assert line in text, (log, line)
        fits = json.loads((out / "fits.json").read_text())
        assert fits["meta"]["source"]["mapping"]  # the fit ran on what was read
        if "diagnosis" in fits:  # the run diagnosis reads the held-out accuracy (ceiling.fit.diagnosis)
            assert fits["diagnosis"].get("roles", {}).get("held_out") == "verified/eval_acc", log


def test_ceiling_fit_refuses_a_log_with_no_reward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "noreward.csv"
    p.write_text("step,loss,tokens_per_sec,grad_norm\n" + "".join(f"{s},{1 / s},{40 + s},0.5\n" for s in range(1, 30)))
    assert run_fit([str(p), "--out", str(tmp_path / "o"), "--no-report"]) != 0
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.count("\n") == 0 and err.startswith("ceiling: error: ") and "noreward.csv" in err
    assert "keys: loss, tokens_per_sec, grad_norm" in err and "--verified KEY" in err
    assert not (tmp_path / "o").exists() and cap.out == ""
    assert run_fit([str(p), "--out", str(tmp_path / "o2"), "--no-report", "--n-boot", "20",
                    "--verified", "tokens_per_sec", "--x", "step"]) == 0


def test_ceiling_fit_on_a_chart_export_of_several_runs_says_which_it_fits(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "chart.csv"
    header = '"Step","run-a - train/reward","run-b - train/reward"'
    rows = [f"{s},{0.7 - 0.5 * math.exp(-s / 8):.4f},{0.6 - 0.5 * math.exp(-s / 6):.4f}" for s in range(1, 31)]
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    assert run_fit([str(p), "--out", str(tmp_path / "o"), "--n-boot", "20", "--no-report", "--x", "step"]) == 0
    text = capsys.readouterr().out
    assert "2 runs (run-a, run-b)" in text and "fitting run 'run-a', the first of 2" in text
    assert json.loads((tmp_path / "o" / "fits.json").read_text())["run"] == "run-a"
    assert run_fit([str(p), "--out", str(tmp_path / "b"), "--n-boot", "20", "--no-report", "--x", "step",
                    "--run", "run-b"]) == 0
    assert json.loads((tmp_path / "b" / "fits.json").read_text())["run"] == "run-b"


def test_layout_fixtures_are_what_the_generator_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools" / "make_fixtures"))
    try:
        import make_layout_fixtures
    finally:
        sys.path.pop(0)
    make_layout_fixtures.main(tmp_path)
    for name in ("loop_jsonl/metrics.jsonl", "loop_jsonl/tidy.csv", "verl_old/console.log", "verl_old/tidy.csv"):
        assert (tmp_path / name).read_bytes() == (FIX / name).read_bytes(), name


def test_a_restart_that_begins_with_a_step_0_eval_supersedes_the_first_segment(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("step,reward,eval_acc\n0,,0.30\n1,0.1,\n2,0.2,\n0,,0.31\n1,0.15,\n2,0.25,\n3,0.35,\n")
    res = read_log(p)
    assert series(res.frame, "verified/eval_acc").to_dict() == {0: 0.31}  # the later segment's, not a mean
    assert series(res.frame, "verified/reward").to_dict() == {1: 0.15, 2: 0.25, 3: 0.35}
    assert any("restart at line 5: step 0 logs 'eval_acc' again" in n for n in res.notes)


def test_an_async_loop_logging_the_next_rollout_between_optimizer_records_is_no_restart(tmp_path: Path) -> None:
    rows = []
    for s in range(1, 5):
        rows.append({"type": "rollout", "grpo_step": s, "reward": s / 10})
        if s > 1:
            rows.append({"type": "train", "grpo_step": s - 1, "entropy": 1.0 - s / 10})  # the second of step s-1
        rows.append({"type": "train", "grpo_step": s, "entropy": 1.0 - s / 10 + 0.05})
    res = read_log(_jsonl(tmp_path / "async.jsonl", rows))
    assert not any("restart" in n for n in res.notes) and res.dropped.empty
    # step t: records 1 - t/10 + 0.05 and 1 - (t+1)/10, averaged (steps 1-3); step 4 has its first only
    assert series(res.frame, "policy/entropy").to_dict() == pytest.approx({1: 0.875, 2: 0.775, 3: 0.675, 4: 0.65})
