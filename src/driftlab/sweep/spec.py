"""A sweep file: a base experiment and axes over its config keys, expanded into points.

::

    name: lr-grid
    base: reversion               # a preset name or an experiment file (relative to this file)
    quick: true                   # the base's quick: block (as --quick); default false
    seeds: 3                      # seeds per point (default: the base's); seed: the first one
    arms: [capability, control]   # only these arms of the base (default: all; a subset has no verdict)
    set: {stages.0.steps: 400}    # overrides every point shares, by dotted key (like --set)
    mode: product                 # product (default): every combination; zip: the i-th value of each
    axes:
      stages.2.lr: [0.001, 0.003]           # a config key and its values
      size:                                 # a named axis of labelled override blocks (several keys
        small: {model.n_layers: 1}          # that change together: model size by layers and width)
        large: {model.n_layers: 2, model.d_model: 96}
      prior: {key: world.prior_share, values: [0.3, 0.5]}   # a named axis over one key
    resources: {cpus: 1, gpus: 0}           # what each run of a point asks the backend for

Every point is an ordinary experiment directory, ``<sweep>/<axis>=<label>/<axis>=<label>/...``,
holding its resolved ``experiment.yaml``: ``driftlab run <point>/experiment.yaml`` runs it alone,
``driftlab run --resume <point>`` continues it, and DuckDB reads the axis values from the folder
names (hive partitioning). The file is checked as strictly as a preset: an unknown top-level key,
an axis key the base's config does not have, a value of the wrong type in the file itself, unequal
zipped axes or a label that cannot be a folder name is a one-line error naming the file and key.
A point whose values make a config the base rejects (a value out of its key's range) is not: it is
reported as a failed point with that error, and the others run.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, StrictBool, StrictInt, ValidationError

from driftlab.config import Strict, read_yaml, validation_message
from driftlab.errors import ConfigError, DriftlabError
from driftlab.experiments.spec import Experiment, load_experiment, only_arms

LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")  # a label is a folder name and a hive partition value
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # an axis name is a folder-name key and a column name


class Resources(Strict):
    cpus: int | None = Field(None, ge=1, description="CPU cores per run (default: cores / --workers)")
    gpus: float = Field(0, ge=0, description="GPUs per run (Ray schedules it where one is free)")


class _KeyAxis(Strict):
    key: str = Field(description="the dotted config key the axis sets")
    values: list[Any] | dict[str, Any] = Field(min_length=1, description="the values, or label -> value")


class SweepFile(Strict):
    name: str | None = None
    description: str = ""
    base: str = Field(description="a preset name or an experiment file (relative to the sweep file)")
    quick: StrictBool = False
    seed: StrictInt | None = None
    seeds: StrictInt | None = Field(None, ge=1)
    arms: list[str] | None = Field(None, min_length=1)
    set: dict[str, Any] = {}
    mode: Literal["product", "zip"] = "product"
    axes: dict[str, list[Any] | dict[str, Any]] = Field(min_length=1)
    quick_axes: dict[str, list[Any] | dict[str, Any]] = Field(
        {}, description="with quick: these axes' values instead (the same names and labels, smaller values)")
    resources: Resources = Field(default_factory=Resources)
    report: dict[str, Any] = Field({}, description="what the sweep report plots (see sweep.report)")
    analysis: str | None = Field(None, description="a registered analysis of the whole grid (see sweep.analyses)")


@dataclass
class Axis:
    name: str
    labels: list[str]
    overrides: list[dict[str, Any]]  # per label: dotted key -> value


@dataclass
class Point:
    """One combination of axis values: an experiment, or the one-line error its config gave."""

    values: dict[str, str]  # axis name -> label
    overrides: dict[str, Any]
    experiment: Experiment | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return "/".join(f"{axis}={label}" for axis, label in self.values.items())


@dataclass
class Sweep:
    name: str
    description: str
    path: Path  # the sweep file
    text: str  # its text, as written to the sweep directory
    axes: list[Axis]
    points: list[Point]
    resources: Resources = field(default_factory=Resources)
    report: dict[str, Any] = field(default_factory=dict)
    analysis: str | None = None

    def point_dir(self, root: Path, point: Point) -> Path:
        return Path(root).joinpath(*(f"{a}={v}" for a, v in point.values.items()))


def _label(value: Any, where: str) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int | float | str):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        raise ConfigError(f"{where}: {value!r} has no label; give the axis labels (label: value)")
    if not LABEL.match(text):
        raise ConfigError(f"{where}: {text!r} cannot be a folder name (letters, digits, _ . + -); "
                          f"give the axis labels (label: value)")
    return text


def _axes(top: SweepFile, path: Path) -> list[Axis]:
    out = []
    for name, spec in top.axes.items():
        where = f"{path}: axes.{name}"
        if not NAME.match(name):
            raise ConfigError(f"{where}: an axis name is letters, digits, _ . - (it names folders and columns)")
        if isinstance(spec, list):  # key: [values]
            if not spec:
                raise ConfigError(f"{where}: no values")
            labels = [_label(v, f"{where}.{i}") for i, v in enumerate(spec)]
            overrides = [{name: v} for v in spec]
        elif set(spec) <= {"key", "values"} and "key" in spec:  # {key, values}
            try:
                ax = _KeyAxis.model_validate(spec)
            except ValidationError as e:
                raise ConfigError(validation_message(e, where)) from None
            items = ax.values.items() if isinstance(ax.values, dict) else \
                [(_label(v, f"{where}.values.{i}"), v) for i, v in enumerate(ax.values)]
            labels = [str(lab) for lab, _ in items]
            overrides = [{ax.key: v} for _, v in items]
        else:  # label: {key: value, ...}
            labels, overrides = [], []
            for label, block in spec.items():
                if not isinstance(block, dict) or not block:
                    raise ConfigError(f"{where}.{label}: expected a mapping of dotted config keys to values "
                                      f"(or give the axis as key: [values])")
                labels.append(str(label))
                overrides.append(dict(block))
        for label in labels:
            if not LABEL.match(label):
                raise ConfigError(f"{where}: label {label!r} cannot be a folder name (letters, digits, _ . + -)")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: two values have the same label {labels}")
        out.append(Axis(name, labels, overrides))
    if top.mode == "zip" and len({len(a.labels) for a in out}) > 1:
        raise ConfigError(f"{path}: mode: zip needs axes of one length (got "
                          f"{', '.join(f'{a.name}: {len(a.labels)}' for a in out)})")
    return out


def _known(data: Any, key: str) -> bool:
    """Whether a dotted key names something in a resolved config (every field is there, with its
    default): a typo in an axis is an error, not a silently ignored extra key."""
    node = data
    for part in key.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


PATH_KEYS = ("path", "eval_pack", "train", "eval")


def _paths_from(folder: Path, key: str, value: Any) -> Any:
    """A data file a sweep file names by a relative path is read from the sweep file's folder."""
    if key.rsplit(".", 1)[-1] in PATH_KEYS and isinstance(value, str) and value and not Path(value).is_absolute():
        return str((folder / value).resolve())
    if isinstance(value, dict):
        return {k: _paths_from(folder, k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_paths_from(folder, key, v) for v in value]
    return value


PRESETS = Path(__file__).parent / "presets"


def sweep_presets() -> list[Path]:
    return sorted(PRESETS.glob("*.yaml"))


def load_sweep(source: str | Path, quick: bool = False) -> Sweep:
    """A sweep file (or a sweep preset's name, or a sweep directory), checked, with every point's
    experiment resolved (or its error). ``quick`` applies the base's quick: block (``--quick``)."""
    path = Path(source)
    if path.is_dir():
        path = path / "sweep.yaml"
    elif not path.exists() and (PRESETS / f"{source}.yaml").is_file():
        path = PRESETS / f"{source}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sweep_presets())
        raise ConfigError(f"{path}: no such sweep file (sweep presets: {known})")
    raw = read_yaml(path)
    if quick:
        raw = {**raw, "quick": True}
    try:
        top = SweepFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(e, str(path))) from None
    base = top.base
    local = path.parent / base
    if local.suffix in (".yaml", ".yml") or local.is_dir():
        base = str(local / "experiment.yaml" if local.is_dir() else local)
    if top.quick and top.quick_axes:
        for name in top.quick_axes:
            if name not in top.axes:
                raise ConfigError(f"{path}: quick_axes.{name}: no axis {name!r} (axes: {', '.join(top.axes)})")
        top = top.model_copy(update={"axes": {**top.axes, **top.quick_axes}})
    axes = _axes(top, path)
    fixed = [(f"{path}: set", k, _paths_from(path.parent, k, v)) for k, v in top.set.items()]
    try:  # the base with the shared overrides: the keys every axis may set
        first = _experiment(base, fixed, top)
    except DriftlabError as e:
        raise ConfigError(f"{path}: base: {e}") from None
    record = [yaml.safe_load(yaml.safe_dump({"seeds": len(first.seeds), **cfg.model_dump(mode="json")}))
              for cfg in first.arms.values()]
    for axis in axes:
        for block in axis.overrides:
            for key in block:
                if not any(_known(r, key) for r in record):
                    raise ConfigError(f"{path}: axes.{axis.name}: {key} is not a key of {top.base}'s config "
                                      f"(a typo? `driftlab run {top.base}` resolves it; see experiment.yaml)")
    combos = zip(*(range(len(a.labels)) for a in axes)) if top.mode == "zip" else \
        itertools.product(*(range(len(a.labels)) for a in axes))
    points = []
    for combo in combos:
        values = {a.name: a.labels[i] for a, i in zip(axes, combo)}
        overrides: dict[str, Any] = {}
        items = list(fixed)
        for a, i in zip(axes, combo):
            for key, value in a.overrides[i].items():
                value = _paths_from(path.parent, key, value)
                overrides[key] = value
                items.append((f"{path}: axes.{a.name}={a.labels[i]}", key, value))
        point = Point(values, overrides)
        try:
            point.experiment = _experiment(base, items, top)
        except DriftlabError as e:
            point.error = str(e)
        points.append(point)
    name = top.name or path.stem
    if not NAME.match(name):
        raise ConfigError(f"{path}: name: {name!r} names the sweep's folder (letters, digits, _ . -)")
    if top.analysis is not None:
        from driftlab.sweep.analyses import ANALYSES

        if top.analysis not in ANALYSES:
            raise ConfigError(f"{path}: analysis: unknown analysis {top.analysis!r} (known: {', '.join(ANALYSES)})")
    return Sweep(name, " ".join(top.description.split()), path, _record(raw, name, base, path.parent), axes, points,
                 top.resources, top.report, top.analysis)


