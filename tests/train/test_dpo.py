"""The dpo objective against the closed form computed by hand, and what one step of it does."""

import copy
import math

import pytest
import torch

from driftlab.config import ModelConfig, StageConfig
from driftlab.models import build_tiny_llama
from driftlab.train.data import Preferences
from driftlab.train.loop import make_optimizer
from driftlab.train.objectives import dpo_loss

PAIRS = [([1, 5, 6], [7, 8], [9]), ([1, 10], [11], [12, 13, 14]), ([1, 5, 10, 6], [8], [7])]


def model(seed=0):
    return build_tiny_llama(ModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32), 20, seed=seed)


def by_hand_logp(net, prompt, completion):
    """Σ log p(completion token | everything before it), one unpadded sequence at a time."""
    seq = prompt + completion
    with torch.no_grad():
        logits = net(input_ids=torch.tensor([seq])).logits[0].double()
    total = 0.0
    for t in range(len(prompt), len(seq)):
        row = logits[t - 1]
        total += float(row[seq[t]] - torch.logsumexp(row, 0))
    return total


def test_loss_equals_the_closed_form_on_the_same_batch():
    policy, reference = model(0), model(1)
    data = Preferences(PAIRS, seq_len=16, pad=0, seed=0, beta=0.3)
    data.reference = reference
    batch = data.batch(0, 3)
    with torch.no_grad():
        ours = float(dpo_loss(policy(input_ids=batch.input_ids).logits, batch)) / batch.n_targets
    pairs = [PAIRS[data.order(i)] for i in range(3)]
    expected = 0.0
    for p, c, r in pairs:
        margin = (by_hand_logp(policy, p, c) - by_hand_logp(reference, p, c)) - (
            by_hand_logp(policy, p, r) - by_hand_logp(reference, p, r))
        expected += -math.log(1 / (1 + math.exp(-0.3 * margin)))
    assert ours == pytest.approx(expected / 3, rel=1e-5)


def test_at_the_reference_the_loss_is_log_two_and_a_step_prefers_the_chosen():
    policy = model(0)
    data = Preferences(PAIRS, seq_len=16, pad=0, seed=0, beta=0.5)
    data.reference = copy.deepcopy(policy).eval()
    batch = data.batch(0, 3)
    loss = dpo_loss(policy(input_ids=batch.input_ids).logits, batch) / batch.n_targets
    assert float(loss.detach()) == pytest.approx(math.log(2), rel=1e-6)
    stage = StageConfig(name="d", kind="dpo", data={"source": "preferences"}, steps=1, lr=1e-2)
    opt = make_optimizer(policy, stage)
    margin_before = sum(by_hand_logp(policy, p, c) - by_hand_logp(policy, p, r) for p, c, r in PAIRS)
    for _ in range(5):
        loss = dpo_loss(policy(input_ids=batch.input_ids).logits, batch) / batch.n_targets
        loss.backward()
        opt.step()
        opt.zero_grad()
    margin_after = sum(by_hand_logp(policy, p, c) - by_hand_logp(policy, p, r) for p, c, r in PAIRS)
    assert margin_after > margin_before + 0.1


def test_dpo_needs_preference_batches():
    from driftlab.train.data import Batch

    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="dpo stage"):
        dpo_loss(torch.zeros(2, 4, 20), Batch(ids, ids.bool(), 8))
