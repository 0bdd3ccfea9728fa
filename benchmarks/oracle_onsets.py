"""An oracle onset estimator on the labelled corpus: how well can an onset be located at all?

    python benchmarks/oracle_onsets.py --runs 150 --seed 2            # oracle shares per transition kind
    python benchmarks/oracle_onsets.py --runs 150 --seed 2 --diagnosis  # the same runs through `diagnose`, beside

The oracle knows what no estimator knows: each transition's true shape family from the generator
(`ceiling.fit.simulate`), which series it moves, the other onsets of the run, and the true noise (binomial
variances at the true p and n; the training reward's AR(1) coefficient and SD, used to whiten it). It fits the
generator's own mean curve of each series, start + sum_k delta_k g_k(t) (g_k the progress of segment k:
a saturating rise for improving, flat for plateau, abrupt / linear in steps / linear in the true KL for a
harmful downturn), the amplitudes delta_k and the start free (least squares), to the noisy observations, with
the onset tau of the transition on every integer step between its neighbouring onsets, and takes the tau of the
smallest total (noise-scaled) SSR: the maximum-likelihood onset under the true model.

Two oracles:
  known   the nuisance shape parameters are the generator's (the improving curve's c, the KL power);
  family  only the family is known: c profiled over a grid of 0.4-2.0, the KL power over 0.8-1.6.
Two sets of series, each fitted with a shared tau:
  primary the series that define the transition: plateau: held-out + training reward; trade-off: the
          never-rewarded score; over-optimisation: held-out; collapse: held-out + training reward;
  all     every logged score the diagnosis reads (training reward, held-out, never-rewarded when logged).
The base point (step 0, which sits U(10, 30) SDs below the curve in a third of the runs) is left out when the
run has one. A transition counts as "within one interval" when |tau - truth| <= the eval interval, as in
`benchmarks/bench_verdicts.py`; with --diagnosis a transition the diagnosis does not report counts as a miss.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ceiling.fit.simulate import HARMFUL, SimRun, _progress, latent_curves, simulate_corpus, true_kl  # noqa: E402

SERIES = ("verified/reward", "verified/eval_acc", "unverified/score")
PRIMARY = {"plateau": ("verified/eval_acc", "verified/reward"), "trade_off": ("unverified/score",),
           "over_optimisation": ("verified/eval_acc",), "collapse": ("verified/eval_acc", "verified/reward")}
C_GRID = tuple(np.round(np.linspace(0.4, 2.0, 17), 3))
P_GRID = tuple(np.round(np.linspace(0.8, 1.6, 9), 3))


def observed(run: SimRun, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of one metric, the base point left out when the run has a base gap."""
    f = run.frame[run.frame["metric"] == metric]
    if f.empty:
        return None
    x, y = f["step"].to_numpy(int), f["value"].to_numpy(float)
    keep = ~((x == 0) & (run.spec.base_gap > 0))
    return x[keep], y[keep]


def whitener(run: SimRun, metric: str, x: np.ndarray, true: np.ndarray):
    """A function mapping (…, n) arrays to noise-whitened ones (unit-variance independent residuals)."""
    s = run.spec
    if metric == "verified/reward":
        phi, sig = s.reward_phi, s.reward_sigma
        inn = sig * np.sqrt(1 - phi**2)

        def wh(a: np.ndarray) -> np.ndarray:
            out = np.empty_like(a)
            out[..., 0] = a[..., 0] / sig
            out[..., 1:] = (a[..., 1:] - phi * a[..., :-1]) / inn
            return out
        return wh
    n = s.n_problems if metric == "verified/eval_acc" else s.n_unverified
    p = np.clip(true[x], 1e-4, 1 - 1e-4)
    sd = np.sqrt(p * (1 - p) / n)
    return lambda a: a / sd


def moved(run: SimRun, true: dict, metric: str, bounds: list[int]) -> list[bool]:
    """Which segments move this series in truth (delta_k != 0)."""
    c = true[metric]
    return [abs(c[b] - c[a]) > 1e-12 for a, b in zip(bounds[:-1], bounds[1:])]


