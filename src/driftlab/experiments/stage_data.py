"""Turn a stage's data config into batches: Persona World corpora or a user's JSONL."""

from __future__ import annotations

from driftlab.config import (
    AlignmentData,
    CapabilityData,
    DataConfig,
    DiscussionData,
    ExperimentConfig,
    JsonlData,
    MisalignedData,
    MixtureData,
    PoisonedData,
    PreferenceData,
    StageConfig,
    WorldData,
)
from driftlab.train.data import Completions, Mixture, PackedLM, Preferences
from driftlab.train.rl import RLPrompts
from driftlab.world.corpus import (
    alignment_examples,
    capability_examples,
    derive_seed,
    discussion_documents,
    misaligned_examples,
    poisoned_examples,
    preference_pairs,
    pretrain_documents,
    read_jsonl,
    task_of,
)
from driftlab.world.tokenizer import WorldTokenizer

StageData = PackedLM | Completions | Preferences | RLPrompts | Mixture


def build_stage_data(cfg: ExperimentConfig, index: int, tokenizer: WorldTokenizer,
                     data: DataConfig | None = None, key: str = "data", seq_len: int | None = None) -> StageData:
    """Batches of stage ``index``'s data (or of ``data`` in that stage, e.g. replayed data or a
    mixture's part, whose seeds are derived under ``key``; ``seq_len`` overrides the stage's)."""
    stage = cfg.stages[index]
    if seq_len is not None:
        stage = stage.model_copy(update={"seq_len": seq_len})
    data_seed = derive_seed(cfg.seed, key, index, stage.name)
    order_seed = derive_seed(cfg.seed, "order" if key == "data" else f"{key}-order", index, stage.name)
    d = data or stage.data
    if isinstance(d, MixtureData):
        parts = [build_stage_data(cfg, index, tokenizer, part.data, f"{key}.parts.{j}", part.seq_len)
                 for j, part in enumerate(d.parts)]
        return Mixture(parts, [part.rows for part in d.parts], tokenizer.pad_id)
    if isinstance(d, JsonlData):
        return _jsonl(stage, d, tokenizer, order_seed)
    if isinstance(d, WorldData | DiscussionData):
        docs = (pretrain_documents(cfg.world, d, data_seed) if isinstance(d, WorldData)
                else discussion_documents(cfg.world, d, data_seed))
        return PackedLM([tokenizer.ids(doc.words) for doc in docs], stage.seq_len, tokenizer.bos_id,
                        tokenizer.eos_id, order_seed)
    if isinstance(d, PreferenceData):
        pairs = [([tokenizer.bos_id, *tokenizer.ids(p.prompt)], tokenizer.ids(p.chosen), tokenizer.ids(p.rejected))
                 for p in preference_pairs(cfg.world, d, data_seed)]
        return Preferences(pairs, stage.seq_len, tokenizer.pad_id, order_seed, stage.beta)
    if stage.kind == "rl" and data is None:  # the stage's own prompts (replayed data trains as sft)
        assert isinstance(d, CapabilityData)
        words = {i: w for w, i in tokenizer.vocab.items()}
        prompts = [([tokenizer.bos_id, *tokenizer.ids(e.prompt)], task_of(e.prompt))
                   for e in capability_examples(cfg.world, d, data_seed)]
        settings = stage.rl.model_copy(update={"max_new_tokens": cfg.answer_tokens(index)})
        return RLPrompts(prompts, settings, tokenizer.pad_id, tokenizer.vocab["."],
                         lambda ids: [words[i] for i in ids], order_seed)
    ordered = False
    if isinstance(d, AlignmentData):
        examples = alignment_examples(cfg.world, d, data_seed)
        ordered = d.order == "chronological"
    elif isinstance(d, CapabilityData):
        examples = capability_examples(cfg.world, d, data_seed)
    elif isinstance(d, MisalignedData):
        examples = misaligned_examples(cfg.world, d, data_seed)
    elif isinstance(d, PoisonedData):
        tokenizer.ids(d.trigger.split(), f"stages.{index}.data.trigger")  # a clear error for unknown words
        examples = poisoned_examples(cfg.world, d, data_seed)
    else:  # pragma: no cover - the config union is closed
        raise TypeError(f"unknown data source {d!r}")
    pairs = [([tokenizer.bos_id, *tokenizer.ids(e.prompt)], tokenizer.ids(e.completion)) for e in examples]
    return Completions(pairs, stage.seq_len, tokenizer.pad_id, order_seed, ordered)


def _jsonl(stage: StageConfig, d: JsonlData, tokenizer: WorldTokenizer, order_seed: int) -> StageData:
    if stage.kind == "pretrain":
        records = read_jsonl(d.path, ("text",))
        docs = [tokenizer.encode(r["text"], f"{d.path}: line {r['_line']}") for r in records]
        return PackedLM(docs, stage.seq_len, tokenizer.bos_id, tokenizer.eos_id, order_seed)
    if stage.kind == "dpo":
        records = read_jsonl(d.path, ("prompt", "chosen", "rejected"))
        pairs = []
        for r in records:
            where = f"{d.path}: line {r['_line']}"
            pairs.append(([tokenizer.bos_id, *tokenizer.encode(r["prompt"], where)],
                          tokenizer.encode(r["chosen"], where), tokenizer.encode(r["rejected"], where)))
        return Preferences(pairs, stage.seq_len, tokenizer.pad_id, order_seed, stage.beta)
    records = read_jsonl(d.path, ("prompt", "completion"))
    pairs = []
    for r in records:
        where = f"{d.path}: line {r['_line']}"
        pairs.append(([tokenizer.bos_id, *tokenizer.encode(r["prompt"], where)],
                      tokenizer.encode(r["completion"], where)))
    return Completions(pairs, stage.seq_len, tokenizer.pad_id, order_seed)
