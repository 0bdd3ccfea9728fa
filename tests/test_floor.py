"""The base model's diversity floor: one definition (`ceiling.evaluate.floor`), named by its family set, and the
same number in eval.csv, the headline, the shipped bases' diversity.json and the README table (issue 16 item 3).

Expected values are computed here by hand from chosen samples: the entropy is a token mean pooled over the
set's prompts, pass@k at the largest k is the unbiased estimator, distinct answers leave out samples with no
answer. A floor that mixed the family sets, or averaged per-family means, would fail these tests.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.errors import CeilingError
from ceiling.evaluate import measures as ms
from ceiling.evaluate.config import EvalConfig
from ceiling.evaluate.floor import Floor, diversity_floor, floor_from_record
from ceiling.frame import normalize_frame

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RUN = ROOT / "reports" / "example" / "run"
N = 4  # samples per prompt, all scored

# two verified prompts (sort) and two unverified (mod): per sample (reward, answer, tokens, summed entropy)
SAMPLES = {
    0: [(1, "12", 3, 0.3), (1, "12", 3, 0.6), (0, "21", 5, 2.0), (0, None, 8, 6.4)],
    1: [(0, "3", 2, 0.2), (0, "3", 2, 0.2), (0, "4", 2, 0.1), (0, "3", 2, 0.3)],
    2: [(1, "5", 1, 1.5), (0, "6", 1, 2.5), (0, "7", 1, 1.0), (1, "5", 1, 2.0)],
    3: [(0, "0", 2, 3.0), (0, "1", 2, 2.2), (0, "2", 4, 5.0), (0, None, 3, 4.1)],
}
FAMILIES = ["sort", "sort", "mod", "mod"]
KINDS = ["verified", "verified", "unverified", "unverified"]


def _frame(step: int = 0, drop: set[str] | None = None) -> pd.DataFrame:
    """eval.csv rows of the chosen samples, made by the evaluator's own row builders (`measures`)."""
    cfg = EvalConfig(n_samples=N, score_samples=N, n_prompts=2, n_boot=200, seed=0)
    seqs = [(p, *s) for p in SAMPLES for s in SAMPLES[p]]
    arrays = ms.SampleArrays(
        prompt_index=np.array([p for p, *_ in seqs]), rewards=np.array([r for _, r, *_ in seqs], float),
        answers=[a for _, _, a, *_ in seqs], texts=[f"{p}:{a}:{i}" for i, (p, _, a, *_) in enumerate(seqs)],
        token_ids=[tuple(range(t)) for *_, t, _ in seqs], lengths=np.array([t for *_, t, _ in seqs], float),
        entropy_sum=np.array([e for *_, e in seqs], float))
    ks = [1, 2, 4]
    st = ms.ProblemStats.from_samples(arrays, 4, N, ks, 1.0)
    groups = ms.make_groups(FAMILIES, KINDS)
    weights = ms.bootstrap_for(groups, cfg)
    rows = ms.task_rows(st, groups, weights, cfg, ks, None) + ms.policy_rows(st, groups, weights, cfg)
    frame = pd.DataFrame([{"run": "r", "step": step, "compute": 0.0, **r} for r in rows])
    if drop:
        frame = frame[~((frame["metric"] == "policy/entropy") & frame["family"].isin(drop))]
    return normalize_frame(frame, where="test")


def _pooled_entropy(prompts: list[int]) -> float:
    return (sum(e for p in prompts for *_, e in SAMPLES[p])
            / sum(t for p in prompts for *_, t, _ in SAMPLES[p]))


def _distinct(prompts: list[int]) -> float:
    return float(np.mean([len({a for _, a, *_ in SAMPLES[p] if a is not None}) for p in prompts]))


