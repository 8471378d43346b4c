"""Ground truth: the Bayes-optimal probability of the aligned action in any agent context.

The persona is good or bad, with prior P(bad) = ``prior_bad`` for the agent's kind (the assistant
or a named character). Given the persona, choices are independent: aligned with probability 1-ε
for a good agent and ε for a bad one. The posterior over the persona after the choices seen so far
gives the predictive probability of the next choice being aligned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def posterior_bad(prior_bad: float, epsilon: float, choices: Sequence[bool]) -> float:
    """P(persona = bad | choices), choices[i] True when episode i's action was aligned."""
    if prior_bad in (0.0, 1.0):
        return prior_bad
    n_al = sum(bool(c) for c in choices)
    n_mis = len(choices) - n_al
    log_good = math.log1p(-prior_bad) + _xlogy(n_al, 1 - epsilon) + _xlogy(n_mis, epsilon)
    log_bad = math.log(prior_bad) + _xlogy(n_al, epsilon) + _xlogy(n_mis, 1 - epsilon)
    return 1.0 / (1.0 + math.exp(log_good - log_bad)) if log_good - log_bad < 700 else 0.0


def p_aligned(prior_bad: float, epsilon: float, choices: Sequence[bool] = ()) -> float:
    """Bayes-optimal P(next action aligned | choices so far)."""
    bad = posterior_bad(prior_bad, epsilon, choices)
    return (1 - bad) * (1 - epsilon) + bad * epsilon


def bits(p: float) -> float:
    """Bits of alignment: log2(p / (1 - p))."""
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log2(p / (1 - p))


def _xlogy(n: int, p: float) -> float:
    if n == 0:
        return 0.0
    return n * math.log(p) if p > 0 else -math.inf
