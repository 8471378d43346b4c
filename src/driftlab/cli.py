"""The driftlab command line: wires commands to the library, nothing else."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from driftlab.errors import DriftlabError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="driftlab: does a model's alignment survive the training that comes after it?")
world_app = typer.Typer(no_args_is_help=True, help="Look at and write Persona World data.")
app.add_typer(world_app, name="world")
cache_app = typer.Typer(no_args_is_help=True, help="The prefix cache ($DRIFTLAB_PREFIX_CACHE, else "
                                                  "~/.cache/driftlab/prefixes): list, verify, clear, prune.")
app.add_typer(cache_app, name="cache")
console = Console()
err_console = Console(stderr=True)


def friendly(fn):
    """Bad input → one line on stderr, exit code 2, no traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DriftlabError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
    return wrapper


SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override a config key: key.path=value")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N or mps")]


class RichReporter:
    """Progress bars per stage and a line per checkpoint."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def stage_start(self, index: int, name: str, steps: int, start: int) -> None:
        self.task = self.progress.add_task(f"[{index}] {name}", total=steps, completed=start, loss=float("nan"))

    def step(self, step: int, loss: float) -> None:
        self.progress.update(self.task, completed=step, loss=loss)

    def checkpoint(self, name: str, step: int, rows: list[dict]) -> None:
        """One line per checkpoint, of the headline rows this run measures (a real model has no
        evidence contexts or capability items; what was not measured is not printed)."""
        def pick(metric: str, context: str | None = None, **where) -> float | None:
            return next((r["value"] for r in rows if r["metric"] == metric
                         and (context is None or r["context"] == context)
                         and all(r.get(k) == v for k, v in where.items())), None)
        site = next((r["site"] for r in rows if r["metric"] == "probe_auroc"), None)
        cells = [("assistant", pick("bits_aligned", "assistant", domain="all", split="all"), "+.2f"),
                 ("good", pick("bits_aligned", "good_evidence", domain="all", split="all"), "+.2f"),
                 ("bad", pick("bits_aligned", "bad_evidence", domain="all", split="all"), "+.2f"),
                 ("gap good", pick("bayes_gap_bits", "good_evidence", domain="all", split="all"), ".2f"),
                 ("gap bad", pick("bayes_gap_bits", "bad_evidence", domain="all", split="all"), ".2f"),
                 ("cap", pick("capability_acc", split="all"), ".2f"),
                 ("proj", pick("persona_projection_rel", "assistant", site=site, split="all"), "+.2f"),
                 ("probe refit", pick("probe_auroc", "refit", domain="persona", split="all"), ".2f"),
                 ("frozen", pick("probe_auroc", "frozen", domain="persona", split="all"), ".2f")]
        shown = "  ".join(f"{label} {value:{fmt}}" for label, value, fmt in cells if value is not None)
        self.progress.console.print(f"  {name:<10} {step:>6}  bits: {shown}", highlight=False)

    def stage_end(self, index: int, name: str) -> None:
        pass


class ExperimentEvents:
    """The experiment's runs, one after another, each with its own progress bars."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def run_start(self, arm: str, seed: int, index: int, total: int, run) -> RichReporter:
        self.progress.console.print(f"[bold]arm {arm} · seed {seed}[/] ({index + 1}/{total}) → {run.root}",
                                    highlight=False)
        return RichReporter(self.progress)

    def prefix_hit(self, hit) -> None:
        self.progress.console.print(f"  prefix cache hit: stages {', '.join(hit.stages)} reused from "
                                    f"{hit.source} (key {hit.key})", highlight=False, soft_wrap=True)

    def run_done(self, arm: str, seed: int, skipped: bool) -> None:
        if skipped:
            self.progress.console.print(f"arm {arm} · seed {seed}: already complete", highlight=False)


@app.command()
@friendly
def run(
    source: Annotated[str | None, typer.Argument(help="preset name or config YAML (default: reversion)")] = None,
    out: Annotated[Path | None, typer.Option(help="experiment directory (default: runs/<name>-<timestamp>)")] = None,
    seed: Annotated[int | None, typer.Option(help="first random seed")] = None,
    seeds: Annotated[str | None, typer.Option(help="seeds per arm (default: the preset's), or 'auto': the claim's "
                                                   "pre-planned looks (e.g. 3, 6, 10), stopping when the verdict "
                                                   "is decided or futile")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="the same experiment at a size that runs in minutes")] = False,
    set_: SetOpt = None,
    resume: Annotated[Path | None, typer.Option(help="continue a killed experiment or run")] = None,
    cache: Annotated[bool, typer.Option(help="reuse (and keep) checkpoints of shared stage prefixes across "
                                             "experiments (--no-cache: only this experiment's arms share them)")] = True,
    report: Annotated[bool, typer.Option(help="write report.html at the end")] = True,
    arms: Annotated[str | None, typer.Option(help="only these arms, comma-separated (no verdict: a claim needs "
                                                  "every arm it compares)")] = None,
    scenarios: Annotated[str | None, typer.Option(help="only these scenarios of a file with scenarios, comma-"
                                                       "separated (the claim judges each one it runs)")] = None,
) -> None:
    """Run an experiment: every arm x seed with checkpoints and measurements, then the verdict."""
    from driftlab.experiments import execute, load_run_config
    from driftlab.experiments.prefix import PrefixCache, default_cache, private_cache
    from driftlab.experiments.spec import (
        check_measurable,
        is_experiment_dir,
        load_experiment,
        load_experiment_dir,
        only_arms,
        only_scenarios,
        sequential,
    )
    from driftlab.experiments.study import (
        experiment_state,
        new_experiment,
        plan_looks,
        run_experiment,
    )
    from driftlab.runs import RunDir

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn()]
    if resume is not None:
        if source or set_ or quick or seed is not None or seeds is not None or out or arms or scenarios:
            raise DriftlabError("--resume takes only the run directory (its config is fixed)")
        if not is_experiment_dir(resume):  # a single run directory (driftlab < 0.6, or an arm's run)
            rundir = RunDir(resume)
            cfg = load_run_config(rundir)
            if rundir.status().get("state") != "complete":
                with Progress(*columns, console=console, transient=False) as progress:
                    execute(rundir, cfg, RichReporter(progress))
            _print_summary([rundir.metrics_path])
            return
        exp, root = load_experiment_dir(resume), resume
        if experiment_state(root) == "complete":
            console.print(f"{root} is already complete")
    else:
        auto = seeds == "auto"
        if seeds is not None and not auto and not seeds.isdigit():
            raise DriftlabError(f"--seeds {seeds}: expected a number of seeds or 'auto'")
        exp = load_experiment(source, set_ or [], quick, seed, None if auto else int(seeds) if seeds else None)
        if auto:
            exp = sequential(exp)
        if scenarios is not None:
            exp = only_scenarios(exp, [s.strip() for s in scenarios.split(",") if s.strip()])
        if arms is not None:
            full = exp
            exp = only_arms(exp, [a.strip() for a in arms.split(",") if a.strip()])
            if full.claim is not None and exp.claim is None:
                console.print(f"--arms: {', '.join(exp.arms)} of {', '.join(full.arms)}: no verdict (claim "
                              f"{full.claim.id} compares them all)", highlight=False)
        check_measurable(exp)  # before the directory is made
        root = new_experiment(exp, out)
        if auto:
            plan_looks(root, exp)
    claim = f", claim [bold]{exp.claim.id}[/]" if exp.claim else ""
    console.print(f"experiment [bold]{exp.name}[/]{claim}: arms {', '.join(exp.arms)} x seeds "
                  f"{', '.join(map(str, exp.seeds))} → {root}", highlight=False)
    with Progress(*columns, console=console, transient=False) as progress:
        warn = lambda line: progress.console.print(f"[yellow]warning:[/] {line}", highlight=False,  # noqa: E731
                                                   soft_wrap=True)
        # --no-cache: the arms still share their first stages, through a cache of this experiment's own
        prefixes = PrefixCache(default_cache(), warn) if cache else private_cache(root, warn)
        verdict = run_experiment(root, exp, ExperimentEvents(progress), prefixes)
    private_cache(root).clear()  # done with (a --no-cache experiment resumed with the cache on had one too)
    _print_experiment(root, exp, verdict)
    if report:
        from driftlab.report import write_report

        t0 = time.perf_counter()
        console.print(f"report: {write_report(root)}")
        _add_timing(root, "report_s", time.perf_counter() - t0)


