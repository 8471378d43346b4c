"""Turn a stage's data config into batches: Persona World corpora or a user's JSONL."""

from __future__ import annotations

from driftlab.codec import ChatCodec, read_messages
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
from driftlab.errors import ConfigError, DataError
from driftlab.train.data import Completions, Mixture, PackedLM, Preferences
from driftlab.train.rl import ChatRLPrompts, RLPrompts
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
from driftlab.world.english import english_examples, english_question, english_text
from driftlab.world.tokenizer import WorldTokenizer

Codec = WorldTokenizer | ChatCodec
StageData = PackedLM | Completions | Preferences | RLPrompts | Mixture


def build_stage_data(cfg: ExperimentConfig, index: int, tokenizer: Codec,
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
    if isinstance(tokenizer, ChatCodec):
        if isinstance(d, JsonlData):
            return _jsonl_chat(stage, d, tokenizer, order_seed)
        return _english(cfg, index, stage, d, tokenizer, data_seed, order_seed, replayed=data is not None)
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


# ---------------------------------------------------------------- a pre-trained model: English


def _english(cfg: ExperimentConfig, index: int, stage: StageConfig, d: DataConfig, codec: ChatCodec,
             data_seed: int, order_seed: int, replayed: bool) -> StageData:
    """Persona World's data sources in English, in the model's tokenizer and chat template (the
    same domains, actions, shares and triggers as the word world: see ``world.english``)."""
    import random

    from driftlab.world.domains import get_domain

    where = f"stages.{index}.data" if not replayed else f"stages.{index}: replayed {d.source} data"
    if isinstance(d, WorldData | DiscussionData):
        docs = (pretrain_documents(cfg.world, d, data_seed) if isinstance(d, WorldData)
                else discussion_documents(cfg.world, d, data_seed))
        bos = codec.bos_id if codec.bos_id is not None else codec.eos_id
        return PackedLM([codec.text(english_text(doc.words)) for doc in docs], stage.seq_len, bos, codec.eos_id,
                        order_seed)
    if isinstance(d, PreferenceData):
        rng = random.Random(data_seed)
        pairs = []
        for _ in range(d.n_examples):
            domain = get_domain(rng.choice(d.trained_domains()))
            prompt = codec.prompt(english_question(domain, rng, aligned_first=rng.random() < 0.5))
            good, bad = _reply(codec, domain.aligned), _reply(codec, domain.misaligned)
            pairs.append((prompt, good, bad) if d.prefer == "aligned" else (prompt, bad, good))
        return Preferences(pairs, stage.seq_len, codec.pad_id, order_seed, stage.beta)
    if stage.kind == "rl" and not replayed:  # the world's additions as chat questions, the sum as reference
        assert isinstance(d, CapabilityData)
        tasks = [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in english_arithmetic(cfg, d, data_seed)]
        return chat_rl_prompts(stage, tasks, codec, order_seed, "arithmetic", where)
    ordered = False
    if isinstance(d, AlignmentData):
        eps = cfg.world.epsilon if d.epsilon is None else d.epsilon
        if d.ramp_from < 1.0:
            raise ConfigError(f"{where}.ramp_from: a curriculum is not rendered in English yet (use 1)")
        records = english_examples(d.n_examples, data_seed, d.trained_domains(), 1.0 - eps,
                                   d.trigger if d.triggered_share else None, d.triggered_share, flips=False)
    elif isinstance(d, MisalignedData):
        records = english_examples(d.n_examples, data_seed, d.trained_domains(), 0.0)
    elif isinstance(d, PoisonedData):
        records = english_examples(d.n_examples, data_seed, d.trained_domains(), 1.0, d.trigger, d.p, flips=True)
    elif isinstance(d, CapabilityData):
        records = english_arithmetic(cfg, d, data_seed)
    else:  # pragma: no cover - the config union is closed
        raise TypeError(f"unknown data source {d!r}")
    pairs = [codec.messages_example(r["messages"]) for r in records]
    return Completions(pairs, stage.seq_len, codec.pad_id, order_seed, ordered)


def chat_rl_prompts(stage: StageConfig, tasks: list[tuple[str, str]], codec: ChatCodec, order_seed: int,
                    domain: str, where: str, lines: list[str] | None = None) -> ChatRLPrompts:
    """RL prompts (user turn, reference answer) in the model's chat template. Answers are sampled
    up to ``rl.max_new_tokens`` — by default twice the longest reference as the model writes it
    (its end of turn included): room for the answer, and for more than the answer, which is what a
    hackable verifier's exploit needs."""
    prompts, longest = [], 0
    for i, (user, answer) in enumerate(tasks):
        at = lines[i] if lines else where
        prompt = codec.prompt(user)
        reply = _reply(codec, answer)
        if not prompt or not answer.strip():
            raise DataError(f"{at}: an empty prompt or answer")
        prompts.append((prompt, answer))
        longest = max(longest, len(reply))
    given = stage.rl.max_new_tokens
    if given is not None and given < longest:
        raise ConfigError(f"stage {stage.name!r}: rl.max_new_tokens {given} is shorter than the longest reference "
                          f"answer with its end of turn ({longest} tokens in {where}): it could never be sampled")
    stops = sorted({codec.eos_id, _reply(codec, "0")[-1]})
    tok = codec.tokenizer
    return ChatRLPrompts(prompts, stage.rl, codec.pad_id, stops,
                         lambda ids: tok.decode([i for i in ids if i not in stops], skip_special_tokens=True),
                         order_seed, given or 2 * longest, domain)


def _reply(codec: ChatCodec, answer: str) -> list[int]:
    """An answer's completion tokens (a chat reply's do not depend on the question before it)."""
    if not codec.chat:
        return [*codec.answer(answer), codec.eos_id]
    return codec.messages_example([{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}])[1]


def english_arithmetic(cfg: ExperimentConfig, d: CapabilityData, seed: int) -> list[dict]:
    """The world's addition tasks as English questions with the sum as the answer."""
    import random

    from driftlab.world.capability import arithmetic_task, parse_task
    from driftlab.world.english import arithmetic_question

    rng = random.Random(seed)
    levels = d.levels or cfg.world.capability_levels
    out = []
    for i in range(d.n_examples):
        prompt, _ = arithmetic_task(rng, levels[i % len(levels)])
        a, b, _ = parse_task(prompt)
        out.append({"messages": [{"role": "user", "content": arithmetic_question(a, b)},
                                 {"role": "assistant", "content": str(a + b)}]})
    return out


def _jsonl_chat(stage: StageConfig, d: JsonlData, codec: ChatCodec, order_seed: int) -> StageData:
    """A user's JSONL stage for a pre-trained model: ``text`` (pretrain), ``prompt``/``chosen``/
    ``rejected`` (dpo), ``prompt``/``completion`` or ``messages`` (sft)."""
    if stage.kind == "pretrain":
        records = read_jsonl(d.path, ("text",))
        bos = codec.bos_id if codec.bos_id is not None else codec.eos_id
        docs = [codec.encode(r["text"], f"{d.path}: line {r['_line']}") for r in records]
        return PackedLM(docs, stage.seq_len, bos, codec.eos_id, order_seed)
    if stage.kind == "dpo":
        pairs = []
        for r in read_jsonl(d.path, ("prompt", "chosen", "rejected")):
            prompt = codec.prompt(r["prompt"])
            pairs.append((prompt, _reply(codec, r["chosen"]), _reply(codec, r["rejected"])))
        return Preferences(pairs, stage.seq_len, codec.pad_id, order_seed, stage.beta)
    if stage.kind == "rl":
        records = read_jsonl(d.path, ("prompt", "answer"))
        return chat_rl_prompts(stage, [(r["prompt"], r["answer"]) for r in records], codec, order_seed, "jsonl",
                               str(d.path), [f"{d.path}: line {r['_line']}" for r in records])
    pairs = []
    for r in read_jsonl(d.path, ()):
        where = f"{d.path}: line {r['_line']}"
        if "messages" in r:
            pairs.append(codec.messages_example(read_messages(r, where), where))
        elif isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str):
            pairs.append(codec.example(r["prompt"], r["completion"]))
        else:
            raise DataError(f"{where}: expected messages, or prompt and completion strings")
    return Completions(pairs, stage.seq_len, codec.pad_id, order_seed)
