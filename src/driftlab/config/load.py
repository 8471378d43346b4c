"""Reading a config: YAML file → an arm's overrides → ``quick:`` → ``--set`` → validation (pure:
see ``driftlab.config.resolve`` for the step with side effects), and the record a run writes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from driftlab.config.data import _SOURCES
from driftlab.config.experiment import ExperimentConfig
from driftlab.config.models import _model_shorthand
from driftlab.errors import ConfigError

PRESET_DIR = Path(__file__).parent.parent / "experiments" / "presets"


def resolve_source(name_or_path: str | None) -> Path:
    """A preset name (``default``) or a path to a YAML file."""
    if name_or_path is None:
        name_or_path = "reversion"
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"{name_or_path}: neither a config file nor a preset (presets: {known})")
    return preset


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


SetItem = str | tuple[str, str, Any]  # "key.path=value" (--set), or (origin, key, value) from a file (a sweep)


def set_item(item: SetItem) -> tuple[str, Any, str]:
    """(key, value, origin) of a ``--set`` string or of an (origin, key, value) override."""
    if isinstance(item, tuple):
        origin, key, value = item
        return key, copy.deepcopy(value), origin
    key, value = parse_set(item)
    return key, value, f"--set {item}"


def parse_set(item: str) -> tuple[str, Any]:
    """``a.b.0.c=value`` → (``a.b.0.c``, YAML-parsed value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_path(data: dict[str, Any], key: str, value: Any, origin: str) -> str:
    """Set a dotted key path inside nested dicts/lists (list items by index; -1 is the last item,
    as in Python: ``stages.-1.mitigations`` is the last stage's, however many stages there are).
    Returns the key with every index as it resolved (``stages.3.mitigations``), for error messages."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = int(part) if part.lstrip("-").isdigit() else None
            if index is None or not -len(node) <= index < len(node):
                raise ConfigError(f"{origin}: {key}: no list item {part!r} (length {len(node)})")
            parts[i] = str(index % len(node))
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{origin}: {key}: {'.'.join(parts[:i])} is not a mapping or a list")
    return ".".join(parts)


def load_config(
    source: str | None = None, sets: list[SetItem] | None = None, quick: bool = False,
    overrides: dict[str, Any] | None = None, arm: str | None = None,
) -> ExperimentConfig:
    """One run's config: the file, then (for an experiment with arms) ``arm``'s overrides, then the
    ``quick:`` block, ``overrides`` and ``--set`` items, each applied to every arm alike."""
    path = resolve_source(source)
    data = read_yaml(path)
    layers: list[tuple[str, dict[str, Any]]] = []
    arms = data.get("arms")
    if arm is not None:
        if not isinstance(arms, dict) or arm not in arms:
            raise ConfigError(f"{path}: arms: no arm {arm!r}")
        data = {k: v for k, v in data.items() if k != "arms"}
        data["arm"] = arm
        layers.append((f"{path}: arms.{arm}", arms[arm]))
    return build_config(data, str(path), layers, sets, quick, overrides)


def build_config(data: dict[str, Any], origin: str, layers: list[tuple[str, Any]], sets: list[SetItem] | None = None,
                 quick: bool = False, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """``data`` with each layer of dotted-key overrides (``(where, {key: value})``, e.g. an arm's) in
    turn, then its ``quick:`` block, ``overrides`` and ``--set`` items; validated, and an error names
    the layer that set the bad key."""
    origins: dict[str, str] = {}
    for where, items in layers:
        if not isinstance(items or {}, dict):
            raise ConfigError(f"{where}: expected a mapping of dotted keys to values")
        for key, value in (items or {}).items():
            origins[set_path(data, str(key), value, where)] = where
    if quick:
        for key, value in (data.get("quick") or {}).items():
            origins[set_path(data, key, value, f"{origin}: quick")] = f"{origin}: quick"
    for key, value in (overrides or {}).items():
        origins[set_path(data, key, value, "override")] = "override"
    for item in sets or []:
        key, value, where = set_item(item)
        origins[set_path(data, key, value, where)] = where
    real = data.get("real_model") or {}
    model = _model_shorthand(data.get("model"))
    if real and isinstance(model, dict) and model.get("kind") == "hf":
        if not isinstance(real, dict):
            raise ConfigError(f"{origin}: real_model: expected a mapping of dotted keys to values")
        arm_items = (real.get("arms") or {}).get(data.get("arm"), {}) or {}
        quick_items = (real.get("quick") or {}) if quick else {}
        for where, items in ((f"{origin}: real_model", {k: v for k, v in real.items() if k not in ("arms", "quick")}),
                             (f"{origin}: real_model.arms.{data.get('arm')}", arm_items),
                             (f"{origin}: real_model.quick", quick_items)):
            for key, value in items.items():
                origins[set_path(data, str(key), value, where)] = where
        for item in sets or []:  # the user's --set wins over the preset's real-model block
            key, value, where = set_item(item)
            origins[set_path(data, key, value, where)] = where
    _relative_to_file(data, Path(origin).parent if Path(origin).is_file() else None, origins)
    return validate_config(data, origin, origins)


def _relative_to_file(data: dict[str, Any], folder: Path | None, origins: dict[str, str]) -> None:
    """Data file paths the config file (or its arms, quick or real_model blocks) gives relative are
    read from the file's folder, so ``driftlab run some/dir/exp.yaml`` finds them from anywhere; a
    path from ``--set`` stays relative to the working directory, where the user typed it."""
    if folder is None:
        return

    def from_file(loc: str) -> bool:
        owners = [k for k in origins if loc == k or loc.startswith(k + ".")]
        return not owners or not origins[max(owners, key=len)].startswith(("--set", "override"))

    def fix(node: dict[str, Any], key: str, loc: str) -> None:
        value = node.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute() and from_file(loc):
            node[key] = str(folder / value)

    def walk(node: Any, loc: str) -> None:
        if isinstance(node, dict):
            if node.get("source") == "jsonl":
                fix(node, "path", f"{loc}.path")
            for k, v in node.items():
                walk(v, f"{loc}.{k}" if loc else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{loc}.{i}")

    walk(data.get("stages"), "stages")
    measure = data.get("measure")
    if isinstance(measure, dict):
        fix(measure, "eval_pack", "measure.eval_pack")
        for i, c in enumerate(measure.get("concepts") or []):
            if isinstance(c, dict):
                fix(c, "train", f"measure.concepts.{i}.train")
                fix(c, "eval", f"measure.concepts.{i}.eval")


def validate_config(data: dict[str, Any], origin: str, origins: dict[str, str] | None = None) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, origin, origins)) from None


def validation_message(e: ValidationError, origin: str, origins: dict[str, str] | None = None) -> str:
    """One line: where the bad value came from (the file, an arm, ``quick``, ``--set``), its key, why."""
    err = e.errors()[0]
    parts = [str(p) for p in err["loc"]]
    # drop the discriminated union's tag (stages.0.data.world.n_docs -> stages.0.data.n_docs)
    parts = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "data" and p in _SOURCES)
             and not (i == 1 and parts[0] == "model" and p in ("tiny_llama", "hf"))]
    loc = ".".join(parts)
    where = origin
    for key, o in (origins or {}).items():
        if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
            where = o
    msg = err["msg"].removeprefix("Value error, ")
    got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
    more = f" [+{e.error_count() - 1} more]" if e.error_count() > 1 else ""
    return f"{where}: {loc or '<top>'}: {msg}{got}{more}"


EXPERIMENT_KEYS = {"arms", "claim", "seeds", "self_probe"}  # belong to an experiment, not to any one of its runs


def run_record(cfg: ExperimentConfig) -> dict[str, Any]:
    """One run's resolved config as plain data: everything the run depends on, with its own ``arm``
    and ``seed``, without the experiment's keys (arms, claim, seeds: ``experiment.yaml`` holds them)."""
    return cfg.model_dump(mode="json", exclude=EXPERIMENT_KEYS)


def dump_config(cfg: ExperimentConfig) -> str:
    """A run's ``config.yaml``: ``driftlab run config.yaml`` runs that one arm again, same metrics."""
    return yaml.safe_dump(run_record(cfg), sort_keys=False)
