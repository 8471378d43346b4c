"""Statistics for verdicts: intervals and tests that keep their one-sided error at a few seeds.

An effect is a function of *means*: a claim gives per-(seed, item) quantities (for example the
prior, aligned and final bits of each domain in each arm) and a statistic of their means (for
example the share of alignment lost). Items (the six domains, a stage's arithmetic levels, RL's
checkpoint windows) are the same in every seed: crossed with seeds and a fixed part of the design,
not a sample, so each seed's quantities are averaged over its items and **seeds are the unit of
replication**. A seed that lacks a quantity altogether is left out of the whole statistic (every
quantity is then averaged over the same seeds, so paired contrasts stay paired) and counted in
``missing``; the interval is the one the remaining seeds give.

Verdicts read one side of an interval at a time, so what matters is each side's error, not the
two-sided coverage. A statistic is pre-registered as one of three kinds, each with the interval that
keeps each side's error at its level at 3-10 seeds (``tests/experiments/test_stats.py`` simulates
them with per-seed values shaped like the measured ones; the README has the table):

- a plain callable, ``stat(q) -> (B,)`` on (B, Q) means: a mean, a difference, a slope or any other
  *linear* function of the means is exact with Student's t on ``seeds - 1`` degrees of freedom (the
  jackknife over seeds gives the t interval's standard error). Smooth non-linear statistics get the
  same jackknife-t, whose one-sided error is only approximate.
- ``Ratio(num, den)``: a ratio of two linear functions of the means whose denominator is known
  positive (its own check says so, e.g. "alignment took"). Fieller's interval: ``ratio > c`` is
  tested as the per-seed contrast ``num - c den > 0`` with a t test, which is exact for any ``c``
  under normal per-seed noise; the delta method's (the jackknife's) one tail misses up to 5%.
- ``Log(stat)``: a positive, right-skewed per-seed quantity (a gap that varies by a factor across
  seeds) on the log scale: the estimand is the geometric mean over seeds, and the t interval on the
  logs is exact for lognormal seeds, where the plain t interval's upper side misses 6.9% at 3 seeds.

``Estimate.p(threshold, side)`` is the one-sided p-value of the side a verdict reads, from the same
t statistic as the interval, so "the interval at level α lies above c" and "p ≤ α" are one rule.
A test's levels come from the preset's sequential design (``experiments/design.py``): the nominal
level at each look, and Holm's adjustment where one of several claim tests can say "not supported".

With one seed the items are the only replication there is: the interval is then over items
(``over``), reflects item variation only, and never gives a firm verdict (``ONE_SEED``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
from scipy import stats as st

Stat = Callable[[np.ndarray], np.ndarray]  # (B, Q) means -> (B,) statistic

POWER = 0.8  # the power at which the minimum detectable effect is quoted
INTERVAL = "jackknife-t over seeds (items fixed); Fieller for ratios; t on logs where pre-registered"
METHODS = {"t": "jackknife-t over seeds", "fieller": "Fieller's interval for a ratio of means",
           "log-t": "t interval on the log scale (geometric mean over seeds)"}


@dataclass(frozen=True)
class Ratio:
    """``num(q) / den(q)``: both linear in the means, the denominator known positive (checked by its
    own test). Fieller: ``ratio > c`` iff ``num - c den > 0``, a per-seed contrast with a t test."""

    num: Stat
    den: Stat

    def __call__(self, q: np.ndarray) -> np.ndarray:
        return self.num(q) / self.den(q)


@dataclass(frozen=True)
class Log:
    """A positive per-seed statistic judged on the log scale: the estimate is its geometric mean over
    seeds (pre-registered for right-skewed gaps); a seed whose value is not positive has no log."""

    stat: Stat


def _sided(t: float, df: int, side: str) -> float:
    """P-value of ``effect {side} threshold`` from its t statistic (small when the data say so)."""
    if not (np.isfinite(t) and df > 0):
        return float("nan")
    return float(st.t.sf(t, df) if side == ">" else st.t.cdf(t, df))


@dataclass
class Estimate:
    value: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int
    se: float = float("nan")  # the standard error (of the log for log-t)
    df: int = 0  # degrees of freedom of the t quantile (units - 1)
    over: str = "seeds"  # the unit left out in turn: seeds, or items when there is one seed ("none": no interval)
    dropped: int = 0  # leave-one-out statistics (or per-seed logs) that were not finite (then no interval)
    confidence: float = 0.95
    missing: int = 0  # seeds left out because they lack a quantity
    method: str = "t"  # a key of METHODS
    per_seed: tuple[float, ...] = ()  # the statistic of each seed used (its own means), in seed order
    seed_index: tuple[int, ...] = ()  # which seeds of the input those are (positions along its first axis)
    _t: Callable[[float], float] | None = field(default=None, repr=False, compare=False)  # t statistic at c
    _bounds: Callable[[float, float], tuple[float, float]] | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["per_seed"], out["seed_index"] = list(self.per_seed), list(self.seed_index)
        return out

    def tstat(self, threshold: float) -> float:
        """The t statistic of the effect against ``threshold`` (NaN without an interval)."""
        if self._t is not None:
            return float(self._t(threshold))
        if self.df > 0 and np.isfinite(self.se):
            if self.se > 0:
                return (self.value - threshold) / self.se
            return float(np.sign(self.value - threshold) * np.inf) if self.value != threshold else float("nan")
        return float("nan")

    def p(self, threshold: float, side: str) -> float:
        """One-sided p-value that the effect lies on ``side`` (``>`` or ``<``) of ``threshold``."""
        return _sided(self.tstat(threshold), self.df, side)

    def bounds(self, alpha_lo: float, alpha_hi: float) -> tuple[float, float]:
        """The lower bound at one-sided level ``alpha_lo`` and the upper at ``alpha_hi``."""
        if self._bounds is not None:
            return self._bounds(alpha_lo, alpha_hi)
        if self.df > 0 and np.isfinite(self.se):
            return (self.value - st.t.isf(alpha_lo, self.df) * self.se,
                    self.value + st.t.isf(alpha_hi, self.df) * self.se)
        return self.lo, self.hi

    def mde(self, power: float = POWER) -> float:
        """The minimum detectable effect: how far the true effect must lie beyond a threshold for
        this interval to clear it with probability ``power`` at this many units (same spread)."""
        if not (self.df > 0 and np.isfinite(self.se)):
            return float("nan")
        return float((st.t.ppf(1 - (1 - self.confidence) / 2, self.df) + st.t.ppf(power, self.df)) * self.se)

    def units_needed(self, threshold: float, power: float = POWER, most: int = 1000) -> int | None:
        """Units (seeds) at which the observed effect, as far from ``threshold`` in units of the
        per-seed spread as it is now, would be detected with ``power``; None if more than ``most``."""
        n = self.n_seeds if self.over == "seeds" else self.n_items
        size = abs(self.tstat(threshold)) / np.sqrt(n)  # effect / per-seed spread
        if not (self.df > 0 and np.isfinite(size) and size > 0):
            return None
        for k in range(2, most + 1):
            if (st.t.ppf(1 - (1 - self.confidence) / 2, k - 1) + st.t.ppf(power, k - 1)) / np.sqrt(k) <= size:
                return k
        return None


def _units(x: np.ndarray) -> tuple[np.ndarray, str, int, tuple[int, ...]]:
    """(n, Q) replication units: each complete seed's means over its items (the items of one seed
    when there is one), the unit's name, how many seeds lacked a quantity altogether, and which
    seeds the units are."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN seed: dropped below
        if x.shape[0] == 1:
            return x[0], "items", 0, ()
        units = np.nanmean(x, axis=1)
    whole = np.isfinite(units).all(axis=1)
    return units[whole], "seeds", int((~whole).sum()), tuple(int(i) for i in np.flatnonzero(whole))