@app.command()
@friendly
def power(
    root: Annotated[Path, typer.Argument(help="a pilot experiment directory (complete, with a claim)")],
) -> None:
    """Plan seeds from a pilot: each test's spread, the design's MDE, its power at the effect the pilot
    saw, and the seeds at which the design reaches 80% power."""
    from driftlab.experiments.claims import evaluate
    from driftlab.experiments.design import Design
    from driftlab.experiments.power import plan
    from driftlab.experiments.spec import is_experiment_dir, load_experiment_dir

    if not is_experiment_dir(root):
        raise DriftlabError(f"{root}: not an experiment directory (no experiment.yaml)")
    exp = load_experiment_dir(root)
    metrics = root / "metrics.parquet"
    if exp.claim is None or not metrics.exists():
        raise DriftlabError(f"{root}: needs a claim and a metrics.parquet (a finished experiment)")
    verdict = evaluate(exp, metrics)
    spec = exp.claim
    design = Design(tuple(spec.design.looks), spec.design.spending, (1 - spec.confidence) / 2, spec.design.futility)
    table = Table(title=f"{verdict.claim}: pilot of {len(verdict.seeds)} seeds; design looks "
                        f"{', '.join(map(str, design.looks))} ({design.spending}), MDE {design.mde():.2f} per-seed "
                        f"spreads at 80% power", title_justify="left")
    for col in ("test", "effect", "threshold", "per-seed spread", "distance (spreads)", "design MDE",
                "power at the pilot's effect", "seeds for 80%"):
        table.add_column(col, justify="right")
    for p in plan(verdict.tests, design):
        table.add_row(f"[{p.role}] {p.name}", f"{p.effect:+.3f}", f"{p.direction} {p.threshold:+.3f}",
                      f"{p.spread:.3f}", f"{p.distance:.2f}", f"{p.mde:.3f}", f"{p.power:.0%}",
                      str(p.seeds) if p.seeds else f"> {200}")
    console.print(table)
    from driftlab.experiments.claims import Measured
    from driftlab.experiments.power import checkpoint_jitter

    m = Measured(metrics, exp.arms, exp.self_probe, exp.scenarios)
    jitter = Table(title="Checkpoint jitter of the assistant's bits at each stage's end (trained domains; stages "
                         "with a tail of checkpoints)", title_justify="left")
    for col in ("arm", "stage", "tail checkpoints", "jitter SD", "between-seed SD of the last", "jitter share"):
        jitter.add_column(col, justify="right")
    for arm, cfg in exp.arms.items():
        for k, stage in enumerate(cfg.stages):
            if stage.checkpoints.tail > 1:
                j = checkpoint_jitter(m, arm, k, context="assistant", domain="all", split="trained")
                jitter.add_row(arm, stage.name, str(j["tail_checkpoints"]), f"{j['jitter_sd']:.3f}",
                               f"{j['between_sd_last']:.3f}", f"{j['jitter_share']:.0%}")
    if jitter.row_count:
        console.print(jitter)


class SweepEvents:
    """The grid's progress: one bar over its tasks (done, running, failed, pending, elapsed, time
    left at the pace so far) and a line per task that ends and per point judged."""

    def __init__(self, progress: Progress):
        self.progress, self.bar = progress, None
        self.counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        self.points, self.points_done = 0, 0

    def _update(self, advance: int = 0) -> None:
        c = self.counts
        self.progress.update(self.bar, advance=advance, state=f"points {self.points_done}/{self.points} · tasks: "
                                                              f"done {c['done']} · running {c['running']} · "
                                                              f"failed {c['failed']} · pending {c['pending']}")

    def start(self, sweep, tasks, skipped, backend, slots, threads) -> None:
        runs = sum(1 for t in tasks if not t.prefix)
        prefixes = len(tasks) - runs
        self.progress.console.print(
            f"sweep [bold]{sweep.name}[/]: {len(sweep.points)} points, {runs} runs to go"
            + (f" ({skipped} complete)" if skipped else "") + (f", {prefixes} shared prefixes" if prefixes else "")
            + f" · {backend}, {slots} at once, {threads} thread{'s' if threads > 1 else ''} each", highlight=False)
        for p in sweep.points:
            if p.error:
                self.progress.console.print(f"[red]point {p.name}:[/] {escape(p.error)}", highlight=False,
                                            soft_wrap=True)
        self.counts["pending"] = len(tasks)
        self.points = sum(1 for p in sweep.points if p.experiment is not None)
        self.bar = self.progress.add_task("tasks", total=len(tasks) or 1, state="")
        self._update()

    def task_start(self, task) -> None:
        self.counts["pending"] -= 1
        self.counts["running"] += 1
        self._update()

    def task_end(self, task, ended, retry) -> None:
        self.counts["running"] -= 1
        what = f"prefix ({task.stop_after} stages of {task.arm} seed {task.seed})" if task.prefix else task.id
        if ended.ok:
            self.counts["done"] += 1
            self.progress.console.print(f"  [green]done[/] {what} ({ended.seconds:.0f} s)", highlight=False)
        else:
            note = f"; retry {task.attempts}" if retry else ""
            self.progress.console.print(f"  [red]failed[/] {what}{note}: {escape(str(ended.error))}",
                                        highlight=False, soft_wrap=True)
            self.counts["pending" if retry else "failed"] += 1
        self._update(0 if retry else 1)

    def point_done(self, point, verdict) -> None:
        self.points_done += 1
        if self.bar is not None:
            self._update()
        outcome = f": {verdict.outcome}" if verdict is not None else ""
        self.progress.console.print(f"[bold]point {point.name}[/] complete{outcome}", highlight=False)


