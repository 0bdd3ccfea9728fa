"""What `ceiling fit LOG` prints about a log it read, and the check that a log has something to fit.

`describe(result, log)` gives at most `max_lines` lines: what was read (format, steps, metrics, runs), how
the step key was chosen, the record kinds, one line per mapping, the keys kept raw, what was ignored, and
the notes. Repeated notes (445 restarts, say) are counted, not listed: notes that differ only in their
numbers and quoted names are one line, "(and N more like it)".
"""
from __future__ import annotations

import re

from ceiling.errors import error_at
from ceiling.ingest.core import IngestResult, short_list
from ceiling.ingest.mappings import HELDOUT_METRIC

MAX_LINES = 15


def note_template(note: str) -> str:
    """A note with its numbers and quoted names blanked: notes with one template say the same thing."""
    return re.sub(r"\d+(?:\.\d+)?", "#", re.sub(r"'[^']*'", "'?'", note))


def group_notes(notes: list[str]) -> list[tuple[str, int]]:
    """(first note of each template, how many notes share it), in first-seen order."""
    groups: dict[str, list] = {}
    for note in notes:
        groups.setdefault(note_template(note), [note, 0])[1] += 1
    return [(first, count) for first, count in groups.values()]


def _eval_n_text(result: IngestResult) -> str:
    rows = result.frame[result.frame["metric"] == HELDOUT_METRIC]
    n = rows["n"].dropna() if "n" in rows else rows.iloc[0:0]
    if rows.empty:
        return ""
    if n.empty:
        return " (n, the number of held-out problems, unknown: give --eval-n N)"
    values = sorted(n.unique())
    shown = f"{values[0]:g}" if len(values) == 1 else f"{values[0]:g}-{values[-1]:g}"
    where = "" if len(n) == len(rows) else f" at {len(n)} of {len(rows)} steps"
    return f" (n = {shown}{where}, from {result.eval_n_from or 'the log'})"


def describe(result: IngestResult, log: str, max_lines: int = MAX_LINES) -> list[str]:
    """The lines `ceiling fit` prints before its headline (at most `max_lines`)."""
    f = result.frame
    head = result.notes[0] if result.notes and result.notes[0].startswith("read ") else f"read {log}"
    runs = result.runs or sorted(f["run"].unique().tolist())
    n_steps, n_metrics = f["step"].nunique(), f["metric"].nunique()
    lines = [f"{head}: {n_steps} step{'s' * (n_steps != 1)}, {n_metrics} metric{'s' * (n_metrics != 1)}, "
             + (f"run {runs[0]!r}" if len(runs) == 1 else f"{len(runs)} runs ({short_list(runs, 5)})")]
    if result.step_key:
        lines.append(f"  step: {result.step_key}")
    if result.kinds:
        kinds = ", ".join(f"{k} {n}" for k, n in result.kinds.items())
        lines.append(f"  record kinds ({result.kind_key!r}): {kinds}; keys read as <kind>/<key>")
    other_eval = []
    for key, metric in result.mapping.items():
        if metric.startswith("raw/eval/"):
            other_eval.append(f"{key} -> {metric}")
            continue
        lines.append(f"  {key} -> {metric}" + (_eval_n_text(result) if metric == HELDOUT_METRIC else ""))
    if other_eval:
        lines.append(f"  other held-out datasets: {short_list(other_eval, 3)}")
    raw = [k for k in (result.keys or dict.fromkeys(f["source_key"].dropna())) if k not in result.mapping
           and k != "eval.csv"]
    if raw:
        lines.append(f"  kept raw ({len(raw)} keys, as raw/<key>): {short_list(raw, 6)}")
    for line in result.ignored:
        lines.append(f"  {line}")
    skip = set(result.ignored) | {head}
    notes = group_notes([n for n in result.notes if n not in skip])
    room = max_lines - len(lines)
    if len(notes) > room:
        shown, rest = notes[:max(room - 1, 0)], notes[max(room - 1, 0):]
    else:
        shown, rest = notes, []
    for note, count in shown:
        lines.append(f"  note: {note}" + (f" (and {count - 1} more like it)" if count > 1 else ""))
    if rest:
        lines.append(f"  ({sum(c for _, c in rest)} more notes: fits.json meta.source.notes)")
    return lines[:max_lines]


def require_verified(result: IngestResult, log: str) -> None:
    """A one-line CeilingError when the log gives no verified metric (no reward, no held-out accuracy)."""
    metrics = set(result.frame["metric"])
    if any(m.startswith("verified/") for m in metrics):
        return
    keys = result.keys or list(dict.fromkeys(result.frame["source_key"].dropna()))
    raise error_at(log, f"no reward or held-out accuracy recognised (keys: {short_list(keys, 12)}); "
                        "name the reward column with --verified KEY")
