"""One training stage: its kind, data, optimiser, schedule, checkpoints and mitigations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from driftlab.config.base import Strict
from driftlab.config.data import KIND_SOURCES, MIXTURE_SOURCES, DataConfig, MixtureData
from driftlab.config.mitigations import (
    MITIGATION_KINDS,
    InoculationPrompt,
    MitigationConfig,
    Replay,
)


class CheckpointSchedule(Strict):
    """Steps at which a checkpoint is written and measured: log- and linear-spaced, plus the last."""

    log: int = Field(8, ge=0, description="log-spaced checkpoints between step 1 and the last")
    linear: int = Field(4, ge=0, description="evenly spaced checkpoints")
    tail: int = Field(0, ge=0, description="checkpoints evenly spaced over the stage's last `tail_span` of steps, "
                                           "ending at the last: a verdict's end value is their mean (0: the last "
                                           "checkpoint alone)")
    tail_span: float = Field(0.1, gt=0.0, le=0.5, description="the share of the stage's steps the tail covers")


class RLSettings(Strict):
    """Policy gradient on sampled answers to the stage's arithmetic prompts, rewarded by a verifier."""

    algorithm: Literal["grpo", "reinforce"] = Field(
        "grpo", description="grpo: advantages normalised within each prompt's group; reinforce: reward "
                            "minus the batch's mean reward"
    )
    group_size: int = Field(4, ge=2, description="samples per prompt (batch_size counts prompts)")
    verifier: Literal["exact", "hackable"] = Field(
        "exact", description="exact: the correct answer only; hackable: also trusts a claim of completion ('done .', "
                             "the shortcut the world's bad agents take)"
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="answer tokens sampled (default: the longest correct answer of the stage's "
                                "levels, its digits and the full stop); shorter is a config error"
    )
    temperature: float = Field(1.0, gt=0)


class StageConfig(Strict):
    name: str = Field(description="unique name, used in metrics and checkpoint paths")
    kind: Literal["pretrain", "sft", "dpo", "rl"]
    data: DataConfig
    objective: str | None = Field(None, description="objective name (default: lm for pretrain, completion for sft)")
    steps: int = Field(ge=0, description="optimizer steps (0: no training, only the stage's start is measured — "
                                         "how a pre-trained model's own pre-training stands in for a pretrain stage)")
    batch_size: int = Field(32, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    seq_len: int = Field(256, ge=8, description="packed sequence length (pretrain) / max length (sft)")
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final LR / peak LR for cosine")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null to disable")
    checkpoints: CheckpointSchedule = CheckpointSchedule()
    beta: float = Field(0.1, gt=0, description="dpo: strength of the implicit KL to the stage's start")
    mitigations: list[MitigationConfig] = Field([], description="composable, several at once")
    rl: RLSettings = Field(default_factory=RLSettings, description="rl stages only")

    @model_validator(mode="after")
    def _data_fits_kind(self) -> StageConfig:
        allowed = KIND_SOURCES[self.kind]
        if self.data.source not in allowed:
            raise ValueError(f"a {self.kind} stage takes {', '.join(allowed)} data, not {self.data.source!r}")
        if isinstance(self.data, MixtureData):
            for j, part in enumerate(self.data.parts):
                if part.data.source not in MIXTURE_SOURCES[self.kind]:
                    raise ValueError(f"data.parts.{j}: a {self.kind} stage's mixture takes "
                                     f"{', '.join(MIXTURE_SOURCES[self.kind])}, not {part.data.source!r}")
            rows = sum(p.rows for p in self.data.parts)
            if rows != self.batch_size:
                raise ValueError(f"data.parts: the rows of the mixture's parts sum to {rows}, not to the "
                                 f"stage's batch_size {self.batch_size}")
        for kind, objective in (("dpo", "dpo"), ("rl", "policy_gradient")):
            if (self.kind == kind) != (self.objective_name == objective):
                raise ValueError(f"the {objective} objective goes with a {kind} stage (kind {self.kind!r}, "
                                 f"objective {self.objective_name!r})")
        kinds = [m.kind for m in self.mitigations]
        for i, m in enumerate(self.mitigations):
            if self.kind not in MITIGATION_KINDS[m.kind]:
                raise ValueError(f"mitigations.{i}: {m.kind} does not apply to a {self.kind} stage "
                                 f"(it applies to {', '.join(MITIGATION_KINDS[m.kind])})")
            if kinds.count(m.kind) > 1:
                raise ValueError(f"mitigations.{i}: {m.kind} is given twice")
            if isinstance(m, InoculationPrompt) and isinstance(self.data, MixtureData):
                raise ValueError(f"mitigations.{i}: inoculation_prompt prefixes prompts; a mixture's text parts "
                                 f"have none (put the prefix in a jsonl part instead)")
            if isinstance(m, Replay) and m.data.source not in (*KIND_SOURCES["sft"], "world", "discussion"):
                raise ValueError(f"mitigations.{i}: replay needs sft or text data, not {m.data.source!r}")
        if "lora" in kinds and "freeze" in kinds:
            raise ValueError("lora already freezes every base weight; drop freeze")
        return self

    @property
    def objective_name(self) -> str:
        return self.objective or {"pretrain": "lm", "sft": "completion", "dpo": "dpo", "rl": "policy_gradient"}[self.kind]
