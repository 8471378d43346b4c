"""Claims: the registry, the declaration, and the pre-registered rule a verdict function reads.

    @claim("reversion", "Benign capability training ... back toward the prior, not past it",
           treatment=("arm", "the arm with capability training"), min_drift=("number", "..."))
    def reversion(m: Measured, rule: Rule) -> Findings: ...

``@claim`` declares: it attaches a ``Claim`` to the function and registers nothing. The registry is
filled by explicit imports (``verdict.registered`` for the shipped claims, ``plugins.load_plugins``
for a researcher's own files), so importing a module never changes what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from driftlab.config import ClaimSpec
from driftlab.errors import ConfigError
from driftlab.experiments.design import Design
from driftlab.experiments.stats import Estimate, Log, Ratio, Stat, Test, jackknife_t
from driftlab.registry import Registry

if TYPE_CHECKING:
    from driftlab.experiments.claims.measured import Measured

RULE_KINDS = ("number", "arm", "arms")


@dataclass
class Findings:
    tests: list[Test]
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] | None = None  # e.g. the mitigation table
    outcome: str | None = None  # overrides the all-tests rule (e.g. "any mitigation helps")


@dataclass
class Claim:
    id: str
    text: str
    rule: dict[str, tuple[str, str]]  # key -> (kind, description)
    judge: Callable[[Measured, Rule], Findings]
    self_probe: bool = False  # the claim reads the experiment's self-probe rows
    scenarios: tuple[str, ...] = ()  # the scenarios it judges, for a file with ``scenarios`` (arms <scenario>.<arm>)
    world_only: str = ""  # what it reads that only Persona World's measurements have ("" : runs on a pre-trained model)

    def check_rule(self, spec: ClaimSpec, arms: list[str], origin: str) -> None:
        """A preset's rule names exactly this claim's keys, with arms that exist."""
        for key in spec.rule:
            if key not in self.rule:
                raise ConfigError(f"{origin}: claim.rule.{key}: not a rule of claim {self.id!r} "
                                  f"(its rule: {', '.join(self.rule)})")
        for key, (kind, desc) in self.rule.items():
            if key not in spec.rule:
                raise ConfigError(f"{origin}: claim.rule.{key}: missing ({desc})")
            value = spec.rule[key]
            names = value if kind == "arms" else [value] if kind == "arm" else None
            if kind == "number" and not isinstance(value, int | float):
                raise ConfigError(f"{origin}: claim.rule.{key}: expected a number (got {value!r})")
            if names is not None:
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ConfigError(f"{origin}: claim.rule.{key}: expected arm name(s) (got {value!r})")
                for n in names:
                    if n not in arms:
                        raise ConfigError(f"{origin}: claim.rule.{key}: no arm {n!r} (arms: {', '.join(arms)})")


CLAIMS: Registry[Claim] = Registry("claim")


def claim(id: str, text: str, self_probe: bool = False, scenarios: tuple[str, ...] = (), world_only: str = "",
          **rule: tuple[str, str]) -> Callable:
    """Declare ``fn`` the verdict function of claim ``id`` (``fn.claim``; ``register`` adds it to
    the registry); ``rule`` declares the keys its preset must fix: ``name=("number" | "arm" |
    "arms", "what it is")``; ``self_probe``: the experiment must fit a probe of the assistant's own
    persona (``self_probe`` in the file); ``scenarios``: the scenarios it can judge in a file with
    ``scenarios``; ``world_only``: what it reads that a pre-trained model is not measured on (its
    experiment then refuses to run one)."""
    for key, (kind, _) in rule.items():
        if kind not in RULE_KINDS:
            raise ValueError(f"claim {id!r}: rule key {key!r} has unknown kind {kind!r}")

    def mark(fn: Callable[[Measured, Rule], Findings]) -> Callable[[Measured, Rule], Findings]:
        fn.claim = Claim(id, " ".join(text.split()), rule, fn, self_probe, scenarios, world_only)  # type: ignore[attr-defined]
        return fn
    return mark


def register(fn: Callable, origin: str = "driftlab") -> None:
    """Add a ``@claim``-declared function to the registry; a name taken twice is an error naming
    where the second came from."""
    c: Claim = fn.claim  # type: ignore[attr-defined]
    if c.id in CLAIMS:
        raise ConfigError(f"{origin}: claim {c.id!r} is already registered")
    CLAIMS.register(c.id)(c)


class Rule:
    """A preset's pre-registered rule, and the confidence every test's interval uses."""

    def __init__(self, spec: ClaimSpec):
        self.spec = spec

    def num(self, key: str) -> float:
        return float(self.spec.rule[key])  # type: ignore[arg-type]

    def arm(self, key: str) -> str:
        return str(self.spec.rule[key])

    def arms(self, key: str) -> list[str]:
        return list(self.spec.rule[key])  # type: ignore[arg-type]

    def level(self, seeds: int) -> float:
        """The one-sided level a test is judged at with ``seeds`` seeds: the design's nominal level at
        that look, or the fixed-sample level when it is not a planned look."""
        d = self.spec.design
        alpha = (1 - self.spec.confidence) / 2
        design = Design(tuple(d.looks), d.spending, alpha, d.futility)
        look = design.look_of(seeds)
        return design.nominal(look) if look is not None else alpha

    def estimate(self, x: np.ndarray, stat: Stat | Ratio | Log, tests: int = 1) -> Estimate:
        """``stat`` on (seeds, items, quantities) with its interval; ``tests`` > 1 widens the interval
        for that many comparisons (Bonferroni: the family's error rate stays at 1 - confidence)."""
        confidence = 1 - (1 - self.spec.confidence) / tests
        return jackknife_t(x, stat, confidence)
