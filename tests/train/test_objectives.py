import torch
import torch.nn.functional as F

from driftlab.train.data import Batch, Completions
from driftlab.train.objectives import completion_loss, get_objective, lm_loss


def test_completion_loss_counts_only_completion_tokens():
    data = Completions([([1, 5, 6, 7], [8, 9]), ([1, 5], [10, 11, 12])], seq_len=16, pad=0, seed=0)
    batch = data.batch(0, 2)
    # the mask covers exactly the completion tokens of each row, never the prompt or padding
    for row in range(2):
        ids = batch.input_ids[row].tolist()
        masked = [t for t, m in zip(ids, batch.loss_mask[row].tolist()) if m]
        assert masked in ([8, 9], [10, 11, 12])
    assert batch.n_targets == 5
    logits = torch.randn(2, batch.input_ids.shape[1], 16, requires_grad=True)
    loss = completion_loss(logits, batch)
    # reference: cross-entropy summed over completion positions, computed by hand
    expected = 0.0
    for row in range(2):
        for t in range(1, batch.input_ids.shape[1]):
            if batch.loss_mask[row, t]:
                expected += F.cross_entropy(logits[row, t - 1][None], batch.input_ids[row, t][None])
    assert torch.allclose(loss, expected)
    loss.backward()
    # no gradient flows from any position whose next token is prompt or padding
    grad_rows = logits.grad.abs().sum(-1)  # (B, T)
    for row in range(2):
        for t in range(batch.input_ids.shape[1] - 1):
            assert (grad_rows[row, t] > 0) == bool(batch.loss_mask[row, t + 1])


def test_lm_loss_is_next_token_cross_entropy_on_every_token():
    ids = torch.randint(0, 10, (3, 7))
    batch = Batch(ids, torch.ones_like(ids, dtype=torch.bool), ids.numel())
    logits = torch.randn(3, 7, 10)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 10), ids[:, 1:].reshape(-1), reduction="sum")
    assert torch.allclose(lm_loss(logits, batch), ref)
    assert get_objective("lm") is lm_loss and get_objective("completion") is completion_loss