def test_eval_rows_carry_entropy_for_each_family_set() -> None:
    frame = _frame()
    ent = frame[frame["metric"] == "policy/entropy"].set_index("family")["value"]
    assert set(ent.index) == {"verified", "sort", "unverified", "mod", "all"}
    assert ent["verified"] == pytest.approx(_pooled_entropy([0, 1]), rel=1e-12)
    assert ent["unverified"] == pytest.approx(_pooled_entropy([2, 3]), rel=1e-12)
    assert ent["all"] == pytest.approx(_pooled_entropy([0, 1, 2, 3]), rel=1e-12)
    assert ent["sort"] == ent["verified"] and ent["mod"] == ent["unverified"]
    # pooled over tokens, not a mean of the prompts' own token means
    per_prompt = np.mean([sum(e for *_, e in SAMPLES[p]) / sum(t for *_, t, _ in SAMPLES[p]) for p in (0, 1)])
    assert abs(per_prompt - ent["verified"]) > 0.05


def test_verified_floor_by_hand() -> None:
    floor = diversity_floor(_frame())
    assert isinstance(floor, Floor) and floor.families == "verified" and floor.family_names == ("sort",)
    assert floor.entropy == pytest.approx(_pooled_entropy([0, 1]), rel=1e-12)
    # unbiased pass@4 of n = 4 samples: 1 when any sample is correct (prompt 0: 2 correct, prompt 1: none)
    assert (floor.k, floor.pass_at_k) == (4, pytest.approx(0.5, abs=1e-12))
    assert floor.distinct_answers == pytest.approx(_distinct([0, 1]), abs=1e-12)  # (2 + 2) / 2: None not counted
    lo, hi = floor.entropy_ci
    assert lo <= floor.entropy <= hi and hi - lo > 0
    # the floor is the verified set's, not the 'all' row nor a mean of the aggregate rows
    mixed = np.mean([_pooled_entropy([0, 1]), _pooled_entropy([2, 3]), _pooled_entropy([0, 1, 2, 3])])
    assert abs(floor.entropy - mixed) > 0.1 and abs(floor.entropy - _pooled_entropy([0, 1, 2, 3])) > 0.1
    words = floor.words()
    assert words.startswith(f"entropy {floor.entropy:.3g} nats/token [") and words.endswith(
        "on the verified families (sort)")
    assert "pass@4 0.500" in words and f"{_distinct([0, 1]):.3g} distinct answers per prompt" in words
    assert floor.measures() == {"base_entropy": floor.entropy, "base_pass@kmax": floor.pass_at_k,
                                "base_distinct_answers": floor.distinct_answers}


def test_unverified_and_all_floors() -> None:
    frame = _frame()
    unv = diversity_floor(frame, "unverified")
    assert unv.entropy == pytest.approx(_pooled_entropy([2, 3]), rel=1e-12)
    assert (unv.k, unv.pass_at_k) == (4, pytest.approx(0.5, abs=1e-12))
    assert unv.distinct_answers == pytest.approx(_distinct([2, 3]))
    every = diversity_floor(frame, "all")
    assert every.entropy == pytest.approx(_pooled_entropy([0, 1, 2, 3]), rel=1e-12)
    assert math.isnan(every.pass_at_k) and every.k is None  # the two kinds are scored apart: no pooled pass@k
    assert every.words().endswith("on all families (sort, mod)")
    with pytest.raises(CeilingError, match="family set"):
        diversity_floor(frame, "sort")


def test_floor_needs_the_base() -> None:
    assert diversity_floor(_frame(step=5)) is None
    assert diversity_floor(None) is None
    both = pd.concat([_frame(), _frame(step=5)])
    assert diversity_floor(both).entropy == pytest.approx(_pooled_entropy([0, 1]))


