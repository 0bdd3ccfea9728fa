"""The knowledge family (`cipher`), the cipher bases' corpus, and the per-family ceilings it calls for.

cipher's answers need knowledge: each sub-space (the string's last digit) has its own arbitrary substitution
table. A base knows only the tables its corpus showed, so RL (which reinforces what it samples) has nothing to
find elsewhere: a floor that binds, beside sorting, a skill that carries over.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ceiling.pretrain import BASE_TASKS, PRESETS, CorpusPlan, CorpusSpec, subspace_of
from ceiling.tasks import get_family
from ceiling.tasks.core import split_of
from ceiling.tasks.families import cipher_table

CIPHER = get_family("cipher")
BASES = Path(__file__).resolve().parents[1] / "data" / "bases"


def test_each_sub_space_has_its_own_arbitrary_table():
    tables = {s: cipher_table(s) for s in "0123456789"}
    for s, t in tables.items():
        assert sorted(t) == list("0123456789")  # a permutation of the digits
    assert len(set(tables.values())) == 10
    p = CIPHER.make("5173")
    t = tables["3"]
    assert p.prompt == "cipher 5173=" and p.answer == t[5] + t[1] + t[7] + t[3]
    assert CIPHER.subspace(p) == "last=3" and subspace_of(p) == "3"
    assert CIPHER.verify(p, p.answer) == 1.0 and CIPHER.verify(p, " ".join(p.answer)) == 1.0
    assert CIPHER.verify(p, "cipher 5173=" + p.answer) == 1.0 and CIPHER.verify(p, p.answer[:-1]) == 0.0
    # the tables share no rule: knowing nine of them says nothing of the tenth (agreement at chance, 1 in 10)
    agree = np.mean([tables[a][d] == tables[b][d] for a in tables for b in tables if a < b for d in range(10)])
    assert agree < 0.2


def test_wrong_tables_differ_from_the_true_one_at_every_digit():
    for s in "0123456789":
        for salt in range(1, 10):
            wrong = cipher_table(s, salt)
            assert sorted(wrong) == list("0123456789")
            assert all(w != t for w, t in zip(wrong, cipher_table(s)))
    p = CIPHER.make("90210")
    for seed in range(20):
        w = CIPHER.perturb_answer(p, random.Random(seed))
        assert len(w) == 5 and all(a != b for a, b in zip(w, p.answer))


def test_the_corpus_shows_a_table_only_in_covered_sub_spaces():
    plan = CorpusPlan.from_spec(CorpusSpec(0.5, tasks="tiny-cipher"))
    docs = plan.documents(6000, seed=0, split="train")
    cipher = [d for d in docs if d.family == "cipher"]
    sort = [d for d in docs if d.family == "sort"]
    assert abs(len(cipher) - len(sort)) <= 1 and len(cipher) > 1500  # the verified share split evenly
    assert all(split_of("cipher", d.problem_id.split("/", 1)[1]) == "train" for d in cipher)
    covered = set(plan.covered["cipher"])
    assert len(covered) == 6  # round(0.55 * 10) sub-spaces (last digits)
    shown: dict[str, Counter] = {}
    for d in cipher:
        p = CIPHER.make(d.problem_id.split("/", 1)[1])
        assert (d.subspace in covered) == d.covered
        if not d.covered:
            assert all(a != b for a, b in zip(d.answer, p.answer))  # never a right digit where not covered
        shown.setdefault(d.subspace, Counter())[d.correct] += 1
    for s, c in shown.items():
        assert (c[True] > 0) == (s in covered)


def test_shipped_cipher_bases_record_their_corpus():
    for name, tasks in BASE_TASKS.items():
        rec = json.loads((BASES / name / "pretrain.json").read_text())
        assert rec["corpus"]["spec"]["tasks"] == tasks == "tiny-cipher"
        assert rec["diversity"] == PRESETS[name]
        assert f"--tasks {tasks}" in rec["command"]


def test_the_base_never_samples_a_table_its_corpus_did_not_show():
    """tiny-cipher-medium on held-out strings of sub-spaces its corpus never covered: 64 samples each, none
    correct (pass@64 = 0: the floor binds); on covered sub-spaces most strings are solved by some sample."""
    import torch

    from ceiling.models import load
    from ceiling.models.loading import format_prompts
    from ceiling.models.sampling import sample

    base = BASES / "tiny-cipher-medium"
    covered = set(json.loads((base / "pretrain.json").read_text())["corpus"]["covered_subspaces"]["cipher"])
    probs = CIPHER.generate(80, seed=5, split="test")
    unc = [p for p in probs if subspace_of(p) not in covered][:8]
    cov = [p for p in probs if subspace_of(p) in covered][:8]
    assert len(unc) == len(cov) == 8
    loaded = load(base, device="cpu")
    gen = torch.Generator().manual_seed(0)
    hits = {}
    for name, group in (("uncovered", unc), ("covered", cov)):
        texts = sample(loaded.model, loaded.tokenizer, format_prompts(loaded, [p.prompt for p in group]),
                       n_per_prompt=64, max_new_tokens=8, temperature=1.0, generator=gen).texts
        hits[name] = sum(any(CIPHER.verify(p, t) for t in texts[i * 64:(i + 1) * 64]) for i, p in enumerate(group))
    assert hits["uncovered"] == 0
    assert hits["covered"] >= 5


def _two_family_frame(ceilings: dict[str, float], n: int = 16, seed: int = 0) -> pd.DataFrame:
    """An eval-like long frame: verified/reward of two families saturating at `ceilings`, plus the pooled row."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, n * 20, 20)
    rows = []
    for fam, a in ceilings.items():
        y = a - (a - 0.1) * np.exp(-steps / 60.0) + rng.normal(0, 0.01, steps.size)
        rows += [{"run": "r", "step": int(s), "compute": float(s) * 1e9 + 1.0, "metric": "verified/reward",
                  "value": float(v), "family": fam} for s, v in zip(steps, y)]
    pooled = pd.DataFrame(rows).groupby("step", as_index=False).agg(value=("value", "mean"), compute=("compute", "mean"))
    rows += [{"run": "r", "step": int(r.step), "compute": r.compute, "metric": "verified/reward", "value": r.value,
              "family": "verified"} for r in pooled.itertuples()]
    return pd.DataFrame(rows)


