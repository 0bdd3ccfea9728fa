"""Early warning while a run trains: sequential change detection on the signals the run diagnosis reads.

    mon = Monitor(MonitorConfig(arl0=10_000))       # expected steps between false alarms on a steady run
    for step, values in stream:                       # values: {"reward": 0.61, "entropy": 0.42, ...}
        for alarm in mon.update(step, values):
            print(alarm.line())                       # "step 231 ALARM collapse: training reward fell ..."
    mon.feed(frame)                                   # or: the new rows of a growing canonical frame

The monitor reads a run one step at a time and raises an `Alarm` when a signal *turns*: falls (or rises,
for the signals where a rise is the harm) relative to the run's own recent level or trend, not merely when
it changes. It never looks ahead, so what it says at step t is what a watcher would have seen at step t.

Signals (`SIGNALS`; streams read from a canonical frame by `streams`): the training reward, the held-out
accuracy of the trained task and a never-rewarded score (sparse evaluations), the policy entropy (a fall and
a rise), the completion length, KL to the base and the duplicate share of completions.

Detector (one per signal and harmful direction): a one-sided CUSUM on standardised innovations.

1. Reference. The forecast f_t is the 20%-trimmed mean of the `window` points before the `guard` most
   recent ones (dense: 100 and 10 observations; sparse evaluations: 6 and 1), plus, for the signals whose
   healthy course drifts in the harmful direction (entropy falls, KL and length grow, duplicates creep
   up), their least-squares slope over the same points, clipped so that only a drift *in the harmful
   direction* is followed: a rise is never extrapolated by a drop detector, so a healthy run's early rise
   that levels off is not a drop. The reward and the held-out scores use the level only: a steady fall of
   the reward is what must be caught. The guard keeps a turn out of the reference it is measured against
   for its first observations. Entropy, length and KL are watched on the log scale (relative changes).
   (An earlier design froze the reference while the CUSUM was above 0; simulation showed that this turns
   a reference that happens to sit high into a permanent bias, and its false-alarm rate did not fall
   with h as a CUSUM's should.)
2. Noise. Dense signals: the residual r_t = s (y_t - f_t) (s = +1 in the harmful direction) is treated as
   AR(1). phi and sigma are re-estimated every 5 observations from in-sample residuals: the past points
   before the guard (up to 3 windows), each window detrended by its own least-squares line (so a healthy
   trend is not mistaken for slow noise), their lag-1 autocorrelation pooled over the windows with the
   small-sample correction for two fitted coefficients per window, raised by
   PHI_MARGIN = 2 standard errors sqrt((1 - phi^2) / n), clipped to [0, 0.95], and the rms of the
   whitened residuals, winsorised at 3.5 MAD so a first point at the base far below the rest or one spike
   does not set the scale. An underestimated phi leaves slow noise in the whitened series that a CUSUM
   accumulates (its false alarms then barely fall with h), an overestimate only costs power: the margin
   made the simulated run lengths grow with h as they should across phi = 0-0.8. Until 30 reference points
   exist, phi and sigma come from first differences (a trend cancels there: their lag-1 autocorrelation
   is (phi - 1) / 2) with a wider margin. Sparse (held-out) signals: the binomial sd sqrt(p (1 - p) / n)
   at the reference level p with n from the frame's `n` column (else the evaluations' own scatter).
   Either way z is divided by sqrt(1 + v), v the reference's own variance relative to one point's.
3. Statistic. z_t = (r_t - phi max(r_{t-1}, 0)) / sigma (about iid N(0, 1) in control; clipped to +-8)
   and
   S_t = max(0, S_{t-1} + z_t - k). A level change d shifts z by about d (1 - phi) / sigma = d / sigma_LR,
   so `k` = 0.5 is tuned to a turn of about one long-run sd. A residual on the harmless side is not
   whitened against: under AR(1) a return from far on the harmless side (entropy coming down after a
   blow-up, seen by the entropy-collapse detector; a steep early KL trend that the forecast overshoots) is
   a large innovation in the harmful direction, but it is no turn. max(r_{t-1}, 0) never makes z larger
   than the whitened one, so it only lowers the false-alarm rate (the calibration includes it).
4. Alarm when S_t > h. The onset estimate is the first point of the excursion (S last at 0). After an
   alarm the detector starts a fresh burn-in (15 observations, or 2 evaluations) on the new level, so a
   second turn alarms again. The first evaluation of a run is the base (step 0 or 1, or below the next):
   it is no reference.

Threshold from a false-alarm rate. `MonitorConfig.arl0` is the expected number of steps between false
alarms of the whole monitor on a run that does not change. The rate 1 / arl0 is split evenly over the m
detectors (each gets an ARL0 of arl0 * m steps, converted to its own observations by its logging interval),
and h is read from `ARL_TABLE`: for each detector family (`level`: reward; `trend`: entropy, length, KL,
duplicates; `sparse`: evaluations) log ARL0 = a + b h, fitted by least squares to simulated run lengths of
the detector *as implemented* (estimated reference, phi and sigma, guard, burn-in) on streams
that do not change: AR(1) noise with phi = 0, 0.3, 0.6, 0.8 for dense families (a steady drift in the
harmful direction for `trend`), binomial evaluations (n = 200-1000, p = 0.1-0.9) for `sparse`. At every h
the worst phi and the worse of the long-run ARL and the one implied by alarms within the first `early`
observations (where estimates are poorest) is kept, so the stated rate holds across them. Run lengths are
simulated up to ARL0 of a few thousand observations, where log ARL0 is already linear in h (as Siegmund's
(1985) closed form says for a plain CUSUM), and the line is used beyond. `calibrate()` regenerates the
table (`python -m ceiling.fit.monitor --calibrate`, about a minute on one core); tests/test_watch.py checks
the stated rate against fresh simulations.

Alarm kinds (`KINDS`):
- `collapse`: the training reward falls (held-out evaluations fall with it when they exist);
- `over_optimisation`: held-out accuracy on the trained task falls while the training reward holds;
- `trade_off`: a never-rewarded score falls while the verified scores hold or rise;
- `entropy_collapse` / `entropy_blowup`: the policy entropy falls / rises against its own trend;
- `length_blowup`: completion length grows against its trend;
- `kl_blowup`: KL to the base grows against its trend;
- `degeneracy`: the duplicate share of completions rises.
Each alarm says what fired, by how much, over how many steps, and what the other signals did meanwhile, in
words ("policy entropy fell 60% in 20 steps while the training reward held; duplicate share 0.40").
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ceiling.errors import CeilingError

# --------------------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalSpec:
    """One monitored signal and the direction in which a change is harmful."""

    name: str  # detector name, used in logger keys ("reward", "entropy_down", ...)
    stream: str  # the stream it reads (see `streams`): reward, eval, unverified, entropy, length, kl, duplicates
    label: str  # words for the evidence ("training reward", "policy entropy", ...)
    direction: str  # "down" (a fall is harmful) or "up" (a rise is harmful)
    kind: str  # alarm kind when this detector fires on its own
    family: str  # calibration family: "level", "trend" or "sparse"
    log: bool = False  # work on log(value): relative changes (entropy, length, KL)

    @property
    def sparse(self) -> bool:
        return self.family == "sparse"

    @property
    def trend(self) -> bool:
        return self.family == "trend"


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("reward", "reward", "training reward", "down", "collapse", "level"),
    SignalSpec("eval", "eval", "held-out accuracy", "down", "over_optimisation", "sparse"),
    SignalSpec("unverified", "unverified", "never-rewarded score", "down", "trade_off", "sparse"),
    SignalSpec("entropy_down", "entropy", "policy entropy", "down", "entropy_collapse", "trend", log=True),
    SignalSpec("entropy_up", "entropy", "policy entropy", "up", "entropy_blowup", "trend", log=True),
    SignalSpec("length", "length", "completion length", "up", "length_blowup", "trend", log=True),
    SignalSpec("kl", "kl", "KL to the base", "up", "kl_blowup", "trend", log=True),
    SignalSpec("duplicates", "duplicates", "duplicate share", "up", "degeneracy", "trend"),
)
SIGNAL_BY_NAME = {s.name: s for s in SIGNALS}
STREAMS = ("reward", "eval", "unverified", "entropy", "length", "kl", "duplicates")
KINDS = ("collapse", "over_optimisation", "trade_off", "entropy_collapse", "entropy_blowup", "length_blowup",
         "kl_blowup", "degeneracy")
HARMFUL_KINDS = ("collapse", "over_optimisation", "trade_off")  # the diagnosis' harmful regimes


def parse_kinds(spec: str | Iterable[str] | None, where: str = "alarm kinds") -> set[str]:
    """A set of alarm kinds from 'collapse,over_optimisation', a list, 'any' (all) or None (none); a one-line
    CeilingError naming `where` (e.g. the flag) for an unknown kind."""
    if spec is None:
        return set()
    names = {k.strip() for k in (spec.split(",") if isinstance(spec, str) else spec) if k.strip()}
    if "any" in names:
        return set(KINDS)
    bad = sorted(names - set(KINDS))
    if bad:
        raise CeilingError(f"{where}: unknown alarm kind(s) {', '.join(bad)}; known: any, {', '.join(KINDS)}")
    return names
PHI_MARGIN = 2.0  # standard errors added to the estimated AR(1) coefficient (see the module docstring)

# --------------------------------------------------------------------------------------------------------
# Calibration: log ARL0 = a + b h per detector family (made by `calibrate`; see the module docstring)
# --------------------------------------------------------------------------------------------------------

# family -> (a, b, h_lo, h_hi): the fit's intercept and slope, and the h range simulated
ARL_TABLE: dict[str, tuple[float, float, float, float]] = {  # calibrate() with its defaults, seed 0
    "level": (2.5658, 1.0171, 2.25, 5.5),
    "trend": (3.1796, 0.6844, 2.0, 7.75),
    "sparse": (0.8542, 1.1938, 2.5, 6.25),
}


def threshold_for(arl0_obs: float, family: str) -> float:
    """CUSUM threshold h giving an expected `arl0_obs` observations between false alarms of one detector."""
    a, b, _, _ = ARL_TABLE[family]
    return max((math.log(max(arl0_obs, 2.0)) - a) / b, 0.5)


def arl_for(h: float, family: str) -> float:
    """Expected observations between false alarms of one detector at threshold h (the table's line)."""
    a, b, _, _ = ARL_TABLE[family]
    return math.exp(a + b * h)


# --------------------------------------------------------------------------------------------------------
# Robust helpers
# --------------------------------------------------------------------------------------------------------


def trimmed_mean(values: Iterable[float], trim: float = 0.2) -> float:
    """Mean of the values after dropping the lowest and highest `trim` fraction."""
    v = sorted(values)
    cut = int(len(v) * trim)
    core = v[cut:len(v) - cut] or v
    return sum(core) / len(core)


def mad_sd(x: np.ndarray) -> float:
    """Robust sd: 1.4826 times the median absolute deviation from the median."""
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def winsorised(x: np.ndarray, c: float = 3.5) -> np.ndarray:
    """x centred on its median and clipped at c MADs (unchanged when the MAD is 0)."""
    s = mad_sd(x)
    return np.clip(x, np.median(x) - c * s, np.median(x) + c * s) if s > 0 else x


def ar1_from_differences(y: np.ndarray, margin: float = 2.2) -> tuple[float, float]:
    """(phi, innovation sd) of a short AR(1) series around a locally linear mean, from its first differences.

    d_t = y_t - y_{t-1} has lag-1 autocorrelation (phi - 1) / 2 and variance 2 sigma^2 / (1 + phi); a linear
    trend only shifts its mean. phi is raised by `margin` standard errors (conservative: see the module
    docstring) and clipped to [0, 0.95].
    """
    d = np.diff(np.asarray(y, dtype=float))
    if d.size < 4:
        return 0.0, float("nan")
    c = winsorised(d - np.median(d))
    denom = float(np.dot(c, c))
    rho = float(np.dot(c[1:], c[:-1]) / denom) if denom > 0 else 0.0
    phi = min(max(1.0 + 2.0 * rho, 0.0), 0.95)
    phi = min(phi + margin * math.sqrt(max(1.0 - phi * phi, 0.05) / d.size) * 2.0, 0.95)
    sigma = math.sqrt(max(denom / c.size * (1.0 + phi) / 2.0, 0.0))
    return phi, sigma


def ar1_pooled(blocks: list[np.ndarray], margin: float = 2.0, params: int = 2) -> tuple[float, float]:
    """(phi, innovation sd) of regression residuals treated as AR(1), pooled over blocks (each the residuals
    of its own fit).

    phi: the pooled lag-1 autocorrelation with the small-sample correction for `params` fitted coefficients
    per block (Kendall's (1 + 3 phi) / n for a mean, per coefficient, n the mean block length), raised by
    `margin` standard errors sqrt((1 - phi^2) / N) (N all points), clipped to [0, 0.95]. sigma: the rms of
    r_t - phi r_{t-1} within blocks. All are winsorised at 3.5 MAD of the pooled residuals.
    """
    rs = [np.asarray(b, dtype=float) for b in blocks if len(b) >= 3]
    flat = np.concatenate(rs)
    mid = float(np.median(flat))
    s = float(1.4826 * np.median(np.abs(flat - mid)))
    if s > 0:  # winsorised at 3.5 MAD (one scale for all blocks)
        rs = [np.clip(r, mid - 3.5 * s, mid + 3.5 * s) for r in rs]
    rs = [r - r.mean() for r in rs]
    total = sum(r.size for r in rs)
    denom = sum(float(np.dot(r, r)) for r in rs)
    lag = sum(float(np.dot(r[1:], r[:-1])) for r in rs)
    rho = lag / denom if denom > 0 else 0.0
    rho += params * (1.0 + 3.0 * rho) / (total / len(rs))
    phi = min(max(rho, 0.0), 0.95)
    phi = min(max(phi + margin * math.sqrt(max(1.0 - phi * phi, 0.05) / total), 0.0), 0.95)
    sq = sum(float(np.sum((r[1:] - phi * r[:-1]) ** 2)) for r in rs)
    return phi, math.sqrt(sq / max(total - len(rs), 1))


# --------------------------------------------------------------------------------------------------------
# One detector
# --------------------------------------------------------------------------------------------------------


@dataclass
class Excursion:
    """What a detector knows when it raises the alarm."""

    onset: int  # step of the first point of the excursion (the change's estimated start)
    alarm: int  # step at which S crossed h
    reference: float  # the forecast at the onset, in the signal's own units
    recent: float  # mean of the last few values (up to 5; geometric on the log scale), in the signal's own units
    points: int  # observations in the excursion
    statistic: float  # S at the alarm
    threshold: float  # h


@dataclass
class Detector:
    """One-sided CUSUM on standardised innovations of one signal (see the module docstring)."""

    spec: SignalSpec  # which signal and which direction
    h: float  # threshold on S_t
    k: float = 0.5  # allowance of the CUSUM, in innovation sds
    window: int = 100  # points the reference level (and trend) is computed from (dense)
    guard: int = 10  # the most recent points left out of the reference (dense): a turn is not absorbed
    burn_in: int = 15  # observations before the CUSUM runs (dense)
    sparse_window: int = 6  # evaluations the reference of a sparse signal is computed from
    sparse_guard: int = 1  # the most recent evaluations left out of a sparse reference
    sparse_burn_in: int = 2  # evaluations before the CUSUM runs, after the first one (the base)
    refit_every: int = 5  # re-estimate phi and sigma every this many observations
    noise_blocks: int = 3  # windows of past points (each detrended on its own) behind phi and sigma

    def __post_init__(self) -> None:
        self.sign = 1.0 if self.spec.direction == "up" else -1.0
        self.reset()

    def reset(self, after_alarm: bool = False) -> None:
        """Start over: a fresh burn-in on whatever comes next."""
        g, w = (self.sparse_guard, self.sparse_window) if self.spec.sparse else (self.guard, self.window)
        self.points: deque[tuple[int, float]] = deque(maxlen=w + g + 1)  # (step, transformed value)
        self.noise: deque[tuple[int, float]] = deque(maxlen=self.noise_blocks * w + g)  # for phi and sigma
        self.seen = 0
        self.S = 0.0
        self.prev_r: float | None = None
        self.since_refit = 0
        self.phi, self.sigma = 0.0, float("nan")
        self.excursion: list[tuple[int, float]] = []  # (step, raw value) while S > 0
        self.onset_forecast = float("nan")
        self.after_alarm = after_alarm  # a re-armed detector keeps its first point (not a base)
        self.suspicious = False

    # -- scale ---------------------------------------------------------------------------------------------
    def transform(self, value: float) -> float:
        return math.log(value) if self.spec.log else value

    def untransform(self, y: float) -> float:
        return math.exp(y) if self.spec.log else y

    def accepts(self, value: float) -> bool:
        """A value this detector can read (finite; positive on the log scale)."""
        return math.isfinite(value) and (value > 0 or not self.spec.log)

    @property
    def ready(self) -> bool:
        """The CUSUM is running (the burn-in is over)."""
        return self.seen > (self.sparse_burn_in + 1 if self.spec.sparse else self.burn_in) and math.isfinite(self.sigma)

    @property
    def state(self) -> str:
        """burn_in | watching | suspicious: S went above 3/4 of the threshold and has not yet fallen below a
        quarter of it (the hysteresis keeps a statistic hovering near the line from flickering)."""
        if not self.ready:
            self.suspicious = False
            return "burn_in"
        if self.S > 0.75 * self.h:
            self.suspicious = True
        elif self.S < self.h / 4:
            self.suspicious = False
        return "suspicious" if self.suspicious else "watching"

    # -- reference -----------------------------------------------------------------------------------------
    def reference(self) -> tuple[list[tuple[int, float]], int]:
        """The points the forecast is made from (all but the `guard` most recent), and the guard used."""
        pts = list(self.points)
        g = self.sparse_guard if self.spec.sparse else self.guard
        g = min(g, max(len(pts) - (2 if self.spec.sparse else 5), 0))  # a short history keeps enough points
        return (pts[:len(pts) - g] if g else pts), g

    def forecast(self, step: int) -> tuple[float, float]:
        """(forecast of the transformed value at `step`, its variance relative to one point's noise)."""
        pts, _ = self.reference()
        ys = [y for _, y in pts]
        m = len(ys)
        level = trimmed_mean(ys)
        if not self.spec.trend or m < 5:
            return level, 1.0 / m
        xs = np.array([s for s, _ in pts], dtype=float)
        xc = xs - xs.mean()
        denom = float(np.dot(xc, xc))
        slope = float(np.dot(xc, np.array(ys) - level) / denom) if denom > 0 else 0.0
        slope = max(slope, 0.0) if self.sign > 0 else min(slope, 0.0)
        horizon = step - float(xs.mean())
        spacing = max(float(xs[-1] - xs[0]) / max(m - 1, 1), 1.0)
        return level + slope * horizon, 1.0 / m + (horizon / spacing) ** 2 * 12.0 / (m ** 3)

    def _refit(self) -> None:
        """phi and sigma from in-sample residuals: the points before the guard (up to `noise_blocks` windows),
        each window detrended by its own least-squares line (no extrapolation error, and a healthy trend is
        not mistaken for slow noise), lag-1 products and squares pooled over the windows; from differences
        while fewer than 30 such points exist."""
        n_pts = max(len(self.noise) - self.guard, 0)
        if n_pts >= 30:
            arr = np.array(self.noise, dtype=float)[:n_pts]
            resid = []
            for end in range(n_pts, 0, -self.window):
                b = arr[max(end - self.window, 0):end]
                if len(b) < 30:
                    continue
                xc = b[:, 0] - b[:, 0].mean()
                yc = b[:, 1] - b[:, 1].mean()
                denom = float(np.dot(xc, xc))
                resid.append(yc - (float(np.dot(xc, yc)) / denom if denom > 0 else 0.0) * xc)
            self.phi, self.sigma = ar1_pooled(resid, margin=PHI_MARGIN, params=2)
        elif len(self.points) >= 6:
            self.phi, self.sigma = ar1_from_differences(np.array([y for _, y in self.points]))
        if math.isfinite(self.sigma):
            ys = np.array([y for _, y in self.points])
            self.sigma = max(self.sigma, 1e-6 * max(float(np.median(np.abs(ys))), 1e-3), 1e-12)

    def _sparse_sd(self, ref: float, n: float | None) -> float:
        """Sd of one held-out evaluation (binomial with n problems, else the evaluations' own scatter)."""
        if n is not None and n > 0:
            p = min(max(ref, 0.5 / n), 1.0 - 0.5 / n)
            return math.sqrt(p * (1.0 - p) / n)
        ys = np.array([y for _, y in self.points])
        sd = mad_sd(np.diff(ys)) / math.sqrt(2.0) if ys.size >= 4 else float("nan")
        return max(sd, 0.005) if math.isfinite(sd) else sd

    # -- one observation ---------------------------------------------------------------------------------
    def update(self, step: int, value: float, n: float | None = None) -> tuple[float | None, Excursion | None]:
        """Read one observation; returns (z or None during burn-in, the excursion when the alarm fires)."""
        if not self.accepts(value):
            return None, None
        y = self.transform(value)
        self.seen += 1
        if self.spec.sparse:
            if self.seen == 2 and not self.after_alarm and (self.points[0][0] <= 1 or self.points[0][1] < y):
                self.points.popleft()  # the first evaluation, the base (step 0 or 1, or below the next), is no reference
            if self.seen <= self.sparse_burn_in + 1:
                self.points.append((step, y))
                if self.seen == self.sparse_burn_in + 1:
                    self.sigma = 1.0  # ready: the sd itself is binomial per point
                return None, None
            f, rel_var = self.forecast(step)
            sd = self._sparse_sd(self.untransform(f), n)
            self.points.append((step, y))
            if not (math.isfinite(sd) and sd > 0):
                return None, None
            z = self.sign * (y - f) / (sd * math.sqrt(1.0 + rel_var))
            return z, self._cusum(step, value, f, z)
        if not self.ready:
            self.points.append((step, y))
            self.noise.append((step, y))
            if self.seen >= self.burn_in:
                self._refit()
                if math.isfinite(self.sigma):
                    self.prev_r = self.sign * (y - self.forecast(step)[0])
            return None, None
        f, rel_var = self.forecast(step)
        r = self.sign * (y - f)
        prev = max(self.prev_r if self.prev_r is not None else 0.0, 0.0)  # see the module docstring, 3.
        z = (r - self.phi * prev) / (self.sigma * math.sqrt(1.0 + rel_var))
        self.prev_r = r
        self.points.append((step, y))
        self.noise.append((step, y))
        self.since_refit += 1
        if self.since_refit >= self.refit_every:
            self._refit()
            self.since_refit = 0
        return z, self._cusum(step, value, f, z)

    def _cusum(self, step: int, value: float, f: float, z: float) -> Excursion | None:
        z = max(min(z, 8.0), -8.0)  # one wild point cannot raise the alarm on its own
        self.S = max(0.0, self.S + z - self.k)
        if self.S <= 0.0:
            self.excursion = []
            return None
        if not self.excursion:
            self.onset_forecast = self.untransform(f)
        self.excursion.append((step, value))
        if self.S <= self.h:
            return None
        exc = Excursion(onset=self.excursion[0][0], alarm=step, reference=self.onset_forecast,
                        recent=self.untransform(float(np.mean([self.transform(v) for _, v in self.excursion[-5:]]))),
                        points=len(self.excursion),
                        statistic=self.S, threshold=self.h)
        self.reset(after_alarm=True)
        return exc


# --------------------------------------------------------------------------------------------------------
# Streams from a canonical frame
# --------------------------------------------------------------------------------------------------------

# stream -> candidate metrics in order; "eval:" = rows of eval.csv (our run dirs), "train:" = any other rows
STREAM_SOURCES: dict[str, tuple[str, ...]] = {
    "reward": ("train:verified/reward", "raw/reward/mean"),
    "eval": ("verified/eval_acc", "eval:verified/reward"),
    "unverified": ("unverified/score",),
    "entropy": ("train:policy/entropy", "raw/policy/entropy"),
    "length": ("train:length/mean", "raw/length/mean"),
    "kl": ("train:kl/policy_base_k3", "train:kl/policy_base_k3_token", "train:kl/policy_base_k1",
           "train:kl/logged", "raw/kl/policy_base_k3_seq"),
    "duplicates": ("train:diversity/duplicate_share", "eval:diversity/duplicate_share"),
}
AGGREGATE_FAMILIES = ("", "all", "verified", "unverified")
PROPORTIONS = ("reward", "eval", "unverified", "duplicates")  # streams in [0, 1] (or percent, rescaled)
LOG_STREAMS = ("entropy", "length", "kl")  # streams whose changes are relative (geometric means in the words)


def streams(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The monitored streams of one run's canonical frame: stream -> DataFrame(step, value, n), one row a step.

    Per stream the first candidate of `STREAM_SOURCES` with data wins. Aggregate rows only (family empty,
    `all`, `verified` or `unverified`; no pass@k rows). In our run directories the training reward is
    `raw/reward/mean` and the held-out accuracy eval.csv's `verified/reward` (family `verified`). A score
    logged in percent (values above 1.5, none above 100) is divided by 100; `df.attrs["scale"]` says so.
    """
    if frame.empty:
        return {}
    df = frame
    if "k" in df.columns:
        df = df[df["k"].isna()]
    if "family" in df.columns:
        df = df[df["family"].isna() | df["family"].astype(object).isin(AGGREGATE_FAMILIES)]
    from_eval = (df["source_key"].astype(object) == "eval.csv") if "source_key" in df.columns else \
        pd.Series(False, index=df.index)
    out: dict[str, pd.DataFrame] = {}
    for stream, candidates in STREAM_SOURCES.items():
        for cand in candidates:
            where, _, metric = cand.rpartition(":")
            rows = df["metric"] == metric
            if where == "eval":
                rows &= from_eval
            elif where == "train":
                rows &= ~from_eval
            sel = df.loc[rows, ["step", "value"] + (["n"] if "n" in df.columns else [])]
            sel = sel[np.isfinite(sel["value"].astype(float))]
            if sel.empty:
                continue
            sel = sel.drop_duplicates("step", keep="last").sort_values("step", kind="stable")
            if "n" not in sel.columns:
                sel = sel.assign(n=np.nan)
            sel = sel.reset_index(drop=True)[["step", "value", "n"]]
            scale = 1.0
            if stream in PROPORTIONS and sel["value"].min() >= 0 and 1.5 < sel["value"].max() <= 100:
                scale = 100.0  # logged in percent (kept as logged by ingest): read as a proportion
                sel["value"] = sel["value"] / scale
            sel.attrs["scale"] = scale
            out[stream] = sel
            break
    return out


# --------------------------------------------------------------------------------------------------------
# The monitor
# --------------------------------------------------------------------------------------------------------


@dataclass
class MonitorConfig:
    """Settings of a `Monitor` (the defaults are the calibrated ones; see the module docstring)."""

    arl0: float = 10_000.0  # expected steps between false alarms of the whole monitor on a run that does not change
    signals: tuple[str, ...] = tuple(s.name for s in SIGNALS)  # detectors to run (names in SIGNALS)
    k: float = 0.5  # CUSUM allowance of dense detectors, in innovation sds
    k_sparse: float = 0.5  # CUSUM allowance of sparse (held-out) detectors, in binomial sds

    def validate(self) -> MonitorConfig:
        bad = [s for s in self.signals if s not in SIGNAL_BY_NAME]
        if bad:
            raise ValueError(f"unknown signal(s) {', '.join(bad)}; known: {', '.join(SIGNAL_BY_NAME)}")
        if not self.arl0 > 1:
            raise ValueError(f"arl0 must be > 1 step, got {self.arl0}")
        return self


@dataclass
class Alarm:
    """One alarm: which turn, when, and the evidence in words."""

    step: int  # step at which the alarm fired
    kind: str  # one of KINDS
    signal: str  # the detector that fired (SIGNALS name)
    onset: int  # estimated start of the change (first step of the CUSUM excursion)
    evidence: str  # what moved, by how much, and what the other signals did, in words
    statistic: float  # CUSUM statistic at the alarm
    threshold: float  # its threshold h
    reference: float = float("nan")  # the signal's forecast at the onset (its own units; proportions for scores)
    level: float = float("nan")  # the mean of its latest values at the alarm

    def line(self) -> str:
        return f"step {self.step}: ALARM {self.kind} ({self.signal}, from step {self.onset}): {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Recovery:
    """An alarmed signal that came back to its level before the change."""

    step: int  # step at which it was seen back
    alarm: Alarm  # the alarm it closes
    evidence: str  # words

    def line(self) -> str:
        return (f"step {self.step}: recovered: {self.evidence} (the {self.alarm.kind} alarm of step "
                f"{self.alarm.step})")


class Monitor:
    """Sequential change detection over a run's streams (see the module docstring)."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = (config or MonitorConfig()).validate()
        self.detectors: dict[str, Detector] = {}
        self.series: dict[str, list[tuple[int, float]]] = {s: [] for s in STREAMS}  # everything seen
        self.last_step: dict[str, int] = {}  # per stream: the last step read
        self.alarms: list[Alarm] = []
        self.recoveries: list[Recovery] = []  # alarms whose signal came back (see `_check_recovery`)
        self.open: list[Alarm] = []  # alarms not yet recovered
        self.scales: dict[str, float] = {}  # stream -> 100 for scores logged in percent (for the words)
        self.step: int | None = None  # the latest step read (any stream)
        self.m = len(self.config.signals)

    # -- thresholds ---------------------------------------------------------------------------------------
    def _interval(self, stream: str) -> float:
        """Median steps between a stream's observations (its logging interval)."""
        pts = self.series[stream]
        if len(pts) < 3:
            return 1.0
        steps = np.array([s for s, _ in pts[-50:]], dtype=float)
        return max(float(np.median(np.diff(steps))), 1.0)

    def threshold(self, spec: SignalSpec, stream_interval: float = 1.0) -> float:
        """h of one detector: its share arl0 * m of the false-alarm budget, in its own observations."""
        return threshold_for(self.config.arl0 * self.m / stream_interval, spec.family)

    def _detector(self, spec: SignalSpec) -> Detector:
        det = self.detectors.get(spec.name)
        if det is None:
            cfg = self.config
            det = Detector(spec, h=self.threshold(spec, self._interval(spec.stream)),
                           k=cfg.k_sparse if spec.sparse else cfg.k)
            self.detectors[spec.name] = det
        return det

    # -- reading --------------------------------------------------------------------------------------------
    def update(self, step: int, values: Mapping[str, Any]) -> list[Alarm]:
        """Read one step: `values` maps stream names (STREAMS) to a value or a (value, n) pair. Returns new alarms."""
        step = int(step)
        new: list[Alarm] = []
        unknown = [k for k in values if k not in self.series]
        if unknown:
            raise ValueError(f"unknown stream {unknown[0]!r}; known: {', '.join(STREAMS)}")
        for stream in sorted(values, key=STREAMS.index):  # the reward first: evaluations are judged against it
            v = values[stream]
            value, n = (v if isinstance(v, tuple) else (v, None))
            if value is None:
                continue
            value = float(value)
            n = None if n is None or not np.isfinite(n) else float(n)
            if not math.isfinite(value) or (stream in self.last_step and step <= self.last_step[stream]):
                continue
            self.series[stream].append((step, value))
            self.last_step[stream] = step
            for spec in SIGNALS:
                if spec.stream != stream or spec.name not in self.config.signals:
                    continue
                det = self._detector(spec)
                if det.seen == det.burn_in and not spec.sparse:  # the logging interval is known by now
                    det.h = self.threshold(spec, self._interval(stream))
                if spec.sparse and det.seen == det.sparse_burn_in:
                    det.h = self.threshold(spec, self._interval(stream))
                _, exc = det.update(step, value, n)
                if exc is not None:
                    new.append(self._alarm(spec, exc))
            self._check_recovery(stream, step)
        self.step = step if self.step is None else max(self.step, step)
        self.alarms.extend(new)
        self.open.extend(new)
        return new

    def _check_recovery(self, stream: str, step: int) -> None:
        """An open alarm on `stream` is recovered when the mean of its latest points (5 dense, 2 sparse)
        since the alarm is back within a quarter of the move from the pre-change reference."""
        for alarm in list(self.open):
            spec = SIGNAL_BY_NAME[alarm.signal]
            if spec.stream != stream:
                continue
            since = [v for s, v in self.series[stream] if s > alarm.step]
            need = 2 if spec.sparse else 5
            if len(since) < need:
                continue
            recent = np.array(since[-need:])
            now = float(np.exp(np.mean(np.log(recent)))) if stream in LOG_STREAMS and (recent > 0).all() \
                else float(np.mean(recent))
            if abs(now - alarm.reference) <= 0.25 * abs(alarm.level - alarm.reference):
                self.open.remove(alarm)
                self.recoveries.append(Recovery(step, alarm, f"{spec.label} is back to "
                                                             f"{_num(now, self.scales.get(stream, 1.0))}"))

    def feed(self, frame: pd.DataFrame) -> list[Alarm]:
        """Read every row of a canonical frame (one run) past what was read before, in step order."""
        return self.feed_streams(streams(frame))

    def feed_streams(self, data: Mapping[str, pd.DataFrame]) -> list[Alarm]:
        """`feed` for streams already extracted (`streams(frame)`): the rows past what was read, in step order."""
        self.note_scales(data)
        new: list[Alarm] = []
        for step, values in self.new_rows(data):
            new.extend(self.update(step, values))
        return new

    def note_scales(self, data: Mapping[str, pd.DataFrame]) -> None:
        """Remember which streams are logged in percent (`streams` sets df.attrs["scale"]), for the words."""
        for stream, df in data.items():
            self.scales[stream] = float(df.attrs.get("scale", 1.0))

    def new_rows(self, data: Mapping[str, pd.DataFrame]) -> list[tuple[int, dict[str, tuple[float, float | None]]]]:
        """The rows of `data` past what each stream has read, grouped by step: [(step, {stream: (value, n)})]."""
        by_step: dict[int, dict[str, tuple[float, float | None]]] = {}
        for stream, df in data.items():
            steps = df["step"].to_numpy()
            last = self.last_step.get(stream)
            i = 0 if last is None else int(np.searchsorted(steps, last, side="right"))  # streams are sorted by step
            for s, v, n in zip(steps[i:], df["value"].to_numpy(dtype=float)[i:], df["n"].to_numpy(dtype=float)[i:]):
                by_step.setdefault(int(s), {})[stream] = (float(v), None if not math.isfinite(n) else float(n))
        return sorted(by_step.items())

    # -- evidence -----------------------------------------------------------------------------------------
    def _change(self, stream: str, onset: int, now: int) -> tuple[str, float, float] | None:
        """(held | rose | fell, value before the onset, value since) of a stream over [onset, now]."""
        pts = self.series.get(stream) or []
        before = np.array([v for s, v in pts if s < onset][-30:])
        after = np.array([v for s, v in pts if onset <= s <= now])
        if before.size < 2 or after.size < 1:
            return None
        if stream in LOG_STREAMS and (before > 0).all() and (after > 0).all():  # geometric means
            before, after = np.log(before), np.log(after)
            ch = self._held(before, after, small=math.log(1.05))
            return ch[0], math.exp(ch[1]), math.exp(ch[2])
        return self._held(before, after, small=0.05 * abs(float(np.mean(before))))

    @staticmethod
    def _held(before: np.ndarray, after: np.ndarray, small: float) -> tuple[str, float, float]:
        """held unless the mean of the latest (up to 10) points differs from the mean before by more than 2
        standard errors (noise from the differences before) and by more than `small` (5%)."""
        b, a = float(np.mean(before)), float(np.mean(after[-10:]))
        sd = mad_sd(np.diff(before)) / math.sqrt(2.0) if before.size >= 4 else float(np.std(before))
        se = sd * math.sqrt(1.0 / min(after.size, 10) + 1.0 / before.size)
        if abs(a - b) <= max(2.0 * se, small):
            return "held", b, a
        return ("rose" if a > b else "fell"), b, a

    def _alarm(self, spec: SignalSpec, exc: Excursion) -> Alarm:
        steps = exc.alarm - exc.onset
        scale = self.scales.get(spec.stream, 1.0)
        text = f"{_moved(spec, exc.reference, exc.recent, scale)} in {steps} step{'s' if steps != 1 else ''}"
        reward = self._change("reward", exc.onset, exc.alarm) if spec.stream != "reward" else None
        falling = self.detectors.get("reward")
        if reward is not None and falling is not None and falling.ready and falling.S >= falling.h / 2:
            reward = ("fell", reward[1], float(np.mean([v for _, v in self.series["reward"][-3:]])))
        held_out = self._change("eval", exc.onset, exc.alarm) if spec.stream != "eval" else None
        kind = spec.kind
        if spec.stream == "eval" and reward is not None and reward[0] == "fell":
            kind = "collapse"
        elif spec.stream == "unverified":
            verified = reward if reward is not None else held_out
            if verified is not None and verified[0] == "fell":
                kind = "collapse"
        if reward is not None:
            text += f" while the training reward {reward[0]}" + (
                "" if reward[0] == "held" else f" ({_num(reward[1])} -> {_num(reward[2])})")
        context: list[str] = []
        for stream, label in (("entropy", "entropy"), ("length", "length")):
            if spec.stream != stream:
                ch = self._change(stream, exc.onset, exc.alarm)
                if ch is not None and ch[0] != "held":
                    context.append(f"{label} {ch[0]} {_ratio(ch[1], ch[2])}")
        dup = self.series["duplicates"]
        if dup and spec.stream != "duplicates" and dup[-1][1] >= 0.1:
            context.append(f"duplicate share {dup[-1][1]:.2f}")
        ev = self.series["eval"]
        if ev and spec.stream != "eval":
            context.append(f"last held-out eval {_num(ev[-1][1], self.scales.get('eval', 1.0))} at step {ev[-1][0]}")
        return Alarm(step=exc.alarm, kind=kind, signal=spec.name, onset=exc.onset,
                     evidence="; ".join([text] + context), statistic=round(exc.statistic, 3),
                     threshold=round(exc.threshold, 3), reference=exc.reference, level=exc.recent)

    # -- state ----------------------------------------------------------------------------------------------
    def states(self) -> dict[str, str]:
        """Detector name -> burn_in | watching | suspicious, for the detectors that have data."""
        return {name: det.state for name, det in self.detectors.items()}

    def status(self) -> str:
        """One line: what is watched, what is suspicious, and the alarms so far (the watch line)."""
        st = self.states()
        watching = [n for n, s in st.items() if s != "burn_in"]
        sus = [n for n, s in st.items() if s == "suspicious"]
        text = f"watching {len(watching)}/{len(st)} signals" if st else "waiting for data"
        if sus:
            text += "; suspicious: " + ", ".join(sus)
        kinds = sorted({a.kind for a in self.alarms})
        if kinds:
            text += "; alarms: " + ", ".join(kinds)
        return text

    def log_dict(self) -> dict[str, float]:
        """Numbers for a training logger: each detector's S / h, and the alarm count."""
        out = {f"monitor/{name}": round(det.S / det.h, 4) for name, det in self.detectors.items() if det.ready}
        out["monitor/alarms"] = float(len(self.alarms))
        return out


def _moved(spec: SignalSpec, before: float, now: float, scale: float = 1.0) -> str:
    """"policy entropy fell 60% (0.5 -> 0.2)" / "training reward fell from 0.78 to 0.41"."""
    verb = "rose" if now > before else "fell"
    if spec.log and before > 0:
        return f"{spec.label} {verb} {_ratio(before, now)} ({_num(before)} -> {_num(now)})"
    return f"{spec.label} {verb} from {_num(before, scale)} to {_num(now, scale)}"


def _ratio(before: float, now: float) -> str:
    """A relative change in words: "60%" below a doubling, "4.4x" from it."""
    ratio = now / before if before else float("inf")
    return f"{ratio:.1f}x" if ratio >= 2 else f"{abs(ratio - 1) * 100:.0f}%"


def _num(v: float, scale: float = 1.0) -> str:
    """A value in words: 3 significant digits; percent when the log is in percent (scale 100)."""
    if scale == 100.0:
        return f"{v * 100:.1f}%"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


# --------------------------------------------------------------------------------------------------------
# Calibration by simulation (regenerates ARL_TABLE)
# --------------------------------------------------------------------------------------------------------

H_GRID = np.round(np.arange(1.0, 16.01, 0.25), 2)
CAL_PHIS = (0.0, 0.3, 0.6, 0.8)


def null_stream(family: str, rng: np.random.Generator, length: int, phi: float = 0.0,
                direction: str = "down") -> tuple[np.ndarray, np.ndarray | None]:
    """A stream that does not change, as the detector of `family` sees it: (values, n or None).

    level: AR(1) noise (marginal sd 0.03) around 0.5 after a first point 10 sds below (a base point);
    trend: log-normal AR(1) noise (marginal sd 0.04) around a steady drift in the harmful direction of
    3 sds per 100 steps; sparse: Binomial(n, p) / n evaluations, n ~ U{200..1000}, p ~ U(0.1, 0.9), the
    first 15 sds below (the base).
    """
    if family == "sparse":
        n = int(rng.integers(200, 1001))
        p = float(rng.uniform(0.1, 0.9))
        x = rng.binomial(n, p, size=length) / n
        x[0] = max(p - 15 * math.sqrt(p * (1 - p) / n), 0.0)
        return x, np.full(length, float(n))
    sd = 0.03 if family == "level" else 0.04
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), length)
    z = np.empty(length)
    z[0] = rng.normal(0.0, sd)
    for i in range(1, length):
        z[i] = phi * z[i - 1] + e[i]
    if family == "level":
        x = 0.5 + z
        x[0] = 0.5 - 10 * sd
        return x, None
    drift = (1.0 if direction == "up" else -1.0) * 3 * sd / 100 * np.arange(length)
    return np.exp(np.log(0.8) + drift + z), None


