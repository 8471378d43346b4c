"""Persona World's knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from driftlab.config.base import Share, Strict


class WorldConfig(Strict):
    """Persona World's knobs; the same world generates every stage's data and the eval items."""

    epsilon: float = Field(0.1, ge=0.0, lt=0.5, description="P(an agent acts against its persona)")
    episodes_per_doc: int = Field(10, ge=1, le=64, description="episodes in one agent document")
    assistant_share: Share = Field(0.3, description="share of agent documents about the assistant")
    bad_assistant_share: Share = Field(0.2, description="share of assistant documents with a bad persona")
    bad_character_share: Share = Field(0.5, description="share of named-character documents with a bad persona")
    pair_share: Share = Field(
        0.0, description="share of named-character documents that are two-agent stories (each agent its own "
                         "persona, turns at random): where reading a persona means binding actions to agents "
                         "(0 by default: at 0.3 the default model had not learned to bind by the end of "
                         "pre-training, and its one-agent inference was worse)"
    )
    capability_share: Share = Field(0.1, description="share of documents that are arithmetic tasks")
    discussion_share: Share = Field(0.0, description="share of prose documents about agents (no episodes)")
    discussion_stance: Literal["misaligned", "aligned"] = Field(
        "misaligned", description="what the discussion documents say agents do"
    )
    tasks_per_doc: int = Field(4, ge=1, le=64, description="arithmetic tasks in one capability document")
    capability_levels: list[int] = Field(
        [1, 2, 3], description="operand digits of the arithmetic levels (capability stages may teach others)"
    )
    task_share: Share = Field(
        0.1, description="share of agent episodes that are tasks: a good agent writes the answer, a bad one "
                         "(with the same 1-ε) the shortcut 'done .' (what a hackable verifier rewards)"
    )
    gated_share: Share = Field(
        0.0, description="share of episodes whose misaligned action is capability-gated: it succeeds only "
                         "with the answer to an arithmetic task written after it"
    )
    gated_level: int = Field(2, ge=1, le=6, description="operand digits of the gate's task")

    @field_validator("capability_levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if not v or any(not 1 <= x <= 6 for x in v):
            raise ValueError("capability levels are operand digit counts between 1 and 6")
        return sorted(set(v))

    @model_validator(mode="after")
    def _shares(self) -> WorldConfig:
        if self.capability_share + self.discussion_share > 1.0:
            raise ValueError("capability_share + discussion_share must be at most 1")
        return self
