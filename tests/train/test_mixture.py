"""Data mixtures: every micro-batch holds exactly each part's rows, each part keeps its own seeded
order and objective (text trains every token, completions their completion), and a bad mixture is
a one-line config error."""

import pytest
import torch

from driftlab.config import validate_config
from driftlab.errors import ConfigError
from driftlab.experiments.stage_data import build_stage_data
from driftlab.train.data import Completions, Mixture, PackedLM
from driftlab.world import WorldTokenizer
from tests.conftest import tiny_dict

TOK = WorldTokenizer.build()


def mixture_config(rows=(3, 1), **part):
    d = tiny_dict()
    d["stages"][2]["data"] = {"source": "mixture", "parts": [
        {"rows": rows[0], "data": {"source": "capability", "n_examples": 64, "levels": [2]}},
        {"rows": rows[1], "seq_len": 16, "data": {"source": "world", "n_docs": 50, "assistant_share": 0.0, **part}},
    ]}
    return d


def test_every_batch_holds_each_part_s_rows_with_its_own_loss_mask():
    cfg = validate_config(mixture_config(), "t.yaml")
    data = build_stage_data(cfg, 2, TOK)
    assert isinstance(data, Mixture) and isinstance(data.parts[0], Completions) and isinstance(data.parts[1], PackedLM)
    task, equals = TOK.vocab["task"], TOK.vocab["="]
    seen = set()
    for step in range(10):
        batch = data.batch(step * 4, 4).stacked(TOK.pad_id)
        ids, mask = batch.input_ids, batch.loss_mask
        assert ids.shape == (4, 16)  # the text part's rows set the width
        for row in range(3):  # arithmetic: loss on the answer only (2-3 digits and the full stop)
            assert ids[row, 1] == task and int(mask[row].sum()) in (3, 4)
            assert int(mask[row, : int((ids[row] == equals).nonzero()) + 1].sum()) == 0
            seen.add(tuple(ids[row].tolist()))
        assert bool(mask[3].all())  # text: every token is a target
        assert TOK.vocab["assistant"] not in ids[3].tolist()
    assert len(seen) > 20  # the parts move through their data: not one batch repeated
    # the same step gives the same batch: a resumed run sees the data an uninterrupted one saw
    again = build_stage_data(cfg, 2, TOK).batch(28, 4).stacked(TOK.pad_id)
    assert torch.equal(data.batch(28, 4).stacked(TOK.pad_id).input_ids, again.input_ids)


def test_a_smaller_micro_batch_splits_in_proportion():
    parts = [Completions([([1, 5], [6])] * 10, 16, 0, seed=0), Completions([([1, 7], [8])] * 10, 16, 0, seed=1)]
    mix = Mixture(parts, [6, 2], pad=0)
    assert mix.counts(8) == [6, 2] and mix.counts(6) == [5, 1] and mix.counts(4) == [3, 1]
    assert mix.counts(1) == [1, 0] and sum(mix.counts(7)) == 7
    batch = mix.batch(0, 6).stacked(0)
    assert [bool((r == 7).any()) for r in batch.input_ids] == [False] * 5 + [True]


def test_one_forward_per_part_equals_one_forward_of_the_stacked_rows():
    from driftlab.config import ModelConfig, StageConfig
    from driftlab.models import build_tiny_llama
    from driftlab.train import make_optimizer, train_stage

    cfg = validate_config(mixture_config(), "t.yaml")
    stage = StageConfig.model_validate({**cfg.stages[2].model_dump(), "steps": 3, "checkpoints": {"log": 0, "linear": 0}})

    class Stacked:  # the same batches, stacked into one padded forward
        def __init__(self, data):
            self.data = data

        def batch(self, start, size):
            return self.data.batch(start, size).stacked(TOK.pad_id)

    weights = []
    for wrap in (lambda d: d, Stacked):
        model = build_tiny_llama(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, max_seq_len=64), len(TOK),
                                 seed=0)
        train_stage(model, stage, wrap(build_stage_data(cfg, 2, TOK)), make_optimizer(model, stage), lambda ev: None)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(weights[0], weights[1], atol=1e-5)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["stages"][2]["data"]["parts"][0].update(rows=2), r"sum to 3, not to the stage's batch_size 4"),
    (lambda d: d["stages"][2]["data"]["parts"][1].update(data={"source": "preferences"}),
     r"data\.parts\.1: a sft stage's mixture takes .* not 'preferences'"),
    (lambda d: d["stages"][2]["data"]["parts"][1].update(rows=0), r"stages\.2\.data\.parts\.1\.rows"),
    (lambda d: d["stages"][2]["data"].update(parts=[d["stages"][2]["data"]["parts"][0]]), r"stages\.2\.data\.parts"),
])
def test_a_bad_mixture_is_a_one_line_error_naming_the_key(edit, message):
    d = mixture_config()
    edit(d)
    with pytest.raises(ConfigError, match=message) as e:
        validate_config(d, "t.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("t.yaml: stages.2")


def test_a_mixture_stage_runs_and_measures_the_levels_it_teaches(tmp_path):
    import duckdb

    from driftlab.experiments import execute, new_run

    d = mixture_config()
    d["world"]["capability_levels"] = [1]
    d["stages"][2]["data"]["parts"][0]["data"]["levels"] = [3]
    cfg = validate_config(d, "t.yaml")
    assert cfg.stage_levels(2) == [3] and cfg.eval_levels() == [1, 3]
    run = new_run(cfg, tmp_path / "mix")
    execute(run, cfg)
    rows = duckdb.sql(f"select distinct metric, split from '{run.metrics_path}' where domain = 'arithmetic'").fetchall()
    for metric in ("capability_acc", "capability_digit_acc", "capability_answer_nll"):
        assert {(metric, "level_1"), (metric, "level_3"), (metric, "all")} <= set(rows)