def _per_seed(units: np.ndarray, stat: Stat | Ratio | Log) -> tuple[float, ...]:
    """Each unit's own statistic (its means in place of the means over seeds)."""
    if len(units) == 0:
        return ()
    with np.errstate(all="ignore"):
        values = stat.stat(units) if isinstance(stat, Log) else stat(units)
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def jackknife_t(x: np.ndarray, stat: Stat | Ratio | Log, confidence: float = 0.95) -> Estimate:
    """``x``: (S seeds, D items, Q quantities), NaN where an item lacks a quantity. A seed lacking a
    quantity in every item is left out (``missing``). The estimate is ``stat`` of the mean over
    seeds of each seed's item means, with the interval its kind pre-registers (module docstring);
    over items when S = 1; none with one unit."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"the interval needs (seeds, items, quantities) data, got shape {x.shape}")
    s, d, _ = x.shape
    units, over, missing, index = _units(x)
    n = len(units)
    base = dict(n_seeds=s - missing, n_items=d, confidence=confidence, missing=missing,
                per_seed=_per_seed(units, stat) if over == "seeds" else (), seed_index=index)
    if isinstance(stat, Log):
        return _log_t(units, stat, over, base)
    with np.errstate(all="ignore"):
        value = float(np.asarray(stat(units.mean(axis=0)[None]), dtype=np.float64)[0]) if n else float("nan")
    if n <= 1:
        return Estimate(value, float("nan"), float("nan"), over="none", **base)
    if isinstance(stat, Ratio):
        return _fieller(units, stat, value, over, base)
    keep = ~np.eye(n, dtype=bool)  # row i: every unit but i
    with np.errstate(all="ignore"):
        theta = np.asarray(stat(np.stack([units[k].mean(axis=0) for k in keep])), dtype=np.float64)
    dropped = int((~np.isfinite(theta)).sum())
    if dropped or not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), df=n - 1, over=over, dropped=dropped, **base)
    se = float(np.sqrt((n - 1) / n * ((theta - theta.mean()) ** 2).sum()))
    half = float(st.t.ppf(1 - (1 - confidence) / 2, n - 1)) * se
    return Estimate(value, value - half, value + half, se=se, df=n - 1, over=over, **base)


def _fieller(units: np.ndarray, stat: Ratio, value: float, over: str, base: dict) -> Estimate:
    n = len(units)
    a = np.asarray(stat.num(units), dtype=np.float64)  # (n,) per-unit numerators (linear: their mean is num(mean))
    b = np.asarray(stat.den(units), dtype=np.float64)
    cov = np.cov(a, b) / n  # the covariance of the two means
    ma, mb = a.mean(), b.mean()

    def tstat(c: float) -> float:
        var = cov[0, 0] - 2 * c * cov[0, 1] + c * c * cov[1, 1]
        if var > 0:
            return float((ma - c * mb) / np.sqrt(var))
        return float(np.sign(ma - c * mb) * np.inf) if ma != c * mb else float("nan")  # no spread at all

    def root(q: float, lower: bool) -> float:
        """Where the contrast's t statistic crosses +q (the lower bound) or -q (the upper)."""
        qa, qb, qc = mb * mb - q * q * cov[1, 1], ma * mb - q * q * cov[0, 1], ma * ma - q * q * cov[0, 0]
        if qa <= 0:  # the denominator is not clear of 0 at this level: the set is unbounded
            return -np.inf if lower else np.inf
        disc = max(qb * qb - qa * qc, 0.0)
        return float((qb - np.sqrt(disc)) / qa if lower else (qb + np.sqrt(disc)) / qa)

    def bounds(alpha_lo: float, alpha_hi: float) -> tuple[float, float]:
        return root(st.t.isf(alpha_lo, n - 1), True), root(st.t.isf(alpha_hi, n - 1), False)

    half = (1 - base["confidence"]) / 2
    lo, hi = bounds(half, half)
    se = float(np.sqrt(max(cov[0, 0] - 2 * value * cov[0, 1] + value ** 2 * cov[1, 1], 0.0)) / abs(mb)) if mb else np.nan
    return Estimate(value, lo, hi, se=se, df=n - 1, over=over, method="fieller", _t=tstat, _bounds=bounds, **base)