def first_crossings(spec: SignalSpec, values: np.ndarray, n: np.ndarray | None, hs: np.ndarray = H_GRID,
                    k: float = 0.5, **kw: Any) -> np.ndarray:
    """For each h of `hs`, the index of the first observation at which the detector's S exceeds h (inf when
    never). One pass with h = inf gives them all: up to its first alarm a detector does not depend on h."""
    det = Detector(spec, h=math.inf, k=k, **kw)
    first = np.full(hs.size, np.inf)
    top = 0.0
    for i, v in enumerate(values):
        det.update(i, float(v), None if n is None else float(n[i]))
        if det.S > top:
            first[(hs < det.S) & ~np.isfinite(first)] = i
            top = det.S
    return first


def calibrate(n_long: int = 32, long: int = 3000, n_early: int = 150, seed: int = 0,
              families: tuple[str, ...] = ("level", "trend", "sparse"), k: float = 0.5,
              k_sparse: float = 0.5) -> dict[str, tuple[float, float, float, float]]:
    """Simulate run lengths of each detector family on streams that do not change and fit log ARL0 = a + b h.

    Per family and h: ARL_long = total observations / alarms over `n_long` streams of `long` observations
    (exponential MLE with censoring), ARL_early = E / -log(1 - P(alarm within E)) over `n_early` streams of
    E observations (E = 300 dense, 30 sparse: the length of a run), the smaller of the two and the worst
    phi. The line is fitted where the estimate rests on at least 15 alarms and ARL >= 50.
    """
    rng = np.random.default_rng(seed)
    table: dict[str, tuple[float, float, float, float]] = {}
    for family in families:
        spec = {"level": SIGNAL_BY_NAME["reward"], "trend": SIGNAL_BY_NAME["entropy_down"],
                "sparse": SIGNAL_BY_NAME["eval"]}[family]
        kk = k_sparse if family == "sparse" else k
        early_len = 30 if family == "sparse" else 300
        phis = (0.0,) if family == "sparse" else CAL_PHIS
        worst = np.full(H_GRID.size, np.inf)
        alarms_at_worst = np.zeros(H_GRID.size)
        for phi in phis:
            specs = [spec] if family != "trend" else [SIGNAL_BY_NAME["entropy_down"], SIGNAL_BY_NAME["entropy_up"]]
            firsts_long, firsts_early = [], []
            for i in range(n_long):
                sp = specs[i % len(specs)]
                x, n = null_stream(family, rng, long, phi, sp.direction)
                firsts_long.append(first_crossings(sp, x, n, k=kk))
            for i in range(n_early):
                sp = specs[i % len(specs)]
                x, n = null_stream(family, rng, early_len, phi, sp.direction)
                firsts_early.append(first_crossings(sp, x, n, k=kk))
            fl, fe = np.array(firsts_long), np.array(firsts_early)
            hits_l = np.isfinite(fl).sum(axis=0)
            arl_long = np.minimum(fl, long).sum(axis=0) / np.maximum(hits_l, 0.5)
            p_early = np.isfinite(fe).mean(axis=0)
            arl_early = early_len / -np.log1p(-np.clip(p_early, 1e-12, 0.999))
            hits_e = np.isfinite(fe).sum(axis=0)
            arl = np.minimum(arl_long, arl_early)
            hits = np.where(arl_long <= arl_early, hits_l, hits_e)
            better = arl < worst
            worst = np.where(better, arl, worst)
            alarms_at_worst = np.where(better, hits, alarms_at_worst)
        ok = (alarms_at_worst >= 15) & (worst >= 50) & np.isfinite(worst)
        if ok.sum() < 3:
            raise RuntimeError(f"calibration of {family}: too few alarms to fit; simulate longer")
        b, a = np.polyfit(H_GRID[ok], np.log(worst[ok]), 1)
        table[family] = (round(float(a), 4), round(float(b), 4), float(H_GRID[ok].min()), float(H_GRID[ok].max()))
    return table


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import time

    ap = argparse.ArgumentParser(description="regenerate ARL_TABLE by simulation")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print("ARL_TABLE =", calibrate(seed=args.seed), f"# {time.perf_counter() - t0:.0f} s")
