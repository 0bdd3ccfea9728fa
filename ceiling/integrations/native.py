"""`ceiling train --watch`: the same monitor inside our own GRPO loop (`ceiling.rl.grpo.train`'s on_step hook).

Each metrics line (keys of `ceiling.rl.grpo`, read with the table `ceiling fit` uses for our run directories)
goes to a `ceiling.fit.monitor.Monitor`; alarms and recoveries are printed to stderr beside the progress
lines, and an alarm of a `--watch-stop` kind stops the run after that step (it stays resumable from its last
checkpoint: `ceiling train --out DIR --resume` continues it).
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

from ceiling.errors import CeilingError
from ceiling.fit.monitor import Alarm, Monitor, MonitorConfig, parse_kinds
from ceiling.integrations.keys import KeyMap


class LoopWatch:
    """The on_step hook: feeds each metrics line to a monitor; True (stop) on an alarm of a `stop_on` kind."""

    def __init__(self, arl0: float = MonitorConfig.arl0, stop_on: set[str] | None = None, out: TextIO | None = None) -> None:
        self.monitor = Monitor(MonitorConfig(arl0=arl0))
        self.keymap = KeyMap("ceiling")
        self.stop_on = set(stop_on or ())
        self.out = out
        self.stopped_by: Alarm | None = None

    def __call__(self, step: int, metrics: dict[str, Any]) -> bool:
        seen = len(self.monitor.recoveries)
        alarms = self.monitor.update(step, self.keymap.values(metrics))
        out = self.out or sys.stderr
        for ev in [*alarms, *self.monitor.recoveries[seen:]]:
            print(f"[watch] {ev.line()}", file=out, flush=True)
        for alarm in alarms:
            if alarm.kind in self.stop_on:
                self.stopped_by = alarm
                print(f"[watch] stopping: a {alarm.kind} alarm (--watch-stop); the run resumes from its last "
                      f"checkpoint with --resume", file=out, flush=True)
                return True
        return False


def train_watched(args: Any, cfg: Any) -> Any:
    """`ceiling train --watch [--watch-stop KINDS] [--watch-arl0 STEPS]` on the native engine."""
    if getattr(args, "engine", "native") != "native":
        raise CeilingError("--watch runs in the native loop; with --engine trl pass "
                           "ceiling.integrations.trl_callback.CeilingWatchCallback to the trainer, or run "
                           "`ceiling watch RUN_DIR` beside it (docs/watch.md)")
    if getattr(args, "processes", 1) != 1:
        raise CeilingError("--processes needs --engine trl (the native loop runs in one process)")
    from ceiling.rl.grpo import train

    hook = LoopWatch(arl0=getattr(args, "watch_arl0", None) or MonitorConfig.arl0,
                     stop_on=parse_kinds(getattr(args, "watch_stop", "") or None, "--watch-stop"))
    run = train(cfg, resume=bool(args.resume), on_step=hook)
    alarms = hook.monitor.alarms
    print(f"watch: {len(alarms)} alarm{'s' if len(alarms) != 1 else ''}"
          + (": " + ", ".join(f"{a.kind} at step {a.step}" for a in alarms) if alarms else "")
          + (f"; stopped at step {hook.stopped_by.step}" if hook.stopped_by else ""), flush=True)
    return run
