"""An experiment: one config file expanded into arms × seeds, each a plain run config.

A preset (or a user's YAML) is a run config plus three optional keys::

    seeds: 3                       # seed, seed+1, seed+2 for every arm
    arms:                          # arm -> overrides by dotted key, like --set
      capability: {}
      control: {stages.2: {name: more_align, kind: sft, data: {source: alignment}, ...}}
    claim: {id: reversion, rule: {min_drift: 0.25, ...}}   # the pre-registered verdict rule

Each arm's config is the file with that arm's overrides, then the ``quick:`` block and ``--set``
items (which apply to every arm alike), validated on its own, so an error names the arm's key.
The file is also validated as written, before any override, so a wrong value is an error even
where ``--quick`` or ``--seeds`` would replace it.
A file without ``arms`` is one arm, named by its ``arm`` key (``main`` unless it is a run's
``config.yaml``, which runs that arm again). An experiment directory's ``experiment.yaml`` (the
claim and seed list at the top, each arm a whole run config) runs again as recorded.

A file with ``scenarios`` runs its arms on each of several scenarios, each an arm of another
preset (its world, model, stages and ``quick:`` block), optionally changed::

    scenarios:
      reversion: {preset: reversion, arm: capability}
      trojan: {preset: reversion, arm: capability, set: {stages.2.data: {...}},
               arms: {replay: {stages.-1.mitigations.0.data.triggered_share: 0.5}}}  # this scenario only
    arms:                          # applied to every scenario: run as <scenario>.<arm>
      none: {}
      kl_to_reference: {stages.-1.mitigations: [{kind: kl_to_reference, weight: 1.0}]}

The claim's rule names the arms without their scenario, and the claim judges each scenario.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, StrictInt, ValidationError

from driftlab.config import (
    ClaimSpec,
    ExperimentConfig,
    SelfProbeSpec,
    SetItem,
    Strict,
    build_config,
    load_config,
    read_yaml,
    resolve,
    resolve_source,
    run_record,
    set_item,
    set_path,
    validate_config,
    validation_message,
)
from driftlab.errors import ConfigError
from driftlab.experiments.plugins import load_plugins, resolve_plugins


@dataclass
class Experiment:
    name: str
    description: str
    claim: ClaimSpec | None
    seeds: list[int]
    arms: dict[str, ExperimentConfig]  # with the first seed; runs() gives every seed
    self_probe: SelfProbeSpec | None = None  # the assistant's own persona, fitted across two arms
    scenarios: list[str] | None = None  # arms are <scenario>.<arm> for each (see the module docstring)

    def runs(self) -> list[tuple[str, int, ExperimentConfig]]:
        """(arm, seed, config) for every run, seed-major: the arms of seed 0 first, so arms that
        share a prefix run back to back and the verdict has every arm of a seed early."""
        return [(arm, seed, cfg.model_copy(update={"seed": seed}))
                for seed in self.seeds for arm, cfg in self.arms.items()]

    def dump(self) -> str:
        """The resolved experiment, as written to ``experiment.yaml`` in its directory: the claim and
        the seeds once, at the top, and each arm's full run config (``run_record``) under ``arms``.
        ``driftlab run experiment.yaml`` runs it again (``load_experiment`` recognises the form)."""
        return yaml.safe_dump({
            "name": self.name, "description": self.description, "seeds": self.seeds,
            "claim": self.claim.model_dump(mode="json") if self.claim else None,
            **({"self_probe": self.self_probe.model_dump(mode="json")} if self.self_probe else {}),
            **({"scenarios": self.scenarios} if self.scenarios else {}),
            "arms": {arm: run_record(cfg) for arm, cfg in self.arms.items()},
        }, sort_keys=False)


class _Resolved(Strict):
    """The top level of a resolved ``experiment.yaml`` (each arm is checked as a run config)."""

    name: str
    description: str = ""
    seeds: list[StrictInt] = Field(min_length=1)
    claim: ClaimSpec | None = None
    self_probe: SelfProbeSpec | None = None
    scenarios: list[str] | None = None
    arms: dict[str, dict[str, Any]] = Field(min_length=1)


class ScenarioSpec(Strict):
    """One scenario of a file with ``scenarios``: an arm of a preset (or of a config file), changed."""

    preset: str = Field(description="a preset name or a config file (relative to this file)")
    arm: str | None = Field(None, description="the preset's arm (default: the file as it is, without arms)")
    set: dict[str, Any] = Field({}, description="dotted-key overrides applied to the scenario before each arm's")
    arms: dict[str, dict[str, Any]] = Field({}, description="arm -> overrides of that arm in this scenario only, "
                                                           "after the arm's own (e.g. what its positive control needs)")


class _ScenarioFile(Strict):
    """The top level of a file with ``scenarios`` (its runs come from the scenarios' presets)."""

    name: str
    description: str = ""
    seed: StrictInt = 0
    seeds: StrictInt = Field(1, ge=1)
    claim: ClaimSpec | None = None
    scenarios: dict[str, ScenarioSpec] = Field(min_length=1)
    arms: dict[str, dict[str, Any] | None] = Field(min_length=1)
    quick: dict[str, Any] = {}


RUN_KEYS = {"name", "seed", "world", "model", "stages", "measure"}  # what every resolved run config holds


def is_resolved(raw: dict[str, Any]) -> bool:
    """An ``experiment.yaml`` as driftlab writes it: every arm is a whole run config, not overrides."""
    arms = raw.get("arms")
    return isinstance(arms, dict) and bool(arms) and all(isinstance(a, dict) and RUN_KEYS <= set(a)
                                                         for a in arms.values())


def load_experiment(source: str | None = None, sets: list[SetItem] | None = None, quick: bool = False,
                    seed: int | None = None, seeds: int | None = None) -> Experiment:
    """Expand a preset name or YAML file into its arms; ``seeds`` (``--seeds``) overrides the file.

    The file is validated as written before ``--quick``, ``--seed``, ``--seeds`` and ``--set`` apply,
    and again after, so a wrong key is an error even where an override would have replaced it.
    A resolved ``experiment.yaml`` (an experiment directory's record) runs as it was recorded."""
    path = resolve_source(source)
    raw = read_yaml(path)
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least one seed")
    if is_resolved(raw):
        return _load_resolved(path, raw, sets or [], quick, seed, seeds)
    overrides: dict[str, Any] = {"seed": seed} if seed is not None else {}
    if seeds is not None:
        overrides["seeds"] = seeds
    if raw.get("plugins") is not None:  # imported before anything is checked; recorded as absolute paths
        overrides["plugins"] = resolve_plugins(raw.get("plugins"), path)
        load_plugins(overrides["plugins"])
    if "scenarios" in raw:
        return _load_scenarios(path, raw, sets or [], quick, overrides)
    arms_raw = raw.get("arms")
    if arms_raw is not None and not isinstance(arms_raw, dict):
        raise ConfigError(f"{path}: arms: expected a mapping of arm names to overrides (got {arms_raw!r})")
    arm_names = list(arms_raw or {})
    for arm in arm_names or [None]:  # the file as written, before anything overrides it
        load_config(str(path), arm=arm)
    if arm_names:
        arms = {a: load_config(str(path), sets, quick, overrides, arm=a) for a in arm_names}
    else:  # one arm, named by the file's own ``arm`` (a run's config.yaml) or ``main``
        cfg = load_config(str(path), sets, quick, overrides)
        arms = {cfg.arm: cfg}
    first = next(iter(arms.values()))
    names = {cfg.name for cfg in arms.values()}
    if len(names) > 1:
        raise ConfigError(f"{path}: arms: an arm may not rename the experiment (got {sorted(names)})")
    _check_claim(first.claim, list(arms), str(path), first.self_probe)
    _check_self_probe(first.self_probe, arms, str(path))
    _check_extra(arms, str(path))
    arms = resolve_arms(arms, str(path))
    return Experiment(first.name, first.description, first.claim,
                      [first.seed + i for i in range(first.seeds)], arms, first.self_probe)


def resolve_arms(arms: dict[str, ExperimentConfig], origin: str) -> dict[str, ExperimentConfig]:
    """Every arm resolved (``driftlab.config.resolve``: data files pinned, precision, the model
    located), the step after validation that an experiment takes once before anything runs."""
    return {arm: resolve(cfg, origin) for arm, cfg in arms.items()}


def _check_extra(arms: dict[str, ExperimentConfig], origin: str) -> None:
    """Every name in ``measure.extra`` is a registered measurement (a plugin's, imported above)."""
    from driftlab.measure.suite import MEASUREMENTS

    for arm, cfg in arms.items():
        for name in cfg.measure.extra:
            if name not in MEASUREMENTS:
                raise ConfigError(f"{origin}: measure.extra: unknown measurement {name!r} in arm {arm} (a file in "
                                  f"`plugins` must register it; known: {', '.join(sorted(MEASUREMENTS))})")


def _load_scenarios(path: Path, raw: dict[str, Any], sets: list[SetItem], quick: bool,
                    overrides: dict[str, Any]) -> Experiment:
    """Every arm on every scenario: the scenario's preset and arm, its ``set``, then the arm's
    overrides, then the ``quick:`` blocks (the preset's, then this file's), ``--seed(s)`` and
    ``--set``; each validated as written and again after the overrides."""
    try:
        top = _ScenarioFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, str(path))) from None
    for name in top.scenarios:
        if "." in name:
            raise ConfigError(f"{path}: scenarios.{name}: a scenario's name may not contain '.'")
    arms: dict[str, ExperimentConfig] = {}
    for name, spec in top.scenarios.items():
        where = f"{path}: scenarios.{name}"
        local = path.parent / spec.preset
        try:
            source = resolve_source(str(local) if local.suffix in (".yaml", ".yml") and local.is_file() else spec.preset)
            base = read_yaml(source)
        except ConfigError as e:
            raise ConfigError(f"{where}.preset: {e}") from None
        if "scenarios" in base:
            raise ConfigError(f"{where}.preset: {source} has scenarios of its own (a scenario is one preset's arm)")
        layers: list[tuple[str, Any]] = []
        if spec.arm is not None:
            if spec.arm not in (base.get("arms") or {}):
                raise ConfigError(f"{where}.arm: no arm {spec.arm!r} in {source} "
                                  f"(arms: {', '.join(base.get('arms') or {}) or 'none'})")
            layers.append((f"{source}: arms.{spec.arm}", base["arms"][spec.arm]))
        data = {k: v for k, v in base.items() if k not in ("arms", "claim", "seeds", "seed", "self_probe", "quick")}
        preset_quick = {k: v for k, v in (base.get("quick") or {}).items() if k != "seeds"}
        data.update(name=top.name, description=top.description, seed=top.seed, seeds=top.seeds,
                    claim=top.claim.model_dump(mode="json") if top.claim else None,
                    quick={**preset_quick, **top.quick})
        layers.append((f"{where}.set", spec.set))
        for arm in spec.arms:
            if arm not in top.arms:
                raise ConfigError(f"{where}.arms.{arm}: no arm {arm!r} (arms: {', '.join(top.arms)})")
        for arm, items in top.arms.items():
            full = f"{name}.{arm}"
            arm_layers = [*layers, (f"{path}: arms.{arm}", items or {}),
                          (f"{where}.arms.{arm}", spec.arms.get(arm, {}))]
            build_config({**copy.deepcopy(data), "arm": full}, where, copy.deepcopy(arm_layers))  # as written
            arms[full] = build_config({**copy.deepcopy(data), "arm": full}, where, copy.deepcopy(arm_layers),
                                      sets, quick, overrides)
    first = next(iter(arms.values()))
    scenarios = list(top.scenarios)
    _check_claim(first.claim, list(top.arms), str(path), None, scenarios)
    return Experiment(first.name, first.description, first.claim,
                      [first.seed + i for i in range(first.seeds)], resolve_arms(arms, str(path)), None, scenarios)