def _record(raw: dict[str, Any], name: str, base: str, folder: Path) -> str:
    """The sweep file as the sweep directory keeps it: with its name, and the base and every data
    file as an absolute path, so ``driftlab sweep <dir>`` runs it from anywhere."""
    out = {**raw, "name": name, "base": str(Path(base).resolve()) if Path(base).is_file() else base}
    out["set"] = {k: _paths_from(folder, k, v) for k, v in (raw.get("set") or {}).items()}
    if not out["set"]:
        out.pop("set")
    axes = {}
    for axis, spec in raw["axes"].items():
        if isinstance(spec, list):
            axes[axis] = [_paths_from(folder, axis, v) for v in spec]
        elif isinstance(spec, dict) and "key" in spec:
            values = spec.get("values")
            axes[axis] = {**spec, "values": {k: _paths_from(folder, spec["key"], v) for k, v in values.items()}
                          if isinstance(values, dict) else [_paths_from(folder, spec["key"], v) for v in values]}
        else:
            axes[axis] = {label: {k: _paths_from(folder, k, v) for k, v in block.items()}
                          for label, block in spec.items()}
    out["axes"] = axes
    return "# the sweep file as run (base and data files as absolute paths)\n" + yaml.safe_dump(out, sort_keys=False)


def _experiment(base: str, items: list, top: SweepFile) -> Experiment:
    exp = load_experiment(base, items, top.quick, top.seed, top.seeds)
    if top.arms is not None:
        unknown = [a for a in top.arms if a not in exp.arms]
        if unknown:
            raise ConfigError(f"arms: no arm {unknown[0]!r} in {top.base} (arms: {', '.join(exp.arms)})")
        exp = only_arms(exp, top.arms)
    return exp


__all__ = ["Axis", "Point", "Resources", "Sweep", "SweepFile", "load_sweep"]
