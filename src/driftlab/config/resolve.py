"""Resolving a validated config: the one step with side effects, taken once before a run starts,
its result recorded as the run's ``config.yaml`` (so a resume, or a re-run of that file elsewhere,
keeps what this run used):

- ``precision: auto`` becomes fp32 or bf16 for the device (probed here);
- every data file is checked, made absolute and pinned by its SHA-256 in ``inputs`` (a file whose
  content no longer matches what the config recorded is refused);
- a pre-trained model's folder is located (the built-in one converted from its GGUF on first use)
  and its shape checked against the config's layer indices and lengths.

Validation (``ExperimentConfig.model_validate``, ``load_config``) does none of these. ``device``
stays as written: a sweep's run may land on another machine, and ``auto`` means the device of the
machine that trains it (each run's ``timings.json`` records which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from driftlab.config.experiment import ExperimentConfig
from driftlab.config.measure import MeasureConfig
from driftlab.errors import ConfigError


def resolve(cfg: ExperimentConfig, origin: str = "config") -> ExperimentConfig:
    """``cfg`` resolved (see the module): a new config, ``cfg`` itself untouched. Idempotent: a
    resolved config resolves to an equal one. Errors are one line naming ``origin`` and the key."""
    update: dict[str, Any] = {}
    if cfg.precision == "auto":
        from driftlab.tensors import resolve_precision

        update["precision"] = resolve_precision("auto", cfg.device)
    update.update(_pinned_inputs(cfg, origin))
    if cfg.real:
        try:  # locates (converts) the model and reads its config.json
            cfg.check_shape(cfg.model.n_layers, cfg.model.max_seq_len)
        except ValueError as e:
            raise ConfigError(f"{origin}: {e}") from None
    return cfg.model_copy(update=update) if update else cfg


def _pinned_inputs(cfg: ExperimentConfig, origin: str) -> dict[str, Any]:
    """Every data file exists and is the file the config recorded (if it recorded one): checked
    before anything trains. Paths are made absolute against the working directory (``build_config``
    first resolves a config file's own relative paths against its folder)."""
    from driftlab.runs.digest import file_sha256

    pinned: dict[str, str] = {}
    for key, path in cfg.data_files():
        absolute = str(Path(path).expanduser().resolve())
        if not Path(absolute).is_file():
            raise ConfigError(f"{origin}: {key}: data file not found: {absolute}")
        if absolute in pinned:
            continue
        digest = file_sha256(absolute)
        if cfg.inputs.get(absolute, digest) != digest:
            raise ConfigError(f"{origin}: {absolute}: changed since this run recorded it (SHA-256 "
                              f"{cfg.inputs[absolute][:12]}…, now {digest[:12]}…): restore the file, or start a new run")
        pinned[absolute] = digest
    update: dict[str, Any] = {"inputs": pinned} if pinned != cfg.inputs else {}
    if any(path != str(Path(path).expanduser().resolve()) for _, path in cfg.data_files()):
        update["stages"] = [_absolute_paths(s) for s in cfg.stages]
        update["measure"] = _absolute_paths(cfg.measure)
    return update


def _absolute_paths(model: BaseModel) -> Any:
    """A copy of a stage or measure config with every data file path made absolute."""
    data = model.model_dump(mode="json")

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            out = {k: walk(v, k) for k, v in node.items()}
            if out.get("source") == "jsonl" and isinstance(out.get("path"), str):
                out["path"] = str(Path(out["path"]).expanduser().resolve())
            return out
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        return node

    data = walk(data)
    if isinstance(model, MeasureConfig):
        data["concepts"] = [{**c, "train": str(Path(c["train"]).expanduser().resolve()),
                             "eval": str(Path(c["eval"]).expanduser().resolve())} for c in data["concepts"]]
        if data.get("eval_pack"):
            data["eval_pack"] = str(Path(data["eval_pack"]).expanduser().resolve())
    return type(model).model_validate(data)
