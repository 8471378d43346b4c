"""Weights and outputs against an anchor checkpoint (the reference, or the start of the stage).

Module groups, for any ``transformers`` Llama-family model: ``embed`` (token embeddings),
``layers.{i}.attn`` (attention and its input norm), ``layers.{i}.mlp`` (MLP and its input norm),
``head`` (final norm and unembedding; with tied embeddings the shared matrix counts once, under
``embed``), and ``all``.

``weight_rel_l2`` = ‖W − W_anchor‖ / ‖W_anchor‖ over a group's parameters; ``weight_update_l2`` is
the absolute ‖W − W_anchor‖ — against ``stage_start`` at a stage's last checkpoint it is that stage's
total update norm. ``output_kl`` is the mean per-token KL(current ‖ anchor) of next-token
distributions, in nats, on neutral text.
"""

from __future__ import annotations

import re

import torch

from driftlab.runs.checkpoint import model_state
from driftlab.runs.metrics import metric_row

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(\w+)")


def module_group(name: str) -> str:
    """The group a parameter name belongs to (``model.layers.0.mlp.up_proj.weight`` → ``layers.0.mlp``)."""
    m = _LAYER.search(name)
    if m:
        part = m.group(2)
        kind = "attn" if part in ("self_attn", "input_layernorm") else "mlp"
        return f"layers.{m.group(1)}.{kind}"
    if "embed_tokens" in name:
        return "embed"
    return "head"


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every distinct weight (tied weights once; LoRA layers as base + delta), float32."""
    return {name: t.float().clone() for name, t in model_state(model).items()}


def weight_rows(model: torch.nn.Module, anchor: dict[str, torch.Tensor], anchor_name: str) -> list[dict]:
    diff2: dict[str, float] = {}
    base2: dict[str, float] = {}
    for name, p in model_state(model).items():
        if name not in anchor:
            continue
        a = anchor[name]
        group = module_group(name)
        d = float((p.float() - a).double().pow(2).sum())
        b = float(a.double().pow(2).sum())
        for g in (group, "all"):
            diff2[g] = diff2.get(g, 0.0) + d
            base2[g] = base2.get(g, 0.0) + b
    rows = []
    for g in diff2:
        rows.append(metric_row("weight_update_l2", diff2[g] ** 0.5, anchor_name, site=g))
        rows.append(metric_row("weight_rel_l2", (diff2[g] / max(base2[g], 1e-30)) ** 0.5, anchor_name, site=g))
    return rows


def mean_kl(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """Mean over rows of KL(p ‖ q) for log-probability rows (n, V)."""
    return float((logp.exp() * (logp - logq)).sum(-1).double().mean())


def output_kl_rows(now: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], anchor_name: str) -> list[dict]:
    return [metric_row("output_kl", mean_kl(now[k], anchor[k]), anchor_name, k) for k in now if k in anchor]
