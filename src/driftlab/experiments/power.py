"""Planning seeds from a pilot: each test's spread, the design's minimum detectable effect, and the
seeds at which the design reaches 80% power at the effect the pilot saw.

A pilot's per-seed spread is itself noisy (at 3 seeds its standard deviation is known to within a
factor of ~2), so the seeds named here are a plan, not a promise; the design's looks are what keep
the error rate whatever the spread turns out to be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.design import Design, simulate
from driftlab.experiments.stats import POWER, Test
from driftlab.train.schedule import tail_steps

MOST_SEEDS = 200


@dataclass
class TestPlan:
    name: str
    role: str
    effect: float  # the pilot's estimate
    threshold: float
    direction: str
    spread: float  # per-seed standard deviation of the statistic (delta method for ratios; logs for log-t)
    distance: float  # |effect - threshold| in units of the spread (on the log scale for log-t)
    mde: float  # the design's minimum detectable distance from the threshold, in the statistic's units
    power: float  # the design's power at the pilot's distance
    seeds: int | None  # the last look at which the design (looks scaled) reaches ``POWER``; None: > MOST_SEEDS

    def record(self) -> dict:
        return dict(self.__dict__)


def _scaled(design: Design, last: int) -> Design:
    """The design with its looks at the same fractions of a last look of ``last`` seeds."""
    looks = sorted({max(2, round(f * last)) for f in design.fractions} | {last})
    return Design(tuple(looks), design.spending, design.alpha, design.futility)


def seeds_for(design: Design, distance: float, power: float = POWER, experiments: int = 4000) -> int | None:
    """The smallest last look (the design's fractions kept) whose power at ``distance`` (effect beyond
    the threshold over the per-seed spread) reaches ``power``; None beyond ``MOST_SEEDS``."""
    if not (np.isfinite(distance) and distance > 0):
        return None

    def reaches(n: int) -> bool:
        return simulate(_scaled(design, n), distance, experiments=experiments)["accept_above_with_futility"] >= power

    if not reaches(MOST_SEEDS):
        return None
    lo, hi = 2, MOST_SEEDS  # reaches(hi); the smallest n that reaches
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid + 1, hi)
    return lo


def plan(tests: list[Test], design: Design) -> list[TestPlan]:
    """For each test of a pilot verdict: its per-seed spread, the design's MDE in the statistic's units,
    the design's power at the distance the pilot saw, and the seeds that would reach 80%."""
    mde_sd = design.mde()
    out = []
    for t in tests:
        e = t.estimate
        n = e.n_seeds if e.over == "seeds" else 0
        spread = e.se * np.sqrt(n) if n > 1 and np.isfinite(e.se) else float("nan")
        distance = abs(e.tstat(t.threshold)) / np.sqrt(n) if n > 1 else float("nan")
        if np.isinf(distance):  # no spread between seeds: any look decides
            power, seeds = 1.0, design.looks[0]
        elif np.isfinite(distance):
            power = simulate(design, distance, experiments=4000)["accept_above_with_futility"]
            seeds = seeds_for(design, distance)
        else:
            power, seeds = float("nan"), None
        out.append(TestPlan(t.name, t.role, e.value, t.threshold, t.direction, float(spread), float(distance),
                            float(mde_sd * spread), float(power), seeds))
    return out


def checkpoint_jitter(m: Measured, arm: str, stage: int, metric: str = "bits_aligned", **where) -> dict[str, float]:
    """How much of the between-seed spread of a stage's *last* checkpoint is checkpoint jitter: the
    variance among the stage's tail checkpoints within a seed (its trend over a few steps is small
    beside the noise there), over the variance of the last checkpoint's values across seeds. With
    ``tail`` checkpoints the end value averages them, which divides the jitter part by their number."""
    stage = stage % m.n_stages(arm)
    steps = tail_steps(m.configs[arm].stages[stage])
    within, last = [], []
    for s in m.seeds:
        values = [m.at(arm, s, stage, t, metric, **where) for t in steps]
        values = [v for v in values if np.isfinite(v)]
        if len(values) >= 2:
            within.append(np.var(values, ddof=1))
            last.append(values[-1])
    if len(within) < 2:
        return {"tail_checkpoints": len(steps), "seeds": len(within), "jitter_sd": float("nan"),
                "between_sd_last": float("nan"), "jitter_share": float("nan")}
    jitter, between = float(np.mean(within)), float(np.var(last, ddof=1))
    return {"tail_checkpoints": len(steps), "seeds": len(within), "jitter_sd": float(np.sqrt(jitter)),
            "between_sd_last": float(np.sqrt(between)), "jitter_share": jitter / between if between > 0 else float("nan")}
