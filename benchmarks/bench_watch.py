"""Benchmark: the early-warning monitor (`ceiling.fit.monitor`) on the labelled simulation corpus, streamed.

Usage:
    python benchmarks/bench_watch.py                 # 300 runs of simulate_corpus(seed=0), about a minute
    python benchmarks/bench_watch.py --runs 60       # quicker
    python benchmarks/bench_watch.py --arl0 5000     # another false-alarm target

Each run of `ceiling.fit.simulate.simulate_corpus` is streamed into a fresh `Monitor` ten steps at a time,
as `ceiling watch` reads a growing log (the monitor never looks ahead, so the chunk size does not change
what it says). Printed:

- false alarms: the share of runs with no harmful change (improving, plateau, improving -> plateau) that
  raise any alarm, against the configured rate: 1 - exp(-T / arl0) for a run of T steps (target <= 5%);
  and the share of harmful runs with an alarm before their harmful onset;
- detection: the share of harmful transitions (onset of trade_off, over_optimisation, collapse) followed by
  an alarm before the run ends (target >= 90%), per regime, and the share whose first harmful-kind alarm
  names the regime;
- lead time: steps from the first alarm after the onset to the first evaluation that shows the drop, median
  and IQR (positive = the alarm came first). "Shows the drop": the first evaluation at or after the onset
  of the affected score (held-out accuracy for over_optimisation and collapse, the never-rewarded score for
  trade_off) that lies significantly below the mean of the (up to) three evaluations before the onset
  (one-sided z at 5%, binomial sd with the frame's n). Also the delay from the onset to the alarm.
- the genuine logs in ../shared/data/real_logs: each alarm's step and kind, beside the evaluations.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from ceiling.fit.monitor import HARMFUL_KINDS, Alarm, Monitor, MonitorConfig, streams  # noqa: E402
from ceiling.fit.simulate import HARMFUL, SimRun, simulate_corpus  # noqa: E402

REAL_LOGS = REPO_ROOT.parent / "shared" / "data" / "real_logs"
CHUNK = 10


def stream_run(run: SimRun, config: MonitorConfig, chunk: int = CHUNK) -> list[Alarm]:
    """Feed a run to a fresh monitor `chunk` steps at a time (as a growing log is read); all its alarms."""
    mon = Monitor(config)
    data = streams(run.frame)  # extracted once; each chunk is the prefix a re-read of the log would give
    last = int(run.frame["step"].max())
    for upto in range(chunk, last + chunk, chunk):
        mon.feed_streams({k: v.iloc[: int(np.searchsorted(v["step"].to_numpy(), upto, side="right"))]
                          for k, v in data.items()})
    return mon.alarms


def shows_drop(run: SimRun, onset: int, regime: str) -> int | None:
    """Step of the first evaluation at/after `onset` significantly below the pre-onset level (see the doc)."""
    s = streams(run.frame).get("unverified" if regime == "trade_off" else "eval")
    if s is None:
        return None
    before = s[(s["step"] < onset) & (s["step"] > 0)].tail(3)
    if before.empty:
        return None
    ref = float(before["value"].mean())
    n = float(before["n"].iloc[-1])
    sd = math.sqrt(max(ref * (1 - ref), 1e-6) / n) * math.sqrt(1 + 1 / len(before))
    after = s[s["step"] >= onset]
    hit = after[(ref - after["value"]) / sd > 1.645]
    return int(hit["step"].iloc[0]) if len(hit) else None


def quantiles(x: list[float]) -> str:
    if not x:
        return "n/a"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return f"median {med:.0f}, IQR [{q1:.0f}, {q3:.0f}] (n={len(x)})"


def corpus_bench(n_runs: int, seed: int, config: MonitorConfig) -> dict:
    runs = simulate_corpus(n_runs, seed=seed)
    t0 = time.perf_counter()
    steps_read = 0
    quiet, quiet_alarm, quiet_expected = 0, 0, []
    pre_onset = {r: [0, 0] for r in HARMFUL}
    detected = {r: [0, 0] for r in HARMFUL}
    named = {r: [0, 0] for r in HARMFUL}
    leads: dict[str, list[float]] = {r: [] for r in HARMFUL}
    delays: dict[str, list[float]] = {r: [] for r in HARMFUL}
    no_eval_drop = {r: 0 for r in HARMFUL}
    first_kinds: dict[str, dict[str, int]] = {r: {} for r in HARMFUL}
    fa_kinds: dict[str, int] = {}
    for run in runs:
        alarms = stream_run(run, config)
        steps_read += int(run.frame["step"].max())
        final = run.labels.final
        if final not in HARMFUL:
            quiet += 1
            quiet_expected.append(1 - math.exp(-run.spec.n_steps / config.arl0))
            if alarms:
                quiet_alarm += 1
                fa_kinds[alarms[0].kind] = fa_kinds.get(alarms[0].kind, 0) + 1
            continue
        onset = run.labels.onsets[-1]
        pre_onset[final][1] += 1
        if any(a.step < onset for a in alarms):
            pre_onset[final][0] += 1
        after = [a for a in alarms if a.step >= onset]
        detected[final][1] += 1
        named[final][1] += 1
        if not after:
            continue
        detected[final][0] += 1
        first = after[0]
        first_kinds[final][first.kind] = first_kinds[final].get(first.kind, 0) + 1
        harmful_alarm = next((a for a in after if a.kind in HARMFUL_KINDS), None)
        if harmful_alarm is not None and harmful_alarm.kind == final:
            named[final][0] += 1
        delays[final].append(first.step - onset)
        shown = shows_drop(run, onset, final)
        if shown is None:
            no_eval_drop[final] += 1
        else:
            leads[final].append(shown - first.step)
    secs = time.perf_counter() - t0
    return dict(runs=len(runs), quiet=quiet, quiet_alarm=quiet_alarm, quiet_expected=float(np.mean(quiet_expected)),
                pre_onset=pre_onset, detected=detected, named=named, leads=leads, delays=delays,
                no_eval_drop=no_eval_drop, first_kinds=first_kinds, fa_kinds=fa_kinds, secs=secs,
                us_per_step=1e6 * secs / max(steps_read, 1))


def report(res: dict, config: MonitorConfig) -> None:
    print(f"corpus: {res['runs']} runs, monitor arl0 = {config.arl0:.0f} steps; "
          f"{res['secs']:.1f} s ({res['us_per_step']:.0f} us per step, all detectors)")
    q, qa = res["quiet"], res["quiet_alarm"]
    print(f"\nfalse alarms on runs with no harmful change: {qa}/{q} = {qa / max(q, 1):.1%} "
          f"(configured rate over their lengths: {res['quiet_expected']:.1%}; target <= 5%)")
    if res["fa_kinds"]:
        print("  first alarm kinds:", ", ".join(f"{k} {v}" for k, v in sorted(res["fa_kinds"].items())))
    tot_pre = sum(v[0] for v in res["pre_onset"].values())
    tot_h = sum(v[1] for v in res["pre_onset"].values())
    print(f"harmful runs with an alarm before their onset: {tot_pre}/{tot_h} = {tot_pre / max(tot_h, 1):.1%}")
    det = sum(v[0] for v in res["detected"].values())
    tot = sum(v[1] for v in res["detected"].values())
    print(f"\ndetection of harmful transitions: {det}/{tot} = {det / max(tot, 1):.1%} (target >= 90%)")
    all_leads: list[float] = []
    for r in HARMFUL:
        d, t = res["detected"][r]
        nm, _ = res["named"][r]
        all_leads += res["leads"][r]
        print(f"  {r:<18} detected {d}/{t} = {d / max(t, 1):.0%}; first harmful-kind alarm names it {nm}/{t}; "
              f"first alarm kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(res['first_kinds'][r].items())))
        print(f"  {'':<18} delay onset -> alarm: {quantiles(res['delays'][r])}")
        ld = res["leads"][r]
        print(f"  {'':<18} lead alarm -> first eval showing the drop: {quantiles(ld)}; alarm first in "
              f"{sum(x > 0 for x in ld)}/{len(ld)}, same step {sum(x == 0 for x in ld)}; "
              f"no eval shows it: {res['no_eval_drop'][r]}")
    print(f"\nlead time, all harmful transitions: {quantiles(all_leads)}; "
          f"alarm before the eval: {sum(x > 0 for x in all_leads)}/{len(all_leads)}, "
          f"same step: {sum(x == 0 for x in all_leads)}")


def real_logs(config: MonitorConfig) -> None:
    from ceiling.ingest import read_log

    if not REAL_LOGS.is_dir():
        print(f"\n(no {REAL_LOGS}: real-log replay skipped)")
        return
    print("\ngenuine logs, replayed:")
    for path in sorted(REAL_LOGS.glob("*.csv")):
        frame = read_log(path).frame
        mon = Monitor(config)
        last = int(frame["step"].max())
        for upto in range(CHUNK, last + CHUNK, CHUNK):
            mon.feed(frame[frame["step"] <= upto])
        ev = streams(frame).get("eval")
        evs = "" if ev is None else "; evals " + ", ".join(f"{int(s)}:{v:.3f}" for s, v in zip(ev["step"], ev["value"]))
        print(f"  {path.name} ({last} steps){evs}")
        for a in mon.alarms:
            print(f"    {a.line()}")
        if not mon.alarms:
            print("    no alarm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arl0", type=float, default=MonitorConfig.arl0)
    args = ap.parse_args()
    config = MonitorConfig(arl0=args.arl0)
    report(corpus_bench(args.runs, args.seed, config), config)
    real_logs(config)


if __name__ == "__main__":
    main()
