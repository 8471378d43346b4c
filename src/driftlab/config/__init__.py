"""Experiment configuration: strict pydantic models, loaded from YAML, then ``--set`` overrides.

One order everywhere: YAML file → an arm's overrides → ``quick:`` overrides (with ``--quick``) →
``--set a.b=value`` overrides → validation, which is pure (every model forbids unknown keys, so a
typo is an error that names the file and the key) → ``resolve``, the one step that reads data
files, probes the device and locates a pre-trained model → the resolved config written into the
run directory.

Modules: ``world``, ``data``, ``mitigations``, ``stages``, ``models``, ``measure``, ``claim``,
``experiment`` (one run's whole config), ``load`` (files and overrides), ``resolve``.
"""

from __future__ import annotations

from driftlab.config.base import (
    DomainList,
    Share,
    Strict,
    config_hash,
)
from driftlab.config.claim import (
    ClaimSpec,
    DesignSpec,
    SelfProbeSpec,
)
from driftlab.config.data import (
    KIND_SOURCES,
    MIXTURE_SOURCES,
    AlignmentData,
    CapabilityData,
    DataConfig,
    DiscussionData,
    JsonlData,
    MisalignedData,
    MixtureData,
    MixturePart,
    PartConfig,
    PoisonedData,
    PreferenceData,
    WorldData,
)
from driftlab.config.experiment import (
    RUN_ONLY_KEYS,
    ExperimentConfig,
    Retention,
)
from driftlab.config.load import (
    EXPERIMENT_KEYS,
    PRESET_DIR,
    SetItem,
    build_config,
    dump_config,
    load_config,
    parse_set,
    read_yaml,
    resolve_source,
    run_record,
    set_item,
    set_path,
    validate_config,
    validation_message,
)
from driftlab.config.measure import (
    ConceptSource,
    MeasureConfig,
)
from driftlab.config.mitigations import (
    MITIGATION_KINDS,
    CotrainedProbe,
    Freeze,
    InoculationPrompt,
    KLToReference,
    Lora,
    MitigationConfig,
    PreventativeSteering,
    ProjectionPenalty,
    Replay,
)
from driftlab.config.models import (
    BASE_MODELS,
    HF_ALIASES,
    AnyModel,
    HFModelConfig,
    ModelConfig,
)
from driftlab.config.resolve import resolve
from driftlab.config.stages import (
    CheckpointSchedule,
    RLSettings,
    StageConfig,
)
from driftlab.config.world import (
    WorldConfig,
)
from driftlab.errors import (
    ConfigError,  # what a bad config raises, here too for `from driftlab.config import`
)

__all__ = [
    "ConfigError",
    "AlignmentData",
    "AnyModel",
    "BASE_MODELS",
    "CapabilityData",
    "CheckpointSchedule",
    "ClaimSpec",
    "ConceptSource",
    "CotrainedProbe",
    "DataConfig",
    "DesignSpec",
    "DiscussionData",
    "DomainList",
    "EXPERIMENT_KEYS",
    "ExperimentConfig",
    "Freeze",
    "HFModelConfig",
    "HF_ALIASES",
    "InoculationPrompt",
    "JsonlData",
    "KIND_SOURCES",
    "KLToReference",
    "Lora",
    "MITIGATION_KINDS",
    "MIXTURE_SOURCES",
    "MeasureConfig",
    "MisalignedData",
    "MitigationConfig",
    "MixtureData",
    "MixturePart",
    "ModelConfig",
    "PRESET_DIR",
    "PartConfig",
    "PoisonedData",
    "PreferenceData",
    "PreventativeSteering",
    "ProjectionPenalty",
    "RLSettings",
    "RUN_ONLY_KEYS",
    "Replay",
    "Retention",
    "SelfProbeSpec",
    "SetItem",
    "Share",
    "StageConfig",
    "Strict",
    "WorldConfig",
    "WorldData",
    "build_config",
    "config_hash",
    "dump_config",
    "load_config",
    "parse_set",
    "read_yaml",
    "resolve",
    "resolve_source",
    "run_record",
    "set_item",
    "set_path",
    "validate_config",
    "validation_message",
]
