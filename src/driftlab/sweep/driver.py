"""Run a sweep: every point's runs as tasks on a backend, shared prefixes first, then each point's
combined metrics and verdict.

    <sweep>/
      sweep.yaml             the sweep file as given (``driftlab sweep <sweep>`` runs it again)
      status.json            state: running | complete | failed; every failed task with its error
      .lock                  held by the driver (a second driver on the directory is refused)
      logs/<task>.log        each local task's output
      <axis>=<label>/...     one experiment directory per point (see ``experiments.study``)
      report.html            the sweep report

The schedule: a stage prefix that several runs of the grid share (the same world, model and first
stages: ``ExperimentConfig.prefix_hash``) is a task of its own, trained once in the first of those
runs' directories and published to the prefix cache; the runs that share it wait for it and start
from the cache. Prefixes nest (runs sharing two stages wait for that prefix, which waits for the
one-stage prefix it extends). Without a cache every run trains all its stages.

Idempotent and resumable: a complete run is skipped, a killed one resumes from its checkpoints, a
complete point is not written again. A failed task is retried up to ``retries`` times (a killed
run resumes where it was); what still fails is recorded with its error, the rest go on, and the
sweep ends ``failed`` with the list. A failed prefix task only costs its dependents the sharing:
they train the prefix themselves.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from driftlab.errors import DataError
from driftlab.experiments.study import finish_experiment, new_experiment_files, run_dir
from driftlab.runs.atomic import read_json, write_json, write_text
from driftlab.runs.rundir import exclusive
from driftlab.sweep.backends import Ended
from driftlab.sweep.spec import Point, Sweep


@dataclass
class Task:
    id: str
    point: int  # index into sweep.points
    arm: str
    seed: int
    stop_after: int | None = None  # a prefix task: the stages it trains
    deps: list[str] = field(default_factory=list)
    attempts: int = 0

    @property
    def prefix(self) -> bool:
        return self.stop_after is not None


class Events(Protocol):
    def start(self, sweep: Sweep, tasks: list[Task], skipped: int, backend: str, slots: int, threads: int) -> None: ...
    def task_start(self, task: Task) -> None: ...
    def task_end(self, task: Task, ended: Ended, retry: bool) -> None: ...
    def point_done(self, point: Point, verdict: Any) -> None: ...


class QuietEvents:
    def start(self, sweep, tasks, skipped, backend, slots, threads) -> None: ...
    def task_start(self, task) -> None: ...
    def task_end(self, task, ended, retry) -> None: ...
    def point_done(self, point, verdict) -> None: ...


@dataclass
class SweepResult:
    root: Path
    failures: list[dict[str, Any]]  # {"point", "task", "error", "attempts"}
    points_done: int
    wall_s: float


def plan(sweep: Sweep, root: Path, cached: bool) -> list[Task]:
    """Every run of every sound point, and (with a cache) a task per stage prefix that two or more
    runs share; a run depends on its longest shared prefix, a prefix on the longest shorter one."""
    runs: list[tuple[Task, Any]] = []
    for i, point in enumerate(sweep.points):
        if point.experiment is None:
            continue
        for arm, seed, cfg in point.experiment.runs():
            runs.append((Task(f"{point.name or '.'}/{arm}/seed-{seed}", i, arm, seed), cfg))
    if not cached:
        return [t for t, _ in runs]
    hashes = [[cfg.prefix_hash(k) for k in range(1, len(cfg.stages))] for _, cfg in runs]
    members: dict[tuple[int, str], set[int]] = {}
    for r, hs in enumerate(hashes):
        for k, h in enumerate(hs, 1):
            members.setdefault((k, h), set()).add(r)
    prefixes: dict[tuple[int, str], Task] = {}
    for (task, _), hs in zip(runs, hashes):
        chain = [(k, h) for k, h in enumerate(hs, 1) if len(members[(k, h)]) > 1]
        # a prefix shared by exactly the runs that share a longer one is trained inside that task
        shared = [kh for i, kh in enumerate(chain) if i + 1 == len(chain) or members[kh] != members[chain[i + 1]]]
        previous = None
        for k, h in shared:  # shortest first: each prefix waits for the one it extends
            if (k, h) not in prefixes:
                p = Task(f"prefix:{h}", task.point, task.arm, task.seed, stop_after=k,
                         deps=[previous] if previous else [])
                prefixes[(k, h)] = p
            previous = prefixes[(k, h)].id
        if previous:
            task.deps.append(previous)
    # point-major: each run after the prefix chain it waits for, so points complete (and their
    # verdicts appear) as the grid goes, not all at its end
    by_id = {t.id: t for t in prefixes.values()}
    order: list[Task] = []
    placed: set[str] = set()

    def place(task_id: str) -> None:
        if task_id in placed:
            return
        for dep in by_id[task_id].deps:
            place(dep)
        placed.add(task_id)
        order.append(by_id[task_id])

    for task, _ in runs:
        for dep in task.deps:
            place(dep)
        order.append(task)
    return order


def run_sweep(sweep: Sweep, root: str | Path, backend, cache: Path | None, retries: int = 1,
              events: Events | None = None) -> SweepResult:
    """Run (or continue) the sweep in ``root`` on ``backend``; one driver per directory."""
    root = Path(root)
    events = events or QuietEvents()
    with exclusive(root):
        return _drive(sweep, root, backend, cache, retries, events)


def prepare(sweep: Sweep, root: Path) -> None:
    """The sweep's record and each sound point's experiment directory, written once; a directory
    that holds another sweep, or a point started with another config, is refused."""
    record = root / "sweep.yaml"
    if record.exists() and record.read_text() != sweep.text:
        raise DataError(f"{root}: holds another sweep (its sweep.yaml differs from {sweep.path}); "
                        f"give a new --out, or run `driftlab sweep {root}` to continue that one")
    root.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        write_text(record, sweep.text)
    for point in sweep.points:
        if point.experiment is None:
            continue
        where = sweep.point_dir(root, point)
        text = point.experiment.dump()
        if (where / "experiment.yaml").exists():
            if (where / "experiment.yaml").read_text() != text:
                raise DataError(f"{where}/experiment.yaml: this point was started with another config "
                                f"(driftlab or the base preset changed); give a new --out")
            continue
        new_experiment_files(where, point.experiment)


def _drive(sweep: Sweep, root: Path, backend, cache: Path | None, retries: int, events: Events) -> SweepResult:
    started = time.perf_counter()
    prepare(sweep, root)
    tasks = plan(sweep, root, cache is not None)
    failures: list[dict[str, Any]] = [{"point": p.name, "task": None, "error": p.error, "attempts": 0}
                                      for p in sweep.points if p.error is not None]
    complete_points = {i for i, p in enumerate(sweep.points) if p.experiment is not None
                       and _state(sweep.point_dir(root, p)) == "complete"}

    def run_complete(t: Task) -> bool:
        point = sweep.points[t.point]
        status = run_dir(sweep.point_dir(root, point), t.arm, t.seed).root / "status.json"
        return status.exists() and read_json(status, DataError, "unreadable").get("state") == "complete"

    runs = [t for t in tasks if not t.prefix]
    todo = {t.id: t for t in tasks if t.point not in complete_points and not (not t.prefix and run_complete(t))}
    needed = {d for t in todo.values() if not t.prefix for d in t.deps}
    for _ in range(len(tasks)):  # a prefix is needed by a needed run or by a needed longer prefix
        more = {d for t in todo.values() if t.prefix and t.id in needed for d in t.deps}
        if more <= needed:
            break
        needed |= more
    todo = {i: t for i, t in todo.items() if not t.prefix or i in needed}
    done = {t.id for t in tasks} - set(todo)
    events.start(sweep, list(todo.values()), len(runs) - sum(1 for t in todo.values() if not t.prefix),
                 backend.name, backend.slots, backend.threads)
    _status(root, sweep, "running", failures)
    for i in sorted(complete_points):
        events.point_done(sweep.points[i], None)
    for i, point in enumerate(sweep.points):  # every run complete, but the point never finished
        if i not in complete_points and point.experiment is not None and \
                not any(t.point == i and not t.prefix for t in todo.values()):
            _finish(sweep, root, i, events, failures)
    running: dict[str, Task] = {}
    pending = list(todo.values())
    try:
        while pending or running:
            for t in list(pending):
                if len(running) >= backend.slots:
                    break
                if all(d in done for d in t.deps):
                    pending.remove(t)
                    running[t.id] = t
                    t.attempts += 1
                    events.task_start(t)
                    backend.submit(t.id, {"point": str(sweep.point_dir(root, sweep.points[t.point])), "arm": t.arm,
                                          "seed": t.seed, "stop_after": t.stop_after,
                                          "cache": str(cache) if cache is not None else None})
            if not running and pending:  # cannot happen: a prefix task always ends done
                raise RuntimeError(f"sweep schedule stuck on {pending[0].id} (waits for {pending[0].deps})")
            for ended in backend.wait(1.0):
                t = running.pop(ended.task)
                retry = not ended.ok and t.attempts <= retries
                events.task_end(t, ended, retry)
                if ended.ok or t.prefix and not retry:  # a failed prefix: its runs train it themselves
                    done.add(t.id)
                    if not ended.ok:
                        failures.append({"point": sweep.points[t.point].name, "task": t.id, "error": ended.error,
                                         "attempts": t.attempts, "note": "its runs trained the prefix themselves"})
                    if not t.prefix and all(o.id in done for o in runs if o.point == t.point):
                        _finish(sweep, root, t.point, events, failures)
                elif retry:
                    pending.insert(0, t)
                else:
                    failures.append({"point": sweep.points[t.point].name, "task": t.id, "error": ended.error,
                                     "attempts": t.attempts})
                _status(root, sweep, "running", failures)
    except BaseException:
        backend.close()
        _status(root, sweep, "failed", [*failures, {"point": None, "task": None, "attempts": 0,
                                                    "error": "the driver stopped"}])
        raise
    backend.close()
    ok = not failures
    _status(root, sweep, "complete" if ok else "failed", failures)
    points_done = sum(1 for p in sweep.points if p.experiment is not None
                      and _state(sweep.point_dir(root, p)) == "complete")
    return SweepResult(root, failures, points_done, time.perf_counter() - started)


def _finish(sweep: Sweep, root: Path, index: int, events: Events, failures: list[dict[str, Any]]) -> None:
    """Every run of the point is complete: its combined metrics and verdict (in the driver)."""
    point = sweep.points[index]
    where = sweep.point_dir(root, point)
    try:
        with exclusive(where):
            verdict = finish_experiment(where, point.experiment)
    except Exception as e:  # the point's own error, recorded; the sweep goes on
        failures.append({"point": point.name, "task": "verdict", "error": f"{type(e).__name__}: {e}", "attempts": 1})
        return
    events.point_done(point, verdict)


def _state(where: Path) -> str | None:
    path = where / "status.json"
    if not path.exists():
        return None
    return read_json(path, DataError, "unreadable").get("state")


def _status(root: Path, sweep: Sweep, state: str, failures: list[dict[str, Any]]) -> None:
    write_json(root / "status.json", {"state": state, "kind": "sweep", "name": sweep.name, "updated": time.time(),
                                      "points": len(sweep.points), "failures": failures, "pid": os.getpid()})


def sweep_points(root: Path) -> list[tuple[dict[str, str], Path]]:
    """(axis values, directory) of every point of the sweep in ``root``, from its folder names."""
    out = []
    for exp in sorted(Path(root).rglob("experiment.yaml")):
        rel = exp.parent.relative_to(root)
        parts = rel.parts
        if parts and all("=" in p for p in parts):
            out.append((dict(p.split("=", 1) for p in parts), exp.parent))
    return out
