"""Experiments: presets (YAML), arms × seeds, the prefix cache, the stage runner, claims and verdicts."""

from driftlab.experiments.claims import CLAIMS, Verdict, claim, evaluate, registered
from driftlab.experiments.runner import execute, load_run_config, new_run
from driftlab.experiments.spec import Experiment, load_experiment, load_experiment_dir
from driftlab.experiments.summary import drift_lines, summarize

__all__ = ["CLAIMS", "Experiment", "Verdict", "claim", "drift_lines", "evaluate", "execute", "load_experiment",
           "load_experiment_dir", "load_run_config", "new_run", "registered", "summarize"]
