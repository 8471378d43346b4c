"""Capability: exact match on arithmetic per difficulty level, and two continuous read-outs.

Teacher-forced: an item counts as solved when the argmax at every answer position (the digits and
the closing full stop) is the correct token — exactly the items greedy decoding would get right.
Beside it, per level: the share of answer digits whose argmax is right given the correct digits
before them (``capability_digit_acc``), and the answer's mean next-token loss in nats
(``capability_answer_nll``), which move before exact match does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from driftlab.measure.forward import forward_batches, sequence_logits
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
        pred = logits.argmax(-1).cpu()  # (b, T)
        for row, i in enumerate(idx):
            out[i] = answer_is_greedy(pred[row], items.ids[i], items.answer_start[i])
    return out


@dataclass
class AnswerScores:
    """Per item: solved exactly, share of answer digits right (teacher-forced), answer loss (nats/token)."""

    ok: torch.Tensor  # (N,) bool
    digit_acc: torch.Tensor  # (N,)
    nll: torch.Tensor  # (N,)


def score_answer(logits: torch.Tensor, seq: list[int], start: int) -> tuple[bool, float, float]:
    """(solved, digit accuracy, mean answer nats) of one teacher-forced sequence; ``logits`` (T, V)."""
    target = torch.tensor(seq[start:])
    at = logits[start - 1: len(seq) - 1].float()  # (A, V): predicts each answer token
    right = at.argmax(-1) == target
    nll = torch.nn.functional.cross_entropy(at, target)
    return bool(right.all()), float(right[:-1].float().mean()) if len(right) > 1 else float(right[0]), float(nll)


def score_items(model: torch.nn.Module, items: CapabilityItems, batch_size: int, pad: int,
                keep_logprobs: bool = False) -> tuple[AnswerScores, list[torch.Tensor]]:
    """Every item's ``score_answer``; with ``keep_logprobs``, also each item's next-token log-probs
    (len - 1, V), in forward order (for KL to an anchor)."""
    n = len(items.ids)
    scores = AnswerScores(torch.zeros(n, dtype=torch.bool), torch.zeros(n), torch.zeros(n))
    logprobs = []
    for i, logits in sequence_logits(model, items.ids, batch_size, pad):
        scores.ok[i], scores.digit_acc[i], scores.nll[i] = score_answer(logits, items.ids[i], items.answer_start[i])
        if keep_logprobs:
            logprobs.append(torch.nn.functional.log_softmax(logits[:-1], -1))
    return scores, logprobs


def capability_metrics(scores: AnswerScores, levels: list[int]) -> list[dict]:
    rows = []
    for metric, values in (("capability_acc", scores.ok.double()), ("capability_digit_acc", scores.digit_acc),
                           ("capability_answer_nll", scores.nll)):
        by_level: dict[int, list[float]] = defaultdict(list)
        for level, v in zip(levels, values.tolist()):
            by_level[level].append(v)
        rows += [metric_row(metric, sum(v) / len(v), None, "arithmetic", f"level_{lvl}")
                 for lvl, v in sorted(by_level.items())]
        rows.append(metric_row(metric, float(values.double().mean()), None, "arithmetic", "all"))
    return rows