def test_floor_of_an_eval_csv_with_entropy_on_all_only() -> None:
    old = _frame(drop={"verified", "unverified", "sort", "mod"})
    floor = diversity_floor(old)
    assert math.isnan(floor.entropy) and "entropy not measured on the verified families alone" in floor.words()
    assert floor.pass_at_k == pytest.approx(0.5)  # the other measures are still read
    # with no unverified family, 'all' is the verified set: its entropy serves
    only_verified = old[~old["metric"].str.startswith("unverified/") & ~old["family"].isin(["unverified", "mod"])]
    only_verified = only_verified[~((only_verified["metric"] == "policy/entropy") & (only_verified["family"] == "all"))]
    all_row = _frame()
    all_row = all_row[(all_row["metric"] == "policy/entropy") & (all_row["family"] == "verified")].assign(family="all")
    floor = diversity_floor(pd.concat([only_verified, all_row]))
    assert floor.entropy == pytest.approx(_pooled_entropy([0, 1]))


def test_pretraining_record_pools_the_families(one_torch_thread) -> None:
    from ceiling.models import load
    from ceiling.pretrain import measure_diversity
    from ceiling.tasks import TaskSet

    rec = measure_diversity(load("tiny-medium", device="cpu"), TaskSet.preset("tiny-rl"), n_prompts=3, n_samples=4,
                            k=4, max_new_tokens=8, batch_prompts=3)
    fams = rec["families"]
    tokens = {f: fams[f]["tokens"] for f in fams}
    assert all(t > 0 for t in tokens.values()) and len(set(tokens.values())) > 1
    pooled = sum(fams[f]["entropy"] * tokens[f] for f in fams) / sum(tokens.values())
    unv = sum(fams[f]["entropy"] * tokens[f] for f in ("mod", "count")) / (tokens["mod"] + tokens["count"])
    assert rec["floor"]["all"]["entropy"] == pytest.approx(pooled, rel=1e-9)
    assert rec["floor"]["unverified"]["entropy"] == pytest.approx(unv, rel=1e-9)
    assert abs(unv - np.mean([fams["mod"]["entropy"], fams["count"]["entropy"]])) > 1e-6  # not a mean of means
    floor = floor_from_record(rec)
    assert floor.family_names == ("sort",) and floor.k == 4
    assert (floor.entropy, floor.pass_at_k, floor.distinct_answers) == (
        fams["sort"]["entropy"], fams["sort"]["pass@4"], fams["sort"]["distinct_answers"])
    assert rec["entropy"] == floor.entropy  # the top-level keys are the verified floor
    assert floor_from_record({"entropy": 0.3}) is None  # a record from before the floor section


def _readme_bases() -> dict[str, list[str]]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(tiny-[\w-]+)` \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_readme_table_is_the_shipped_verified_floor() -> None:
    from ceiling.pretrain import PRESETS

    table = _readme_bases()
    header = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| base |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    assert set(table) == set(PRESETS)
    for name, cells in table.items():
        rec = json.loads((ROOT / "data" / "bases" / name / "diversity.json").read_text())
        floor = floor_from_record(rec, "verified")
        assert floor is not None, f"{name}: diversity.json has no floor section (re-measure the base)"
        row = dict(zip(cols, cells))
        assert float(row["entropy, verified (nats)"]) == round(floor.entropy, 3), name
        assert float(row[f"pass@{floor.k}"]) == round(floor.pass_at_k, 3), name
        assert float(row[f"distinct answers (of {rec['settings']['n_samples']})"]) == round(floor.distinct_answers, 1)


def test_headline_floor_is_the_verified_entropy_at_step_0() -> None:
    from ceiling.fit import load_fits
    from ceiling.report import summary_lines

    ev = normalize_frame(pd.read_csv(EXAMPLE_RUN / "eval.csv"), where="eval.csv")
    want = ev[(ev["step"] == 0) & (ev["metric"] == "policy/entropy") & (ev["family"] == "verified")]
    assert len(want) == 1, "the example's eval.csv has no verified-family entropy row at step 0"
    lines = summary_lines(load_fits(EXAMPLE_RUN / "fits.json"), eval_frame=ev)
    line = next(x for x in lines if x.startswith("Diversity floor of the base"))
    got = re.search(r"entropy ([0-9.eE+-]+) nats", line)
    assert got is not None, line
    assert float(got.group(1)) == float(f"{want['value'].iloc[0]:.3g}"), line
    assert "verified families" in line