def _log_t(units: np.ndarray, stat: Log, over: str, base: dict) -> Estimate:
    with np.errstate(all="ignore"):
        y = np.asarray(stat.stat(units), dtype=np.float64)  # (n,) the statistic of each unit
        logs = np.log(y)
    n, dropped = len(y), int((~np.isfinite(logs)).sum())
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), over="none", method="log-t", **base)
    if dropped or n == 1:  # a seed with a non-positive value: the pre-registered scale does not apply
        value = float(np.exp(logs.mean())) if not dropped else float("nan")
        return Estimate(value, float("nan"), float("nan"), df=n - 1, over=over if n > 1 else "none",
                        dropped=dropped, method="log-t", **base)
    m, se = float(logs.mean()), float(logs.std(ddof=1) / np.sqrt(n))

    def tstat(c: float) -> float:
        if c <= 0:
            raise ValueError(f"a log-scale statistic needs a positive threshold, got {c}")
        return (m - np.log(c)) / se if se > 0 else float("nan")

    def bounds(alpha_lo: float, alpha_hi: float) -> tuple[float, float]:
        return (float(np.exp(m - st.t.isf(alpha_lo, n - 1) * se)), float(np.exp(m + st.t.isf(alpha_hi, n - 1) * se)))

    half = (1 - base["confidence"]) / 2
    lo, hi = bounds(half, half)
    return Estimate(float(np.exp(m)), lo, hi, se=se, df=n - 1, over=over, method="log-t", _t=tstat,
                    _bounds=bounds, **base)


