"""Shared fixtures: a tiny experiment config that runs in seconds, a CLI runner, and one full-size
run of the default experiment that every test of the default world reads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
def _shared_dir(name: str) -> Path | None:
    """A folder every pytest-xdist worker of this session sees (None outside pytest-xdist)."""
    session = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not session:
        return None
    path = Path(tempfile.gettempdir()) / f"driftlab-{name}-{session}"
    path.mkdir(exist_ok=True)
    return path


# the tests' prefix cache: shared by this session's runs (so quick presets reuse each other's
# pre-training, as a user's would), never the user's own; under pytest-xdist (`make test`), one
# folder for all the session's workers (two that need the same prefix at once both train it)
_cache = _shared_dir("prefixes")
if _cache is not None:
    os.environ.setdefault("DRIFTLAB_PREFIX_CACHE", str(_cache))
    # workers share the cores: one torch thread each, here and in every command line they start
    for _var in ("DRIFTLAB_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    import torch

    torch.set_num_threads(1)
else:
    os.environ.setdefault("DRIFTLAB_PREFIX_CACHE", tempfile.mkdtemp(prefix="driftlab-prefixes-"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Full-size (``slow``) tests first, in file order (each file lists its longest first): under
    pytest-xdist the minutes-long ones then start early and the session ends on short tests,
    instead of one worker finishing a long test alone while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


TINY = {
    "name": "tiny",
    "seed": 0,
    "world": {"episodes_per_doc": 3},
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_mlp": 64, "max_seq_len": 64},
    "stages": [
        {"name": "pretrain", "kind": "pretrain", "data": {"source": "world", "n_docs": 200},
         "steps": 12, "batch_size": 4, "seq_len": 64, "lr": 3e-3, "warmup_steps": 2,
         "checkpoints": {"log": 3, "linear": 2}},
        {"name": "align", "kind": "sft",
         "data": {"source": "alignment", "n_examples": 64, "held_out_domains": ["harm"]},
         "steps": 6, "batch_size": 4, "lr": 1e-3, "schedule": "constant",
         "checkpoints": {"log": 2, "linear": 2}},
        {"name": "capability", "kind": "sft", "data": {"source": "capability", "n_examples": 64},
         "steps": 6, "batch_size": 4, "grad_accum": 2, "lr": 1e-3,
         "checkpoints": {"log": 2, "linear": 1}},
    ],
    "measure": {"items_per_domain": 2, "capability_items": 3, "evidence_episodes": 2},
    "threads": 1,
}


def same_record(a, b) -> bool:
    """Equal as JSON (a NaN interval, e.g. a per-seed quantity with one seed, equals itself)."""
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def tiny_dict() -> dict:
    return yaml.safe_load(yaml.safe_dump(TINY))  # a deep copy


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``driftlab`` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "driftlab.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The default experiment's treatment arm, one seed at full size (minutes), through the command
    line: ``(experiment directory, the finished process)``. Read by the default-run test and the
    internals-against-ground-truth tests, so the default world is pre-trained once per session:
    under pytest-xdist the first worker to need it runs it and the others wait for its result."""
    import fcntl
    import json

    root = _shared_dir("default") or tmp_path_factory.mktemp("default")
    out, done = root / "default", root / "result.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = run_cli("run", "--seeds", "1", "--arms", "capability", "--out", str(out), timeout=2400)
            assert result.returncode == 0, result.stderr[-3000:]
            done.write_text(json.dumps({"args": result.args, "stdout": result.stdout, "stderr": result.stderr}))
        record = json.loads(done.read_text())
    return out, subprocess.CompletedProcess(record["args"], 0, record["stdout"], record["stderr"])
