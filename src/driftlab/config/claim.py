"""A preset's claim, its verdict rule and its pre-planned looks, fixed before anything runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt, model_validator

from driftlab.config.base import Strict


class DesignSpec(Strict):
    """Seeds in pre-planned looks (``experiments/design.py``): each test is judged at its look's
    nominal level, so that each side errs at most (1 - confidence) / 2 over all looks."""

    looks: list[StrictInt] = Field([3, 6, 10], min_length=1,
                                   description="seeds per arm at each look, increasing, the first at least 2")
    spending: Literal["obf", "pocock"] = Field("obf", description="Lan-DeMets alpha spending: O'Brien-Fleming-like or "
                                                                  "Pocock-like")
    futility: float = Field(0.05, ge=0.0, lt=1.0, description="an interim look stops when no firm verdict has this "
                                                               "conditional power (non-binding; 0: never)")

    @model_validator(mode="after")
    def _increasing(self) -> DesignSpec:
        if self.looks[0] < 2 or any(b <= a for a, b in zip(self.looks, self.looks[1:])):
            raise ValueError(f"looks must be increasing seed counts of at least 2 (got {self.looks})")
        return self


class ClaimSpec(Strict):
    """The claim a preset tests and its verdict rule, fixed in the file before anything runs."""

    id: str = Field(description="a registered claim (`driftlab claims` lists them)")
    rule: dict[str, float | str | list[str]] = Field(
        {}, description="the verdict function's thresholds and the arms it compares (pre-registered)"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="two-sided confidence of every interval; each side "
                                                               "errs at most half of 1 - confidence over all looks")
    design: DesignSpec = Field(default_factory=DesignSpec, description="the looks at which seeds are added")
    failed_seeds: Literal["exclude", "hold"] = Field(
        "exclude", description="a seed whose own value fails a treatment check: left out of every test (counted), or "
                               "the verdict held at 'treatment did not take'; pre-registered")
    max_failed_share: float = Field(0.1, ge=0.0, lt=1.0, description="with exclude: more seeds than this share failing "
                                                                     "a treatment check holds the verdict (a fragile "
                                                                     "treatment)")
    fresh_from: int = Field(1000, ge=0, description="the first seed not looked at while the rule was shaped or "
                                                    "tuned: a confirmatory verdict uses only seeds from here on "
                                                    "(every preset was shaped on seeds 0-2; one re-tuned on 1000-1002 "
                                                    "confirms from 2000)")
    frozen: str | None = Field(None, description="the rule's hash, fixed before any confirmatory seed ran: a verdict "
                                                 "is confirmatory only when its rule hashes to it and every seed is "
                                                 ">= fresh_from (`driftlab freeze` prints the hash)")


class SelfProbeSpec(Strict):
    """The assistant's own persona, read with no evidence in context: a linear probe fitted on the
    assistant's activations in two arms whose assistants differ in persona by construction, at the
    end of ``stage`` (the arms share every stage before it, so their models share a base), and read
    at every checkpoint of both. The prompts are the same words in both arms: nothing lexical to read."""

    good: str = Field(description="the arm whose assistant is good at the end of the stage")
    bad: str = Field(description="the arm whose assistant is bad at the end of the stage")
    stage: str = Field(description="the stage whose last checkpoints the probe is fitted on")
    items_per_domain: int = Field(32, ge=2, description="assistant prompts per domain the probe is fitted on")
