"""Integration: a tiny three-stage experiment, end to end, in seconds."""

import duckdb
import pyarrow.parquet as pq
import pytest
import torch

from driftlab.config import load_config
from driftlab.experiments import execute, load_run_config, new_run, summarize
from driftlab.runs import RunDir
from driftlab.world import DOMAIN_NAMES


class Killed(Exception):
    pass


def run_tiny(tmp_path, name, config_path, sets=(), on_step=None):
    cfg = load_config(str(config_path), list(sets))
    run = new_run(cfg, tmp_path / name)
    execute(run, cfg, on_step=on_step)
    return run


def metrics(run):
    return pq.read_table(run.metrics_path).to_pylist()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    import yaml

    from tests.conftest import TINY

    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return tmp / "tiny.yaml", run_tiny(tmp, "ref", tmp / "tiny.yaml")


def test_run_directory_is_complete_and_metrics_are_long_format(reference):
    _, run = reference
    assert run.status()["state"] == "complete"
    assert (run.root / "config.yaml").exists() and (run.tokenizer_dir / "tokenizer.json").exists()
    rows = metrics(run)
    names = {r["metric"] for r in rows}
    assert {"p_aligned", "bits_aligned", "bayes_gap_bits", "bayes_bits", "capability_acc",
            "heldout_loss", "train_loss"} <= names
    # every stage, every checkpoint, every context and domain is measured
    stages = {(r["stage"], r["step"]) for r in rows}
    assert ("pretrain", 0) in stages and ("align", 6) in stages and ("capability", 6) in stages
    domains = {r["domain"] for r in rows if r["metric"] == "p_aligned" and r["context"] == "assistant"}
    assert domains == {*DOMAIN_NAMES, "all"}
    splits = {(r["domain"], r["split"]) for r in rows if r["metric"] == "p_aligned"}
    assert ("harm", "held_out") in splits and ("shutdown", "trained") in splits
    for r in rows:
        if r["metric"] == "p_aligned":
            assert 0.0 < r["value"] < 1.0
    # tokens and global steps increase across stages
    ends = duckdb.sql(f"select stage_index, max(tokens) t, max(global_step) g from '{run.metrics_path}' "
                      "group by stage_index order by stage_index").fetchall()
    assert [e[2] for e in ends] == [12, 18, 24]
    assert ends[0][1] < ends[1][1] < ends[2][1]
    # checkpoints carry their metadata; each names its parent
    meta = run.root / "checkpoints" / "1-align" / "step-0000006.json"
    assert '"parent": "checkpoints/1-align/' in meta.read_text()


def test_summary_is_computed_from_the_metrics(reference):
    _, run = reference
    rows = summarize(run.metrics_path)
    assert [r["stage"] for r in rows] == ["init", "pretrain", "align", "capability"]
    by_stage = {r["stage"]: r for r in rows}
    m = metrics(run)
    expected = next(r["value"] for r in m if r["stage"] == "align" and r["step"] == 6
                    and r["metric"] == "bits_aligned" and r["context"] == "assistant"
                    and r["domain"] == "all" and r["split"] == "trained")
    assert by_stage["align"]["bits_trained"] == pytest.approx(expected)


def test_same_seed_identical_metrics_other_seed_different(reference, tmp_path):
    config, run = reference
    again = run_tiny(tmp_path, "again", config)
    assert metrics(again) == metrics(run)
    other = run_tiny(tmp_path, "other", config, ["seed=1"])
    def bits(rows):
        return [r["value"] for r in rows if r["metric"] == "bits_aligned"]

    assert bits(metrics(other)) != bits(metrics(run))


def kill_and_resume(cfg, out, kill_at):
    """Run ``cfg`` into ``out``, kill it in-process after training step ``kill_at`` = (stage index,
    step), then resume it from its directory; the resumed run."""

    def killer(stage_index, step, loss):
        if (stage_index, step) == kill_at:
            raise Killed

    killed = new_run(cfg, out)
    with pytest.raises(Killed):
        execute(killed, cfg, on_step=killer)
    assert killed.status()["state"] == "failed"
    resumed = RunDir(killed.root)
    execute(resumed, load_run_config(resumed))
    assert resumed.status()["state"] == "complete"
    return resumed


@pytest.mark.parametrize("kill_at", [(0, 1), (0, 9), (1, 6), (2, 2)])
def test_killed_and_resumed_run_has_identical_metrics(reference, tmp_path, kill_at):
    config, run = reference
    resumed = kill_and_resume(load_config(str(config)), tmp_path / "killed", kill_at)
    assert metrics(resumed) == metrics(run)


def test_threads_come_from_the_config_then_the_environment(monkeypatch):
    from driftlab.errors import ConfigError
    from driftlab.experiments.runner import default_threads

    monkeypatch.setenv("DRIFTLAB_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("DRIFTLAB_THREADS")
    assert default_threads() >= 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DRIFTLAB_THREADS", bad)
        with pytest.raises(ConfigError, match="DRIFTLAB_THREADS"):
            default_threads()


CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_a_run_on_cuda_measures_what_the_cpu_run_does(reference, tmp_path):
    """Every tensor, generator and hook follows the model onto the GPU: the same run on CUDA ends
    with the CPU run's measurements (to float error, not bit for bit)."""
    config, run = reference
    gpu = run_tiny(tmp_path, "cuda", config, ["device=cuda"])
    cpu_rows, gpu_rows = metrics(run), metrics(gpu)
    assert len(cpu_rows) == len(gpu_rows)
    for a, b in zip(cpu_rows, gpu_rows):
        assert (a["metric"], a["step"], a["context"], a["domain"], a["split"]) == \
               (b["metric"], b["step"], b["context"], b["domain"], b["split"])
        if a["value"] is not None and a["value"] == a["value"]:
            assert abs(a["value"] - b["value"]) <= 0.02 * max(1.0, abs(a["value"])), a


@pytest.mark.skipif(CUDA, reason="a machine without CUDA")
def test_a_device_that_is_not_here_is_a_one_line_error(tiny_config, tmp_path):
    from tests.conftest import run_cli

    result = run_cli("run", str(tiny_config), "--out", str(tmp_path / "x"), "--set", "device=cuda", "--no-report")
    assert result.returncode == 2, result.stderr + result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "device" in message and "no CUDA device" in message, message
    assert "Traceback" not in result.stderr
    result = run_cli("run", str(tiny_config), "--out", str(tmp_path / "y"), "--set", "device=tpu", "--no-report")
    assert result.returncode == 2 and "device" in result.stderr and "Traceback" not in result.stderr, result.stderr
