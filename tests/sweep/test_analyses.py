"""The elasticity read-outs and their trend over a sweep's axis, on curves with known answers."""

from __future__ import annotations

import numpy as np

from driftlab.experiments.verdicts import _crossing
from driftlab.sweep.analyses import seed_slopes
from driftlab.sweep.report import interval


def test_half_time_is_the_first_crossing_linear_between_checkpoints():
    steps, bits = [0, 10, 20, 40], [4.0, 3.0, 1.0, 0.5]
    assert _crossing(steps, bits, 2.0) == 15.0  # halfway between 10 (3.0) and 20 (1.0)
    assert _crossing(steps, bits, 4.0) == 0.0
    assert np.isnan(_crossing(steps, bits, 0.0))  # never reached: censored by the caller


def test_trend_interval_over_seeds_keeps_its_coverage_at_three_seeds():
    """A known slope of log2(ratio) per doubling of tokens (0.3), three token levels, two sizes,
    seed-level noise in each seed's slope and point-level noise: the 95% t interval over three seeds'
    slopes covers the truth ~95% of the time (a percentile bootstrap over three would cover ~75%)."""
    rng = np.random.default_rng(0)
    tokens, truth, covered, trials = [0.5e6, 2e6, 6e6], 0.3, 0, 2000
    for _ in range(trials):
        seed_slope = truth + rng.normal(0, 0.2, size=3)
        groups = []
        for size_offset in (0.0, 0.8):
            group = []
            for t in tokens:
                ratios = {s: 2 ** (size_offset + seed_slope[s] * np.log2(t / 1e6) + rng.normal(0, 0.1)) for s in range(3)}
                group.append({"tokens": t, "seeds": {s: {"ratio": r} for s, r in ratios.items()}})
            groups.append(group)
        _, lo, hi = interval(seed_slopes(groups, "tokens", "ratio", True, [0, 1, 2]))
        covered += lo <= truth <= hi
    assert 0.93 <= covered / trials <= 0.97, covered / trials