def base_arms(arms: list[str], scenarios: list[str] | None, origin: str) -> list[str]:
    """The arm names a claim's rule uses: without their scenario, once each (every scenario runs
    every arm)."""
    if not scenarios:
        return arms
    out: list[str] = []
    for full in arms:
        scenario, _, arm = full.partition(".")
        if scenario not in scenarios or not arm:
            raise ConfigError(f"{origin}: arms.{full}: not <scenario>.<arm> for a scenario of "
                              f"{', '.join(scenarios)}")
        if arm not in out:
            out.append(arm)
    missing = [f"{s}.{a}" for s in scenarios for a in out if f"{s}.{a}" not in arms]
    if missing:
        raise ConfigError(f"{origin}: arms: {missing[0]} is missing (every scenario runs every arm)")
    return out


def only_scenarios(exp: Experiment, names: list[str]) -> Experiment:
    """The experiment on ``names`` (``--scenarios``) only, in the file's order. The claim judges each
    scenario on its own, so it stays: the verdict is then about the scenarios that ran."""
    if not exp.scenarios:
        raise ConfigError("--scenarios: this experiment has no scenarios")
    unknown = [n for n in names if n not in exp.scenarios]
    if unknown or not names:
        raise ConfigError(f"--scenarios: no scenario {unknown[0] if unknown else ''!r} "
                          f"(scenarios: {', '.join(exp.scenarios)})")
    keep = [s for s in exp.scenarios if s in names]
    arms = {a: cfg for a, cfg in exp.arms.items() if a.partition(".")[0] in keep}
    return Experiment(exp.name, exp.description, exp.claim, exp.seeds, arms, exp.self_probe, keep)


