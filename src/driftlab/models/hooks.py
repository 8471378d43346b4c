"""Named hook points on the residual stream, an activation cache, and additive steering.

Hook point names are stable across the tiny model and any ``transformers`` Llama-family model
(anything whose decoder exposes ``embed_tokens`` and ``layers`` with ``self_attn`` and ``mlp``):

    embed                 token embeddings (the residual stream before layer 0)
    layers.{i}.attn_out   the attention block's output (after o_proj), before it is added
    layers.{i}.mlp_out    the MLP block's output, before it is added
    layers.{i}.resid_post the residual stream after layer i (the raw layer output, before any final norm)

Reading activations never changes a weight; steering only adds to an activation while its
context manager is open, and removes its hook on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _decoder(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", model)
    if not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
        raise TypeError(f"{type(model).__name__} is not a Llama-family model (no model.layers / embed_tokens)")
    return inner


def hook_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Hook point name → the module whose output it is, in forward order."""
    dec = _decoder(model)
    points: dict[str, nn.Module] = {"embed": dec.embed_tokens}
    for i, layer in enumerate(dec.layers):
        points[f"layers.{i}.attn_out"] = layer.self_attn
        points[f"layers.{i}.mlp_out"] = layer.mlp
        points[f"layers.{i}.resid_post"] = layer
    return points


def hook_points(model: nn.Module) -> list[str]:
    return list(hook_modules(model))


def _tensor(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # attention returns (out, weights)


def _resolve(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    modules = hook_modules(model)
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise KeyError(f"unknown hook point {unknown[0]!r}; e.g. {', '.join(list(modules)[:4])}")
    return {n: modules[n] for n in names}


class ActivationCache(dict):
    """Hook point name → activation (B, T, d_model), detached."""


@contextmanager
def capture(model: nn.Module, names: list[str] | None = None, detach: bool = True) -> Iterator[ActivationCache]:
    """Record the named activations of every forward pass run inside the block (last one wins).

    ``detach=False`` keeps them in the autograd graph (for losses on activations)."""
    cache = ActivationCache()
    handles = []
    for name, module in _resolve(model, names or hook_points(model)).items():
        def record(mod, args, output, name=name):
            out = _tensor(output)
            cache[name] = out.detach() if detach else out
        handles.append(module.register_forward_hook(record))
    try:
        yield cache
    finally:
        for h in handles:
            h.remove()


@contextmanager
def steer(model: nn.Module, name: str, vector: torch.Tensor, alpha: float = 1.0) -> Iterator[None]:
    """Add ``alpha * vector`` (d_model,) to the activation at hook point ``name`` at every position."""
    module = _resolve(model, [name])[name]

    def add(mod, args, output):
        if isinstance(output, tuple):
            return (output[0] + alpha * vector.to(output[0].device, output[0].dtype), *output[1:])
        return output + alpha * vector.to(output.device, output.dtype)

    handle = module.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
