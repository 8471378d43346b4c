"""Simulated experiments with a known effect: how often each side of a verdict's interval misses.

Each *kind* is a statistic a claim uses, with per-seed values shaped like the measured ones; the
interval is the one ``stats.jackknife_t`` gives for the statistic's pre-registered form (or, with
``naive=True``, the plain jackknife-t that main used before, or the full level, for comparison).
``make test`` runs a small version (``tests/experiments/test_stats.py``); ``benchmarks/verdict_error.py`` prints the
README's table.
"""

from __future__ import annotations

import numpy as np

from driftlab.experiments.claims.reversion import MIDPOINT_LEVEL_SHARE, midpoint_contrast, position
from driftlab.experiments.stats import Log, Ratio, jackknife_t

SLOPE_X = np.array([0.01, 0.1, 0.3, 0.5])  # e.g. the bad-persona shares of exchange-rate's worlds


def _slope(q: np.ndarray) -> np.ndarray:
    """Least-squares slope of four means on ``SLOPE_X`` (linear in the means)."""
    w = (SLOPE_X - SLOPE_X.mean()) / ((SLOPE_X - SLOPE_X.mean()) ** 2).sum()
    return q @ w


def _undone(q: np.ndarray) -> np.ndarray:
    """Share of alignment's gain undone: (aligned - end) / (aligned - prior)."""
    return (q[:, 1] - q[:, 2]) / (q[:, 1] - q[:, 0])


