"""Seeds in pre-planned looks: a group-sequential design with alpha spending.

A preset declares its looks (e.g. 3, 6 and 10 seeds per arm). After each look every test is
judged at that look's *nominal* one-sided level, so that over all looks each side of each test is
wrongly accepted at most ``alpha`` of the time (2.5%), however the looks end:

- **Spending** (Lan-DeMets): ``alpha(t)`` is the error allowed by information fraction
  ``t = seeds / last look``. ``obf`` (O'Brien-Fleming-like, ``2 - 2 Phi(z_{1-alpha/2} / sqrt t)``)
  spends almost nothing early, so the last look keeps nearly the whole ``alpha``; ``pocock``
  (``alpha ln(1 + (e - 1) t)``) spends evenly.
- **Boundaries** ``c_k`` on the z scale solve ``P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) =
  alpha(t_k) - alpha(t_{k-1})`` for Brownian-motion z statistics (``corr(Z_i, Z_j) =
  sqrt(t_i / t_j)``), by the numerical recursion of Armitage, McPherson and Rowe on a fixed grid:
  deterministic, no Monte Carlo. A test at look k uses the nominal level ``1 - Phi(c_k)`` with
  Student's t on that look's degrees of freedom (Jennison & Turnbull, *Group Sequential Methods*,
  §3.8); ``tests/experiments/test_design.py`` simulates t statistics at 3, 6 and 10 seeds and checks
  each side's error over all looks.
- Stopping early for a firm verdict, or for futility, only removes chances to cross a boundary
  later, so neither can raise a side's error. **Futility is non-binding**: at an interim look the run
  may stop when no firm verdict has conditional power (at the trend observed) of ``futility`` or
  more; the boundaries ignore it, and the simulation reports the power it costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as st

from driftlab.experiments.stats import DID_NOT_TAKE, holm

SPENDING = ("obf", "pocock")


def spent(t: np.ndarray, alpha: float, kind: str) -> np.ndarray:
    """The cumulative one-sided error ``alpha(t)`` the spending function allows at fractions ``t``."""
    t = np.asarray(t, dtype=np.float64)
    if kind == "obf":
        return 2 - 2 * st.norm.cdf(st.norm.isf(alpha / 2) / np.sqrt(t))
    if kind == "pocock":
        return alpha * np.log(1 + (np.e - 1) * t)
    raise ValueError(f"unknown spending function {kind!r} (one of {', '.join(SPENDING)})")


@lru_cache(maxsize=256)
def z_boundaries(fractions: tuple[float, ...], alpha: float, kind: str, drift: float = 0.0
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Upper boundaries ``c_k`` on the z scale for one-sided error ``alpha`` spent at ``fractions``,
    and the probability of first crossing at each look under ``drift`` (E[Z_k] = drift sqrt(t_k));
    with ``drift`` 0 the crossings are the spending increments."""
    grid = np.linspace(-10.0, 10.0, 4001)  # the score B = Z sqrt(t) at each look, on a fixed grid
    h = grid[1] - grid[0]
    targets = np.diff(spent(np.array(fractions), alpha, kind), prepend=0.0)
    bounds, crossings, density, prev = [], [], None, 0.0
    for k, t in enumerate(fractions):
        dt = t - prev
        if density is None:  # the first look: B ~ N(drift t, t)

            def cross(c: float, t: float = t) -> float:
                return float(st.norm.sf((c * np.sqrt(t) - drift * t) / np.sqrt(t)))
        else:

            def cross(c: float, t: float = t, dt: float = dt, density: np.ndarray = density) -> float:
                tail = st.norm.sf((c * np.sqrt(t) - grid - drift * dt) / np.sqrt(dt))
                return float(np.trapezoid(density * tail, dx=h))

        if drift == 0.0:
            c = _solve(cross, targets[k])
        else:
            c = z_boundaries(fractions, alpha, kind)[0][k]
        bounds.append(c)
        crossings.append(cross(c))
        # the density of B_k on the grid, restricted to having continued (B_k < c sqrt(t_k))
        if density is None:
            density = st.norm.pdf(grid, drift * t, np.sqrt(t))
        else:
            offsets = (np.arange(2 * len(grid) - 1) - (len(grid) - 1)) * h  # grid_i - grid_j
            kernel = st.norm.pdf((offsets - drift * dt) / np.sqrt(dt)) / np.sqrt(dt)
            density = np.convolve(density, kernel)[len(grid) - 1: 2 * len(grid) - 1] * h
        density = np.where(grid < c * np.sqrt(t), density, 0.0)
        prev = t
    return tuple(bounds), tuple(crossings)


