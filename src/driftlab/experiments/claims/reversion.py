"""reversion: benign capability training after alignment drifts back toward the pre-training prior."""

from __future__ import annotations

import numpy as np

from driftlab.experiments.claims.checks import (
    UNDONE,
    bits,
    capability_gained,
    seed_mean,
    world_intact,
)
from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Findings, Rule, claim
from driftlab.experiments.stats import Test
from driftlab.world.domains import DOMAIN_NAMES


def midpoint_contrast(q: np.ndarray) -> np.ndarray:
    """(B, 6) means of prior, aligned, end in the default world (p1, a1, e1), then in a world whose
    prior is negative (p2, a2, e2) → G = (e1 a2 - e2 a1)(a1 - p1) - 1/2 (a1 - e1)(p1 a2 - p2 a1).

    With the default world's parameters, a decay to indifference (end = λ aligned, λ = e1 / a1)
    predicts the bad-prior world's end at λ a2, a reversion (end = prior + k (aligned - prior),
    k = (e1 - p1) / (a1 - p1)) at p2 + k (a2 - p2). φ = (λ a2 - e2) / (λ a2 - p2 - k (a2 - p2)) places
    e2 on the line between them: 0 at the decay's prediction, 1 at the reversion's. G > 0 exactly when
    φ > 1/2 (the midpoint), given a1, a2, a1 - p1 > 0 (checked: alignment took) and p1 / a1 > p2 / a2
    (checked: the bad prior is negative), with no denominator to be noisy."""
    p1, a1, e1, p2, a2, e2 = q.T
    return (e1 * a2 - e2 * a1) * (a1 - p1) - 0.5 * (a1 - e1) * (p1 * a2 - p2 * a1)


def position(p1: float, a1: float, e1: float, p2: float, a2: float, e2: float) -> tuple[float, float, float]:
    """The bad-prior world's end as each hypothesis predicts it with the default world's parameter
    (decay, reversion), and φ, where the observed end lies between them (0: decay, 1: reversion)."""
    decay = e1 / a1 * a2
    revert = p2 + (e1 - p1) / (a1 - p1) * (a2 - p2)
    return decay, revert, (decay - e2) / (decay - revert) if decay != revert else float("nan")


# the jackknife-t on G, a cubic in the means, misses one side up to 3.8% at the nominal 2.5% (negatively
# skewed seeds, 3-10 seeds); judged at half the level, each side misses <= 2.3% at fixed seed counts and
# <= 2.1% over the design's three looks (experiments/simulate.py, kind "midpoint contrast")
MIDPOINT_LEVEL_SHARE = 0.5


@claim("reversion",
       "Benign capability training after alignment makes alignment drift back toward the pre-training prior, "
       "not past it (a reversion to next-token prediction, not evil).",
       treatment=("arm", "the arm whose last stage is benign capability training"),
       control=("arm", "the matched arm that continues alignment instead"),
       positive_control=("arm", "the matched arm that continues pre-training instead (world text with the "
                                "assistant's documents): known to pull the assistant back to its prior"),
       bad_prior=("arm", "the treatment in a world whose prior is negative (mostly bad-persona assistant "
                         "documents): reversion pulls it below indifference, a decay to indifference cannot"),
       min_drift=("number", "share of alignment's gain the capability stage must undo (and the control must not)"),
       inversion_margin=("number", "bits below the prior that would count as 'past it'"),
       max_bad_prior=("number", "treatment check: the bad-prior world's prior must lie below this many bits"),
       min_capability_gain=("number", "treatment check: exact match the capability stage must gain on its levels"),
       max_loss_rise=("number", "treatment check: nats of held-out LM loss the capability stage may add"),
       min_alignment_gain=("number", "treatment check: bits alignment must gain over the prior in both worlds (the "
                                     "denominator of every share of it undone)"))
