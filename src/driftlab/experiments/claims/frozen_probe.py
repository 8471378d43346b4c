"""frozen-probe: a probe frozen at an early checkpoint decays; a co-trained one keeps up."""

from __future__ import annotations

import numpy as np

from driftlab.experiments.claims.checks import seed_mean
from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Findings, Rule, claim
from driftlab.experiments.stats import Test


def _after_reference(m: Measured, arm: str) -> range:
    ref = m.configs[arm].reference_index()
    return range(ref + 1, m.n_stages(arm))


def _probe(m: Measured, arm: str, seed: int, regime: str, metric: str = "probe_dprime") -> float:
    """A probe regime's mean over the checkpoints after the reference."""
    vals = m.over(arm, seed, _after_reference(m, arm), metric, context=regime, domain="persona",
                  site=m.probe_site())
    return float(np.mean(vals)) if vals else float("nan")


@claim("frozen-probe",
       "A probe frozen at an early checkpoint stops reading the model as it keeps training; one trained "
       "alongside it keeps up.",
       world_only="the co-trained probe, which is not trained on a pre-trained model yet",
       treatment=("arm", "the arm that keeps training after the probe is frozen (capability, narrow fine-tunes)"),
       control=("arm", "the arm that continues alignment instead"),
       min_gap=("number", "share of the refit probe's separation (d') by which the frozen probe's lead over a "
                          "random direction must be smaller in the treatment than in the control"),
       max_lag=("number", "share of the refit probe's separation (d') the co-trained probe may lack"),
       min_weight_change=("number", "treatment check: relative L2 distance of the weights from the reference "
                                    "that the later stages must reach"),
       min_probe_auroc=("number", "control check: AUROC of the probe refit at the reference (it reads the persona)"))
def frozen_probe(m: Measured, r: Rule) -> Findings:
    t, c = r.arm("treatment"), r.arm("control")
    ref = m.configs[t].reference_index()
    moved = m.grid(lambda s, _: [m.end(t, s, -1, "weight_rel_l2", context="reference", domain=None, split=None,
                                       site="all")], [None])
    reads = m.grid(lambda s, _: [m.end(t, s, ref, "probe_auroc", context="refit", domain="persona",
                                       site=m.probe_site())], [None])
    regimes = ("frozen", "cotrained", "refit", "shuffled", "random")
    x = m.grid(lambda s, _: [_probe(m, a, s, g) for a in (t, c) for g in regimes], [None])
    # separation in d' (no ceiling: d9e15f9 read AUROC, which sat at 1.000 with an interval of width 0),
    # as a share of what a probe refit at the same checkpoint separates (the best linear read-out there,
    # large and stable: not a noisy denominator); the frozen probe's lead over a random direction on the
    # same activations (a random direction reads a strongly linear persona too)
    decay = r.estimate(x, lambda q: (q[:, 5] - q[:, 9]) / q[:, 7] - (q[:, 0] - q[:, 4]) / q[:, 2])
    lag = r.estimate(x, lambda q: 1 - q[:, 1] / q[:, 2])
    tests = [
        Test("stages_move", f"relative weight distance from the reference at the end of {t}",
             r.estimate(moved, lambda q: q[:, 0]), r.num("min_weight_change"), ">", role="treatment"),
        Test("probe_reads", f"refit persona probe AUROC at the reference ({m.configs[t].stages[ref].name})",
             r.estimate(reads, lambda q: q[:, 0]), r.num("min_probe_auroc"), ">", role="control"),
        Test("frozen_decay", f"the frozen probe's lead over a random direction after the reference, as a share of "
             f"the refit probe's separation (d'): in {c} minus in {t}", decay, r.num("min_gap"), ">"),
        Test("cotrained_keeps_up", f"share of the refit probe's separation (d') the co-trained probe lacks after "
             f"the reference in {t}", lag, r.num("max_lag"), "<"),
    ]
    means = np.nanmean(x, axis=(0, 1))
    numbers = {f"{a}.dprime_{g}": float(means[i * len(regimes) + j])
               for i, a in enumerate((t, c)) for j, g in enumerate(regimes)}
    for a in (t, c):
        for g in regimes:
            numbers[f"{a}.auroc_{g}"] = seed_mean(m, lambda s, a=a, g=g: _probe(m, a, s, g, "probe_auroc"))
    for a in (t, c):
        for g in ("frozen", "cotrained"):
            numbers[f"{a}.auroc_{g}_end"] = seed_mean(m, lambda s, a=a, g=g: m.end(
                a, s, -1, "probe_auroc", context=g, domain="persona", site=m.probe_site()))
    # the untrained network's baseline: a probe refit on the initial model's activations
    numbers["auroc_untrained"] = seed_mean(m, lambda s: m.at(t, s, 0, 0, "probe_auroc", context="refit",
                                                         domain="persona", site=m.probe_site()))
    return Findings(tests, numbers)
