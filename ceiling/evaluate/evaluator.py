"""Evaluate a base and its checkpoints on the same held-out prompts -> the canonical long frame.

    evaluate_checkpoints(base, checkpoints, cfg, run=..., taskset=...)   any models (e.g. TRL checkpoints)
    evaluate_run(run_dir, cfg)                                           a `ceiling train` run dir -> eval.csv

For each model: n samples per prompt (the same seeded stream for every model), verified, with own log-probs
and full-vocabulary entropy from one scoring pass; greedy completions; then, against the base, KL in both
directions (the base scores the policy's samples, the policy scores the base's samples). Samples are reused
by every metric. The base is step 0; its rows are the diversity floor the checkpoints spend from.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from ceiling.errors import CeilingError, error_at
from ceiling.evaluate import measures as ms
from ceiling.evaluate import sampling as sp
from ceiling.evaluate.config import EvalConfig
from ceiling.frame import normalize_frame
from ceiling.io import atomic_write_json, atomic_write_text, read_json, read_jsonl
from ceiling.memory import keep_freed_memory
from ceiling.models import LoadedModel, Rollout, load, resolve_device, sample
from ceiling.progress import Heartbeat, is_terminal
from ceiling.tasks import Problem, TaskSet

DEFAULT_MAX_NEW_TOKENS = 64
ROWS_VERSION = 2
"""The layout of eval.csv's rows, part of its fingerprint (2: policy/entropy for every family set and family,
not only "all"), so an eval.csv of an older layout is evaluated again rather than extended."""


@dataclass
class EvalProblems:
    """The fixed evaluation prompts: problems with their kind ("verified" / "unverified")."""

    problems: list[Problem]
    kinds: list[str]
    taskset: TaskSet

    def verify(self, i: int, text: str) -> float:
        return float(self.taskset.verify(self.problems[i], text))

    def extract(self, i: int, text: str) -> str | None:
        return self.taskset.family(self.problems[i].family).extract_answer(text)


def eval_problems(taskset: TaskSet, cfg: EvalConfig) -> EvalProblems:
    """`cfg.n_prompts` problems of `cfg.split` per family, verified families first (seeded)."""
    problems: list[Problem] = []
    kinds: list[str] = []
    for kind in ("verified", "unverified"):
        for fam in getattr(taskset, kind):
            got = fam.generate(cfg.n_prompts, seed=cfg.seed, split=cfg.split, difficulty=taskset.difficulties[fam.name])
            problems.extend(got)
            kinds.extend([kind] * len(got))
    if not problems:
        raise error_at(None, "the task set has no families to evaluate", field="tasks")
    return EvalProblems(problems, kinds, taskset)


def _load(spec: Any, device: str) -> LoadedModel:
    return spec if isinstance(spec, LoadedModel) else load(spec, device=device)


def step_of(spec: Any, position: int) -> int:
    """Training step of a checkpoint: `trainer_state.json` global_step, else the last number in its folder
    name (step_000100, checkpoint-100), else its 1-based position in the list."""
    if isinstance(spec, LoadedModel):
        spec = spec.path
    path = Path(str(spec))
    state = path / "trainer_state.json"
    if state.is_file():
        try:
            gs = json.loads(state.read_text()).get("global_step")
            if isinstance(gs, int):
                return gs
        except (ValueError, OSError):
            pass
    nums = re.findall(r"\d+", path.name)
    return int(nums[-1]) if nums else position


def _nll_documents(base: LoadedModel, cfg: EvalConfig) -> tuple[list[list[int]], str] | None:
    """Held-out pretraining documents of a tiny base, tokenised, or None when the base has none."""
    try:
        from ceiling.pretrain import heldout_documents
    except ImportError:
        return None
    try:
        docs = heldout_documents(base.path, n=cfg.nll_documents, seed=cfg.seed)
    except (CeilingError, FileNotFoundError, ValueError):
        return None
    if not docs:
        return None
    from ceiling.models import encode_document

    ids = [encode_document(base.tokenizer, text, "") for text in docs]
    return ids, f"{len(ids)} held-out (test split) documents of the base's pretraining distribution"


class _Evaluator:
    """Holds the base, its samples and the shared bootstrap draws while checkpoints stream through."""

    def __init__(self, base: Any, cfg: EvalConfig, taskset: TaskSet | None, timings: dict[str, float],
                 sampler: Callable[..., Rollout] = sample):
        if cfg.max_new_tokens is None:
            cfg = replace(cfg, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
        self.cfg = cfg
        self.timings = timings
        self.sampler = sampler
        t0 = perf_counter()
        self.base = _load(base, cfg.device)
        self._tick("load", t0)
        self.ep = eval_problems(taskset or TaskSet.preset("default"), cfg)
        self.m = len(self.ep.problems)
        self.ks = [k for k in cfg.k_values() if k <= cfg.n_samples]
        self.max_new = int(cfg.max_new_tokens)
        self.groups = ms.make_groups([p.family for p in self.ep.problems], self.ep.kinds)
        self.weights = ms.bootstrap_for(self.groups, cfg)
        self.base_samples = self._draw(self.base)
        self.base_stats = self._stats(self.base_samples)
        t0 = perf_counter()
        self.docs = _nll_documents(self.base, cfg) if cfg.nll_documents else None
        self._tick("nll", t0)

    def _tick(self, stage: str, t0: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + perf_counter() - t0

    def _draw(self, loaded: LoadedModel) -> sp.ModelSamples:
        prompts = [p.prompt for p in self.ep.problems]
        return sp.draw(loaded, prompts, self.ep.verify, self.ep.extract, self.cfg, self.max_new, self.timings,
                       self.sampler)

    def _stats(self, s: sp.ModelSamples) -> ms.ProblemStats:
        t0 = perf_counter()
        st = ms.ProblemStats.from_samples(s.arrays, self.m, self.cfg.n_samples, self.ks, self.cfg.correct_threshold)
        self._tick("measures", t0)
        return st

    def _nll(self, loaded: LoadedModel, base_logp: list[np.ndarray] | None) -> dict[str, Any]:
        """unverified/nll on pretraining documents, else on the base's own samples (fallback)."""
        t0 = perf_counter()
        if self.docs is not None:
            nll, tok = sp.document_nll(loaded, self.docs[0])
            source, unit = self.docs[1], "documents"
        else:  # per-prompt sums, so the bootstrap resamples prompts (a prompt's samples are correlated)
            logp = base_logp if base_logp is not None else [ch.logp for ch in self.base_samples.chunks]
            seq_nll, seq_tok = sp.sequence_nll(logp, self.base_samples)
            idx = self.base_samples.scored_prompt_index
            nll, tok = np.bincount(idx, seq_nll, self.m), np.bincount(idx, seq_tok, self.m)
            source = (f"text sampled from the base itself (fallback: the base has no pretraining documents; "
                      f"T={self.cfg.temperature:g}, {self.cfg.scored_samples()} samples x {self.m} prompts)")
            unit = "prompts"
        self._tick("nll", t0)
        return ms.nll_row(nll, tok, self.cfg, source, unit)

    def base_rows(self) -> list[dict[str, Any]]:
        rows = ms.task_rows(self.base_stats, self.groups, self.weights, self.cfg, self.ks, None)
        rows += ms.policy_rows(self.base_stats, self.groups, self.weights, self.cfg)
        rows += ms.zero_kl_rows(self.m)
        rows.append(self._nll(self.base, None))
        return rows

    def checkpoint_rows(self, spec: Any) -> list[dict[str, Any]]:
        t0 = perf_counter()
        policy = _load(spec, self.cfg.device)
        self._tick("load", t0)
        if policy.tokenizer.get_vocab() != self.base.tokenizer.get_vocab():
            raise error_at(policy.path, "checkpoint and base have different tokenizers (KL needs one vocabulary)")
        samples = self._draw(policy)
        st = self._stats(samples)
        rows = ms.task_rows(st, self.groups, self.weights, self.cfg, self.ks, self.base_stats)
        rows += ms.policy_rows(st, self.groups, self.weights, self.cfg)
        t0 = perf_counter()
        base_on_policy = sp.score_under(self.base, samples)
        policy_on_base = sp.score_under(policy, self.base_samples)
        pb1, pb3 = sp.sequence_kl(samples, base_on_policy)
        bp1, bp3 = sp.sequence_kl(self.base_samples, policy_on_base)
        self._tick("kl", t0)
        index = {"policy": samples.scored_prompt_index, "base": self.base_samples.scored_prompt_index}
        rows += ms.kl_rows({"policy_base_k1": pb1, "policy_base_k3": pb3, "base_policy_k1": bp1,
                            "base_policy_k3": bp3}, index, self.m, self.cfg)
        rows.append(self._nll(policy, policy_on_base))
        return rows


