"""Tests of the evaluator: pure statistics first, then the model-based measures on tiny models."""
from __future__ import annotations

import dataclasses
import itertools
import pathlib
import math

import numpy as np
import pytest

from ceiling.evaluate import diversity as dv
from ceiling.evaluate import estimators as es


# ---------------------------------------------------------------- pass@k
def _pass_at_k_brute(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c of them correct) that contain a correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_subset_enumeration(n):
    ks = es.k_grid(n)
    c = np.arange(n + 1)
    table = es.pass_at_k_table(n, c, ks)
    for ci in range(n + 1):
        for j, k in enumerate(ks):
            assert table[ci, j] == pytest.approx(_pass_at_k_brute(n, ci, k), abs=1e-12)


def test_k_grid():
    assert es.k_grid(1) == [1]
    assert es.k_grid(64) == [1, 2, 4, 8, 16, 32, 64]
    assert es.k_grid(48) == [1, 2, 4, 8, 16, 32, 48]


# ---------------------------------------------------------------- intervals
def test_bootstrap_mean_interval_covers_and_is_seeded():
    rng = np.random.default_rng(0)
    values = rng.random((200, 3))
    w1 = es.bootstrap_weights(200, 400, np.random.default_rng(5))
    w2 = es.bootstrap_weights(200, 400, np.random.default_rng(5))
    assert np.array_equal(w1, w2) and np.all(w1.sum(axis=1) == 200)
    ests = es.mean_ci(values, w1)
    for j, e in enumerate(ests):
        assert e.value == pytest.approx(values[:, j].mean())
        assert e.ci_low < e.value < e.ci_high
        # the bootstrap standard error is close to the analytic one
        se = values[:, j].std(ddof=1) / math.sqrt(200)
        assert (e.ci_high - e.ci_low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.2)


def test_ratio_interval_is_token_weighted():
    num = np.array([10.0, 0.0, 0.0])
    den = np.array([10.0, 5.0, 5.0])
    e = es.ratio_ci(num, den, es.bootstrap_weights(3, 200, np.random.default_rng(0)))
    assert e.value == pytest.approx(0.5)
    assert 0.0 <= e.ci_low <= e.value <= e.ci_high <= 1.0


def test_t_interval_zero_width_on_constant_values():
    e = es.t_interval(np.zeros(10))
    assert (e.value, e.ci_low, e.ci_high) == (0.0, 0.0, 0.0)
    e = es.t_interval(np.array([1.0, 2.0, 3.0]))
    assert e.value == 2.0 and e.ci_low < 2.0 < e.ci_high


# ---------------------------------------------------------------- crossover
def test_crossover_on_constructed_curves():
    ks = [1, 2, 4, 8, 16]
    policy = np.array([0.6, 0.65, 0.7, 0.72, 0.74])
    base = np.array([0.3, 0.45, 0.6, 0.72, 0.85])  # catches up exactly at k = 8
    assert es.crossover_k(ks, policy, base)[0] == pytest.approx(8.0)
    base2 = np.array([0.3, 0.45, 0.6, 0.70, 0.78])  # between 8 (d=0.02) and 16 (d=-0.04): log2 k = 3 + 1/3
    assert es.crossover_k(ks, policy, base2)[0] == pytest.approx(2 ** (3 + 1 / 3))
    assert es.crossover_k(ks, policy, policy - 0.01)[0] == math.inf  # policy leads everywhere
    assert es.crossover_k(ks, policy, policy + 0.01)[0] == 1.0  # base never behind
    both = es.crossover_k(ks, np.stack([policy, policy]), np.stack([base, policy - 0.01]))
    assert both[0] == pytest.approx(8.0) and both[1] == math.inf


def test_crossover_interval_from_problem_tables():
    ks = es.k_grid(16)
    rng = np.random.default_rng(1)
    m = 300
    # policy: sharpened (either always right or never); base: right 30% of the time on every problem
    c_pol = np.where(rng.random(m) < 0.6, 16, 0)
    c_base = rng.binomial(16, 0.3, size=m)
    pol, base = es.pass_at_k_table(16, c_pol, ks), es.pass_at_k_table(16, c_base, ks)
    e = es.crossover_ci(ks, pol, base, es.bootstrap_weights(m, 300, np.random.default_rng(2)))
    assert 1 < e.value < 16
    assert e.ci_low <= e.value <= e.ci_high
    none = es.crossover_ci(ks, pol, pol * 0.5, es.bootstrap_weights(m, 50, np.random.default_rng(2)))
    assert math.isnan(none.value) and none.ci_high == math.inf


