"""Early warning: the sequential detectors (ceiling.fit.monitor) on cases with known answers, `ceiling watch`
on a log another process is writing, its exit codes, and the hooks (TRL callback, our loop's on_step)."""
from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ceiling.cli import main as cli
from ceiling.fit.monitor import (
    SIGNAL_BY_NAME,
    Detector,
    Monitor,
    MonitorConfig,
    null_stream,
    streams,
    threshold_for,
)
from ceiling.fit.simulate import draw_spec, simulate_run

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "real_logs"
LOGS = SHARED if SHARED.is_dir() else REPO / "tests" / "fixtures" / "real_logs"


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def first_alarm(det: Detector, values, n=None) -> int | None:
    for i, v in enumerate(values):
        _, exc = det.update(i, float(v), None if n is None else float(n))
        if exc is not None:
            return i
    return None


def binom_upper(n: int, p: float, level: float = 0.999) -> int:
    return int(stats.binom.ppf(level, n, p))


# ----------------------------------------------------------------------------------------- the stated rate
@pytest.mark.parametrize("family,phi", [("level", 0.5), ("level", 0.0), ("trend", 0.7), ("sparse", 0.0)])
def test_no_change_false_alarm_rate_is_at_most_the_stated_rate(family, phi):
    """A detector set for an ARL0 of A observations, on streams that do not change (AR(1) noise, a steady
    drift for trend detectors, binomial evaluations with the base far below for sparse ones): the share of
    streams of T observations that alarm is at most 1 - exp(-T / A) within a binomial tolerance (a threshold
    table that is too low, or noise taken as independent when it is not, fails), and not far below it
    (a detector that cannot alarm at all fails)."""
    spec = {"level": SIGNAL_BY_NAME["reward"], "trend": SIGNAL_BY_NAME["entropy_down"],
            "sparse": SIGNAL_BY_NAME["eval"]}[family]
    length, streams_n, arl = (40, 400, 150.0) if family == "sparse" else (250, 120, 800.0)
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(streams_n):
        x, n = null_stream(family, rng, length, phi, spec.direction)
        det = Detector(spec, h=threshold_for(arl, family))
        for i, v in enumerate(x):
            _, exc = det.update(i, float(v), None if n is None else float(n[i]))
            if exc is not None:
                alarms += 1
                break
    p = 1 - math.exp(-length / arl)
    assert alarms <= binom_upper(streams_n, p), (alarms, streams_n, p)
    assert alarms >= stats.binom.ppf(0.001, streams_n, p / 8), (alarms, streams_n, p)


def test_threshold_grows_with_the_target_and_the_family_table_is_monotone():
    for family in ("level", "trend", "sparse"):
        hs = [threshold_for(a, family) for a in (100, 1_000, 10_000, 100_000)]
        assert all(b > a for a, b in zip(hs, hs[1:])), (family, hs)
    # the whole monitor's budget is split over its detectors: one detector gets arl0 * m
    mon = Monitor(MonitorConfig(arl0=10_000))
    assert mon.threshold(SIGNAL_BY_NAME["reward"]) == pytest.approx(threshold_for(10_000 * 8, "level"))
    assert Monitor(MonitorConfig(arl0=1_000)).threshold(SIGNAL_BY_NAME["reward"]) < mon.threshold(SIGNAL_BY_NAME["reward"])