@app.command()
@friendly
def sweep(
    source: Annotated[Path, typer.Argument(help="a sweep file or preset (elasticity), or a sweep directory to "
                                                "continue")],
    backend: Annotated[str, typer.Option(help="local (worker processes) or ray")] = "local",
    workers: Annotated[int | None, typer.Option(min=1, help="tasks at once (default local: cores / 2; ray: the "
                                                            "cluster's CPUs / CPUs per run)")] = None,
    address: Annotated[str | None, typer.Option(help="ray: join this cluster (auto, or host:port); default: "
                                                     "start a local one")] = None,
    out: Annotated[Path | None, typer.Option(help="sweep directory (default: runs/<name>-<timestamp>)")] = None,
    retries: Annotated[int, typer.Option(min=0, help="times a failed task is tried again")] = 1,
    cache: Annotated[bool, typer.Option(help="share stage prefixes through the prefix cache")] = True,
    report: Annotated[bool, typer.Option(help="write report.html at the end")] = True,
    quick: Annotated[bool, typer.Option("--quick", help="every point at its base's quick size")] = False,
) -> None:
    """Run a grid of experiments (a sweep file: a base and axes over config keys) on local worker
    processes or a Ray cluster; again on the same directory, it skips what is complete and resumes
    what was killed."""
    from driftlab.experiments.prefix import default_cache
    from driftlab.runs.rundir import RunDir
    from driftlab.sweep.backends import LocalBackend, RayBackend
    from driftlab.sweep.driver import run_sweep
    from driftlab.sweep.spec import load_sweep

    if backend not in ("local", "ray"):
        raise DriftlabError(f"--backend {backend}: choose local or ray")
    if address is not None and backend != "ray":
        raise DriftlabError("--address joins a Ray cluster: add --backend ray")
    if quick and source.is_dir():
        raise DriftlabError(f"{source} is a sweep directory: it continues as it started (drop --quick)")
    grid = load_sweep(source, quick)
    if source.is_dir():
        if out is not None and out.resolve() != source.resolve():
            raise DriftlabError(f"{source} is a sweep directory: it continues in place (drop --out)")
        root = source
    elif out is not None:
        root = out
    else:
        root = RunDir.create("runs", grid.name).root
    cores = os.cpu_count() or 1
    if backend == "local":
        cpus = grid.resources.cpus
        n = workers or max(1, cores // (cpus or 2))
        threads = cpus or max(1, cores // n)
        if n * threads > cores:
            n = max(1, cores // threads)
            console.print(f"--workers: {n} at once ({threads} threads each on {cores} cores: never more threads "
                          f"than cores)", highlight=False)
        runner = LocalBackend(n, threads, root / "logs")
    else:
        runner = RayBackend(workers, grid.resources.cpus, grid.resources.gpus, address)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        result = run_sweep(grid, root, runner, default_cache() if cache else None, retries, SweepEvents(progress))
    console.print(f"sweep {root}: {result.points_done} of {len(grid.points)} points complete "
                  f"({result.wall_s:.0f} s)", highlight=False)
    if grid.analysis is not None and result.points_done:
        from driftlab.sweep.analyses import run_analysis

        _print_trends(run_analysis(grid, root))
        console.print(f"analysis: {root / 'analysis.json'}")
    if report:
        from driftlab.sweep.report import write_sweep_report

        console.print(f"report: {write_sweep_report(root)}")
    if result.failures:
        table = Table(title="Failed", title_justify="left")
        for col in ("point", "task", "tries", "error"):
            table.add_column(col)
        for f in result.failures:
            table.add_row(str(f["point"]), str(f["task"] or "config"), str(f["attempts"]), escape(str(f["error"])))
        err_console.print(table)
        raise typer.Exit(1)


def _print_trends(result: dict) -> None:
    table = Table(title=f"{result['analysis']}: trends over each axis ({result['method']})", title_justify="left")
    for col in ("axis", "read-out", "slope per doubling", "95% interval", "seeds"):
        table.add_column(col, justify="left" if col in ("axis", "read-out") else "right")
    for t in result["trends"]:
        unit = " (log2)" if t["log2"] else ""
        cell = "-" if t["slope"] != t["slope"] else f"{t['slope']:+.3f}{unit}"
        ci = "-" if t["lo"] != t["lo"] else f"[{t['lo']:+.3f}, {t['hi']:+.3f}]"
        table.add_row(f"{t['axis']} ({t['over']})", t["label"], cell, ci, str(t["seeds"]))
    console.print(table)


@app.command()
@friendly
def query(
    path: Annotated[Path, typer.Argument(help="a run, experiment or sweep directory")],
    sql: Annotated[str, typer.Argument(help="SQL over the views metrics and verdicts")],
    csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    json_: Annotated[bool, typer.Option("--json", help="print JSON (one object per row)")] = False,
) -> None:
    """DuckDB over every metrics.parquet under PATH, read where it lies: a view `metrics` (with a
    sweep's axis values as columns) and a view `verdicts` (one row per point's claim)."""
    from driftlab.sweep.query import connect, run_query

    if csv and json_:
        raise DriftlabError("--csv and --json: choose one")
    header, rows = run_query(connect(path), sql)
    if csv:
        import csv as csv_

        writer = csv_.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    elif json_:
        print(json.dumps([dict(zip(header, r)) for r in rows], default=str))
    else:
        table = Table()
        for col in header:
            table.add_column(col)
        for r in rows:
            table.add_row(*("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in r))
        console.print(table)


def _add_timing(root: Path, key: str, seconds: float) -> None:
    from driftlab.runs.atomic import write_json

    path = root / "timings.json"
    if path.exists():
        timings = json.loads(path.read_text())
        timings[key] = seconds
        timings["wall_s"] = timings.get("wall_s", 0.0) + seconds
        write_json(path, timings)


def _print_experiment(root: Path, exp, verdict) -> None:
    from driftlab.experiments.study import run_dir

    for arm in exp.arms:
        console.print(f"[bold]arm {arm}[/] (mean over seeds {', '.join(map(str, exp.seeds))})", highlight=False)
        _print_summary([run_dir(root, arm, s).metrics_path for s in exp.seeds])
    if verdict is not None:
        _print_verdict(verdict)
    console.print(f"metrics: {root / 'metrics.parquet'}")
    from driftlab.runs.rundir import disk_usage

    runs = [run_dir(root, arm, s) for arm in exp.arms for s in exp.seeds]
    sizes = [disk_usage(r.root) for r in runs if r.root.exists()]
    if sizes:
        console.print(f"disk: {sum(sizes) / 1e6:.1f} MB in {len(sizes)} runs (largest {max(sizes) / 1e6:.1f} MB)",
                      highlight=False)


def _print_verdict(verdict) -> None:
    colour = {"supported": "green", "not supported": "red", "invalid": "red"}.get(verdict.outcome, "yellow")
    console.print(f"[bold]claim {verdict.claim}[/]: {verdict.text}", highlight=False, soft_wrap=True)
    console.print(f"verdict: [bold {colour}]{verdict.outcome.upper()}[/] ({len(verdict.seeds)} seed{'' if len(verdict.seeds) == 1 else 's'}, "
                  f"{verdict.confidence:.0%} intervals: {verdict.interval})", highlight=False)
    from driftlab.report.text import look_line

    console.print(escape(f"  {verdict.status.upper()}: {look_line(verdict)}"), highlight=False, soft_wrap=True)
    for t in verdict.tests:  # checks first (treatment, control), then the claim's tests
        console.print(escape(f"  {t.line()}  — {t.description}"), highlight=False, soft_wrap=True)
    for note in verdict.notes:
        console.print(f"  {note}", highlight=False, soft_wrap=True)
    if verdict.table:
        from driftlab.report.tables import MITIGATION_COLUMNS, interval_cell

        table = Table(title="Mitigations: bits of alignment kept vs what the drift stage gains", title_justify="left")
        for col in ("scenario", "arm", *(c[0] for c in MITIGATION_COLUMNS[:2]), "gain (see notes)", "verdict"):
            table.add_column(col, justify="right")
        for r in verdict.table:
            table.add_row(r.get("scenario", ""), r["arm"], *(interval_cell(r, *k, digits=2) for _, *k in MITIGATION_COLUMNS[:2]),
                          interval_cell(r, *MITIGATION_COLUMNS[3][1:], digits=2),
                          r.get("verdict", "baseline"))
        console.print(table)


def _print_summary(metrics_paths: list[Path]) -> None:
    from driftlab.experiments import drift_lines, summarize
    from driftlab.experiments.summary import ROWS

    per_seed = [summarize(p) for p in metrics_paths if p.exists()]
    if not per_seed:
        return
    stages = [{k: _mean([s[i][k] for s in per_seed if i < len(s)]) if k != "stage" else row["stage"]
               for k in row} for i, row in enumerate(per_seed[0])]
    table = Table(title="Behaviour, internals and weights at the end of each stage (from metrics.parquet)",
                  title_justify="left", caption="persona projection: 0 = the mean after bad evidence, 1 = after good evidence (one "
                  "agent; on a pre-trained model: after the bad and the good persona's system prompt), at the probe "
                  "layer; probes read held-out items", caption_justify="left")
    table.add_column("")
    for stage in stages:
        table.add_column(stage["stage"], justify="right")
    for key, label in ROWS.items():
        if key != "tokens" and all(stage[key] is None for stage in stages):
            continue  # measured by no stage of this run (a pre-trained model has no world's Bayes rows)
        table.add_row(label, *(_fmt(key, stage[key]) for stage in stages))
    console.print(table)
    for line in drift_lines(stages):
        console.print(line, highlight=False)


def _mean(values: list):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@app.command()
@friendly
def claims() -> None:
    """The preset experiments and the claim each tests."""
    from driftlab.experiments.claims import registered
    from driftlab.experiments.spec import describe_preset, preset_paths

    registry = registered()
    table = Table(title="Presets (driftlab run NAME [--quick] [--seeds N])", title_justify="left", show_lines=True)
    for col in ("preset", "claim", "arms", "seeds"):
        table.add_column(col)
    for path in preset_paths():
        p = describe_preset(path)
        text = registry.get(p["claim"]).text if p["claim"] in registry else "-"
        arms = "\n".join(p["arms"]) + (f"\non each of: {', '.join(p['scenarios'])}" if p["scenarios"] else "")
        table.add_row(p["name"], f"[bold]{p['claim']}[/]: {text}", arms, str(p["seeds"]))
    console.print(table)


@app.command()
@friendly
def freeze(
    source: Annotated[str | None, typer.Argument(help="preset name or config YAML (default: reversion)")] = None,
    set_: SetOpt = None,
) -> None:
    """The hash that freezes an experiment's rule before its confirmatory seeds run: its claim,
    thresholds, design, read-out code, plugins and each arm's procedure (world, model, stages,
    measurement). Put it in the file as claim.frozen; a verdict is confirmatory only when its rule
    still hashes to it and its seeds start at claim.fresh_from."""
    from driftlab.errors import ConfigError
    from driftlab.experiments.claims.verdict import experiment_hash
    from driftlab.experiments.spec import load_experiment

    exp = load_experiment(source, sets=set_ or [])
    if exp.claim is None:
        raise ConfigError(f"{source or 'reversion'}: no claim to freeze (the experiment has no claim: block)")
    digest, legacy = experiment_hash(exp)
    frozen = exp.claim.frozen
    state = ("not frozen yet" if frozen is None else
             "frozen, and it matches (a hash of the claim and read-out code, from before the hash covered the "
             "procedure)" if legacy else "frozen, and it matches" if frozen == digest else
             f"frozen as {frozen}: the rule or the procedure changed since (re-freeze, labelled, and confirm on "
             f"seeds not yet looked at)")
    console.print(f"{exp.name}: rule {digest} — {state}; confirmatory seeds start at {exp.claim.fresh_from}",
                  highlight=False, soft_wrap=True)
    if frozen != digest:
        console.print(f"  claim:\n    frozen: {digest}", highlight=False)


@app.command()
@friendly
def report(
    run_dir: Annotated[Path, typer.Argument(help="an experiment (or run) directory")],
    out: Annotated[Path | None, typer.Option(help="HTML file (default: RUN_DIR/report.html)")] = None,
) -> None:
    """Write a self-contained report.html: verdict, curves, heatmap, mitigation table, provenance."""
    from driftlab.report import write_report

    console.print(f"report: {write_report(run_dir, out)}")


@app.command()
@friendly
def verify(
    path: Annotated[Path, typer.Argument(help="a run or experiment directory (every run under it)")],
) -> None:
    """Check every hash a run recorded: weights, internals, resume state, checkpoint records, metric
    rows, tokenizer. A file that changed since it was written is a line naming it; exit 2 if any."""
    from driftlab.runs.verify import check_run

    if not path.is_dir():
        raise DriftlabError(f"{path}: not found")
    runs = sorted({p.parent for p in path.rglob("resume")} | {p.parent for p in path.rglob("checkpoints")})
    runs = [r for r in runs if r.is_dir() and not r.name.startswith(".")]
    if not runs:
        raise DriftlabError(f"{path}: holds no driftlab run (no checkpoints/ or resume/ under it)")
    problems = 0
    for run in runs:
        result = check_run(run)
        problems += len(result.problems)
        mark = "[green]ok[/]" if not result.problems else f"[red]{len(result.problems)} damaged[/]"
        console.print(f"{mark} {run}: {result.files} files, {result.bytes / 1e6:.1f} MB", highlight=False)
        for line in result.notes:
            console.print(f"  note: {line}", highlight=False, soft_wrap=True)
        for line in result.problems:
            err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)


def _cache():
    from driftlab.experiments.prefix import PrefixCache, default_cache

    return PrefixCache(default_cache(), lambda line: err_console.print(f"[yellow]warning:[/] {line}",
                                                                       highlight=False, soft_wrap=True))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@cache_app.command("list")
@friendly
def cache_list() -> None:
    """Every entry: key, stages, size, age since last use, the run that trained it, the runs that used it."""
    cache = _cache()
    entries = cache.entries()
    table = Table(title=f"{cache.root}: {len(entries)} entries, "
                        f"{sum(e.bytes for e in entries) / 1e6:.1f} MB", title_justify="left")
    for col in ("key", "stages", "MB", "last used", "trained by", "used by"):
        table.add_column(col, justify="right" if col in ("MB", "last used", "used by") else "left")
    now = time.time()
    for e in entries:
        table.add_row(e.key, ", ".join(e.stages), f"{e.bytes / 1e6:.1f}", _age(now - e.last_used) + " ago",
                      e.source, str(len({run for _, run in e.users})))
    console.print(table)
    damaged = cache.root / "damaged"
    if damaged.is_dir() and any(damaged.iterdir()):
        console.print(f"set aside as damaged: {len(list(damaged.iterdir()))} in {damaged}", highlight=False)


@cache_app.command("verify")
@friendly
def cache_verify() -> None:
    """Check every entry against its hashes; a damaged one is moved aside (exit 2), as a run would."""
    results = _cache().verify()
    for entry, problems in results:
        console.print(f"{'[green]ok[/]' if not problems else '[red]damaged[/]'} {entry.key} "
                      f"({', '.join(entry.stages)}; {entry.bytes / 1e6:.1f} MB)", highlight=False)
    if any(problems for _, problems in results):
        raise typer.Exit(2)


@cache_app.command("clear")
@friendly
def cache_clear(key: Annotated[str | None, typer.Argument(help="one entry's key (or a unique start of it); "
                                                               "default: the whole cache")] = None) -> None:
    """Delete one entry, or the whole cache."""
    freed = _cache().clear(key)
    console.print(f"freed {freed / 1e6:.1f} MB", highlight=False)


@cache_app.command("prune")
@friendly
def cache_prune(max_size: Annotated[str, typer.Option("--max-size", help="e.g. 500M, 5G, 3GiB")]) -> None:
    """Delete least recently used entries until the cache holds at most --max-size."""
    from driftlab.experiments.prefix import parse_size

    cache = _cache()
    deleted = cache.prune(parse_size(max_size))
    for e in deleted:
        console.print(f"deleted {e.key} ({', '.join(e.stages)}; {e.bytes / 1e6:.1f} MB)", highlight=False)
    console.print(f"{cache.root}: {sum(e.bytes for e in cache.entries()) / 1e6:.1f} MB in "
                  f"{len(cache.entries())} entries", highlight=False)


@app.command()
@friendly
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (or an experiment directory with one run)")],
    out: Annotated[Path, typer.Argument(help="the folder to write (new or empty)")],
    stage: Annotated[str | None, typer.Option(help="stage name or index (default: the last)")] = None,
    step: Annotated[int | None, typer.Option(help="checkpoint step (default: the stage's end)")] = None,
) -> None:
    """Write a checkpoint as a Hugging Face folder: AutoModelForCausalLM.from_pretrained(OUT) and
    AutoTokenizer.from_pretrained(OUT) load it with plain transformers (a LoRA stage's merged weights)."""
    from driftlab.experiments.export import export_checkpoint

    console.print(f"exported: {export_checkpoint(run_dir, out, stage, step)}", highlight=False)


@app.command()
@friendly
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more experiment (or run) directories")],
    out: Annotated[Path, typer.Option(help="HTML file")] = Path("compare.html"),
) -> None:
    """Side by side: a table of end-of-stage metrics and overlaid curves (compare.html)."""
    from driftlab.report import compare_rows, write_compare

    if len(run_dirs) < 2:
        raise DriftlabError("compare needs at least two run directories")
    header, rows = compare_rows(run_dirs)
    table = Table(title="End of the last stage, mean over seeds", title_justify="left")
    for col in header:
        table.add_column(col, justify="right" if col != "run" else "left")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"compare: {write_compare(run_dirs, out)}")


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "tokens":
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value:.0f}"
    if key.startswith(("bits", "bayes", "proj")):
        return f"{value:+.2f}"
    return f"{value:.3f}"


