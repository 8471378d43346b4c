"""examples/: one small config per stage kind and per mitigation, each run at --quick here."""

import math
from pathlib import Path

import duckdb
import pytest

from driftlab.config import MITIGATION_KINDS
from driftlab.experiments.prefix import PrefixCache, default_cache
from driftlab.experiments.spec import load_experiment
from driftlab.experiments.study import experiment_state, new_experiment, run_experiment

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
LOSS_TERMS = {"kl_to_reference", "projection_penalty", "cotrained_probe"}  # mitigations that add a loss


def test_every_stage_kind_and_every_mitigation_has_an_example():
    kinds, mitigations = set(), set()
    for path in EXAMPLES:
        for cfg in load_experiment(str(path)).arms.values():  # each validates at its full size too
            kinds |= {s.kind for s in cfg.stages}
            mitigations |= {m.kind for s in cfg.stages for m in s.mitigations}
    assert kinds == {"pretrain", "sft", "dpo", "rl"}
    assert mitigations == set(MITIGATION_KINDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_runs_at_quick(path, tmp_path):
    exp = load_experiment(str(path), quick=True)
    root = new_experiment(exp, tmp_path / path.stem)
    run_experiment(root, exp, cache=PrefixCache(default_cache()))  # the examples share pre-training
    assert experiment_state(root) == "complete"
    cfg = next(iter(exp.arms.values()))
    metrics = f"'{root / 'metrics.parquet'}'"
    ends = dict(duckdb.sql(f"select stage, max(step) from {metrics} where metric = 'bits_aligned' "
                           "group by stage").fetchall())
    assert ends == {s.name: s.steps for s in cfg.stages}  # every stage trained and was measured to its end
    last = cfg.stages[-1]
    if last.kind == "dpo":  # at its first step the policy is its own reference: loss log 2
        (loss,), = duckdb.sql(f"select value from {metrics} where metric = 'train_loss' and stage = "
                              f"'{last.name}' and step = 1").fetchall()
        assert loss == pytest.approx(math.log(2), rel=1e-5)
    if last.kind == "rl":
        rewards = duckdb.sql(f"select count(*) from {metrics} where metric = 'rl_reward'").fetchall()[0][0]
        assert rewards > 0
    added = {m.kind for m in last.mitigations} & LOSS_TERMS
    if added:
        (extra,), = duckdb.sql(f"select max(value) from {metrics} where metric = 'mitigation_loss' "
                               f"and stage = '{last.name}'").fetchall()
        assert extra is not None and extra > 0
