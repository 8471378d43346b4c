import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from driftlab.measure.internals import PersonaDirections
from driftlab.measure.probes import LinearProbe, accuracy, auroc, dprime


def _blobs(n: int, d: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()
    x = torch.randn(n, d, generator=g) * 3.0 + 5.0  # unstandardised features, as in a residual stream
    x[:, 0] += shift * (2 * y - 1)
    return x, y


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_auroc_is_the_pairwise_win_rate_with_ties_as_half(pairs):
    scores = torch.tensor([float(s) for s, _ in pairs])
    labels = torch.tensor([y for _, y in pairs])
    pos = [s for s, y in pairs if y]
    neg = [s for s, y in pairs if not y]
    if not pos or not neg:
        assert auroc(scores, labels) != auroc(scores, labels)  # nan
        return
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    assert auroc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)))


def test_dprime_keeps_separating_where_auroc_sits_at_its_ceiling():
    """Two score sets that both separate every item (AUROC 1.0) still differ in d': the separation
    a frozen probe loses at the ceiling shows in d' and not in AUROC."""
    y = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    near, far = torch.tensor([2.0, 3.0, 4.0, -2.0, -3.0, -4.0]), torch.tensor([8.0, 9.0, 10.0, -8.0, -9.0, -10.0])
    assert auroc(near, y) == auroc(far, y) == 1.0
    assert dprime(near, y) == pytest.approx(6.0) and dprime(far, y) == pytest.approx(18.0)  # (3 - -3) / 1
    assert dprime(-near, y) == pytest.approx(-6.0) and math.isnan(dprime(near[:4], y[:4]))  # one negative


def test_fit_reaches_the_optimum_and_generalises():
    x, y = _blobs(400, 16, shift=4.0, seed=0)
    probe = LinearProbe.fit(x, y, l2=1.0)
    # first-order condition of the regularised objective: the gradient vanishes at the fit
    z = (x.double() - probe.mu.double()) / probe.sd.double()
    p = torch.sigmoid(probe.logits(x))
    grad_w = z.T @ (p - y.double()) / len(y) + (1.0 / len(y)) * probe.w.double()
    assert grad_w.abs().max() < 1e-5
    assert abs(float((p - y.double()).mean())) < 1e-6
    xt, yt = _blobs(400, 16, shift=4.0, seed=1)
    optimal = 0.5 * (1 + math.erf((2 * 4.0 / 3.0) / 2))  # Phi(d'/sqrt 2) for the two Gaussian classes
    assert auroc(probe.logits(xt), yt) > optimal - 0.03
    assert accuracy(probe.logits(xt), yt) > 0.85
    # the same data with shuffled labels carries no signal a probe can carry over
    shuffled = LinearProbe.fit(x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))])
    assert abs(auroc(shuffled.logits(xt), yt) - 0.5) < 0.1


def test_random_direction_and_sgd_step_and_round_trip():
    x, y = _blobs(400, 16, shift=4.0, seed=0)
    rnd = LinearProbe.direction(torch.randn(16, generator=torch.Generator().manual_seed(3)), x)
    assert rnd.w.norm() == pytest.approx(1.0)
    probe = LinearProbe.direction(torch.ones(16), x)
    before = probe.sgd_step(x, y, lr=0.5)
    after = probe.sgd_step(x, y, lr=0.5)
    assert after < before  # a gradient step lowers the loss on the batch it was taken on
    again = LinearProbe.from_tensors(probe.tensors("p"), "p")
    assert torch.equal(again.logits(x), probe.logits(x))


def test_persona_direction_places_the_means_at_zero_and_one():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(40, 3, 8, generator=g)
    good = torch.arange(40) < 20
    acts[good] += 2.0
    d = PersonaDirections.fit(acts, good)
    means = torch.stack([d.mean_bad, d.mean_good])  # (2, L, d)
    assert torch.allclose(d.relative(means), torch.tensor([[0.0] * 3, [1.0] * 3]), atol=1e-5)
    proj = d.project(means)
    assert (proj[1] - proj[0]).tolist() == pytest.approx(d.norm.tolist(), rel=1e-5)
    assert torch.allclose(d.cosine(d), torch.ones(3))
    assert torch.allclose(d.cosine(PersonaDirections(d.mean_bad, d.mean_good)), -torch.ones(3))
    back = PersonaDirections.from_tensors(d.tensors())
    assert torch.equal(back.diff, d.diff)
    with pytest.raises(ValueError, match="both"):
        PersonaDirections.fit(acts, torch.ones(40, dtype=torch.bool))


def test_an_untrained_network_s_persona_probe_and_the_random_control_read_chance():
    """Lexically balanced evidence: one agent's episodes hold the same words whichever action it
    chose (``chose x over y``), and a two-agent story's label is which of its agents is asked about,
    so a network that has learned nothing cannot read either from the words (before ``over``, the
    one-agent probe of an untrained network read 0.93)."""
    from driftlab.config import ExperimentConfig
    from driftlab.measure.suite import MeasurementSuite
    from driftlab.models import build_tiny_llama
    from driftlab.world import WorldTokenizer

    cfg = ExperimentConfig.model_validate({
        "stages": [{"name": "pretrain", "kind": "pretrain", "data": {"source": "world"}, "steps": 1}],
        "measure": {"items_per_domain": 16, "probe_items_per_domain": 16, "graded_items_per_domain": 0},
    })
    tok = WorldTokenizer.build()
    torch.manual_seed(0)
    suite = MeasurementSuite(cfg, tok, ["probes"])
    rows = suite(build_tiny_llama(cfg.model, len(tok)).eval())
    read = {(r["domain"], r["context"]): r["value"] for r in rows
            if r["metric"] == "probe_auroc" and r["split"] == "all"}
    for concept in ("persona", "persona_pair"):
        for regime in ("refit", "shuffled", "random"):
            assert abs(read[concept, regime] - 0.5) < 0.1, (concept, regime, read)
