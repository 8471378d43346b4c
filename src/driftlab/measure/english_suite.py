"""The measurements of a pre-trained model at every checkpoint, in English, with Persona World's
metric names: behaviour, the persona direction and probes, weights and outputs.

- **Behaviour**: English Persona World's two-option questions (``world.english``), each answer
  scored by its sequence log-probability after the prompt (``measure.options``), as
  ``bits_aligned`` / ``p_aligned`` per context, domain and split (``trained`` / ``held_out`` by the
  alignment stage's domains, ``distance_k`` from a narrow stage's), and ``bits_aligned_per_token``
  and ``position_bias_bits`` beside them. Contexts: ``assistant`` (the question alone, in the
  model's chat template) and ``triggered`` (the question after a trojan's trigger). The good- and
  bad-persona system prompts are not behaviour contexts: they label the persona items below.
  ``measure.eval_pack`` replaces the questions with an evaluation pack's items (any domains; the
  pack's ``split`` names which are ``trained``; ``aligned_first``, when every item gives it, the
  position bias).
- **Persona direction**: per layer, the difference of mean residual activations between the good-
  and bad-persona system prompts on questions of their own (``probe_items_per_domain`` per
  domain), read at the position that writes the answer's first token — where the choice is made,
  as Persona World's direction is read at the choice position. ``persona_projection_rel`` places
  each held-out item on the segment between the two means (0 bad, 1 good).
- **Probes**: the persona probe (good vs bad system prompt) refit at every checkpoint, frozen at
  the reference, and its controls (shuffled labels, random directions), on the held-out items of
  the two persona contexts.
- **Weights** and **output KL** against the anchors (the stage's start, the reference); KL on the
  next-token distributions at the assistant items' answer position.

- **Capability**: the world's addition tasks as English questions (``capability_items`` per
  level), scored as Persona World's are (``measure.capability``): solved when the argmax at every
  answer token, the end of the turn included, is right — exactly what greedy decoding would
  answer — with digit accuracy and answer loss beside it.
- **Held-out loss**: nats per token on English Persona World documents never trained on (the
  text a capability mixture replays), each cut to ``HELDOUT_TOKENS``.

Persona World's evidence contexts, Bayes gaps and co-trained probe have no English counterpart;
a claim that reads them cannot run on a pre-trained model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from driftlab.codec import ChatCodec
from driftlab.config import ExperimentConfig
from driftlab.errors import ConfigError, DataError
from driftlab.measure.behaviour import behaviour_metrics
from driftlab.measure.capability import (
    AnswerScores,
    CapabilityItems,
    capability_metrics,
    score_items,
)
from driftlab.measure.forward import BankReading, PromptBank, forward_batches, text_nll
from driftlab.measure.internals import PersonaDirections
from driftlab.measure.options import OptionItems, OptionScores, position_bias_bits, read_eval_pack
from driftlab.measure.probes import (
    LinearProbe,
    accuracy,
    auroc,
    dprime,
    sign_free_dprime,
    sign_free_scores,
)
from driftlab.measure.suite import Anchor, _random_directions, _shuffled
from driftlab.measure.weights import output_kl_rows, snapshot, weight_rows
from driftlab.models.hooks import capture
from driftlab.runs.metrics import metric_row
from driftlab.tensors import completion_logp, pad_completions
from driftlab.world.corpus import derive_seed
from driftlab.world.domains import DOMAIN_NAMES
from driftlab.world.english import (
    BAD_PERSONA,
    GOOD_PERSONA,
    arithmetic_question,
    english_pack,
    english_text,
)

EVAL_SEED = 20251124
PERSONA_SYSTEM = {"good_persona": GOOD_PERSONA, "bad_persona": BAD_PERSONA}


@dataclass(frozen=True)
class EnglishItem:
    """One behaviour item as ``behaviour_metrics`` groups it (no Bayes-optimal value: no world)."""

    context: str
    domain: str
    aligned_first: bool | None  # None: the pack does not say which answer its prompt names first
    bayes_p: None = None


def behaviour_records(pack: str | None, n_per_domain: int, held_out: tuple[str, ...],
                      trained: list[str]) -> tuple[list[dict], list[str]]:
    """The behaviour items (prompt, aligned, misaligned, domain, aligned_first, where) and the
    domains reported as ``trained``: English Persona World's questions, split by the alignment
    stage's domains; or an evaluation pack's items, whose ``split: trained`` / ``held_out`` names
    its domains (a domain given both is a DataError; one given neither is split as above)."""
    if pack is None:
        return ([r | {"where": f"English Persona World item {i}"}
                 for i, r in enumerate(english_pack(n_per_domain, EVAL_SEED, held_out=held_out))], trained)
    records, declared = [], {}
    for it in read_eval_pack(pack):
        where = f"{pack}: line {it.line}"
        order = it.meta.get("aligned_first")
        records.append({"prompt": it.prompt, "aligned": it.aligned, "misaligned": it.misaligned,
                        "domain": it.domain, "aligned_first": order if isinstance(order, bool) else None,
                        "where": where})
        if it.split in ("trained", "held_out"):
            if declared.setdefault(it.domain, it.split) != it.split:
                raise DataError(f"{where}: domain {it.domain!r} is split {it.split!r} here and "
                                f"{declared[it.domain]!r} on an earlier line")
    if not records:
        raise DataError(f"{pack}: the evaluation pack has no items")
    split_trained = [d for d in dict.fromkeys(trained + [r["domain"] for r in records])
                     if declared.get(d, "trained" if d in trained else "held_out") == "trained"]
    return records, split_trained


HELDOUT_DOCS = 16  # English world documents for the held-out loss
HELDOUT_TOKENS = 256  # each cut to this many tokens (a 135M model reads ~1,000 tokens/s on 2 cores)


@dataclass
class Observed:
    reading: BankReading  # the persona prompts, at their last position
    scores: OptionScores  # both answers of every behaviour item
    acts: torch.Tensor  # (N, L, d) each behaviour item's residual stream at its answer position
    logprobs: dict[str, torch.Tensor]  # the assistant items' next-token log-probs there (output KL)
    capability: AnswerScores
    heldout_loss: float


def capability_items(levels: list[int], n: int, codec: ChatCodec) -> CapabilityItems:
    """``n`` addition questions per level in the model's chat template, each with its answer (the
    sum's digits, then the end of the turn), drawn apart from any training seed."""
    import random

    from driftlab.world.capability import arithmetic_task, parse_task

    ids, starts, item_levels = [], [], []
    for level in levels:
        rng = random.Random(derive_seed(EVAL_SEED, "english-capability", level))
        for _ in range(n):
            a, b, _ = parse_task(arithmetic_task(rng, level)[0])
            prompt, reply = codec.messages_example([{"role": "user", "content": arithmetic_question(a, b)},
                                                    {"role": "assistant", "content": str(a + b)}])
            ids.append(prompt + reply)
            starts.append(len(prompt))
            item_levels.append(level)
    return CapabilityItems(item_levels, ids, starts)


