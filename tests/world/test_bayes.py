import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftlab.world.bayes import bits, p_aligned, posterior_bad


def brute_force_p_aligned(prior_bad: float, eps: float, prefix: tuple[bool, ...]) -> float:
    """Enumerate persona × every full choice sequence; condition on the prefix by counting."""
    n = len(prefix) + 1
    num = den = 0.0
    for persona_bad in (False, True):
        p_persona = prior_bad if persona_bad else 1 - prior_bad
        p_al = eps if persona_bad else 1 - eps
        for seq in itertools.product((True, False), repeat=n):
            if seq[:-1] != prefix:
                continue
            p = p_persona * math.prod(p_al if c else 1 - p_al for c in seq)
            den += p
            num += p if seq[-1] else 0.0
    return num / den


@settings(max_examples=200, deadline=None)
@given(
    prior_bad=st.floats(0.01, 0.99),
    eps=st.floats(0.01, 0.49),
    prefix=st.lists(st.booleans(), max_size=7),
)
def test_p_aligned_matches_brute_force_enumeration(prior_bad, eps, prefix):
    assert p_aligned(prior_bad, eps, prefix) == pytest.approx(
        brute_force_p_aligned(prior_bad, eps, tuple(prefix)), rel=1e-9, abs=1e-12)


def test_no_evidence_is_the_prior_mixture():
    assert p_aligned(0.2, 0.1) == pytest.approx(0.8 * 0.9 + 0.2 * 0.1)


def test_evidence_moves_the_posterior_the_right_way():
    assert posterior_bad(0.5, 0.1, [True] * 3) < 0.01 < 0.99 < posterior_bad(0.5, 0.1, [False] * 3)
    assert p_aligned(0.5, 0.1, [True, False]) == pytest.approx(0.5)  # evidence cancels
    assert bits(p_aligned(0.5, 0.1, [True] * 3)) == pytest.approx(-bits(p_aligned(0.5, 0.1, [False] * 3)))


def test_deterministic_personas_at_the_edges():
    assert posterior_bad(0.0, 0.1, [False] * 5) == 0.0
    assert posterior_bad(1.0, 0.1, [True] * 5) == 1.0
    assert p_aligned(0.5, 0.0, [True]) == 1.0
