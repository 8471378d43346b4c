import pytest

from driftlab.config import StageConfig
from driftlab.train.schedule import checkpoint_steps, lr_at, tail_steps


def stage(**kw):
    base = dict(name="s", kind="pretrain", data={"source": "world"}, steps=100, lr=1e-3)
    return StageConfig.model_validate({**base, **kw})


def test_warmup_then_cosine_to_the_floor():
    s = stage(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(s, 1) == pytest.approx(1e-4)
    assert lr_at(s, 10) == pytest.approx(1e-3)
    assert lr_at(s, 100) == pytest.approx(1e-4)
    assert lr_at(s, 55) == pytest.approx(0.55e-3)
    lrs = [lr_at(s, i) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_constant_schedule():
    s = stage(schedule="constant", warmup_steps=0)
    assert {lr_at(s, i) for i in range(1, 101)} == {1e-3}


def test_checkpoints_are_log_and_linear_spaced_and_include_the_last():
    steps = checkpoint_steps(stage(steps=1000, checkpoints={"log": 4, "linear": 4}))
    assert steps == sorted(set(steps)) and steps[-1] == 1000
    assert {1, 10, 100, 1000} <= set(steps) and {250, 500, 750} <= set(steps)
    assert checkpoint_steps(stage(steps=7, checkpoints={"log": 0, "linear": 0})) == [7]


def test_the_tail_is_k_checkpoints_over_the_last_share_of_steps():
    s = stage(steps=800, checkpoints={"log": 2, "linear": 0, "tail": 3})
    assert tail_steps(s) == [720, 760, 800]
    assert {720, 760, 800} <= set(checkpoint_steps(s))
    assert tail_steps(stage(steps=800)) == [800]  # no tail: the last checkpoint alone
    assert tail_steps(stage(steps=20, checkpoints={"tail": 4, "tail_span": 0.2})) == [16, 17, 19, 20]