# ---------------------------------------------------------------- KL estimators on categorical distributions
def test_kl_estimators_unbiased_on_categorical():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6))
    q = rng.dirichlet(np.ones(6))
    exact = float(np.sum(p * np.log(p / q)))
    y = rng.choice(6, size=(200_000, 1), p=p)
    k1, k3 = es.kl_sequence(np.log(p)[y], np.log(q)[y], np.ones_like(y))
    assert np.all(k3 >= 0)
    for est in (k1, k3):
        e = es.t_interval(est, level=0.999)
        assert e.ci_low <= exact <= e.ci_high
    same1, same3 = es.kl_sequence(np.log(p)[y], np.log(p)[y], np.ones_like(y))
    assert np.all(same1 == 0) and np.all(same3 == 0)


def test_kl_mask_ignores_padding():
    lp = np.array([[-1.0, -2.0, -50.0]])
    lq = np.array([[-1.5, -1.0, 0.0]])
    k1, k3 = es.kl_sequence(lp, lq, np.array([[1, 1, 0]]))
    assert k1[0] == pytest.approx(0.5 - 1.0)
    assert k3[0] == pytest.approx((math.exp(-0.5) - 1 + 0.5) + (math.exp(1.0) - 1 - 1.0))


# ---------------------------------------------------------------- diversity
def test_diversity_measures():
    assert dv.distinct_answers(["1", "2", "1", None]) == 2
    assert dv.distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)
    assert dv.distinct_n([[1]], 2) == 1.0
    assert dv.duplicate_share(["a", "b", "a", "c"]) == pytest.approx(0.5)
    assert dv.duplicate_share(["a", "a", "a"]) == 1.0
    assert dv.duplicate_share(["a", "b"]) == 0.0


# ---------------------------------------------------------------- tiny models: exact KL by enumeration
import json  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

from ceiling.models.llama import from_model  # noqa: E402

from ceiling import cli  # noqa: E402
from ceiling.evaluate import EvalConfig, evaluate_checkpoints, evaluate_run, read_eval  # noqa: E402
from ceiling.evaluate import sampling as sp  # noqa: E402
from ceiling.evaluate.evaluator import eval_problems  # noqa: E402
from ceiling.models import LoadedModel, build_char_tokenizer, encode_text, format_prompts, save, tiny_config  # noqa: E402
from ceiling.tasks import TaskSet  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot to spinning on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(seed: int, spread: float = 0.15) -> LoadedModel:
    """A random 1-layer char model; an init spread wider than the default 0.02 makes it far from uniform."""
    torch.manual_seed(seed)
    cfg = tiny_config(hidden_size=32, num_layers=1, num_heads=2, initializer_range=spread)
    # in the native backend, as `load` gives for this folder: the base and its saved copy then share one code path
    model = from_model(LlamaForCausalLM(cfg).eval())
    name = f"rand{seed}"
    return LoadedModel(model, build_char_tokenizer(), name, name, False, pathlib.Path("/nonexistent") / name)


def _next_logp(loaded: LoadedModel, rows: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor(rows)).logits[:, -1].double().log_softmax(-1)


def _exact_kl(p: LoadedModel, q: LoadedModel, prompt: str) -> float:
    """KL(p || q) over all completions of at most 2 tokens (a completion stops at <eos>), by enumeration."""
    ids = encode_text(p.tokenizer, format_prompts(p, [prompt])[0])
    lp1, lq1 = _next_logp(p, [ids])[0], _next_logp(q, [ids])[0]
    vocab = lp1.numel()
    rows = [ids + [y] for y in range(vocab)]
    lp2, lq2 = _next_logp(p, rows), _next_logp(q, rows)
    kl2 = (lp2.exp() * (lp2 - lq2)).sum(-1)
    kl2[p.tokenizer.eos_token_id] = 0.0  # the completion ended at <eos>
    return float((lp1.exp() * (lp1 - lq1 + kl2)).sum())


SMOKE_CFG = dict(n_prompts=2, max_new_tokens=2, n_boot=200, nll_documents=0, greedy=False)


def test_kl_estimates_match_exact_kl_of_enumerable_models():
    p, q = _tiny(1), _tiny(2)
    prompt = "12+34="
    cfg = EvalConfig(n_samples=2000, score_samples=2000, batch_size=2000, max_new_tokens=2, greedy=False)
    for sampler, other in ((p, q), (q, p)):
        exact = _exact_kl(sampler, other, prompt)
        s = sp.draw(sampler, [prompt], lambda i, t: 0.0, lambda i, t: None, cfg, 2)
        k1, k3 = sp.sequence_kl(s, sp.score_under(other, s))
        assert exact > 0.3  # the two models really differ
        assert np.all(k3 >= 0)
        for est in (k1, k3):
            e = es.t_interval(est, level=0.99)
            assert e.ci_low <= exact <= e.ci_high, (exact, e)