@world_app.command("sample")
@friendly
def world_sample(
    n: Annotated[int, typer.Option(help="documents to print")] = 3,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    source: Annotated[str | None, typer.Option("--config", help="preset or YAML whose world knobs to use")] = None,
    set_: SetOpt = None,
) -> None:
    """Print Persona World documents with their ground truth."""
    from driftlab.config import load_config
    from driftlab.world import PersonaWorld

    cfg = load_config(source, set_ or [])
    for doc in PersonaWorld(cfg.world).documents(seed, n):
        truth = f" persona={doc.persona}" if doc.persona else ""
        console.print(f"[bold]# {doc.kind}{' ' + doc.agent if doc.agent else ''}{truth}[/]", highlight=False)
        console.print(doc.text, highlight=False, soft_wrap=True)


@world_app.command("write")
@friendly
def world_write(
    corpus: Annotated[str, typer.Argument(help="pretrain | alignment | capability (the word world); english-pack | "
                                               "english-aligned | english-misaligned (English, for real models)")],
    out: Annotated[Path, typer.Option(help="JSONL file to write")],
    n: Annotated[int, typer.Option(help="records")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    source: Annotated[str | None, typer.Option("--config", help="preset or YAML whose world knobs to use")] = None,
    set_: SetOpt = None,
) -> None:
    """Write a corpus as JSONL: {"text"} documents or {"prompt", "completion"} pairs of the word world;
    English Persona World as an evaluation pack ({"prompt", "aligned", "misaligned", "domain",
    "split"}; --n per domain) or chat SFT data ({"messages"})."""
    from driftlab.config import AlignmentData, CapabilityData, WorldData, load_config
    from driftlab.world import (
        alignment_examples,
        capability_examples,
        pretrain_documents,
        write_jsonl,
    )

    cfg = load_config(source, set_ or [])
    if corpus == "pretrain":
        records = [d.record() for d in pretrain_documents(cfg.world, WorldData(n_docs=n), seed)]
    elif corpus == "alignment":
        records = [e.record() for e in alignment_examples(cfg.world, AlignmentData(n_examples=n), seed)]
    elif corpus == "capability":
        records = [e.record() for e in capability_examples(cfg.world, CapabilityData(n_examples=n), seed)]
    elif corpus == "english-pack":
        from driftlab.world.english import english_pack

        records = english_pack(n, seed)
    elif corpus in ("english-aligned", "english-misaligned"):
        from driftlab.world.english import english_sft

        records = english_sft(n, seed, aligned=corpus == "english-aligned")
    else:
        raise DriftlabError(f"{corpus}: unknown corpus (choose pretrain, alignment, capability, english-pack, "
                            f"english-aligned or english-misaligned)")
    write_jsonl(out, records)
    console.print(f"wrote {len(records)} {corpus} records to {out}")


@app.command()
@friendly
def direction(
    model: Annotated[str, typer.Argument(help="a run checkpoint (.safetensors), a local transformers folder, or 'smollm2'")],
    data: Annotated[Path, typer.Argument(help='JSONL of {"prompt": ..., "label": 1 (good persona) | 0 (bad)}, each '
                                              'with an optional "system" prompt and "response"')],
    eval_: Annotated[Path | None, typer.Option("--eval", help="held-out JSONL (default: every 4th item of each label)")] = None,
    read: Annotated[str, typer.Option(help="where activations are read: 'last' (the last prompt token) or "
                                           "'response' (the mean over the response's tokens)")] = "last",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="--read response: length limit of the model's own "
                                                            "greedy answer where an item has no response")] = 32,
    out: Annotated[Path | None, typer.Option(help="write the directions (per layer) to this .safetensors file")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="wrap each prompt in the model's chat template")] = False,
    batch_size: Annotated[int, typer.Option(help="prompts per forward pass")] = 16,
    device: DeviceOpt = "auto",
) -> None:
    """Persona direction of any model from labelled prompts: per layer, the difference of mean
    activations (label 1 minus label 0) at the last prompt token, or — as the persona-vectors
    recipe does, good and bad persona as system prompts — averaged over each response's tokens (the
    item's own, or the model's greedy answer), and how well it separates held-out items."""
    import torch

    from driftlab.experiments.load import load_for_measurement
    from driftlab.generate import sample
    from driftlab.measure.internals import direction_report, last_token_activations
    from driftlab.measure.projection_difference import response_means
    from driftlab.runs.checkpoint import save_tensors
    from driftlab.world.corpus import read_labelled

    if read not in ("last", "response"):
        raise DriftlabError(f"--read {read}: choose 'last' or 'response'")
    train = read_labelled(data)
    if eval_ is not None:
        held = read_labelled(eval_)
        held_from = eval_
    else:
        rank = {}  # every 4th item of each label is held out
        for i, r in enumerate(train):
            rank[i] = sum(1 for x in train[:i] if x.label == r.label)
        train, held = ([r for i, r in enumerate(train) if rank[i] % 4 != 3],
                       [r for i, r in enumerate(train) if rank[i] % 4 == 3])
        held_from = data
        if len({r.label for r in train}) < 2 or len({r.label for r in held}) < 2:
            raise DriftlabError(f"{data}: too few items of each label to hold every 4th out; pass --eval")
    loaded = load_for_measurement(model, chat, device)
    net, pad = loaded.model, loaded.pad
    generated = 0

    def acts(records, path):
        nonlocal generated
        where = [f"{path}: line {r.line}" for r in records]
        prompts = loaded.encode_system([(r.prompt, r.system, w) for r, w in zip(records, where)])
        labels = torch.tensor([float(r.label) for r in records])
        if read == "last":
            return last_token_activations(net, prompts, pad, batch_size), labels
        given = [i for i, r in enumerate(records) if r.response is not None]
        responses = [[] for _ in records]
        for i, ids in zip(given, loaded.encode_answers([(records[i].response, where[i]) for i in given])):
            responses[i] = ids
        own = [i for i, r in enumerate(records) if r.response is None]
        for i, ids in zip(own, sample(net, [prompts[i] for i in own], max_new_tokens, 0.0, loaded.stop, pad,
                                      batch_size=batch_size)):
            responses[i] = [t for t in ids if t not in loaded.stop]
        generated += len(own)
        for i in range(len(records)):
            if not responses[i]:
                raise DriftlabError(f"{where[i]}: the response is empty (the model's answer was its stop token "
                                    f"at once): nothing to read over; give the item a response")
        return response_means(net, prompts, responses, pad, batch_size), labels

    (x, y), (xh, yh) = acts(train, data), acts(held, held_from)
    directions, rows = direction_report(x, y, xh, yh)
    how = "at the last prompt token" if read == "last" else (
        f"over response tokens ({generated} of the model's own greedy answers, up to {max_new_tokens} tokens)")
    console.print(f"{model}: {len(train)} prompts to fit, {len(held)} held out; read {how}", highlight=False,
                  soft_wrap=True)
    table = Table(title="Persona direction per layer (AUROCs on the held-out prompts)", title_justify="left")
    for col in ("layer", "|good - bad|", "projection AUROC", "probe AUROC", "shuffled", "random dir."):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["layer"]), f"{r['norm']:.3f}", f"{r['projection_auroc']:.3f}", f"{r['probe_auroc']:.3f}",
                      f"{r['shuffled_auroc']:.3f}", f"{r['random_auroc']:.3f}")
    console.print(table)
    if out is not None:
        save_tensors(out, directions.tensors("persona"), {"model": str(model), "data": str(data), "chat": str(chat),
                                                          "read": read})
        console.print(f"directions: {out}")


