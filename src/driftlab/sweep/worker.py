"""One task of a sweep, in whatever process a backend gives it: a local worker process
(``python -m driftlab.sweep.worker TASK_JSON``) or a Ray worker (``run_task`` called in place).

A task is one run (a point's arm × seed) or a shared prefix (the first k stages of one of the runs
that share them, left resumable at the stage boundary and published to the prefix cache, where the
others start from it). Everything it needs is on disk, in the point's ``experiment.yaml``, so a
task that was killed is simply run again: the run resumes from its last checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from driftlab.errors import DriftlabError

ERROR = "driftlab-error: "  # the line a local worker's log ends with when the task failed


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task; returns ``{"ok": True, "trained": bool}`` or ``{"ok": False, "error": line}``
    (a bad input is its one line; anything else its exception's type and message)."""
    os.environ["DRIFTLAB_THREADS"] = str(task["threads"])
    t0 = time.perf_counter()
    try:
        trained = _run(task)
    except DriftlabError as e:
        return {"ok": False, "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:  # recorded as the task's error, with the traceback in its log
        traceback.print_exc()
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}
    return {"ok": True, "trained": trained, "seconds": time.perf_counter() - t0}


def _run(task: dict[str, Any]) -> bool:
    from driftlab.experiments.prefix import PrefixCache
    from driftlab.experiments.spec import load_experiment_dir
    from driftlab.experiments.study import run_one

    root = Path(task["point"])
    exp = load_experiment_dir(root)
    cfg = next((c for a, s, c in exp.runs() if a == task["arm"] and s == task["seed"]), None)
    if cfg is None:
        raise DriftlabError(f"{root}/experiment.yaml: no arm {task['arm']!r} with seed {task['seed']}")
    cache = PrefixCache(task["cache"], lambda line: print(f"warning: {line}", file=sys.stderr)) \
        if task.get("cache") else None
    stop = task.get("stop_after")
    if stop is not None and cache is not None and (cache.entry(cfg, stop) / "prefix.json").exists():
        return False  # the shared prefix is in the cache already
    return run_one(root, task["arm"], task["seed"], cfg, cache, stop_after=stop)


def _die_with_parent(parent: int) -> None:
    """A local worker ends when its driver does (killed included): on Linux the kernel sends it
    SIGKILL; elsewhere a thread notices the parent is gone. Files are written atomically, so what
    it leaves is a resumable run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    """Serve tasks: one JSON line in on stdin, its result as one JSON line out on stdout; the task's
    own output (progress, warnings, a traceback) goes to its log file."""
    _die_with_parent(int(sys.argv[1]))
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    for line in sys.stdin:
        task = json.loads(line)
        with open(task["log"], "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {task['id']} (pid {os.getpid()})\n")
            log.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            result = run_task(task)
            if not result["ok"]:
                print(ERROR + result["error"].replace("\n", " "), file=sys.stderr, flush=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        answer.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
