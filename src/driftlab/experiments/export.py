"""A run's checkpoint as a plain Hugging Face folder: ``from_pretrained`` loads it with no driftlab.

``export_checkpoint`` loads the checkpoint as driftlab does (its hash checked; a LoRA stage's
checkpoints hold the merged weights, or the stage's start weights and the adapters to merge), then
writes ``config.json``, ``model.safetensors``, the generation config and the run's tokenizer with
``save_pretrained``, plus
``driftlab_export.json`` (the run, stage, step and the checkpoint's hash), into a temporary folder
renamed into place: a folder that exists is always complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from driftlab.errors import CheckpointError, DataError
from driftlab.runs.atomic import write_json
from driftlab.runs.checkpoint import (
    artifact_path,
    checkpoint_name,
    load_weights,
    read_meta,
    tensors_hash,
)
from driftlab.runs.rundir import RunDir


def pick_checkpoint(run: RunDir, stage: str | None = None, step: int | None = None) -> Path:
    """The weights of ``stage`` (name or index; default the last) at ``step`` (default its end)."""
    from driftlab.experiments.runner import load_run_config

    cfg = load_run_config(run)
    names = [s.name for s in cfg.stages]
    if stage is None:
        index = len(names) - 1
    elif stage in names:
        index = names.index(stage)
    elif stage.isdigit() and int(stage) < len(names):
        index = int(stage)
    else:
        raise DataError(f"{run.root}: --stage {stage}: no such stage (stages: {', '.join(names)})")
    at = cfg.stages[index].steps if step is None else step
    path = run.stage_dir(index, names[index]) / f"{checkpoint_name(at)}.safetensors"
    if not path.with_suffix(".json").is_file():
        have = sorted(int(p.stem.removeprefix("step-")) for p in path.parent.glob("step-*[0-9].json"))
        raise DataError(f"{path}: no checkpoint at step {at} of stage {names[index]!r} "
                        f"(checkpoints at steps: {', '.join(map(str, have)) or 'none yet'})")
    read_meta(path)  # its record, checked
    return path


def export_checkpoint(source: str | Path, out: str | Path, stage: str | None = None, step: int | None = None) -> Path:
    from driftlab.experiments.runner import load_run_config
    from driftlab.models.hf import load_causal_lm
    from driftlab.models.tiny import build_tiny_llama
    from driftlab.world.tokenizer import WorldTokenizer

    run = _one_run(Path(source))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not empty (export writes a new folder)")
    cfg = load_run_config(run)
    weights = pick_checkpoint(run, stage, step)
    if cfg.real:
        model, tokenizer = load_causal_lm(cfg.model.path)
    else:
        world = WorldTokenizer.load(run.tokenizer_dir)
        model = build_tiny_llama(cfg.model, len(world), world.pad_id, world.bos_id, world.eos_id)
        tokenizer = None
    load_weights(weights, model, require_hash=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        else:  # Persona World's tokenizer, as the run saved it (transformers' own files)
            for p in run.tokenizer_dir.iterdir():
                if p.name != "sha256.json":
                    shutil.copyfile(p, tmp / p.name)
        meta = read_meta(weights)
        source = {"checkpoint": str(weights.resolve()), "sha256": tensors_hash(weights)} if weights.is_file() else {
            "base": str((weights.parent / meta["base"]).resolve()), "adapters": str(artifact_path(weights, "adapters")),
            "sha256": tensors_hash(artifact_path(weights, "adapters"))}  # retention kept the adapters alone
        write_json(tmp / "driftlab_export.json", {"run": str(run.root.resolve()), "stage": meta["stage"],
                                                  "step": meta["step"], **source})
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _one_run(path: Path) -> RunDir:
    """A run directory, or an experiment directory holding exactly one run."""
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        return RunDir(path)
    runs = sorted(p.parent for p in path.glob("*/seed-*/config.yaml"))
    if len(runs) == 1:
        return RunDir(runs[0])
    if not path.exists():
        raise CheckpointError(f"{path}: not found")
    found = ", ".join(str(r.relative_to(path)) for r in runs) or "none"
    raise DataError(f"{path}: export takes one run directory (runs here: {found})")
