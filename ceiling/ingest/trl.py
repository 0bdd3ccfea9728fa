"""TRL (and any transformers Trainer): `trainer_state.json`, whose `log_history` is a flat list of rows.

Train rows, `eval_`-prefixed eval rows (at the same step as a train row) and an end-of-run summary row
(`train_runtime`, `train_loss`, `total_flos`) all carry `step`; values may be null. The file is one JSON
document, so it is parsed once as a whole (it holds one small row per logging step).
"""
from __future__ import annotations

import json
from pathlib import Path

from ceiling.errors import error_at
from ceiling.ingest.core import Collector, flatten, parse_step


def read_trainer_state(path: Path, collector: Collector, fmt: str, mapping: dict[str, str]) -> None:
    """Stream the rows of `log_history` into `collector` (locations are entry indices)."""
    try:
        with open(path, "rb") as fh:
            state = json.loads(fh.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise error_at(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise error_at(path, f"malformed JSON ({exc.msg})", line=exc.lineno) from None
    except (ValueError, RecursionError):
        raise error_at(path, "malformed JSON") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise error_at(path, "not a trainer_state.json: no 'log_history' list", field="log_history")
    step_key = mapping.get("step", "step")
    collector.step_key = f"{step_key} (of each log_history entry)" + (" (--step)" if "step" in mapping else "")
    missing = 0
    for i, entry in enumerate(state["log_history"]):
        where = f"log_history[{i}]"
        if not isinstance(entry, dict):
            raise error_at(path, f"expected an object, got {type(entry).__name__}", field=where)
        row = flatten(entry)
        step = parse_step(row.pop(step_key, None), path, field=f"{where}.{step_key}")
        if step is None:
            missing += 1
            continue
        collector.add(step, row, i)
    if missing:
        collector.note(f"{missing} log_history entries without {step_key!r}: skipped")
    if "global_step" in state and isinstance(state["global_step"], int):
        collector.note(f"trainer_state.json: global_step {state['global_step']}, "
                       f"{len(state['log_history'])} log_history entries")
