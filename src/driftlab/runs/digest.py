"""Content hashes (SHA-256) of what a run writes, recorded as it is written and checked before it is read.

Each kind of file carries its hash where no crash can separate the two:

- a safetensors file (weights, internals artifacts, the resume state) holds the hash of its tensors
  (names, dtypes, shapes and bytes, in name order) and of its other header metadata in its own
  header, under ``driftlab.sha256``;
- a checkpoint's JSON holds the hash of its other fields under ``sha256``;
- the metric rows up to a checkpoint are hashed into that checkpoint's resume state, so a resume
  checks exactly the rows it keeps (rows of a checkpoint the killed run never finished are dropped
  first, as they always were);
- a directory published whole (the tokenizer, a prefix-cache entry) holds ``sha256.json``: each
  file's hash, written before the directory is renamed into place.

SHA-256 rather than BLAKE2: with the CPU's SHA extensions it runs at ~1.5 GB/s here, twice
BLAKE2b's speed in Python's ``hashlib``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

TENSORS_KEY = "driftlab.sha256"  # a safetensors header's metadata key
MANIFEST = "sha256.json"  # a published directory's list of its files' hashes


def tensors_sha256(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """The hash of tensors and header metadata as safetensors stores them (independent of the file's
    layout; the metadata's own ``driftlab.sha256`` left out)."""
    h = hashlib.sha256(json.dumps({k: v for k, v in (metadata or {}).items() if k != TENSORS_KEY},
                                  sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu().reshape(-1)
        h.update(f"{name}\0{t.dtype}\0{tuple(tensors[name].shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy())  # the tensor's bytes, not a copy of them
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def json_sha256(obj: dict[str, Any]) -> str:
    """The hash of a JSON record's fields other than its own ``sha256``."""
    body = {k: v for k, v in obj.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def rows_sha256(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    """The hash of metric rows in their order, as Parquet returns them (floats exactly, NaN as NaN)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r.get(c) for c in columns]).encode())
        h.update(b"\n")
    return h.hexdigest()


def write_manifest(directory: Path) -> dict[str, str]:
    """Hash every file under ``directory`` into ``directory/sha256.json`` (relative POSIX paths)."""
    from driftlab.runs.atomic import write_json

    files = {p.relative_to(directory).as_posix(): file_sha256(p) for p in sorted(directory.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    write_json(directory / MANIFEST, files)
    return files


def check_manifest(directory: Path) -> list[str]:
    """What is wrong with a directory against its ``sha256.json``: one line per file, [] when sound."""
    listing = directory / MANIFEST
    try:
        files = json.loads(listing.read_text())
    except FileNotFoundError:
        return [f"{listing}: missing (the directory was never completed)"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"{listing}: unreadable: {e}"]
    problems = []
    for rel, digest in files.items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path}: content does not match its recorded SHA-256 (changed since it was written)")
    return problems
