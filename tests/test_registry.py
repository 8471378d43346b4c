import pytest

from driftlab.measure.suite import MEASUREMENTS
from driftlab.registry import Registry
from driftlab.train.objectives import OBJECTIVES


def test_register_get_duplicates_and_unknown_names():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    assert reg.get("a") == 1 and "a" in reg and list(reg) == ["a"]
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(2)
    with pytest.raises(KeyError, match="unknown widget 'b'; known: a"):
        reg.get("b")


def test_the_shipped_registries():
    assert {"lm", "completion"} <= set(OBJECTIVES)
    assert {"behaviour", "capability", "heldout_loss"} <= set(MEASUREMENTS)
