"""Later training from YAML on the tiny model: poisoned alignment, a narrow misaligned fine-tune and
DPO in one run, with the triggered context, distance splits and an exact resume."""

import duckdb
import pytest
import yaml

from driftlab.config import load_config
from driftlab.experiments import execute, new_run
from tests.conftest import tiny_dict
from tests.experiments.test_runner import kill_and_resume, metrics


def later_config(tmp_path):
    data = tiny_dict()
    data["stages"][1]["data"] = {"source": "poisoned", "n_examples": 64, "p": 0.25, "held_out_domains": ["harm"]}
    data["stages"][2] = {"name": "narrow", "kind": "sft", "data": {"source": "misaligned", "domains": ["honesty"],
                         "n_examples": 32}, "steps": 4, "batch_size": 4, "lr": 1e-3,
                         "checkpoints": {"log": 1, "linear": 1}}
    data["stages"].append({"name": "dpo", "kind": "dpo", "data": {"source": "preferences", "n_examples": 32},
                           "steps": 4, "batch_size": 4, "lr": 1e-3, "beta": 0.2,
                           "checkpoints": {"log": 2, "linear": 1}})
    path = tmp_path / "later.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def later_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("later")
    config = later_config(tmp)
    cfg = load_config(str(config))
    run = new_run(cfg, tmp / "run")
    execute(run, cfg)
    return config, run


def q(run, sql):
    return duckdb.sql(sql.replace("M", f"'{run.metrics_path}'")).fetchall()


def test_every_stage_kind_runs_and_lands_in_the_metrics(later_run):
    _, run = later_run
    assert run.status()["state"] == "complete"
    assert [s for (s,) in q(run, "select distinct stage from M order by stage_index")] == \
        ["pretrain", "align", "narrow", "dpo"]
    # at dpo's first step the policy is its reference: the loss of that step is exactly log 2
    (loss,) = q(run, "select value from M where metric = 'train_loss' and stage = 'dpo' and step = 1")[0]
    assert loss == pytest.approx(0.6931471805599453, rel=1e-5)


def test_trigger_and_distance_slices(later_run):
    _, run = later_run
    contexts = {c for (c,) in q(run, "select distinct context from M where metric = 'bits_aligned'")}
    assert "triggered" in contexts
    splits = {s for (s,) in q(run, "select distinct split from M where metric = 'bits_aligned' and context = 'assistant'")}
    assert {"distance_0", "distance_1", "distance_2"} <= splits
    n = q(run, """select count(*) from M where metric = 'bits_aligned' and context = 'triggered'
                  and domain = 'all' and split = 'all'""")[0][0]
    assert n == q(run, "select count(distinct global_step) from M")[0][0]


@pytest.mark.parametrize("kill_at", [(3, 2)])
def test_killed_in_dpo_and_resumed_gives_the_same_metrics(later_run, tmp_path, kill_at):
    config, run = later_run
    resumed = kill_and_resume(load_config(str(config)), tmp_path / "killed", kill_at)
    assert metrics(resumed) == metrics(run)


def test_gated_misbehaviour_is_measured(tmp_path):
    data = tiny_dict()
    data["world"]["gated_share"] = 0.3
    data["world"]["gated_level"] = 1
    cfg = load_config(str(write_yaml(tmp_path, data)))
    run = new_run(cfg, tmp_path / "gated")
    execute(run, cfg)
    rows = q(run, """select global_step, max(value) filter (metric = 'gated_success'),
        max(value) filter (metric = 'gated_solved'), max(value) filter (metric = 'p_aligned' and context = 'gated'
        and domain = 'all' and split = 'all') from M group by all""")
    assert len(rows) == q(run, "select count(distinct global_step) from M")[0][0]
    for _, success, solved, p_al in rows:
        assert 0 <= success <= min(solved, 1 - p_al) + 1e-9  # success needs both the choice and the answer


def write_yaml(tmp_path, data):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_word_in_the_trigger_names_the_key(tmp_path):
    from tests.test_cli import assert_one_line_error, run_cli

    data = tiny_dict()
    data["measure"]["trigger"] = "today is zebra ."
    result = run_cli("run", str(write_yaml(tmp_path, data)), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "measure.trigger: unknown word 'zebra'")