OUTCOMES = ("supported", "not supported", "inconclusive")
DID_NOT_TAKE = "inconclusive — treatment did not take"
INVALID = "invalid"
ONE_SEED = "inconclusive — one seed"  # a claim's tests may be decided over items, the verdict is not
ROLES = ("treatment", "control", "claim")  # the order checks are decided and shown in
OPPOSITE = {">": "<", "<": ">"}


@dataclass
class Test:
    """One pre-registered comparison: the effect, its interval, the threshold and which side of it
    the claim predicts (``>`` or ``<``). ``alpha_for`` is the one-sided level at which the
    predicted side is accepted, ``alpha_against`` the level at which the other side is (None: half
    of ``1 - confidence`` each; the sequential design and Holm's adjustment set them).
    ``level_share`` < 1 pre-registers a stricter level for a statistic whose interval is shown by
    simulation to miss more than its share at the nominal one: each side is judged at that share of
    the level the design and Holm give it."""

    __test__ = False  # not a pytest test class
    name: str
    description: str
    estimate: Estimate
    threshold: float
    direction: str  # ">" or "<"
    unit: str = ""
    role: str = "claim"  # treatment: did the treatment take; control: did the control behave; claim
    alpha_for: float | None = None
    alpha_against: float | None = None
    level_share: float = 1.0

    def levels(self) -> tuple[float, float]:
        half = (1 - self.estimate.confidence) / 2
        return ((half if self.alpha_for is None else self.alpha_for) * self.level_share,
                (half if self.alpha_against is None else self.alpha_against) * self.level_share)

    def p_for(self) -> float:
        """P-value of the predicted side (small: the claim's side is shown)."""
        return self.estimate.p(self.threshold, self.direction)

    def p_against(self) -> float:
        return self.estimate.p(self.threshold, OPPOSITE[self.direction])

    @property
    def interval(self) -> tuple[float, float]:
        """The interval at this test's levels: the side the claim predicts at ``alpha_for``."""
        a_for, a_against = self.levels()
        return self.estimate.bounds(a_for, a_against) if self.direction == ">" else \
            self.estimate.bounds(a_against, a_for)

    @property
    def outcome(self) -> str:
        a_for, a_against = self.levels()
        p_for, p_against = self.p_for(), self.p_against()
        if np.isfinite(p_for) and np.isfinite(p_against):
            return "supported" if p_for <= a_for else "not supported" if p_against <= a_against else "inconclusive"
        lo, hi = self.interval  # an estimate given as an interval only
        t = self.threshold
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return "inconclusive"
        if self.direction == ">":
            return "supported" if lo > t else "not supported" if hi < t else "inconclusive"
        return "supported" if hi < t else "not supported" if lo > t else "inconclusive"

    def power_note(self) -> str:
        """Beside an inconclusive test: the minimum detectable effect at this many seeds, and the
        seeds the observed effect would need (at the spread measured here, 80% power)."""
        e = self.estimate
        if self.outcome != "inconclusive":
            return ""
        n = e.n_seeds if e.over == "seeds" else e.n_items
        lacking = f"; {e.missing} seed(s) lack a quantity and are left out" if e.missing else ""
        if e.dropped:
            why = "per-seed values not positive (log scale)" if e.method == "log-t" else "leave-one-out estimates not finite"
            return f"no interval: {e.dropped} of {n} {why}{lacking}"
        if e.over == "none":
            return f"no interval: one unit{lacking}"
        if e.over == "items":  # one seed: more items do not make a verdict, more seeds do
            return f"MDE {e.mde():.3g}{self.unit} over {n} items of one seed"
        need = self.seeds_needed()
        return (f"MDE {e.mde():.3g}{self.unit} at {n} seeds; at the effect observed, 80% power needs "
                f"~{need or 'over 1000'} seeds (plan them as looks: driftlab power){lacking}")

    def seeds_needed(self) -> int | None:
        return self.estimate.units_needed(self.threshold)

    def line(self) -> str:
        e = self.estimate
        lo, hi = self.interval
        note = self.power_note()
        return (f"[{self.role}] {self.name}: {e.value:+.3f}{self.unit} [{lo:+.3f}, {hi:+.3f}] vs {self.direction} "
                f"{self.threshold:+.3f} → {self.outcome}" + (f" ({note})" if note else ""))

    def record(self) -> dict:
        lo, hi = self.interval
        a_for, a_against = self.levels()
        return {"name": self.name, "description": self.description, **self.estimate.record(), "lo": lo, "hi": hi,
                "threshold": self.threshold, "direction": self.direction, "unit": self.unit,
                "role": self.role, "outcome": self.outcome, "alpha_for": a_for, "alpha_against": a_against,
                "level_share": self.level_share, "p_for": self.p_for(), "p_against": self.p_against(), "mde": self.estimate.mde(),
                "seeds_needed": self.seeds_needed(), "power_note": self.power_note()}