def test_evaluator_kl_rows_bracket_exact_kl_and_self_kl_is_zero(tmp_path):
    base, policy = _tiny(2), _tiny(1)
    saved = save(base.model, base.tokenizer, tmp_path / "checkpoint-7")  # the base itself, via disk
    taskset = TaskSet.preset("smoke")
    cfg = EvalConfig(n_samples=128, score_samples=128, **SMOKE_CFG)
    df = evaluate_checkpoints(base, [policy, saved], cfg, run="t", taskset=taskset, steps=[5, 7])
    prompts = [pr.prompt for pr in eval_problems(taskset, cfg).problems]
    exact = {"policy_base": np.mean([_exact_kl(policy, base, t) for t in prompts]),
             "base_policy": np.mean([_exact_kl(base, policy, t) for t in prompts])}
    for direction, value in exact.items():
        for est in ("k1", "k3"):
            row = df[(df.step == 5) & (df.metric == f"kl/{direction}_{est}")].iloc[0]
            assert row.ci_low <= value <= row.ci_high, (direction, est, value, row.to_dict())
    self_rows = df[(df.step == 7) & df.metric.str.startswith("kl/")]
    assert len(self_rows) == 4
    for _, row in self_rows.iterrows():
        assert row.ci_low <= 0.0 <= row.ci_high
        if row.metric.endswith("k3"):
            assert row.value == 0.0
    # the copy of the base has the base's numbers everywhere else too
    a = df[(df.step == 0) & ~df.metric.str.startswith("kl/")].set_index(["metric", "family", "k"])["value"]
    b = df[(df.step == 7) & ~df.metric.str.startswith(("kl/", "crossover/"))]
    b = b.set_index(["metric", "family", "k"])["value"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), check_names=False)


# ---------------------------------------------------------------- run directories, caching, determinism
def _checkpoint(run: pathlib.Path, step: int, shipped: str) -> None:
    """A shipped tiny base as the run's checkpoint at `step` (real models that answer some sort problems)."""
    import shutil

    from ceiling.models import bases_dir

    shutil.copytree(bases_dir() / shipped, run / "checkpoints" / f"step_{step:06d}")