def only_arms(exp: Experiment, names: list[str]) -> Experiment:
    """The experiment with only ``names`` (``--arms``), in the file's order. A verdict needs every
    arm its claim compares, so the subset has no claim: it is for looking at arms, not judging."""
    unknown = [n for n in names if n not in exp.arms]
    if unknown:
        raise ConfigError(f"--arms: no arm {unknown[0]!r} (arms: {', '.join(exp.arms)})")
    arms = {a: cfg for a, cfg in exp.arms.items() if a in names}
    probe = exp.self_probe if exp.self_probe and {exp.self_probe.good, exp.self_probe.bad} <= set(arms) else None
    keep = exp.claim if set(arms) == set(exp.arms) else None
    return Experiment(exp.name, exp.description, keep, exp.seeds, arms, probe, exp.scenarios if keep else None)


def check_measurable(exp: Experiment) -> None:
    """An experiment on a pre-trained model judges only claims its English measurements can: one
    that reads Persona World's own rows (capability, RL, world priors) is refused before anything
    trains, not judged on missing numbers. ``--arms`` still runs its arms, without a verdict."""
    if exp.claim is None or not any(cfg.real for cfg in exp.arms.values()):
        return
    from driftlab.experiments.claims import registered

    claims = registered()
    needs = claims.get(exp.claim.id).world_only
    if needs:
        runnable = ", ".join(sorted(c for c in claims if not claims.get(c).world_only))
        raise ConfigError(f"claim {exp.claim.id}: reads {needs}, which a pre-trained model is not measured on yet "
                          f"(claims that run on one: {runnable}; --arms runs the arms without a verdict)")


