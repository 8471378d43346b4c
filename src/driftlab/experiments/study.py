"""Run an experiment: every arm × seed as its own run, then one metrics table and the verdict.

    runs/<name>-<timestamp>/
      experiment.yaml        the resolved experiment: claim and rule, seeds, each arm's config
      provenance.json        driftlab version and git commit, machine, libraries, command
      status.json            state: running | complete | failed
      <arm>/seed-<s>/        one run directory per arm and seed (see ``runs.rundir``)
      metrics.parquet        every run's rows, with ``arm`` and ``seed`` columns (and, with a
                             ``self_probe``, its rows at every checkpoint of its two arms)
      verdict.json           the claim's verdict, computed from metrics.parquet only
      looks.json             with --seeds auto: the design, and each look's seeds, tests and stop

Runs go seed by seed, arms in file order; with a prefix cache, an arm whose first stages match an
earlier run's starts at the end of them (the hit is reported and written to the run's
``prefix.json``). A killed experiment continues with ``--resume``: complete runs are kept, the
interrupted one resumes from its last checkpoint, the rest start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from driftlab.config import ExperimentConfig, dump_config
from driftlab.errors import DataError
from driftlab.experiments.claims import Verdict, evaluate
from driftlab.experiments.prefix import PrefixCache, PrefixHit
from driftlab.experiments.runner import Reporter, execute
from driftlab.experiments.spec import Experiment, check_measurable
from driftlab.runs.atomic import atomic_write, read_json, write_json, write_text
from driftlab.runs.metrics import SCHEMA, read_metrics
from driftlab.runs.provenance import provenance
from driftlab.runs.rundir import RunDir, exclusive

LOOKS = "looks.json"


def new_experiment(exp: Experiment, out: str | Path | None = None, base: str | Path = "runs") -> Path:
    root = RunDir.create(base, exp.name, out).root
    new_experiment_files(root, exp)
    return root


def new_experiment_files(root: Path, exp: Experiment) -> None:
    """An experiment directory's record: the resolved experiment, provenance, status running."""
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "experiment.yaml", exp.dump())
    write_json(root / "provenance.json", provenance())
    write_json(root / "status.json", {"state": "running", "kind": "experiment", "name": exp.name})


def run_dir(root: Path, arm: str, seed: int) -> RunDir:
    return RunDir(root / arm / f"seed-{seed}")


class Events:
    """What the experiment tells its caller besides each run's own progress."""

    def run_start(self, arm: str, seed: int, index: int, total: int, run: RunDir) -> Reporter | None: ...
    def prefix_hit(self, hit: PrefixHit) -> None: ...
    def run_done(self, arm: str, seed: int, skipped: bool) -> None: ...


def run_experiment(root: Path, exp: Experiment, events: Events | None = None,
                   cache: PrefixCache | None = None,
                   on_step: Callable[[int, int, float], None] | None = None) -> Verdict | None:
    """Run (or continue) every arm × seed, then write the combined metrics and the verdict; in an
    experiment planned in looks (``plan_looks``), seeds look by look until the verdict stops them.
    One process at a time: a second one on the same directory is a one-line error (``exclusive``)."""
    check_measurable(exp)
    with exclusive(root):
        if (root / LOOKS).exists():
            return _run_looks(root, exp, events or Events(), cache, on_step)
        return _run_all(root, exp, events or Events(), cache, on_step)


def plan_looks(root: Path, exp: Experiment) -> None:
    """Mark a new experiment as run in its design's looks (``driftlab run --seeds auto``): its seed
    list holds the last look's seeds, and ``looks.json`` the history of the looks run so far."""
    if exp.claim is None:
        raise DataError(f"{root}: --seeds auto: the experiment has no claim, so no verdict to stop on")
    looks = exp.claim.design.looks
    if len(exp.seeds) != looks[-1]:
        raise DataError(f"--seeds auto: {len(exp.seeds)} seeds planned, the design's last look is {looks[-1]}")
    write_json(root / LOOKS, {"design": exp.claim.design.model_dump(mode="json"), "looks": []})


def read_looks(root: Path) -> list[dict] | None:
    """The looks run so far (None: not an experiment planned in looks)."""
    path = Path(root) / LOOKS
    return read_json(path, DataError, "unreadable")["looks"] if path.exists() else None


def _run_looks(root: Path, exp: Experiment, events: Events, cache: PrefixCache | None,
               on_step: Callable[[int, int, float], None] | None) -> Verdict | None:
    """Look after look: the runs of the look's seeds (complete ones kept), the verdict on them, and
    stop when it says so (decided, futile, or the last look). Deterministic, so a resumed experiment
    retraces the looks it had judged and continues where it was killed."""
    plan = read_json(root / LOOKS, DataError, "unreadable")
    started, verdict = time.perf_counter(), None
    history: list[dict] = []
    for n in exp.claim.design.looks:
        look = replace(exp, seeds=exp.seeds[:n])
        _run_runs(root, look, events, cache, on_step)
        history.append({"seeds": n})
        write_json(root / LOOKS, {**plan, "looks": history})  # evaluate reads the looks so far
        verdict = finish_experiment(root, look, time.perf_counter() - started, final=False)
        history[-1] = {"seeds": n, "outcome": verdict.outcome, "stop": verdict.look["stop"],
                       "nominal_alpha": verdict.look["nominal_alpha"],
                       "tests": [{"name": t.name, "role": t.role, "outcome": t.outcome, "value": t.estimate.value,
                                  "p_for": t.p_for(), "p_against": t.p_against()} for t in verdict.tests]}
        write_json(root / LOOKS, {**plan, "looks": history})
        if verdict.look["stop"] != "continue":
            break
    assert verdict is not None
    verdict.looks = history
    write_json(root / "verdict.json", verdict.record())
    write_json(root / "status.json", {"state": "complete", "kind": "experiment", "name": exp.name})
    return verdict


