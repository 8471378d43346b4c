"""The elasticity read-outs and their trend over a sweep's axis, on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.experiments.claims.elasticity import _crossing
from driftlab.sweep.analyses import seed_slopes
from driftlab.sweep.report import interval


def test_half_time_is_the_first_crossing_linear_between_checkpoints():
    steps, bits = [0, 10, 20, 40], [4.0, 3.0, 1.0, 0.5]
    assert _crossing(steps, bits, 2.0) == 15.0  # halfway between 10 (3.0) and 20 (1.0)
    assert _crossing(steps, bits, 4.0) == 0.0
    assert np.isnan(_crossing(steps, bits, 0.0))  # never reached: censored by the caller


def test_trend_interval_over_seeds_keeps_its_coverage_at_three_seeds():
    """A known slope of log2(ratio) per doubling of tokens (0.3), three token levels, two sizes,
    seed-level noise in each seed's slope and point-level noise: the 95% t interval over three seeds'
    slopes covers the truth ~95% of the time (a percentile bootstrap over three would cover ~75%)."""
    rng = np.random.default_rng(0)
    tokens, truth, covered, trials = [0.5e6, 2e6, 6e6], 0.3, 0, 2000
    for _ in range(trials):
        seed_slope = truth + rng.normal(0, 0.2, size=3)
        groups = []
        for size_offset in (0.0, 0.8):
            group = []
            for t in tokens:
                ratios = {s: 2 ** (size_offset + seed_slope[s] * np.log2(t / 1e6) + rng.normal(0, 0.1)) for s in range(3)}
                group.append({"tokens": t, "seeds": {s: {"ratio": r} for s, r in ratios.items()}})
            groups.append(group)
        _, lo, hi = interval(seed_slopes(groups, "tokens", "ratio", True, [0, 1, 2]))
        covered += lo <= truth <= hi
    assert 0.93 <= covered / trials <= 0.97, covered / trials


def test_elasticity_read_outs_recover_known_half_times_from_a_metrics_table(tmp_path):
    """Exponential curves with known rates, written as metric rows at the preset's checkpoints:
    alignment rises from the prior with half-time ln2/0.05 (13.9 steps), training back to the prior
    falls with half-time ln2/0.2 (3.5 steps); the read-outs (linear between checkpoints) recover
    both to within the checkpoints' spacing, the ratio ~4, and a fall that is fast, then slow."""
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftlab.config import ClaimSpec
    from driftlab.experiments.claims import Measured, Rule, evaluate
    from driftlab.experiments.claims.elasticity import elasticity_quantities
    from driftlab.experiments.spec import load_experiment
    from driftlab.runs.metrics import SCHEMA
    from driftlab.train.schedule import checkpoint_steps

    exp = load_experiment("elasticity")
    prior, aligned, bayes = 1.5, 3.0, 1.51
    rows = []

    def row(arm, seed, stage, step, metric, value):
        rows.append({"run": "e", "arm": arm, "seed": seed, "stage": str(stage), "stage_index": stage, "step": step,
                     "global_step": 1000 * stage + step, "tokens": 0, "metric": metric, "context": "assistant",
                     "domain": "all", "split": "trained", "site": None, "value": value})

    for arm, cfg in exp.arms.items():
        for seed in exp.seeds:
            row(arm, seed, 0, cfg.stages[0].steps, "bits_aligned", prior + 0.01 * seed)
            row(arm, seed, 0, cfg.stages[0].steps, "bayes_bits", bayes)
            for t in checkpoint_steps(cfg.stages[1]):
                row(arm, seed, 1, t, "bits_aligned", prior + (aligned - prior) * (1 - math.exp(-0.05 * t)))
            end = prior + (aligned - prior) * (1 - math.exp(-0.05 * cfg.stages[1].steps))
            rate = {"to_prior": 0.2, "misaligned": 2.0, "benign": 0.004}[arm]
            floor = {"to_prior": prior, "misaligned": -10.0, "benign": prior}[arm]
            for t in checkpoint_steps(cfg.stages[2]):
                row(arm, seed, 2, t, "bits_aligned", floor + (end - floor) * math.exp(-rate * t))
    path = tmp_path / "metrics.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    m, r = Measured(path, exp.arms), Rule(exp.claim)
    q = elasticity_quantities(m, r, 0)
    gain = q["gain"]
    half_up = -math.log(1 - (gain / 2) / (aligned - prior)) / 0.05  # the true rising half-time
    assert abs(q["align_half_time"] - half_up) < 3.0, (q["align_half_time"], half_up)
    half_down = -math.log(1 - (gain / 2) / (q["aligned"] - prior)) / 0.2
    assert abs(q["half_time"] - half_down) < 1.0, (q["half_time"], half_down)
    assert 2.5 < q["ratio"] < 6.0 and abs(q["quarter_to_half"] - math.log(4 / 3) / math.log(2)) < 0.08 and q["undone"] > 0.9
    assert q["misaligned_half_time"] < 1.0 and q["misaligned_ratio"] > q["ratio"]
    assert q["benign_censored"] == 1.0 and q["benign_half_time"] == exp.arms["benign"].stages[2].steps
    assert abs(q["prior"] - q["bayes_prior"]) < 0.05
    from driftlab.config import DesignSpec

    exp.claim = exp.claim.model_copy(update={"design": DesignSpec(looks=[len(exp.seeds)])})  # one look: the read-outs
    v = evaluate(exp, path)
    outcome = {t.name: t.outcome for t in v.tests}
    assert outcome["aligned"] == "supported" and outcome["prior_learned"] == "supported"
    assert outcome["rebound_faster"] == "supported" and v.outcome == "supported"
    assert ClaimSpec.model_validate(exp.claim.model_dump()).rule["inverse"] == "to_prior"