def test_each_family_gets_its_own_ceiling_and_the_section_round_trips():
    from ceiling.fit import fit_frame
    from ceiling.fit.families import FamilyCeilings
    from ceiling.fit.fitreport import FitReport

    report = fit_frame(_two_family_frame({"cipher": 0.45, "sort": 0.92}), n_boot=150, seed=0)
    fam = report.family_ceilings
    assert isinstance(fam, FamilyCeilings) and list(fam.fits) == ["cipher", "sort"]
    for name, truth in (("cipher", 0.45), ("sort", 0.92)):
        fit = fam.fits[name]
        assert fit.identifiable, (name, fit.reasons)
        # one draw: the estimate within 0.02 of the truth (noise sd 0.01, the plateau well observed), a narrow
        # interval around it (coverage itself is checked over many draws in test_calibration)
        assert abs(fit.estimate - truth) < 0.02 and fit.ci_low < fit.estimate < fit.ci_high, (name, fit.estimate)
        assert fit.ci_high - fit.ci_low < 0.1, (name, fit.ci_low, fit.ci_high)
    # the pooled ceiling is neither family's
    assert 0.5 < report.ceiling.estimate < 0.85
    again = FitReport.from_dict(report.to_dict()).family_ceilings
    assert again.to_dict() == fam.to_dict()
    assert "cipher: " in fam.headline() and any(r["quantity"] == "ceiling of sort" for r in fam.rows())


def test_one_verified_family_adds_no_section():
    from ceiling.fit import fit_frame

    df = _two_family_frame({"sort": 0.9})
    report = fit_frame(df, n_boot=50, seed=0)
    assert report.family_ceilings is None and "family_ceilings" not in report.to_dict()