def _solve(cross, target: float) -> float:
    """The boundary whose crossing probability is ``target`` (bisection; crossing falls with c)."""
    if target <= 0:
        return float("inf")
    lo, hi = -5.0, 12.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cross(mid) > target else (lo, mid)
    return (lo + hi) / 2


CALIBRATION_PATHS = 1_000_000
CALIBRATION_SEED = 36  # fixed: the levels are a deterministic function of the design


@lru_cache(maxsize=64)
def t_levels(looks: tuple[int, ...], alpha: float, kind: str) -> tuple[float, ...]:
    """Each look's nominal one-sided level for a t test over that look's seeds, such that the first
    crossings spend ``alpha(t_k) - alpha(t_{k-1})`` for normal seeds. The t statistics of nested seed
    sets are less correlated than Brownian z's (each look estimates its own spread), so the z
    boundaries' levels spend ~2.6% at looks 3/6/10 (2.59-2.65% in simulations of 200,000-400,000
    paths). Under the null the joint law of the t statistics is free of the mean and spread, so it is calibrated once, here, by
    simulation with a fixed seed: the first look exactly, later looks within the Monte Carlo error of
    ``CALIBRATION_PATHS`` paths (the standard error of the total is 0.016% at 2.5%)."""
    fractions = np.array(looks, dtype=np.float64) / looks[-1]
    targets = np.diff(spent(fractions, alpha, kind), prepend=0.0)
    rng = np.random.default_rng(CALIBRATION_SEED)
    p = np.empty((CALIBRATION_PATHS, len(looks)))
    chunk = 100_000
    for start in range(0, CALIBRATION_PATHS, chunk):
        x = rng.standard_normal((chunk, looks[-1]))
        for k, n in enumerate(looks):
            part = x[:, :n]
            p[start:start + chunk, k] = st.t.sf(part.mean(1) / (part.std(1, ddof=1) / np.sqrt(n)), n - 1)
    levels, alive = [float(targets[0])], p[:, 0] > targets[0]
    for k in range(1, len(looks)):
        r = int(round(targets[k] * CALIBRATION_PATHS))  # paths that may first cross here
        open_p = np.sort(p[alive, k])
        level = float(open_p[r - 1]) if r > 0 else 0.0
        levels.append(level)
        alive &= p[:, k] > level
    return tuple(levels)


