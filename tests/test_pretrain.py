"""Tiny bases of controlled diversity: the knob, the corpus, reproducible training, the shipped bases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ceiling.errors import CeilingError
from ceiling.models import bases_dir, load
from ceiling.pretrain import (
    BASE_TASKS,
    PRESETS,
    CorpusPlan,
    CorpusSpec,
    TrainConfig,
    build_corpus,
    corpus_stats,
    deterministic_cpu,
    heldout_documents,
    heldout_pairs,
    knob,
    measure_diversity,
    pretrain,
    subspace_of,
)
from ceiling.tasks import TaskSet, get_family

KNOB_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def test_knob_is_monotone_and_checked() -> None:
    knobs = [knob(d) for d in KNOB_GRID]
    assert [k.coverage for k in knobs] == sorted(k.coverage for k in knobs)
    assert [k.wrong_variants for k in knobs] == sorted(k.wrong_variants for k in knobs)
    shares = [k.coverage * k.p_correct for k in knobs]
    assert shares == sorted(shares) and shares[0] < shares[-1]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(CeilingError, match="diversity"):
            knob(bad)


def test_corpus_statistics_grow_with_diversity() -> None:
    stats = [corpus_stats(build_corpus(CorpusSpec(diversity=d, seed=0), 3000)) for d in KNOB_GRID]
    correct = [s["correct_share"] for s in stats]
    distinct = [s["distinct_answers_per_problem"] for s in stats]
    covered = [s["covered_share"] for s in stats]
    assert correct == sorted(correct) and correct[-1] - correct[0] > 0.2
    assert distinct == sorted(distinct) and distinct[-1] - distinct[0] > 0.3
    assert covered == sorted(covered) and covered[-1] - covered[0] > 0.4
    # the shares match the knob: coverage x p_correct, up to sampling noise
    for d, c in zip(KNOB_GRID, correct):
        k = knob(d)
        assert abs(c - k.coverage * k.p_correct) < 0.08


def test_corpus_uses_every_family_and_the_split() -> None:
    ts = TaskSet.preset(CorpusSpec.tasks)
    docs = build_corpus(CorpusSpec(diversity=0.5, seed=1), 600)
    assert {d.family for d in docs} == set(ts.names("verified")) | set(ts.names("unverified"))
    for d in docs[:100]:
        fam = get_family(d.family)
        problem = fam.parse_prompt(d.prompt)
        assert problem is not None and problem.split == "train"
        assert fam.verify(problem, d.completion) == (1.0 if d.correct else 0.0)
        assert d.subspace == subspace_of(problem)


def test_uncovered_subspaces_show_one_fixed_wrong_answer() -> None:
    plan = CorpusPlan.from_spec(CorpusSpec(diversity=0.0, seed=0))
    docs = plan.documents(4000, seed=0, split="train")
    answers: dict[str, set[str]] = {}
    for d in docs:
        if not d.covered:
            assert not d.correct
            answers.setdefault(d.problem_id, set()).add(d.completion)
    assert answers and all(len(a) == 1 for a in answers.values())
    # covered sets are nested as diversity grows (same seed)
    high = CorpusPlan.from_spec(CorpusSpec(diversity=0.6, seed=0))
    for fam, subs in plan.covered.items():
        assert set(subs) <= set(high.covered[fam])


def test_same_seed_same_weights_bitwise(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=3, batch_size=8, warmup=1, hidden_size=32, num_layers=1, num_heads=2, log_every=0)
    a = pretrain(tmp_path / "a", 0.5, seed=3, cfg=cfg, measure=False)
    b = pretrain(tmp_path / "b", 0.5, seed=3, cfg=cfg, measure=False)
    c = pretrain(tmp_path / "c", 0.5, seed=4, cfg=cfg, measure=False)
    wa, wb, wc = ((p / "model.safetensors").read_bytes() for p in (a, b, c))
    assert wa == wb
    assert wa != wc
    rec = json.loads((a / "pretrain.json").read_text())
    assert rec["diversity"] == 0.5 and rec["seed"] == 3 and rec["train"]["steps"] == 3
    assert rec["corpus"]["covered_subspaces"]["sort"]


def test_heldout_documents_follow_the_base_distribution(tmp_path: Path) -> None:
    record = {"corpus": {"spec": {"diversity": 1.0, "seed": 0, "tasks": "default"}}}
    (tmp_path / "pretrain.json").write_text(json.dumps(record))
    docs = heldout_documents(tmp_path, n=60, seed=5)
    assert len(docs) == 60 and docs == heldout_documents(tmp_path / "pretrain.json", n=60, seed=5)
    assert docs != heldout_documents(tmp_path, n=60, seed=6)
    for prompt, _ in heldout_pairs(tmp_path, n=60, seed=5):
        problem = TaskSet.preset("default").find(prompt)
        assert problem is not None and problem.split == "test"
    with pytest.raises(CeilingError, match="pretrain.json"):
        heldout_documents(tmp_path / "missing", n=3)


# ---- the shipped bases --------------------------------------------------------------------------------------
def _shipped() -> list[Path]:
    paths = [bases_dir() / name for name in PRESETS]
    missing = [p for p in paths if not (p / "pretrain.json").is_file()]
    if missing:
        pytest.fail(f"shipped bases missing (run `ceiling pretrain --all`): {missing}")
    return paths


SERIES = {"tiny": ("tiny-low", "tiny-medium", "tiny-high"),
          "tiny-cipher": ("tiny-cipher-low", "tiny-cipher-medium", "tiny-cipher-high")}
"""The shipped bases in series of one corpus task set, low to high diversity."""


def test_the_series_are_the_shipped_bases() -> None:
    assert sorted(n for names in SERIES.values() for n in names) == sorted(PRESETS)
    for series, names in SERIES.items():
        assert [PRESETS[n] for n in names] == [0.0, 0.5, 1.0]
        assert {BASE_TASKS.get(n, "tiny-rl") for n in names} == {"tiny-rl" if series == "tiny" else series}


@pytest.fixture(scope="module")
def measured() -> dict[str, dict]:
    """Each base on the verified families of its own corpus (sort; sort and cipher for the cipher bases)."""
    out = {}
    with deterministic_cpu(1):
        for p in _shipped():
            ts = TaskSet(verified=TaskSet.preset(BASE_TASKS.get(p.name, "tiny-rl")).names("verified"))
            out[p.name] = measure_diversity(load(p, device="cpu"), ts, n_prompts=32, n_samples=64, seed=0)
    return out


@pytest.mark.parametrize("series", list(SERIES))
def test_shipped_bases_diversity_ordering(measured: dict[str, dict], series: str) -> None:
    low, mid, high = (measured[n] for n in SERIES[series])
    for metric in ("entropy", "pass@64", "distinct_answers"):
        assert low[metric] < mid[metric] < high[metric], (metric, low[metric], mid[metric], high[metric])
    assert high["pass@64"] - low["pass@64"] > 0.15


@pytest.mark.parametrize("series", list(SERIES))
def test_shipped_bases_leave_room_for_rl(measured: dict[str, dict], series: str) -> None:
    for name in SERIES[series]:
        m = measured[name]
        assert 0.05 < m["greedy_acc"] < 0.8, (name, m["greedy_acc"])
        assert m["mean_reward"] < m["pass@64"], (name, m["mean_reward"], m["pass@64"])
    # the room RL can sharpen into (pass@64 - mean@64) grows with diversity: the claim the bases exist to test
    room = [measured[n]["pass@64"] - measured[n]["mean_reward"] for n in SERIES[series]]
    assert room[0] < room[2] and room[2] > 0.15, room


def test_shipped_records_agree_with_the_knob() -> None:
    for path in _shipped():
        rec = json.loads((path / "pretrain.json").read_text())
        div = json.loads((path / "diversity.json").read_text())
        assert rec["diversity"] == PRESETS[path.name]
        assert rec["log"]["parameters"] >= 500_000
        assert {"entropy", "pass@64", "distinct_answers", "greedy_acc", "greedy_acc_unverified"} <= set(div)