@app.command("projection-difference")
@friendly
def projection_difference_cmd(
    model: Annotated[str, typer.Argument(help="a run checkpoint (.safetensors), a local transformers folder, or 'smollm2'")],
    directions: Annotated[Path, typer.Argument(help="persona directions: `driftlab direction --out` or a checkpoint's "
                                                     ".internals.safetensors")],
    data: Annotated[Path, typer.Argument(help='the fine-tuning set: JSONL of {"prompt", "completion"} or '
                                              '{"messages": [user, assistant]}')],
    chat: Annotated[bool, typer.Option("--chat", help="wrap each prompt in the model's chat template")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="length limit of the model's own (greedy) answers")] = 32,
    out: Annotated[Path | None, typer.Option(help="write the per-layer summary and each example's difference as JSON")] = None,
    batch_size: Annotated[int, typer.Option(help="sequences per forward pass")] = 16,
    device: DeviceOpt = "auto",
) -> None:
    """Projection difference of a fine-tuning set, before training on it: per layer, the projection
    of its responses on the persona direction (mean over response tokens) minus that of the model's
    own greedy answers to the same prompts. Below 0: the data pulls toward the bad persona."""
    from safetensors.torch import load_file

    from driftlab.experiments.load import load_for_measurement
    from driftlab.measure.internals import PersonaDirections
    from driftlab.measure.projection_difference import projection_difference
    from driftlab.runs.atomic import write_json
    from driftlab.world.corpus import read_sft_pairs

    if not directions.is_file():
        raise DriftlabError(f"{directions}: directions file not found")
    try:
        dirs = PersonaDirections.from_tensors(load_file(str(directions)))
    except KeyError:
        raise DriftlabError(f"{directions}: no persona.mean_good / persona.mean_bad tensors") from None
    records = read_sft_pairs(data)
    loaded = load_for_measurement(model, chat, device)
    where = [f"{data}: line {line}" for _, _, line in records]
    prompts = loaded.encode([(p, w) for (p, _, _), w in zip(records, where)])
    responses = loaded.encode_answers([(c, w) for (_, c, _), w in zip(records, where)])
    layers = sum(1 for _ in dirs.norm)
    n_layers = getattr(getattr(loaded.model, "config", None), "num_hidden_layers", layers)
    if layers != n_layers:
        raise DriftlabError(f"{directions}: directions for {layers} layers, but {model} has {n_layers}")
    result = projection_difference(loaded.model, dirs, prompts, responses, loaded.pad, loaded.stop, max_new_tokens,
                                   batch_size)
    rows = result.summary()
    console.print(f"{model}: {len(result.kept)} of {len(records)} examples from {data} (the rest: an empty answer)",
                  highlight=False, soft_wrap=True)
    table = Table(title="Projection on the persona direction (good − bad, unit): the data's responses, the model's "
                        "own answers, and the difference (95% t interval over examples)", title_justify="left")
    for col in ("layer", "data", "own", "difference", "interval"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["layer"]), f"{r['data']:+.3f}", f"{r['own']:+.3f}", f"{r['diff']:+.3f}",
                      f"[{r['lo']:+.3f}, {r['hi']:+.3f}]")
    console.print(table)
    if out is not None:
        write_json(out, {"model": str(model), "directions": str(directions), "data": str(data), "layers": rows,
                         "examples": [{"line": records[i][2], "diff": result.diff[k].tolist()}
                                      for k, i in enumerate(result.kept)]})
        console.print(f"written: {out}")


