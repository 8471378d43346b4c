"""Sampling answers from a causal LM with a KV cache: batched, left-padded prompts of any lengths.

Each prompt is run once; every later step feeds one token per row and reuses the cached keys and
values. Left padding is masked out and positions count only real tokens, so a padded row samples
exactly what it would alone. Temperature 0 is greedy decoding (the same tokens as
``model.generate(do_sample=False)``); otherwise tokens are drawn with ``generator`` (on the
model's device), so the same seed gives the same answers. A row stops at ``stop`` (any of them,
kept in its answer) or after ``max_new`` tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from driftlab.tensors import device_of


def _cache_kwarg(model: torch.nn.Module) -> str:
    """``cache`` in recent transformers, ``past_key_values`` before it (still accepted, deprecated)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out: object) -> object:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _left_pad(prompts: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, T - len(p):] = torch.as_tensor(p, dtype=torch.long)
        mask[row, T - len(p):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def sample_batch(model: torch.nn.Module, prompts: list[list[int]], max_new: int, temperature: float,
                 stop: Iterable[int], pad: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """The answer tokens sampled after each prompt (one left-padded batch)."""
    if not prompts:
        return []
    if any(not p for p in prompts):
        raise ValueError("an empty prompt has nothing to continue")
    if temperature > 0 and generator is None:
        raise ValueError("sampling at temperature > 0 needs a seeded generator")
    was_training = model.training
    model.eval()
    device = device_of(model)
    stops = torch.tensor(sorted(set(stop)), dtype=torch.long, device=device)
    ids, mask = _left_pad(prompts, pad, device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    past, logits = _cache_of(out), out.logits[:, -1].float()
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    answers: list[list[int]] = [[] for _ in prompts]
    next_pos = positions[:, -1] + 1
    for _ in range(max_new):
        if temperature > 0:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        else:
            nxt = logits.argmax(-1)
        for row, (t, d) in enumerate(zip(nxt.tolist(), done.tolist())):
            if not d:
                answers[row].append(t)
        done |= torch.isin(nxt, stops)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=mask.dtype, device=device)], 1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    use_cache=True, **{_cache_kwarg(model): past})
        past, logits = _cache_of(out), out.logits[:, -1].float()
        next_pos = next_pos + 1
    model.train(was_training)
    return answers


def sample(model: torch.nn.Module, prompts: list[list[int]], max_new: int, temperature: float,
           stop: Iterable[int], pad: int, generator: torch.Generator | None = None,
           batch_size: int = 32) -> list[list[int]]:
    """``sample_batch`` over batches of ``batch_size`` prompts of similar length (less padding),
    answers in the prompts' order. The draws depend on how prompts are batched: keep
    ``batch_size`` fixed for reproducible samples."""
    stop = list(stop)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        for i, a in zip(idx, sample_batch(model, [prompts[i] for i in idx], max_new, temperature, stop, pad,
                                          generator)):
            answers[i] = a
    return answers
