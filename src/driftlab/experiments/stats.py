"""Statistics for verdicts: a two-level bootstrap over seeds and items, and the three-way decision.

An effect is a function of *means*: the claim gives per-(seed, item) quantities (for example the
prior, aligned and final bits of each domain in each arm) and a statistic of their means (for
example the share of alignment lost). The bootstrap resamples seeds with replacement, then items
with replacement inside each resampled seed, recomputes the means and the statistic, and takes
percentiles. With one seed the interval reflects item variation only, and says so (``n_seeds``);
with one seed and one item there is no interval, and the test is inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

Stat = Callable[[np.ndarray], np.ndarray]  # (B, Q) means -> (B,) statistic


@dataclass
class Estimate:
    value: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int


def bootstrap(x: np.ndarray, stat: Stat, n: int = 2000, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """``x``: (S seeds, D items, Q quantities), NaN where an item lacks a quantity."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"bootstrap needs (seeds, items, quantities) data, got shape {x.shape}")
    s, d, _ = x.shape
    value = float(stat(np.nanmean(x, axis=(0, 1))[None])[0])
    if s * d == 1:  # one seed, one item: nothing to resample, no interval
        return Estimate(value, float("nan"), float("nan"), s, d)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, s, size=(n, s))  # (B, S)
    items = rng.integers(0, d, size=(n, s, d))  # (B, S, D)
    sample = x[seeds[:, :, None], items]  # (B, S, D, Q)
    with np.errstate(all="ignore"):
        stats = np.asarray(stat(np.nanmean(sample, axis=(1, 2))), dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Estimate(value, float("nan"), float("nan"), s, d)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(value, float(lo), float(hi), s, d)


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

    def line(self) -> str:
        e = self.estimate
        return (f"[{self.role}] {self.name}: {e.value:+.3f}{self.unit} [{e.lo:+.3f}, {e.hi:+.3f}] vs {self.direction} "
                f"{self.threshold:+.3f} → {self.outcome}")

    def record(self) -> dict:
        return {"name": self.name, "description": self.description, **asdict(self.estimate),
                "threshold": self.threshold, "direction": self.direction, "unit": self.unit,
                "role": self.role, "outcome": self.outcome}


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
