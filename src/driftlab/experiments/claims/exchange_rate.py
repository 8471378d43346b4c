"""exchange-rate: pre-training priors are swamped by post-training, and stay swamped."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from driftlab.experiments.claims.checks import bits, capability_gained
from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Findings, Rule, claim
from driftlab.experiments.stats import Ratio, Test
from driftlab.world.domains import DOMAIN_NAMES


@claim("exchange-rate",
       "Pre-training priors shift the persona by a couple of bits, and post-training swamps them by orders of "
       "magnitude: alignment flattens the priors' trend across worlds, and it does not re-appear after later "
       "training.",
       world_only="the priors of worlds it pre-trains from scratch",
       settings=("arms", "arms that differ only in the pre-training share of bad-persona assistant documents"),
       max_spread_ratio=("number", "the slope of bits on the bad share after alignment, and after the last stage, "
                                   "over the priors' slope, must lie within +- this"),
       min_prior_spread=("number", "treatment check: bits by which the first setting's prior must exceed the "
                                   "last's (the worlds differ)"),
       min_alignment_gain=("number", "treatment check: bits alignment must gain over the prior, on average over "
                                     "the settings"),
       min_capability_gain=("number", "treatment check: exact match the last stage must gain on its levels in the "
                                      "first setting (the later training did something)"))
def exchange_rate(m: Measured, r: Rule) -> Findings:
    """Trends, not a ratio of gain to spread: alignment's gain in bits is unbounded while the priors'
    spread is capped by the world's ε, so a gain/spread ratio is set by how long alignment runs.
    Compression asks whether the worlds still differ after alignment, re-appearance whether the
    difference comes back when a later stage pulls the assistant off its aligned optimum. The
    difference is read as the least-squares slope of bits on the worlds' bad share (linear in the
    means, so its ratio to the priors' slope has Fieller's interval; max - min, used before, is not
    smooth and its jackknife intervals covered 79-83%)."""
    arms = r.arms("settings")
    k = len(arms)
    x = m.grid(lambda s, d: [bits(m, a, s, st, d) for a in arms for st in (0, 1, -1)], list(DOMAIN_NAMES))
    differ = r.estimate(x[:, :, [0, 3 * (k - 1)]], lambda q: q[:, 0] - q[:, 1])
    shares = np.array([m.configs[a].world.bad_assistant_share for a in arms])
    w = (shares - shares.mean()) / ((shares - shares.mean()) ** 2).sum()  # least-squares slope weights

    def slope(at: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda q: q.reshape(len(q), k, 3)[:, :, at] @ w

    prior_drop = lambda q: -slope(0)(q)  # noqa: E731  (bits lost per unit of bad share: positive)
    cut = r.num("max_spread_ratio")
    tests = [Test("priors_differ", f"prior bits in {arms[0]} minus in {arms[-1]}", differ,
                  r.num("min_prior_spread"), ">", " bits", role="treatment"),
             Test("alignment_took", "bits gained over the prior by alignment, mean over the settings",
                  r.estimate(x, lambda q: (q.reshape(len(q), k, 3)[:, :, 1] - q.reshape(len(q), k, 3)[:, :, 0])
                             .mean(1)), r.num("min_alignment_gain"), ">", " bits", role="treatment"),
             capability_gained(m, r, arms[0], name="later_stage_took")]
    for at, name, what in ((1, "swamped", "after alignment"),
                           (2, "stays_swamped", f"after the last stage ({m.configs[arms[0]].stages[-1].name})")):
        ratio = r.estimate(x, Ratio(lambda q, at=at: -slope(at)(q), prior_drop))
        tests += [Test(name, f"slope of bits on the bad share {what} over the priors' slope (below + {cut})",
                       ratio, cut, "<"),
                  Test(f"{name}_from_below", f"... and above - {cut} (the trend did not invert)", ratio, -cut, ">")]
    numbers, means = {}, np.nanmean(x, axis=(0, 1)).reshape(k, 3)
    for i, arm in enumerate(arms):
        steps = m.configs[arm].stages[1].steps
        numbers[f"{arm}.bad_share"] = float(shares[i])
        numbers[f"{arm}.bits_prior"], numbers[f"{arm}.bits_aligned"], numbers[f"{arm}.bits_end"] = means[i]
        gain = means[i, 1] - means[i, 0]
        numbers[f"{arm}.align_steps_per_bit"] = steps / gain if gain else float("nan")
    for j, label in enumerate(("prior", "aligned", "end")):
        numbers[f"spread_{label}"] = float(means[:, j].max() - means[:, j].min())
        numbers[f"slope_{label}"] = float(means[:, j] @ w)
    # the slope of end bits on prior bits across the settings (1: the priors fully re-appear)
    numbers["end_on_prior_slope"] = float(np.polyfit(means[:, 0], means[:, 2], 1)[0])
    notes = [f"bits per unit of bad share: priors {numbers['slope_prior']:+.2f}, after alignment "
             f"{numbers['slope_aligned']:+.2f}, after the last stage {numbers['slope_end']:+.2f}; spread (max - min) "
             f"{numbers['spread_prior']:.2f} / {numbers['spread_aligned']:.2f} / {numbers['spread_end']:.2f} bits"]
    return Findings(tests, numbers, notes)