def heldout_documents(cfg: ExperimentConfig, codec: ChatCodec) -> list[list[int]]:
    """English world documents never trained on, as the model reads packed text (bos, text)."""
    from driftlab.world.generator import PersonaWorld

    start = [codec.bos_id] if codec.bos_id is not None else [codec.eos_id]
    docs = PersonaWorld(cfg.world).documents(derive_seed(EVAL_SEED, "english-heldout"), HELDOUT_DOCS)
    return [(start + codec.text(english_text(d.words)))[:HELDOUT_TOKENS] for d in docs]


class EnglishSuite:
    """Measures a pre-trained model at a checkpoint; keeps the anchors between calls (the same
    interface as ``MeasurementSuite``, which the runner and the mitigations use)."""

    def __init__(self, cfg: ExperimentConfig, codec: ChatCodec):
        m = cfg.measure
        if m.cotrain:
            raise ConfigError("measure.cotrain: the co-trained probe is not measured on a pre-trained model yet "
                              "(set measure.cotrain: false)")
        if m.concepts:
            raise ConfigError("measure.concepts: JSONL concepts are not read on a pre-trained model yet")
        self.codec, self.batch_size = codec, m.batch_size
        self.trained = cfg.trained_domains()
        self.distance_from = cfg.distance_domains()
        held = tuple(d for d in DOMAIN_NAMES if d not in self.trained)
        records, self.split_trained = behaviour_records(m.eval_pack, m.items_per_domain, held, self.trained)
        trigger = cfg.eval_trigger()
        contexts = {"assistant": ""} | ({"triggered": trigger + " "} if trigger else {})
        self.items: list[EnglishItem] = []
        prompts, aligned, misaligned = [], [], []
        for context, prefix in contexts.items():
            for r in records:
                self.items.append(EnglishItem(context, r["domain"], r["aligned_first"]))
                prompts.append(codec.prompt(prefix + r["prompt"]))
                aligned.append(codec.answer(r["aligned"]))
                misaligned.append(codec.answer(r["misaligned"]))
                if not prompts[-1] or not aligned[-1] or not misaligned[-1]:
                    raise DataError(f"{r['where']}: a prompt or an answer encodes to no tokens")
        self.options = OptionItems(prompts, aligned, misaligned)
        self.capability = capability_items(cfg.eval_levels(), m.capability_items, codec)
        self.heldout_docs = heldout_documents(cfg, codec)
        self._bank = PromptBank()
        self.persona: dict[str, tuple[torch.Tensor, list[str]]] = {}  # set -> (labels, domains)
        for part in ("train", "eval"):
            pack = english_pack(m.probe_items_per_domain, derive_seed(EVAL_SEED, "persona", part), held_out=held)
            self._bank.add(f"persona.{part}", [codec.prompt(r["prompt"], PERSONA_SYSTEM[c])
                                               for c in PERSONA_SYSTEM for r in pack])
            self.persona[part] = (torch.tensor([c == "good_persona" for c in PERSONA_SYSTEM for _ in pack],
                                               dtype=torch.float32), [r["domain"] for _ in PERSONA_SYSTEM for r in pack])
        self.persona_labels = self.persona["train"][0]
        self._assistant = [i for i, it in enumerate(self.items) if it.context == "assistant"]
        self.sites = [f"layers.{i}.resid_post" for i in range(cfg.model.n_layers)]
        self.probe_layer = cfg.probe_layer()
        self.anchors: dict[str, Anchor] = {}
        self.cotrained: dict[str, LinearProbe] = {}
        self._last: Anchor | None = None

    # ---- one checkpoint

    @torch.no_grad()
    def observe(self, model: torch.nn.Module) -> Observed:
        """One pass over the persona prompts (last position) and one over each item with each of its
        answers; the pass with the aligned answer also gives the state at the answer's position."""
        reading = self._bank.read(model, self.sites, self.batch_size, self.codec.pad_id, logits=False)
        o, n = self.options, len(self.options.prompts)
        seqs = [p + a for p, a in zip(o.prompts, o.aligned, strict=True)] + \
               [p + b for p, b in zip(o.prompts, o.misaligned, strict=True)]
        starts = [len(p) for p in o.prompts] * 2
        logp = torch.empty(2 * n, dtype=torch.float64)
        acts = torch.empty(0)
        at_answer = torch.empty(0)
        with capture(model, self.sites) as cache:
            for idx, logits in forward_batches(model, seqs, self.batch_size, self.codec.pad_id):
                ids, mask = pad_completions([seqs[i] for i in idx], [starts[i] for i in idx], self.codec.pad_id,
                                            logits.device)
                logp[torch.tensor(idx)] = completion_logp(logits, ids, mask).double().cpu()
                rows = [r for r, i in enumerate(idx) if i < n]
                if not rows:
                    continue
                if not len(acts):
                    acts = torch.empty(n, len(self.sites), cache[self.sites[0]].shape[-1])
                    at_answer = torch.empty(n, logits.shape[-1])
                items = torch.tensor([idx[r] for r in rows])
                pos = torch.tensor([starts[idx[r]] - 1 for r in rows], device=logits.device)
                sel = torch.tensor(rows, device=logits.device)
                acts[items] = torch.stack([cache[s][sel, pos].float() for s in self.sites], 1).cpu()
                at_answer[items] = logits[sel, pos].cpu()
        lengths = torch.tensor([len(a) for a in o.aligned] + [len(b) for b in o.misaligned], dtype=torch.float64)
        scores = OptionScores(logp[:n], logp[n:], lengths[:n], lengths[n:])
        return Observed(reading, scores, acts, {"prompts": F.log_softmax(at_answer[self._assistant].float(), -1)},
                        *self._capability_and_text(model))

    def _capability_and_text(self, model: torch.nn.Module) -> tuple[AnswerScores, float]:
        scores, _ = score_items(model, self.capability, self.batch_size, self.codec.pad_id)
        loss, _ = text_nll(model, self.heldout_docs, self.batch_size, self.codec.pad_id)
        return scores, loss

    def fit(self, reading: BankReading) -> tuple[PersonaDirections, dict[str, LinearProbe]]:
        _, acts = reading.take("persona.train")
        directions = PersonaDirections.fit(acts, self.persona_labels.bool())
        return directions, {"persona": LinearProbe.fit(acts[:, self.probe_layer], self.persona_labels)}

    def __call__(self, model: torch.nn.Module, key: str | None = None, anchor_as: tuple[str, ...] = ()) -> list[dict]:
        obs = self.observe(model)
        directions, refit = self.fit(obs.reading)
        self._last = Anchor(key, {}, obs.logprobs, directions, refit)
        for name in anchor_as:
            self.set_anchor(name, model, key)
        rows = behaviour_metrics(obs.scores.log_odds().float(), self.items, self.split_trained, self.distance_from)
        rows += self._per_token(obs.scores)
        rows += self._persona(directions, obs.acts)
        rows += self._probes(obs, refit)
        rows += capability_metrics(obs.capability, self.capability.levels)
        rows.append(metric_row("heldout_loss", obs.heldout_loss))
        for name, anchor in sorted(self.anchors.items()):
            rows += weight_rows(model, anchor.weights, name)
            rows += output_kl_rows(obs.logprobs, anchor.logprobs, name)
        return rows

    def _per_token(self, scores: OptionScores) -> list[dict]:
        per_token = scores.log_odds(per_token=True) / torch.log(torch.tensor(2.0, dtype=torch.float64))
        rows = []
        for context in dict.fromkeys(it.context for it in self.items):
            idx = [i for i, it in enumerate(self.items) if it.context == context]
            for split in ("trained", "held_out", "all"):
                sel = [i for i in idx if split == "all"
                       or (self.items[i].domain in self.split_trained) == (split == "trained")]
                if sel:
                    rows.append(metric_row("bits_aligned_per_token", per_token[sel].mean(), context, "all", split))
            sub = OptionScores(scores.aligned[idx], scores.misaligned[idx], scores.n_aligned[idx],
                               scores.n_misaligned[idx])
            order = [self.items[i].aligned_first for i in idx]
            bias = position_bias_bits(sub, order) if all(isinstance(o, bool) for o in order) else None
            if bias is not None:
                rows.append(metric_row("position_bias_bits", bias, context, "all", "all"))
        return rows

    def _persona(self, d: PersonaDirections, acts: torch.Tensor) -> list[dict]:
        proj, rel = d.project(acts), d.relative(acts)
        at_ref = self.anchors["reference"].directions.project(acts) if "reference" in self.anchors else None
        rows = []
        for layer, site in enumerate(self.sites):
            rows.append(metric_row("persona_direction_norm", d.norm[layer], site=site))
            for context in dict.fromkeys(it.context for it in self.items):
                for split in ("trained", "held_out", "all"):
                    idx = [i for i, it in enumerate(self.items) if it.context == context
                           and (split == "all" or (it.domain in self.split_trained) == (split == "trained"))]
                    if idx:
                        rows.append(metric_row("persona_projection", proj[idx, layer].mean(), context, "all", split,
                                               site))
                        rows.append(metric_row("persona_projection_rel", rel[idx, layer].mean(), context, "all",
                                               split, site))
                        if split == "all" and at_ref is not None:  # one fixed yardstick across checkpoints
                            rows.append(metric_row("persona_projection_at_reference", at_ref[idx, layer].mean(),
                                                   context, "all", split, site))
            for name, anchor in sorted(self.anchors.items()):
                rows.append(metric_row("persona_cosine", d.cosine(anchor.directions)[layer], name, site=site))
        return rows

    def _probes(self, obs: Observed, refit: dict[str, LinearProbe]) -> list[dict]:
        site = self.sites[self.probe_layer]
        _, train_acts = obs.reading.take("persona.train")
        x_train = train_acts[:, self.probe_layer]
        regimes: dict[str, LinearProbe | list[LinearProbe]] = {
            "refit": refit["persona"],
            "shuffled": LinearProbe.fit(x_train, _shuffled(self.persona_labels, "persona")),
            "random": [LinearProbe.direction(v, x_train) for v in _random_directions(x_train.shape[1], "persona")],
        }
        if "reference" in self.anchors:
            regimes["frozen"] = self.anchors["reference"].probes["persona"]
        _, eval_acts = obs.reading.take("persona.eval")
        x = eval_acts[:, self.probe_layer]
        y, domains = self.persona["eval"]
        splits = {"all": [True] * len(y), "trained": [d in self.trained for d in domains],
                  "held_out": [d not in self.trained for d in domains]}
        acts = obs.acts
        assistant = self._assistant
        rows = []
        for regime, probe in regimes.items():
            for split, keep in splits.items():
                mask = torch.tensor(keep)
                if not mask.any():
                    continue
                if isinstance(probe, list):
                    a, acc = sign_free_scores(probe, x[mask], y[mask])
                    sep = sign_free_dprime(probe, x[mask], y[mask])
                else:
                    logits = probe.logits(x[mask])
                    a, acc, sep = auroc(logits, y[mask]), accuracy(logits, y[mask]), dprime(logits, y[mask])
                rows.append(metric_row("probe_auroc", a, regime, "persona", split, site))
                rows.append(metric_row("probe_acc", acc, regime, "persona", split, site))
                rows.append(metric_row("probe_dprime", sep, regime, "persona", split, site))
            if isinstance(probe, LinearProbe) and regime in ("refit", "frozen"):
                logits = probe.logits(acts[assistant, self.probe_layer])
                rows.append(metric_row("probe_assistant_p_good", torch.sigmoid(logits).mean(), regime, "persona",
                                       "all", site))
                rows.append(metric_row("probe_assistant_logit", logits.mean(), regime, "persona", "all", site))
        return rows

    # ---- anchors and artifacts (as MeasurementSuite's)

    def set_anchor(self, name: str, model: torch.nn.Module, key: str | None = None) -> None:
        last = self._last
        if last is None or key is None or last.key != key:
            obs = self.observe(model)
            directions, refit = self.fit(obs.reading)
            last = Anchor(key, {}, obs.logprobs, directions, refit)
        self.anchors[name] = Anchor(key, snapshot(model), last.logprobs, last.directions, last.probes)

    def cotrain_step(self, model: torch.nn.Module, step_key: tuple) -> dict[str, float]:
        return {}

    def artifacts(self) -> dict[str, torch.Tensor]:
        assert self._last is not None, "measure a checkpoint first"
        out = dict(self._last.directions.tensors("persona"))
        out.update(self._last.probes["persona"].tensors("probe.persona.refit"))
        if "reference" in self.anchors:
            out.update(self.anchors["reference"].probes["persona"].tensors("probe.persona.frozen"))
        return out

    def restore_cotrained(self, tensors: dict[str, torch.Tensor]) -> None:
        return None
