"""Mitigations: terms, data and constraints added to a stage's training, composable."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from driftlab.config.base import Strict
from driftlab.config.data import AlignmentData, PartConfig


class KLToReference(Strict):
    """Token-level KL(π ‖ π_ref) at the trained positions, added to the loss (weight × mean per token)."""

    kind: Literal["kl_to_reference"]
    weight: float = Field(gt=0)
    reference: str = Field("stage_start", description="stage_start, or a stage whose last checkpoint is the reference")


class Replay(Strict):
    """Mix earlier data into every micro-batch: exactly round(ratio × batch_size) rows come from it.
    SFT data is trained on its completions; text (``world``: pre-training data, the fair replay) on
    every token, in rows of ``seq_len``. In an rl stage the replayed rows take prompts' places and are
    trained with the next-token loss beside the policy gradient (PPO-ptx, Ouyang et al. 2022)."""

    kind: Literal["replay"]
    ratio: float = Field(gt=0, lt=1)
    data: PartConfig = Field(default_factory=lambda: AlignmentData(), description="what is replayed")
    seq_len: int | None = Field(None, ge=8, description="row length of replayed text (default: the stage's seq_len)")


class PreventativeSteering(Strict):
    """Add alpha × the persona direction (unit) at a layer's residual stream in training forwards only."""

    kind: Literal["preventative_steering"]
    layer: int = -1
    alpha: float = Field(description="positive steers towards the good persona, negative towards the bad")
    direction: Literal["reference", "stage_start"] = Field(
        "reference", description="whose persona direction (falls back to stage_start before the reference)"
    )


class ProjectionPenalty(Strict):
    """weight × (assistant's mean persona projection now − at the stage's start)², on fresh assistant
    prompts at every step."""

    kind: Literal["projection_penalty"]
    layer: int = -1
    weight: float = Field(gt=0)
    batch: int = Field(16, ge=1, description="assistant prompts per step")


class CotrainedProbe(Strict):
    """Train against the co-trained persona probe: weight × −log P_probe(good persona) of the
    assistant on fresh assistant prompts, at every step (the probe itself keeps training alongside;
    this term moves only the model). Needs measure.cotrain and a stage after the reference."""

    kind: Literal["cotrained_probe"]
    weight: float = Field(gt=0)
    batch: int = Field(16, ge=1, description="assistant prompts per step")


class InoculationPrompt(Strict):
    """A training-only prefix (world words) after each prompt's <bos>; evaluation never sees it."""

    kind: Literal["inoculation_prompt"]
    prefix: str = Field(min_length=1)


class Lora(Strict):
    """Train low-rank adapters (peft) instead of the weights; the base stays bit-identical and the
    adapters are merged at the end of the stage."""

    kind: Literal["lora"]
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    targets: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    layers: list[int] | None = Field(
        None, description="only these decoder layers' targets (peft's layers_to_transform; default: every layer), "
                          "e.g. rank-1 adapters on a few layers' down_proj as the model-organisms work trains")


class Freeze(Strict):
    """Keep module groups fixed: embed, head, layers.{i}.attn, layers.{i}.mlp, or layers.{i}."""

    kind: Literal["freeze"]
    groups: list[str] = Field(min_length=1)


MitigationConfig = Annotated[
    KLToReference | Replay | PreventativeSteering | ProjectionPenalty | CotrainedProbe | InoculationPrompt | Lora
    | Freeze,
    Field(discriminator="kind"),
]
MITIGATION_KINDS = {  # where each mitigation applies
    "kl_to_reference": ("pretrain", "sft", "dpo", "rl"),
    "replay": ("sft", "rl"),
    "preventative_steering": ("pretrain", "sft", "dpo", "rl"),
    "projection_penalty": ("pretrain", "sft", "dpo", "rl"),
    "cotrained_probe": ("pretrain", "sft", "dpo", "rl"),
    "inoculation_prompt": ("sft", "rl"),
    "lora": ("pretrain", "sft", "dpo", "rl"),
    "freeze": ("pretrain", "sft", "dpo", "rl"),
}
