"""Run directories, the metrics store, checkpoints and atomic writes."""

from driftlab.runs.atomic import atomic_write, write_json, write_text
from driftlab.runs.checkpoint import (
    load_optimizer,
    load_weights,
    read_meta,
    save_checkpoint,
    save_optimizer,
)
from driftlab.runs.metrics import MetricsStore, metric_row, read_metrics
from driftlab.runs.rundir import RunDir

__all__ = [
    "atomic_write", "write_json", "write_text", "load_optimizer", "load_weights", "read_meta",
    "save_checkpoint", "save_optimizer", "MetricsStore", "metric_row", "read_metrics", "RunDir",
]
