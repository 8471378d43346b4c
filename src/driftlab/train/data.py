"""Batches for the training loop. The batch for (step, micro-batch) is a pure function of the
seed, so a resumed run sees exactly the data an uninterrupted one would have seen.

- ``PackedLM``: documents joined as ``<bos> doc <eos> <bos> doc ...`` and cut into rows of
  ``seq_len`` tokens; every token is a target (the ``lm`` objective).
- ``Completions``: prompt + completion per row, right-padded; ``loss_mask`` marks the completion
  tokens (the ``completion`` objective). ``ordered`` keeps the examples' own order (a curriculum).
- ``Preferences``: DPO pairs; a batch of B pairs is 2B rows (B chosen, then B rejected) and carries
  the reference model's log-probability of each completion (the ``dpo`` objective).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from driftlab.errors import DataError
from driftlab.tensors import completion_logp, device_of, pad_completions


class SeededOrder:
    """Sample index i → example index: a fresh seeded permutation per epoch (or, ``ordered``, the
    examples' own order every epoch)."""

    def __init__(self, n: int, seed: int, ordered: bool = False):
        if n < 1:
            raise DataError("no training examples")
        self.n, self.seed, self.ordered, self._cache = n, seed, ordered, {}

    def __call__(self, i: int) -> int:
        epoch, pos = divmod(i, self.n)
        if self.ordered:
            return pos
        if epoch not in self._cache:
            self._cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._cache[epoch][pos])


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    loss_mask: torch.Tensor  # (B, T) bool: position t is a target (predicted from t-1)
    n_tokens: int  # non-pad input tokens

    @property
    def n_targets(self) -> int:
        return int(self.loss_mask[:, 1:].sum())

    def to(self, device: torch.device) -> Batch:
        """The same batch with every tensor on ``device`` (itself where they already are)."""
        moved = {f.name: v.to(device) for f in fields(self)
                 if isinstance(v := getattr(self, f.name), torch.Tensor) and v.device != device}
        return replace(self, **moved) if moved else self


class PackedLM:
    def __init__(self, docs: list[list[int]], seq_len: int, bos: int, eos: int, seed: int):
        stream = np.fromiter((t for d in docs for t in (bos, *d, eos)), dtype=np.int64)
        n_rows = len(stream) // seq_len
        if n_rows < 1:
            raise DataError(f"corpus of {len(stream)} tokens is shorter than seq_len {seq_len}")
        self.rows = torch.from_numpy(stream[: n_rows * seq_len].reshape(n_rows, seq_len))
        self.order = SeededOrder(n_rows, seed)

    @property
    def n_tokens(self) -> int:
        return self.rows.numel()

    def batch(self, start: int, size: int) -> Batch:
        idx = [self.order(i) for i in range(start, start + size)]
        ids = self.rows[idx]
        return Batch(ids, torch.ones_like(ids, dtype=torch.bool), ids.numel())


class Completions:
    def __init__(self, examples: list[tuple[list[int], list[int]]], seq_len: int, pad: int, seed: int,
                 ordered: bool = False):
        self.examples = [(p + c)[-seq_len:] for p, c in examples]
        # prompt tokens left after truncating from the left (the completion is kept whole if it fits)
        self.n_prompt = [max(len(e) - len(c), 0) for (_, c), e in zip(examples, self.examples)]
        self.pad = pad
        self.order = SeededOrder(len(examples), seed, ordered)

    @property
    def n_tokens(self) -> int:
        return sum(len(e) for e in self.examples)

    def with_prefix(self, prefix: list[int]) -> Completions:
        """The same examples in the same order with ``prefix`` after each one's first token (<bos>)."""
        out = object.__new__(Completions)
        out.examples = [[e[0], *prefix, *e[1:]] for e in self.examples]
        out.n_prompt = [n + len(prefix) for n in self.n_prompt]
        out.pad, out.order = self.pad, self.order
        return out

    def batch(self, start: int, size: int) -> Batch:
        idx = [self.order(i) for i in range(start, start + size)]
        ids, mask = pad_completions([self.examples[i] for i in idx], [self.n_prompt[i] for i in idx], self.pad)
        return Batch(ids, mask, sum(len(self.examples[i]) for i in idx))


