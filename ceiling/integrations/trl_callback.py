"""Early warning inside a TRL (or any transformers Trainer) run: one callback, one line to add.

    from ceiling.integrations.trl_callback import CeilingWatchCallback
    trainer = GRPOTrainer(model=..., reward_funcs=..., args=..., train_dataset=...,
                          callbacks=[CeilingWatchCallback(stop_on="collapse,over_optimisation")])

At every `on_log` the callback reads the trainer's logged metrics (TRL's `reward`, `entropy`, `kl`,
`completions/mean_length`, `eval_reward`, ...: the same key tables as `ceiling fit` reads from
trainer_state.json, `ceiling.ingest.mappings.TRL_KEYS`), feeds them to a `ceiling.fit.monitor.Monitor`,
and adds the monitor's state to what is logged (`ceiling/<detector>` = S / h for each running detector,
`ceiling/alarms` = alarms so far) and to `state.log_history` (so trainer_state.json holds it). On an alarm
it prints the alarm's line and, for the kinds in `stop_on`, sets `control.should_training_stop` (the
Trainer stops after this step; every process decides alike, as all see the same gathered metrics); for the
kinds in `save_on`, `control.should_save` (a checkpoint of this very step).

Logger order: transformers calls the reporting callbacks (W&B, TensorBoard) before the ones a user passes,
so in the same log call they do not see the keys this callback adds; `attach(trainer, ...)` puts it first,
and they do. The metrics of one optimizer step go in at `state.global_step`.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

from transformers import TrainerCallback

from ceiling.fit.monitor import Alarm, Monitor, MonitorConfig, Recovery, parse_kinds
from ceiling.integrations.keys import KeyMap

class CeilingWatchCallback(TrainerCallback):
    """Feeds logged metrics to a `ceiling` monitor; logs its state; stops or saves on an alarm."""

    def __init__(self, arl0: float = MonitorConfig.arl0, stop_on: str | Iterable[str] | None = "collapse,over_optimisation",
                 save_on: str | Iterable[str] | None = None, mapping: dict[str, str] | None = None,
                 eval_n: int | None = None, config: MonitorConfig | None = None, prefix: str = "ceiling/",
                 verbose: bool = True, fmt: str = "trl") -> None:
        """arl0: expected steps between false alarms on a run that does not change. stop_on / save_on: alarm
        kinds that stop training / save a checkpoint ('any' for all). mapping: {"unverified": "eval_mmlu",
        ...} as `ceiling fit`'s mapping flags (canonical metric or flag name -> logged key). eval_n: problems
        behind the held-out accuracy (its binomial noise). fmt: the key table (`trl`; `wandb` for generic
        trackers)."""
        self.monitor = Monitor(config or MonitorConfig(arl0=arl0))
        self.stop_on, self.save_on = parse_kinds(stop_on, "stop_on"), parse_kinds(save_on, "save_on")
        self.keymap = KeyMap(fmt, mapping, eval_n, skip_prefix=prefix)
        self.prefix, self.verbose = prefix, verbose
        self.stopped_by: Alarm | None = None  # the alarm that stopped training, if one did
        self.lines: list[str] = []  # every alarm / recovery line, in order

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not logs:
            return control
        values = self.keymap.values(logs)
        if not values:
            return control
        seen = len(self.monitor.recoveries)
        alarms = self.monitor.update(int(state.global_step), values)
        events: list[Alarm | Recovery] = [*alarms, *self.monitor.recoveries[seen:]]
        extra = {self.prefix + k.split("/", 1)[1]: v for k, v in self.monitor.log_dict().items()}
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
        for ev in events:
            self.lines.append(ev.line())
            if self.verbose and getattr(state, "is_world_process_zero", True):
                print(f"[ceiling watch] {ev.line()}", file=sys.stderr, flush=True)
        for alarm in alarms:
            if alarm.kind in self.save_on:
                control.should_save = True
            if alarm.kind in self.stop_on:
                control.should_training_stop = True
                if self.stopped_by is None:
                    self.stopped_by = alarm
                    if self.verbose and getattr(state, "is_world_process_zero", True):
                        print(f"[ceiling watch] stopping training: {alarm.kind} alarm at step {alarm.step}",
                              file=sys.stderr, flush=True)
        return control


def attach(trainer: Any, **kwargs: Any) -> CeilingWatchCallback:
    """Add a CeilingWatchCallback to `trainer` *before* its reporting callbacks, so W&B / TensorBoard see the
    monitor's keys in the same log call. Returns the callback."""
    cb = CeilingWatchCallback(**kwargs)
    trainer.callback_handler.callbacks.insert(0, cb)
    return cb
