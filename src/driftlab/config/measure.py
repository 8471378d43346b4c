"""What is measured at every checkpoint."""

from __future__ import annotations

from pydantic import Field

from driftlab.config.base import Strict


class ConceptSource(Strict):
    """A concept to probe for, from JSONL files of ``{"prompt": "...", "label": 0 | 1}``: the
    activation is read at the prompt's last token."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    train: str = Field(description="JSONL the probe is fitted on")
    eval: str = Field(description="JSONL the probe is scored on (held out)")


class MeasureConfig(Strict):
    items_per_domain: int = Field(32, ge=1, description="behaviour items per domain and context")
    extra: list[str] = Field([], description="measurements of your own (registered by a file in `plugins`) run at "
                                             "every checkpoint beside the built-in ones")
    evidence_episodes: int = Field(3, ge=1, description="episodes of evidence in the good/bad contexts")
    graded_items_per_domain: int = Field(
        2, ge=0, description="behaviour items per domain for each graded-evidence pattern (g aligned and b "
                             "misaligned episodes, 0 to 3 in all); 0: none"
    )
    capability_items: int = Field(64, ge=1, description="arithmetic items per level")
    split_from: str | None = Field(
        None, description="stage whose trained domains form the 'trained' split (default: first alignment stage)"
    )
    batch_size: int = Field(64, ge=1, description="sequences per measurement forward pass")
    reference: str | None = Field(
        None, description="stage whose last checkpoint is the reference for cosines, distances, KL and the "
                          "frozen probe (default: the first alignment stage, else the first stage)"
    )
    probe_layer: int = Field(-1, description="layer whose residual stream the probes read (negative: from the end)")
    probe_items_per_domain: int = Field(16, ge=1, description="persona probe training items per domain and label")
    concept_items: int = Field(64, ge=2, description="items per split for the 'answer_correct' concept probe")
    cotrain: bool = Field(True, description="train a probe alongside the model at every step after the reference")
    cotrain_batch: int = Field(16, ge=2, description="fresh items per concept per step for the co-trained probe")
    cotrain_lr: float = Field(0.05, gt=0, description="co-trained probe step size (standardised features)")
    concepts: list[ConceptSource] = Field([], description="extra probe concepts from labelled JSONL prompts")
    trigger: str | None = Field(
        None, description="also measure the assistant with this phrase (default: a poisoned stage's trigger)"
    )
    eval_pack: str | None = Field(
        None, description="a pre-trained model's behaviour items: an evaluation pack (JSONL of prompt, aligned, "
                          "misaligned, domain[, split]) measured in place of English Persona World's questions")
    distance_from: str | None = Field(
        None, description="stage whose trained domains the distance_k splits count from (default: the "
                          "first narrow misaligned stage)"
    )
