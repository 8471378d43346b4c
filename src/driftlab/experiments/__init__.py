"""Experiments: presets, the stage runner, summaries (claims and verdicts come later)."""

from driftlab.experiments.runner import execute, load_run_config, new_run
from driftlab.experiments.summary import drift_lines, summarize

__all__ = ["drift_lines", "execute", "load_run_config", "new_run", "summarize"]
