"""A researcher's own claims, measurements and mitigations, in their own Python files.

An experiment file names them (``plugins: [my_claims.py]``, relative to the file); each is imported
before the file is checked, so its names are checked like the built-in ones:

    # my_claims.py
    from driftlab.experiments.claims import Findings, claim
    from driftlab.measure import measurement

    @measurement("my_metric")                     # registered on import, like the built-in ones; it
    def my_metric(c): ...                         # runs where an experiment lists it in measure.extra

    @claim("my-claim", "What it claims.", arm=("arm", "the arm it reads"), cut=("number", "..."))
    def my_claim(m, r) -> Findings: ...            # registered by the loader (``claims.register``)

A file is imported once per process (by path and content hash); a file that is missing, does not
import, or declares a name that is taken is a one-line error naming it. Its path and hash are
recorded in the run's config and in ``verdict.json``, and the hash is part of the rule's hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from driftlab.errors import ConfigError
from driftlab.experiments.claims.registry import Claim, register
from driftlab.measure.suite import MEASUREMENTS, PLUGIN_MEASUREMENTS

_LOADED: dict[str, str] = {}  # resolved path -> sha256 of what was imported


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve_plugins(names: list[str] | None, origin: Path) -> list[str]:
    """The plugin files named in ``origin`` as absolute paths (relative names from its folder)."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{origin}: plugins: expected a list of Python file names (got {names!r})")
    out = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else (origin.parent / name)
        if path.suffix != ".py" or not path.is_file():
            raise ConfigError(f"{origin}: plugins: {name}: no such Python file ({path})")
        out.append(str(path.resolve()))
    return out


def load_plugins(paths: list[str]) -> list[dict[str, str]]:
    """Import each plugin file (once per process) and register the claims it declares; returns each
    file's path and hash."""
    records = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"plugins: {p}: no such file (it was there when the experiment started)")
        digest = file_hash(p)
        if _LOADED.get(str(p)) == digest:
            records.append({"path": str(p), "sha256": digest})
            continue
        if str(p) in _LOADED:
            raise ConfigError(f"{p}: changed since this process imported it; start a new process")
        _import(p, digest)
        _LOADED[str(p)] = digest
        records.append({"path": str(p), "sha256": digest})
    return records


def _import(p: Path, digest: str) -> None:
    name = f"driftlab_plugin_{p.stem}_{digest[:12]}"
    before = set(MEASUREMENTS)
    spec = importlib.util.spec_from_file_location(name, p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"{p}:{e.lineno}: the plugin does not parse: {e.msg}") from None
    except ConfigError:
        raise
    except Exception as e:  # the plugin's own code failed on import
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == p]
        line = frames[-1].lineno if frames else "?"
        raise ConfigError(f"{p}:{line}: the plugin failed to import: {type(e).__name__}: {e}") from None
    sys.modules[name] = module
    PLUGIN_MEASUREMENTS.update(set(MEASUREMENTS) - before)
    from driftlab.experiments.claims.verdict import registered

    registered()  # the shipped claims first: a plugin's name that takes one of theirs is the plugin's error
    for value in list(vars(module).values()):
        if callable(value) and isinstance(getattr(value, "claim", None), Claim):
            register(value, str(p))
