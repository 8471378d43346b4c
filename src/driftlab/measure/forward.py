"""Batched, padding-aware forward passes for measurement (no gradients, weights untouched)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


@torch.no_grad()
def forward_batches(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad: int,
                    ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (item indices, logits (b, T, V)) for right-padded batches of similar length.

    Right padding needs no attention mask under a causal model: real tokens never see pads.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        T = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), T), pad, dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
        yield idx, model(input_ids=ids).logits.float()
    model.train(was_training)
