"""driftlab sweep and driftlab query: a grid on local worker processes and on a local Ray cluster
gives the metrics of each point run alone; killed workers and drivers resume to the same rows; a
bad point fails alone; the sweep file is checked like a preset."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from driftlab.errors import ConfigError
from driftlab.sweep.driver import plan
from driftlab.sweep.spec import load_sweep
from tests.conftest import TINY, _shared_dir, run_cli, same_record
from tests.experiments.test_study import experiment_dict
from tests.test_cli import assert_one_line_error

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "lr-seed.yaml"


def example_grid() -> dict:
    """The shipped example sweep (2 learning rates x 2 seeds, at its base's quick size) with a
    learning rate the config rejects added."""
    grid = yaml.safe_load(EXAMPLE.read_text())
    grid["base"] = str((EXAMPLE.parent / grid["base"]).resolve())
    grid["quick"] = True
    grid["axes"]["lr"]["values"].append(-1.0)
    return grid


def rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **extra}


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """The grid on local worker processes, once per session (under pytest-xdist the first worker to
    need it runs it, the other waits): (folder, sweep directory, the finished process)."""
    import fcntl

    tmp = _shared_dir("sweep") or tmp_path_factory.mktemp("sweep")
    done = tmp / "result.json"
    with open(tmp / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            (tmp / "grid.yaml").write_text(yaml.safe_dump(example_grid(), sort_keys=False))
            result = run_cli("sweep", str(tmp / "grid.yaml"), "--out", str(tmp / "local"), "--workers", "1")
            done.write_text(json.dumps({"args": result.args, "code": result.returncode, "stdout": result.stdout,
                                        "stderr": result.stderr}))
        record = json.loads(done.read_text())
    return tmp, tmp / "local", subprocess.CompletedProcess(record["args"], record["code"], record["stdout"],
                                                           record["stderr"])


GOOD = ["lr=0.001/seed=0", "lr=0.001/seed=1", "lr=0.003/seed=0", "lr=0.003/seed=1"]


@pytest.mark.slow
def test_a_bad_point_fails_alone_and_the_sweep_ends_with_its_error(grid):
    tmp, root, result = grid
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert "lr=-1.0/seed=0" in result.stderr and "stages.2.lr: Input should be greater than 0" in result.stderr
    status = json.loads((root / "status.json").read_text())
    assert status["state"] == "failed"
    assert sorted(f["point"] for f in status["failures"]) == ["lr=-1.0/seed=0", "lr=-1.0/seed=1"]
    for point in GOOD:  # the others ran to the end
        assert json.loads((root / point / "status.json").read_text())["state"] == "complete"
    assert not (root / "lr=-1.0").exists()
    assert "4 of 6 points complete" in result.stdout
    # each pair of points that differ in lr shares pre-training and alignment: trained once
    assert result.stdout.count("done prefix (2 stages") == 2


@pytest.mark.slow
def test_each_point_equals_driftlab_run_alone_and_the_ray_backend_equals_both(grid):
    tmp, root, _ = grid
    for point in GOOD[::3]:  # two points, alone, without the cache
        alone = run_cli("run", str(root / point / "experiment.yaml"), "--out", str(tmp / "alone" / point),
                        "--no-cache", "--no-report")
        assert alone.returncode == 0, alone.stderr[-2000:]
        assert same_record(rows(root / point / "metrics.parquet"), rows(tmp / "alone" / point / "metrics.parquet"))
    ray = subprocess.run([sys.executable, "-m", "driftlab.cli", "sweep", str(tmp / "grid.yaml"), "--backend", "ray",
                          "--out", str(tmp / "ray"), "--workers", "1", "--no-report"], capture_output=True, text=True,
                         timeout=900, env=env_with(DRIFTLAB_PREFIX_CACHE=str(tmp / "ray-cache")))
    assert ray.returncode == 1, ray.stderr[-3000:]  # the same bad point
    assert "· ray, 1 at once, 1 thread each" in ray.stdout
    for point in GOOD:
        assert same_record(rows(root / point / "metrics.parquet"), rows(tmp / "ray" / point / "metrics.parquet"))
    assert (tmp / "ray" / GOOD[0] / "experiment.yaml").read_text() == (root / GOOD[0] / "experiment.yaml").read_text()
    # a run no node can take would wait forever: refused when the cluster is joined
    big = {**example_grid(), "resources": {"cpus": 4096}}
    (tmp / "big.yaml").write_text(yaml.safe_dump(big))
    assert_one_line_error(run_cli("sweep", str(tmp / "big.yaml"), "--backend", "ray", "--out", str(tmp / "big")),
                          "resources.cpus: 4096 CPUs per run", "no node of the Ray cluster")


def test_query_reads_a_sweep_an_experiment_and_a_run_where_they_lie(grid):
    tmp, root, _ = grid
    sql = ("select lr, seed, count(*) as n, typeof(lr) as t, typeof(seed) as ts from metrics "
           "group by lr, seed order by lr, seed")
    out = run_cli("query", str(root), sql, "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [(r["lr"], r["seed"]) for r in got] == [(0.001, 0), (0.001, 1), (0.003, 0), (0.003, 1)]
    assert {r["t"] for r in got} == {"DOUBLE"} and {r["ts"] for r in got} == {"BIGINT"}  # numbers, not text
    assert [r["n"] for r in got] == [len(rows(root / p / "metrics.parquet")) for p in GOOD]
    one = root / GOOD[1]
    csv = run_cli("query", str(one), "select count(*) as n, min(seed) as s from metrics", "--csv")
    assert csv.returncode == 0 and csv.stdout.split() == ["n,s", f"{len(rows(one / 'metrics.parquet'))},1"]
    run = run_cli("query", str(one / "main" / "seed-1"), "select count(*) as n from verdicts")
    assert run.returncode == 0 and "0" in run.stdout
    assert_one_line_error(run_cli("query", str(root), "select nope from metrics"), "query:", "nope")
    assert_one_line_error(run_cli("query", str(tmp / "nowhere"), "select 1"), "nowhere: not found")


def test_a_sweep_directory_holds_one_sweep_and_continues_in_place(grid):
    tmp, root, _ = grid
    again = run_cli("sweep", str(root), "--no-report")  # every sound point complete: nothing runs
    assert again.returncode == 1 and "0 runs to go (4 complete)" in again.stdout, again.stdout
    grid = example_grid()
    other = {**grid, "axes": {**grid["axes"], "seed": [0, 2]}}
    (tmp / "other.yaml").write_text(yaml.safe_dump(other))
    assert_one_line_error(run_cli("sweep", str(tmp / "other.yaml"), "--out", str(root)), "holds another sweep")


def test_the_sweep_file_is_checked_like_a_preset(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))

    def bad(data: dict, *fragments: str) -> None:
        (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", **data}))
        with pytest.raises(ConfigError) as e:
            load_sweep(tmp_path / "s.yaml")
        for f in fragments:
            assert f in str(e.value), str(e.value)
        assert "\n" not in str(e.value)

    bad({"axes": {"stages.2.lrr": [1e-3]}}, "s.yaml: axes.stages.2.lrr:", "not a key")
    bad({"axes": {"lr": {"key": "stages.9.lr", "values": [1e-3]}}}, "axes.lr: stages.9.lr is not a key")
    bad({"axes": {"seed": [0]}, "sedes": 2}, "s.yaml: sedes: Extra inputs are not permitted")
    bad({"axes": {"seed": [0]}, "seeds": "two"}, "s.yaml: seeds:")
    bad({"axes": {"a": {"x": {"seed": 1}}, "seed": [0, 1]}, "mode": "zip"}, "mode: zip needs axes of one length")
    bad({"axes": {"world.epsilon": ["a/b"]}}, "cannot be a folder name")
    bad({"axes": {"seed": [0]}, "arms": ["nope"]}, "base: arms: no arm 'nope'")
    bad({"axes": {"seed": [0]}, "quick": True, "quick_axes": {"sed": [1]}}, "quick_axes.sed: no axis 'sed'")
    bad({"axes": {}}, "axes:")
    result = run_cli("sweep", str(tmp_path / "s.yaml"))
    assert_one_line_error(result, "s.yaml: axes")
    # zipped axes and labelled blocks: sizes by layers and width, each with its own learning rate
    (tmp_path / "z.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "mode": "zip", "axes": {
        "size": {"small": {"model.d_model": 32}, "large": {"model.d_model": 48, "model.n_layers": 2}},
        "lr": {"key": "stages.2.lr", "values": [1e-3, 2e-3]}}}, sort_keys=False))
    sweep = load_sweep(tmp_path / "z.yaml")
    assert [p.name for p in sweep.points] == ["size=small/lr=0.001", "size=large/lr=0.002"]
    large = sweep.points[1].experiment.arms["main"]
    assert (large.model.n_layers, large.model.d_model, large.stages[2].lr) == (2, 48, 2e-3)
    # the shipped sweeps: the example, and elasticity, whose --quick grid has smaller token levels
    assert [p.name for p in load_sweep(EXAMPLE, quick=True).points] == GOOD
    full, quick = load_sweep("elasticity"), load_sweep("elasticity", quick=True)
    assert [p.name for p in full.points] == [p.name for p in quick.points] and len(full.points) == 9
    def pretrain_steps(sweep):
        return [next(iter(p.experiment.arms.values())).stages[0].steps for p in sweep.points]

    assert pretrain_steps(full) == [60] * 3 + [240] * 3 + [720] * 3
    assert pretrain_steps(quick) == [15] * 3 + [30] * 3 + [60] * 3 and len(full.points[0].experiment.seeds) == 3


def test_prefixes_shared_by_runs_become_tasks_they_wait_for(tmp_path):
    """Four arms: three share pre-training and alignment (one task), the fourth (another world)
    shares nothing; two seeds never share."""
    data = experiment_dict(seeds=2)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "exp.yaml", "axes": {"stages.2.lr": [1e-3, 2e-3]}}))
    sweep = load_sweep(tmp_path / "s.yaml")
    tasks = plan(sweep, tmp_path / "out", cached=True)
    prefixes = [t for t in tasks if t.prefix]
    runs = [t for t in tasks if not t.prefix]
    assert len(runs) == 2 * 4 * 2
    # per seed: the three arms of both points share stages 0-1 (one task, 2 stages); the bad-prior
    # arm's two points share them too (another world: another task)
    assert sorted((t.stop_after, t.arm, t.seed) for t in prefixes) == [
        (2, "capability", 0), (2, "capability", 1), (2, "capability_bad_prior", 0), (2, "capability_bad_prior", 1)]
    by_id = {t.id: t for t in prefixes}
    for t in runs:
        assert len(t.deps) == 1 and by_id[t.deps[0]].seed == t.seed
        assert (by_id[t.deps[0]].arm == "capability_bad_prior") == (t.arm == "capability_bad_prior")
    assert all(not t.prefix and not t.deps for t in plan(sweep, tmp_path / "out", cached=False))


def _wait_for(predicate, what: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _lock_pid(run: Path) -> int:
    return json.loads((run / ".lock").read_text())["pid"]


@pytest.mark.slow
def test_killed_worker_and_killed_driver_resume_to_the_rows_of_an_uninterrupted_run(tmp_path):
    """One point, four arms: the worker is killed inside the third arm (the failure is recorded and
    the fourth goes on), a second driver is refused, the driver is killed inside the fourth arm; the
    same sweep again completes with every row once, equal to the point run alone."""
    data = experiment_dict(seeds=1)  # arms in this order: capability, more_alignment, more_pretraining, bad prior
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "exp.yaml", "axes": {"stages.2.lr": [1e-3]},
                                                     "resources": {"cpus": 1}}))
    out = tmp_path / "out"
    point = out / "stages.2.lr=0.001"
    env = env_with(DRIFTLAB_PREFIX_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "driftlab.cli", "sweep", str(tmp_path / "s.yaml"), "--out", str(out),
           "--retries", "0", "--workers", "1", "--no-report"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().strip(), "the driver's lock")
    second = run_cli("sweep", str(tmp_path / "s.yaml"), "--out", str(out))
    assert_one_line_error(second, "in use by another driftlab process", f"pid {driver.pid}")
    third, fourth = point / "more_pretraining" / "seed-0", point / "capability_bad_prior" / "seed-0"
    _wait_for(lambda: any(third.glob("checkpoints/2-*/step-*.json")), "the third arm's last stage")
    os.kill(_lock_pid(third), signal.SIGKILL)
    _wait_for(lambda: any(fourth.glob("checkpoints/1-*/step-*.json")), "the fourth arm's alignment")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    status = json.loads((out / "status.json").read_text())
    assert [(f["task"], f["error"]) for f in status["failures"]] == [
        ("stages.2.lr=0.001/more_pretraining/seed-0", "worker killed by SIGKILL")]
    time.sleep(1.0)  # the worker dies with its driver
    assert json.loads((fourth / "status.json").read_text())["state"] != "complete"
    assert json.loads((third / "status.json").read_text())["state"] != "complete"
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs to go (2 complete)" in again.stdout
    alone = run_cli("run", str(point / "experiment.yaml"), "--out", str(tmp_path / "alone"), "--no-cache",
                    "--no-report")
    assert alone.returncode == 0, alone.stderr[-2000:]
    got, want = rows(point / "metrics.parquet"), rows(tmp_path / "alone" / "metrics.parquet")
    assert len(got) == len(want) and same_record(got, want)
    assert json.loads((point / "verdict.json").read_text()) == json.loads(
        (tmp_path / "alone" / "verdict.json").read_text())
    verdicts = run_cli("query", str(out), "select claim, outcome, seeds from verdicts", "--json")
    assert json.loads(verdicts.stdout) == [{"claim": "reversion", "outcome": json.loads(
        (point / "verdict.json").read_text())["outcome"], "seeds": 1}]



def test_the_sweep_report_renders_every_point_and_a_figure_per_axis(grid, tmp_path):
    from tests.report.test_report import render

    _, root, result = grid
    assert f"report: {root / 'report.html'}" in result.stdout.replace("\n", "")
    page = root / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    dom, shot = render(page, tmp_path)
    table = dom[dom.index('id="grid"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + 6  # a header and every point, the two the config rejected included
    assert table.count("config error: ") == 2 and table.count(">complete<") == 4  # no claim: no verdict
    for point in GOOD:  # each sound point's assistant bits at its end, as driftlab query gives them
        lr, seed = (v.split("=")[1] for v in point.split("/"))
        end = rows(root / point / "metrics.parquet")
        last = max(r["global_step"] for r in end)
        value = next(r["value"] for r in end if r["global_step"] == last and r["metric"] == "bits_aligned"
                     and r["context"] == "assistant" and r["domain"] == "all" and r["split"] == "all")
        assert f"<td>{lr}</td><td>{seed}</td><td>complete</td><td>{value:+.2f}</td>" in table
    # bits and capability against lr (the seed axis is pooled: intervals over its two seeds)
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom)) == 2
    assert "bits aligned (assistant) vs lr" in dom and "vs seed" not in dom
    ink = (shot.mean(axis=2) < 0.9).mean()
    assert shot.std() > 0.05 and ink > 0.01, (shot.std(), ink)  # a table and two figures, not a blank page
