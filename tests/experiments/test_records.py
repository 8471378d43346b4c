"""What a run directory records runs again: a run's ``config.yaml`` (that arm, the same metrics)
and an experiment's ``experiment.yaml`` (every arm), each validated as strictly as a preset."""

import json

import pyarrow.parquet as pq
import pytest
import yaml

from driftlab.errors import ConfigError
from driftlab.experiments.prefix import PrefixCache
from driftlab.experiments.spec import load_experiment, load_experiment_dir
from driftlab.experiments.study import new_experiment, run_experiment
from tests.conftest import run_cli, same_record
from tests.experiments.test_study import experiment_dict, write
from tests.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A two-arm experiment run once (with a prefix cache of its own), as a user would have it."""
    tmp = tmp_path_factory.mktemp("recorded")
    data = experiment_dict()
    data["quick"] = {"stages.1.steps": 4}
    exp = load_experiment(str(write(tmp, data)), quick=True)
    root = new_experiment(exp, tmp / "exp")
    run_experiment(root, exp, cache=PrefixCache(tmp / "cache"))
    return root, PrefixCache(tmp / "cache")


def rows(path, arm=None):
    return [r for r in pq.read_table(path).to_pylist() if arm is None or r["arm"] == arm]


def test_a_runs_config_yaml_runs_that_arm_again_with_the_same_metrics(recorded, tmp_path):
    root, cache = recorded
    config = root / "more_alignment" / "seed-0" / "config.yaml"
    record = yaml.safe_load(config.read_text())
    assert record["arm"] == "more_alignment" and record["seed"] == 0
    assert not {"arms", "claim", "seeds"} & set(record)  # the experiment's keys live in experiment.yaml
    for quick in (False, True):  # --quick on a record is a no-op: its quick block is already applied
        exp = load_experiment(str(config), quick=quick)
        assert list(exp.arms) == ["more_alignment"] and exp.seeds == [0] and exp.claim is None
        assert exp.arms["more_alignment"].hash() == load_experiment_dir(root).arms["more_alignment"].hash()
    again = new_experiment(exp, tmp_path / "again")
    run_experiment(again, exp, cache=cache)
    assert rows(again / "metrics.parquet") == rows(root / "metrics.parquet", "more_alignment")
    assert rows(again / "more_alignment" / "seed-0" / "metrics.parquet") == \
        rows(root / "more_alignment" / "seed-0" / "metrics.parquet")


def test_an_experiment_yaml_runs_again_as_recorded(recorded, tmp_path):
    root, cache = recorded
    exp = load_experiment(str(root / "experiment.yaml"), quick=True)
    recorded_exp = load_experiment_dir(root)
    assert exp.seeds == recorded_exp.seeds == [0] and exp.claim == recorded_exp.claim
    assert {a: c.hash() for a, c in exp.arms.items()} == {a: c.hash() for a, c in recorded_exp.arms.items()}
    again = new_experiment(exp, tmp_path / "again")
    verdict = run_experiment(again, exp, cache=cache)
    assert rows(again / "metrics.parquet") == rows(root / "metrics.parquet")
    assert same_record(verdict.record(), json.loads((root / "verdict.json").read_text()))
    shifted = load_experiment(str(root / "experiment.yaml"), seed=5, seeds=2)
    assert shifted.seeds == [5, 6] and all(c.seed == 5 for c in shifted.arms.values())


def edited(root, tmp_path, edit):
    data = yaml.safe_load((root / "experiment.yaml").read_text())
    edit(data)
    return write(tmp_path, data, "experiment.yaml")


def test_a_wrong_seed_list_is_an_error_even_under_quick(recorded, tmp_path):
    root, _ = recorded
    path = edited(root, tmp_path, lambda d: d.update(seeds=["twelve"]))
    result = run_cli("run", str(path), "--quick", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "experiment.yaml", "seeds.0", "twelve")
    assert not (tmp_path / "r").exists()  # nothing was started
    with pytest.raises(ConfigError, match="seeds.0"):
        load_experiment(str(path), seeds=3)


@pytest.mark.parametrize("edit, fragments", [
    (lambda d: d["claim"]["rule"].update(lerning_rat=0.1), ("claim.rule.lerning_rat", "not a rule of claim")),
    (lambda d: d["claim"]["rule"].update(control="no_such_arm"), ("claim.rule.control", "no arm 'no_such_arm'")),
    (lambda d: d.update(colour="red"), ("colour", "Extra inputs are not permitted")),
    (lambda d: d["arms"]["capability"]["stages"][0].update(steps="many"),
     ("arms.capability", "stages.0.steps", "many")),
    (lambda d: d["arms"]["capability"].update(arm="other"), ("arms.capability.arm", "'other'")),
    (lambda d: d["arms"]["capability"].update(claim={"id": "reversion", "rule": {}}),
     ("arms.capability.claim", "differs from the experiment's claim")),
    (lambda d: d["arms"]["capability"].update(seed=3), ("arms.capability.seed", "first seed 0")),
    (lambda d: d["arms"]["capability"].update(arms={"x": {}}), ("arms.capability.arms", "no arms of its own")),
])
def test_every_key_of_a_recorded_experiment_is_checked(recorded, tmp_path, edit, fragments):
    root, _ = recorded
    path = edited(root, tmp_path, edit)
    with pytest.raises(ConfigError) as e:
        load_experiment(str(path), quick=True)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


@pytest.mark.parametrize("edit, fragments", [
    (lambda d: d.update(seeds="twelve"), ("seeds", "twelve")),  # --seeds 2 and quick would replace it
    (lambda d: d["stages"][0].update(steps="many"), ("stages.0.steps", "many")),  # quick replaces it
    (lambda d: d["quick"].update({"stages.0.stepz": 3}), ("quick", "stages.0.stepz")),
    (lambda d: d.update(arms=["capability"]), ("arms", "expected a mapping")),
])
def test_a_preset_is_checked_as_written_before_overrides(tmp_path, edit, fragments):
    data = experiment_dict()
    data["quick"] = {"seeds": 1, "stages.0.steps": 4}
    edit(data)
    with pytest.raises(ConfigError) as e:
        load_experiment(str(write(tmp_path, data)), quick=True, seeds=2)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)