def _frame(rows_by_step: list[tuple[int, list[dict[str, Any]]]], run: str,
           compute: dict[int, float] | None) -> pd.DataFrame:
    recs = []
    for step, rows in rows_by_step:
        c = (compute or {}).get(step, 0.0 if step == 0 else np.nan)
        recs.extend({"run": run, "step": step, "compute": c, **r} for r in rows)
    return normalize_frame(pd.DataFrame.from_records(recs), where="eval")


def evaluate_checkpoints(base: Any, checkpoints: Sequence[Any], cfg: EvalConfig | None = None, run: str = "eval",
                         taskset: TaskSet | None = None, steps: Sequence[int] | None = None,
                         compute: dict[int, float] | None = None, include_base: bool = True,
                         timings: dict[str, float] | None = None,
                         sampler: Callable[..., Rollout] = sample) -> pd.DataFrame:
    """Evaluate `base` (step 0) and each checkpoint on the same held-out prompts; return the canonical frame.

    base / checkpoints: a base name, a local model folder or a `LoadedModel`. `steps` defaults to
    `step_of(checkpoint)`; `compute` maps step -> cumulative FLOPs. `timings`, if given, receives seconds
    per stage (load, generate, score, verify, greedy, measures, kl, nll). `sampler` draws the completions
    (signature of `ceiling.models.sample`, the default; tests pass one with chosen completions).
    """
    cfg = cfg or EvalConfig()
    timings = timings if timings is not None else {}
    steps = list(steps) if steps is not None else [step_of(c, i + 1) for i, c in enumerate(checkpoints)]
    if len(steps) != len(checkpoints):
        raise CeilingError(f"{len(checkpoints)} checkpoints but {len(steps)} steps")
    if len(set(steps)) != len(steps) or any(s <= 0 for s in steps):
        raise CeilingError(f"checkpoint steps must be distinct and > 0 (step 0 is the base), got {steps}")
    if resolve_device(cfg.device).type == "cpu":
        keep_freed_memory()  # large logits blocks reuse pages (`ceiling.memory`)
    # a bar on a terminal; in a log, a line per checkpoint and one at least every 10 s (the base, a slow checkpoint)
    terminal = is_terminal()
    t0 = perf_counter()
    with Heartbeat("evaluate: sampling the base", enabled=not terminal) as beat:
        ev = _Evaluator(base, cfg, taskset, timings, sampler)
        out = [(0, ev.base_rows())] if include_base else []
        for i, (step, ck) in enumerate(tqdm(zip(steps, checkpoints, strict=True), total=len(steps),
                                            desc="evaluate", unit="checkpoint", leave=False, disable=not terminal)):
            beat.now = f"evaluate: checkpoint step {step}, {i}/{len(steps)} checkpoints done"
            out.append((step, ev.checkpoint_rows(ck)))
            beat.report(f"evaluate: step {step} done, {i + 1}/{len(steps)} checkpoints ({perf_counter() - t0:.0f} s)")
    return _frame(out, run, compute)