def _run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A run directory as `ceiling train` writes it: config.json, metrics.jsonl, checkpoints/step_NNNNNN/."""
    run = tmp_path / "run"
    _checkpoint(run, 0, "tiny-low")
    _checkpoint(run, 2, "tiny-medium")
    conf = {"base": "tiny-low", "tasks": "tiny-rl", "max_new_tokens": 8}
    (run / "config.json").write_text(json.dumps(conf))
    lines = [json.dumps({"step": s, "compute/flops": 1e9 * s}) for s in range(5)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_evaluate_run_writes_reuses_and_extends_eval_csv(tmp_path, capsys):
    run = _run_dir(tmp_path)
    cfg = EvalConfig(n_samples=16, n_prompts=2, n_boot=100, nll_documents=0)
    f1 = evaluate_run(run, cfg)
    assert sorted(f1.step.unique()) == [0, 2]
    assert f1.loc[f1.step == 2, "compute"].eq(2e9).all() and f1.loc[f1.step == 0, "compute"].eq(0).all()
    assert set(f1.metric) >= {"verified/reward", "verified/greedy_acc", "verified/pass@k", "unverified/score",
                              "unverified/pass@k", "unverified/nll", "policy/entropy", "kl/policy_base_k1",
                              "kl/policy_base_k3", "kl/base_policy_k1", "kl/base_policy_k3", "crossover/k",
                              "diversity/distinct_answers", "diversity/distinct_2", "diversity/duplicate_share"}
    assert sorted(f1.loc[f1.metric == "verified/pass@k", "k"].unique()) == [1, 2, 4, 8, 16]
    assert set(f1.loc[f1.metric == "verified/reward", "family"]) == {"verified", "sort"}
    assert json.loads((run / "eval_config.json").read_text())["config"]["max_new_tokens"] == 8
    for step in (0, 2):  # real models answer some problems: the scores are not trivially 0, and agree
        rows = f1[(f1.step == step) & (f1.family == "verified")]
        reward = rows.loc[rows.metric == "verified/reward", "value"].iloc[0]
        pass_k = rows[rows.metric == "verified/pass@k"].sort_values("k")["value"].to_numpy()
        assert pass_k[0] == pytest.approx(reward)  # binary rewards: unbiased pass@1 is the mean reward
        assert np.all(np.diff(pass_k) >= 0)
    reward = f1[(f1.metric == "verified/reward") & (f1.family == "verified")].set_index("step")["value"]
    assert reward[0] < reward[2] < 1  # tiny-medium answers more sort problems than tiny-low
    pd.testing.assert_frame_equal(read_eval(run / "eval.csv"), f1, check_dtype=False)

    timings: dict[str, float] = {}
    f2 = evaluate_run(run, cfg, timings=timings)  # nothing new: no model is run
    assert "generate" not in timings
    pd.testing.assert_frame_equal(f2, f1, check_dtype=False)

    _checkpoint(run, 4, "tiny-high")
    f3 = evaluate_run(run, cfg, timings=timings)
    assert sorted(f3.step.unique()) == [0, 2, 4] and timings["generate"] > 0
    old_rows = f3[f3.step < 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(old_rows, f1, check_dtype=False)

    (run / "eval.csv").unlink()  # same seed, same numbers: a fresh full evaluation equals the incremental one
    f4 = evaluate_run(run, cfg)
    pd.testing.assert_frame_equal(f4, f3, check_dtype=False)
    f5 = evaluate_run(run, dataclasses.replace(cfg, seed=1))  # another seed: re-evaluated, other numbers
    a = f4.set_index(["step", "metric", "family", "k"])["value"]
    b = f5.set_index(["step", "metric", "family", "k"])["value"]
    assert not np.allclose(a.loc[4, "policy/entropy"], b.loc[4, "policy/entropy"])

    # the CLI on the same run and config finds everything evaluated and only prints the summary
    argv = ["eval", "--run", str(run), "--n-samples", "16", "--n-prompts", "2", "--n-boot", "100",
            "--nll-documents", "0", "--seed", "1", "--max-new-tokens", "8"]
    before = (run / "eval.csv").stat().st_mtime_ns
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing new to evaluate" in out and "entropy" in out
    pd.testing.assert_frame_equal(read_eval(run / "eval.csv"), f5, check_dtype=False)
    assert (run / "eval.csv").stat().st_mtime_ns == before  # not rewritten


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["eval"]) == 2
    assert cli.main(["eval", "--run", str(tmp_path)]) == 2  # no config.json
    assert cli.main(["eval", "--run", str(tmp_path), "--n-samples", "4", "--ks", "1,8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("ceiling: error: ") for line in err)
    assert "config.json" in err[1] and "'ks'" in err[2]


def test_checkpoint_discovery_and_steps(tmp_path):
    from ceiling.evaluate import run_checkpoints, run_compute, step_of

    ck = tmp_path / "checkpoints"
    for name in ("step_000000", "step_000010", "step_000005", ".step_000020.abc.tmp", "step_000030"):
        (ck / name).mkdir(parents=True)
        if name != "step_000030":  # a folder without config.json is incomplete
            (ck / name / "config.json").write_text("{}")
    assert [(s, p.name) for s, p in run_checkpoints(tmp_path)] == [(5, "step_000005"), (10, "step_000010")]
    trl = tmp_path / "checkpoint-250"
    trl.mkdir()
    assert step_of(trl, 1) == 250
    (trl / "trainer_state.json").write_text(json.dumps({"global_step": 240}))
    assert step_of(trl, 1) == 240 and step_of(tmp_path / "final", 3) == 3
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "compute/flops": 5.0}\n{"step": 2}\n{"step": 3, "compute/f')
    assert run_compute(tmp_path) == {0: 0.0, 1: 5.0}


def test_nll_on_pretraining_documents_matches_a_direct_forward(tmp_path):
    from ceiling.models import encode_document
    from ceiling.pretrain import heldout_documents

    base = _tiny(2)
    folder = save(base.model, base.tokenizer, tmp_path / "tinybase")
    (folder / "pretrain.json").write_text(json.dumps({"corpus": {"spec": {"diversity": 0.5, "seed": 0}}}))
    cfg = EvalConfig(n_samples=2, **{**SMOKE_CFG, "nll_documents": 12})
    df = evaluate_checkpoints(folder, [], cfg, taskset=TaskSet.preset("smoke"))
    row = df[df.metric == "unverified/nll"].iloc[0]
    assert "held-out" in row.estimator and row.n == 12
    total, count = 0.0, 0
    for text in heldout_documents(folder, n=12, seed=0):
        ids = torch.tensor([encode_document(base.tokenizer, text, "")])
        logp = _next_logp_all(base, ids)
        total -= float(logp[0, :-1].gather(-1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    assert row.value == pytest.approx(total / count, rel=1e-5)
    assert row.ci_low < row.value < row.ci_high


def _next_logp_all(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits.double().log_softmax(-1)
