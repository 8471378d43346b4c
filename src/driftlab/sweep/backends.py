"""Where a sweep's tasks run: local worker processes, or Ray tasks on a local or remote cluster.

A backend starts a task and reports, when asked, the tasks that ended (with their result). The
driver decides what starts when (a run waits for the shared prefix it starts from), so both
backends run the same schedule and a sweep gives the same files on either.

Why Ray core tasks and not Ray Tune: a point's state is its run directories (checkpoints, resume
state, metrics, status), which make a killed run resume exactly and a complete one skip; Tune's
trial directories, ``Tuner.restore`` and result table would keep a second copy of that state that
can disagree with the first. What Ray gives here is what we cannot do ourselves: placing each task
on a machine with the CPUs (and GPUs) it declares, joining a cluster, and noticing a worker that
died (a task whose worker is killed fails with ``WorkerCrashedError``, recorded and retried).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftlab.errors import ConfigError
from driftlab.sweep.worker import ERROR


@dataclass
class Ended:
    task: str
    ok: bool
    error: str | None
    seconds: float


class LocalBackend:
    """``workers`` Python processes (``python -m driftlab.sweep.worker``), each running one task at
    a time with ``threads`` torch threads and importing torch once, not once per task; a task's
    output goes to ``logs/<task>.log``. A worker that dies (killed, out of memory) fails the task it
    had, and a fresh one takes its place."""

    name = "local"

    def __init__(self, workers: int, threads: int, logs: Path):
        self.workers, self.threads, self.logs = workers, threads, Path(logs)
        self.idle: list[subprocess.Popen] = []
        self.running: dict[str, tuple[subprocess.Popen, float, Path]] = {}

    @property
    def slots(self) -> int:
        return self.workers

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "DRIFTLAB_THREADS": str(self.threads), "OMP_NUM_THREADS": str(self.threads),
               "HF_HUB_OFFLINE": "1"}
        return subprocess.Popen([sys.executable, "-m", "driftlab.sweep.worker", str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, text=True, bufsize=1)

    def submit(self, task_id: str, task: dict[str, Any]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{_slug(task_id)}.log"
        proc = self.idle.pop() if self.idle else self._spawn()
        proc.stdin.write(json.dumps({**task, "threads": self.threads, "log": str(log), "id": task_id}) + "\n")
        proc.stdin.flush()
        self.running[task_id] = (proc, time.perf_counter(), log)

    def wait(self, timeout: float) -> list[Ended]:
        import selectors

        if not self.running:
            return []
        sel = selectors.DefaultSelector()
        for task_id, (proc, _, _) in self.running.items():
            sel.register(proc.stdout, selectors.EVENT_READ, task_id)
        ready = sel.select(timeout)
        sel.close()
        out = []
        for key, _ in ready:
            task_id = key.data
            proc, t0, log = self.running.pop(task_id)
            line = proc.stdout.readline()
            if line:  # the worker's answer: one JSON line per task
                result = json.loads(line)
                out.append(Ended(task_id, result["ok"], result.get("error"), time.perf_counter() - t0))
                self.idle.append(proc)
            else:  # the worker is gone
                code = proc.wait()
                out.append(Ended(task_id, False, _error_line(log, code), time.perf_counter() - t0))
        return out

    def close(self) -> None:
        for proc in [*self.idle, *(p for p, _, _ in self.running.values())]:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc, _, _ in self.running.values():
            proc.kill()
        for proc in [*self.idle, *(p for p, _, _ in self.running.values())]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.idle.clear()
        self.running.clear()


def _slug(task_id: str) -> str:
    return task_id.replace("/", "__").replace(":", "_")


def _error_line(log: Path, code: int) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith(ERROR):
            return line[len(ERROR):]
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker killed by {name}"
    tail = next((line for line in reversed(lines) if line.strip()), "")
    return f"worker exited with code {code}" + (f": {tail.strip()}" if tail else "")


class RayBackend:
    """One Ray task per sweep task, declaring ``cpus`` (its torch threads) and ``gpus``. ``address``
    joins a running cluster (``auto``, or ``host:port``); None starts a local one for this sweep."""

    name = "ray"

    def __init__(self, workers: int | None, cpus: int | None, gpus: float, address: str | None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray: Ray is not installed (pip install 'ray>=2.40' "
                              "beside your torch)") from None
        self.ray = ray
        self.running: dict[Any, tuple[str, float]] = {}
        self.started = not ray.is_initialized()
        if self.started:
            env = {"env_vars": {"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}}
            try:
                if address is None:
                    ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env, logging_level="ERROR",
                             object_store_memory=256 * 1024**2)  # tasks pass paths, not tensors
                else:
                    ray.init(address=address, log_to_driver=False, runtime_env=env, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(f"--address {address}: cannot join a Ray cluster there "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        total = int(ray.cluster_resources().get("CPU", 1))
        self.cpus = cpus or max(1, total // (workers or total))
        self.gpus = gpus
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if nodes and self.cpus > max(n.get("CPU", 0) for n in nodes):  # a task no node can take waits forever
            self.close()
            raise ConfigError(f"resources.cpus: {self.cpus} CPUs per run, but no node of the Ray cluster has "
                              f"more than {max(n.get('CPU', 0) for n in nodes):.0f}")
        if gpus and nodes and gpus > max(n.get("GPU", 0) for n in nodes):
            self.close()
            raise ConfigError(f"resources.gpus: {gpus:g} GPUs per run, but no node of the Ray cluster has as many")
        self.workers = workers or max(1, total // self.cpus)
        from driftlab.sweep.worker import run_task

        self.remote = ray.remote(run_task)

    @property
    def slots(self) -> int:
        return self.workers

    @property
    def threads(self) -> int:
        return self.cpus

    def submit(self, task_id: str, task: dict[str, Any]) -> None:
        ref = self.remote.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0,
                                  name=task_id).remote({**task, "threads": self.cpus})
        self.running[ref] = (task_id, time.perf_counter())

    def wait(self, timeout: float) -> list[Ended]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            task_id, t0 = self.running.pop(ref)
            try:
                result = self.ray.get(ref)
                out.append(Ended(task_id, result["ok"], result.get("error"), time.perf_counter() - t0))
            except Exception as e:  # the worker died (killed, out of memory) or Ray failed
                first = (str(e).strip().splitlines() or [""])[0]
                out.append(Ended(task_id, False, f"{type(e).__name__}: {first}", time.perf_counter() - t0))
        return out

    def close(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self.started:
            self.ray.shutdown()