def _run_all(root: Path, exp: Experiment, events: Events, cache: PrefixCache | None,
             on_step: Callable[[int, int, float], None] | None) -> Verdict | None:
    started = time.perf_counter()
    _run_runs(root, exp, events, cache, on_step)
    return finish_experiment(root, exp, time.perf_counter() - started)


def _run_runs(root: Path, exp: Experiment, events: Events, cache: PrefixCache | None,
              on_step: Callable[[int, int, float], None] | None) -> None:
    """Every run of ``exp`` (complete ones skipped); a failure marks the experiment failed."""
    runs = exp.runs()
    try:
        for i, (arm, seed, cfg) in enumerate(runs):
            run_one(root, arm, seed, cfg, cache, events, i, len(runs), on_step)
    except BaseException as e:
        write_json(root / "status.json", {"state": "failed", "kind": "experiment", "name": exp.name,
                                          "error": f"{type(e).__name__}: {e}"})
        raise


def run_one(root: Path, arm: str, seed: int, cfg: ExperimentConfig, cache: PrefixCache | None,
            events: Events | None = None, index: int = 0, total: int = 1,
            on_step: Callable[[int, int, float], None] | None = None, stop_after: int | None = None) -> bool:
    """Run (or continue) one arm × seed of the experiment in ``root``: nothing if it is complete,
    else from the longest sound cached prefix (a fresh run) or its own last checkpoint. With
    ``stop_after`` k, only its first k stages (a sweep's shared prefix): the run is left resumable
    at that stage boundary. Returns whether it trained anything."""
    events = events or Events()
    run = run_dir(root, arm, seed)
    if (run.root / "status.json").exists() and run.status().get("state") == "complete":
        events.run_done(arm, seed, skipped=True)
        return False
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_config(dump_config(cfg))
    reporter = events.run_start(arm, seed, index, total, run)
    if cache is not None:
        hit = cache.seed(run, cfg)
        if hit is not None:
            events.prefix_hit(hit)
    store = (lambda index, run=run, cfg=cfg: cache.store(run, cfg, index)) if cache is not None else None
    execute(run, cfg, reporter, on_step, store, stop_after=stop_after)
    events.run_done(arm, seed, skipped=False)
    return True


def finish_experiment(root: Path, exp: Experiment, wall_s: float = 0.0, final: bool = True) -> Verdict | None:
    """Once every run is complete: the combined metrics, the verdict, the timings, and (``final``)
    the experiment marked complete (the last write)."""
    try:
        t0 = time.perf_counter()
        combine_metrics(root, exp)
        t1 = time.perf_counter()
        verdict = evaluate(exp, root / "metrics.parquet") if exp.claim is not None else None
        if verdict is not None:
            write_json(root / "verdict.json", verdict.record())
        write_timings(root, exp, {"combine_s": t1 - t0, "verdict_s": time.perf_counter() - t1,
                                  "wall_s": wall_s + time.perf_counter() - t0})
    except BaseException as e:
        write_json(root / "status.json", {"state": "failed", "kind": "experiment", "name": exp.name,
                                          "error": f"{type(e).__name__}: {e}"})
        raise
    if final:
        write_json(root / "status.json", {"state": "complete", "kind": "experiment", "name": exp.name})
    return verdict


def write_timings(root: Path, exp: Experiment, extra: dict) -> None:
    """``timings.json`` at the experiment's root: each run's stages as this process trained them
    (a stage reused from the prefix cache or an earlier process is absent), then the rest.
    Wall-clock facts stay out of metrics.parquet, which must be deterministic."""
    runs = []
    for arm, seed, _ in exp.runs():
        path = run_dir(root, arm, seed).root / "timings.json"
        t = read_json(path, DataError, "unreadable") if path.exists() else {}
        runs.append({"arm": arm, "seed": seed, "wall_s": t.get("wall_s", 0.0), "device": t.get("device"),
                     **{k: t[k] for k in ("setup_s", "data_s", "measure_s", "save_s", "cotrain_s") if k in t},
                     "stages": t.get("stages", [])})
    write_json(root / "timings.json", {"runs": runs, **extra})


def combine_metrics(root: Path, exp: Experiment) -> Path:
    """Every run's rows in one table (runs in experiment order), then the self-probe's rows (read
    from the runs' checkpoints, see ``self_probe``), written atomically."""
    from driftlab.experiments.self_probe import self_probe_table

    tables = []
    for arm, seed, _ in exp.runs():
        path = run_dir(root, arm, seed).metrics_path
        if path.exists():
            tables.append(read_metrics(path).select(SCHEMA.names).cast(SCHEMA))
    if exp.self_probe is not None:
        tables.append(self_probe_table(root, exp))
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    out = root / "metrics.parquet"
    atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    return out


def experiment_state(root: Path) -> str:
    return read_json(root / "status.json", DataError, f"not found; {root} is not a driftlab run directory")["state"]