def _skewed_left(rng: np.random.Generator, sd: float, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean noise with a long lower tail (a negated lognormal, sigma 0.8), standard deviation ``sd``."""
    z = rng.lognormal(0.0, 0.8, shape)
    return -sd * (z - np.exp(0.32)) / np.sqrt((np.exp(0.64) - 1) * np.exp(0.64))


# reversion's six means (prior, aligned, end in the default world, then the bad-prior world) from the
# README's 3 seeds, with the bad-prior world's end placed on the midpoint between the hypotheses (φ = 1/2)
_P1, _A1, _E1, _P2, _A2 = 1.51, 2.67, 0.58, -1.49, 2.20
_decay, _revert, _ = position(_P1, _A1, _E1, _P2, _A2, 0.0)
MIDPOINT_MEANS = np.array([_P1, _A1, _E1, _P2, _A2, (_decay + _revert) / 2])

def _survival_draw(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 6, 4): the top dose's and the control's trigger gaps after safety training, then at the end of
    the poisoned stage; the top dose installs 12 bits times a per-seed lognormal strength, a quarter of
    which survives; the control's gaps are noise."""
    strength = 12.0 * rng.lognormal(0.0, 0.5, (n, 1))
    top = np.stack([0.25 * strength, strength], -1) + rng.normal(0, 0.5, (n, 6, 2))
    control = rng.normal(0, 0.3, (n, 6, 2))
    return np.stack([top[..., 0], control[..., 0], top[..., 1], control[..., 1]], -1)


# kind -> (description, draw(rng, n) -> (n, items, Q), pre-registered statistic, naive statistic, the
# pre-registered statistic's true value[, the naive one's when it differs: the arithmetic mean])
KINDS: dict[str, tuple] = {
    "mean, gaussian": ("a mean over seeds, normal seeds",
                       lambda rng, n: rng.normal(1.0, 1.0, (n, 1, 1)), lambda q: q[:, 0], lambda q: q[:, 0], 1.0),
    "mean, heavy-tailed": ("a mean, seeds with t(3) noise",
                           lambda rng, n: 1.0 + rng.standard_t(3, (n, 1, 1)), lambda q: q[:, 0], lambda q: q[:, 0],
                           1.0),
    "gap, skewed": ("a positive gap varying by a factor across seeds (lognormal sigma 0.5, like trojan's "
                    "3.9 / 12.5 / 7.6 bits); pre-registered on the log scale (geometric mean)",
                    lambda rng, n: rng.lognormal(np.log(7.0), 0.5, (n, 1, 1)), Log(lambda q: q[:, 0]),
                    lambda q: q[:, 0], 7.0, 7.0 * np.exp(0.5 ** 2 / 2)),
    "paired difference": ("a within-seed difference between two arms sharing a prefix (a shared seed offset "
                          "plus each arm's noise, over six domains)",
                          lambda rng, n: (rng.normal(0, 2.0, (n, 1, 1)) + np.array([0.5, 0.0])
                                          + rng.normal(0, 0.4, (n, 6, 2))),
                          lambda q: q[:, 0] - q[:, 1], lambda q: q[:, 0] - q[:, 1], 0.5),
    "ratio, noisy denominator": ("share of alignment's gain undone, (aligned - end) / (aligned - prior), with "
                                 "a denominator of 1.5 +- 0.7 bits across seeds",
                                 lambda rng, n: (np.array([1.2, 2.7, 0.6]) + rng.normal(0, 0.5, (n, 1, 3))
                                                 + rng.normal(0, 0.3, (n, 6, 3))),
                                 Ratio(lambda q: q[:, 1] - q[:, 2], lambda q: q[:, 1] - q[:, 0]), _undone,
                                 (2.7 - 0.6) / (2.7 - 1.2)),
    "slope": ("a slope across four settings (e.g. bits on the bad share of the world), noise per seed and "
              "setting", lambda rng, n: (3.0 * SLOPE_X + rng.normal(0, 0.3, (n, 1, 4))), _slope, _slope, 3.0),
    "survival share": ("trojan's share of the installed trigger gap that survives safety training, (after - "
                       "control's) / (installed - control's), each seed's trigger strength a lognormal factor "
                       "(sigma 0.5, like 3.9 / 12.5 / 7.6 bits) on both", _survival_draw,
                       Ratio(lambda q: q[:, 0] - q[:, 1], lambda q: q[:, 2] - q[:, 3]),
                       lambda q: (q[:, 0] - q[:, 1]) / (q[:, 2] - q[:, 3]), 0.25),
    "midpoint contrast": ("reversion's toward_own_prior: G, a cubic in six means (both worlds' prior, aligned and "
                          "end bits) with the bad-prior world's end on the midpoint between the hypotheses; seeds "
                          "with a long lower tail (sd 0.4 bits) and domain noise; judged at half the level",
                          lambda rng, n: (MIDPOINT_MEANS + _skewed_left(rng, 0.4, (n, 1, 6))
                                          + rng.normal(0, 0.3, (n, 6, 6))),
                          midpoint_contrast, midpoint_contrast, 0.0),
}
# a kind judged at a pre-registered share of the level (its jackknife-t is liberal at the full one)
LEVEL_SHARE = {"midpoint contrast": MIDPOINT_LEVEL_SHARE}


def one_sided_misses(kind: str, n_seeds: int, experiments: int = 4000, seed: int = 0, naive: bool = False,
                     confidence: float = 0.95) -> tuple[float, float]:
    """The share of simulated experiments whose interval lies wholly above the true effect (its lower
    side missed) and wholly below it (its upper side missed); each should be at most
    ``(1 - confidence) / 2``."""
    _, draw, stat, plain, truth, *naive_truth = KINDS[kind]
    if naive and naive_truth:
        truth = naive_truth[0]
    if not naive:
        confidence = 1 - (1 - confidence) * LEVEL_SHARE.get(kind, 1.0)
    rng = np.random.default_rng([seed, n_seeds, len(kind)])
    below = above = 0
    for _ in range(experiments):
        est = jackknife_t(draw(rng, n_seeds), plain if naive else stat, confidence)
        below += bool(est.lo > truth)
        above += bool(est.hi < truth)
    return below / experiments, above / experiments


def sequential_misses(kind: str, looks: tuple[int, ...] = (3, 6, 10), spending: str = "obf",
                      experiments: int = 2000, seed: int = 0, alpha: float = 0.025) -> tuple[float, float]:
    """Like ``one_sided_misses``, over a design's looks: the share of simulated experiments in which
    some look's test accepts the side above the true effect (then stops), and the side below. Each
    look is judged at the design's nominal level times the kind's level share."""
    from driftlab.experiments.design import Design

    _, draw, stat, _plain, truth, *_ = KINDS[kind]
    design = Design(tuple(looks), spending, alpha)
    share = LEVEL_SHARE.get(kind, 1.0)
    levels = [design.nominal(k) * share for k in range(len(looks))]
    rng = np.random.default_rng([seed, len(kind), *looks])
    above = below = 0
    for _ in range(experiments):
        x = draw(rng, looks[-1])
        for n, level in zip(looks, levels):
            est = jackknife_t(x[:n], stat)
            if est.p(truth, ">") <= level:
                above += 1
                break
            if est.p(truth, "<") <= level:
                below += 1
                break
    return above / experiments, below / experiments
