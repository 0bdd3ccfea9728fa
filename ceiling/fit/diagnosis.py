"""The run diagnosis: what a run is doing, from when, at what cost, and which checkpoint to ship.

    diag = diagnose(frame)                 # a canonical frame of one run (ours or an ingested log)
    diag.regime, diag.sequence             # "over_optimisation"; improving -> plateau -> over_optimisation
    diag.tradeoff                          # change of each held-out / never-rewarded score per nat of KL
    diag.ship, diag.kl_budget, diag.degeneracy
    print(diag.summary()); diag.to_dict()  # the `diagnosis` section of fits.json

Roles. The series a run logs play four parts:
  - verified (proxy): the training reward (`verified/reward` of an ingested log; `raw/reward/mean` in our run
    directories, where `verified/reward` is the held-out eval);
  - held-out (gold): accuracy on held-out problems of the trained task (`verified/eval_acc`; in our run
    directories eval.csv's `verified/reward`), the gold of Gao et al.'s proxy-vs-gold over-optimisation;
  - never-rewarded: `unverified/score` (a never-rewarded family or an `--unverified` benchmark);
  - axis: a logged KL to the base, used as it is whatever its estimator and sign; when KL is absent or
    constant, steps (rates then per 100 steps).

Regimes (REGIMES; the names are part of fits.json):
  improving          the verified score (held-out when logged, else training) rises;
  plateau            it holds (no significant slope) and nothing falls;
  trade_off          verified holds or rises while the never-rewarded score falls;
  over_optimisation  the training reward holds or rises while held-out accuracy falls;
  collapse           training reward and held-out accuracy both fall (without a held-out score: the training
                     reward falls). When the training reward rises again afterwards (a calibrated rise test
                     on the points after its fall, at alpha / 5) while held-out accuracy keeps falling, the
                     run is over-optimising again from that point.

Statistics (`ceiling.fit.trend`). "Falls" is decided by a calibrated test per series (sup over onsets of the
post-onset slope's t against a never-declining isotonic null, studentised, binomial weights from the `n`
column, AR(1) noise for dense training series), Bonferroni over the series tested, so the false-alarm rate
on a run that does not degrade is at most `alpha`. "Rises" and "holds" come from a continuous piecewise-
linear fit (0-2 breakpoints by BIC): a segment rises when its slope's t exceeds 2. Onsets, in steps and, where
KL is usable, in nats (`ceiling.fit.trend`): a fall's onset is located between evaluations by a rise-then-ramp
fit (non-decreasing, concave for evaluations, then a continuous straight fall from the level held to a free end,
then flat), one onset fitted jointly to the series whose falls are one change (e.g. training reward and held-out
accuracy in a collapse); a plateau's onset is the knee of a saturating rise fitted to the held-out and training series
together (a hinge of straight lines puts it early on a curve that flattens gradually), else the piecewise
fit's break. 95% intervals join the profile set and a parametric bootstrap, out to the evaluations around. The
base point (step 0) is left out of the segmentation when at least 7 other evaluations exist (base evaluations
often differ in kind), and kept for the rates.

Trade-off rate: the weighted least-squares slope of each held-out and never-rewarded score on the axis, with
a t interval (scale from the residuals), over the whole run and before/after the onset of its fall.

Checkpoint to ship (`SHIP_RULE`): among the evaluated steps, the highest fitted held-out score (training
reward without one) plus the fitted change of the never-rewarded score, equal weights; of the steps within
one standard error of that best, the earliest (the least KL).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ceiling.errors import CeilingError
from ceiling.fit.common import SCHEMA_VERSION, as_float, fnum, table_row
from ceiling.fit.trend import (FallSeries, Piecewise, decline_onset, decline_test, joint_fall_onset, piecewise_fit,
                               saturation_onset)
from ceiling.frame import normalize_frame, one_family_set

REGIMES = ("improving", "plateau", "trade_off", "over_optimisation", "collapse")
HARMFUL = ("trade_off", "over_optimisation", "collapse")
KL_METRICS = ("kl/policy_base_k3", "kl/policy_base_k1", "kl/logged", "kl/policy_base_k3_token")
SHIP_RULE = ("the evaluated step with the highest fitted held-out score (training reward without one) plus the "
             "fitted change of the never-rewarded score; of the steps within one standard error of it, the earliest")
# degeneracy measures: (metric, direction of harm, words, the smallest change that counts as degenerate:
# absolute for shares, relative for the rest), so ordinary sharpening is not called degeneracy
DEGENERACY = (("diversity/duplicate_share", +1, "duplicate share", ("abs", 0.10)),
              ("diversity/distinct_2", -1, "distinct bigrams", ("rel", 0.25)),
              ("length/mean", +1, "mean length", ("rel", 0.50)))


# ----------------------------------------------------------------------------------------- result types
@dataclass
class Onset:
    """Where a regime begins: a step with its 95% interval, and the same on the KL axis when KL is usable."""

    step: float
    step_low: float
    step_high: float
    kl: float | None = None
    kl_low: float | None = None
    kl_high: float | None = None
    cause: str = ""  # the series whose change marks it

    def words(self, kl_name: str | None) -> str:
        s = f"step {self.step:.0f} [{self.step_low:.0f}, {self.step_high:.0f}]"
        if self.kl is not None and kl_name:
            s += f", KL {fnum(self.kl, 3)} [{fnum(self.kl_low, 3)}, {fnum(self.kl_high, 3)}] nats"
        return s


@dataclass
class RegimeSpan:
    regime: str
    start: float
    end: float
    onset: Onset | None  # None for the first span (it starts with the run)


@dataclass
class TradeoffRate:
    """Change of one score per unit of the axis, with a 95% t interval."""

    metric: str
    role: str  # "held_out" | "never_rewarded"
    segment: str  # "all" | "before" | "after"
    rate: float
    ci_low: float
    ci_high: float
    per: str  # "nat of kl/..." or "100 steps"
    n: int


@dataclass
class SeriesTest:
    """The decline test of one series."""

    metric: str
    role: str
    p_value: float
    alpha: float
    falls: bool
    onset: Onset | None
    noise: str
    direction: int = -1  # -1: a fall is the change tested; +1: a rise (degeneracy measures)
    first: float | None = None  # fitted value at the first and the last step (in the series' units)
    last: float | None = None


@dataclass
class RunDiagnosis:
    """What a run is doing (the regime sequence), at what cost (trade-off rates), and what to ship."""

    regime: str
    sequence: list[RegimeSpan]
    tradeoff: list[TradeoffRate]
    tests: list[SeriesTest]
    degeneracy: list[SeriesTest]
    ship: dict[str, Any] | None
    kl_budget: dict[str, Any] | None
    roles: dict[str, str | None]
    axis: str  # the KL metric used for rates and onsets in nats, or "step"
    alpha: float
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    data: dict[str, Any] = field(default_factory=dict)
    kind = "diagnosis"
    title = "run diagnosis"

    # -------------------------------------------------------------- the contract every section shares
    @property
    def detected(self) -> bool:
        return any(s.regime in HARMFUL for s in self.sequence)

    @property
    def identifiable(self) -> bool:
        return True

    @property
    def first_harm(self) -> RegimeSpan | None:
        return next((s for s in self.sequence if s.regime in HARMFUL), None)

    @property
    def estimate(self) -> float | None:
        h = self.first_harm
        return None if h is None else (h.onset.step if h.onset else h.start)

    @property
    def ci_low(self) -> float | None:
        h = self.first_harm
        return None if h is None else (h.onset.step_low if h.onset else h.start)

    @property
    def ci_high(self) -> float | None:
        h = self.first_harm
        return None if h is None else (h.onset.step_high if h.onset else h.start)

    @property
    def method(self) -> str:
        return (f"decline tests (hinge sup-t vs isotonic null, parametric simulation; Bonferroni over "
                f"{sum(1 for t in self.tests if t.alpha < self.alpha + 1e-12 and t.role != 'proxy_check')} "
                f"series at alpha {self.alpha}); piecewise-linear segments by BIC; onsets of falls by "
                "rise-then-ramp fits (joint over the series that fall together), of plateaus at the knee of a "
                "saturating rise, 95% intervals from profile and parametric bootstrap; "
                "WLS trade-off rates with t intervals")

    def sequence_words(self) -> str:
        return " -> ".join(s.regime for s in self.sequence)

    def _kl_name(self) -> str | None:
        return None if self.axis == "step" else self.axis

    def rate_words(self, r: TradeoffRate) -> str:
        return f"{r.rate:+.3g} per {r.per.split(' of ')[0]} [{r.ci_low:+.3g}, {r.ci_high:+.3g}]"

    def headline(self) -> str:
        """The first headline line: the regime sequence, its onsets, and the cost in words."""
        parts = [self.sequence_words()]
        for s in self.sequence[1:]:
            if s.onset is not None:
                parts.append(f"{s.regime} from {s.onset.words(self._kl_name())}")
        cost = self.cost_words()
        return "; ".join(parts) + (f". {cost}" if cost else "")

    def cost_words(self) -> str:
        out = []
        for role, label in (("never_rewarded", "never-rewarded score"), ("held_out", "held-out score")):
            rates = [r for r in self.tradeoff if r.role == role and r.segment == "all"]
            for r in rates[:1]:
                test = next((t for t in self.tests if t.metric == r.metric), None)
                if test is None or not test.falls:
                    if r.ci_high < 0:
                        out.append(f"{label} {self.rate_words(r)} (a fall the decline test does not call)")
                    continue
                after = next((a for a in self.tradeoff if a.metric == r.metric and a.segment == "after"), None)
                if test.onset is None or after is None:
                    out.append(f"{label} {self.rate_words(r)}; no threshold: the loss is gradual from the start")
                else:
                    named = any(sp.onset is not None and sp.onset.step == test.onset.step for sp in self.sequence)
                    out.append(f"{label} {self.rate_words(after)} after the onset" if named else
                               f"{label} {self.rate_words(after)} once its own fall begins, at "
                               f"{test.onset.words(self._kl_name())}")
        return "; ".join(out)

    def ship_words(self) -> str | None:
        if not self.ship:
            return None
        s = self.ship
        kl = f", KL {fnum(s.get('kl'), 3)} nats" if s.get("kl") is not None else ""
        return f"step {s['step']:.0f}{kl} ({s['score_metric']} {fnum(s.get('score'), 3)})"

    @staticmethod
    def ship_rule_words() -> str:
        return SHIP_RULE

    def budget_words(self) -> str | None:
        if not self.kl_budget:
            return None
        b = self.kl_budget
        if b.get("from_start"):
            return f"none: the {b['regime'].replace('_', '-')} begins with training (no KL threshold to stay under)"
        return (f"{b['regime']} begins at KL {fnum(b['kl'], 3)} [{fnum(b['kl_low'], 3)}, {fnum(b['kl_high'], 3)}] "
                f"nats ({b['metric']})")

    def degeneracy_words(self) -> str | None:
        hits = [d for d in self.degeneracy if d.falls]
        if not hits:
            return ("outputs not degenerate: no significant rise of the duplicate share or fall of distinct outputs"
                    if any(d.metric != "length/mean" for d in self.degeneracy) else None)
        out = []
        for d in hits:
            where = f" from {d.onset.words(None)}" if d.onset else ""
            out.append(f"{d.role}{where} ({fnum(d.first, 3)} -> {fnum(d.last, 3)})")
        return "degenerate outputs: " + "; ".join(out)

    def warnings(self) -> list[str]:
        """Caveats on this verdict: a missing held-out score matters only when the verdict rests on a fall of the
        training reward (collapse); the other notes always qualify it."""
        collapse = any(s.regime == "collapse" for s in self.sequence)
        return [f"run diagnosis: {msg}" for code, msg in self.reasons if code != "no_held_out" or collapse]

    def rows(self) -> list[dict[str, str]]:
        """Rows of the report's table of fitted numbers (`ceiling.fit.common.TABLE_COLUMNS`)."""
        t = "run diagnosis"
        rows = []
        for s in self.sequence[1:]:
            o = s.onset
            if o is None:
                continue
            rows.append(table_row(t, f"onset of {s.regime} (step)", o.step, o.step_low, o.step_high,
                                  f"onset from {o.cause}, profile + parametric bootstrap", s.regime))
            if o.kl is not None:
                rows.append(table_row(t, f"onset of {s.regime} ({self.axis}, nats)", o.kl, o.kl_low, o.kl_high,
                                      "KL at the onset's step and bounds", ""))
        for r in self.tradeoff:
            rows.append(table_row(t, f"{r.metric} per {r.per} ({r.segment})", r.rate, r.ci_low, r.ci_high,
                                  "weighted least squares, t interval", "", f"{r.n} evaluations"))
        for x in self.tests + self.degeneracy:
            verb = "rises" if x.direction > 0 else "falls"
            rows.append(table_row(t, f"does {x.metric} {'rise' if x.direction > 0 else 'fall'}? ({x.role})", x.p_value,
                                  None, None, f"decline test, {x.noise}",
                                  (verb if x.falls else f"does not {verb[:-1]}")
                                  + f" (p = {fnum(x.p_value, 3)} vs {fnum(x.alpha, 3)})"))
        if self.ship:
            rows.append(table_row(t, "checkpoint to ship (step)", self.ship["step"], None, None, SHIP_RULE, "",
                                  self.ship_words() or ""))
        return rows

    def summary(self) -> str:
        lines = [f"run diagnosis: {self.headline()}"]
        if self.ship_words():
            lines.append(f"checkpoint to ship: {self.ship_words()}")
        if self.budget_words():
            lines.append(f"KL budget: {self.budget_words()}")
        if self.degeneracy_words():
            lines.append(self.degeneracy_words() or "")
        for r in self.tradeoff:
            lines.append(f"  {r.metric} ({r.segment}): {self.rate_words(r)}")
        lines.append(f"method: {self.method}")
        lines += [f"note: {m}" for _, m in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schema_version": SCHEMA_VERSION, "regime": self.regime,
                "sequence": [asdict(s) for s in self.sequence], "estimate": as_float(self.estimate),
                "ci_low": as_float(self.ci_low), "ci_high": as_float(self.ci_high), "detected": self.detected,
                "method": self.method, "tradeoff": [asdict(r) for r in self.tradeoff],
                "tests": [asdict(t) for t in self.tests], "degeneracy": [asdict(t) for t in self.degeneracy],
                "ship": self.ship, "ship_rule": SHIP_RULE, "kl_budget": self.kl_budget, "roles": self.roles,
                "axis": self.axis, "alpha": self.alpha, "reasons": [m for _, m in self.reasons],
                "reason_codes": [c for c, _ in self.reasons], "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunDiagnosis:
        try:
            def onset(o: dict | None) -> Onset | None:
                return None if o is None else Onset(**o)

            def test(t: dict) -> SeriesTest:
                return SeriesTest(**{**t, "onset": onset(t.get("onset"))})

            return cls(regime=d["regime"],
                       sequence=[RegimeSpan(s["regime"], s["start"], s["end"], onset(s.get("onset")))
                                 for s in d["sequence"]],
                       tradeoff=[TradeoffRate(**r) for r in d["tradeoff"]], tests=[test(t) for t in d["tests"]],
                       degeneracy=[test(t) for t in d.get("degeneracy") or []], ship=d.get("ship"),
                       kl_budget=d.get("kl_budget"), roles=d["roles"], axis=d["axis"], alpha=float(d["alpha"]),
                       reasons=list(zip(d.get("reason_codes") or [], d.get("reasons") or [])), data=d.get("data") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise CeilingError(f"fits: stored diagnosis is malformed ({exc})") from None


# ----------------------------------------------------------------------------------------- frame access
@dataclass
class Series:
    metric: str
    role: str
    x: np.ndarray  # steps
    y: np.ndarray  # in [0, 1] units when the log is in percent
    n: np.ndarray | None  # sample size per point (binomial weights), None when unknown
    scale: float  # 100 for percent logs
    dense: bool  # one point per training step (AR(1) noise) vs sparse evaluations

    def rel_var(self) -> np.ndarray | None:
        if self.n is None:
            return None
        k = min(3, self.y.size)
        p = np.convolve(self.y, np.ones(k) / k, mode="same")
        p = np.clip(p, 0.02, 0.98)
        return p * (1 - p) / self.n


def _series(df: pd.DataFrame, metric: str, role: str, bounded: bool = True) -> Series | None:
    sub = df[(df["metric"] == metric) & df["k"].isna() & np.isfinite(df["value"])]
    fam = sub["family"]
    agg = sub[fam.isna() | fam.isin(["all", "verified", "unverified"])]
    sub = one_family_set(agg) if not agg.empty else sub  # one family set (verified first), never their mean
    if sub.empty:
        return None
    g = sub.groupby("step", as_index=False).agg(value=("value", "mean"), n=("n", "mean"))
    if len(g) < 5:
        return None
    y = g["value"].to_numpy(float)
    scale = 100.0 if bounded and y.min() >= 0 and 1.5 < y.max() <= 100 else 1.0
    n = g["n"].to_numpy(float)
    n = n if bounded and np.all(np.isfinite(n) & (n > 0)) else None
    steps = g["step"].to_numpy(float)
    dense = len(g) >= 30 and float(np.median(np.diff(steps))) <= 1.5
    return Series(metric, role, steps, y / scale, n, scale, dense)


def _roles(df: pd.DataFrame) -> dict[str, str | None]:
    metrics = set(df["metric"])
    vr = df[df["metric"] == "verified/reward"]
    reward_is_eval = bool(len(vr)) and bool((vr["source_key"] == "eval.csv").all())
    if "verified/eval_acc" in metrics:
        gold, proxy = "verified/eval_acc", ("verified/reward" if "verified/reward" in metrics else None)
    elif reward_is_eval:
        gold, proxy = "verified/reward", ("raw/reward/mean" if "raw/reward/mean" in metrics else None)
    else:
        gold, proxy = None, ("verified/reward" if "verified/reward" in metrics else None)
    unverified = next((m for m in ("unverified/score", "unverified/greedy_acc") if m in metrics), None)
    return {"proxy": proxy, "held_out": gold, "never_rewarded": unverified}


def _kl_axis(df: pd.DataFrame) -> tuple[str | None, pd.DataFrame | None, str | None]:
    """(metric, (step, value) frame, why not) of the first usable KL: finite, >= 5 steps, not constant."""
    why = None
    for m in KL_METRICS:
        s = _series(df, m, "axis", bounded=False)
        if s is None:
            continue
        if np.ptp(s.y) == 0:
            why = f"{m} is constant ({s.y[0]:g}: a KL penalty that is off logs zeros); rates are per 100 steps"
            continue
        return m, pd.DataFrame({"step": s.x, "value": s.y}), None
    return None, None, why or "no KL to the base is logged; rates are per 100 steps"


def _kl_at(kl: pd.DataFrame | None, steps: np.ndarray) -> np.ndarray | None:
    """KL at the given steps: a running mean over about a tenth of the run (noisy per-step KL), interpolated."""
    if kl is None:
        return None
    x, v = kl["step"].to_numpy(float), kl["value"].to_numpy(float)
    k = max(1, min(len(v) // 10, 25))
    if k > 1:
        v = pd.Series(v).rolling(k, center=True, min_periods=1).mean().to_numpy()
    return np.interp(steps, x, v)


# ----------------------------------------------------------------------------------------- statistics
def _segmentable(s: Series) -> Series:
    """The series without its base point (step 0) when at least 7 other points exist."""
    if s.x[0] == 0 and s.x.size >= 8:
        return Series(s.metric, s.role, s.x[1:], s.y[1:], None if s.n is None else s.n[1:], s.scale, s.dense)
    return s


def _onset_of_fall(s: Series, y: np.ndarray, rng: np.random.Generator) -> Onset | None:
    """The onset of the fall of y (None: it falls from the start, no threshold)."""
    fo = decline_onset(s.x, y, s.rel_var(), ar1=s.dense, rng=rng)
    if fo.from_start:
        return None
    return Onset(step=fo.tau, step_low=fo.ci[0], step_high=fo.ci[1], cause=s.metric)


def _test(s: Series, alpha: float, rng: np.random.Generator, n_sim: int,
          direction: int = -1) -> tuple[SeriesTest, Piecewise]:
    seg = _segmentable(s)
    y = seg.y if direction < 0 else -seg.y
    rv = seg.rel_var()
    t = decline_test(seg.x, y, rv, ar1=seg.dense, n_sim=n_sim, rng=rng)
    pw = piecewise_fit(seg.x, y, rv, ar1=seg.dense)
    falls = t.p_value < alpha
    onset = _onset_of_fall(seg, y, rng) if falls else None
    fitted = pw.predict(seg.x[[0, -1]]) * (1 if direction < 0 else -1) * s.scale
    return (SeriesTest(metric=s.metric, role=s.role, p_value=t.p_value, alpha=alpha, falls=falls, onset=onset,
                       noise=t.noise, direction=direction, first=float(fitted[0]), last=float(fitted[1])), pw)


def _rate(x: np.ndarray, y: np.ndarray, rv: np.ndarray | None, level: float = 0.95) -> tuple[float, float, float] | None:
    if x.size < 3 or np.ptp(x) == 0:
        return None
    w = np.ones_like(y) if rv is None else 1.0 / rv
    design = np.column_stack([np.ones_like(x), x])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    r = (y - design @ coef) * sw
    s2 = float(r @ r) / max(x.size - 2, 1)
    cov = np.linalg.pinv(design.T @ (design * w[:, None])) * s2
    half = sps.t.ppf(0.5 + level / 2, max(x.size - 2, 1)) * np.sqrt(max(cov[1, 1], 0.0))
    return float(coef[1]), float(coef[1] - half), float(coef[1] + half)


def _rates(s: Series, test: SeriesTest | None, axis_x: np.ndarray, per: str) -> list[TradeoffRate]:
    rv = s.rel_var()
    out = []
    segments = [("all", np.ones(s.x.size, bool))]
    if test is not None and test.falls and test.onset is not None:
        segments += [("before", s.x <= test.onset.step), ("after", s.x >= test.onset.step)]
    for name, m in segments:
        r = _rate(axis_x[m], s.y[m] * s.scale, None if rv is None else rv[m] * s.scale**2)
        if r is not None:
            out.append(TradeoffRate(s.metric, s.role, name, r[0], r[1], r[2], per, int(m.sum())))
    return out


def _label_v(pw: Piecewise, at: float) -> str:
    """improving / plateau for the verified series' segment that contains `at`."""
    for a, b, slope, se in pw.segments():
        if a <= at <= b:
            return "improving" if slope / max(se, 1e-300) > 2.0 else "plateau"
    return "plateau"


def _timeline(v_series: Series, v_pw: Piecewise, events: dict[str, Onset | None], x0: float, x1: float,
              has_gold: bool, knee: tuple[int, Onset] | None = None) -> list[RegimeSpan]:
    """Label every stretch between boundaries, then merge equal neighbours into spans with their onsets. `knee`:
    (index of a break of `v_pw`, its onset) located by the saturation model (it replaces the break's own)."""
    bounds: list[tuple[float, Onset | None]] = [(x0, None)]
    xs = v_series.x
    for j, (b, ci) in enumerate(zip(v_pw.breaks, v_pw.break_ci)):
        if knee is not None and knee[0] == j:
            bounds.append((knee[1].step, knee[1]))
            continue
        # a break between two evaluations is located no better than that gap: widen to the points around it
        lo = float(xs[max(np.searchsorted(xs, ci[0], "left") - 1, 0)])
        hi = float(xs[min(np.searchsorted(xs, ci[1], "right"), xs.size - 1)])
        bounds.append((b, Onset(step=b, step_low=min(lo, b), step_high=max(hi, b), cause=v_series.metric)))
    for on in events.values():
        if on is not None:
            bounds.append((on.step, on))
    bounds = sorted({b: o for b, o in sorted(bounds, key=lambda t: (t[0], t[1] is None))}.items())
    edges = [b for b, _ in bounds if x0 <= b < x1] + [x1]
    onsets = {b: o for b, o in bounds}
    started = {k: (x0 if e is None else e.step) for k, e in events.items()}

    def label(mid: float) -> str:
        on = {k: started[k] <= mid for k in events}
        gold, proxy, unv = on.get("held_out", False), on.get("proxy", False), on.get("never_rewarded", False)
        proxy = proxy and not on.get("proxy_recovered", False)  # the training reward rose again
        if has_gold and gold and proxy:
            return "collapse"
        if has_gold and gold:
            return "over_optimisation"
        if not has_gold and proxy:
            return "collapse"
        if unv:
            return "trade_off"
        return _label_v(v_pw, mid)

    spans: list[RegimeSpan] = []
    for a, b in zip(edges[:-1], edges[1:]):
        lab = label(0.5 * (a + b))
        if spans and spans[-1].regime == lab:
            spans[-1].end = b
        else:
            spans.append(RegimeSpan(lab, a, b, onsets.get(a) if spans else None))
    if not spans:
        spans.append(RegimeSpan(label(x0), x0, x1, None))
    return _merge_close(spans, float(np.median(np.diff(xs))) if xs.size > 1 else 0.0)


def _merge_close(spans: list[RegimeSpan], interval: float) -> list[RegimeSpan]:
    """Drop a span shorter than one evaluation interval: the data cannot tell its two transitions apart, so they
    are one, labelled by the later (more severe) regime, at the later onset."""
    i = 1
    while i < len(spans) - 1:
        a, b = spans[i].onset, spans[i + 1].onset
        if a is not None and b is not None and b.step - a.step < interval:
            spans[i - 1].end = spans[i].end
            del spans[i]
            if spans[i - 1].regime == spans[i].regime:
                spans[i - 1].end = spans[i].end
                del spans[i]
            continue
        i += 1
    return spans


def _recovery(proxy: Series, fell: Onset | None, alpha: float, rng: np.random.Generator,
              n_sim: int) -> Onset | None:
    """Where the training reward rises again after its fall (a calibrated rise test on the points after the fall's
    onset, at `alpha`), or None: a collapse whose reward recovers while held-out accuracy keeps falling is
    over-optimisation again from that point."""
    if fell is None:
        return None
    m = proxy.x >= fell.step
    if m.sum() < 20:
        return None
    x, y = proxy.x[m], -proxy.y[m]
    rv = None if proxy.n is None else (proxy.rel_var()[m])
    if decline_test(x, y, rv, ar1=proxy.dense, n_sim=n_sim, rng=rng).p_value >= alpha:
        return None
    fo = decline_onset(x, y, rv, ar1=proxy.dense, rng=rng)
    return None if fo.from_start else Onset(fo.tau, fo.ci[0], fo.ci[1], cause=f"{proxy.metric} (recovery)")


def _interval(s: Series) -> float:
    return float(np.median(np.diff(s.x))) if s.x.size > 1 else 1.0


def _group_events(events: dict[str, Onset | None], interval: float) -> dict[str, Onset | None]:
    """Onsets of different series within two evaluation intervals of each other (chained) are one change (noise
    moves each estimate by about an interval): they all take the group's most precise estimate, with the hull of
    the group's intervals (each series' interval reflects only its own model of the change)."""
    items = sorted(events.items(), key=lambda kv: -np.inf if kv[1] is None else kv[1].step)
    out: dict[str, Onset | None] = {}
    group: list[tuple[str, Onset | None]] = []

    def flush() -> None:
        if group:
            best = min((o for _, o in group), key=lambda o: -1.0 if o is None else o.step_high - o.step_low)
            if best is not None:  # the point of the most precise series, the interval of them all
                found = [o for _, o in group if o is not None]
                best = Onset(best.step, min(o.step_low for o in found), max(o.step_high for o in found),
                             cause=" + ".join(o.cause for o in found))
            out.update({k: best for k, _ in group})
            group.clear()

    for k, o in items:
        prev = group[-1][1] if group else None  # chained: each onset within two intervals of the one before
        if group and not (o is not None and prev is not None and o.step - prev.step <= 2 * interval) \
                and not (o is None and prev is None):
            flush()
        group.append((k, o))
    flush()
    return out


def _joint_onsets(events: dict[str, Onset | None], series: dict[str, Series],
                  rng: np.random.Generator) -> dict[str, Onset | None]:
    """Series whose falls `_group_events` joined into one change get one onset, located jointly
    (`joint_fall_onset`: the sum of their noise-scaled ramp fits), with its own 95% interval."""
    out = dict(events)
    groups: dict[int, list[str]] = {}
    for k, o in events.items():
        if o is not None and k in series:
            groups.setdefault(id(o), []).append(k)
    for keys in groups.values():
        if len(keys) < 2:
            continue
        segs = [_segmentable(series[k]) for k in keys]
        fo = joint_fall_onset([FallSeries(s.x, s.y, s.rel_var(), s.dense) for s in segs], rng=rng)
        if fo.from_start:
            continue
        on = Onset(fo.tau, fo.ci[0], fo.ci[1], cause=" + ".join(s.metric for s in segs) + " (joint)")
        out.update({k: on for k in keys})
    return out


def _plateau_knee(vpw: Piecewise, series: list[Series], cut: float,
                  rng: np.random.Generator) -> tuple[int, Onset] | None:
    """The improving -> plateau break of the verified fit, relocated at the knee of a saturating rise shared by the
    verified series (held-out and training reward, up to `cut`): (index of the break, its onset) or None."""
    segs = vpw.segments()
    j = next((i for i in range(len(segs) - 1) if _label_v(vpw, 0.5 * (segs[i][0] + segs[i][1])) == "improving"
              and _label_v(vpw, 0.5 * (segs[i + 1][0] + segs[i + 1][1])) == "plateau"), None)
    if j is None:
        return None
    use, names = [], []
    for s in series:
        seg = _segmentable(s)
        m = seg.x <= cut
        if m.sum() >= 6:
            rv = seg.rel_var()
            use.append(FallSeries(seg.x[m], seg.y[m], None if rv is None else rv[m], seg.dense))
            names.append(s.metric)
    if not use:
        return None
    k = saturation_onset(use, rng=rng)
    lo = segs[j][0]
    hi = segs[j + 1][1]
    if not (lo < k.tau < hi) or not k.identifiable:
        return None
    return j, Onset(k.tau, k.ci[0], k.ci[1], cause=f"{' + '.join(names)} (knee of a saturating rise)")


def _with_kl(on: Onset | None, kl: pd.DataFrame | None) -> Onset | None:
    if on is None or kl is None:
        return on
    v = _kl_at(kl, np.array([on.step, on.step_low, on.step_high]))
    return Onset(on.step, on.step_low, on.step_high, float(v[0]), float(min(v[1], v[2])), float(max(v[1], v[2])),
                 on.cause)


def _ship(series: dict[str, tuple[Series, Piecewise] | None], kl: pd.DataFrame | None) -> dict[str, Any] | None:
    main = series.get("held_out") or series.get("proxy")
    if main is None:
        return None
    s, pw = main
    steps = s.x if not s.dense else np.unique(np.linspace(s.x[0], s.x[-1], 50).round())
    seg = _segmentable(s)
    steps = steps[steps >= seg.x[0]]
    q, var = pw.predict(steps), pw.predict_se(steps) ** 2
    u = series.get("never_rewarded")
    if u is not None:
        _, upw = u
        q = q + (upw.predict(steps) - upw.predict(steps[:1]))
        var = var + upw.predict_se(steps) ** 2
    best = int(np.argmax(q))
    ok = np.flatnonzero(q >= q[best] - np.sqrt(var[best]))
    i = int(ok[0])
    k = _kl_at(kl, steps[i:i + 1])
    return {"step": float(steps[i]), "kl": None if k is None else float(k[0]), "score_metric": s.metric,
            "score": float(pw.predict(steps[i:i + 1])[0] * s.scale),
            "observed": float(s.y[np.argmin(np.abs(s.x - steps[i]))] * s.scale),
            "with_never_rewarded": u is not None}


# ----------------------------------------------------------------------------------------- diagnose
def diagnose(frame: pd.DataFrame, run: str | None = None, alpha: float = 0.05, n_sim: int = 400,
             seed: int = 0) -> RunDiagnosis:
    """Diagnose one run of a canonical frame (see the module doc). A CeilingError when nothing can be said."""
    df = normalize_frame(frame)
    if run is not None:
        df = df[df["run"] == run]
    if df.empty:
        raise CeilingError("diagnosis: the frame holds no rows for this run")
    rng = np.random.default_rng(seed)
    roles = _roles(df)
    found = {role: (_series(df, m, role) if m else None) for role, m in roles.items()}
    reasons: list[tuple[str, str]] = []
    gold, proxy, unv = found["held_out"], found["proxy"], found["never_rewarded"]
    v = gold or proxy
    if v is None:
        raise CeilingError("diagnosis: no verified score with at least 5 points (training reward or held-out accuracy)")
    if gold is None:
        reasons.append(("no_held_out", "no held-out accuracy is logged: over-optimisation cannot be told from "
                                       "collapse, and a fall of the training reward is called collapse"))
    if unv is None:
        reasons.append(("no_never_rewarded", "no never-rewarded score: the trade-off is not measured"))
    kl_name, kl, why_no_kl = _kl_axis(df)
    if why_no_kl:
        reasons.append(("no_kl_axis", why_no_kl))
    elif kl is not None and (kl["value"] < 0).any():
        reasons.append(("kl_negative", f"{kl_name} has negative values (a k1-style estimate); used as logged"))
    tested = [s for s in (gold, unv) if s is not None] or [proxy]
    a_each = alpha / len(tested)
    tests: list[SeriesTest] = []
    fits: dict[str, tuple[Series, Piecewise] | None] = {}
    events: dict[str, Onset | None] = {}
    for s in tested:
        t, pw = _test(s, a_each, rng, n_sim)
        tests.append(t)
        fits[s.role] = (s, pw)
        if t.falls:
            events[s.role] = t.onset
    if gold is not None and proxy is not None:
        t, pw = _test(proxy, alpha, rng, n_sim)
        fits["proxy"] = (proxy, pw)
        if "held_out" in events:  # the training reward decides collapse vs over-optimisation
            t.role = "proxy_check"
            tests.append(t)
            if t.falls:
                events["proxy"] = t.onset
    events = _group_events(events, _interval(gold or unv or proxy))
    events = _joint_onsets(events, {s.role: s for s in (gold, unv, proxy) if s is not None}, rng)
    recovered = _recovery(proxy, events.get("proxy"), alpha / 5, rng, n_sim) if proxy is not None else None
    if recovered is not None:
        events["proxy_recovered"] = recovered
    for role in list(events):
        events[role] = _with_kl(events[role], kl)
    vs = v
    seg = _segmentable(v)
    # improving vs plateau is read off the verified series before the first harm (after it, harm labels win)
    cut = min((e.step if e is not None else float(seg.x[0]) for e in events.values()), default=float(seg.x[-1]))
    keep = seg.x <= cut
    vx, vy, vrv = (seg.x[keep], seg.y[keep], None if seg.rel_var() is None else seg.rel_var()[keep]) \
        if keep.sum() >= 5 else (seg.x, seg.y, seg.rel_var())
    vpw = piecewise_fit(vx, vy, vrv, ar1=seg.dense)
    if v.role not in fits:
        fits[v.role] = (v, piecewise_fit(seg.x, seg.y, seg.rel_var(), ar1=seg.dense))
    x0, x1 = float(seg.x[0]), float(seg.x[-1])
    knee = _plateau_knee(vpw, [s for s in (gold, proxy) if s is not None], cut, rng)
    if knee is not None:
        vpw.breaks[knee[0]] = knee[1].step
    spans = _timeline(vs, vpw, events, x0, x1, gold is not None, knee)
    for s in spans:
        s.onset = _with_kl(s.onset, kl)
    per = f"nat of {kl_name}" if kl_name else "100 steps"
    tradeoff: list[TradeoffRate] = []
    for s in (unv, gold):
        if s is None:
            continue
        ax = _kl_at(kl, s.x) if kl is not None else s.x / 100.0
        tradeoff += _rates(s, next((t for t in tests if t.metric == s.metric), None), ax, per)
    degeneracy: list[SeriesTest] = []
    present = [d for d in DEGENERACY if _series(df, d[0], d[2]) is not None]
    for m, sign, label, (kind, size) in present:
        s = _series(df, m, label, bounded=m != "length/mean")
        t, _ = _test(s, alpha / len(present), rng, n_sim, direction=sign)
        change = sign * ((t.last or 0.0) - (t.first or 0.0))
        if kind == "rel":
            change /= max(abs(t.first or 0.0), 1e-12)
        if t.falls and change < size:
            t.falls, t.onset = False, None
            t.noise += f"; a change of {change:.2g} is below the {size:g} ({'absolute' if kind == 'abs' else 'relative'}) that counts"
        t.onset = _with_kl(t.onset, kl)
        degeneracy.append(t)
    first_harm = next((sp for sp in spans if sp.regime in {"trade_off", "over_optimisation", "collapse"}), None)
    budget = None
    if first_harm is not None and kl is not None:
        on = first_harm.onset
        budget = ({"regime": first_harm.regime, "kl": on.kl, "kl_low": on.kl_low, "kl_high": on.kl_high,
                   "step": on.step, "metric": kl_name, "from_start": False} if on is not None else
                  {"regime": first_harm.regime, "kl": None, "kl_low": None, "kl_high": None, "step": x0,
                   "metric": kl_name, "from_start": True})
    ship = _ship(fits, kl)
    data = {"x_min": x0, "x_max": x1, "n_points": {r: (None if s is None else int(s.x.size)) for r, s in found.items()},
            "percent": {r: bool(s.scale == 100) for r, s in found.items() if s is not None},
            "n_known": {r: bool(s.n is not None) for r, s in found.items() if s is not None},
            "metrics": {r: (None if s is None else s.metric) for r, s in found.items()}}
    return RunDiagnosis(regime=spans[-1].regime, sequence=spans, tradeoff=tradeoff, tests=tests,
                        degeneracy=degeneracy, ship=ship, kl_budget=budget, roles=roles, axis=kl_name or "step",
                        alpha=alpha, reasons=reasons, data=data)
