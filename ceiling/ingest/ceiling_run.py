"""Our own run directories: `metrics.jsonl` (one object per RL step, keys of docs/design.md) and `eval.csv`
(already the canonical frame). When both give a canonical metric, `eval.csv` is the one kept (it is
measured on held-out prompts); the training-log key stays as `raw/<key>`, with a note.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ceiling.errors import CeilingError, error_at
from ceiling.frame import normalize_frame
from ceiling.ingest.core import Collector, IngestResult, concat_results
from ceiling.ingest.tabular import read_jsonl


def run_files(path: Path) -> tuple[Path | None, Path | None]:
    """(metrics.jsonl, eval.csv) of a run directory, or of the run directory a file of it sits in."""
    folder = path if path.is_dir() else path.parent
    metrics, evals = folder / "metrics.jsonl", folder / "eval.csv"
    if path.is_file():
        return (path, None) if path.name == "metrics.jsonl" else (None, path)
    return (metrics if metrics.is_file() else None), (evals if evals.is_file() else None)


def read_eval_csv(path: Path, run: str) -> pd.DataFrame:
    """An eval.csv as the canonical frame (`run` filled in when the file has no run column)."""
    try:
        df = pd.read_csv(path)
    except UnicodeDecodeError:
        raise error_at(path, "not UTF-8 text") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise error_at(path, f"malformed CSV ({str(exc).splitlines()[0][:120]})") from None
    if "run" not in df.columns:
        df["run"] = run
    df = normalize_frame(df, where=str(path))
    if "source_key" in df.columns:
        df["source_key"] = df["source_key"].where(df["source_key"].notna(), "eval.csv")
    return df


def read_ceiling_run(path: Path, run: str, mapping: dict[str, str], run_given: bool = False) -> IngestResult:
    """Read a run directory (or its metrics.jsonl / eval.csv) into one canonical frame.

    One run name for both files: the caller's `run` when given (`run_given`), else the single run name that
    eval.csv records (a copied run folder keeps its name), else `run` (from the folder name).
    """
    metrics, evals = run_files(path)
    if metrics is None and evals is None:
        raise CeilingError(f"{path}: not a ceiling run directory (no metrics.jsonl or eval.csv)")
    parts: list[IngestResult] = []
    eval_frame = read_eval_csv(evals, run) if evals is not None else None
    if eval_frame is not None:
        recorded = eval_frame["run"].unique()
        if run_given:
            eval_frame["run"] = run
        elif len(recorded) == 1:
            run = str(recorded[0])
    notes: list[str] = []
    if eval_frame is not None and metrics is not None:
        for metric in set(mapping) & set(eval_frame["metric"]):  # the user maps a metrics.jsonl key to it
            eval_frame.loc[eval_frame["metric"] == metric, "metric"] = f"raw/eval.csv:{metric}"
            notes.append(f"{metric} from {mapping[metric]!r} as asked; eval.csv's {metric} kept as "
                         f"raw/eval.csv:{metric}")
    if metrics is not None:
        collector = Collector(metrics)
        read_jsonl(metrics, collector, "ceiling", mapping)
        have = set(eval_frame["metric"]) if eval_frame is not None else set()
        parts.append(collector.result("ceiling", run, mapping, keep_raw=have))
    if eval_frame is not None:
        parts.append(IngestResult(frame=eval_frame, format="ceiling",
                                  notes=notes + [f"{evals.name}: {len(eval_frame)} canonical rows"]))
    return concat_results(parts, "ceiling")
