"""The projection difference of a fine-tuning set: does its data pull the model along the persona
direction before anything trains?

As the persona-vectors work screens data: for every example, the mean residual stream over its
response tokens is projected on the persona direction (per layer, unit direction, good minus bad),
and so is the mean over the model's own greedy answer to the same prompt; the example's projection
difference is the first minus the second. A set whose responses sit further toward the bad persona
than what the model would say itself (difference < 0) is predicted to move the model that way
when it is trained on; one that matches the model's own answers, not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from driftlab.generate import sample
from driftlab.measure.forward import decoder_batches
from driftlab.measure.internals import PersonaDirections
from driftlab.models.hooks import capture, hook_points


def response_means(model: torch.nn.Module, prompts: list[list[int]], responses: list[list[int]], pad: int,
                   batch_size: int = 16) -> torch.Tensor:
    """(n, layers, d): every layer's residual stream averaged over each response's token positions,
    read with the response teacher-forced after its prompt."""
    sites = [s for s in hook_points(model) if s.endswith("resid_post")]
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    out: torch.Tensor | None = None
    with capture(model, sites) as cache:
        for idx in decoder_batches(model, seqs, batch_size, pad):
            for row, i in enumerate(idx):
                start, end = len(prompts[i]), len(seqs[i])
                means = torch.stack([cache[s][row, start:end].double().mean(0) for s in sites]).float().cpu()
                if out is None:
                    out = torch.empty(len(seqs), *means.shape)
                out[i] = means
    assert out is not None, "no examples"
    return out


@dataclass
class ProjectionDifference:
    data: torch.Tensor  # (n, L) projection of each example's response
    own: torch.Tensor  # (n, L) projection of the model's own answer
    kept: list[int]  # examples measured (the model's own answer was not empty)

    @property
    def diff(self) -> torch.Tensor:
        return self.data - self.own

    def summary(self) -> list[dict]:
        """Per layer: the mean projections and the mean difference with a 95% t interval over examples."""
        from scipy import stats

        n = self.diff.shape[0]
        rows = []
        for layer in range(self.diff.shape[1]):
            d = self.diff[:, layer].double()
            half = (float(stats.t.ppf(0.975, n - 1)) * float(d.std()) / math.sqrt(n)) if n > 1 else float("nan")
            rows.append({"layer": layer, "data": float(self.data[:, layer].mean()), "own": float(self.own[:, layer].mean()),
                         "diff": float(d.mean()), "lo": float(d.mean()) - half, "hi": float(d.mean()) + half, "n": n})
        return rows


def projection_difference(model: torch.nn.Module, directions: PersonaDirections, prompts: list[list[int]],
                          responses: list[list[int]], pad: int, stop: list[int], max_new: int = 32,
                          batch_size: int = 16) -> ProjectionDifference:
    """The projection difference of every example (``responses`` without end-of-turn tokens); the
    model's own answers are greedy, up to ``max_new`` tokens, their stop token dropped as the
    responses'."""
    stops = set(stop)
    own = [[t for t in a if t not in stops] for a in sample(model, prompts, max_new, 0.0, stop, pad,
                                                              batch_size=batch_size)]
    responses = [[t for t in r if t not in stops] for r in responses]
    kept = [i for i in range(len(prompts)) if own[i] and responses[i]]
    if not kept:
        raise ValueError("the model answered every prompt with a stop token at once: nothing to project")
    p = [prompts[i] for i in kept]
    data = directions.project(response_means(model, p, [responses[i] for i in kept], pad, batch_size))
    mine = directions.project(response_means(model, p, [own[i] for i in kept], pad, batch_size))
    return ProjectionDifference(data, mine, kept)