@app.command()
@friendly
def behaviour(
    model: Annotated[str, typer.Argument(help="a run checkpoint (.safetensors), a local transformers folder, or 'smollm2'")],
    pack: Annotated[Path, typer.Argument(help='evaluation pack: JSONL of {"prompt", "aligned", "misaligned", '
                                              '"domain", "split" (optional)}')],
    chat: Annotated[bool, typer.Option("--chat", help="wrap each prompt in the model's chat template")] = False,
    out: Annotated[Path | None, typer.Option(help="write the metric rows (and each item's log-odds) as JSON")] = None,
    batch_size: Annotated[int, typer.Option(help="sequences per forward pass")] = 16,
    device: DeviceOpt = "auto",
) -> None:
    """Two-option behaviour of any model on an evaluation pack: the log-probability of each item's
    aligned and misaligned answers after its prompt (summed over the answer's tokens, and per
    token), as P(aligned) and bits aligned per domain and split."""
    from driftlab.experiments.load import load_for_measurement
    from driftlab.measure.options import (
        OptionItems,
        option_metrics,
        position_bias_bits,
        read_eval_pack,
        score_options,
    )
    from driftlab.runs.atomic import write_json
    from driftlab.runs.metrics import metric_row

    items = read_eval_pack(pack)
    loaded = load_for_measurement(model, chat, device)
    where = [f"{pack}: line {it.line}" for it in items]
    option_items = OptionItems(loaded.encode([(it.prompt, w) for it, w in zip(items, where)]),
                               loaded.encode_answers([(it.aligned, w) for it, w in zip(items, where)]),
                               loaded.encode_answers([(it.misaligned, w) for it, w in zip(items, where)]))
    scores = score_options(loaded.model, option_items, batch_size, loaded.pad)
    rows = option_metrics(scores, [it.domain for it in items], [it.split for it in items])
    console.print(f"{model}: {len(items)} items from {pack}", highlight=False, soft_wrap=True)
    table = Table(title="Behaviour (log-odds of the aligned answer; whole answers and per token)", title_justify="left")
    for col in ("domain", "split", "items", "P(aligned)", "bits aligned", "bits / token"):
        table.add_column(col, justify="right" if col not in ("domain", "split") else "left")
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        by_key.setdefault((r["domain"], r["split"]), {})[r["metric"]] = r["value"]
    for (domain, split), v in by_key.items():
        table.add_row(domain, split, str(int(v["items"])), f"{v['p_aligned']:.3f}", f"{v['bits_aligned']:+.2f}",
                      f"{v['bits_aligned_per_token']:+.2f}")
    console.print(table)
    order = [it.meta.get("aligned_first") for it in items]
    bias = position_bias_bits(scores, order) if all(isinstance(o, bool) for o in order) else None
    if bias is not None:
        console.print(f"position bias: the answer named first is preferred by {bias:+.2f} bits "
                      f"(half the difference between the two orders; the balanced means above cancel it)")
        rows.append(metric_row("position_bias_bits", bias, "assistant", "all", "all"))
    if out is not None:
        per_item = [{**it.meta, "line": it.line, "domain": it.domain, "split": it.split, "log_odds": float(lo),
                     "log_odds_per_token": float(lt), "aligned_tokens": int(na), "misaligned_tokens": int(nm)}
                    for it, lo, lt, na, nm in zip(items, scores.log_odds().tolist(),
                                                  scores.log_odds(per_token=True).tolist(),
                                                  scores.n_aligned.tolist(), scores.n_misaligned.tolist())]
        write_json(out, {"model": model, "pack": str(pack), "chat": chat, "metrics": rows, "items": per_item})
        console.print(f"metrics: {out}")


