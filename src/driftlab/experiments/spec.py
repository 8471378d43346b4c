"""An experiment: one config file expanded into arms × seeds, each a plain run config.

A preset (or a user's YAML) is a run config plus three optional keys::

    seeds: 3                       # seed, seed+1, seed+2 for every arm
    arms:                          # arm -> overrides by dotted key, like --set
      capability: {}
      control: {stages.2: {name: more_align, kind: sft, data: {source: alignment}, ...}}
    claim: {id: reversion, rule: {min_drift: 0.25, ...}}   # the pre-registered verdict rule

Each arm's config is the file with that arm's overrides, then the ``quick:`` block and ``--set``
items (which apply to every arm alike), validated on its own, so an error names the arm's key.
A file without ``arms`` is one arm, ``main``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftlab.config import ClaimSpec, ExperimentConfig, load_config, read_yaml, resolve_source
from driftlab.errors import ConfigError


@dataclass
class Experiment:
    name: str
    description: str
    claim: ClaimSpec | None
    seeds: list[int]
    arms: dict[str, ExperimentConfig]  # with the first seed; runs() gives every seed

    def runs(self) -> list[tuple[str, int, ExperimentConfig]]:
        """(arm, seed, config) for every run, seed-major: the arms of seed 0 first, so arms that
        share a prefix run back to back and the verdict has every arm of a seed early."""
        return [(arm, seed, cfg.model_copy(update={"seed": seed}))
                for seed in self.seeds for arm, cfg in self.arms.items()]

    def dump(self) -> str:
        """The resolved experiment, as written to ``experiment.yaml`` in its directory."""
        return yaml.safe_dump({
            "name": self.name, "description": self.description, "seeds": self.seeds,
            "claim": self.claim.model_dump(mode="json") if self.claim else None,
            "arms": {arm: cfg.model_dump(mode="json") for arm, cfg in self.arms.items()},
        }, sort_keys=False)


def load_experiment(source: str | None = None, sets: list[str] | None = None, quick: bool = False,
                    seed: int | None = None, seeds: int | None = None) -> Experiment:
    """Expand a preset name or YAML file into its arms; ``seeds`` (``--seeds``) overrides the file."""
    path = resolve_source(source)
    raw = read_yaml(path)
    overrides: dict[str, Any] = {"seed": seed} if seed is not None else {}
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds {seeds}: need at least one seed")
        overrides["seeds"] = seeds
    arm_names = list(raw.get("arms") or {}) if isinstance(raw.get("arms"), dict) else None
    if raw.get("arms") is not None and not arm_names:
        raise ConfigError(f"{path}: arms: expected a mapping of arm names to overrides")
    if arm_names:
        arms = {a: load_config(str(path), sets, quick, overrides, arm=a) for a in arm_names}
    else:
        arms = {"main": load_config(str(path), sets, quick, overrides)}
    first = next(iter(arms.values()))
    names = {cfg.name for cfg in arms.values()}
    if len(names) > 1:
        raise ConfigError(f"{path}: arms: an arm may not rename the experiment (got {sorted(names)})")
    if first.claim is not None:
        from driftlab.experiments.claims import registered

        CLAIMS = registered()
        if first.claim.id not in CLAIMS:
            raise ConfigError(f"{path}: claim.id: unknown claim {first.claim.id!r} "
                              f"(known: {', '.join(sorted(CLAIMS))})")
        CLAIMS.get(first.claim.id).check_rule(first.claim, list(arms), str(path))
    return Experiment(first.name, first.description, first.claim,
                      [first.seed + i for i in range(first.seeds)], arms)


def load_experiment_dir(root: Path) -> Experiment:
    """The experiment an experiment directory was started with (for --resume and the report)."""
    path = root / "experiment.yaml"
    data = read_yaml(path)
    from driftlab.config import validate_config

    try:
        arms = {arm: validate_config(cfg, f"{path}: arms.{arm}") for arm, cfg in data["arms"].items()}
        claim = ClaimSpec.model_validate(data["claim"]) if data.get("claim") else None
        return Experiment(data["name"], data.get("description", ""), claim, [int(s) for s in data["seeds"]], arms)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: not a driftlab experiment file ({e})") from None


def is_experiment_dir(root: Path) -> bool:
    return (Path(root) / "experiment.yaml").is_file()


def preset_paths() -> list[Path]:
    from driftlab.config import PRESET_DIR

    return sorted(PRESET_DIR.glob("*.yaml"))


def describe_preset(path: Path) -> dict[str, Any]:
    raw = read_yaml(path)
    claim = raw.get("claim") or {}
    return {"name": path.stem, "claim": claim.get("id"), "arms": list(raw.get("arms") or {"main": None}),
            "seeds": raw.get("seeds", 1), "description": " ".join(str(raw.get("description", "")).split())}


__all__ = ["Experiment", "describe_preset", "is_experiment_dir", "load_experiment", "load_experiment_dir",
           "preset_paths", "resolve_source"]
