"""The bootstrap and the three-way decision, against closed forms and hand-made data (no model)."""

import numpy as np
import pytest

from driftlab.experiments.stats import Estimate, Test, bootstrap, combine


def test_bootstrap_of_a_mean_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=(400, 1, 1))  # 400 seeds, one item: a plain bootstrap of the mean
    est = bootstrap(x, lambda q: q[:, 0], n=4000)
    se = x.std(ddof=1) / np.sqrt(400)
    assert est.value == pytest.approx(x.mean())
    assert est.lo == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert est.hi == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_bootstrap_resamples_items_inside_seeds_and_handles_ratios():
    x = np.zeros((3, 6, 2))
    x[:, :, 0] = 1.0  # numerator
    x[:, :, 1] = 2.0  # denominator: a ratio of means of exactly 0.5 with no spread
    est = bootstrap(x, lambda q: q[:, 0] / q[:, 1])
    assert (est.value, est.lo, est.hi) == (0.5, 0.5, 0.5)
    x[0, :, 0] = 3.0  # one seed differs: the interval opens
    est = bootstrap(x, lambda q: q[:, 0] / q[:, 1])
    assert est.lo < est.value < est.hi
    with pytest.raises(ValueError, match="seeds, items, quantities"):
        bootstrap(np.zeros((3, 2)), lambda q: q[:, 0])


@pytest.mark.parametrize("lo, hi, direction, outcome", [
    (0.3, 0.9, ">", "supported"),
    (-0.5, 0.1, ">", "not supported"),
    (0.1, 0.5, ">", "inconclusive"),
    (-0.9, -0.3, "<", "supported"),
    (0.3, 0.9, "<", "not supported"),
    (float("nan"), float("nan"), ">", "inconclusive"),
])
def test_outcome_is_which_side_of_the_threshold_the_interval_lies(lo, hi, direction, outcome):
    t = Test("t", "", Estimate((lo + hi) / 2, lo, hi, 3, 6), 0.2 if direction == ">" else -0.2, direction)
    assert t.outcome == outcome


def test_combine():
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "not supported", "inconclusive"]) == "not supported"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine([]) == "inconclusive"


def test_one_seed_and_one_item_has_no_interval():
    est = bootstrap(np.array([[[0.7]]]), lambda q: q[:, 0])
    assert est.value == 0.7 and np.isnan(est.lo) and np.isnan(est.hi)
    assert Test("t", "", est, 0.1, ">").outcome == "inconclusive"


def _t(outcome: str, role: str, seeds: int = 3) -> Test:
    lo, hi = {"supported": (0.5, 0.9), "not supported": (-0.9, -0.5), "inconclusive": (-0.5, 0.5)}[outcome]
    t = Test("t", "", Estimate((lo + hi) / 2, lo, hi, seeds, 6), 0.0, ">", role=role)
    assert t.outcome == outcome
    return t


def test_checks_decide_before_the_claim_tests():
    from driftlab.experiments.stats import DID_NOT_TAKE, INVALID, decide, ordered

    ok, no, unsure = "supported", "not supported", "inconclusive"
    claim_no = [_t(no, "claim")]
    assert decide([_t(ok, "treatment"), _t(ok, "control"), *claim_no]) == "not supported"
    # a treatment that did not take never yields 'not supported'; a failed control makes it invalid
    assert decide([_t(no, "treatment"), _t(ok, "control"), *claim_no]) == DID_NOT_TAKE
    assert decide([_t(ok, "treatment"), _t(no, "control"), _t(ok, "claim")]) == INVALID
    assert decide([_t(no, "treatment"), _t(no, "control"), _t(ok, "claim")]) == INVALID
    # an unclear check leaves the verdict unclear, whatever the claim tests say
    assert decide([_t(unsure, "treatment"), _t(ok, "claim")]) == "inconclusive"
    assert decide([_t(ok, "treatment"), _t(ok, "claim")]) == "supported"
    assert decide([_t(ok, "treatment"), _t(no, "claim")], claim_outcome="supported") == "supported"
    # one seed: the tests' intervals are over items only, and the verdict is never firm
    from driftlab.experiments.stats import ONE_SEED

    assert decide([_t(ok, "treatment", 1), _t(no, "claim", 1)]) == ONE_SEED
    assert decide([_t(ok, "treatment", 1), _t(ok, "claim", 1)]) == ONE_SEED
    assert decide([_t(no, "treatment", 1), _t(no, "claim", 1)]) == DID_NOT_TAKE
    tests = [_t(ok, "claim"), _t(ok, "control"), _t(ok, "treatment")]
    assert [t.role for t in ordered(tests)] == ["treatment", "control", "claim"]
    assert ordered(tests)[0].line().startswith("[treatment] t:")