def _check_claim(claim: ClaimSpec | None, arms: list[str], origin: str, self_probe: SelfProbeSpec | None = None,
                 scenarios: list[str] | None = None) -> None:
    if claim is None:
        return
    from driftlab.experiments.claims import registered

    CLAIMS = registered()
    if claim.id not in CLAIMS:
        raise ConfigError(f"{origin}: claim.id: unknown claim {claim.id!r} (known: {', '.join(sorted(CLAIMS))})")
    judged = CLAIMS.get(claim.id).scenarios
    for name in scenarios or []:
        if name not in judged:
            raise ConfigError(f"{origin}: scenarios.{name}: claim {claim.id!r} judges "
                              + (f"the scenarios {', '.join(judged)}" if judged else "no scenarios"))
    CLAIMS.get(claim.id).check_rule(claim, arms, origin)
    if CLAIMS.get(claim.id).self_probe and self_probe is None:
        raise ConfigError(f"{origin}: self_probe: missing (claim {claim.id!r} reads a probe of the assistant's own "
                          f"persona: self_probe: {{good: ARM, bad: ARM, stage: STAGE}})")


def _check_self_probe(spec: SelfProbeSpec | None, arms: dict[str, ExperimentConfig], origin: str) -> None:
    """The probe's two arms exist, differ, and share the world, the model and every stage before its
    stage (so the two models it is fitted on grew from the same base)."""
    if spec is None:
        return
    for key in ("good", "bad"):
        if getattr(spec, key) not in arms:
            raise ConfigError(f"{origin}: self_probe.{key}: no arm {getattr(spec, key)!r} (arms: {', '.join(arms)})")
    if spec.good == spec.bad:
        raise ConfigError(f"{origin}: self_probe: good and bad are the same arm {spec.good!r}")
    good, bad = arms[spec.good], arms[spec.bad]
    for cfg in (good, bad):
        if cfg.keeps_weights() != "all":
            raise ConfigError(f"{origin}: self_probe: reads the weights of every checkpoint of arm {cfg.arm!r}, "
                              f"whose retention.weights keeps only {cfg.keeps_weights()}; set retention.weights: all")
    names = [s.name for s in good.stages]
    if spec.stage not in names or spec.stage not in [s.name for s in bad.stages]:
        raise ConfigError(f"{origin}: self_probe.stage: {spec.stage!r} is not a stage of both arms (stages: {names})")
    k = names.index(spec.stage)
    shared = ("world", "model")
    if any(getattr(good, f) != getattr(bad, f) for f in shared) or good.stages[:k] != bad.stages[:k]:
        raise ConfigError(f"{origin}: self_probe: arms {spec.good!r} and {spec.bad!r} must share the world, the "
                          f"model and every stage before {spec.stage!r} (the probe compares one base's two "
                          f"descendants)")


