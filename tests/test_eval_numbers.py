"""Every number of eval.csv against a value computed by hand, on models whose samples and log-probs we choose.

The models are character bigram models (the next-token distribution depends only on the current token, a
table written below), so the log-prob and the full-vocabulary entropy of any completion are sums of table
entries. The completions are chosen per prompt through the evaluator's `sampler` argument (a scripted
sampler in place of `ceiling.models.sample`); everything downstream (scoring, verification, pass@k,
diversity, entropy, KL, NLL, bootstrap and t intervals, the frame) is the real evaluator. Each expected value
is computed here from the chosen texts and the tables, with the textbook formula, never by the evaluator's
own functions. Bootstrap intervals are checked against the exact bootstrap distribution, enumerated.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats as sps

from ceiling.evaluate import EvalConfig, evaluate_checkpoints
from ceiling.models import LoadedModel, Rollout, build_char_tokenizer
from ceiling.tasks import TaskSet

TOK = build_char_tokenizer()
V = len(TOK.get_vocab())
EOS = TOK.eos_token_id
DIGITS = [TOK.convert_tokens_to_ids(str(d)) for d in range(10)]
X_ID = TOK.convert_tokens_to_ids("x")
CUE = TOK.convert_tokens_to_ids("=")  # every prompt of the smoke families ends with "="
N_SAMPLES, SCORED, N_PROMPTS, N_BOOT = 4, 3, 3, 2000
STEP, COMPUTE = 7, 3.5e12


# ------------------------------------------------------------------------------------ the bigram models
def _table(first: dict[int, float], later: dict[int, float]) -> np.ndarray:
    """[V, V] next-token probabilities: row CUE is `first`, rows of digits and "x" are `later`, others uniform."""
    p = np.full((V, V), 1.0 / V)
    for prev, dist in [(CUE, first)] + [(d, later) for d in DIGITS + [X_ID]]:
        p[prev] = 0.0
        for tok, w in dist.items():
            p[prev, tok] = w
        p[prev] /= p[prev].sum()
    return p


POLICY = _table({**{d: i + 1.0 for i, d in enumerate(DIGITS)}, X_ID: 5.0, EOS: 5.0},
                {**{d: 0.05 for d in DIGITS}, X_ID: 0.1, EOS: 0.4})
BASE = _table({**{d: 1.0 for d in DIGITS}, X_ID: 1.0, EOS: 1.0},
              {**{d: 0.02 for d in DIGITS}, X_ID: 0.1, EOS: 0.7})


class _Decoder(torch.nn.Module):
    def __init__(self, embed: torch.nn.Embedding):
        super().__init__()
        self.embed = embed

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return SimpleNamespace(last_hidden_state=self.embed(input_ids))


class Bigram(torch.nn.Module):
    """hidden = one-hot of the current token; head weight = log of the table, so logits = log p(. | token).

    `samples[prompt]` / `greedy[prompt]` are the completions the scripted sampler returns for it."""

    def __init__(self, probs: np.ndarray, samples: dict[str, list[str]], greedy: dict[str, str]):
        super().__init__()
        embed = torch.nn.Embedding(V, V)
        embed.weight.data = torch.eye(V)
        self.head = torch.nn.Linear(V, V, bias=False)
        # zero probabilities as -1e4 (exp underflows to 0 in float32; -inf would give 0 * -inf = NaN)
        self.head.weight.data = torch.tensor(np.log(np.maximum(probs, 1e-300)).clip(min=-1e4).T, dtype=torch.float32)
        self.decoder = _Decoder(embed)
        self.config = SimpleNamespace(model_type="bigram", hidden_size=V, vocab_size=V)
        self.samples, self.greedy = samples, greedy

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head


SEEN_PROMPTS: list[str] = []
TIMINGS: dict[str, float] = {}
SEEN_SETTINGS: set[tuple] = set()


def scripted_sample(model, tokenizer, prompts, n_per_prompt=1, max_new_tokens=64, temperature=1.0, top_p=1.0,
                    generator=None) -> Rollout:
    """`ceiling.models.sample`'s contract, with the model's chosen completions instead of random draws."""
    raw = [p.removeprefix(tokenizer.bos_token) for p in prompts]
    SEEN_PROMPTS.extend(raw)
    SEEN_SETTINGS.add((temperature, top_p, max_new_tokens))
    texts = [t for r in raw for t in ([model.greedy[r]] if temperature == 0 else model.samples[r])]
    assert len(texts) == len(prompts) * n_per_prompt
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    comp = [tokenizer(t, add_special_tokens=False)["input_ids"] + [EOS] for t in texts]
    width_p, width_c = max(map(len, enc)), max(map(len, comp))
    ids = torch.zeros((len(texts), width_p + width_c), dtype=torch.long)
    att = torch.zeros_like(ids)
    for row, text_ids in enumerate(comp):
        p = enc[row // n_per_prompt]
        ids[row, width_p - len(p):width_p] = torch.tensor(p)  # prompt left-padded
        att[row, width_p - len(p):width_p] = 1
        ids[row, width_p:width_p + len(text_ids)] = torch.tensor(text_ids)
        att[row, width_p:width_p + len(text_ids)] = 1
    return Rollout(input_ids=ids, attention_mask=att, prompt_len=width_p, completion_ids=ids[:, width_p:],
                   completion_mask=att[:, width_p:], lengths=att[:, width_p:].sum(1),
                   truncated=torch.zeros(len(texts), dtype=torch.bool), texts=texts,
                   group=torch.arange(len(prompts)).repeat_interleave(n_per_prompt), prompts=list(prompts))


# ------------------------------------------------------------------------------------ the chosen completions
# per prompt (3 add prompts, then 3 mul prompts): A = the answer, W = a wrong number, X = "x" (no answer),
# E = "" (EOS at once). Correct counts: policy add 4, 0, 1; mul 3, 0, 2. Base add 2, 1, 1; mul 1, 1, 0.
POLICY_CODES = ["AAAA", "WXWE", "WAXW", "AAWA", "WEWW", "AXXA"]
BASE_CODES = ["AWAX", "WWAE", "XWWA", "WAXW", "AWWE", "WWWW"]
POLICY_GREEDY, BASE_GREEDY = "AWAAXW", "WWAXAA"


def _text(code: str, answer: str) -> str:
    return {"A": answer, "W": str(int(answer) + 1), "X": "x", "E": ""}[code]


def _ids(text: str) -> list[int]:
    return TOK(text, add_special_tokens=False)["input_ids"] + [EOS]


def _logp(table: np.ndarray, text: str) -> float:
    toks = _ids(text)
    return float(sum(np.log(table[prev, tok]) for prev, tok in zip([CUE] + toks[:-1], toks)))


def _entropy_sum(table: np.ndarray, text: str) -> float:
    toks = _ids(text)
    rows = table[[CUE] + toks[:-1]]
    return float(-(np.where(rows > 0, rows * np.log(np.where(rows > 0, rows, 1)), 0.0)).sum())


def _pass_at_k(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _compositions(m: int):
    """All bootstrap count vectors of m problems with their multinomial probabilities."""
    for cut in itertools.combinations(range(2 * m - 1), m - 1):
        counts = np.diff([-1, *cut, 2 * m - 1]) - 1
        prob = math.factorial(m) / np.prod([math.factorial(int(c)) for c in counts]) / m**m
        yield counts.astype(float), prob


def _check_bootstrap(stat, m: int, lo: float, hi: float, level: float = 0.95, tol: float = 0.012,
                     rtol: float = 1e-9) -> None:
    """`lo`/`hi` are the percentile interval of `stat(counts)` over the exact bootstrap distribution (within
    the sampling error of N_BOOT resamples): atoms of the distribution at the right cumulative probability.
    `rtol`: how close a bound must be to an atom (model log-probs are float32)."""
    vals, probs = zip(*[(stat(c), p) for c, p in _compositions(m)])
    vals, probs = np.array(vals), np.array(probs)
    assert probs.sum() == pytest.approx(1.0)
    a = (1 - level) / 2
    for bound, q in ((lo, a), (hi, 1 - a)):
        same = np.isclose(vals, bound, rtol=rtol, atol=1e-12)
        assert same.any(), (bound, np.unique(vals))
        below = probs[(vals < bound) & ~same].sum()  # mass strictly below the bound
        at_or_below = below + probs[same].sum()
        assert below <= q + tol and at_or_below >= q - tol, (bound, q, below, at_or_below)


# ------------------------------------------------------------------------------------ the evaluation
@pytest.fixture  # per test (cheap): mutation testing attributes a fixture's calls to each test using it
def evaluated():
    taskset = TaskSet.preset("smoke")
    cfg = EvalConfig(n_samples=N_SAMPLES, score_samples=SCORED, n_prompts=N_PROMPTS, n_boot=N_BOOT,
                     nll_documents=0, max_new_tokens=8, batch_size=2 * N_SAMPLES, seed=3)
    problems = [*taskset.family("add").generate(N_PROMPTS, seed=3, split="test"),
                *taskset.family("mul").generate(N_PROMPTS, seed=3, split="test")]

    def script(codes, greedy):
        return ({p.prompt: [_text(c, p.answer) for c in cs] for p, cs in zip(problems, codes)},
                {p.prompt: _text(g, p.answer) for p, g in zip(problems, greedy)})

    policy = LoadedModel(Bigram(POLICY, *script(POLICY_CODES, POLICY_GREEDY)), TOK, "policy", "policy", False,
                         Path("policy"))
    base = LoadedModel(Bigram(BASE, *script(BASE_CODES, BASE_GREEDY)), TOK, "base", "base", False, Path("base"))
    SEEN_PROMPTS.clear()
    TIMINGS.clear()
    frame = evaluate_checkpoints(base, [policy], cfg, run="r", taskset=taskset, steps=[STEP],
                                 compute={0: 0.0, STEP: COMPUTE}, sampler=scripted_sample, timings=TIMINGS)
    return frame, problems, taskset


def _rows(frame, step: int, metric: str, family: str, k: float | None = None):
    sel = frame[(frame.step == step) & (frame.metric == metric) & (frame.family == family)]
    sel = sel[sel.k.isna()] if k is None else sel[sel.k == k]
    assert len(sel) == 1, (step, metric, family, k, len(sel))
    return sel.iloc[0]


def _per_prompt(codes: list[str], problems) -> list[list[str]]:
    return [[_text(c, p.answer) for c in cs] for p, cs in zip(problems, codes)]


def test_evaluation_prompts_are_the_test_split(evaluated):
    frame, problems, taskset = evaluated
    assert SEEN_PROMPTS, "the sampler was not used"
    assert set(SEEN_PROMPTS) == {p.prompt for p in problems}
    for prompt in SEEN_PROMPTS:
        found = taskset.find(prompt)
        assert found is not None and found.split == "test", prompt


def test_task_rows_by_hand(evaluated):
    """Reward, greedy accuracy, pass@k, diversity and crossover of every group at both steps."""
    frame, problems, _ = evaluated
    fams = {"add": [0, 1, 2], "mul": [3, 4, 5]}
    groups = {"verified": ("verified", fams["add"]), "add": ("verified", fams["add"]),
              "unverified": ("unverified", fams["mul"]), "mul": ("unverified", fams["mul"])}
    ks = [1, 2, 4]
    curves: dict[tuple[int, str], np.ndarray] = {}
    for step, codes, greedy in ((0, BASE_CODES, BASE_GREEDY), (STEP, POLICY_CODES, POLICY_GREEDY)):
        texts = _per_prompt(codes, problems)
        correct = [[float(t == p.answer) for t in ts] for ts, p in zip(texts, problems)]
        greedy_ok = [float(_text(g, p.answer) == p.answer) for g, p in zip(greedy, problems)]
        for family, (ns, idx) in groups.items():
            score = "verified/reward" if ns == "verified" else "unverified/score"
            reward = [np.mean(correct[i]) for i in idx]
            row = _rows(frame, step, score, family)
            assert row.value == pytest.approx(np.mean(reward), abs=1e-12)
            assert row.n == 3 and row.compute == (COMPUTE if step else 0.0)
            _check_bootstrap(lambda c: float(c @ reward) / 3, 3, row.ci_low, row.ci_high)
            row = _rows(frame, step, f"{ns}/greedy_acc", family)
            assert row.value == pytest.approx(np.mean([greedy_ok[i] for i in idx]), abs=1e-12)
            table = np.array([[_pass_at_k(N_SAMPLES, int(sum(correct[i])), k) for k in ks] for i in idx])
            for j, k in enumerate(ks):
                row = _rows(frame, step, f"{ns}/pass@k", family, k)
                assert row.value == pytest.approx(table[:, j].mean(), abs=1e-12), (step, family, k)
                _check_bootstrap(lambda c, j=j: float(c @ table[:, j]) / 3, 3, row.ci_low, row.ci_high)
            curves[(step, family)] = table
        for family, idx in {**{k: v[1] for k, v in groups.items()}, "all": list(range(6))}.items():
            answers = [[t if t.isdigit() else None for t in texts[i]] for i in idx]
            distinct = [len({a for a in ans if a is not None}) for ans in answers]
            dup = [sum(c for c in Counter(texts[i]).values() if c > 1) / N_SAMPLES for i in idx]
            bigrams = []
            for i in idx:
                grams = [tuple(ids[j:j + 2]) for ids in map(_ids, texts[i]) for j in range(len(ids) - 1)]
                bigrams.append(len(set(grams)) / len(grams))
            m = len(idx)
            for metric, values in (("diversity/distinct_answers", distinct), ("diversity/duplicate_share", dup),
                                   ("diversity/distinct_2", bigrams)):
                row = _rows(frame, step, metric, family)
                assert row.value == pytest.approx(np.mean(values), abs=1e-12), (step, metric, family)
                assert row.n == m
                _check_bootstrap(lambda c, v=np.array(values, float), m=m: float(c @ v) / m, m, row.ci_low,
                                 row.ci_high)
    # crossover: the smallest k where the base's pass@k reaches the policy's, interpolated in log2 k
    expected = {"verified": 2 ** (3 / 7), "add": 2 ** (3 / 7), "unverified": 4.0, "mul": 4.0}
    for family, k_star in expected.items():
        pol, base = curves[(STEP, family)].mean(0), curves[(0, family)].mean(0)
        d = pol - base
        first = int(np.argmax(d <= 0))
        assert d[0] > 0 and d[first] <= 0  # the hand value below follows from these curves
        t = d[first - 1] / (d[first - 1] - d[first])
        assert k_star == pytest.approx(2 ** (np.log2(ks[first - 1]) + t * (np.log2(ks[first]) - np.log2(ks[first - 1]))))
        row = _rows(frame, STEP, "crossover/k", family)
        assert row.value == pytest.approx(k_star, rel=1e-12)
        assert row.ci_low <= row.value <= row.ci_high
    assert not ((frame.step == 0) & (frame.metric == "crossover/k")).any()  # the base has nothing to cross


def test_policy_rows_by_hand(evaluated):
    """Token entropy (a token mean over the first SCORED samples), length, KL both ways, NLL."""
    frame, problems, _ = evaluated
    pol_texts, base_texts = _per_prompt(POLICY_CODES, problems), _per_prompt(BASE_CODES, problems)
    for step, table, texts in ((0, BASE, base_texts), (STEP, POLICY, pol_texts)):
        ent = np.array([sum(_entropy_sum(table, t) for t in ts[:SCORED]) for ts in texts])
        tok = np.array([sum(len(_ids(t)) for t in ts[:SCORED]) for ts in texts], float)
        row = _rows(frame, step, "policy/entropy", "all")
        assert row.value == pytest.approx(ent.sum() / tok.sum(), rel=1e-5)  # float32 log-softmax
        per_sequence = np.mean([_entropy_sum(table, t) / len(_ids(t)) for ts in texts for t in ts[:SCORED]])
        assert abs(per_sequence - row.value) > 1e-2  # the token mean is not a mean of sequence means here
        _check_bootstrap(lambda c: float(c @ ent) / float(c @ tok), 6, row.ci_low, row.ci_high, rtol=1e-5)
        # each family set and family: the token mean pooled over its own prompts (add: 0-2, mul: 3-5)
        by_set = {}
        for family, sel in (("verified", slice(0, 3)), ("add", slice(0, 3)), ("unverified", slice(3, 6)),
                            ("mul", slice(3, 6))):
            e, t = ent[sel], tok[sel]
            row = _rows(frame, step, "policy/entropy", family)
            assert row.value == pytest.approx(e.sum() / t.sum(), rel=1e-5), (step, family)
            _check_bootstrap(lambda c, e=e, t=t: float(c @ e) / float(c @ t), 3, row.ci_low, row.ci_high, rtol=1e-5)
            by_set[family] = row.value
        assert abs(by_set["verified"] - by_set["unverified"]) > 1e-2  # the sets differ: mixing them would show
        lengths = np.array([[len(_ids(t)) for t in ts] for ts in texts], float)
        row = _rows(frame, step, "length/mean", "all")
        assert row.value == pytest.approx(lengths.mean(), abs=1e-12)
        # unverified/nll without pretraining documents: the base's scored samples under the evaluated model
        nll = np.array([-sum(_logp(table, t) for t in ts[:SCORED]) for ts in base_texts])
        btok = np.array([sum(len(_ids(t)) for t in ts[:SCORED]) for ts in base_texts], float)
        row = _rows(frame, step, "unverified/nll", "unverified")
        assert row.value == pytest.approx(nll.sum() / btok.sum(), rel=1e-5)
        _check_bootstrap(lambda c: float(c @ nll) / float(c @ btok), 6, row.ci_low, row.ci_high, rtol=1e-5)
    for name in ("policy_base_k1", "policy_base_k3", "base_policy_k1", "base_policy_k3"):
        row = _rows(frame, 0, f"kl/{name}", "all")
        assert (row.value, row.ci_low, row.ci_high, row.n) == (0.0, 0.0, 0.0, 6)
    for name, sampler, other, texts in (("policy_base", POLICY, BASE, pol_texts),
                                        ("base_policy", BASE, POLICY, base_texts)):
        for est in ("k1", "k3"):
            per_prompt = []
            for ts in texts:
                seq = []
                for t in ts[:SCORED]:
                    toks = _ids(t)
                    prevs = [CUE] + toks[:-1]
                    r = np.array([np.log(other[a, b]) - np.log(sampler[a, b]) for a, b in zip(prevs, toks)])
                    seq.append(float(-r.sum()) if est == "k1" else float((np.exp(r) - 1 - r).sum()))
                per_prompt.append(np.mean(seq))
            mean, sd = np.mean(per_prompt), np.std(per_prompt, ddof=1)
            half = sps.t.ppf(0.975, 5) * sd / np.sqrt(6)
            row = _rows(frame, STEP, f"kl/{name}_{est}", "all")
            assert row.value == pytest.approx(mean, abs=1e-5), (name, est)
            assert (row.ci_low, row.ci_high) == (pytest.approx(mean - half, abs=1e-5), pytest.approx(mean + half, abs=1e-5))
            assert row.n == 6


def test_frame_has_exactly_the_expected_rows(evaluated):
    frame, _, _ = evaluated
    per_group = {"verified/reward", "verified/greedy_acc", "crossover/k", "diversity/distinct_answers",
                 "diversity/distinct_2", "diversity/duplicate_share"}
    expected = set()
    for step in (0, STEP):
        for family, ns in (("verified", "verified"), ("add", "verified"), ("unverified", "unverified"),
                           ("mul", "unverified")):
            score = "verified/reward" if ns == "verified" else "unverified/score"
            expected |= {(step, score, family, -1.0), (step, f"{ns}/greedy_acc", family, -1.0)}
            expected |= {(step, f"{ns}/pass@k", family, float(k)) for k in (1, 2, 4)}
            if step:
                expected.add((step, "crossover/k", family, -1.0))
        for family in ("verified", "add", "unverified", "mul", "all"):
            expected |= {(step, m, family, -1.0) for m in per_group if m.startswith("diversity/")}
        expected |= {(step, "policy/entropy", family, -1.0) for family in ("verified", "add", "unverified", "mul", "all")}
        expected |= {(step, m, "all", -1.0) for m in ("length/mean", "kl/policy_base_k1",
                                                       "kl/policy_base_k3", "kl/base_policy_k1", "kl/base_policy_k3")}
        expected.add((step, "unverified/nll", "unverified", -1.0))
    got = {(int(r.step), r.metric, r.family, -1.0 if np.isnan(r.k) else float(r.k)) for r in frame.itertuples()}
    assert got == expected
    assert set(frame.run) == {"r"} and frame.groupby(["step", "metric", "family", "k"], dropna=False).size().max() == 1


def test_pass_at_k_by_hand_and_refuses_impossible_arguments():
    from ceiling.stats import pass_at_k

    for n, c, k in ((4, 2, 0), (4, 2, 5), ([4, 3], [1, 1], 4)):
        with pytest.raises(ValueError, match=r"^pass@k needs 1 <= k <= n \(k=\d+, min n=\d+\)$"):
            pass_at_k(n, c, k)
    for c in (-1, 5):
        with pytest.raises(ValueError, match=r"^pass@k needs 0 <= c <= n$"):
            pass_at_k(4, c, 1)
    got = pass_at_k([4, 4, 4, 10], [0, 3, 4, 2], 3)
    np.testing.assert_array_equal(got[:3], [0.0, 1.0, 1.0])  # n - c < k: every 3 of 4 hold a correct one
    assert got[3] == pytest.approx(1 - math.comb(8, 3) / math.comb(10, 3), abs=1e-15)


def test_rows_say_how_they_were_estimated_and_every_stage_is_timed(evaluated):
    frame, _, _ = evaluated
    assert frame["estimator"].map(lambda e: isinstance(e, str) and len(e) > 10).all()
    assert set(TIMINGS) == {"load", "generate", "score", "verify", "greedy", "measures", "kl", "nll"}
    assert all(v >= 0 for v in TIMINGS.values())


def test_t_interval_edges_and_eval_record_by_hand():
    from ceiling.evaluate import estimators as es
    from ceiling.evaluate.evaluator import eval_record

    empty, one = es.t_interval(np.array([])), es.t_interval(np.array([0.3]))
    assert np.isnan([empty.value, empty.ci_low, empty.ci_high]).all() and empty.n == 0
    assert one.value == 0.3 and np.isnan([one.ci_low, one.ci_high]).all() and one.n == 1
    cfg = EvalConfig(n_samples=8, n_prompts=3, temperature=0.7, top_p=0.9, max_new_tokens=5)
    rec = eval_record(TaskSet.preset("smoke"), cfg)
    assert rec == {"prompts": 6, "prompts_per_family": {"add": 3, "mul": 3}, "verified": ["add"],
                   "unverified": ["mul"], "samples_per_prompt": 8, "temperature": 0.7, "top_p": 0.9,
                   "max_new_tokens": 5, "ks": [1, 2, 4, 8], "split": "test"}


def test_sampler_gets_the_configured_settings_and_edge_settings():
    from ceiling.evaluate import estimators as es

    taskset = TaskSet.preset("smoke")
    problems = [*taskset.family("add").generate(1, seed=0, split="test"),
                *taskset.family("mul").generate(1, seed=0, split="test")]
    script = ({p.prompt: [p.answer, "x"] for p in problems}, {p.prompt: p.answer for p in problems})
    model = LoadedModel(Bigram(POLICY, *script), TOK, "m", "m", False, Path("m"))
    SEEN_SETTINGS.clear()
    cfg = EvalConfig(n_samples=2, n_prompts=1, n_boot=10, nll_documents=0, temperature=0.5, top_p=0.9,
                     max_new_tokens=6)
    evaluate_checkpoints(model, [], cfg, taskset=taskset, sampler=scripted_sample)
    assert SEEN_SETTINGS == {(0.5, 0.9, 6), (0.0, 1.0, 6)}  # the samples, and greedy decoding
    with pytest.raises(Exception, match="n_boot"):
        EvalConfig(n_boot=9)
    assert EvalConfig(n_boot=10).n_boot == 10
    assert es.bootstrap_weights(0, 5, np.random.default_rng(0)).shape == (5, 0)
