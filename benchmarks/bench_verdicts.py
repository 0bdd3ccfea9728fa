"""The run diagnosis on the labelled simulation corpus: confusion matrix, false alarms, onset error.

    python benchmarks/bench_verdicts.py                 # 300 runs (a few minutes on 2 cores)
    python benchmarks/bench_verdicts.py --runs 60 --seed 1

The corpus is `ceiling.fit.simulate.simulate_corpus` (documented there: five regimes and their sequences,
8-40 evaluations with binomial noise, AR(1) training reward, restarts, base points, KL k1/k3/zero/none).
Printed:
- the confusion matrix of the final regime (rows: truth, columns: diagnosis) and its accuracy;
- the share of runs whose whole regime sequence is right;
- the false-alarm rate: no-change runs (improving-only, plateau-only) given any harmful regime;
- per transition: the share whose onset is within one evaluation interval of the truth, and the coverage of
  the onset's 95% interval (transitions the diagnosis found with the right regime);
- the same on harmful transitions only.
Targets (issue 15): accuracy >= 90%, false alarms <= 5%, onset within one interval in >= 80% of transitions.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ceiling.fit.diagnosis import HARMFUL, REGIMES, diagnose  # noqa: E402
from ceiling.fit.simulate import simulate_corpus  # noqa: E402


def score(runs: list, n_sim: int) -> dict:
    conf: Counter = Counter()
    seq_ok = fa = no_change = 0
    onsets: list[tuple[str, bool, bool, str]] = []  # (regime, within one interval, covered, downturn shape)
    for r in runs:
        d = diagnose(r.frame, n_sim=n_sim, seed=0)
        truth, got = r.labels.sequence, [s.regime for s in d.sequence]
        conf[(truth[-1], got[-1])] += 1
        seq_ok += truth == got
        if len(truth) == 1:
            no_change += 1
            fa += any(g in HARMFUL for g in got)
        for regime, step in zip(truth[1:], r.labels.onsets):
            span = next((s for s in d.sequence if s.regime == regime and s.onset is not None), None)
            if span is None:
                onsets.append((regime, False, False, r.spec.shape))
                continue
            o = span.onset
            onsets.append((regime, abs(o.step - step) <= r.spec.eval_interval, o.step_low <= step <= o.step_high,
                           r.spec.shape))
    return {"conf": conf, "n": len(runs), "seq_ok": seq_ok, "fa": fa, "no_change": no_change, "onsets": onsets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-sim", type=int, default=399, help="null simulations per decline test")
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = simulate_corpus(args.runs, seed=args.seed)
    res = score(runs, args.n_sim)
    secs = time.perf_counter() - t0
    conf = res["conf"]
    print(f"run diagnosis on {res['n']} simulated runs (seed {args.seed}, {args.n_sim} null draws per test), "
          f"{secs:.0f} s ({secs / res['n']:.2f} s a run)")
    print("\nconfusion of the final regime (rows: truth, columns: diagnosis)")
    print(f"{'':>18}" + "".join(f"{g[:9]:>10}" for g in REGIMES))
    for t in REGIMES:
        print(f"{t:>18}" + "".join(f"{conf[(t, g)]:>10}" for g in REGIMES))
    acc = sum(v for (t, g), v in conf.items() if t == g) / res["n"]
    print(f"\nfinal-regime accuracy {acc:.1%} (target >= 90%)")
    print(f"whole sequence right  {res['seq_ok'] / res['n']:.1%}")
    print(f"false alarms on no-change runs {res['fa']}/{res['no_change']} = {res['fa'] / max(res['no_change'], 1):.1%} "
          "(target <= 5%)")
    for label, keep in (("all transitions", lambda r: True), ("harmful transitions", lambda r: r in HARMFUL)):
        rows = [o for o in res["onsets"] if keep(o[0])]
        if rows:
            within = np.mean([o[1] for o in rows])
            cover = np.mean([o[2] for o in rows])
            print(f"{label}: {len(rows)}; onset within one eval interval {within:.1%} (target >= 80%); "
                  f"95% interval covers the truth {cover:.1%}")
    print("\nper transition (harmful ones by the downturn's shape): within one interval / interval covers")
    kinds = sorted({(o[0], o[3] if o[0] in HARMFUL else "-") for o in res["onsets"]})
    for regime, shape in kinds:
        rows = [o for o in res["onsets"] if o[0] == regime and (shape == "-" or o[3] == shape)]
        print(f"  {regime + ('' if shape == '-' else ' ' + shape):>32}: {len(rows):3d}  "
              f"{np.mean([o[1] for o in rows]):6.1%}  {np.mean([o[2] for o in rows]):6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
