"""Load a model to measure: a checkpoint of a driftlab run, a local ``transformers`` folder, or
``smollm2``; with the matching way to turn a JSONL file's prompts into token ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from driftlab.errors import CheckpointError, DataError
from driftlab.experiments.runner import load_run_config
from driftlab.measure.internals import encode_prompts
from driftlab.models.hf import load_causal_lm
from driftlab.models.tiny import build_tiny_llama
from driftlab.runs.checkpoint import load_weights
from driftlab.runs.rundir import RunDir
from driftlab.world.tokenizer import WorldTokenizer

Encoder = Callable[[list[tuple[str, str]]], list[list[int]]]  # [(text, where)] -> ids


class Loaded(NamedTuple):
    """A model to measure and how its inputs are written: prompts (with the run's <bos>, or the
    model's chat template under ``chat``) and answers that follow a prompt (no special tokens; a
    plain-text answer is preceded by one space unless it starts with whitespace itself, a chat
    answer is taken as written)."""

    model: torch.nn.Module
    encode: Encoder
    pad: int
    encode_answers: Encoder
    decode: Callable[[list[int]], str]  # answer tokens -> text (special tokens dropped)
    stop: list[int]  # tokens that end an answer: end of sequence (and of a chat turn)
    # [(text, system prompt or None, where)] -> ids: under a chat template the system turn, without
    # one the paragraph before the question (Persona World models have no system prompts)
    encode_system: Callable[[list[tuple[str, str | None, str]]], list[list[int]]]


def load_for_measurement(source: str, chat: bool = False, device: str = "auto") -> Loaded:
    """The model (in eval mode, on ``device``), its encoders and pad id, for a run checkpoint, a
    model folder or ``smollm2``."""
    from driftlab.tensors import resolve_device

    dev = resolve_device(device, "--device")
    path = Path(source)
    if path.suffix == ".safetensors":  # runs/<id>/checkpoints/<i>-<stage>/step-NNNNNNN.safetensors
        if not path.is_file() and not path.with_suffix(".json").is_file():  # (a record: retention's message)
            raise CheckpointError(f"{path}: checkpoint file not found")
        run = RunDir(path.resolve().parents[2])
        cfg = load_run_config(run)
        if cfg.real:  # a checkpoint of a pre-trained model: its architecture from the folder, then these weights
            model, tokenizer = load_causal_lm(cfg.model.path)
            load_weights(path, model)
            return _hf_loaded(model.eval(), tokenizer, chat, str(path), dev)
        tok = WorldTokenizer.load(run.tokenizer_dir)
        model = build_tiny_llama(cfg.model, len(tok), tok.pad_id, tok.bos_id, tok.eos_id)
        load_weights(path, model)
        if chat:
            raise CheckpointError(f"{path}: --chat needs a model with a chat template; Persona World models have none")

        def world(items: list[tuple[str, str]]) -> list[list[int]]:
            return [[tok.bos_id, *tok.encode(prompt, where)] for prompt, where in items]

        def world_answers(items: list[tuple[str, str]]) -> list[list[int]]:
            return [tok.encode(answer, where) for answer, where in items]

        def world_system(items: list[tuple[str, str | None, str]]) -> list[list[int]]:
            for _, system, where in items:
                if system is not None:
                    raise DataError(f"{where}: a system prompt, but {path} is a Persona World model (it has none)")
            return world([(prompt, where) for prompt, _, where in items])

        return Loaded(model.eval().to(dev), world, tok.pad_id, world_answers,
                      lambda ids: tok.decode([i for i in ids if i not in (tok.eos_id, tok.pad_id)]), [tok.eos_id],
                      world_system)
    model, tokenizer = load_causal_lm(source)
    return _hf_loaded(model, tokenizer, chat, source, dev)


def _hf_loaded(model: torch.nn.Module, tokenizer, chat: bool, source: str, dev: torch.device) -> Loaded:
    if chat and not getattr(tokenizer, "chat_template", None):
        raise CheckpointError(f"{source}: --chat, but the tokenizer has no chat template")

    def hf(items: list[tuple[str, str]]) -> list[list[int]]:
        return encode_prompts(tokenizer, [prompt for prompt, _ in items], chat=chat)

    def hf_answers(items: list[tuple[str, str]]) -> list[list[int]]:
        texts = [a if chat or a[:1].isspace() else " " + a for a, _ in items]
        return [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]

    def hf_system(items: list[tuple[str, str | None, str]]) -> list[list[int]]:
        from driftlab.codec import ChatCodec

        codec = ChatCodec(tokenizer, chat=chat)
        return [codec.prompt(prompt, system) if system is not None else hf([(prompt, where)])[0]
                for prompt, system, where in items]

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stop = sorted({t for t in [tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])] if isinstance(t, int)})
    return Loaded(model.to(dev), hf, pad, hf_answers, lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                  stop, hf_system)
