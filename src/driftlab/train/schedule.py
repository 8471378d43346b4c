"""Learning-rate and checkpoint schedules: pure functions of the step."""

from __future__ import annotations

import math

import numpy as np

from driftlab.config import StageConfig


def lr_at(stage: StageConfig, step: int) -> float:
    """LR for optimizer step ``step`` (1-based): linear warm-up, then constant or cosine decay."""
    if stage.warmup_steps and step <= stage.warmup_steps:
        return stage.lr * step / stage.warmup_steps
    if stage.schedule == "constant":
        return stage.lr
    span = max(stage.steps - stage.warmup_steps, 1)
    progress = min((step - stage.warmup_steps) / span, 1.0)
    floor = stage.lr * stage.min_lr_ratio
    return floor + (stage.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def tail_steps(stage: StageConfig) -> list[int]:
    """The stage's tail: ``tail`` steps evenly spaced over its last ``tail_span`` of steps, ending at
    the last (just the last when ``tail`` is 0 or 1). A verdict's end value is the mean over them,
    which averages out the checkpoint-to-checkpoint jitter of a late stage."""
    n, k = stage.steps, stage.checkpoints.tail
    if k <= 1:
        return [n]
    first = max(1, n - int(round(stage.checkpoints.tail_span * n)))
    return sorted({int(round(s)) for s in np.linspace(first, n, k)})


def checkpoint_steps(stage: StageConfig) -> list[int]:
    """Log-spaced and evenly spaced steps in [1, steps], the tail, always including the last."""
    n = stage.steps
    steps = {n, *tail_steps(stage)}
    if stage.checkpoints.log:
        steps.update(int(round(s)) for s in np.geomspace(1, n, stage.checkpoints.log))
    if stage.checkpoints.linear:
        steps.update(int(round(s)) for s in np.linspace(0, n, stage.checkpoints.linear + 1)[1:])
    return sorted(s for s in steps if 1 <= s <= n)