# ------------------------------------------------------------------ run directories
def run_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run (`checkpoints/step_NNNNNN/` with a config.json), step > 0, by step."""
    found = []
    for p in sorted((run_dir / "checkpoints").glob("step_*")):
        m = re.fullmatch(r"step_(\d+)", p.name)
        if m and (p / "config.json").is_file() and int(m.group(1)) > 0:
            found.append((int(m.group(1)), p))
    return sorted(found)


def run_compute(run_dir: Path) -> dict[int, float]:
    """step -> compute/flops from metrics.jsonl (step 0 = 0)."""
    path = run_dir / "metrics.jsonl"
    out = {0: 0.0}
    if path.is_file():
        for rec in read_jsonl(path, strict=False):
            if isinstance(rec.get("step"), int) and isinstance(rec.get("compute/flops"), (int, float)):
                out[rec["step"]] = float(rec["compute/flops"])
    return out


def _run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise error_at(run_dir, "not a run directory (no config.json)")
    conf = read_json(path, what="run config")
    if not isinstance(conf, dict):
        raise error_at(path, "a run config must be a JSON object")
    for key in ("base", "tasks"):
        if key not in conf:
            raise error_at(path, "missing", field=key)
    return conf


def _taskset_of(spec: Any, where: Path) -> TaskSet:
    if isinstance(spec, TaskSet):
        return spec
    if isinstance(spec, dict):
        return TaskSet.from_dict(spec)
    try:
        return TaskSet.parse(str(spec))
    except CeilingError as exc:
        raise error_at(where, str(exc), field="tasks") from None


def evaluate_run(run_dir: str | Path, cfg: EvalConfig | None = None,
                 timings: dict[str, float] | None = None, sampler: Callable[..., Rollout] = sample) -> pd.DataFrame:
    """Evaluate the base and every checkpoint of a run; write `eval.csv` and `eval_config.json` atomically.
    `sampler`: as for `evaluate_checkpoints` (e.g. `ceiling.engines.vllm.VLLMSampler`; part of the fingerprint).

    If eval.csv exists and was made with the same config (fingerprint in eval_config.json), only new
    checkpoints are evaluated and appended (the base is re-sampled to compare against, with the same
    numbers as before). Compute comes from metrics.jsonl.
    """
    run_dir = Path(run_dir)
    cfg = cfg or EvalConfig()
    conf = _run_config(run_dir)
    if cfg.max_new_tokens is None:
        cfg = replace(cfg, max_new_tokens=int(conf.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS))
    taskset = _taskset_of(conf["tasks"], run_dir / "config.json")
    engine = {} if sampler is sample else {"sampler": type(sampler).__name__}  # native fingerprints unchanged
    fingerprint = cfg.fingerprint(base=str(conf["base"]), tasks=conf["tasks"], rows=ROWS_VERSION, **engine)
    csv_path, cfg_path = run_dir / "eval.csv", run_dir / "eval_config.json"
    compute = run_compute(run_dir)
    old = _previous(csv_path, cfg_path, fingerprint)
    done = set(old["step"].unique()) if old is not None else set()
    todo = [(s, p) for s, p in run_checkpoints(run_dir) if s not in done]
    if old is not None and not todo and 0 in done:
        frame = old
    else:
        new = evaluate_checkpoints(conf["base"], [p for _, p in todo], cfg, run=run_dir.name, taskset=taskset,
                                   steps=[s for s, _ in todo], include_base=0 not in done, timings=timings,
                                   sampler=sampler)
        frame = new if old is None else pd.concat([old, new], ignore_index=True)
    frame = frame.copy()
    frame["compute"] = [compute.get(int(s), np.nan) for s in frame["step"]]
    frame = frame.sort_values(["step", "metric", "family", "k"], na_position="first", kind="stable")
    frame = frame.reset_index(drop=True)
    text = frame.to_csv(index=False)
    if not (csv_path.is_file() and csv_path.read_text() == text):  # unchanged: leave the file alone
        atomic_write_text(csv_path, text)
    frame = normalize_frame(pd.read_csv(io.StringIO(text)), where=str(csv_path))  # as a later read sees it
    atomic_write_json(cfg_path, {"fingerprint": fingerprint, "config": cfg.to_dict(), **eval_record(taskset, cfg),
                                 "base": str(conf["base"]), "tasks": conf["tasks"]})
    return frame


def eval_record(taskset: TaskSet, cfg: EvalConfig) -> dict[str, Any]:
    """What the numbers rest on, for eval_config.json: prompts per family, samples, temperature, k grid."""
    ep = eval_problems(taskset, cfg)
    per_family: dict[str, int] = {}
    for p in ep.problems:
        per_family[p.family] = per_family.get(p.family, 0) + 1
    return {"prompts": len(ep.problems), "prompts_per_family": per_family,
            "verified": taskset.names("verified"), "unverified": taskset.names("unverified"),
            "samples_per_prompt": cfg.n_samples, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "max_new_tokens": cfg.max_new_tokens or DEFAULT_MAX_NEW_TOKENS, "ks": cfg.k_values(), "split": cfg.split}


def _previous(csv_path: Path, cfg_path: Path, fingerprint: str) -> pd.DataFrame | None:
    """The existing eval.csv if it was written with the same config fingerprint, else None."""
    if not (csv_path.is_file() and cfg_path.is_file()):
        return None
    try:
        if json.loads(cfg_path.read_text()).get("fingerprint") != fingerprint:
            return None
        return normalize_frame(pd.read_csv(csv_path), where=str(csv_path))
    except (ValueError, OSError, CeilingError):
        return None


def read_eval(path: str | Path) -> pd.DataFrame:
    """Read an eval.csv back as a canonical frame."""
    path = Path(path)
    if not path.is_file():
        raise error_at(path, "no such file")
    return normalize_frame(pd.read_csv(path), where=str(path))
