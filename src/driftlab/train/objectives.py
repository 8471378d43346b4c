"""Training objectives: small pure functions looked up by name.

An objective maps (logits, batch) to the *sum* of per-token losses and the number of target
tokens; the loop divides by the tokens of the whole optimizer step, so gradient accumulation
over micro-batches equals one big batch exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from driftlab.registry import Registry
from driftlab.tensors import completion_logp, next_token_loss_sum
from driftlab.train.data import Batch, PairBatch

Objective = Callable[[torch.Tensor, Batch], torch.Tensor]
OBJECTIVES: Registry[Objective] = Registry("objective")
objective = OBJECTIVES.register
get_objective = OBJECTIVES.get


@objective("lm")
def lm_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Next-token loss on every token (pre-training)."""
    return next_token_loss_sum(logits, batch.input_ids, torch.ones_like(batch.loss_mask))


@objective("completion")
def completion_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Next-token loss on the completion tokens only (SFT); prompt and padding are masked."""
    return next_token_loss_sum(logits, batch.input_ids, batch.loss_mask)


@objective("dpo")
def dpo_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Direct preference optimisation (Rafailov et al. 2023), summed over pairs:
    −log σ(β [(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]) with log π the summed
    log-probability of a completion; the reference is the model as the stage began."""
    if not isinstance(batch, PairBatch) or batch.ref_logp is None:
        raise TypeError("the dpo objective needs preference batches with reference log-probs (a dpo stage)")
    logp = completion_logp(logits, batch.input_ids, batch.loss_mask)
    pi_c, pi_r = logp.chunk(2)
    ref_c, ref_r = batch.ref_logp.chunk(2)
    return -F.logsigmoid(batch.beta * ((pi_c - ref_c) - (pi_r - ref_r))).sum()


@objective("policy_gradient")
def policy_gradient(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """−Σ advantage × log π(token) over sampled answer tokens (rl stages; see ``train.rl``)."""
    from driftlab.train.rl import policy_gradient_sum

    return policy_gradient_sum(logits, batch)
