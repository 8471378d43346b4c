"""Statistics for verdicts: intervals that keep their coverage at a few seeds, and the decision.

An effect is a function of *means*: a claim gives per-(seed, item) quantities (for example the
prior, aligned and final bits of each domain in each arm) and a statistic of their means (for
example the share of alignment lost). Items (the six domains, a stage's arithmetic levels, RL's
checkpoint windows) are the same in every seed: crossed with seeds and a fixed part of the design,
not a sample, so each seed's quantities are averaged over its items and **seeds are the unit of
replication**. The interval is a jackknife over seeds with Student's t on ``seeds - 1`` degrees of
freedom: the statistic recomputed with each seed left out gives the standard error (for a mean this
is exactly the t interval; for a ratio of means the delta method's), and the t quantile keeps the
coverage at 3 seeds where a percentile bootstrap over seeds (at most ``[min, max]`` of three) covers
~75%. ``tests/experiments/test_stats.py`` simulates thousands of experiments with a known effect at
3, 5 and 10 seeds and checks 93-97% coverage.

A leave-one-out statistic that is not finite (a ratio whose denominator vanishes without one seed)
is counted in ``dropped`` and leaves no interval: the tail it would have shown is unknown. With one
seed the items are the only replication there is: the interval is then over items (``over``),
reflects item variation only, and never gives a firm verdict (``ONE_SEED``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st

Stat = Callable[[np.ndarray], np.ndarray]  # (B, Q) means -> (B,) statistic

POWER = 0.8  # the power at which the minimum detectable effect is quoted
INTERVAL = "jackknife over seeds, Student's t (items fixed)"


@dataclass
class Estimate:
    value: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int
    se: float = float("nan")  # the jackknife standard error
    df: int = 0  # degrees of freedom of the t quantile (units - 1)
    over: str = "seeds"  # the unit left out in turn: seeds, or items when there is one seed ("none": no interval)
    dropped: int = 0  # leave-one-out statistics that were not finite (then no interval)
    confidence: float = 0.95

    def mde(self, power: float = POWER) -> float:
        """The minimum detectable effect: how far the true effect must lie beyond a threshold for
        this interval to clear it with probability ``power`` at this many units (same spread)."""
        if not (self.df > 0 and np.isfinite(self.se)):
            return float("nan")
        return float((st.t.ppf(1 - (1 - self.confidence) / 2, self.df) + st.t.ppf(power, self.df)) * self.se)

    def units_needed(self, distance: float, power: float = POWER, most: int = 1000) -> int | None:
        """Units (seeds) at which an effect ``distance`` from the threshold would be detected with
        ``power``, at the spread measured here; None if more than ``most`` or unknown."""
        n = self.n_seeds if self.over == "seeds" else self.n_items
        if not (self.df > 0 and np.isfinite(self.se) and distance > 0):
            return None
        sd = self.se * np.sqrt(n)  # the spread of one unit
        for k in range(2, most + 1):
            need = (st.t.ppf(1 - (1 - self.confidence) / 2, k - 1) + st.t.ppf(power, k - 1)) * sd / np.sqrt(k)
            if need <= distance:
                return k
        return None


def jackknife_t(x: np.ndarray, stat: Stat, confidence: float = 0.95) -> Estimate:
    """``x``: (S seeds, D items, Q quantities), NaN where an item lacks a quantity. The estimate is
    ``stat`` of the mean over seeds of each seed's item means; the interval a jackknife-t over seeds
    (over items when S = 1; none with one seed and one item)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"the interval needs (seeds, items, quantities) data, got shape {x.shape}")
    s, d, _ = x.shape
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN seed or item: NaN, counted below
        units = np.nanmean(x, axis=1) if s > 1 else x[0]  # (n, Q): each seed's mean over its items
        over = "seeds" if s > 1 else "items"
        n = len(units)
        value = float(np.asarray(stat(np.nanmean(units, axis=0)[None]), dtype=np.float64)[0])
        if n == 1:
            return Estimate(value, float("nan"), float("nan"), s, d, over="none", confidence=confidence)
        keep = ~np.eye(n, dtype=bool)  # row i: every unit but i
        loo = np.stack([np.nanmean(units[k], axis=0) for k in keep])  # (n, Q)
        theta = np.asarray(stat(loo), dtype=np.float64)
    dropped = int((~np.isfinite(theta)).sum())
    if dropped or not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), s, d, df=n - 1, over=over, dropped=dropped,
                        confidence=confidence)
    se = float(np.sqrt((n - 1) / n * ((theta - theta.mean()) ** 2).sum()))
    half = float(st.t.ppf(1 - (1 - confidence) / 2, n - 1)) * se
    return Estimate(value, value - half, value + half, s, d, se, n - 1, over, 0, confidence)


OUTCOMES = ("supported", "not supported", "inconclusive")
DID_NOT_TAKE = "inconclusive — treatment did not take"
INVALID = "invalid"
ONE_SEED = "inconclusive — one seed"  # a claim's tests may be decided over items, the verdict is not
ROLES = ("treatment", "control", "claim")  # the order checks are decided and shown in


@dataclass
class Test:
    """One pre-registered comparison: the effect, its interval, the threshold and which side of it
    the claim predicts (``>`` or ``<``)."""

    __test__ = False  # not a pytest test class
    name: str
    description: str
    estimate: Estimate
    threshold: float
    direction: str  # ">" or "<"
    unit: str = ""
    role: str = "claim"  # treatment: did the treatment take; control: did the control behave; claim

    @property
    def outcome(self) -> str:
        lo, hi, t = self.estimate.lo, self.estimate.hi, self.threshold
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
        if e.dropped:
            return f"no interval: {e.dropped} of {n} leave-one-out estimates not finite"
        if e.over == "none":
            return "no interval: one seed and one item"
        if e.over == "items":  # one seed: more items do not make a verdict, more seeds do
            return f"MDE {e.mde():.3g}{self.unit} over {n} items of one seed"
        need = self.seeds_needed()
        return (f"MDE {e.mde():.3g}{self.unit} at {n} seeds; the observed effect is {abs(e.value - self.threshold):.3g}"
                f" from the threshold: ~{need or 'over 1000'} seeds to decide it")

    def seeds_needed(self) -> int | None:
        return self.estimate.units_needed(abs(self.estimate.value - self.threshold))

    def line(self) -> str:
        e = self.estimate
        note = self.power_note()
        return (f"[{self.role}] {self.name}: {e.value:+.3f}{self.unit} [{e.lo:+.3f}, {e.hi:+.3f}] vs {self.direction} "
                f"{self.threshold:+.3f} → {self.outcome}" + (f" ({note})" if note else ""))

    def record(self) -> dict:
        return {"name": self.name, "description": self.description, **asdict(self.estimate),
                "threshold": self.threshold, "direction": self.direction, "unit": self.unit,
                "role": self.role, "outcome": self.outcome, "mde": self.estimate.mde(),
                "seeds_needed": self.seeds_needed(), "power_note": self.power_note()}


def combine(outcomes: list[str]) -> str:
    """All parts supported → supported; any part contradicted → not supported; else inconclusive."""
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
