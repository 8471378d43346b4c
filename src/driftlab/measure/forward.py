"""Batched, padding-aware forward passes for measurement (no gradients, weights untouched), and the
prompt bank that reads every last-position item of a checkpoint in one pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from driftlab.models.hooks import _decoder, capture
from driftlab.tensors import device_of, gather_last, right_pad


@torch.no_grad()
def forward_batches(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad: int,
                    ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield (item indices, fp32 logits (b, T, V) on the model's device) for right-padded batches of
    similar length (no attention mask needed: see ``tensors.right_pad``)."""
    for idx, out in _batches(model, seqs, batch_size, pad):
        yield idx, out.logits.float()


@torch.no_grad()
def decoder_batches(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad: int,
                    ) -> Iterator[list[int]]:
    """``forward_batches`` without the unembedding: for readers of hooked activations only (the
    head over every position is ~20% of a 135M model's forward with a 49k vocabulary)."""
    for idx, _ in _batches(model, seqs, batch_size, pad, _decoder(model)):
        yield idx


def _batches(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad: int,
             run: torch.nn.Module | None = None) -> Iterator[tuple[list[int], object]]:
    was_training = model.training
    model.eval()
    device = device_of(model)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        yield idx, (run or model)(input_ids=right_pad([seqs[i] for i in idx], pad, device))
    model.train(was_training)


def sequence_logits(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad: int,
                    ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (item index, its fp32 logits (len, V) on the CPU), in ``forward_batches``' order."""
    for idx, logits in forward_batches(model, seqs, batch_size, pad):
        logits = logits.cpu()
        for row, i in enumerate(idx):
            yield i, logits[row, : len(seqs[i])]


def text_nll(model: torch.nn.Module, docs: list[list[int]], batch_size: int, pad: int,
             skip_input: int | None = None) -> tuple[float, list[torch.Tensor]]:
    """Mean next-token loss (nats) over ``docs``; with ``skip_input``, also each doc's next-token
    log-probs (P, V) at the positions whose input is not that token (for KL to an anchor)."""
    total, count, logprobs = 0.0, 0, []
    for i, logits in sequence_logits(model, docs, batch_size, pad):
        seq = torch.tensor(docs[i])
        lp = F.log_softmax(logits[:-1], -1)
        total -= float(lp.gather(1, seq[1:, None]).sum())
        count += len(seq) - 1
        if skip_input is not None:
            logprobs.append(lp[seq[:-1] != skip_input])
    return total / max(count, 1), logprobs


@dataclass
class BankReading:
    """One pass over a ``PromptBank``: last-position logits and residual activations per item."""

    logits: torch.Tensor | None  # (N, V) at each unique sequence's last position (None: not read)
    acts: torch.Tensor  # (N, L, d) at the last position, one slice per site
    sites: list[str]
    index: dict[str, torch.Tensor]  # set name -> rows of the unique sequences

    def take(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        idx = self.index[name]
        return None if self.logits is None else self.logits[idx], self.acts[idx]


class PromptBank:
    """Named sets of prompts read at their last position, deduplicated, run in one batched pass.

    Behaviour items, probe training sets and concept sets share this one pass, so a checkpoint's
    behaviour and internals come from the same forward computation.
    """

    def __init__(self) -> None:
        self.seqs: list[list[int]] = []
        self._where: dict[tuple[int, ...], int] = {}
        self.index: dict[str, torch.Tensor] = {}

    def add(self, name: str, seqs: list[list[int]]) -> None:
        rows = []
        for seq in seqs:
            key = tuple(seq)
            if key not in self._where:
                self._where[key] = len(self.seqs)
                self.seqs.append(list(seq))
            rows.append(self._where[key])
        self.index[name] = torch.tensor(rows, dtype=torch.long)

    @torch.no_grad()
    def read(self, model: torch.nn.Module, sites: list[str], batch_size: int, pad: int,
             logits: bool = True) -> BankReading:
        """Every item's activations at ``sites`` and (unless ``logits=False``: the decoder alone
        runs) its next-token logits, at its last position."""
        assert self.seqs, "empty prompt bank"
        logits_out = None
        acts = torch.empty(0)
        batches = forward_batches(model, self.seqs, batch_size, pad) if logits else \
            ((idx, None) for idx in decoder_batches(model, self.seqs, batch_size, pad))
        with capture(model, sites) as cache:
            for idx, out in batches:
                batch = [self.seqs[i] for i in idx]
                sel = torch.tensor(idx)
                if not len(acts):
                    acts = torch.empty(len(self.seqs), len(sites), cache[sites[0]].shape[-1])
                acts[sel] = torch.stack([gather_last(cache[s], batch).float() for s in sites], 1).cpu()
                if out is not None:
                    if logits_out is None:
                        logits_out = torch.empty(len(self.seqs), out.shape[-1])
                    logits_out[sel] = gather_last(out, batch).cpu()
        return BankReading(logits_out, acts, list(sites), self.index)
