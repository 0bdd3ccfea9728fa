"""`ceiling watch LOG`: early warning while a run trains, from its growing log.

LOG is anything `ceiling fit` reads (our run directories, TRL trainer_state.json, verl JSONL or console logs,
W&B CSV, TensorBoard, any CSV/JSONL). It is re-read whenever it changes and every new step goes through the
sequential change detectors of `ceiling.fit.monitor`; one line is printed per change of state (a detector
starts watching, turns suspicious or back, an alarm with its evidence, the run's regime so far).

    ceiling watch runs/demo                                       # follow a run until it stops growing
    ceiling watch trainer_state.json --fail-on collapse,over_optimisation   # exit 1 on such an alarm
    ceiling watch --replay metrics.csv                            # a finished log, as if live

Exit status: 0 when the log stopped growing (--max-wait) or the replay ended without a --fail-on alarm;
1 when an alarm of a --fail-on kind fired (watching stops there); 2 for a log that cannot be read.
The false-alarm rate is set by --arl0: the expected steps between false alarms on a run that does not
change (default 10,000: under 5% of 500-step runs see one).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError
from ceiling.fit.monitor import KINDS, SIGNAL_BY_NAME, Alarm, Monitor, MonitorConfig, parse_kinds, streams
from ceiling.ingest import FORMATS, read_log
from ceiling.ingest.mappings import FLAG_METRICS

try:  # the run diagnosis (regime so far), when this build has it
    from ceiling.fit.diagnosis import diagnose
except ImportError:  # pragma: no cover - depends on the build
    diagnose = None  # type: ignore[assignment]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", help="a run directory or a training log file/folder")
    parser.add_argument("--replay", action="store_true",
                        help="replay a finished log as if it were live: when would each alarm have fired")
    parser.add_argument("--fail-on", metavar="KINDS", default="",
                        help=f"comma-separated alarm kinds that stop watching with exit status 1, or 'any' "
                             f"(kinds: {', '.join(KINDS)})")
    parser.add_argument("--arl0", type=float, default=MonitorConfig.arl0, metavar="STEPS",
                        help="expected steps between false alarms on a run that does not change (default: 10000)")
    parser.add_argument("--signals", metavar="NAMES", default="",
                        help=f"comma-separated detectors to run (default: all: {', '.join(SIGNAL_BY_NAME)})")
    parser.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                        help="how often to look for new lines (default: 5)")
    parser.add_argument("--max-wait", type=float, default=None, metavar="SECONDS",
                        help="stop when the log has not grown for this long (default: watch until interrupted)")
    parser.add_argument("--regime-every", type=int, default=50, metavar="STEPS",
                        help="recompute the run's regime (ceiling.fit.diagnosis) at most every this many new "
                             "steps; 0 = never (default: 50)")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="the log's format (default: auto-detected from name and content)")
    parser.add_argument("--run", help="run name (for a file that holds several runs: the one to watch)")
    maps = parser.add_argument_group("column mapping (source key in the log; overrides the built-in tables)")
    maps.add_argument("--step", metavar="KEY", help="the optimizer step")
    for flag, metric in FLAG_METRICS.items():
        what = "cumulative training FLOPs" if flag == "compute" else metric
        maps.add_argument(f"--{flag}", metavar="KEY", help=f"the key to read as {what}")
    maps.add_argument("--eval-n", type=int, metavar="N",
                      help="number of held-out problems behind the held-out accuracy where the log does not give it")


def monitor_config(args: argparse.Namespace) -> MonitorConfig:
    signals = tuple(s.strip() for s in (args.signals or "").split(",") if s.strip()) or MonitorConfig.signals
    try:
        return MonitorConfig(arl0=args.arl0, signals=signals).validate()
    except ValueError as exc:
        raise CeilingError(f"--{'arl0' if 'arl0' in str(exc) else 'signals'}: {exc}") from None


# --------------------------------------------------------------------------------------------------------
# The watcher: a monitor over successive reads of one log, emitting lines on changes of state
# --------------------------------------------------------------------------------------------------------


@dataclass
class Event:
    """One printed line."""

    step: int  # the step it refers to
    text: str  # the line
    alarm: Alarm | None = None  # set for alarms


@dataclass
class Watcher:
    """Feeds successive reads of a log to a Monitor, step by step, and says what changed."""

    config: MonitorConfig  # the monitor's settings
    regime_every: int = 50  # recompute the diagnosis at most every this many new steps (0 = never)
    diagnose_fn: Callable[..., Any] | None = None  # ceiling.fit.diagnosis.diagnose, when available
    monitor: Monitor = field(init=False)
    fed: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # what was read, per stream
    states: dict[str, str] = field(default_factory=dict)  # detector -> state at the last step
    regime: str | None = None  # the regime so far, in words (with its onset)
    regime_names: str | None = None  # the sequence of regime names last printed
    regime_step: int | None = None  # step of the last diagnosis
    steps_read: int = 0  # distinct steps read

    def __post_init__(self) -> None:
        self.monitor = Monitor(self.config)

    def restarted(self, data: dict[str, pd.DataFrame]) -> int | None:
        """The step from which a re-read differs from what was already read (a restart), else None."""
        for stream, (steps, values) in self.fed.items():
            df = data.get(stream)
            if df is None:
                return int(steps[0])
            s = df["step"].to_numpy()
            upto = s <= steps[-1]
            old_s, old_v = s[upto], df["value"].to_numpy(dtype=float)[upto]
            if old_s.size != steps.size or not np.array_equal(old_s, steps) or not np.allclose(old_v, values, equal_nan=True):
                n = min(old_s.size, steps.size)
                diff = np.flatnonzero((old_s[:n] != steps[:n]) | ~np.isclose(old_v[:n], values[:n]))
                return int(steps[diff[0]] if diff.size else steps[min(n, steps.size - 1)])
        return None

    def advance(self, frame: pd.DataFrame, final: bool = False) -> list[Event]:
        """Read the steps of `frame` past what was read (all of them after a restart); the events, in order.
        `final`: the log is complete (a replay), so the regime is also recomputed at its last step."""
        data = streams(frame)
        events: list[Event] = []
        at = self.restarted(data)
        if at is not None:
            events.append(Event(at, f"step {at}: the log was rewritten from step {at} (a restart?): "
                                    f"watching it again from the start"))
            self.monitor = Monitor(self.config)
            self.fed, self.states, self.regime, self.regime_names, self.regime_step, self.steps_read = {}, {}, None, None, None, 0
        self.monitor.note_scales(data)
        rows = self.monitor.new_rows(data)
        for step, values in rows:
            seen = len(self.monitor.recoveries)
            for alarm in self.monitor.update(step, values):
                events.append(Event(step, alarm.line(), alarm))
            events.extend(Event(step, r.line()) for r in self.monitor.recoveries[seen:])
            events.extend(self._state_changes(step))
            self.steps_read += 1
            if self.diagnose_fn is not None and self.regime_every > 0 and (
                    self.regime_step is None or step - self.regime_step >= self.regime_every):
                events.extend(self._regime(frame, step))
        if final and rows and self.diagnose_fn is not None and self.regime_every > 0 and self.regime_step != rows[-1][0]:
            events.extend(self._regime(frame, rows[-1][0]))
        for stream, df in data.items():
            self.fed[stream] = (df["step"].to_numpy(), df["value"].to_numpy(dtype=float))
        return events

    def _state_changes(self, step: int) -> list[Event]:
        out: list[Event] = []
        now = self.monitor.states()
        started = [n for n, s in now.items() if s != "burn_in" and self.states.get(n, "burn_in") == "burn_in"]
        if started:
            out.append(Event(step, f"step {step}: watching {', '.join(started)}"))
        for name, s in now.items():
            before = self.states.get(name)
            det = self.monitor.detectors[name]
            if s == "suspicious" and before != "suspicious":
                out.append(Event(step, f"step {step}: suspicious: {det.spec.label} "
                                       f"({'falling' if det.spec.direction == 'down' else 'rising'}; "
                                       f"S {det.S:.1f} of {det.h:.1f})"))
            elif before == "suspicious" and s == "watching":
                out.append(Event(step, f"step {step}: back to normal: {det.spec.label} ({name})"))
        self.states = now
        return out

    def _regime(self, frame: pd.DataFrame, step: int) -> list[Event]:
        self.regime_step = step
        try:
            diag = self.diagnose_fn(frame[frame["step"] <= step], seed=0)  # type: ignore[misc]
        except CeilingError:
            return []
        names = " -> ".join(span.regime for span in diag.sequence) or diag.regime
        self.regime = regime_words(diag)
        if names == self.regime_names:  # a new line only when the sequence of regimes changes
            return []
        self.regime_names = names
        return [Event(step, f"step {step}: regime so far: {self.regime}")]


def regime_words(diag: Any) -> str:
    """"improving -> collapse (collapse from step 231 [220, 240]); held-out score -2.8 per 100 steps [-3.6, -2.1]":
    the regimes so far, the last onset with its 95% interval, and the trade-off rate of the whole run so far
    (the never-rewarded score's when logged, else the held-out one's)."""
    names = [span.regime for span in diag.sequence] or [diag.regime]
    text = " -> ".join(names)
    last = diag.sequence[-1] if diag.sequence else None
    onset = getattr(last, "onset", None)
    if onset is not None:
        text += f" ({last.regime} from step {onset.step:.0f} [{onset.step_low:.0f}, {onset.step_high:.0f}])"
    rates = [t for t in getattr(diag, "tradeoff", []) if t.segment == "all"]
    rates.sort(key=lambda t: t.role != "never_rewarded")
    if rates:
        t = rates[0]
        what = "never-rewarded score" if t.role == "never_rewarded" else "held-out score"
        text += f"; {what} {t.rate:+.3g} per {t.per} [{t.ci_low:.3g}, {t.ci_high:.3g}]"
    return text


# --------------------------------------------------------------------------------------------------------
# Reading the log
# --------------------------------------------------------------------------------------------------------


def signature(path: Path) -> tuple:
    """What changes when the log grows: sizes and modification times of the file, or of the files in the folder."""
    if path.is_file():
        st = path.stat()
        return ((str(path), st.st_size, st.st_mtime_ns),)
    if not path.is_dir():
        return ()
    out = []
    for root, dirs, files in os.walk(path):
        depth = Path(root).relative_to(path).parts
        if len(depth) >= 2 or "checkpoints" in depth:
            dirs[:] = []
        for name in files:
            if name.endswith((".safetensors", ".bin", ".pt", ".pth")):
                continue
            try:
                st = (Path(root) / name).stat()
            except OSError:
                continue
            out.append((os.path.join(root, name), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def mapping_of(args: argparse.Namespace) -> dict[str, str]:
    names = ["step", *FLAG_METRICS]
    return {n: getattr(args, n) for n in names if getattr(args, n, None)}


def read(args: argparse.Namespace) -> pd.DataFrame:
    result = read_log(args.log, format=args.format, mapping=mapping_of(args), run=args.run, eval_n=args.eval_n)
    frame = result.frame
    runs = frame["run"].unique()
    if len(runs) > 1:
        raise CeilingError(f"{args.log}: holds {len(runs)} runs ({', '.join(map(str, runs[:5]))}); pick one with --run")
    return frame


def emit(event: Event) -> None:
    print(event.text, flush=True)


def main(args: argparse.Namespace) -> int:
    fail_on = parse_kinds(args.fail_on, "--fail-on")
    config = monitor_config(args)
    if args.poll <= 0:
        raise CeilingError("--poll must be > 0 seconds")
    watcher = Watcher(config, regime_every=args.regime_every, diagnose_fn=diagnose)
    where = Path(args.log)
    if args.replay:
        frame = read(args)
        print(f"replaying {where} ({frame['step'].nunique()} steps) as if live; arl0 {config.arl0:.0f} steps"
              + ("" if diagnose is not None else "; no run diagnosis in this build: monitor only"), flush=True)
        return finish(watcher, watcher.advance(frame, final=True), fail_on, replay=True)
    print(f"watching {where} every {args.poll:g} s; arl0 {config.arl0:.0f} steps"
          + (f"; stops after {args.max_wait:g} s without new lines" if args.max_wait else "; Ctrl-C to stop"),
          flush=True)
    last_sig: tuple | None = None
    last_growth = time.monotonic()
    said_waiting, last_error = False, ""
    try:
        while True:
            sig = signature(where)
            if sig and sig != last_sig:
                try:
                    frame = read(args)
                except CeilingError as exc:  # half-written or not yet holding data: try again next time
                    if str(exc) != last_error:
                        print(f"  (not readable yet: {exc})", flush=True)
                        last_error = str(exc)
                else:
                    last_sig, last_error = sig, ""
                    last_growth = time.monotonic()
                    events = watcher.advance(frame)
                    for ev in events:
                        emit(ev)
                        if ev.alarm is not None and ev.alarm.kind in fail_on:
                            summary(watcher, failed=ev.alarm)
                            return 1
            elif not sig and not said_waiting:
                print(f"  waiting for {where} to appear", flush=True)
                said_waiting = True
            if args.max_wait is not None and time.monotonic() - last_growth >= args.max_wait:
                print(f"no new lines for {args.max_wait:g} s: stopped", flush=True)
                summary(watcher)
                return 0
            time.sleep(args.poll)
    except KeyboardInterrupt:
        summary(watcher)
        return 130


def finish(watcher: Watcher, events: list[Event], fail_on: set[str], replay: bool) -> int:
    for ev in events:
        emit(ev)
        if ev.alarm is not None and ev.alarm.kind in fail_on:
            summary(watcher, failed=ev.alarm, stopped=replay)
            return 1
    summary(watcher)
    return 0


def summary(watcher: Watcher, failed: Alarm | None = None, stopped: bool = False) -> None:
    mon = watcher.monitor
    alarms = mon.alarms
    text = f"read {watcher.steps_read} steps (last {mon.step}); {len(alarms)} alarm{'s' if len(alarms) != 1 else ''}"
    if alarms:
        text += ": " + ", ".join(f"{a.kind} at step {a.step}" for a in alarms)
    if watcher.regime:
        text += f"; regime so far: {watcher.regime}"
    print(text, flush=True)
    if failed is not None:
        print(f"exit 1: a {failed.kind} alarm (--fail-on)" + (": replay stopped there" if stopped else ""), flush=True)