def _load_resolved(path: Path, raw: dict[str, Any], sets: list[SetItem], quick: bool, seed: int | None,
                   seeds: int | None) -> Experiment:
    """A resolved experiment file: the top level strictly, each arm as a whole run config (before
    and after ``--quick`` and ``--set``), the claim against the arms; then the seed overrides."""
    try:
        top = _Resolved.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, str(path))) from None
    arms, quick_seeds = {}, None
    for data in top.arms.values():  # a plugin recorded with the run: imported before its arm is checked
        load_plugins([str(p) for p in data.get("plugins") or []])
    for arm, data in top.arms.items():
        origin = f"{path}: arms.{arm}"
        if data.get("arm", arm) != arm:
            raise ConfigError(f"{origin}.arm: {data['arm']!r} is not the arm's name {arm!r}")
        validate_config({**data, "arm": arm}, origin)  # as written
        data, origins = {**_legacy_arm(data, top, origin), "arm": arm}, {}
        if quick:
            for key, value in (data.get("quick") or {}).items():
                if key == "seeds":  # the experiment's seed list is at the top level
                    quick_seeds = value
                    continue
                set_path(data, key, value, f"{origin}.quick")
                origins[key] = f"{origin}.quick"
        for item in sets:
            key, value, where = set_item(item)
            set_path(data, key, value, where)
            origins[key] = where
        arms[arm] = validate_config(data, origin, origins)
    _check_claim(top.claim, base_arms(list(arms), top.scenarios, str(path)), str(path), top.self_probe,
                 top.scenarios)
    _check_self_probe(top.self_probe, arms, str(path))
    _check_extra(arms, str(path))
    count = seeds if seeds is not None else quick_seeds if quick_seeds is not None else len(top.seeds)
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"{path}: quick.seeds: expected a positive integer (got {count!r})")
    first = seed if seed is not None else top.seeds[0]
    seed_list = [first + i for i in range(count)] if (seed is not None or count != len(top.seeds)) else top.seeds
    arms = resolve_arms({a: cfg.model_copy(update={"seed": seed_list[0]}) for a, cfg in arms.items()}, str(path))
    return Experiment(top.name, top.description, top.claim, seed_list, arms, top.self_probe, top.scenarios)


