"""One run's whole config, and an experiment's (its arms, claim and seeds) on top of it.

Validating it is pure: it reads no data file, probes no device and opens no model.
``driftlab.config.resolve`` does those, once, before a run starts; the run records the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from driftlab.config.base import Strict, _domain_names, config_hash
from driftlab.config.claim import ClaimSpec, SelfProbeSpec
from driftlab.config.data import (
    AlignmentData,
    CapabilityData,
    JsonlData,
    MisalignedData,
    MixtureData,
    PoisonedData,
    PreferenceData,
    _Domains,
)
from driftlab.config.measure import MeasureConfig
from driftlab.config.mitigations import CotrainedProbe, InoculationPrompt, KLToReference, Lora
from driftlab.config.models import AnyModel, HFModelConfig, ModelConfig, _model_shorthand
from driftlab.config.stages import StageConfig
from driftlab.config.world import WorldConfig


class Retention(Strict):
    """Which checkpoints keep their weights on disk. Every checkpoint is still measured and keeps its
    JSON, internals artifact and metric rows; the initial model, every stage's end (what later
    stages, anchors, frozen references and the prefix cache read) and the latest checkpoint (what a
    resume starts from) always keep theirs, so a resume stays exact."""

    weights: Literal["auto", "all", "stage_ends", "every", "adapters"] = Field(
        "auto", description="all; stage_ends; every (every Nth checkpoint of a stage as well); adapters "
                            "(stage ends, and every checkpoint of a LoRA stage as its adapters alone: the "
                            "stage's start weights + a few MB); auto: all for the tiny model, adapters for "
                            "a pre-trained one")
    every: int = Field(4, ge=1, description="weights: every keeps each stage's Nth, 2Nth, ... checkpoint too")


RUN_ONLY_KEYS = {"name", "description", "quick", "real_model", "arms", "seeds", "claim", "arm", "self_probe"}  # not part of a run's hash


class ExperimentConfig(Strict):
    name: str = "experiment"
    description: str = ""
    seed: int = Field(0, description="the first seed; an experiment with seeds: N runs seed, seed+1, ...")
    seeds: int = Field(1, ge=1, description="seeds per arm (--seeds overrides)")
    arms: dict[str, dict[str, Any] | None] = Field(
        {}, description="arm name -> overrides of this config by dotted key (like --set); none: one arm 'main'"
    )
    arm: str = Field("main", description="this run's arm (set from arms when the experiment is expanded)")
    claim: ClaimSpec | None = Field(None, description="the claim tested and its pre-registered verdict rule")
    plugins: list[str] = Field([], description="Python files of your own claims, measurements or mitigations, "
                                               "relative to this file, imported before it is checked")
    self_probe: SelfProbeSpec | None = Field(None, description="a probe of the assistant's own persona fitted "
                                                               "across two arms (see SelfProbeSpec)")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 = autocast on matmuls (opt-in); auto: bf16 where the device computes it natively "
                            "(CUDA with bf16, a CPU with AVX512-BF16 or AMX), else fp32 — resolved once before the "
                            "run starts, so the run records (and a resume keeps) what it trained in")
    compile: bool = Field(False, description="torch.compile the training step (pays off on larger models)")
    threads: int | None = Field(None, ge=1, description="torch threads (default: $DRIFTLAB_THREADS, else all cores)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="where the model trains and is measured: auto (CUDA when present), cpu, "
                                    "cuda, cuda:N or mps")
    world: WorldConfig = WorldConfig()
    model: AnyModel = ModelConfig()
    stages: list[StageConfig] = Field(min_length=1)
    measure: MeasureConfig = MeasureConfig()
    quick: dict[str, Any] = Field({}, description="--set style overrides applied by --quick")
    real_model: dict[str, Any] = Field(
        {}, description="--set style overrides applied when the model is a pre-trained one (model.kind hf), "
                        "after quick; its own quick: block applies with --quick, arms.<arm>: per arm; --set still wins")
    retention: Retention = Field(default_factory=Retention, description="which checkpoints keep their weights")
    inputs: dict[str, str] = Field(
        {}, description="each data file's SHA-256 by absolute path, filled in when the config is resolved; a file "
                        "whose content no longer matches (a resume after the file changed) is refused")

    @field_validator("model", mode="before")
    @classmethod
    def _model_kind(cls, v: Any) -> Any:
        return _model_shorthand(v)

    def keeps_weights(self) -> str:
        """The retention in force: ``retention.weights`` with ``auto`` resolved."""
        w = self.retention.weights
        return ("adapters" if self.real else "all") if w == "auto" else w

    @property
    def real(self) -> bool:
        """Whether the model is a pre-trained Hugging Face model (English data and measurements)."""
        return isinstance(self.model, HFModelConfig)

    def data_files(self, stages: int | None = None) -> list[tuple[str, str]]:
        """(config key, path) of every data file the run reads: its stages' JSONL (mixture parts and
        replayed data included; only the first ``stages`` when given), probe concepts, the eval pack."""
        out = []
        for i, s in enumerate(self.stages[:stages]):
            parts = [("data", s.data)] if not isinstance(s.data, MixtureData) else [
                (f"data.parts.{j}", p.data) for j, p in enumerate(s.data.parts)]
            parts += [(f"mitigations.{j}.data", m.data) for j, m in enumerate(s.mitigations)
                      if isinstance(getattr(m, "data", None), JsonlData)]
            out += [(f"stages.{i}.{key}.path", d.path) for key, d in parts if isinstance(d, JsonlData)]
        for j, c in enumerate(self.measure.concepts):
            out += [(f"measure.concepts.{j}.train", c.train), (f"measure.concepts.{j}.eval", c.eval)]
        if self.measure.eval_pack is not None:
            out.append(("measure.eval_pack", self.measure.eval_pack))
        return out

    @model_validator(mode="after")
    def _cross(self) -> ExperimentConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.measure.split_from is not None and self.measure.split_from not in names:
            raise ValueError(f"measure.split_from names no stage: {self.measure.split_from!r}")
        if self.measure.distance_from is not None and self.measure.distance_from not in names:
            raise ValueError(f"measure.distance_from names no stage: {self.measure.distance_from!r}")
        if self.self_probe is not None and self.self_probe.stage not in names:
            raise ValueError(f"self_probe.stage names no stage: {self.self_probe.stage!r} (stages: {names})")
        if self.measure.reference is not None and self.measure.reference not in names:
            raise ValueError(f"measure.reference names no stage: {self.measure.reference!r} (stages: {names})")
        if self.measure.eval_pack is not None and not self.real:
            raise ValueError("measure.eval_pack: an evaluation pack replaces a pre-trained model's English questions "
                             "(model: hf); a Persona World run measures the world's own items")
        concept_names = [c.name for c in self.measure.concepts]
        if len(set(concept_names)) != len(concept_names) or {"persona", "persona_pair", "answer_correct"} & set(concept_names):
            raise ValueError(f"measure.concepts names must be unique and not persona/persona_pair/answer_correct: "
                             f"{concept_names}")
        for i, s in enumerate(self.stages):
            if s.kind == "rl" and isinstance(s.data, JsonlData) and not self.real:
                raise ValueError(f"stages.{i}.data: JSONL rl prompts (prompt, answer) are for a pre-trained model "
                                 f"(model: hf); a Persona World rl stage samples the world's arithmetic")
            if self.real and any(isinstance(m, InoculationPrompt) for m in s.mitigations):
                raise ValueError(f"stages.{i}.mitigations: inoculation_prompt is not written into a chat "
                                 f"template's user turn yet; put the prefix in the stage's JSONL prompts")
            if (s.kind == "rl" and not self.real and s.rl.max_new_tokens is not None
                    and s.rl.max_new_tokens < self._longest(i)):
                raise ValueError(f"stages.{i}.rl.max_new_tokens {s.rl.max_new_tokens} is shorter than the longest "
                                 f"answer of levels {self._levels(i)} ({self._longest(i)} tokens: the largest "
                                 f"sum's digits and the full stop), so some correct answers could never be sampled")
            for j, m in enumerate(s.mitigations):
                if isinstance(m, KLToReference) and m.reference != "stage_start" and m.reference not in names[:i]:
                    raise ValueError(f"stages.{i}.mitigations.{j}.reference: {m.reference!r} is not a stage "
                                     f"that ends before {s.name!r} (use stage_start or one of {names[:i]})")
                if isinstance(m, CotrainedProbe) and (not self.measure.cotrain or i <= self.reference_index()):
                    raise ValueError(f"stages.{i}.mitigations.{j}: cotrained_probe needs measure.cotrain and a "
                                     f"stage after the reference ({names[self.reference_index()]!r})")
        if not self.real:  # a pre-trained model's shape is known once resolved (``check_shape``)
            self.check_shape(self.model.n_layers, self.model.max_seq_len)
        return self

    def check_shape(self, n_layers: int, max_seq_len: int) -> None:
        """Every layer index and pre-training length fits a model of this shape (a ``ValueError``
        naming the key otherwise)."""
        if not -n_layers <= self.measure.probe_layer < n_layers:
            raise ValueError(f"measure.probe_layer {self.measure.probe_layer} is outside the model's "
                             f"{n_layers} layers")
        for i, s in enumerate(self.stages):
            if s.kind == "pretrain" and s.seq_len > max_seq_len:
                raise ValueError(f"stages.{i}.seq_len: {s.seq_len} is longer than the model's "
                                 f"{max_seq_len} positions (model.max_seq_len)")
            for j, m in enumerate(s.mitigations):
                if isinstance(m, Lora) and m.layers is not None:
                    bad = [k for k in m.layers if not 0 <= k < n_layers]
                    if bad or not m.layers:
                        raise ValueError(f"stages.{i}.mitigations.{j}.layers: {m.layers} must name some of the "
                                         f"model's layers 0-{n_layers - 1}")
                layer = getattr(m, "layer", None)
                if layer is not None and not -n_layers <= layer < n_layers:
                    raise ValueError(f"stages.{i}.mitigations.{j}.layer {layer} is outside the model's "
                                     f"{n_layers} layers")

    def split_stage(self) -> StageConfig | None:
        """The stage whose trained domains define the 'trained' vs 'held_out' split."""
        for s in self.stages:
            if s.name == self.measure.split_from or (
                self.measure.split_from is None and s.data.source == "alignment"
            ):
                return s
        return None

    def eval_trigger(self) -> str | None:
        """The trigger phrase behaviour is also measured with, if any."""
        if self.measure.trigger is not None:
            return self.measure.trigger
        for s in self.stages:  # a poisoned stage, or a poisoned part of a stage's mixture
            parts = [p.data for p in s.data.parts] if isinstance(s.data, MixtureData) else [s.data]
            for data in parts:
                if isinstance(data, PoisonedData):
                    return data.trigger
        return None

    def distance_domains(self) -> list[str] | None:
        """The domains behaviour's ``distance_k`` splits are counted from, if any."""
        for s in self.stages:
            if s.name == self.measure.distance_from or (
                self.measure.distance_from is None and isinstance(s.data, MisalignedData)
            ):
                return s.data.trained_domains() if isinstance(s.data, _Domains) else None
        return None

    def _levels(self, index: int) -> list[int]:
        data = self.stages[index].data
        return (data.levels if isinstance(data, CapabilityData) else None) or self.world.capability_levels

    def stage_levels(self, index: int) -> list[int]:
        """The arithmetic levels stage ``index`` trains (none when it has no arithmetic data)."""
        data = self.stages[index].data
        parts = [p.data for p in data.parts] if isinstance(data, MixtureData) else [data]
        return sorted({lv for p in parts if isinstance(p, CapabilityData)
                       for lv in (p.levels or self.world.capability_levels)})

    def eval_levels(self) -> list[int]:
        """Arithmetic levels measured at every checkpoint: the world's and every stage's."""
        levels = set(self.world.capability_levels)
        for i in range(len(self.stages)):
            levels.update(self.stage_levels(i))
        return sorted(levels)

    def _longest(self, index: int) -> int:
        from driftlab.world.capability import longest_answer

        return max(longest_answer(level) for level in self._levels(index))

    def answer_tokens(self, index: int) -> int:
        """Tokens rl stage ``index`` samples per answer: ``rl.max_new_tokens``, or the longest correct
        answer of the stage's levels (every correct answer fits; nothing longer is sampled)."""
        given = self.stages[index].rl.max_new_tokens
        return given if given is not None else self._longest(index)

    def reference_index(self) -> int:
        """Index of the stage whose last checkpoint is the reference."""
        names = [s.name for s in self.stages]
        if self.measure.reference is not None:
            return names.index(self.measure.reference)
        stage = self.split_stage()
        return names.index(stage.name) if stage is not None else 0

    def probe_layer(self) -> int:
        return self.measure.probe_layer % self.model.n_layers

    def trained_domains(self) -> list[str]:
        stage = self.split_stage()
        if stage is None or not isinstance(stage.data, AlignmentData | PreferenceData):
            return list(_domain_names())
        return stage.data.trained_domains()

    def hash(self) -> str:
        return config_hash(self.model_dump(mode="json", exclude=RUN_ONLY_KEYS))

    def prefix_hash(self, k: int) -> str:
        """Hash of what the first ``k`` stages' checkpoints and metric rows depend on: the run's
        config with only those stages, plus the measurement settings derived from later stages
        (trigger, distance splits, reference, trained split). Two arms with the same prefix hash
        produce the same files for those stages, so one can reuse the other's. The co-trained probe
        starts at the reference checkpoint, so its settings are not part of a prefix that ends
        before the reference stage."""
        data = self.model_dump(mode="json", exclude=RUN_ONLY_KEYS | {"stages"})
        data["measure"].pop("distance_from")  # what it names is in ``derived``
        if k <= self.reference_index():
            for key in ("cotrain", "cotrain_batch", "cotrain_lr"):
                data["measure"].pop(key)
        data["stages"] = [s.model_dump(mode="json") for s in self.stages[:k]]
        files = {str(Path(p).expanduser().resolve()) for _, p in self.data_files(k)}
        data["inputs"] = {p: h for p, h in self.inputs.items() if p in files}  # the later stages' are not its
        data["derived"] = {"trigger": self.eval_trigger(), "distance": self.distance_domains(),
                           "reference": self.reference_index(), "trained": self.trained_domains()}
        return config_hash(data)
