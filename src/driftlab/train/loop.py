"""The one training loop, used by every stage.

AdamW, warm-up + cosine or constant LR, global grad-norm clipping, gradient accumulation with
exact per-token normalisation, seeded data order, optional bf16 autocast. The objective is looked
up by name; checkpoints are handed to a callback so that training knows nothing of run
directories or measurements.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from driftlab.config import StageConfig
from driftlab.tensors import autocast, device_of
from driftlab.train.data import Batch, PartsBatch, split_parts
from driftlab.train.objectives import get_objective
from driftlab.train.schedule import checkpoint_steps, lr_at

if TYPE_CHECKING:
    from driftlab.train.mitigations import StageHooks


class StageData(Protocol):
    def batch(self, start: int, size: int) -> Batch | PartsBatch: ...


@dataclass
class Progress:
    """Where a stage is: optimizer steps done and input tokens seen in this stage."""

    step: int = 0
    tokens: int = 0


@dataclass
class CheckpointEvent:
    step: int
    tokens: int
    train_loss: float  # mean per-target-token loss over the steps since the previous checkpoint
    lr: float
    mitigation_loss: float | None = None  # mean extra loss the mitigations added, same normalisation


def make_optimizer(model: torch.nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms or biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": stage.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=stage.lr, betas=stage.betas, fused=True)


def train_stage(
    model: torch.nn.Module,
    stage: StageConfig,
    data: StageData,
    optimizer: torch.optim.Optimizer,
    on_checkpoint: Callable[[CheckpointEvent], None],
    start: Progress | None = None,
    precision: str = "fp32",
    on_step: Callable[[int, float], None] | None = None,
    compile: bool = False,
    hooks: StageHooks | None = None,
) -> Progress:
    """Train ``model`` from ``start.step`` to ``stage.steps``; call ``on_checkpoint`` on schedule.

    ``compile`` runs the training forward/backward through ``torch.compile`` (same parameters;
    measurements in ``on_checkpoint`` still see the eager model).
    """
    forward = torch.compile(model) if compile else model
    objective = get_objective(stage.objective_name)
    # rows that are not sampled answers (replay in an rl stage) train on their targets' next-token loss
    auxiliary = get_objective("completion") if stage.kind == "rl" else objective
    device = device_of(model)
    checkpoints = set(checkpoint_steps(stage))
    state = Progress(**vars(start)) if start else Progress()
    loss_sum, loss_tokens, extra_sum = 0.0, 0, 0.0
    model.train()
    for step in range(state.step + 1, stage.steps + 1):
        lr = lr_at(stage, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = (step - 1) * stage.grad_accum * stage.batch_size
        # a mixture's micro-batch runs as one forward per part (exactly the stacked batch's gradient)
        micro = [part.to(device) for m in range(stage.grad_accum)
                 for part in split_parts(data.batch(first + m * stage.batch_size, stage.batch_size))]
        n_targets = max(sum(b.n_targets for b in micro), 1)
        step_loss = step_extra = 0.0
        for m, batch in enumerate(micro):
            with autocast(device, precision), (hooks.forward_context() if hooks else contextlib.nullcontext()):
                logits = forward(input_ids=batch.input_ids).logits  # (B, T, V)
            own = objective if stage.kind != "rl" or getattr(batch, "advantages", None) is not None else auxiliary
            loss = own(logits, batch) / n_targets
            step_loss += loss.item()
            extra = hooks.extra_loss(model, batch, logits, (step, m)) if hooks else None
            if extra is not None:
                extra = extra / n_targets
                step_extra += extra.item()
                loss = loss + extra
            loss.backward()
        if stage.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state = Progress(step, state.tokens + sum(b.n_tokens for b in micro))
        loss_sum, loss_tokens = loss_sum + step_loss * n_targets, loss_tokens + n_targets
        extra_sum += step_extra * n_targets
        if on_step is not None:
            on_step(step, step_loss)
        if step in checkpoints:
            model.eval()
            on_checkpoint(CheckpointEvent(step, state.tokens, loss_sum / max(loss_tokens, 1), lr,
                                          extra_sum / max(loss_tokens, 1) if hooks and hooks.losses else None))
            model.train()
            loss_sum, loss_tokens, extra_sum = 0.0, 0, 0.0
    model.eval()
    return state