def test_the_analysis_section_keeps_an_axis_named_like_a_physical_size(tmp_path, monkeypatch):
    """The elasticity grid's axis is called ``tokens`` while each analysis row also records the
    pre-training tokens as a number: the report's table and its per-axis figures show the axis's
    labels (0.5M, 2M), not the number in their place (which left the figures over tokens empty)."""
    from driftlab.runs.atomic import write_json
    from driftlab.sweep import report

    mean = [1.0, 0.5, 1.5]
    points = [{"values": {"tokens": t, "size": z}, "tokens": n, "params": 65536, "seeds": 3, "censored": 0,
               "benign_censored": 0, "ratio": mean, "align_half_time": mean, "half_time": mean,
               "misaligned_ratio": mean, "benign_ratio": mean}
              for t, n in (("0.5M", 491520), ("2M", 1966080)) for z in ("small", "large")]
    write_json(tmp_path / "analysis.json", {"analysis": "elasticity", "points": points, "trends": [], "method": "m"})
    seen = []
    monkeypatch.setattr(report, "_summary_figure", lambda axis, labels, series, axes, title: seen.append((axis, series)))
    html = report._analysis_html(tmp_path, None, ["tokens", "size"], {"tokens": ["0.5M", "2M"], "size": ["small", "large"]})
    assert "<td>0.5M</td><td>small</td><td>0.49M</td>" in html.replace("\n", ""), html[:2000]
    keys = {key for axis, series in seen for key in series}
    assert keys == {(t, z, "") for t in ("0.5M", "2M") for z in ("small", "large")}, keys


def test_fast_then_slow_reads_the_shape_of_the_fall_and_not_an_overshoot():
    """Steps to undo a quarter of the gain over steps to undo half: 0.415 for an exponential fall,
    0.5 for a straight one even when it overshoots the prior and recovers (d9e15f9's share of the
    fall done in the first quarter read that one as 1.07, passing > 0.25), more for a slow start."""
    import math

    from driftlab.experiments.claims.elasticity import quarter_to_half

    steps = list(range(0, 121))
    aligned, gain = 3.0, 2.0
    exponential = [aligned - gain * (1 - math.exp(-0.05 * t)) for t in steps]
    straight_overshoot = [aligned - 3.0 * t / 60 if t <= 60 else aligned - 3.0 + 1.6 * (t - 60) / 60 for t in steps]
    slow_start = [aligned - gain / (1 + math.exp(-(t - 40) / 6)) for t in steps]
    assert quarter_to_half(steps, exponential, aligned, gain) == pytest.approx(math.log(4 / 3) / math.log(2), abs=0.01)
    assert quarter_to_half(steps, straight_overshoot, aligned, gain) == pytest.approx(0.5, abs=0.01)
    assert quarter_to_half(steps, slow_start, aligned, gain) > 0.6
    old = (aligned - straight_overshoot[30]) / (aligned - straight_overshoot[-1])  # d9e15f9's front share
    assert old > 1.0
    assert math.isnan(quarter_to_half(steps, [aligned] * len(steps), aligned, gain))  # never undoes half
