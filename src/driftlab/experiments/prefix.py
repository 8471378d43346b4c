"""The prefix cache: arms that share their first stages train them once.

When a run finishes a stage that is not its last, the run's files up to that stage — tokenizer,
checkpoints with their internals artifacts, metric rows, and the resume state at the stage's end —
are hard-linked into ``<cache>/<prefix hash>-<code hash>/``. A later run (another arm, another
experiment) whose first k stages have the same prefix hash (``ExperimentConfig.prefix_hash``: the
config of those stages plus the measurement settings derived from the rest) starts from a copy of
that directory and resumes at the boundary, exactly as a run killed there would: the metrics are
identical to training the prefix again. The code hash (driftlab's sources and torch's version)
keeps a changed driftlab from reusing checkpoints an older one trained.

Checkpoints are never rewritten in place (every write is a rename), so hard links are safe; where
the cache is on another file system, files are copied.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftlab.config import ExperimentConfig
from driftlab.errors import DataError
from driftlab.runs.atomic import atomic_write, read_json, write_json
from driftlab.runs.metrics import read_metrics
from driftlab.runs.provenance import code_hash
from driftlab.runs.rundir import RunDir


def default_cache() -> Path:
    """``$DRIFTLAB_PREFIX_CACHE``, else ``prefixes/`` under ``$DRIFTLAB_CACHE`` (``~/.cache/driftlab``)."""
    if os.environ.get("DRIFTLAB_PREFIX_CACHE"):
        return Path(os.environ["DRIFTLAB_PREFIX_CACHE"])
    return Path(os.environ.get("DRIFTLAB_CACHE", Path.home() / ".cache" / "driftlab")) / "prefixes"


@dataclass
class PrefixHit:
    key: str
    stages: list[str]  # the stages reused
    source: str  # the run that trained them

    def record(self) -> dict:
        return {"key": self.key, "stages": self.stages, "source": self.source}


class PrefixCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, cfg: ExperimentConfig, k: int) -> Path:
        return self.root / f"{cfg.prefix_hash(k)}-{code_hash()}"

    def store(self, run: RunDir, cfg: ExperimentConfig, index: int) -> None:
        """Keep the run's files up to the end of stage ``index`` (just finished) for reuse."""
        if index >= len(cfg.stages) - 1:
            return  # a whole run is not a prefix of anything that trains more
        final = self.entry(cfg, index + 1)
        if (final / "prefix.json").exists():
            return
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _link_tree(run.tokenizer_dir, tmp / "tokenizer")
        for i in range(index + 1):
            _link_tree(run.stage_dir(i, cfg.stages[i].name), tmp / "checkpoints" / f"{i}-{cfg.stages[i].name}")
        (tmp / "resume").mkdir(parents=True)
        shutil.copy2(run.resume_path, tmp / "resume" / run.resume_path.name)
        table = read_metrics(run.metrics_path)
        table = table.filter(pc.less_equal(table["stage_index"], index))
        pq.write_table(table, tmp / "metrics.parquet")
        write_json(tmp / "prefix.json", {"key": final.name, "stages": [s.name for s in cfg.stages[:index + 1]],
                                         "source": str(run.root)})
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(final)
        except OSError:  # another process stored the same prefix first
            shutil.rmtree(tmp, ignore_errors=True)

    def seed(self, run: RunDir, cfg: ExperimentConfig) -> PrefixHit | None:
        """Start a fresh run from the longest cached prefix of its stages, if there is one."""
        if run.resume_path.exists():
            return None  # the run has its own progress
        for k in range(len(cfg.stages) - 1, 0, -1):
            entry = self.entry(cfg, k)
            if not (entry / "prefix.json").exists():
                continue
            info = read_json(entry / "prefix.json", DataError, "prefix cache entry without its record")
            _link_tree(entry / "tokenizer", run.tokenizer_dir)
            for i in range(k):
                name = f"{i}-{cfg.stages[i].name}"
                _link_tree(entry / "checkpoints" / name, run.root / "checkpoints" / name)
            table = read_metrics(entry / "metrics.parquet")
            for column, value in (("run", cfg.name), ("arm", cfg.arm)):
                if column in table.column_names:
                    table = table.set_column(table.column_names.index(column), column,
                                             pa.array([value] * len(table), pa.string()))
            atomic_write(run.metrics_path, lambda tmp, table=table: pq.write_table(table, tmp))
            hit = PrefixHit(entry.name, info["stages"], info["source"])
            write_json(run.root / "prefix.json", hit.record())
            run.resume_path.parent.mkdir(parents=True, exist_ok=True)  # last: the run now resumes from here
            atomic_write(run.resume_path, lambda tmp, src=entry / "resume" / run.resume_path.name:
                         shutil.copyfile(src, tmp))
            return hit
        return None


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        target = dst / path.name
        if path.is_dir():
            _link_tree(path, target)
            continue
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
