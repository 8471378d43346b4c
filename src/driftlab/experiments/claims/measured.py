"""An experiment's metrics, indexed for verdict functions (and the report)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from driftlab.config import ExperimentConfig, SelfProbeSpec
from driftlab.runs.metrics import read_metrics
from driftlab.train.schedule import tail_steps


class Measured:
    """An experiment's metrics, indexed for verdict functions (and the report)."""

    def __init__(self, path: str | Path, configs: dict[str, ExperimentConfig], self_probe: SelfProbeSpec | None = None,
                 scenarios: list[str] | None = None):
        rows = read_metrics(path).to_pylist()
        self.configs = configs
        self.self_probe = self_probe
        self.scenarios = scenarios  # arms are <scenario>.<arm> for each, or None
        self.values: dict[tuple, float] = {}
        self.any_split: dict[tuple, float] = {}  # the same without the split (per-domain rows, rl rows)
        self.last: dict[tuple[str, int, int], int] = {}
        self.steps: dict[tuple[str, int, int], list[int]] = defaultdict(list)
        seeds = set()
        for r in rows:
            run = (r["arm"], r["seed"], r["stage_index"])
            seeds.add(r["seed"])
            if r["step"] not in self.steps[run]:
                self.steps[run].append(r["step"])
            self.last[run] = max(self.last.get(run, -1), r["step"])
            key = (r["arm"], r["seed"], r["stage_index"], r["step"], r["metric"], r["context"], r["domain"],
                   r["split"], r["site"])
            self.values[key] = r["value"]
            self.any_split.setdefault(key[:7] + key[8:], r["value"])
        self.seeds = sorted(seeds)
        self._sites: dict[str, str | None] = {}

    def n_stages(self, arm: str) -> int:
        return len(self.configs[arm].stages)

    def at(self, arm: str, seed: int, stage: int, step: int, metric: str, context: str | None = None,
           domain: str | None = "all", split: str | None = "all", site: str | None = None) -> float:
        """A value, NaN if not measured; ``split=None`` matches any split (a per-domain row's own)."""
        if split is None:
            v = self.any_split.get((arm, seed, stage, step, metric, context, domain, site))
        else:
            v = self.values.get((arm, seed, stage, step, metric, context, domain, split, site))
        return float("nan") if v is None else v

    def end(self, arm: str, seed: int, stage: int, metric: str, **where: Any) -> float:
        """The value at the end of stage ``stage`` (negative: from the last stage): the mean over the
        stage's tail checkpoints (``checkpoints.tail``; the last checkpoint alone by default)."""
        stage = stage % self.n_stages(arm)
        last = self.last.get((arm, seed, stage))
        if last is None:
            return float("nan")
        measured = set(self.steps.get((arm, seed, stage), []))
        steps = [s for s in tail_steps(self.configs[arm].stages[stage]) if s in measured and s <= last] or [last]
        values = [v for v in (self.at(arm, seed, stage, s, metric, **where) for s in steps) if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def over(self, arm: str, seed: int, stages: range, metric: str, **where: Any) -> list[float]:
        """Every checkpoint's value in ``stages``, in order (NaNs dropped)."""
        out = []
        for stage in stages:
            for step in sorted(self.steps.get((arm, seed, stage), [])):
                v = self.at(arm, seed, stage, step, metric, **where)
                if not np.isnan(v):
                    out.append(v)
        return out

    def probe_site(self) -> str | None:
        return self.site_of("probe_auroc")

    def site_of(self, metric: str) -> str | None:
        """Where ``metric`` was read (the first site it has; looked up once per metric)."""
        if metric not in self._sites:
            self._sites[metric] = next((k[8] for k in self.values if k[4] == metric), None)
        return self._sites[metric]

    def grid(self, fn: Callable[[int, Any], list[float]], items: list[Any]) -> np.ndarray:
        """(seeds, items, quantities) from ``fn(seed, item) -> quantities``."""
        return np.array([[fn(seed, item) for item in items] for seed in self.seeds], dtype=np.float64)