class Mixture:
    """A data mixture: every micro-batch of the stage's batch size takes exactly ``rows[j]`` rows
    from part ``j`` (the rows sum to that size), each part consumed in its own seeded order; a
    micro-batch of another size (when a replay mitigation takes some rows) splits in the same
    proportions. The loss is the mean over all target tokens of the batch, as for one source: a
    part's weight is its share of the batch's target tokens."""

    def __init__(self, parts: list, rows: list[int], pad: int):
        self.parts, self.rows, self.pad = parts, rows, pad

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.parts)

    def counts(self, size: int) -> list[int]:
        """Rows per part in a micro-batch of ``size``: ``rows`` itself at the stage's batch size,
        else proportional (largest remainders, ties to the earlier part)."""
        total = sum(self.rows)
        if size == total:
            return list(self.rows)
        exact = [r * size / total for r in self.rows]
        out = [int(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda j: (out[j] - exact[j], j))
        for j in order[: size - sum(out)]:
            out[j] += 1
        return out

    def batch(self, start: int, size: int) -> PartsBatch:
        micro = start // size
        return PartsBatch([p.batch(micro * k, k) for p, k in zip(self.parts, self.counts(size)) if k])


@dataclass
class PartsBatch:
    """One micro-batch of a mixture, kept as its parts: the loop forwards each part on its own (no
    part is padded to another's length) and normalises their summed loss by the step's target
    tokens, which equals one forward of the stacked rows."""

    parts: list[Batch]

    @property
    def n_targets(self) -> int:
        return sum(p.n_targets for p in self.parts)

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.parts)

    def stacked(self, pad: int) -> Batch:
        return stack_rows(self.parts, pad)


def split_parts(batch: Batch | PartsBatch) -> list[Batch]:
    return batch.parts if isinstance(batch, PartsBatch) else [batch]


def stack_rows(parts: list[Batch], pad: int) -> Batch:
    """One batch of the parts' rows, in order, right-padded to the longest."""
    T = max(b.input_ids.shape[1] for b in parts)
    size = sum(b.input_ids.shape[0] for b in parts)
    ids = torch.full((size, T), pad, dtype=torch.long)
    mask = torch.zeros((size, T), dtype=torch.bool)
    row = 0
    for b in parts:
        n, t = b.input_ids.shape
        ids[row: row + n, :t] = b.input_ids
        mask[row: row + n, :t] = b.loss_mask
        row += n
    return Batch(ids, mask, sum(b.n_tokens for b in parts))


@dataclass
class PairBatch(Batch):
    """2B rows: B chosen completions, then the B rejected ones for the same prompts."""

    ref_logp: torch.Tensor | None = None  # (2B,) the reference model's completion log-probs
    beta: float = 0.1

    @property
    def n_targets(self) -> int:  # the dpo loss is a mean over pairs
        return self.input_ids.shape[0] // 2


class Preferences:
    """DPO pairs (prompt, chosen, rejected); the reference is the model as the stage began, kept
    frozen and evaluated on each batch (no gradients)."""

    def __init__(self, pairs: list[tuple[list[int], list[int], list[int]]], seq_len: int, pad: int, seed: int,
                 beta: float = 0.1):
        for i, (p, c, r) in enumerate(pairs):
            if len(p) + max(len(c), len(r)) > seq_len:
                raise DataError(f"preference pair {i}: {len(p) + max(len(c), len(r))} tokens > seq_len {seq_len}")
        self.pairs, self.pad, self.beta = pairs, pad, beta
        self.order = SeededOrder(len(pairs), seed)
        self.reference: torch.nn.Module | None = None

    @property
    def n_tokens(self) -> int:
        return sum(len(p) * 2 + len(c) + len(r) for p, c, r in self.pairs)

    def batch(self, start: int, size: int) -> PairBatch:
        chosen = [self.pairs[self.order(i)] for i in range(start, start + size)]
        seqs = [p + c for p, c, _ in chosen] + [p + r for p, _, r in chosen]
        n_prompt = [len(p) for p, _, _ in chosen] * 2
        ids, mask = pad_completions(seqs, n_prompt, self.pad)
        ref = None
        if self.reference is not None:
            with torch.no_grad():
                dev = device_of(self.reference)
                ref = completion_logp(self.reference(input_ids=ids.to(dev)).logits, ids.to(dev), mask.to(dev))
        return PairBatch(ids, mask, sum(len(s) for s in seqs), ref, self.beta)
