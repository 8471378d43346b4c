"""A run directory: resolved config, tokenizer, checkpoints, metrics, status, resume state.

    runs/<name>-<timestamp>/
      config.yaml          the fully resolved config
      tokenizer/           tokenizer.json (+ transformers files)
      checkpoints/<i>-<stage>/step-NNNNNNN.{safetensors,json}
      resume/              optimizer state at the last checkpoint
      metrics.parquet      long-format metrics
      status.json          state: running | complete | failed
      .lock                held by the process writing into the directory (``exclusive``)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from driftlab.errors import DataError
from driftlab.runs.atomic import read_json, write_json, write_text


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def create(cls, base: str | Path, name: str, out: str | Path | None = None) -> RunDir:
        if out is not None:
            root = Path(out)
            if (root / "status.json").exists():
                raise DataError(f"{root}: already holds a run (use --resume {root} to continue it)")
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            root = Path(base) / f"{name}-{stamp}"
            n = 1
            while root.exists():
                n += 1
                root = Path(base) / f"{name}-{stamp}-{n}"
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    # paths
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def resume_path(self) -> Path:
        return self.root / "resume" / "optimizer.safetensors"

    def stage_dir(self, index: int, name: str) -> Path:
        return self.root / "checkpoints" / f"{index}-{name}"

    # status
    def status(self) -> dict[str, Any]:
        return read_json(self.root / "status.json", DataError,
                         f"not found; {self.root} is not a driftlab run directory")

    def set_status(self, state: str, **extra: Any) -> None:
        write_json(self.root / "status.json", {"state": state, "updated": time.time(), **extra})

    def write_config(self, text: str) -> None:
        write_text(self.config_path, text)


def disk_usage(root: str | Path) -> int:
    """Bytes of the files under ``root``."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


@contextlib.contextmanager
def exclusive(root: str | Path) -> Iterator[None]:
    """Hold ``root/.lock`` while this process writes into ``root``: a second driftlab process on the
    same directory (a resume while the run is still alive) stops at once with a one-line error naming
    the owner (pid, host, since when) instead of interleaving its checkpoints and metrics with the
    first one's. The lock is the kernel's (``flock``), dropped when its holder exits however it exits
    (kill -9 included): a lock file a killed process left behind is stale and simply taken over."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    f = open(root / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise DataError(f"{root}: in use by another driftlab process ({_owner(holder)}); let it finish or "
                        f"stop it, then --resume") from None
    f.truncate(0)
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
    f.flush()
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _owner(text: str) -> str:
    try:
        owner = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["since"]))
        return f"pid {owner['pid']} on {owner['host']}, since {since}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return f"pid {text}" if text else "owner unknown"
