"""Batches for the training loop. The batch for (step, micro-batch) is a pure function of the
seed, so a resumed run sees exactly the data an uninterrupted one would have seen.

- ``PackedLM``: documents joined as ``<bos> doc <eos> <bos> doc ...`` and cut into rows of
  ``seq_len`` tokens; every token is a target (the ``lm`` objective).
- ``Completions``: prompt + completion per row, right-padded; ``loss_mask`` marks the completion
  tokens (the ``completion`` objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from driftlab.errors import DataError


class SeededOrder:
    """Sample index i → example index: a fresh seeded permutation per epoch."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise DataError("no training examples")
        self.n, self.seed, self._cache = n, seed, {}

    def __call__(self, i: int) -> int:
        epoch, pos = divmod(i, self.n)
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
    def __init__(self, examples: list[tuple[list[int], list[int]]], seq_len: int, pad: int, seed: int):
        self.examples = [(p + c)[-seq_len:] for p, c in examples]
        # prompt tokens left after truncating from the left (the completion is kept whole if it fits)
        self.n_prompt = [max(len(e) - len(c), 0) for (_, c), e in zip(examples, self.examples)]
        self.pad = pad
        self.order = SeededOrder(len(examples), seed)

    @property
    def n_tokens(self) -> int:
        return sum(len(e) for e in self.examples)

    def batch(self, start: int, size: int) -> Batch:
        idx = [self.order(i) for i in range(start, start + size)]
        T = max(len(self.examples[i]) for i in idx)
        ids = torch.full((size, T), self.pad, dtype=torch.long)
        mask = torch.zeros((size, T), dtype=torch.bool)
        for row, i in enumerate(idx):
            e = self.examples[i]
            ids[row, : len(e)] = torch.tensor(e)
            mask[row, self.n_prompt[i]: len(e)] = True
        return Batch(ids, mask, sum(len(self.examples[i]) for i in idx))
