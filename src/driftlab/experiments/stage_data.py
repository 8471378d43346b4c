"""Turn a stage's data config into batches: Persona World corpora or a user's JSONL."""

from __future__ import annotations

from driftlab.config import (
    AlignmentData,
    CapabilityData,
    ExperimentConfig,
    JsonlData,
    StageConfig,
    WorldData,
)
from driftlab.train.data import Completions, PackedLM
from driftlab.world.corpus import (
    alignment_examples,
    capability_examples,
    derive_seed,
    pretrain_documents,
    read_jsonl,
)
from driftlab.world.tokenizer import WorldTokenizer


def build_stage_data(cfg: ExperimentConfig, index: int, tokenizer: WorldTokenizer) -> PackedLM | Completions:
    stage = cfg.stages[index]
    data_seed = derive_seed(cfg.seed, "data", index, stage.name)
    order_seed = derive_seed(cfg.seed, "order", index, stage.name)
    d = stage.data
    if isinstance(d, WorldData):
        docs = [tokenizer.ids(doc.words) for doc in pretrain_documents(cfg.world, d, data_seed)]
        return PackedLM(docs, stage.seq_len, tokenizer.bos_id, tokenizer.eos_id, order_seed)
    if isinstance(d, JsonlData):
        return _jsonl(stage, d, tokenizer, order_seed)
    if isinstance(d, AlignmentData):
        examples = alignment_examples(cfg.world, d, data_seed)
    elif isinstance(d, CapabilityData):
        examples = capability_examples(cfg.world, d, data_seed)
    else:  # pragma: no cover - the config union is closed
        raise TypeError(f"unknown data source {d!r}")
    pairs = [([tokenizer.bos_id, *tokenizer.ids(e.prompt)], tokenizer.ids(e.completion)) for e in examples]
    return Completions(pairs, stage.seq_len, tokenizer.pad_id, order_seed)


def _jsonl(stage: StageConfig, d: JsonlData, tokenizer: WorldTokenizer, order_seed: int) -> PackedLM | Completions:
    if stage.kind == "pretrain":
        records = read_jsonl(d.path, ("text",))
        docs = [tokenizer.encode(r["text"], f"{d.path}: line {r['_line']}") for r in records]
        return PackedLM(docs, stage.seq_len, tokenizer.bos_id, tokenizer.eos_id, order_seed)
    records = read_jsonl(d.path, ("prompt", "completion"))
    pairs = []
    for r in records:
        where = f"{d.path}: line {r['_line']}"
        pairs.append(([tokenizer.bos_id, *tokenizer.encode(r["prompt"], where)],
                      tokenizer.encode(r["completion"], where)))
    return Completions(pairs, stage.seq_len, tokenizer.pad_id, order_seed)
