"""Atomic writes: write a temporary file next to the target, fsync, then rename over it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftlab.errors import DriftlabError, StorageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write(path: str | Path, write: Callable[[str], None], readonly: bool = False) -> None:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` to ``path``; nothing half-written remains.
    ``readonly``: a write-once file, mode 0444 (it is only ever replaced by a rename). A full disk
    is a ``StorageError`` naming the file: what was written before stays as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _storage_error(path, e) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, (0o444 if readonly else 0o666) & ~UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _storage_error(path, e) from None
        raise


def _storage_error(path: Path, e: OSError) -> Exception:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return e
    try:
        free = f"{shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free / 1e9:.2f} GB free"
    except OSError:
        free = "free space unknown"
    return StorageError(f"{path}: could not be written: {os.strerror(e.errno)} ({free}); nothing was marked "
                        f"complete, so free some space and resume")


def write_text(path: str | Path, text: str, readonly: bool = False) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), readonly)


def write_json(path: str | Path, obj: Any, readonly: bool = False) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", readonly)


def read_json(path: str | Path, error: type[DriftlabError], missing: str) -> Any:
    """Parse a JSON file; a missing or invalid file raises ``error`` naming the file (and line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text (corrupt?)") from None
