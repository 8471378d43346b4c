"""Where a run came from: driftlab's version and git commit, the machine, the libraries."""

from __future__ import annotations

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
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["driftlab", *sys.argv[1:]]) if sys.argv and "driftlab" in sys.argv[0] else "",
    }
