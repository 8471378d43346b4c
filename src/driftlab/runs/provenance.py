"""Where a run came from: driftlab's version and git commit, the machine, the libraries, and the
hash of the code that decides a checkpoint's bytes (checked before a run resumes or reuses one)."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import driftlab


def git_commit() -> str:
    """The commit driftlab's source is at (with ``+dirty`` for uncommitted changes), if in a checkout."""
    here = Path(driftlab.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def provenance() -> dict[str, str | int]:
    return {
        "driftlab": driftlab.__version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "code_hash": code_hash(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["driftlab", *sys.argv[1:]]) if sys.argv and "driftlab" in sys.argv[0] else "",
    }


# the sources that decide a checkpoint's bytes and its metric rows (not verdicts, reports, the CLI)
TRAINING_CODE = ("config", "registry.py", "tensors.py", "world", "models", "train", "measure", "runs",
                 "experiments/runner.py", "experiments/stage_data.py")


@functools.cache
def code_hash() -> str:
    """The training and measurement sources and torch's version: what else decides a prefix's files."""
    h = hashlib.sha256(torch.__version__.encode())
    root = Path(driftlab.__file__).resolve().parent
    paths = [p for name in TRAINING_CODE for p in ([root / name] if name.endswith(".py")
                                                   else sorted((root / name).rglob("*.py")))]
    for path in paths:
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]