# ----------------------------------------------------------------------------------------- planted changes
def test_planted_drop_alarms_soon_after_with_its_onset_and_words():
    """Training reward at 0.6 with AR(1) noise (phi 0.5, sd 0.03) drops by 0.12 at step 150: in 20 seeds the
    monitor (default arl0) is silent before 150, alarms within 25 steps of it with kind collapse, its onset
    estimate lies within 12 steps, and the words say what fell from where to where."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        reward = 0.6 + ar1(rng, 300, 0.5, 0.03) - 0.12 * (np.arange(300) >= 150)
        mon = Monitor()
        alarms = []
        for step, r in enumerate(reward, start=1):
            alarms += mon.update(step, {"reward": r})
        assert alarms, seed
        first = alarms[0]
        assert 150 <= first.step <= 175 and first.kind == "collapse", (seed, first)
        assert abs(first.onset - 150) <= 12, (seed, first)
        words = re.match(r"training reward fell from ([0-9.]+) to ([0-9.]+) in (\d+) steps", first.evidence)
        assert words, first.evidence
        assert abs(float(words[1]) - 0.6) < 0.03 and abs(float(words[2]) - 0.48) < 0.06, first.evidence
        assert int(words[3]) == first.step - first.onset


def test_healthy_run_rise_base_point_and_drifts_do_not_alarm():
    """A healthy run: reward rising from a base point far below to a plateau, entropy decaying, KL growing
    as a power law (from 0 at the base), length growing, duplicates flat; 20 runs of 250 steps raise at
    most 3 alarms (the configured rate is 2.5% a run; a detector that mistakes the rise's end, the entropy
    decay or the KL growth for a turn alarms in most of them)."""
    alarms = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        t = np.arange(0, 251)
        reward = 0.2 + 0.5 * (1 - np.exp(-t / 40)) + ar1(rng, t.size, 0.6, 0.03)
        reward[0] = 0.0
        entropy = 0.9 * np.exp(-t / 200) * np.exp(ar1(rng, t.size, 0.6, 0.04))
        kl = 1.5 * (t / 250) ** 1.3 * np.exp(rng.normal(0, 0.1, t.size))
        length = 200 * (1 + 0.5 * t / 250) * np.exp(ar1(rng, t.size, 0.6, 0.05))
        dup = rng.binomial(128, 0.03, t.size) / 128
        mon = Monitor()
        for i, s in enumerate(t):
            mon.update(int(s), {"reward": reward[i], "entropy": entropy[i], "kl": kl[i], "length": length[i],
                                "duplicates": dup[i]})
        alarms += bool(mon.alarms)
    assert alarms <= 3


def _sparse_run(shape: str) -> Monitor:
    """Reward flat 0.7 (or falling, for collapse); held-out accuracy every 20 steps with n = 500, at 0.6 then
    falling by 0.15 from step 160 (over_optimisation / collapse) or flat while the never-rewarded score falls
    (trade_off)."""
    rng = np.random.default_rng(7)
    mon = Monitor()
    for step in range(1, 321):
        late = step >= 160
        reward = 0.7 + rng.normal(0, 0.03) - (0.3 if late and shape == "collapse" else 0.0)
        values = {"reward": reward}
        if step % 20 == 0:
            p_eval = 0.6 - (0.15 if late and shape != "trade_off" else 0.0)
            p_unv = 0.45 - (0.15 if late and shape == "trade_off" else 0.0)
            values["eval"] = (rng.binomial(500, p_eval) / 500, 500.0)
            values["unverified"] = (rng.binomial(500, p_unv) / 500, 500.0)
        mon.update(step, values)
    return mon


@pytest.mark.parametrize("shape,kind", [("over_optimisation", "over_optimisation"), ("collapse", "collapse"),
                                        ("trade_off", "trade_off")])
def test_alarm_kind_follows_what_fell_and_what_held(shape, kind):
    mon = _sparse_run(shape)
    harmful = [a for a in mon.alarms if a.kind in ("collapse", "over_optimisation", "trade_off")]
    assert harmful and harmful[0].kind == kind, [a.line() for a in mon.alarms]
    assert harmful[0].step >= 160
    if kind == "over_optimisation":
        assert "while the training reward held" in harmful[0].evidence


def test_percent_scores_are_read_as_proportions_and_said_in_percent():
    """Held-out accuracy logged in percent (as the genuine 7_3 log): the binomial noise is that of the
    proportion, and the words keep the log's unit."""
    rows = []
    rng = np.random.default_rng(3)
    for step in range(0, 401, 20):
        p = 0.45 if step < 200 else 0.33
        rows.append({"run": "r", "step": step, "compute": np.nan, "metric": "verified/eval_acc",
                     "value": 100 * rng.binomial(500, p) / 500, "n": 500.0})
    frame = pd.DataFrame(rows)
    data = streams(frame)
    assert data["eval"].attrs["scale"] == 100.0 and data["eval"]["value"].max() <= 1
    mon = Monitor()
    alarms = mon.feed(frame)
    assert alarms and alarms[0].kind == "over_optimisation" and "%" in alarms[0].evidence
    assert 200 <= alarms[0].step <= 280


