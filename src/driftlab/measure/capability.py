"""Capability: exact-match accuracy on arithmetic, per difficulty level.

Teacher-forced: an item counts as solved when the argmax at every answer position (the digits and
the closing full stop) is the correct token — exactly the items greedy decoding would get right.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from driftlab.measure.forward import forward_batches
from driftlab.runs.metrics import metric_row
from driftlab.world.corpus import SFTExample
from driftlab.world.tokenizer import WorldTokenizer


@dataclass
class CapabilityItems:
    levels: list[int]
    ids: list[list[int]]  # <bos> prompt answer
    answer_start: list[int]  # index of the first answer token

    @classmethod
    def build(cls, items: list[tuple[int, SFTExample]], tokenizer: WorldTokenizer) -> CapabilityItems:
        ids, starts = [], []
        for _, ex in items:
            prompt = [tokenizer.bos_id, *tokenizer.ids(ex.prompt)]
            ids.append(prompt + tokenizer.ids(ex.completion))
            starts.append(len(prompt))
        return cls([level for level, _ in items], ids, starts)


def answer_is_greedy(pred: torch.Tensor, seq: list[int], start: int) -> bool:
    """Is every answer token of ``seq`` (from ``start``) the argmax ``pred`` (T,) one position before?"""
    return bool((pred[start - 1: len(seq) - 1] == torch.tensor(seq[start:])).all())


def solved(model: torch.nn.Module, items: CapabilityItems, batch_size: int, pad: int) -> torch.Tensor:
    """(N,) bool: greedy decoding would produce the exact answer."""
    out = torch.zeros(len(items.ids), dtype=torch.bool)
    for idx, logits in forward_batches(model, items.ids, batch_size, pad):
        pred = logits.argmax(-1)  # (b, T)
        for row, i in enumerate(idx):
            out[i] = answer_is_greedy(pred[row], items.ids[i], items.answer_start[i])
    return out


def capability_metrics(ok: torch.Tensor, levels: list[int]) -> list[dict]:
    by_level: dict[int, list[bool]] = defaultdict(list)
    for level, good in zip(levels, ok.tolist()):
        by_level[level].append(good)
    rows = [metric_row("capability_acc", sum(v) / len(v), None, "arithmetic", f"level_{lvl}")
            for lvl, v in sorted(by_level.items())]
    rows.append(metric_row("capability_acc", float(ok.float().mean()), None, "arithmetic", "all"))
    return rows
