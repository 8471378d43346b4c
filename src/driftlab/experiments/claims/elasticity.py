"""elasticity: training back toward the prior undoes alignment faster than alignment made it."""

from __future__ import annotations

import numpy as np

from driftlab.experiments.claims.measured import Measured
from driftlab.experiments.claims.registry import Findings, Rule, claim
from driftlab.experiments.stats import Test


def _crossing(steps: list[int], values: list[float], level: float) -> float:
    """The first step at which a falling curve reaches ``level``, linear between checkpoints; NaN
    if it never does."""
    for i, (t, v) in enumerate(zip(steps, values)):
        if v <= level:
            if i == 0:
                return float(t)
            t0, v0 = steps[i - 1], values[i - 1]
            return float(t0 + (t - t0) * (v0 - level) / (v0 - v))
    return float("nan")


def quarter_to_half(steps: list[int], values: list[float], start: float, gain: float) -> float:
    """First-passage steps for a falling curve from ``start`` to undo a quarter of ``gain``, over its
    steps to undo half (NaN when it never undoes half)."""
    half = _crossing(steps, values, start - gain / 2)
    return _crossing(steps, values, start - gain / 4) / half if half > 0 else float("nan")


def _mean(values: list[float]) -> float:
    """The mean over the seeds that have the value; NaN when none has (a read-out every seed censored)."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


INVERSES = ("inverse", "misaligned", "benign")  # the rule's arms, each an inverse stage read the same way


def elasticity_quantities(m: Measured, r: Rule, seed: int) -> dict[str, float]:
    """One seed's read-outs, on the domains alignment trained (the assistant, no evidence; every
    stage's curve starts at the previous stage's end):

    - ``gain``: alignment's bits over the model's prior (the end of pre-training); ``bayes_prior``:
      the world's true prior in bits (ground truth: Bayes on the pre-training distribution);
    - resistance ``align_half_time``: alignment's steps until half the gain was reached (linear
      between checkpoints), ``align_steps_per_bit`` = that / (gain / 2);
    - for each inverse arm ``<arm>_half_time``: its steps until half the gain is undone (the stage's
      length when it never gets there, ``<arm>_censored`` 1, which can only understate the
      rebound), ``<arm>_steps_per_bit``, ``<arm>_ratio`` = alignment's half-time over it (> 1: the
      rebound is faster per bit than alignment was), ``<arm>_undone`` (share of the gain undone at
      the end), ``<arm>_end`` (bits) and ``<arm>_quarter_to_half`` (its steps to undo a quarter of
      the gain over its steps to undo half, both first passages: 0.5 for a straight fall,
      ln(4/3) / ln 2 = 0.415 for an exponential one, more for one that starts slowly; a fall that
      overshoots and recovers reads as it fell, where d9e15f9's share of the fall done in the first
      quarter of steps went above 1 and passed > 0.25 whatever the shape).
    The judged arm (the rule's ``inverse``) is also under the plain names: ``half_time``, ``ratio``..."""
    where = {"context": "assistant", "domain": "all", "split": "trained"}
    first = r.arm("inverse")
    prior = m.end(first, seed, 0, "bits_aligned", **where)
    aligned = m.end(first, seed, 1, "bits_aligned", **where)
    gain = aligned - prior

    def curve(arm: str, stage: int, start: float) -> tuple[list[int], list[float]]:
        steps = sorted(t for t in m.steps.get((arm, seed, stage), []) if t > 0)
        return [0, *steps], [start, *(m.at(arm, seed, stage, t, "bits_aligned", **where) for t in steps)]

    out = {"prior": prior, "aligned": aligned, "gain": gain, "bayes_prior": m.end(first, seed, 0, "bayes_bits", **where)}
    up_steps, up = curve(first, 1, prior)
    rise = _crossing(up_steps, [-v for v in up], -(prior + gain / 2)) if gain > 0 else float("nan")
    out["align_half_time"] = rise
    out["align_steps_per_bit"] = rise / (gain / 2) if gain > 0 else float("nan")
    for key in INVERSES:
        arm = r.arm(key)
        steps, values = curve(arm, 2, aligned)
        total = m.configs[arm].stages[2].steps
        half = _crossing(steps, values, aligned - gain / 2) if gain > 0 else float("nan")
        name = "inverse" if key == "inverse" else key
        out[f"{name}_censored"] = float(np.isnan(half))
        out[f"{name}_half_time"] = float(total) if np.isnan(half) else half
        out[f"{name}_steps_per_bit"] = out[f"{name}_half_time"] / (gain / 2) if gain > 0 else float("nan")
        out[f"{name}_ratio"] = rise / out[f"{name}_half_time"] if out[f"{name}_half_time"] > 0 else float("inf")
        out[f"{name}_undone"] = (aligned - values[-1]) / gain if gain > 0 else float("nan")
        out[f"{name}_end"] = values[-1]
        out[f"{name}_quarter_to_half"] = quarter_to_half(steps, values, aligned, gain) if gain > 0 else float("nan")
    for k in ("censored", "half_time", "steps_per_bit", "ratio", "undone", "end", "quarter_to_half"):
        out[k] = out[f"inverse_{k}"]
    return out


@claim("elasticity",
       "After alignment, training back toward the pre-training distribution undoes alignment faster than "
       "alignment made it (rebound faster than resistance, per bit), and the fall is fast, then slow "
       "(Ji et al. 2025).",
       world_only="the world's Bayes prior (ground truth) and a tiny model pre-trained from scratch",
       inverse=("arm", "the arm whose last stage trains back toward the prior: SFT on targets at the pre-training "
                       "prior, with alignment's prompts, lr and batch (the judged inverse)"),
       misaligned=("arm", "the arm whose last stage is misaligned SFT on the aligned domains (reported)"),
       benign=("arm", "the arm whose last stage is a benign fine-tune at alignment's lr (reported)"),
       min_alignment_gain=("number", "treatment check: bits alignment must gain over the prior on its domains"),
       min_undone=("number", "treatment check: share of that gain the inverse stage must undo (else no half-time)"),
       max_prior_gap=("number", "control check: |the model's prior - the world's Bayes prior| in bits must stay below "
                                "this (pre-training learned the distribution the rebound would return to)"),
       min_ratio=("number", "alignment's half-time over the inverse stage's half-time must exceed this"),
       max_quarter_to_half=("number", "the inverse stage's steps to undo a quarter of the gain over its steps to "
                                      "undo half must stay below this (0.5: a straight fall)"))
def elasticity(m: Measured, r: Rule) -> Findings:
    """Per-seed read-outs (``elasticity_quantities``), seeds the unit of replication: each test's
    interval is Student's t over seeds (the jackknife of a mean). The ratio is a per-seed ratio's
    mean, not a ratio of means: a seed's alignment and inverse stage share that seed's model."""
    inv = r.arm("inverse")
    q = {s: elasticity_quantities(m, r, s) for s in m.seeds}

    def per_seed(key: str) -> np.ndarray:
        return m.grid(lambda s, _: [q[s][key]], [None])

    first = lambda x: x[:, 0]  # noqa: E731
    tests = [
        Test("aligned", "bits alignment gained over the prior on its domains", r.estimate(per_seed("gain"), first),
             r.num("min_alignment_gain"), ">", " bits", role="treatment"),
        Test("inverse_undid_half", f"share of that gain undone by the end of {inv}'s inverse stage",
             r.estimate(per_seed("undone"), first), r.num("min_undone"), ">", role="treatment"),
        Test("prior_learned", "|prior - Bayes prior| on the aligned domains after pre-training (ground truth)",
             r.estimate(m.grid(lambda s, _: [abs(q[s]["prior"] - q[s]["bayes_prior"])], [None]), first),
             r.num("max_prior_gap"), "<", " bits", role="control"),
        Test("rebound_faster", f"alignment's half-time over {inv}'s (steps to gain, then to undo, half the gain)",
             r.estimate(per_seed("ratio"), first), r.num("min_ratio"), ">"),
        Test("fast_then_slow", f"{inv}'s steps to undo a quarter of alignment's gain over its steps to undo half "
             f"(0.5 straight, 0.415 exponential)", r.estimate(per_seed("quarter_to_half"), first),
             r.num("max_quarter_to_half"), "<"),
    ]
    keys = sorted({k for s in m.seeds for k in q[s]})
    numbers = {k: _mean([q[s][k] for s in m.seeds]) for k in keys}
    numbers["prior_gap_to_bayes"] = float(np.mean([q[s]["prior"] - q[s]["bayes_prior"] for s in m.seeds]))
    n = numbers
    notes = [f"prior {n['prior']:+.2f} bits (Bayes {n['bayes_prior']:+.2f}), aligned {n['aligned']:+.2f}: alignment "
             f"reached half its gain in {n['align_half_time']:.1f} steps"]
    for key, arm in (("inverse", inv), ("misaligned", r.arm("misaligned")), ("benign", r.arm("benign"))):
        censored = int(sum(q[s][f"{key}_censored"] for s in m.seeds))
        notes.append(f"{arm}: undid half in {n[f'{key}_half_time']:.1f} steps (ratio {n[f'{key}_ratio']:.2f}), "
                     f"ended at {n[f'{key}_end']:+.2f} bits ({n[f'{key}_undone']:.0%} of the gain undone)"
                     + (f"; {censored} seed(s) never undid half (half-time = the stage's length: understated)"
                        if censored else ""))
    return Findings(tests, numbers, notes)
