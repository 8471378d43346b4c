"""The prefix cache: arms that share their first stages train them once.

When a run finishes a stage that is not its last, the run's files up to that stage — tokenizer,
checkpoints with their internals artifacts, metric rows, and the resume state at the stage's end —
are copied into ``<cache>/<prefix hash>-<code hash>/``, checked against the hashes they were
written with, listed with their own hashes in the entry's ``sha256.json``, made read-only and
published by one rename. A later run (another arm, another experiment) whose first k stages have
the same prefix hash (``ExperimentConfig.prefix_hash``: the config of those stages plus the
measurement settings derived from the rest) checks the entry's every file against ``sha256.json``,
copies it and resumes at the boundary, exactly as a run killed there would: the metrics are
identical to training the prefix again. The code hash (driftlab's sources and torch's version)
keeps a changed driftlab from reusing checkpoints an older one trained.

An entry that fails its check (a changed byte, a truncated or missing file, a half-copied entry) is
moved aside to ``<cache>/damaged/`` with one warning — never reused, never deleted — and the run
trains that prefix again, which publishes a sound entry. Entries are copies, not hard links: a disk
error in the cache cannot reach a run that already used it, and a damaged run cannot reach the cache.
Two processes that need the same prefix at once both train it; the first rename publishes it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftlab.config import ExperimentConfig
from driftlab.errors import DataError
from driftlab.runs.atomic import atomic_write, read_json, write_json
from driftlab.runs.digest import check_manifest, write_manifest
from driftlab.runs.metrics import read_metrics
from driftlab.runs.provenance import code_hash
from driftlab.runs.rundir import RunDir, disk_usage
from driftlab.runs.verify import check_run


def default_cache() -> Path:
    """``$DRIFTLAB_PREFIX_CACHE``, else ``prefixes/`` under ``$DRIFTLAB_CACHE`` (``~/.cache/driftlab``)."""
    if os.environ.get("DRIFTLAB_PREFIX_CACHE"):
        return Path(os.environ["DRIFTLAB_PREFIX_CACHE"])
    return Path(os.environ.get("DRIFTLAB_CACHE", Path.home() / ".cache" / "driftlab")) / "prefixes"


PRIVATE = ".prefixes"


def private_cache(root: Path, warn: Callable[[str], None] | None = None) -> PrefixCache:
    """A prefix cache of one experiment's own (``<root>/.prefixes``), for ``--no-cache``: its arms
    still train a shared prefix once, but nothing is read from or kept in the shared cache. A
    killed experiment keeps it for its resume; ``clear()`` removes it once the experiment is done."""
    return PrefixCache(Path(root) / PRIVATE, warn)


@dataclass
class PrefixHit:
    key: str
    stages: list[str]  # the stages reused
    source: str  # the run that trained them

    def record(self) -> dict:
        return {"key": self.key, "stages": self.stages, "source": self.source}


class PrefixCache:
    def __init__(self, root: str | Path, warn: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.warn = warn or (lambda line: None)

    def entry(self, cfg: ExperimentConfig, k: int) -> Path:
        return self.root / f"{cfg.prefix_hash(k)}-{code_hash()}"

    def store(self, run: RunDir, cfg: ExperimentConfig, index: int) -> None:
        """Keep the run's files up to the end of stage ``index`` (just finished) for reuse."""
        if index >= len(cfg.stages) - 1:
            return  # a whole run is not a prefix of anything that trains more
        final = self.entry(cfg, index + 1)
        if (final / "prefix.json").exists():
            return
        tmp = self.root / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _copy_tree(run.tokenizer_dir, tmp / "tokenizer")
            for i in range(index + 1):
                name = f"{i}-{cfg.stages[i].name}"
                _copy_tree(run.stage_dir(i, cfg.stages[i].name), tmp / "checkpoints" / name)
            (tmp / "resume").mkdir(parents=True)
            _copy(run.resume_path, tmp / "resume" / run.resume_path.name)
            table = read_metrics(run.metrics_path)
            table = table.filter(pc.less_equal(table["stage_index"], index))
            pq.write_table(table, tmp / "metrics.parquet")
            problems = check_run(tmp).problems  # what goes in is what the run wrote
            if problems:
                self.warn(f"prefix cache: stages {index + 1} of {run.root} not kept: "
                          f"{problems[0].replace(str(tmp), str(run.root))}")
                shutil.rmtree(tmp, ignore_errors=True)
                return
            write_json(tmp / "prefix.json", {"key": final.name, "stages": [s.name for s in cfg.stages[:index + 1]],
                                             "source": str(run.root)})
            write_manifest(tmp)
            _read_only(tmp)
            tmp.rename(final)
        except OSError:  # another process published the same prefix first, or the disk is full
            shutil.rmtree(tmp, ignore_errors=True)

    def seed(self, run: RunDir, cfg: ExperimentConfig) -> PrefixHit | None:
        """Start a fresh run from the longest sound cached prefix of its stages, if there is one."""
        if run.resume_path.exists():
            return None  # the run has its own progress
        for k in range(len(cfg.stages) - 1, 0, -1):
            entry = self.entry(cfg, k)
            if not entry.exists():
                continue
            problems = check_manifest(entry)
            if problems:
                self.set_aside(entry, problems[0])
                continue
            info = read_json(entry / "prefix.json", DataError, "prefix cache entry without its record")
            try:
                _copy_tree(entry / "tokenizer", run.tokenizer_dir)
                for i in range(k):
                    name = f"{i}-{cfg.stages[i].name}"
                    _copy_tree(entry / "checkpoints" / name, run.root / "checkpoints" / name)
            except FileNotFoundError:  # another process moved it aside meanwhile
                continue
            table = read_metrics(entry / "metrics.parquet")
            for column, value in (("run", cfg.name), ("arm", cfg.arm)):
                if column in table.column_names:
                    table = table.set_column(table.column_names.index(column), column,
                                             pa.array([value] * len(table), pa.string()))
            atomic_write(run.metrics_path, lambda tmp, table=table: pq.write_table(table, tmp))
            hit = PrefixHit(entry.name, info["stages"], info["source"])
            write_json(run.root / "prefix.json", hit.record())
            self._used(entry.name, run.root)
            run.resume_path.parent.mkdir(parents=True, exist_ok=True)  # last: the run now resumes from here
            atomic_write(run.resume_path, lambda tmp, src=entry / "resume" / run.resume_path.name:
                         _copy(src, Path(tmp)), readonly=True)
            return hit
        return None

    # ------------------------------------------------------------ managing the cache

    def entries(self) -> list[Entry]:
        """Every published entry, least recently used first."""
        out = []
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if path.name.startswith(".") or path.name in ("damaged", "users") or not path.is_dir():
                continue
            try:
                info = json.loads((path / "prefix.json").read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                info = {}
            users = self.users(path.name)
            out.append(Entry(path.name, path, disk_usage(path), info.get("stages", []), info.get("source", "?"),
                             users, max([path.stat().st_mtime, *(t for t, _ in users)])))
        return sorted(out, key=lambda e: e.last_used)

    def users(self, key: str) -> list[tuple[float, str]]:
        """(time, run directory) of every run that started from the entry."""
        try:
            lines = (self.root / "users" / f"{key}.jsonl").read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                r = json.loads(line)
                out.append((float(r["time"]), str(r["run"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill: the log is advisory
        return out

    def _used(self, key: str, run: Path) -> None:
        (self.root / "users").mkdir(parents=True, exist_ok=True)
        with open(self.root / "users" / f"{key}.jsonl", "a") as f:  # one short O_APPEND write per hit
            f.write(json.dumps({"time": time.time(), "run": str(run.resolve())}) + "\n")

    def verify(self) -> list[tuple[Entry, list[str]]]:
        """Check every entry against its hashes; damaged ones are moved aside (as a run would)."""
        out = []
        for entry in self.entries():
            problems = check_manifest(entry.path)
            if problems:
                self.set_aside(entry.path, problems[0])
            out.append((entry, problems))
        return out

    def clear(self, key: str | None = None) -> int:
        """Delete one entry (by key or a unique key prefix), or every entry and what was set aside;
        returns the bytes freed."""
        if key is None:
            freed = disk_usage(self.root) if self.root.exists() else 0
            shutil.rmtree(self.root, ignore_errors=True)
            return freed
        matches = [e for e in self.entries() if e.key.startswith(key)]
        if len(matches) != 1:
            known = ", ".join(e.key for e in self.entries()) or "none"
            raise DataError(f"{self.root}: {'no' if not matches else 'more than one'} cache entry {key!r} "
                            f"(entries: {known})")
        return self._delete(matches[0])

    def prune(self, max_bytes: int) -> list[Entry]:
        """Delete least recently used entries (and everything set aside) until the cache holds at most
        ``max_bytes``; returns the entries deleted."""
        shutil.rmtree(self.root / "damaged", ignore_errors=True)
        entries, deleted = self.entries(), []
        total = sum(e.bytes for e in entries)
        for entry in entries:
            if total <= max_bytes:
                break
            total -= self._delete(entry)
            deleted.append(entry)
        return deleted

    def _delete(self, entry: Entry) -> int:
        # renamed first, so no run can start copying a half-deleted entry
        doomed = self.root / f".{entry.key}.deleting-{os.getpid()}"
        try:
            entry.path.rename(doomed)
        except FileNotFoundError:
            return 0
        shutil.rmtree(doomed, ignore_errors=True)
        (self.root / "users" / f"{entry.key}.jsonl").unlink(missing_ok=True)
        return entry.bytes

    def set_aside(self, entry: Path, problem: str) -> Path:
        """Move a damaged entry to ``damaged/`` (kept for inspection, never reused) with one warning."""
        aside = self.root / "damaged" / f"{entry.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            entry.rename(aside)
        except FileNotFoundError:  # another process moved it first
            return aside
        self.warn(f"prefix cache entry {entry.name} is damaged ({problem}); moved to {aside}; "
                  f"its stages are trained again")
        return aside


@dataclass
class Entry:
    key: str
    path: Path
    bytes: int
    stages: list[str]
    source: str  # the run that trained it
    users: list[tuple[float, str]]  # the runs that started from it
    last_used: float


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``3GiB``, ``10000`` (bytes) → bytes; decimal units, binary with ``i``."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", text.lower())
    if not m:
        raise DataError(f"--max-size: expected a size such as 500M, 2G or 3GiB (got {text!r})")
    power = " kmgt".index(m.group(2) or " ")
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` into ``dst`` (read-only files stay read-only)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        target = dst / path.name
        if path.is_dir():
            _copy_tree(path, target)
            continue
        if target.exists():
            target.unlink()
        _copy(path, target)


FICLONE = 0x40049409  # Linux ioctl: share the source's blocks copy-on-write (btrfs, XFS, bcachefs)


def _copy(src: Path, dst: Path) -> None:
    """A copy that cannot share damage with its source: a copy-on-write clone where the file system
    has them (no extra disk, instant), else a byte copy. Modes (read-only) are kept."""
    import fcntl

    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
    except OSError:  # ext4, tmpfs, overlayfs, another file system: bytes
        shutil.copyfile(src, dst)
    shutil.copymode(src, dst)


def _read_only(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