def test_feeding_a_growing_frame_in_chunks_says_what_feeding_it_whole_says():
    """The monitor never looks ahead: a simulated collapse run fed 7 steps at a time (a log re-read as it
    grows) raises the same alarms, at the same steps, as the whole frame at once."""
    run = simulate_run(5, spec=draw_spec(5, sequence=("improving", "collapse")))
    whole = Monitor()
    whole.feed(run.frame)
    chunked = Monitor()
    for upto in range(7, int(run.frame["step"].max()) + 7, 7):
        chunked.feed(run.frame[run.frame["step"] <= upto])
    assert [(a.step, a.kind, a.signal) for a in whole.alarms] == [(a.step, a.kind, a.signal) for a in chunked.alarms]
    onset = run.labels.onsets[-1]
    assert whole.alarms and all(a.step >= onset for a in whole.alarms)


# ----------------------------------------------------------------------------------------- ceiling watch
def _collapse_csv(steps: int = 200, collapse_at: int = 120, seed: int = 0) -> list[str]:
    """Lines of a CSV log (header first): reward ~0.7 (AR(1) noise) that falls to ~0.2 from `collapse_at`."""
    rng = np.random.default_rng(seed)
    noise = ar1(rng, steps + 1, 0.4, 0.03)
    lines = ["step,reward_avg,entropy_avg,avg_response_len"]
    for s in range(1, steps + 1):
        r = (0.7 if s < collapse_at else 0.2) + noise[s]
        lines.append(f"{s},{r:.4f},{0.5 * math.exp(noise[s - 1]):.4f},{300 + 30 * noise[s] / 0.03:.1f}")
    return lines


def test_watch_replay_reports_when_the_alarm_fires_and_exit_codes(tmp_path, capsys):
    log = tmp_path / "run.csv"
    log.write_text("\n".join(_collapse_csv()) + "\n")
    assert cli(["watch", "--replay", str(log), "--regime-every", "0"]) == 0
    out = capsys.readouterr().out
    alarm_lines = [x for x in out.splitlines() if "ALARM collapse" in x]
    assert alarm_lines and alarm_lines[0].startswith("step 12")  # step 120-129: within 10 steps of the fall
    assert "training reward fell from 0.7" in alarm_lines[0]
    # --fail-on: exit 1 at that alarm; 'any' too; a kind that did not fire: 0; an unknown kind or file: 2
    assert cli(["watch", "--replay", str(log), "--regime-every", "0", "--fail-on", "collapse,over_optimisation"]) == 1
    assert "exit 1: a collapse alarm" in capsys.readouterr().out
    assert cli(["watch", "--replay", str(log), "--regime-every", "0", "--fail-on", "any"]) == 1
    assert cli(["watch", "--replay", str(log), "--regime-every", "0", "--fail-on", "trade_off"]) == 0
    capsys.readouterr()
    assert cli(["watch", "--replay", str(log), "--fail-on", "colapse"]) == 2
    assert "unknown alarm kind(s) colapse" in capsys.readouterr().err
    assert cli(["watch", "--replay", str(tmp_path / "missing.csv")]) == 2
    capsys.readouterr()
    # with the run diagnosis: the regime so far, recomputed every 100 steps and at the end
    assert cli(["watch", "--replay", str(log), "--regime-every", "100"]) == 0
    regimes = [x for x in capsys.readouterr().out.splitlines() if "regime so far:" in x]
    assert regimes and regimes[-1].split(":", 1)[0] in ("step 200", "read 200 steps (last 200); 1 alarm")
    assert "collapse" in regimes[-1] and "collapse" not in regimes[0]


