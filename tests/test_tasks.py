"""Tests of ceiling.tasks: generation, splits, verifiers, fuzzing, JSONL tasks, TaskSet specs, TRL rewards."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceiling.errors import CeilingError
from ceiling.tasks import (FAMILIES, PRESETS, Problem, TaskSet, get_family, load_jsonl_tasks, split_of,
                           trl_reward_fn)
from ceiling.tasks.countdown import check, evaluate
from ceiling.tasks.extract import extract_number, extract_text

NAMES = sorted(FAMILIES)
PRINTABLE = {chr(c) for c in range(32, 127)} | {"\n"}


# ---- generation and splits ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_generation_is_deterministic_and_varies_with_seed(name):
    fam = get_family(name)
    a = fam.generate(20, seed=3, split="train", difficulty=1)
    b = fam.generate(20, seed=3, split="train", difficulty=1)
    c = fam.generate(20, seed=4, split="train", difficulty=1)
    assert a == b
    assert [p.prompt for p in a] != [p.prompt for p in c]
    assert all(p.family == name and p.difficulty == 1 and p.split == "train" for p in a)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_splits_are_disjoint(name, difficulty):
    fam = get_family(name)
    train = fam.generate(300, seed=0, split="train", difficulty=difficulty)
    test = fam.generate(100, seed=0, split="test", difficulty=difficulty)
    assert {p.id for p in test}.isdisjoint({p.id for p in train})
    assert all(p.split == "test" for p in test) and all(p.split == "train" for p in train)
    assert all(fam.parse_prompt(p.prompt).split == "test" for p in test[:20])


@pytest.mark.parametrize("name", ["add", "mul"])
def test_commuted_problems_share_a_split(name):
    fam = get_family(name)
    pairs = [(a, b) for a in range(10) for b in range(10, 100)]
    assert all(fam.make(a, b).split == fam.make(b, a).split for a, b in pairs)
    assert {fam.make(a, b).split for a, b in pairs} == {"train", "test"}


def test_split_fraction_is_about_one_fifth():
    keys = [f"{a}+{b}" for a in range(100) for b in range(100)]
    share = sum(split_of("add", k) == "test" for k in keys) / len(keys)
    assert 0.17 < share < 0.23


@pytest.mark.parametrize("name", NAMES)
def test_prompts_and_solutions_are_printable_and_short(name):
    fam = get_family(name)
    for p in fam.generate(50, seed=1, difficulty=1) + fam.generate(20, seed=1, difficulty=3):
        assert set(p.prompt) <= PRINTABLE and p.prompt.endswith("=") and len(p.prompt) <= 40
        assert set(fam.solution(p)) <= PRINTABLE and len(fam.solution(p)) <= 20


def test_difficulty_grows_operands():
    add = get_family("add")
    big1 = max(max(p.meta["a"], p.meta["b"]) for p in add.generate(200, seed=0, difficulty=1))
    big3 = max(max(p.meta["a"], p.meta["b"]) for p in add.generate(200, seed=0, difficulty=3))
    assert big1 < 100 <= big3 < 10_000
    with pytest.raises(CeilingError):
        add.generate(1, seed=0, difficulty=0)
    with pytest.raises(CeilingError):
        add.generate(1, seed=0, split="valid")


def test_known_answers():
    cases = {"add": ((12, 35), "47"), "sub": ((47, 12), "35"), "mul": ((7, 12), "84"), "mod": ((47, 7), "5"),
             "sort": (("3142",), "1234"), "count": (("3", "31934"), "2"), "parity": (("10110",), "1")}
    for name, (ops, answer) in cases.items():
        assert get_family(name).make(*ops).answer == answer
    assert get_family("add").make(12, 35).prompt == "12+35="


# ---- verifiers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_solution_format_verifies_and_perturbations_fail(name):
    fam = get_family(name)
    rng = random.Random(0)
    for p in fam.generate(40, seed=2, split="test", difficulty=1) + fam.generate(10, seed=2, difficulty=2):
        sols = fam.solutions(p)
        assert sols and sols[0] == fam.solution(p)
        assert all(fam.verify(p, s) == 1.0 for s in sols), sols
        wrong = fam.perturb_answer(p, rng)
        assert wrong not in sols and fam.verify(p, wrong) == 0.0


@pytest.mark.parametrize("text", ["47", " 47 ", "47.0", "+47", "47.", "The answer is 47.", "Answer: 47",
                                  "answer = 47 because 40+7", "#### 47", "so \\boxed{47}", "\\boxed{\\text{47}}",
                                  "12+35=47", "47\n12+99=3", "Let me see.\n12 + 35 = 47\nDone.", "**Answer:** $47$", "I think 12 + 35 = 47"])
def test_numeric_formats_accepted(text):
    p = get_family("add").make(12, 35)
    assert get_family("add").verify(p, text) == 1.0


@pytest.mark.parametrize("text", ["46", "", "   ", "4 7", "12+35=", "answer: 48", "\\boxed{48} 47", "4.7e1", None,
                                  "The answer is 12, not 47", b"\xff\xfe", 47, ["x"], "\u0664\u0667"])
def test_numeric_wrong_or_malformed_rejected(text):
    p = get_family("add").make(12, 35)
    assert get_family("add").verify(p, text) == 0.0


def test_thousands_and_negatives():
    assert extract_number("The answer is 1,234.") == "1234"
    assert extract_number("12-35=-23") == "-23"
    assert extract_text("The answer is **Paris**.") == "Paris" and extract_text("  \n ") is None
    p = get_family("sub").make(12, 35)
    assert p.answer == "-23" and get_family("sub").verify(p, "-23") == 1.0
    assert get_family("sub").verify(p, "23") == 0.0


def test_sort_count_parity_formats():
    sort, parity = get_family("sort"), get_family("parity")
    p = sort.make("3142")
    for ok in ["1234", "1 2 3 4", "[1, 2, 3, 4]", "Answer: 1,2,3,4", "sort 3142=1234"]:
        assert sort.verify(p, ok) == 1.0, ok
    for bad in ["1243", "123", "12345", "4321", "sorted"]:
        assert sort.verify(p, bad) == 0.0, bad
    q = parity.make("10110")
    assert parity.verify(q, "odd") == 1.0 and parity.verify(q, "It is even") == 0.0
    assert parity.verify(q, "1") == 1.0 and parity.verify(q, "0") == 0.0


def test_countdown_verifier():
    cd = get_family("countdown")
    p = cd.make((2, 3, 8), 24)
    for ok in ["3*8", "8*3", "(8)*3", "3 * 8 = 24", "24 = 3*8", "Answer: 3x8", "\\boxed{3 \\times 8}"]:
        assert cd.verify(p, ok) == 1.0, ok
    for bad in ["24", "3*8*1", "8*8-40", "3*8+2-2", "2*2*6", "3*8+", "eval('24')", "3+8=11, 3*8=24", "(3*8"]:
        assert cd.verify(p, bad) == 0.0, bad
    assert cd.verify(cd.make((2, 4, 5), 18), "(5+4)*2") == 1.0
    assert evaluate("2*(3+4)-1") == (13, [2, 3, 4, 1])
    assert evaluate("2**3") is None and evaluate("-3") is None and evaluate("(" * 60 + "1" + ")" * 60) is None
    assert check("2+2", [2, 2, 5], 4) and not check("2+2", [2, 5], 4)


def test_countdown_prompt_roundtrip_and_search():
    cd = get_family("countdown")
    p = cd.generate(1, seed=5, difficulty=2)[0]
    q = cd.parse_prompt("Please solve: " + p.prompt)
    assert q is not None and q.meta["target"] == p.meta["target"] and q.answer == ""
    assert cd.verify(q, cd.solution(q)) == 1.0  # solution found by search


@pytest.mark.parametrize("name", NAMES)
def test_parse_prompt_roundtrip(name):
    fam = get_family(name)
    for p in fam.generate(10, seed=7, difficulty=2):
        q = fam.parse_prompt(p.prompt)
        assert q is not None and q.prompt == p.prompt and q.id == p.id and q.split == p.split
        assert fam.verify(q, fam.solution(p)) == 1.0
    assert fam.parse_prompt("hello there") is None and fam.parse_prompt(None) is None


junk = st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=100), st.integers(),
                 st.lists(st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"]),
                                                 "content": st.text(max_size=50)}), max_size=3),
                 st.text(alphabet="0123456789+-*()=., \n{}\\boxed#answerAnswer:is", max_size=200))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(completion=junk, name=st.sampled_from(NAMES))
def test_fuzz_verifiers_never_raise(completion, name):
    fam = get_family(name)
    p = fam.generate(1, seed=0, difficulty=1)[0]
    r = fam.verify(p, completion)
    assert isinstance(r, float) and 0.0 <= r <= 1.0
    got = fam.extract_answer(completion)
    assert got is None or isinstance(got, str)


def test_long_and_adversarial_inputs_are_fast_and_safe():
    add = get_family("add")
    p = add.make(12, 35)
    assert add.verify(p, "1" * 1_000_000) == 0.0
    assert add.verify(p, "answer " * 100_000 + "is 47") == 1.0  # the tail is examined
    assert add.verify(p, "\\boxed{" * 50_000) == 0.0
    assert add.verify(p, "9" * 5000) == 0.0  # more digits than int->str allows by default
    assert get_family("countdown").verify(get_family("countdown").make((2, 3, 8), 24), "(" * 100_000) == 0.0


# ---- JSONL user tasks ----------------------------------------------------------------------------------
def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_tasks_load_split_and_verify(tmp_path):
    rows = [json.dumps({"prompt": f"capital of country {i}?", "answer": f"City {i}"}) for i in range(60)]
    fam = load_jsonl_tasks(_write(tmp_path / "caps.jsonl", rows + [""]), verifier="exact")
    assert fam.name == "caps" and len(fam.problems) == 60
    train, test = fam.generate(200, seed=0, split="train"), fam.generate(50, seed=0, split="test")
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test}) and test
    p = test[0]
    assert fam.verify(p, p.answer) == 1.0 and fam.verify(p, f"The answer is {p.answer}.") == 1.0
    assert fam.verify(p, "City -1") == 0.0 and fam.verify(p, p.answer.lower()) == 0.0
    assert fam.verify(p, fam.perturb_answer(p, random.Random(0))) == 0.0
    assert fam.generate(5, seed=1) == fam.generate(5, seed=1)


def test_jsonl_numeric_and_explicit_split(tmp_path):
    rows = [json.dumps({"prompt": "2+2?", "answer": 4, "id": "a", "split": "test"}),
            json.dumps({"prompt": "3+3?", "answer": "6", "split": "train"})]
    fam = load_jsonl_tasks(_write(tmp_path / "n.jsonl", rows), verifier="numeric")
    (p,) = fam.generate(1, seed=0, split="test")
    assert p.id == "a" and fam.verify(p, "4.0") == 1.0 and fam.verify(p, "Answer: 5") == 0.0


@pytest.mark.parametrize("line, needle", [
    ("{not json", "bad.jsonl:2"), ('{"answer": "1"}', "field 'prompt'"), ('["a"]', "JSON object"),
    ('{"prompt": "p", "answer": ""}', "field 'answer'"), ('{"prompt": "p", "answer": [1]}', "field 'answer'"),
    ('{"prompt": "p", "answer": "x", "split": "dev"}', "field 'split'"),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path, line, needle):
    path = _write(tmp_path / "bad.jsonl", ['{"prompt": "p0", "answer": "1"}', line])
    with pytest.raises(CeilingError) as err:
        load_jsonl_tasks(path)
    assert needle in str(err.value) and "bad.jsonl:2" in str(err.value) and "\n" not in str(err.value)


def test_jsonl_numeric_rejects_non_numbers_and_missing_file(tmp_path):
    path = _write(tmp_path / "t.jsonl", ['{"prompt": "p", "answer": "seven"}'])
    with pytest.raises(CeilingError, match="t.jsonl:1"):
        load_jsonl_tasks(path, verifier="numeric")
    with pytest.raises(CeilingError, match="cannot read"):
        load_jsonl_tasks(tmp_path / "missing.jsonl")


# ---- TaskSet ---------------------------------------------------------------------------------------------
def test_presets_and_parse_roundtrip():
    for name in PRESETS:
        ts = TaskSet.preset(name)
        assert TaskSet.parse(name) == ts == TaskSet.from_dict(json.loads(json.dumps(ts.to_dict())))
    ts = TaskSet.parse("verified=add,sub;unverified=mul:2,sort;difficulty=1")
    assert ts.names("verified") == ["add", "sub"] and ts.names("unverified") == ["mul", "sort"]
    assert ts.difficulties == {"add": 1, "sub": 1, "mul": 2, "sort": 1}
    assert TaskSet.from_dict(ts.to_dict()) == ts
    d = TaskSet.preset("default")
    assert set(d.names("verified")) == {"add", "sub"} and {"mul", "sort"} <= set(d.names("unverified"))
    assert TaskSet.parse("preset=default;difficulty=2").difficulties["mul"] == 2


@pytest.mark.parametrize("spec, needle", [("nosuch", "unknown preset"), ("verified=add;colour=red", "colour"),
                                          ("verified=foo", "unknown task family"), ("difficulty=x", "difficulty"),
                                          ("verified=add;unverified=add", "twice"), ("preset=zzz", "preset")])
def test_parse_errors(spec, needle):
    with pytest.raises(CeilingError, match=needle):
        TaskSet.parse(spec)


def test_sample_and_verify():
    ts = TaskSet.preset("default")
    a = ts.sample(30, seed=0, split="test")
    assert a == ts.sample(30, seed=0, split="test") and len(a) == 30
    assert {p.family for p in a} == {"add", "sub"} and all(p.split == "test" for p in a)
    u = ts.sample(8, seed=0, which="unverified")
    assert {p.family for p in u} == {"mul", "mod", "sort", "parity"}
    assert len(ts.sample(13, seed=0, which="all")) == 13
    for p in a + u:
        fam = get_family(p.family)
        assert ts.verify(p, fam.solution(p)) == 1.0
        assert ts.verify(p, fam.perturb_answer(p, random.Random(1))) == 0.0
    assert ts.verify(Problem("nope", "x=", "1", 1, "train", "nope/x"), "1") == 0.0


def test_taskset_with_jsonl(tmp_path):
    path = _write(tmp_path / "user.jsonl", [json.dumps({"prompt": f"q{i}", "answer": str(i)}) for i in range(40)])
    ts = TaskSet.parse(f"verified={path},add;verifier=numeric")
    assert ts.names("verified") == ["user", "add"]
    rec = json.loads(json.dumps(ts.to_dict()))
    assert rec["jsonl"]["user"]["verifier"] == "numeric" and TaskSet.from_dict(rec) == ts
    assert TaskSet.parse(str(path)).names() == ["user"]


# ---- TRL reward functions ----------------------------------------------------------------------------------
def test_trl_reward_fn_signature_and_formats():
    fn = trl_reward_fn(TaskSet.preset("default"))
    assert fn.__name__ == "ceiling_default"
    prompts = ["12+35=", "12+35=", [{"role": "user", "content": "47-12="}], "7*12=", "hello"]
    completions = ["47", "46", [{"role": "assistant", "content": "The answer is 35."}], "84", "1"]
    assert fn(prompts, completions) == [1.0, 0.0, 1.0, 0.0, 0.0]  # mul is unverified: never rewarded
    measure = trl_reward_fn("default", which="all", name="all_tasks")
    assert measure.__name__ == "all_tasks" and measure(["7*12="], ["84"]) == [1.0]
    assert fn(["hello", "what is 2+2?"], ["5", "4"], answer=["5", "4"]) == [1.0, 1.0]  # answer column
    assert fn(["hi"], ["Paris"], answer=["Paris"]) == [1.0]
    assert fn(["12+35="], [None]) == [0.0]
    assert fn(["12+35="], ["48"], answer=["48"], family=["add"]) == [1.0]  # the column is the reference
    assert trl_reward_fn(get_family("countdown"))(["24 from 2 3 8="], ["3*8"]) == [1.0]


# ---- hooks for other stages --------------------------------------------------------------------------------
def test_subspace_labels_partition_each_family():
    add = get_family("add")
    assert add.subspace(add.make(12, 35)) == "carries=0" and add.subspace(add.make(99, 1)) == "carries=2"
    assert get_family("sub").subspace(get_family("sub").make(12, 35)) == "negative"
    for name in NAMES:
        fam = get_family(name)
        labels = {fam.subspace(p) for p in fam.generate(300, seed=0)}
        assert 2 <= len(labels) <= 20, (name, labels)


def test_problem_record_roundtrip_and_numpy_difficulty():
    np = pytest.importorskip("numpy")
    for name in NAMES:
        fam = get_family(name)
        (p,) = fam.generate(1, seed=np.int64(3), difficulty=np.int64(2))
        q = Problem.from_dict(json.loads(json.dumps(p.to_dict())))
        assert q == p and fam.verify(q, fam.solution(p)) == 1.0
    with pytest.raises(CeilingError):
        get_family("add").generate(1, seed=0, difficulty=True)


def test_unique_sampling_and_prefix_stability():
    par = get_family("parity")
    few = par.generate(50, seed=0, split="test", unique=True)
    assert len({p.id for p in few}) == 50
    assert par.generate(80, seed=0, split="test", unique=True)[:50] == few
    with pytest.raises(CeilingError, match="too small"):
        par.generate(150, seed=0, split="test", unique=True)  # 4-8 bits: about 100 test strings
    u = TaskSet.preset("default").sample(40, seed=0, split="test", unique=True)
    assert len({p.id for p in u}) == 40


@settings(max_examples=60, deadline=None, derandomize=True)
@given(prompts=st.lists(st.one_of(st.sampled_from(["12+35=", "sort 321=", "24 from 2 3 8="]), junk), max_size=4),
       completions=st.lists(junk, min_size=4, max_size=4), answers=st.lists(junk, min_size=4, max_size=4))
def test_fuzz_trl_reward_never_raises(prompts, completions, answers):
    fn = trl_reward_fn("all")
    for out in (fn(prompts, completions), fn(prompts, completions, answer=answers, family=answers)):
        assert len(out) == len(prompts) and all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in out)


def test_jsonl_split_all_and_empty_split_error(tmp_path):
    path = _write(tmp_path / "one.jsonl", [json.dumps({"prompt": "q", "answer": "a", "split": "train"})])
    with pytest.raises(CeilingError, match="no test problems"):
        load_jsonl_tasks(path).generate(1, seed=0, split="test")
    both = load_jsonl_tasks(path, split="all")
    (p,) = both.generate(1, seed=0, split="test")
    assert p.split == "test" and both.verify(p, "a") == 1.0
    with pytest.raises(CeilingError, match="only 1 distinct"):
        both.generate(2, seed=0, unique=True)