def holm(tests: list[Test], level: Callable[[int], float]) -> None:
    """Holm's step-down over the "not supported" side of ``tests`` (any one of them contradicted
    makes the claim not supported): sorted by ``p_against``, the j-th (from 0) is tested at
    ``level(k - j)`` (the one-sided level for a family of k - j hypotheses: the design's at
    ``alpha / (k - j)``) until one fails; it and every test after it keep that failing level."""
    order = sorted(tests, key=lambda t: (np.nan_to_num(t.p_against(), nan=np.inf)))
    k, failed = len(order), None
    for j, t in enumerate(order):
        t.alpha_against = level(k - j) if failed is None else failed
        if failed is None and not t.p_against() <= t.levels()[1]:
            failed = t.alpha_against


def combine(outcomes: list[str]) -> str:
    """All parts supported → supported (an intersection-union test: no correction); any part
    contradicted → not supported (its side Holm-adjusted by ``holm`` beforehand); else inconclusive."""
    if outcomes and all(o == "supported" for o in outcomes):
        return "supported"
    if any(o == "not supported" for o in outcomes):
        return "not supported"
    return "inconclusive"


def decide(tests: list[Test], claim_outcome: str | None = None) -> str:
    """The verdict from pre-registered checks and claim tests (``claim_outcome`` overrides how the
    claim tests combine). A control check contradicted → ``invalid``; else a treatment check
    contradicted → ``inconclusive — treatment did not take`` (a claim is never 'not supported' about
    a treatment that did not happen); else a check that is itself inconclusive leaves the verdict
    inconclusive; else the claim tests decide — except that one seed never gives a firm verdict
    (``inconclusive — one seed``: its intervals reflect item variation only)."""
    by = {role: [t.outcome for t in tests if t.role == role] for role in ROLES}
    if "not supported" in by["control"]:
        return INVALID
    if "not supported" in by["treatment"]:
        return DID_NOT_TAKE
    claim = claim_outcome or combine(by["claim"])
    if any(o != "supported" for o in by["treatment"] + by["control"]):
        return "inconclusive"
    if claim in ("supported", "not supported") and max((t.estimate.n_seeds for t in tests), default=0) < 2:
        return ONE_SEED  # the intervals then reflect item variation only: no firm verdict from one seed
    return claim


def ordered(tests: list[Test]) -> list[Test]:
    """Checks first: treatment, then control, then the claim's tests."""
    return sorted(tests, key=lambda t: ROLES.index(t.role))