WRITER = textwrap.dedent("""
    import sys, time
    lines = open(sys.argv[1]).read().splitlines()
    with open(sys.argv[2], "w") as fh:
        fh.write(lines[0] + "\\n"); fh.flush()
        for i, line in enumerate(lines[1:], start=1):
            if i % 20 == 0:          # now and then half a line, finished on the next write
                fh.write(line[:4]); fh.flush(); time.sleep(0.02); fh.write(line[4:] + "\\n")
            else:
                fh.write(line + "\\n")
            fh.flush()
            if i % 10 == 0:
                time.sleep(0.05)
""")


def test_watch_follows_a_log_another_process_is_writing(tmp_path, capsys):
    """A writer process appends a collapsing run's CSV 10 lines at a time (with half-written lines);
    `ceiling watch LOG --fail-on collapse` polling it exits 1 at the collapse, having read no further than
    the writer had written; a healthy log being written ends with exit 0 once it stops growing."""
    source, log = tmp_path / "source.csv", tmp_path / "live.csv"
    source.write_text("\n".join(_collapse_csv()) + "\n")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(source), str(log)])
    try:
        code = cli(["watch", str(log), "--poll", "0.05", "--max-wait", "30", "--fail-on", "collapse",
                    "--regime-every", "0"])
    finally:
        writer.wait(timeout=60)
    out = capsys.readouterr().out
    assert code == 1, out
    alarm = [x for x in out.splitlines() if "ALARM collapse" in x][0]
    assert 120 <= int(alarm.split()[1].rstrip(":")) <= 135
    assert "exit 1: a collapse alarm" in out

    healthy = tmp_path / "healthy.csv"
    healthy.write_text("\n".join(_collapse_csv(collapse_at=10_000, steps=120)) + "\n")
    log2 = tmp_path / "live2.csv"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(healthy), str(log2)])
    try:
        code = cli(["watch", str(log2), "--poll", "0.05", "--max-wait", "1.5", "--regime-every", "0"])
    finally:
        writer.wait(timeout=60)
    out = capsys.readouterr().out
    assert code == 0 and "ALARM" not in out and "read 120 steps" in out, out


def test_watch_restarts_when_the_log_is_rewritten(tmp_path):
    """A log whose early steps change between reads (a restart: read_log keeps the later segment) is
    watched again from its start, and says so."""
    from ceiling.commands.watch import Watcher

    def frame(values):
        return pd.DataFrame({"run": "r", "step": np.arange(1, len(values) + 1), "compute": np.nan,
                             "metric": "verified/reward", "value": values})

    w = Watcher(MonitorConfig(), regime_every=0)
    rng = np.random.default_rng(0)
    first = 0.6 + rng.normal(0, 0.02, 60)
    assert not any("rewritten" in e.text for e in w.advance(frame(first)))
    again = first.copy()
    again[10:] += 0.05
    events = w.advance(frame(np.concatenate([again, 0.6 + rng.normal(0, 0.02, 20)])))
    assert events[0].text.startswith("step 11: the log was rewritten from step 11")
    assert w.steps_read == 80


@pytest.mark.parametrize("name", ["7_3_plus_tracking_metrics.csv", "rlvr_grpo_original_no_kl_metrics.csv"])
def test_genuine_logs_alarm_before_the_held_out_drop_shows(name):
    """Replayed, the genuine 7_3 log (MATH-500 every 50 steps: 44.2 at step 200, 41.2 at 250, 37.0 at 300)
    raises a training-side alarm (entropy blow-up, reward collapse) between steps 200 and 250, before the
    held-out drop shows; the length-collapse log alarms on its reward collapse by step 240 (its reward is
    near 0 from about step 220)."""
    from ceiling.ingest import read_log

    frame = read_log(LOGS / name).frame
    mon = Monitor()
    mon.feed(frame)
    late = [a for a in mon.alarms if a.step > 200]
    assert late, [a.line() for a in mon.alarms]
    if name.startswith("7_3"):
        assert late[0].step < 250 and late[0].kind in ("entropy_blowup", "collapse")
    else:
        assert late[0].step <= 240 and late[0].kind == "collapse"


