"""Checkpoints: safetensors weights + a small JSON (stage, step, tokens seen, parent, config hash).

Loading never unpickles. A truncated file, a file that is not safetensors, a file whose content no
longer matches the SHA-256 in its header, or weights whose names or shapes do not match the model
is a ``CheckpointError`` naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from driftlab.errors import CheckpointError
from driftlab.runs.atomic import atomic_write, read_json, write_json
from driftlab.runs.digest import TENSORS_KEY, json_sha256, tensors_sha256


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def artifact_path(weights: str | Path, kind: str = "internals") -> Path:
    """Where a checkpoint's measurement artifacts live: ``step-NNNNNNN.internals.safetensors``."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.{kind}.safetensors")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None,
                 readonly: bool = True) -> None:
    """Write ``tensors`` atomically with their SHA-256 in the header; ``readonly``: a write-once file
    (mode 0444, replaced only by a rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**(metadata or {}), TENSORS_KEY: tensors_sha256(tensors, metadata)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), readonly=readonly)


def load_tensors(path: str | Path, require_hash: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked against the SHA-256 its header records (a file
    without one, written by other tools or before driftlab 0.8, is refused when ``require_hash``)."""
    return _load_checked(path, require_hash)[0]


def _load_checked(path: str | Path, require_hash: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, meta = read_tensors(path)
    recorded = meta.get(TENSORS_KEY)
    if recorded is None:
        if require_hash:
            raise CheckpointError(f"{path}: no SHA-256 recorded in its header (not written by this driftlab)")
    elif tensors_sha256(tensors, meta) != recorded:
        raise CheckpointError(f"{path}: content does not match the SHA-256 recorded when it was written "
                              f"(changed on disk since)")
    return tensors, meta


def tensors_hash(path: str | Path) -> str:
    """The content hash a safetensors file's header records (read without loading the tensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            recorded = (f.metadata() or {}).get(TENSORS_KEY)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None
    if recorded is None:
        raise CheckpointError(f"{path}: no SHA-256 recorded in its header (not written by this driftlab)")
    return recorded


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and header metadata, unchecked."""
    path = Path(path)
    if not path.is_file():
        if path.with_suffix(".json").is_file():
            raise CheckpointError(f"{path}: its weights were not kept (the run's retention.weights; `all` "
                                  f"keeps every checkpoint's, `adapters` a LoRA stage's adapters); its metrics "
                                  f"and internals artifact are in the run")
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


def _adapted(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Modules carrying peft LoRA adapters, by the name their plain layer had."""
    return {name: m for name, m in model.named_modules()
            if hasattr(m, "base_layer") and hasattr(m, "get_delta_weight") and getattr(m, "active_adapters", None)}


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's own tensors under their plain names; tied weights are stored once. Layers with
    LoRA adapters contribute their effective weight (base + the adapters' delta), so a checkpoint
    taken during a LoRA stage loads into the plain model and computes the same function."""
    adapted = _adapted(model)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if ".lora_" in name:
            continue
        owner = name.rsplit(".base_layer.", 1)[0] if ".base_layer." in name else None
        if owner in adapted:
            name = name.replace(".base_layer.", ".")
            if name.endswith(".weight"):
                module = adapted[owner]
                tensor = tensor + sum(module.get_delta_weight(a) for a in module.active_adapters).to(tensor.dtype)
        elif tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach()
    return state


def adapter_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[list[Any]]]:
    """The LoRA factors of every adapted layer — ``{layer}.{adapter}.lora_A`` (r, d_in) and
    ``.lora_B`` (d_out, r), under the plain layer's name — and ``[layer, adapter, scaling,
    fan_in_fan_out]`` for each: with the stage's start weights, all a checkpoint's weights."""
    tensors, layers = {}, []
    for name, module in _adapted(model).items():
        for a in module.active_adapters:
            tensors[f"{name}.{a}.lora_A"] = module.lora_A[a].weight.detach()
            tensors[f"{name}.{a}.lora_B"] = module.lora_B[a].weight.detach()
            layers.append([name, a, module.scaling[a], bool(module.fan_in_fan_out)])
    return tensors, layers


def save_checkpoint(directory: str | Path, step: int, model: torch.nn.Module, meta: dict[str, Any],
                    base: Path | None = None) -> Path:
    """Write ``step-NNNNNNN.safetensors`` then its JSON; the JSON marks the checkpoint complete.
    ``base`` (the stage's start weights) on a model with LoRA adapters also writes the adapters alone
    (``step-NNNNNNN.adapters.safetensors``, a few MB): the checkpoint stays loadable from them and
    ``base`` once retention drops its full weights."""
    directory = Path(directory)
    weights = directory / f"{checkpoint_name(step)}.safetensors"
    save_tensors(weights, model_state(model))
    record = {**meta, "step": step, "weights": weights.name}
    factors, layers = adapter_state(model) if base is not None else ({}, [])
    if factors:
        adapters = artifact_path(weights, "adapters")
        save_tensors(adapters, factors, {"layers": json.dumps(layers)})
        record |= {"adapters": adapters.name, "base": os.path.relpath(base, directory)}
    write_json(weights.with_suffix(".json"), {**record, "sha256": json_sha256(record)}, readonly=True)
    return weights


def checkpoint_state(path: str | Path, require_hash: bool = False) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, checked: its own file, or — where retention kept only a LoRA stage's
    adapters — the stage's start weights plus each adapted layer's delta, computed as peft merges it
    (``(B @ A) * scaling``), so the result equals the weights the full file held."""
    path = Path(path)
    if path.is_file() or not artifact_path(path, "adapters").is_file():
        return load_tensors(path, require_hash)
    record = read_meta(path)
    if "base" not in record:
        raise CheckpointError(f"{path.with_suffix('.json')}: base: missing (the adapters' start weights)")
    state = checkpoint_state(path.parent / record["base"], require_hash)
    factors, meta = _load_checked(artifact_path(path, "adapters"), require_hash)
    if "layers" not in meta:
        raise CheckpointError(f"{artifact_path(path, 'adapters')}: no adapter layers recorded in its header")
    deltas: dict[str, list[torch.Tensor]] = {}
    for name, adapter, scaling, fan_in_fan_out in json.loads(meta["layers"]):
        delta = factors[f"{name}.{adapter}.lora_B"] @ factors[f"{name}.{adapter}.lora_A"]
        deltas.setdefault(f"{name}.weight", []).append((delta.T if fan_in_fan_out else delta) * scaling)
    for key, parts in deltas.items():
        state[key] = state[key] + sum(parts).to(state[key].dtype)
    return state


def load_weights(path: str | Path, model: torch.nn.Module, require_hash: bool = False) -> None:
    """Load weights into ``model`` in place, checking their hash and every name and shape."""
    state = checkpoint_state(path, require_hash)
    own = model.state_dict()
    for name in [n for n in state if n not in own]:
        raise CheckpointError(f"{path}: {name}: not a parameter of this model (mismatched checkpoint)")
    for name in [n for n in own if n in state]:  # in the model's order: embeddings first
        tensor = state[name]
        if own[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {name}: shape {tuple(tensor.shape)} does not match the model's {tuple(own[name].shape)}"
            )
    missing = [n for n in model_state(model) if n not in state]
    if missing:
        raise CheckpointError(f"{path}: {missing[0]}: missing from the checkpoint (mismatched checkpoint)")
    model.load_state_dict(state, strict=False)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()


def read_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's JSON, checked against the hash it records of itself (when it records one)."""
    path = Path(path).with_suffix(".json")
    meta = read_json(path, CheckpointError, "checkpoint metadata not found (incomplete checkpoint)")
    if "sha256" in meta and json_sha256(meta) != meta["sha256"]:
        raise CheckpointError(f"{path}: content does not match the SHA-256 recorded when it was written "
                              f"(changed on disk since)")
    return meta


# ---------------------------------------------------------------- optimizer state


def save_optimizer(path: str | Path, optimizer: torch.optim.Optimizer, extra: dict[str, Any],
                   more: dict[str, torch.Tensor] | None = None, records: dict[str, Any] | None = None) -> None:
    """Optimizer tensors to safetensors, its scalar settings and ``extra`` into the metadata;
    ``more`` (e.g. LoRA adapter weights) rides along under ``more.<name>`` and ``records`` (e.g. the
    metric rows' hash) as JSON metadata under their own names, in the same atomic write."""
    sd = optimizer.state_dict()
    tensors = {f"{idx}.{key}": value for idx, st in sd["state"].items() for key, value in st.items()
               if torch.is_tensor(value)}
    tensors.update({f"more.{k}": v for k, v in (more or {}).items()})
    meta = {"param_groups": json.dumps(sd["param_groups"]), "extra": json.dumps(extra),
            **{k: json.dumps(v) for k, v in (records or {}).items()}}
    save_tensors(path, tensors, meta)


def optimizer_metadata(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(param_groups, extra) stored by ``save_optimizer``, without loading (or checking) the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta["param_groups"]), json.loads(meta["extra"])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: optimizer state missing, truncated or corrupt: {e}") from None


def resume_record(path: str | Path, name: str) -> Any:
    """A record stored with ``save_optimizer(..., records=...)`` (None if absent)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            value = (f.metadata() or {}).get(name)
        return None if value is None else json.loads(value)
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: resume state truncated or corrupt: {e}") from None


def load_more(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors stored with ``save_optimizer(..., more=...)``."""
    return {k.removeprefix("more."): v for k, v in load_tensors(path, True).items()
            if k.startswith("more.")}


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    groups, extra = optimizer_metadata(path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_tensors(path, True).items():
        if key.startswith("more."):
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {e}") from None
    return extra
