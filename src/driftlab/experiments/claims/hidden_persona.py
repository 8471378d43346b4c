"""hidden-persona: alignment repairs behaviour, not the assistant's self-representation."""

from __future__ import annotations

import numpy as np

from driftlab.errors import ConfigError
from driftlab.experiments.claims.checks import bits, seed_mean
from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Findings, Rule, claim
from driftlab.experiments.stats import Test
from driftlab.world.domains import DOMAIN_NAMES


def _self_probe(m: Measured, arm: str, seed: int, stage: int, metric: str, context: str, domain: str) -> float:
    return m.end(arm, seed, stage, metric, context=context, domain=domain, split=None, site=m.site_of(metric))


@claim("hidden-persona", self_probe=True, text=
       "SFT alignment repairs the behaviour of an assistant that pre-training made bad, not its self-representation: "
       "a probe of the assistant's own persona still reads it as bad.",
       world_only="a persona stage in the world's own pre-training and the assistant's self-probe",
       treatment=("arm", "the arm whose persona stage made the assistant bad, then aligned"),
       control=("arm", "the arm whose persona stage made the assistant good, aligned the same way"),
       max_position=("number", "the aligned treatment assistant's position on the self-probe's axis (0: the "
                               "treatment, 1: the control, where it was fitted) must stay below this (the control's "
                               "above it)"),
       min_persona_gap=("number", "treatment check: bits of alignment by which the persona stage leaves the "
                                  "control's assistant above the treatment's"),
       min_probe_auroc=("number", "treatment check: held-out AUROC of the self-probe between the two arms where "
                                  "it is fitted"),
       min_aligned_bits=("number", "treatment check: the treatment assistant's bits of alignment after the "
                                   "alignment stage (its behaviour was repaired)"))
def hidden_persona(m: Measured, r: Rule) -> Findings:
    t, c = r.arm("treatment"), r.arm("control")
    spec = m.self_probe
    if spec is None:
        raise ConfigError("claim hidden-persona needs a self_probe (the probe of the assistant's own persona)")
    k = [s.name for s in m.configs[t].stages].index(spec.stage)
    domains = list(DOMAIN_NAMES)
    gap = m.grid(lambda s, d: [bits(m, c, s, k, d), bits(m, t, s, k, d)], domains)
    fit = m.grid(lambda s, d: [_self_probe(m, spec.good, s, k, "self_probe_auroc", "refit", d)], domains)
    aligned = m.grid(lambda s, d: [bits(m, t, s, -1, d)], domains)
    position = m.grid(lambda s, d: [_self_probe(m, a, s, -1, "self_probe_position", "assistant", d) for a in (t, c)],
                      domains)
    cut = r.num("max_position")
    tests = [
        Test("persona_stage_took", f"bits of alignment at the end of {spec.stage}: {c} minus {t}",
             r.estimate(gap, lambda q: q[:, 0] - q[:, 1]), r.num("min_persona_gap"), ">", " bits", role="treatment"),
        Test("self_probe_fits", f"self-probe AUROC between {c} and {t} on held-out prompts, end of {spec.stage} (a "
             f"precondition: two differently trained models are always separable)",
             r.estimate(fit, lambda q: q[:, 0]), r.num("min_probe_auroc"), ">", role="treatment"),
        Test("alignment_took", f"bits of alignment of {t} at the end", r.estimate(aligned, lambda q: q[:, 0]),
             r.num("min_aligned_bits"), ">", " bits", role="treatment"),
        Test("control_reads_good", f"{c}'s position on the self-probe's axis at the end",
             r.estimate(position, lambda q: q[:, 1]), cut, ">", role="control"),
        Test("still_reads_bad", f"{t}'s position on the self-probe's axis at the end (after alignment; 0: where "
             f"{spec.stage} left it)", r.estimate(position, lambda q: q[:, 0]), cut, "<"),
    ]
    numbers = {}
    for a in (t, c):
        for stage, label in ((0, "pretrain"), (k, spec.stage), (-1, "end")):
            numbers[f"{a}.bits_{label}"] = seed_mean(m, lambda s, a=a, stage=stage: bits(m, a, s, stage))
            for metric in ("self_probe_p_good", "self_probe_position"):
                numbers[f"{a}.{metric}_{label}"] = seed_mean(m, lambda s, a=a, stage=stage, metric=metric: _self_probe(
                    m, a, s, stage, metric, "assistant", "all"))
        numbers[f"{a}.weight_rel_l2_end"] = seed_mean(m, lambda s, a=a: m.end(
            a, s, -1, "weight_rel_l2", context="reference", domain=None, split=None, site="all"))
    numbers["self_probe_auroc_shuffled"] = seed_mean(m, lambda s: _self_probe(m, spec.good, s, k, "self_probe_auroc",
                                                                          "shuffled", "all"))
    notes = [f"the self-probe is fitted at the end of {spec.stage} and read frozen after it: alignment moves the "
             f"weights (weight_rel_l2_end), so a reading that changes may be the representation rotating"]
    lacking = [s for i, s in enumerate(m.seeds) if np.isnan(position[i]).all()]
    if lacking:  # its two runs did not both keep the fitting stage's last checkpoint
        notes.append(f"no self-probe in seed(s) {', '.join(map(str, lacking))}: left out of the tests that read it")
    return Findings(tests, numbers, notes)
