"""Training: the one loop, objectives (a registry), data batching, schedules."""

from driftlab.train.data import Batch, Completions, PackedLM
from driftlab.train.loop import CheckpointEvent, Progress, make_optimizer, train_stage
from driftlab.train.objectives import OBJECTIVES, get_objective, objective
from driftlab.train.schedule import checkpoint_steps, lr_at

__all__ = [
    "OBJECTIVES",
    "Batch",
    "CheckpointEvent",
    "Completions",
    "PackedLM",
    "Progress",
    "checkpoint_steps",
    "get_objective",
    "lr_at",
    "make_optimizer",
    "objective",
    "train_stage",
]