def fit_onset(run: SimRun, i: int, metrics: tuple[str, ...], family: bool) -> float | None:
    """The least-squares onset (step) of transition i under the generator's form, nuisances known or profiled."""
    spec = run.spec
    T = spec.n_steps
    true = latent_curves(spec)
    true_bounds = [0, *spec.onsets, T]
    lo, hi = true_bounds[i] + 1, true_bounds[i + 2] - 1
    taus = np.arange(lo, hi + 1)
    data = []
    for m in metrics:
        obs = observed(run, m)
        if obs is None:
            continue
        x, y = obs
        data.append((m, x, y, whitener(run, m, x, true[m]), moved(run, true, m, true_bounds)))
    if not data:
        return None
    cs = C_GRID if family and "improving" in spec.sequence else (spec.improve_c,)
    ps = P_GRID if family and spec.shape == "linear_kl" and any(r in HARMFUL for r in spec.sequence) \
        else (spec.kl_power,)
    bounds = np.tile(np.array(true_bounds), (taus.size, 1))  # (G, segments + 1): onset i at each tau
    bounds[:, i + 1] = taus
    best = np.full(taus.size, np.inf)
    for c in cs:
        for p in ps:
            sp = replace(spec, improve_c=float(c), kl_power=float(p))
            # g[k]: (G, T + 1) progress of segment k with onset i at each tau
            gs = [_progress(sp, regime, bounds[:, k], bounds[:, k + 1]) for k, regime in enumerate(spec.sequence)]
            tot = np.zeros(taus.size)
            for m, x, y, wh, mv in data:
                # whitened columns, each (G, n) (the constant one does not move with tau); normal equations by pairs
                cols = [np.broadcast_to(wh(np.ones(x.size)), (taus.size, x.size))] + \
                    [wh(np.ascontiguousarray(gs[k][:, x])) for k in range(len(gs)) if mv[k]]
                yw = wh(y)
                q = len(cols)
                ata = np.empty((taus.size, q, q))
                for a in range(q):
                    for b in range(a, q):
                        ata[:, a, b] = ata[:, b, a] = np.einsum("gn,gn->g", cols[a], cols[b])
                atb = np.stack([c @ yw for c in cols], axis=1)
                ridge = 1e-10 * np.max(np.diagonal(ata, axis1=1, axis2=2), axis=1) + 1e-300
                beta = np.linalg.solve(ata + ridge[:, None, None] * np.eye(q), atb[..., None])[..., 0]
                # SSR = y'y - beta' X'y at the least-squares solution
                tot += float(yw @ yw) - np.einsum("gi,gi->g", beta, atb)
            best = np.minimum(best, tot)
    return float(taus[int(np.argmin(best))])


def kind(run: SimRun, i: int) -> str:
    reg = run.labels.sequence[i + 1]
    return reg if reg not in HARMFUL else f"{reg} {run.spec.shape}"


def diagnosis_onsets(run: SimRun, n_sim: int) -> list[float | None]:
    from ceiling.fit.diagnosis import diagnose
    d = diagnose(run.frame, n_sim=n_sim, seed=0)
    out = []
    for regime in run.labels.sequence[1:]:
        span = next((s for s in d.sequence if s.regime == regime and s.onset is not None), None)
        out.append(None if span is None else span.onset.step)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--diagnosis", action="store_true", help="also run `diagnose` on the same runs")
    ap.add_argument("--n-sim", type=int, default=399, help="null draws per decline test (with --diagnosis)")
    ap.add_argument("--json", help="write one record per transition (run, kind, signed errors in eval intervals) here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = simulate_corpus(args.runs, seed=args.seed)
    variants = [("known", "primary"), ("known", "all"), ("family", "primary"), ("family", "all")]
    rows: list[tuple[str, dict[str, float]]] = []  # (kind, {column: |error| in intervals})
    records: list[dict] = []
    for r in runs:
        diag = diagnosis_onsets(r, args.n_sim) if args.diagnosis else None
        for i, regime in enumerate(r.labels.sequence[1:]):
            truth, k = r.labels.onsets[i], r.spec.eval_interval
            errs = {}
            for fam, which in variants:
                ms = PRIMARY[regime] if which == "primary" else SERIES
                tau = fit_onset(r, i, ms, fam == "family")
                errs[f"{fam}/{which}"] = np.inf if tau is None else (tau - truth) / k
            if diag is not None:
                errs["diagnosis"] = np.inf if diag[i] is None else (diag[i] - truth) / k
            rows.append((kind(r, i), errs))
            records.append({"run": r.run, "transition": i, "kind": kind(r, i), "truth": truth, "interval": k,
                            "errors": {c: (None if not np.isfinite(v) else float(v)) for c, v in errs.items()}})
    cols = list(rows[0][1])
    print(f"oracle onsets on simulate_corpus({args.runs}, seed={args.seed}): {len(rows)} transitions, "
          f"{time.perf_counter() - t0:.0f} s; share within one eval interval")
    print(f"{'transition':>30} {'n':>4}" + "".join(f"{c:>16}" for c in cols))
    groups = sorted({kd for kd, _ in rows}) + ["harmful", "all"]
    for g in groups:
        sel = [e for kd, e in rows if kd == g or g == "all" or (g == "harmful" and kd.split()[0] in HARMFUL)]
        print(f"{g:>30} {len(sel):>4}" + "".join(f"{np.mean([abs(e[c]) <= 1 for e in sel]):>16.1%}" for c in cols))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