# ----------------------------------------------------------------------------------------- hooks
def _planted(steps: int, collapse_at: int | None, seed: int = 0) -> list[dict[str, float]]:
    """TRL-style log records: reward ~0.7 that falls to 0.15 at `collapse_at`; entropy and length steady."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(1, steps + 1):
        level = 0.15 if collapse_at is not None and s >= collapse_at else 0.7
        out.append({"loss": 0.01, "reward": float(level + rng.normal(0, 0.04)), "reward_std": 0.3,
                    "entropy": float(1.2 * math.exp(rng.normal(0, 0.03))), "completions/mean_length": 40.0 + rng.normal(0, 2),
                    "learning_rate": 1e-6})
    return out


def test_trl_callback_through_the_trainer_callback_api_stops_on_collapse_and_logs_its_state():
    """Driven through transformers' callback API (a real TrainerState and TrainerControl, as Trainer.log
    calls on_log): a planted collapse sets should_training_stop within a few steps and the monitor's keys
    reach the logs and log_history; a healthy stream never stops; save_on sets should_save."""
    from transformers import TrainerControl, TrainerState

    from ceiling.integrations.trl_callback import CeilingWatchCallback

    args = None  # the TrainingArguments the Trainer passes; the callback does not read them

    def drive(records, **kw):
        cb = CeilingWatchCallback(verbose=False, **kw)
        state, control = TrainerState(), TrainerControl()
        for step, logs in enumerate(records, start=1):
            state.global_step = step
            state.log_history.append({**logs, "step": step})
            control = cb.on_log(args, state, control, logs=logs)
            if control.should_training_stop:
                break
        return cb, state, control

    cb, state, control = drive(_planted(120, 60), save_on="collapse")
    assert control.should_training_stop and control.should_save
    assert cb.stopped_by is not None and cb.stopped_by.kind == "collapse" and 60 <= state.global_step <= 66
    assert state.log_history[-1]["ceiling/alarms"] == 1.0 and "ceiling/entropy_down" in state.log_history[-1]
    cb, state, control = drive(_planted(120, None))
    assert not control.should_training_stop and state.global_step == 120 and cb.stopped_by is None
    assert 0 <= state.log_history[-1]["ceiling/reward"] < 1  # S / h of the reward detector, logged


@pytest.mark.slow  # two tiny GRPOTrainer runs (~40 and ~50 steps) plus importing TRL: ~30 s on 2 shared cores
def test_trl_grpo_trainer_run_stops_on_a_planted_collapse_and_a_healthy_one_finishes(tmp_path, one_torch_thread):
    pytest.importorskip("trl", reason="trl is not installed")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from ceiling.integrations.trl_callback import CeilingWatchCallback

    def run(collapse_at: int | None, max_steps: int):
        rng = np.random.default_rng(0)
        calls = {"n": 0}

        def reward(prompts, completions, **kw):  # the planted reward: one call per optimizer step
            calls["n"] += 1
            level = 0.15 if collapse_at is not None and calls["n"] >= collapse_at else 0.7
            return [float(np.clip(level + rng.normal(0, 0.05), 0, 1)) for _ in completions]

        ds = Dataset.from_dict({"prompt": [f"sort 3{i % 10}1:" for i in range(64)]})
        args = GRPOConfig(output_dir=str(tmp_path / f"out{collapse_at}"), use_cpu=True, per_device_train_batch_size=4,
                          num_generations=4, max_completion_length=4, max_steps=max_steps, logging_steps=1,
                          report_to="none", disable_tqdm=True, save_strategy="no", learning_rate=1e-5, beta=0.0,
                          model_init_kwargs={"dtype": "float32"}, seed=0, dataloader_num_workers=0,
                          log_completions=False)
        cb = CeilingWatchCallback(verbose=False)
        trainer = GRPOTrainer(model=str(REPO / "data" / "bases" / "tiny-low"), reward_funcs=reward, args=args,
                              train_dataset=ds, callbacks=[cb])
        trainer.train()
        return trainer, cb

    trainer, cb = run(collapse_at=30, max_steps=60)
    assert cb.stopped_by is not None and cb.stopped_by.kind == "collapse"
    assert 30 <= trainer.state.global_step <= 36
    trainer, cb = run(collapse_at=None, max_steps=45)
    assert cb.stopped_by is None and trainer.state.global_step == 45


def test_loop_watch_hook_stops_on_a_kind_asked_for_and_the_loop_honours_on_step(tmp_path, one_torch_thread):
    """LoopWatch reads our metrics.jsonl keys (reward/mean, policy/entropy, ...) and returns True at a
    planted collapse only when its kind is in --watch-stop; the native loop stops after the step whose
    on_step returned True, leaving metrics lines 0..that step."""
    import json

    from ceiling.integrations.native import LoopWatch
    from ceiling.rl.grpo import GRPOConfig, train

    rng = np.random.default_rng(0)
    records = [{"step": s, "reward/mean": (0.15 if s >= 60 else 0.7) + rng.normal(0, 0.04),
                "policy/entropy": 0.5, "length/mean": 6.0 + rng.normal(0, 0.2)} for s in range(120)]
    for stop_on, should_stop in (({"collapse"}, True), ({"trade_off"}, False)):
        hook = LoopWatch(stop_on=stop_on, out=open(tmp_path / "watch.txt", "w"))
        stopped = next((m["step"] for m in records if hook(m["step"], m)), None)
        assert (stopped is not None) == should_stop
        assert hook.monitor.alarms and hook.monitor.alarms[0].kind == "collapse"
        if should_stop:
            assert 60 <= stopped <= 66
    cfg = GRPOConfig(base="tiny-low", steps=6, prompts_per_step=2, group_size=2, max_new_tokens=6,
                     out=str(tmp_path / "run"), log=False, checkpoint_every=100)
    train(cfg, on_step=lambda step, m: step == 2)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2]


def test_train_watch_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys):
    """`ceiling train --watch` runs in the native loop only, and names a bad --watch-stop kind."""
    out = str(tmp_path / "run")
    assert cli(["train", "--watch", "--engine", "trl", "--out", out]) == 2
    assert "--watch runs in the native loop" in capsys.readouterr().err
    assert cli(["train", "--watch", "--watch-stop", "colapse", "--out", out]) == 2
    assert "--watch-stop: unknown alarm kind(s) colapse" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bench_watch_smoke_counts_add_up_and_the_eval_that_shows_a_drop():
    """benchmarks/bench_watch.py on 6 corpus runs: every run is counted once, detections are within the
    harmful runs, and `shows_drop` finds the first evaluation significantly below the pre-onset level."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_watch

    res = bench_watch.corpus_bench(6, seed=3, config=MonitorConfig())
    harmful = sum(v[1] for v in res["detected"].values())
    assert res["quiet"] + harmful == 6 and res["quiet_alarm"] <= res["quiet"]
    assert all(0 <= d <= t for d, t in res["detected"].values())
    run = simulate_run(11, spec=draw_spec(11, sequence=("improving", "over_optimisation")))
    onset = run.labels.onsets[-1]
    ev = streams(run.frame)["eval"]
    shown = bench_watch.shows_drop(run, onset, "over_optimisation")
    assert shown is not None and shown >= onset and shown in set(ev["step"])
    before = ev[(ev["step"] < onset) & (ev["step"] > 0)].tail(3)
    ref, n = before["value"].mean(), ev["n"].iloc[-1]
    sd = math.sqrt(ref * (1 - ref) / n) * math.sqrt(1 + 1 / len(before))
    earlier = ev[(ev["step"] >= onset) & (ev["step"] < shown)]
    assert ((ref - earlier["value"]) / sd <= 1.645).all()
    assert (ref - ev.loc[ev["step"] == shown, "value"].iloc[0]) / sd > 1.645