def _legacy_arm(data: dict[str, Any], top: _Resolved, origin: str) -> dict[str, Any]:
    """An arm without the experiment's keys. Arms written by driftlab < 0.7 repeat them; the top
    level is the record, so a repeated value that differs from it (and would be ignored) is an error."""
    data = dict(data)
    mine = data.pop("claim", None)
    if mine is not None and mine != (top.claim.model_dump(mode="json") if top.claim else None):
        raise ConfigError(f"{origin}.claim: differs from the experiment's claim at the top level "
                          f"(an experiment has one claim; edit it there)")
    if data.pop("arms", None):
        raise ConfigError(f"{origin}.arms: an arm of a recorded experiment has no arms of its own")
    data.pop("seeds", None)  # a count; the seed list at the top decides
    if data.get("seed", top.seeds[0]) != top.seeds[0]:
        raise ConfigError(f"{origin}.seed: {data['seed']!r} is not the experiment's first seed "
                          f"{top.seeds[0]} (the seed list at the top decides; edit it there)")
    return data


def sequential(exp: Experiment) -> Experiment:
    """The experiment with the seeds of its claim's last look (``--seeds auto``): it runs them look
    by look (``study.plan_looks``)."""
    if exp.claim is None:
        raise ConfigError(f"{exp.name}: --seeds auto needs a claim (its verdict decides when the seeds stop)")
    first = exp.seeds[0]
    return replace(exp, seeds=[first + i for i in range(exp.claim.design.looks[-1])])


def load_experiment_dir(root: Path) -> Experiment:
    """The experiment an experiment directory was started with (for --resume and the report)."""
    path = Path(root) / "experiment.yaml"
    raw = read_yaml(path)
    if not is_resolved(raw):
        raise ConfigError(f"{path}: not a driftlab experiment file (arms must each hold a whole run config)")
    return _load_resolved(path, raw, [], False, None, None)


def is_experiment_dir(root: Path) -> bool:
    return (Path(root) / "experiment.yaml").is_file()


def preset_paths() -> list[Path]:
    from driftlab.config import PRESET_DIR

    return sorted(PRESET_DIR.glob("*.yaml"))


def describe_preset(path: Path) -> dict[str, Any]:
    raw = read_yaml(path)
    claim = raw.get("claim") or {}
    scenarios = list(raw.get("scenarios") or {})
    arms = list(raw.get("arms") or {"main": None})
    return {"name": path.stem, "claim": claim.get("id"), "scenarios": scenarios, "arms": arms,
            "seeds": raw.get("seeds", 1), "description": " ".join(str(raw.get("description", "")).split())}


__all__ = ["Experiment", "describe_preset", "is_experiment_dir", "load_experiment", "load_experiment_dir",
           "only_arms", "only_scenarios", "check_measurable",
           "preset_paths", "resolve_source"]
