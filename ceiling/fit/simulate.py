"""A labelled corpus of simulated RLVR runs, with known regimes and onsets, to validate the run diagnosis.

    from ceiling.fit.simulate import simulate_run, simulate_corpus, corpus_table
    run = simulate_run(seed=7)                  # one run; its parameters are drawn from the seed
    run.frame, run.labels.sequence, run.labels.onsets, run.eval_steps, run.spec.eval_interval
    run.labels.final, run.labels.changed, run.labels.degenerate_from, run.labels.effect_sd
    simulate_run(5, draw_spec(5, sequence=("improving", "collapse")), noise=False)   # a chosen sequence, noiseless
    run.to_log("run.csv"); read_log("run.csv", mapping=run.log_mapping())   # the raw CSV a user brings
    runs = simulate_corpus(300, seed=0)         # balanced over SEQUENCES; corpus_table(runs) lists them

Everything random comes from `seed` (numpy's SeedSequence: one stream draws the spec, one the noise, one
the aborted run before a restart), so a seed gives the same frame on every machine. `noise=False` returns
the noiseless curves (the truth) with the same spec: the tests check each regime's relations on them.

Regimes (`REGIMES`; the names the diagnosis reports) and what they mean on the noiseless curves, from the
onset step of the segment to its end (the next onset or the last step):
  improving          training reward and held-out accuracy rise on a saturating curve
                     (1 - exp(-x/c)) / (1 - exp(-1/c)), x = fraction of the segment, c in [0.4, 1.5]
                     ([0.6, 2.0] in an improving-only run, so its last third still rises); the unverified
                     score rises by a quarter as many binomial SDs as the held-out accuracy.
  plateau            training reward, held-out accuracy and unverified score are exactly flat.
  trade_off          training reward and held-out accuracy hold or rise (by 0-50% of the improving rise);
                     the unverified (never-rewarded) score falls.
  over_optimisation  training reward holds or rises; held-out accuracy on the trained task falls; the
                     unverified score falls too in half of these runs, else stays flat.
  collapse           training reward falls by 50-95% of its level at the onset (at least ~0.15);
                     held-out accuracy and the unverified score fall.
Where relations overlap, the more severe label wins: collapse > over_optimisation > trade_off (an
over_optimisation run whose unverified score also falls is labelled over_optimisation). A base gap at
step 0 is a nuisance, not a regime: a no-change run with one is still labelled no-change.
A run passes through one of `SEQUENCES` (1-3 regimes; harmful ones last); `labels.onsets[i]` is the
step where `sequence[i + 1]` begins. `simulate_corpus` weights them so that each final regime is a fifth
of the corpus and 30% are no-change runs (improving-only or plateau-only), for the false-alarm rate.

Effect sizes, in binomial SDs of one eval point, sqrt(p (1 - p) / n) at the onset's level p:
  - after a harmful onset the affected score (unverified for trade_off, held-out accuracy for
    over_optimisation and collapse) moves by z_effect ~ Uniform(4, 15) SDs in total by the last step; the
    second score in collapse (and in half of over_optimisation) by its own Uniform(4, 15);
  - an improving segment raises held-out accuracy by Uniform(6, 20) SDs, training reward by
    Uniform(0.15, 0.35); an improving-only run still gains 1.3-5 SDs (median ~3) over its last third;
  - every move is capped at 85% of the room left to 0 or 1 (`shift`); the cap binds on the harmful effect in
    ~3% of runs, and `labels.effect_sd` holds the realised move, always within [4, 15];
  - the downturn's shape (`spec.shape`) is `abrupt` (linear over half an eval interval, then flat),
    `linear_steps` (linear in steps to the last step) or `linear_kl` (linear in the true KL to the base),
    a third each.
  Each segment spans at least max(3 eval intervals, 15% of the run), so every onset has >= 3 eval points
  on each side.

Observation model (what the frame holds; metric names of `ceiling.frame.METRICS`; `compute` is NaN):
  verified/reward            steps 1..T, latent + AR(1) noise, phi ~ U(0.2, 0.8), marginal SD ~ U(0.02, 0.05),
                             clipped to [0, 1]
  verified/eval_acc          at `eval_steps` = 0, k, 2k, ..., T (8-40 points; 12-40 for 3-regime runs),
                             Binomial(n, p) / n with n ~ U{200..1000} in the `n` column
  unverified/score           the same steps, its own n; always in trade_off runs, in half of the others
  policy/entropy, length/mean  multiplicative AR(1) noise (4%, 5%) around a slow drift
  diversity/duplicate_share  Binomial(m, d) / m, m completions per step; d ~ U(0.01, 0.05) stays flat,
                             except it rises to U(0.25, 0.8) after a collapse onset (and to U(0.15, 0.4) in
                             half of over_optimisation runs) with the downturn's shape; `labels.degenerate_from`
                             is then that onset. Entropy falls (x0.3-0.7) or blows up (x1.5-3) with it.
  KL to the base, true K(t) = K_T (t / T)^p, K_T log-uniform in [0.1, 3] nats, p ~ U(0.8, 1.6), one of
                             (`spec.kl_variant`, a quarter each):
       k3    kl/policy_base_k3 = K(t) exp(N(0, 0.1^2)), always >= 0
       k1    kl/logged = K(t) + N(0, (0.05 K_T + 0.15 K(t))^2): early values can be negative
       zero  kl/logged = 0 at every step (the KL penalty was off, the trainer logged zeros)
       none  no KL at all
  A third of the runs have a base point: the step-0 evals sit U(10, 30) SDs below the curve (capped at 85%
  of the way to 0, which binds in ~3/4 of them). Training-side metrics start at step 1.

`SimRun.to_log(path)` writes the raw CSV a user would bring (columns step, total_steps, reward_avg,
entropy_avg, avg_response_len, duplicate_share, kl_loss | reference_kl, eval_acc, mmlu_acc); eval columns
are empty between evals, eval_acc is in percent in a third of the runs, and 40% of the runs start with
3-8 rows of an aborted run (other noise, another total_steps) before the real run restarts at its first
step. `SimRun.log_mapping()` gives the mapping flags that read it back (`--unverified mmlu_acc`, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ceiling.frame import normalize_frame
from ceiling.io import atomic_write_text

REGIMES = ("improving", "plateau", "trade_off", "over_optimisation", "collapse")
HARMFUL = ("trade_off", "over_optimisation", "collapse")  # the regimes a run can only end in
NO_CHANGE = (("improving",), ("plateau",))                 # the sequences of runs with no onset
# sequence -> weight in a corpus: each final regime gets 2 of 10 slots, no-change runs 3 of 10.
SEQUENCES: dict[tuple[str, ...], int] = {
    ("improving",): 2, ("plateau",): 1, ("improving", "plateau"): 1,
    ("improving", "trade_off"): 1, ("improving", "plateau", "trade_off"): 1,
    ("improving", "over_optimisation"): 1, ("improving", "plateau", "over_optimisation"): 1,
    ("improving", "collapse"): 1, ("improving", "plateau", "collapse"): 1,
}
KL_VARIANTS = ("k3", "k1", "zero", "none")
SHAPES = ("abrupt", "linear_steps", "linear_kl")
LOG_COLUMNS = {"verified/reward": "reward_avg", "policy/entropy": "entropy_avg", "length/mean": "avg_response_len",
               "diversity/duplicate_share": "duplicate_share", "verified/eval_acc": "eval_acc",
               "unverified/score": "mmlu_acc"}


@dataclass(frozen=True)
class SimSpec:
    """Every parameter of one simulated run (drawn by `draw_spec`; edit with dataclasses.replace)."""
    sequence: tuple[str, ...]      # regimes in order, e.g. ("improving", "plateau", "collapse")
    onsets: tuple[int, ...]        # step where sequence[i + 1] begins, one per transition
    n_steps: int                   # T: the last training step (100-500)
    eval_interval: int             # k: evals at steps 0, k, 2k, ..., T
    n_problems: int                # problems per held-out eval point (the binomial n)
    n_unverified: int              # problems per unverified eval point; 0 = no unverified score logged
    kl_variant: str                # one of KL_VARIANTS
    kl_final: float                # true KL to the base at step T, nats
    kl_power: float                # K(t) = kl_final (t / T) ** kl_power
    reward_start: float            # training reward at step 0
    reward_rise: float             # reward gained over an improving segment
    reward_sigma: float            # marginal SD of the AR(1) reward noise
    reward_phi: float              # AR(1) coefficient of the reward noise
    eval_start: float              # held-out accuracy at step 0 (noiseless, before any base gap)
    unverified_start: float        # unverified score at step 0
    improve_c: float               # curvature c of the saturating improving curve
    z_improve: float               # held-out rise over an improving segment, in binomial SDs
    z_effect: float                # move of the affected score after the harmful onset, in binomial SDs
    z_second: float                # move of the other held-out score (0 = it stays flat)
    hold_rise: float               # fraction of the improving rise still gained after a trade_off/over_opt onset
    reward_drop_frac: float        # collapse: fraction of the reward at the onset that is lost
    shape: str                     # downturn shape, one of SHAPES
    degenerate: bool               # duplicate share rises after the last onset
    dup_start: float               # duplicate share before degeneracy
    dup_final: float               # duplicate share at step T when degenerate
    entropy_start: float           # policy entropy at step 0, nats
    entropy_decay: float           # entropy(t) = start exp(-decay t / T) before degeneracy
    entropy_factor: float          # entropy multiplier reached at T when degenerate (<1 collapse, >1 blow-up)
    length_start: float            # mean completion length at step 0, tokens
    length_growth: float           # relative length growth over the run
    length_factor: float           # length multiplier reached at T when degenerate (<1 shorter, >1 longer)
    completions_per_step: int      # m: completions behind each duplicate-share value
    base_gap: float                # SDs the step-0 evals sit below the curve (0 = no base point gap)
    restart_rows: int              # rows of an aborted run written before the log proper (0 = none)
    eval_percent: bool             # the log writes eval_acc in percent
    kl_column: str                 # the log's KL column name

    @property
    def eval_steps(self) -> np.ndarray:
        return np.arange(0, self.n_steps + 1, self.eval_interval)


@dataclass
class SimLabels:
    """The truth the diagnosis is scored against."""
    sequence: list[str]            # regimes in order
    onsets: list[int]              # onset step of each transition (len(sequence) - 1 of them)
    degenerate_from: int | None    # step from which outputs become degenerate (None = never)
    effect_sd: float               # move of the affected score from the last onset to T, binomial SDs (0 = none)

    @property
    def final(self) -> str:
        return self.sequence[-1]

    @property
    def changed(self) -> bool:
        return len(self.sequence) > 1


@dataclass
class SimRun:
    """One simulated run: its canonical frame, its labels and the spec that made it."""
    run: str                       # run name in the frame
    seed: int                      # the seed that made it
    spec: SimSpec                  # every parameter
    labels: SimLabels              # the truth
    frame: pd.DataFrame            # canonical long frame (ceiling.frame)
    eval_steps: np.ndarray         # steps with held-out (and unverified) evals
    aborted: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # wide rows of the aborted run

    def log_mapping(self) -> dict[str, str]:
        """The mapping flags (`read_log(mapping=...)`) that read `to_log`'s CSV back into this frame's metrics."""
        out = {"diversity/duplicate_share": LOG_COLUMNS["diversity/duplicate_share"]}
        if self.spec.n_unverified:
            out["unverified"] = LOG_COLUMNS["unverified/score"]
        if self.spec.kl_variant != "none":
            out["kl"] = self.spec.kl_column
        return out

    def to_log(self, path: str | Path) -> Path:
        """Write the run as a raw CSV training log (restart rows first, empty eval cells, percent evals)."""
        parts = [_log_table(self.aborted, self.spec, total=2 * self.spec.n_steps)] if len(self.aborted) else []
        parts.append(_log_table(_wide(self.frame), self.spec, total=self.spec.n_steps))
        table = pd.concat(parts, ignore_index=True)
        return atomic_write_text(path, table.to_csv(index=False, na_rep="", float_format="%.12g"))


# -- drawing a spec --------------------------------------------------------------------------------
def draw_spec(seed: int, sequence: tuple[str, ...] | None = None) -> SimSpec:
    """Draw every parameter of a run from `seed`; `sequence` fixes the regimes (default: drawn by weight)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
    if sequence is None:
        seqs, weights = list(SEQUENCES), np.array(list(SEQUENCES.values()), dtype=float)
        sequence = seqs[rng.choice(len(seqs), p=weights / weights.sum())]
    sequence = tuple(sequence)
    if any(r not in REGIMES for r in sequence) or not 1 <= len(sequence) <= 3:
        raise ValueError(f"sequence {sequence}: 1-3 regimes out of {REGIMES}")
    n_eval = int(rng.integers(12 if len(sequence) == 3 else 8, 41))
    interval = int(rng.integers(math.ceil(100 / (n_eval - 1)), 500 // (n_eval - 1) + 1))
    T = interval * (n_eval - 1)
    min_len = max(3 * interval, math.ceil(0.15 * T))
    slack = T - len(sequence) * min_len
    cuts = np.sort(rng.uniform(0, slack, len(sequence) - 1))
    onsets = tuple(int(min_len * (i + 1) + c) for i, c in enumerate(np.floor(cuts)))
    last = sequence[-1]
    harmful = last in HARMFUL
    degenerate = last == "collapse" or (last == "over_optimisation" and rng.random() < 0.5)
    n_unverified = int(rng.integers(200, 1001)) if last == "trade_off" or rng.random() < 0.5 else 0
    z_second = 0.0
    if last == "collapse" or (last == "over_optimisation" and rng.random() < 0.5):
        z_second = float(rng.uniform(4, 15))
    return SimSpec(
        sequence=sequence, onsets=onsets, n_steps=T, eval_interval=interval,
        n_problems=int(rng.integers(200, 1001)), n_unverified=n_unverified,
        kl_variant=str(rng.choice(KL_VARIANTS)), kl_final=float(np.exp(rng.uniform(np.log(0.1), np.log(3)))),
        kl_power=float(rng.uniform(0.8, 1.6)), reward_start=float(rng.uniform(0.1, 0.4)),
        reward_rise=float(rng.uniform(0.15, 0.35)), reward_sigma=float(rng.uniform(0.02, 0.05)),
        reward_phi=float(rng.uniform(0.2, 0.8)), eval_start=float(rng.uniform(0.15, 0.55)),
        unverified_start=float(rng.uniform(0.2, 0.6)),
        improve_c=float(rng.uniform(0.6, 2.0) if sequence == ("improving",) else rng.uniform(0.4, 1.5)),
        z_improve=float(rng.uniform(6, 20)), z_effect=float(rng.uniform(4, 15)) if harmful else 0.0,
        z_second=z_second, hold_rise=float(rng.uniform(0, 0.5)), reward_drop_frac=float(rng.uniform(0.5, 0.95)),
        shape=str(rng.choice(SHAPES)), degenerate=bool(degenerate), dup_start=float(rng.uniform(0.01, 0.05)),
        dup_final=float(rng.uniform(0.25, 0.8) if last == "collapse" else rng.uniform(0.15, 0.4)),
        entropy_start=float(rng.uniform(0.3, 1.5)), entropy_decay=float(rng.uniform(0.1, 0.8)),
        entropy_factor=float(rng.uniform(0.3, 0.7) if rng.random() < 0.5 else rng.uniform(1.5, 3.0)),
        length_start=float(rng.uniform(150, 700)), length_growth=float(rng.uniform(0.0, 0.6)),
        length_factor=float(rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.5, 3.0)),
        completions_per_step=int(rng.choice([64, 128, 256, 512])),
        base_gap=float(rng.uniform(10, 30)) if rng.random() < 1 / 3 else 0.0,
        restart_rows=int(rng.integers(3, 9)) if rng.random() < 0.4 else 0,
        eval_percent=bool(rng.random() < 1 / 3), kl_column=str(rng.choice(["kl_loss", "reference_kl"])))


# -- the noiseless curves --------------------------------------------------------------------------
def binomial_sd(p: float | np.ndarray, n: int) -> float | np.ndarray:
    """SD of one eval point: a mean of n Bernoulli(p) outcomes."""
    return np.sqrt(np.clip(p, 1e-6, 1 - 1e-6) * (1 - np.clip(p, 1e-6, 1 - 1e-6)) / max(n, 1))


def true_kl(spec: SimSpec) -> np.ndarray:
    """True KL to the base at steps 0..T: kl_final (t / T) ** kl_power."""
    t = np.arange(spec.n_steps + 1)
    return spec.kl_final * (t / spec.n_steps) ** spec.kl_power


def _progress(spec: SimSpec, regime: str, start: Any, end: Any) -> np.ndarray:
    """Fraction of a segment's total change reached at each step 0..T (0 before `start`, 1 after `end`).

    `start` and `end` are steps, or equal-length arrays of them (then one row per pair: shape (m, T + 1))."""
    many = np.ndim(start) > 0
    t = np.arange(spec.n_steps + 1, dtype=float)[None, :]
    s = np.atleast_1d(np.asarray(start)).astype(int)[:, None]
    e = np.atleast_1d(np.asarray(end)).astype(int)[:, None]
    x = np.clip((t - s) / (e - s), 0.0, 1.0)
    if regime == "improving":
        c = spec.improve_c
        out = (1 - np.exp(-x / c)) / (1 - np.exp(-1 / c))
    elif regime == "plateau" or spec.shape == "linear_steps":
        out = x
    elif spec.shape == "abrupt":
        out = np.clip((t - s) / max(1, spec.eval_interval // 2), 0.0, 1.0)
    else:
        kl = true_kl(spec)
        out = np.clip((kl[None, :] - kl[s]) / (kl[e] - kl[s]), 0.0, 1.0)
    return out if many else out[0]


def shift(p: float, z: float, n: int, sign: int) -> float:
    """A move of `z` binomial SDs of one eval point at level `p`, capped at 85% of the room left in [0, 1]."""
    room = (1 - p) if sign > 0 else p
    return sign * min(z * float(binomial_sd(p, n)), 0.85 * room)


def latent_curves(spec: SimSpec) -> dict[str, np.ndarray]:
    """The noiseless value of every metric at steps 0..T (the truth behind the labels)."""
    T = spec.n_steps
    r = np.full(T + 1, spec.reward_start)
    e = np.full(T + 1, spec.eval_start)
    u = np.full(T + 1, spec.unverified_start)
    n_e, n_u = spec.n_problems, spec.n_unverified or 500
    bounds = [0, *spec.onsets, T]
    g_last = np.zeros(T + 1)
    for regime, start, end in zip(spec.sequence, bounds[:-1], bounds[1:]):
        g = _progress(spec, regime, start, end)
        de = du = dr = 0.0
        if regime == "improving":
            dr = spec.reward_rise
            de, du = shift(e[start], spec.z_improve, n_e, 1), shift(u[start], 0.25 * spec.z_improve, n_u, 1)
        elif regime == "trade_off":
            dr = spec.hold_rise * spec.reward_rise
            de = shift(e[start], 0.5 * spec.hold_rise * spec.z_improve, n_e, 1)
            du = shift(u[start], spec.z_effect, n_u, -1)
        elif regime in ("over_optimisation", "collapse"):
            dr = spec.hold_rise * spec.reward_rise if regime == "over_optimisation" else \
                -spec.reward_drop_frac * r[start]
            de, du = shift(e[start], spec.z_effect, n_e, -1), shift(u[start], spec.z_second, n_u, -1)
        r, e, u = r + dr * g, e + de * g, u + du * g
        g_last = g
    d = g_last if spec.degenerate else np.zeros(T + 1)
    t = np.arange(T + 1) / T
    return {
        "verified/reward": np.clip(r, 0, 1), "verified/eval_acc": e, "unverified/score": u,
        "policy/entropy": spec.entropy_start * np.exp(-spec.entropy_decay * t) * (1 + (spec.entropy_factor - 1) * d),
        "length/mean": spec.length_start * (1 + spec.length_growth * t) * (1 + (spec.length_factor - 1) * d),
        "diversity/duplicate_share": spec.dup_start + (spec.dup_final - spec.dup_start) * d,
        "kl": true_kl(spec),
    }


def effect_sd(spec: SimSpec, true: dict[str, np.ndarray]) -> float:
    """How far the affected score moves from the last onset to step T, in binomial SDs at the onset (0 if none)."""
    last = spec.sequence[-1]
    if last not in HARMFUL:
        return 0.0
    metric, n = ("unverified/score", spec.n_unverified) if last == "trade_off" else \
        ("verified/eval_acc", spec.n_problems)
    curve, on = true[metric], spec.onsets[-1]
    return float((curve[on] - curve[-1]) / binomial_sd(curve[on], n))


# -- observing them --------------------------------------------------------------------------------
def ar1(rng: np.random.Generator, size: int, phi: float, sigma: float) -> np.ndarray:
    """A stationary AR(1) series x_t = phi x_{t-1} + e_t with marginal SD `sigma`."""
    eps = rng.normal(0.0, sigma * math.sqrt(1 - phi ** 2), size)
    x = np.empty(size)
    x[0] = rng.normal(0.0, sigma)
    for i in range(1, size):
        x[i] = phi * x[i - 1] + eps[i]
    return x


def observe(spec: SimSpec, rng: np.random.Generator, noise: bool = True) -> pd.DataFrame:
    """The logged values, one row per step 0..T and one column per metric (NaN where nothing is logged)."""
    true = latent_curves(spec)
    T = spec.n_steps
    steps = np.arange(T + 1)
    out = pd.DataFrame({"step": steps})
    train = steps >= 1
    ev = np.isin(steps, spec.eval_steps)
    z = (lambda sd: ar1(rng, T + 1, spec.reward_phi, sd)) if noise else (lambda sd: np.zeros(T + 1))
    out["verified/reward"] = np.where(train, np.clip(true["verified/reward"] + z(spec.reward_sigma), 0, 1), np.nan)
    out["policy/entropy"] = np.where(train, true["policy/entropy"] * np.exp(z(0.04)), np.nan)
    out["length/mean"] = np.where(train, true["length/mean"] * np.exp(z(0.05)), np.nan)
    m, dup = spec.completions_per_step, true["diversity/duplicate_share"]
    out["diversity/duplicate_share"] = np.where(train, rng.binomial(m, dup) / m if noise else dup, np.nan)
    for metric, n in (("verified/eval_acc", spec.n_problems), ("unverified/score", spec.n_unverified)):
        if n == 0:
            continue
        p = true[metric].copy()
        p[0] += shift(p[0], spec.base_gap, n, -1)
        out[metric] = np.where(ev, rng.binomial(n, p) / n if noise else p, np.nan)
    kl = true["kl"]
    if spec.kl_variant == "k3":
        out["kl/policy_base_k3"] = np.where(train, kl * (np.exp(rng.normal(0, 0.1, T + 1)) if noise else 1), np.nan)
    elif spec.kl_variant == "k1":
        sd = 0.05 * spec.kl_final + 0.15 * kl
        out["kl/logged"] = np.where(train, kl + (rng.normal(0, 1, T + 1) * sd if noise else 0), np.nan)
    elif spec.kl_variant == "zero":
        out["kl/logged"] = np.where(train, 0.0, np.nan)
    return out


def simulate_run(seed: int, spec: SimSpec | None = None, noise: bool = True, run: str | None = None) -> SimRun:
    """One labelled run: `spec` drawn from `seed` unless given; the noise always comes from `seed`."""
    spec = spec or draw_spec(seed)
    streams = np.random.SeedSequence(seed).spawn(3)
    wide = observe(spec, np.random.default_rng(streams[1]), noise)
    name = run or f"sim{seed}"
    aborted = pd.DataFrame()
    if spec.restart_rows:
        aborted = observe(spec, np.random.default_rng(streams[2]), noise).iloc[: spec.restart_rows + 1]
    long = wide.melt(id_vars="step", var_name="metric", value_name="value").dropna(subset=["value"])
    long["run"], long["compute"] = name, np.nan
    long["n"] = long["metric"].map({"verified/eval_acc": spec.n_problems, "unverified/score": spec.n_unverified,
                                   "diversity/duplicate_share": spec.completions_per_step})
    long["estimator"] = long["metric"].map({"kl/policy_base_k3": "k3", "kl/logged": {
        "k1": "k1", "zero": "zero (KL penalty off)"}.get(spec.kl_variant)})
    frame = normalize_frame(long, where=name).sort_values(["step", "metric"], kind="stable").reset_index(drop=True)
    last = spec.onsets[-1] if spec.onsets else 0
    labels = SimLabels(list(spec.sequence), list(spec.onsets), last if spec.degenerate else None,
                       effect_sd(spec, latent_curves(spec)))
    return SimRun(name, seed, spec, labels, frame, spec.eval_steps, aborted)


def simulate_corpus(n_runs: int = 300, seed: int = 0, noise: bool = True,
                    sequences: dict[tuple[str, ...], int] | None = None) -> list[SimRun]:
    """`n_runs` labelled runs, balanced over `sequences` (default SEQUENCES, by weight), each its own seed."""
    weights = sequences or SEQUENCES
    slots = [s for s, w in weights.items() for _ in range(w)]
    seeds = np.random.SeedSequence(seed).generate_state(n_runs)
    order = np.random.default_rng(seed).permutation(n_runs)
    runs = []
    for i, s in enumerate(seeds.tolist()):
        spec = draw_spec(int(s), sequence=slots[order[i] % len(slots)])
        runs.append(simulate_run(int(s), spec, noise=noise, run=f"sim{seed}_{i:04d}"))
    return runs


def corpus_table(runs: list[SimRun]) -> pd.DataFrame:
    """One row per run: its labels and the nuisances it carries."""
    return pd.DataFrame([{
        "run": r.run, "sequence": " -> ".join(r.labels.sequence), "onsets": list(r.labels.onsets),
        "degenerate_from": r.labels.degenerate_from, "n_steps": r.spec.n_steps,
        "eval_interval": r.spec.eval_interval, "n_evals": len(r.eval_steps), "n": r.spec.n_problems,
        "n_unverified": r.spec.n_unverified, "kl_variant": r.spec.kl_variant, "downturn": r.spec.shape,
        "effect_sd": r.labels.effect_sd, "base_gap": r.spec.base_gap, "restart_rows": r.spec.restart_rows,
    } for r in runs])


# -- the raw log -----------------------------------------------------------------------------------
def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.pivot_table(index="step", columns="metric", values="value", aggfunc="last").reset_index()


def _log_table(wide: pd.DataFrame, spec: SimSpec, total: int) -> pd.DataFrame:
    """A wide table under the log's column names (KL under spec.kl_column, eval in percent if asked)."""
    out = pd.DataFrame({"step": wide["step"].astype(int), "total_steps": total})
    for metric, col in LOG_COLUMNS.items():
        if metric in wide:
            out[col] = wide[metric] * (100 if spec.eval_percent and col == "eval_acc" else 1)
    for metric in ("kl/policy_base_k3", "kl/logged"):
        if metric in wide:
            out[spec.kl_column] = wide[metric]
    return out

