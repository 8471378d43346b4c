"""The checks several claims share: the assistant's bits at a stage's end, the capability a stage
gained, the world model intact, and the shares of alignment's gain undone or retained (ratios of
means, so Fieller's interval)."""

from __future__ import annotations

import numpy as np

from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Rule
from driftlab.experiments.stats import Ratio, Test

BITS = {"metric": "bits_aligned", "context": "assistant"}


def bits(m: Measured, arm: str, seed: int, stage: int, domain: str = "all", context: str = "assistant") -> float:
    split = "all" if domain == "all" else None
    return m.end(arm, seed, stage, "bits_aligned", context=context, domain=domain, split=split)


def seed_mean(m: Measured, fn) -> float:
    """Mean over seeds of ``fn(seed)``; NaN when nothing was measured."""
    values = [v for v in (fn(seed) for seed in m.seeds) if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def stage_of(m: Measured, arm: str, stage: int) -> int:
    return stage % m.n_stages(arm)


def capability_gained(m: Measured, r: Rule, arm: str, stage: int = -1, name: str = "capability_gained",
                      tests: int = 1) -> Test:
    """Treatment check: exact match gained over ``stage`` on the levels it trains (items: levels);
    ``tests`` > 1 widens the interval for that many comparisons."""
    k = stage_of(m, arm, stage)
    levels = m.configs[arm].stage_levels(k) or [0]

    def acc(s: int, lv: int, at: int) -> float:
        return m.end(arm, s, at, "capability_acc", domain="arithmetic", split=f"level_{lv}")

    x = m.grid(lambda s, lv: [acc(s, lv, k - 1), acc(s, lv, k)], levels)
    return Test(name, f"exact match gained over {m.configs[arm].stages[k].name} in {arm}, on the "
                f"levels it trains ({', '.join(map(str, levels))})", r.estimate(x, lambda q: q[:, 1] - q[:, 0], tests),
                r.num("min_capability_gain"), ">", role="treatment")


def world_intact(m: Measured, r: Rule, arm: str, stage: int = -1) -> Test:
    """Treatment check: held-out LM loss rose by less than ``max_loss_rise`` over ``stage`` (the
    capability came without destroying the world model)."""
    k = stage_of(m, arm, stage)
    x = m.grid(lambda s, _: [m.end(arm, s, at, "heldout_loss", domain=None, split=None) for at in (k - 1, k)], [None])
    return Test("world_intact", f"held-out LM loss change over {m.configs[arm].stages[k].name} in {arm}",
                r.estimate(x, lambda q: q[:, 1] - q[:, 0]), r.num("max_loss_rise"), "<", " nats", role="treatment")


# (B, 3) means of prior, aligned, end → the share of alignment's gain undone at the end, (aligned - end) /
# (aligned - prior), and the share retained, (end - prior) / (aligned - prior): ratios of means whose
# denominator an "alignment took" check shows positive, so Fieller's interval (``stats.Ratio``)
UNDONE = Ratio(lambda q: q[:, 1] - q[:, 2], lambda q: q[:, 1] - q[:, 0])
RETAINED = Ratio(lambda q: q[:, 2] - q[:, 0], lambda q: q[:, 1] - q[:, 0])