@dataclass(frozen=True)
class Design:
    """Looks (seeds per arm at each), the spending function, each side's error over all looks, and
    the conditional power below which an interim look may stop for futility (non-binding)."""

    looks: tuple[int, ...] = (3, 6, 10)
    spending: str = "obf"
    alpha: float = 0.025
    futility: float = 0.05

    def __post_init__(self) -> None:
        looks = tuple(int(n) for n in self.looks)
        if not looks or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:])):
            raise ValueError(f"looks must be increasing seed counts of at least 2, got {list(self.looks)}")
        if self.spending not in SPENDING:
            raise ValueError(f"unknown spending function {self.spending!r} (one of {', '.join(SPENDING)})")
        if not 0 < self.alpha < 0.5 or not 0 <= self.futility < 1:
            raise ValueError(f"alpha must lie in (0, 0.5) and futility in [0, 1), got {self.alpha}, {self.futility}")
        object.__setattr__(self, "looks", looks)

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    def z(self, alpha: float | None = None) -> tuple[float, ...]:
        """Each look's boundary on the z scale for one-sided error ``alpha`` (default: the design's)."""
        return z_boundaries(self.fractions, float(alpha or self.alpha), self.spending)[0]

    def nominal(self, look: int, alpha: float | None = None) -> float:
        """The one-sided nominal level of a t test at look ``look`` (0-based) for error ``alpha`` over
        all looks (``t_levels``)."""
        return t_levels(self.looks, float(alpha or self.alpha), self.spending)[look]

    def look_of(self, seeds: int) -> int | None:
        """The look a seed count is (0-based), or None when it is not one of the planned looks."""
        return self.looks.index(seeds) if seeds in self.looks else None

    def conditional_power(self, look: int, p_side, alpha: float | None = None):
        """At look ``look``, with one-sided p-value(s) ``p_side`` for a side, the chance that side is
        accepted at the last look if the trend observed so far continues (the B-value form on the
        z scale: ``B(t) = z sqrt(t)``, drift ``z / sqrt(t)``); 0 at the last look or without a p-value."""
        p = np.asarray(p_side, dtype=np.float64)
        if look >= len(self.looks) - 1:
            return np.zeros_like(p) if p.ndim else 0.0
        t = self.fractions[look]
        z = st.norm.isf(np.clip(np.nan_to_num(p, nan=1.0), 1e-300, 1.0))
        final = st.norm.isf(self.nominal(len(self.looks) - 1, alpha))
        cp = st.norm.sf((final - z * np.sqrt(t) - z / np.sqrt(t) * (1 - t)) / np.sqrt(1 - t))
        cp = np.where(np.isfinite(p), cp, 0.0)
        return cp if p.ndim else float(cp)

    def power(self, drift: float, alpha: float | None = None) -> float:
        """The chance of accepting a side by the last look when ``E[Z]`` at the last look is ``drift``
        (normal theory; ``simulate`` gives the t statistics' own)."""
        return float(sum(z_boundaries(self.fractions, float(alpha or self.alpha), self.spending, drift)[1]))

    def mde(self, power: float = 0.8, experiments: int = 20000) -> float:
        """The effect, in units of the per-seed spread, that the design accepts with ``power`` by its
        last look with the futility rule applied (simulated t statistics, common random numbers)."""
        return _mde(self, power, experiments)

    def record(self) -> dict:
        return {"looks": list(self.looks), "spending": self.spending, "alpha_per_side": self.alpha,
                "futility": self.futility, "nominal_levels": [self.nominal(k) for k in range(len(self.looks))],
                "z_boundaries": list(self.z())}


