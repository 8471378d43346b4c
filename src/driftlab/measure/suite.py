"""The measurements taken at every checkpoint, as a registry of small functions.

A measurement is ``fn(model, items) -> list of metric rows``; ``MeasurementSuite`` builds the
held-out evaluation items once per run (from the config, with a seed of their own) and runs the
configured measurements at each checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from driftlab.config import ExperimentConfig
from driftlab.measure.behaviour import BehaviourItems, behaviour_metrics, logit_gaps
from driftlab.measure.capability import CapabilityItems, capability_metrics, solved
from driftlab.measure.forward import forward_batches
from driftlab.registry import Registry
from driftlab.runs.metrics import metric_row
from driftlab.world.corpus import CONTEXTS, behaviour_prompts, capability_prompts, derive_seed
from driftlab.world.domains import DOMAIN_NAMES
from driftlab.world.generator import PersonaWorld
from driftlab.world.tokenizer import WorldTokenizer

EVAL_SEED = 20251124  # eval items are the same for every run seed, so runs compare item for item
HELDOUT_DOCS = 32


@dataclass
class EvalItems:
    behaviour: BehaviourItems
    capability: CapabilityItems
    heldout_docs: list[list[int]]  # <bos> doc <eos>, never trained on
    trained_domains: list[str]
    batch_size: int
    pad: int


Measurement = Callable[[torch.nn.Module, EvalItems], list[dict]]
MEASUREMENTS: Registry[Measurement] = Registry("measurement")
measurement = MEASUREMENTS.register


@measurement("behaviour")
def behaviour(model: torch.nn.Module, items: EvalItems) -> list[dict]:
    gaps = logit_gaps(model, items.behaviour, items.batch_size, items.pad)
    return behaviour_metrics(gaps, items.behaviour.prompts, items.trained_domains)


@measurement("capability")
def capability(model: torch.nn.Module, items: EvalItems) -> list[dict]:
    ok = solved(model, items.capability, items.batch_size, items.pad)
    return capability_metrics(ok, items.capability.levels)


@measurement("heldout_loss")
def heldout_loss(model: torch.nn.Module, items: EvalItems) -> list[dict]:
    """Mean next-token loss (nats) on held-out pre-training documents."""
    total, count = 0.0, 0
    for idx, logits in forward_batches(model, items.heldout_docs, items.batch_size, items.pad):
        for row, i in enumerate(idx):
            n = len(items.heldout_docs[i])
            target = torch.tensor(items.heldout_docs[i][1:])
            total += float(F.cross_entropy(logits[row, : n - 1], target, reduction="sum"))
            count += n - 1
    return [metric_row("heldout_loss", total / count)]


def build_eval_items(cfg: ExperimentConfig, tokenizer: WorldTokenizer) -> EvalItems:
    m = cfg.measure
    prompts = [p for context in CONTEXTS for domain in DOMAIN_NAMES
               for p in behaviour_prompts(cfg.world, context, domain, m.items_per_domain,
                                          m.evidence_episodes, EVAL_SEED)]
    cap = capability_prompts(cfg.world.capability_levels, m.capability_items, EVAL_SEED)
    docs = PersonaWorld(cfg.world).documents(derive_seed(EVAL_SEED, "heldout_docs"), HELDOUT_DOCS)
    return EvalItems(
        BehaviourItems.build(prompts, tokenizer),
        CapabilityItems.build(cap, tokenizer),
        [[tokenizer.bos_id, *tokenizer.ids(d.words), tokenizer.eos_id] for d in docs],
        cfg.trained_domains(),
        m.batch_size,
        tokenizer.pad_id,
    )


class MeasurementSuite:
    def __init__(self, cfg: ExperimentConfig, tokenizer: WorldTokenizer, names: list[str] | None = None):
        self.items = build_eval_items(cfg, tokenizer)
        self.names = names or list(MEASUREMENTS)

    def __call__(self, model: torch.nn.Module) -> list[dict]:
        rows: list[dict] = []
        for name in self.names:
            rows += MEASUREMENTS.get(name)(model, self.items)
        return rows