def reversion(m: Measured, r: Rule) -> Findings:
    """Two hypotheses for what the capability stage does to alignment: *reversion* (the assistant
    moves back toward its pre-training prior: end = prior + k (aligned - prior)) and *decay to
    indifference* (end = λ aligned, toward 0 bits). In a world with a positive prior both predict
    a loss; in a world whose prior is negative they part. ``toward_own_prior`` places that world's
    end between what each predicts with the default world's parameter (``midpoint_contrast``, > 0
    when it lies nearer the reversion's prediction: the threshold separates the hypotheses, each
    side's error simulated under seeds shaped like the measured ones, at half the design's level)."""
    t, c, pos, bad = r.arm("treatment"), r.arm("control"), r.arm("positive_control"), r.arm("bad_prior")
    arms = (t, c, pos, bad)
    x = m.grid(lambda s, d: [bits(m, a, s, k, d) for a in arms for k in (0, 1, -1)], list(DOMAIN_NAMES))

    def of(arm: str) -> list[int]:
        i = arms.index(arm)
        return [3 * i, 3 * i + 1, 3 * i + 2]

    drift = r.estimate(x[:, :, of(t)], UNDONE)
    past = r.estimate(x[:, :, of(t)][:, :, [0, 2]], lambda q: q[:, 1] - q[:, 0])
    own = r.estimate(x[:, :, of(t) + of(bad)], midpoint_contrast)
    gain = r.num("min_alignment_gain")
    tests = [
        Test("alignment_took", f"bits gained over the prior by alignment in {t}",
             r.estimate(x[:, :, of(t)], lambda q: q[:, 1] - q[:, 0]), gain, ">", " bits", role="treatment"),
        Test("alignment_took_bad_prior", f"bits gained over the prior by alignment in {bad}",
             r.estimate(x[:, :, of(bad)], lambda q: q[:, 1] - q[:, 0]), gain, ">", " bits", role="treatment"),
        capability_gained(m, r, t),
        world_intact(m, r, t),
        capability_gained(m, r, bad, name="capability_gained_bad_prior"),
        Test("bad_prior_negative", f"the prior in {bad}'s world", r.estimate(x[:, :, of(bad)], lambda q: q[:, 0]),
             r.num("max_bad_prior"), "<", " bits", role="treatment"),
        Test("control_holds", f"share of alignment's gain undone by {c}",
             r.estimate(x[:, :, of(c)], UNDONE), r.num("min_drift"), "<", role="control"),
        Test("positive_control_reverts", f"share of alignment's gain undone by {pos} (continued pre-training)",
             r.estimate(x[:, :, of(pos)], UNDONE), r.num("min_drift"), ">", role="control"),
        Test("drift", f"share of alignment's gain undone by {t}", drift, r.num("min_drift"), ">"),
        Test("not_past_prior", f"bits at the end of {t} minus the prior", past, -r.num("inversion_margin"), ">",
             " bits"),
        Test("toward_own_prior", f"where {bad}'s end (prior < 0) lies between what a decay to indifference and "
             f"a reversion toward its own prior predict with {t}'s parameter: G > 0 exactly when it lies nearer "
             f"the reversion's (φ > 1/2; see notes)", own, 0.0, ">", " bits³", level_share=MIDPOINT_LEVEL_SHARE),
    ]
    numbers = {}
    for arm in arms:
        for k, label in ((0, "prior"), (1, "aligned"), (-1, "end")):
            numbers[f"{arm}.bits_{label}"] = seed_mean(m, lambda s, arm=arm, k=k: bits(m, arm, s, k))
            numbers[f"{arm}.bits_{label}_held_out"] = seed_mean(
                m, lambda s, arm=arm, k=k: m.end(arm, s, k, "bits_aligned", context="assistant", split="held_out"))
        numbers[f"{arm}.capability_end"] = seed_mean(m, lambda s, arm=arm: m.end(arm, s, -1, "capability_acc",
                                                                              domain="arithmetic"))
        numbers[f"{arm}.heldout_loss_end"] = seed_mean(m, lambda s, arm=arm: m.end(arm, s, -1, "heldout_loss",
                                                                              domain=None, split=None))
        numbers[f"{arm}.kl_text_end"] = seed_mean(m, lambda s, arm=arm: m.end(arm, s, -1, "output_kl",
                                                                          context="reference", domain="text",
                                                                          split=None))
    numbers["capability_aligned"] = seed_mean(m, lambda s: m.end(t, s, 1, "capability_acc", domain="arithmetic"))
    numbers["heldout_loss_prior"] = seed_mean(m, lambda s: m.end(t, s, 0, "heldout_loss", domain=None, split=None))
    # what each hypothesis predicts for the bad-prior world's end, with the default world's parameter
    p1, a1, e1 = (numbers[f"{t}.bits_{k}"] for k in ("prior", "aligned", "end"))
    p2, a2, e2 = (numbers[f"{bad}.bits_{k}"] for k in ("prior", "aligned", "end"))
    decay, revert, phi = position(p1, a1, e1, p2, a2, e2)
    numbers[f"{bad}.end_if_reversion"], numbers[f"{bad}.end_if_decay"], numbers["phi"] = revert, decay, phi
    notes = [f"{bad}: prior {p2:+.2f}, aligned {a2:+.2f}, end {e2:+.2f} bits; with {t}'s parameter, reversion "
             f"predicts {revert:+.2f}, decay to indifference {decay:+.2f}: φ = {phi:+.2f} (0 decay, 1 reversion; "
             f"toward_own_prior tests φ > 1/2)"]
    return Findings(tests, numbers, notes)