def simulate(design: Design, effect: float, sd: float = 1.0, experiments: int = 20000, seed: int = 0,
             alpha: float | None = None) -> dict:
    """Monte Carlo of one test of a mean against threshold 0 under the design: per-seed values
    N(effect, sd), the t statistic at each look against its look's nominal level, stopping at the
    first side accepted. Returns each side's acceptance rate over all looks, and the rate with the
    futility rule applied (stopping counted as never accepting)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(effect, sd, (experiments, design.looks[-1]))
    accepted = {">": np.zeros(experiments, bool), "<": np.zeros(experiments, bool)}
    with_futility = {">": np.zeros(experiments, bool), "<": np.zeros(experiments, bool)}
    open_, open_f = np.ones(experiments, bool), np.ones(experiments, bool)
    for k, n in enumerate(design.looks):
        part = x[:, :n]
        t = part.mean(1) / (part.std(1, ddof=1) / np.sqrt(n))
        level = design.nominal(k, alpha)
        p_up, p_down = st.t.sf(t, n - 1), st.t.cdf(t, n - 1)
        for side, p in ((">", p_up), ("<", p_down)):
            hit = p <= level
            accepted[side] |= hit & open_
            with_futility[side] |= hit & open_f
        done = (p_up <= level) | (p_down <= level)
        cp = np.maximum(design.conditional_power(k, p_up, alpha), design.conditional_power(k, p_down, alpha))
        open_ &= ~done
        open_f &= ~done & ~(cp < design.futility)
    return {"accept_above": float(accepted[">"].mean()), "accept_below": float(accepted["<"].mean()),
            "accept_above_with_futility": float(with_futility[">"].mean()),
            "accept_below_with_futility": float(with_futility["<"].mean())}


@lru_cache(maxsize=32)
def _mde(design: Design, power: float, experiments: int) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(30):
        mid = (lo + hi) / 2
        got = simulate(design, mid, experiments=experiments)["accept_above_with_futility"]
        lo, hi = (mid, hi) if got < power else (lo, mid)
    return (lo + hi) / 2


FRESH_SEEDS = 1000  # every preset was shaped on seeds 0-2: confirmatory seeds start here


@dataclass
class Look:
    """Where a verdict stands in its design: the look (None: the seed count is not a planned look),
    the levels its tests were judged at, and whether the seeds stop here."""

    look: int | None
    seeds: int
    alpha: float  # the nominal one-sided level of the predicted sides at this look
    stop: str  # decided | futile | last look | continue | off design

    def record(self) -> dict:
        return {"look": None if self.look is None else self.look + 1, "seeds": self.seeds,
                "nominal_alpha": self.alpha, "stop": self.stop}


def judge_at_look(tests: list, design: Design, seeds: int, outcome: Callable[[], str]) -> Look:
    """Set every test's levels for ``seeds`` seeds under ``design``: the look's nominal level on
    each side (the fixed-sample level, ``design.alpha``, when ``seeds`` is not a planned look), and
    Holm's step-down on the "not supported" side of the claim tests (any one of them contradicted is
    enough, so that side is a union of k tests; "supported" needs them all and is not adjusted). Then
    ``outcome()`` (the verdict at these levels) says whether the seeds stop: a firm verdict, futility
    (no firm verdict has conditional power ``design.futility`` at the trend observed), or the last look."""
    k = design.look_of(seeds)

    def level(family: int = 1) -> float:
        a = design.alpha / family
        return design.nominal(k, a) if k is not None else a

    for t in tests:  # an estimate widened for a family of comparisons (``Rule.estimate(tests=m)``) keeps it
        family = max(1, round(2 * design.alpha / (1 - t.estimate.confidence)))
        t.alpha_for = t.alpha_against = level(family)
    claims = [t for t in tests if t.role == "claim"]
    if len(claims) > 1:
        holm(claims, level)
    verdict = outcome()
    if k is None:
        stop = "off design"
    elif not verdict.startswith("inconclusive") or verdict == DID_NOT_TAKE:
        stop = "decided"
    elif k == len(design.looks) - 1:
        stop = "last look"
    elif _futile(tests, design, k):
        stop = "futile"
    else:
        stop = "continue"
    return Look(k, seeds, level(), stop)


def _futile(tests: list, design: Design, k: int) -> bool:
    """No firm verdict keeps conditional power ``design.futility``: supported needs every test's
    predicted side, not supported every check's and one claim test's other side, invalid one
    control's other side, did-not-take one treatment check's."""
    def can(t, side: str) -> bool:
        if t.outcome == ("supported" if side == "for" else "not supported"):
            return True
        p = t.p_for() if side == "for" else t.p_against()
        return bool(design.conditional_power(k, p) >= design.futility)

    checks = [t for t in tests if t.role != "claim"]
    claims = [t for t in tests if t.role == "claim"]
    supported = all(can(t, "for") for t in tests)
    not_supported = all(can(t, "for") for t in checks) and any(can(t, "against") for t in claims)
    failed_check = any(can(t, "against") for t in checks)
    return not (supported or not_supported or failed_check)
