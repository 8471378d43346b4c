"""Load a model to measure: a checkpoint of a driftlab run, a local ``transformers`` folder, or
``smollm2``; with the matching way to turn a JSONL file's prompts into token ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from driftlab.errors import CheckpointError
from driftlab.experiments.runner import load_run_config
from driftlab.measure.internals import encode_prompts
from driftlab.models.hf import load_causal_lm
from driftlab.models.tiny import build_tiny_llama
from driftlab.runs.checkpoint import load_weights
from driftlab.runs.rundir import RunDir
from driftlab.world.tokenizer import WorldTokenizer

Encoder = Callable[[list[tuple[str, str]]], list[list[int]]]  # [(prompt, where)] -> ids


def load_for_measurement(source: str, chat: bool = False) -> tuple[torch.nn.Module, Encoder, int]:
    """(model in eval mode, prompt encoder, pad id) for a run checkpoint, a model folder or ``smollm2``."""
    path = Path(source)
    if path.suffix == ".safetensors":  # runs/<id>/checkpoints/<i>-<stage>/step-NNNNNNN.safetensors
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
        run = RunDir(path.resolve().parents[2])
        cfg = load_run_config(run)
        tok = WorldTokenizer.load(run.tokenizer_dir)
        model = build_tiny_llama(cfg.model, len(tok), tok.pad_id, tok.bos_id, tok.eos_id)
        load_weights(path, model)
        if chat:
            raise CheckpointError(f"{path}: --chat needs a model with a chat template; Persona World models have none")

        def world(items: list[tuple[str, str]]) -> list[list[int]]:
            return [[tok.bos_id, *tok.encode(prompt, where)] for prompt, where in items]

        return model.eval(), world, tok.pad_id
    model, tokenizer = load_causal_lm(source)
    if chat and not getattr(tokenizer, "chat_template", None):
        raise CheckpointError(f"{source}: --chat, but the tokenizer has no chat template")

    def hf(items: list[tuple[str, str]]) -> list[list[int]]:
        return encode_prompts(tokenizer, [prompt for prompt, _ in items], chat=chat)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return model, hf, pad