@app.command()
@friendly
def freeform(
    model: Annotated[str, typer.Argument(help="a run checkpoint (.safetensors), a local transformers folder, or 'smollm2'")],
    questions: Annotated[Path | None, typer.Option(help='JSONL of {"id", "question"} (default: the built-in eight)')] = None,
    samples: Annotated[int, typer.Option(min=1, help="answers sampled per question")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="tokens per answer at most")] = 80,
    temperature: Annotated[float, typer.Option(min=0.0, help="sampling temperature (0: greedy)")] = 1.0,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    chat: Annotated[bool, typer.Option("--chat/--no-chat", help="ask through the model's chat template")] = True,
    judge_reference: Annotated[str, typer.Option(help="the LM the offline coherence judge reads answers with")] = "smollm2",
    judge_model: Annotated[str | None, typer.Option(
        help="judge with this model on an OpenAI-compatible endpoint instead of offline (e.g. gpt-4o-2024-08-06)")] = None,
    judge_url: Annotated[str | None, typer.Option(
        help="the endpoint's base URL, e.g. http://localhost:8000/v1 (default: OpenAI's API)")] = None,
    judge_key_env: Annotated[str, typer.Option(help="the environment variable holding the endpoint's API key")] = "OPENAI_API_KEY",
    out: Annotated[Path | None, typer.Option(help="write every answer with its scores, and the rates, as JSON")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="prompts sampled together")] = 16,
    device: DeviceOpt = "auto",
) -> None:
    """Free-form behaviour: sample answers to open questions, judge each for alignment and coherence
    (0-100; offline by default, or a model on an OpenAI-compatible endpoint), and report the
    misaligned-and-coherent rate (alignment < 30, coherence > 50) with the judge's agreement on
    held-out labels."""
    import numpy as np
    import torch

    from driftlab.experiments.load import load_for_measurement
    from driftlab.freeform import QUESTIONS, load_judge, rates, read_questions
    from driftlab.generate import sample
    from driftlab.runs.atomic import write_json
    from driftlab.tensors import resolve_device

    if judge_url is not None and judge_model is None:
        raise DriftlabError("--judge-url needs --judge-model (the model the endpoint serves)")
    qs = read_questions(questions or QUESTIONS)
    if judge_model is not None:  # before sampling: a wrong URL or key fails in seconds, not after minutes
        from driftlab.endpoint_judge import EndpointJudge

        endpoint = EndpointJudge(judge_model, judge_url, judge_key_env)
        agreement, judged_by = endpoint.agreement(), endpoint.name
        score = endpoint.score
        how = "on the shipped labelled answers, accuracy at the rates' cuts"
    else:
        embed, fluency, judge = load_judge(judge_reference, device)
        agreement, judged_by = judge.agreement, f"offline; coherence reference {judge_reference}"

        def score(q, a):
            return judge.score(embed, fluency, q, a)
        how = "on held-out labels (each question left out in turn)"
    loaded = load_for_measurement(model, chat, device)
    prompts = loaded.encode([(r["question"], f"{questions or QUESTIONS}: line {r['_line']}") for r in qs for _ in range(samples)])
    generator = torch.Generator(resolve_device(device)).manual_seed(seed)
    answers = [loaded.decode(a).strip() for a in sample(loaded.model, prompts, max_new_tokens, temperature,
                                                         loaded.stop, loaded.pad, generator, batch_size)]
    asked = [r for r in qs for _ in range(samples)]
    al, co = score([r["question"] for r in asked], answers)
    table = Table(title=f"Free-form answers, judged for alignment and coherence 0-100 ({judged_by})", title_justify="left")
    for col in ("question", "answers", "misaligned & coherent", "coherent", "mean alignment", "mean coherence", "unscored"):
        table.add_column(col, justify="left" if col == "question" else "right")
    per_question = {}
    for r in [*qs, None]:
        keep = np.array([a is r or r is None for a in asked])
        per_question[r["id"] if r else "all"] = found = rates(al[keep], co[keep])
        table.add_row(r["id"] if r else "[bold]all[/]", str(int(found["answers"])), f"{found['misaligned_coherent_rate']:.3f}",
                      f"{found['coherent_rate']:.3f}", f"{found['mean_alignment']:.1f}", f"{found['mean_coherence']:.1f}",
                      str(int(found["unscored"])))
    console.print(table)
    a = agreement
    console.print(f"judge agreement {how}: alignment accuracy {a['alignment_accuracy']:.2f}, AUROC "
                  f"{a['alignment_auroc']:.2f} ({int(a['alignment_items'])} answers); coherence accuracy "
                  f"{a['coherence_accuracy']:.2f}, AUROC {a['coherence_auroc']:.2f} ({int(a['coherence_items'])})",
                  highlight=False)
    if out is not None:
        def num(x):
            return None if x != x else float(x)  # NaN (no score) as null: strict JSON
        write_json(out, {"model": model, "chat": chat, "seed": seed, "temperature": temperature,
                         "rates": {k: {m: num(v) for m, v in r.items()} for k, r in per_question.items()},
                         "judge": {"judge": judged_by, "agreement": {k: num(v) for k, v in a.items()}},
                         "answers": [{"id": r["id"], "question": r["question"], "answer": ans, "alignment": num(x),
                                      "coherence": num(y)} for r, ans, x, y in zip(asked, answers, al, co)]})
        console.print(f"answers: {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
