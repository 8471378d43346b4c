"""Analyses of a whole grid, named by a sweep file's ``analysis:`` key and pre-registered with it:
what each point's claim cannot say alone (a trend across points).

``elasticity``: the per-seed read-outs of each point's ``elasticity`` claim
(``verdicts.elasticity_quantities``) and, for each axis, their trend: per seed, the least-squares
slope of the read-out (log2 of a rate or ratio; a share or a gap in its own units) on log2 of the
axis's physical size — pre-training tokens where the axis changes pre-training's steps, batch or
sequence length, else the model's parameters — averaged over the other axes' levels; then the mean
over seeds with Student's t interval (seeds are the replication, as in every verdict). Written to
``analysis.json`` in the sweep directory and shown in its report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from driftlab.runs.atomic import read_json, write_json
from driftlab.sweep.report import interval

TRENDS = {  # read-out -> (label, log2 of it?)
    "ratio": ("rebound / resistance: alignment's half-time over the inverse's (to the prior)", True),
    "align_half_time": ("resistance: alignment's steps to half its gain", True),
    "half_time": ("rebound: steps to undo half, training toward the prior", True),
    "misaligned_ratio": ("alignment's half-time over misaligned SFT's", True),
    "benign_ratio": ("alignment's half-time over a benign fine-tune's", True),
    "quarter_to_half": ("steps to undo a quarter of the gain over steps to undo half (toward the prior)", False),
    "gain": ("bits alignment gained", False),
    "prior_gap": ("prior minus Bayes prior (bits)", False),
    "benign_undone": ("share of the gain a benign fine-tune undoes", False),
}


def _params(cfg) -> int:
    """Parameters of the tiny Llama's blocks (attention 4 d^2, gated MLP 3 d d_mlp per layer)."""
    m = cfg.model
    return m.n_layers * (4 * m.d_model ** 2 + 3 * m.d_model * m.d_mlp)


def _tokens(cfg) -> int:
    s = cfg.stages[0]
    return s.steps * s.batch_size * s.grad_accum * s.seq_len


def seed_slopes(groups: list[list[dict]], over: str, key: str, log: bool, seeds: list[int]) -> list[float]:
    """Per seed: the least-squares slope of ``key`` (log2 of it with ``log``) on log2 of each point's
    ``over`` within each group (the points that differ only in this axis), averaged over groups."""
    out = []
    for s in seeds:
        slopes = []
        for group in groups:
            if len(group) < 2:
                continue
            x = np.log2([g[over] for g in group])
            y = np.array([g["seeds"][s][key] for g in group], dtype=float)
            if log:
                y = np.log2(np.where(y > 0, y, np.nan))
            if np.all(np.isfinite(y)) and np.ptp(x) > 0:
                slopes.append(float(np.polyfit(x, y, 1)[0]))
        if slopes:
            out.append(float(np.mean(slopes)))
    return out


def elasticity(sweep, root: Path) -> dict[str, Any]:
    from driftlab.experiments.claims import Measured, Rule
    from driftlab.experiments.claims.elasticity import elasticity_quantities
    from driftlab.experiments.spec import load_experiment_dir

    points = []
    for point in sweep.points:
        where = sweep.point_dir(root, point)
        if point.experiment is None or not (where / "status.json").exists() or \
                read_json(where / "status.json", ValueError, "unreadable").get("state") != "complete":
            continue
        exp = load_experiment_dir(where)
        cfg = next(iter(exp.arms.values()))
        m, r = Measured(where / "metrics.parquet", exp.arms), Rule(exp.claim)
        seeds = {s: elasticity_quantities(m, r, s) for s in m.seeds}
        for q in seeds.values():
            q["prior_gap"] = q["prior"] - q["bayes_prior"]
        points.append({"values": point.values, "tokens": _tokens(cfg), "params": _params(cfg), "seeds": seeds})
    rows = []
    for p in points:
        row = {"values": p["values"], "tokens": p["tokens"], "params": p["params"], "seeds": len(p["seeds"]),
               "censored": int(sum(q["censored"] for q in p["seeds"].values())),
               "benign_censored": int(sum(q["benign_censored"] for q in p["seeds"].values()))}
        for key in ("prior", "bayes_prior", "aligned", "end", "misaligned_end", "benign_end", "misaligned_half_time",
                    "benign_half_time", *TRENDS):
            row[key] = list(interval([q[key] for q in p["seeds"].values()]))
        rows.append(row)
    trends = []
    for axis in sweep.axes:
        others = [a.name for a in sweep.axes if a.name != axis.name]
        groups: dict[tuple, list[dict]] = {}
        for p in points:
            groups.setdefault(tuple(p["values"][o] for o in others), []).append(p)
        which = "tokens" if len({p["tokens"] for p in points if all(p["values"][o] == points[0]["values"][o]
                                                                    for o in others)}) > 1 else "params"
        seeds = sorted(set.intersection(*(set(p["seeds"]) for p in points))) if points else []
        for key, (label, log) in TRENDS.items():
            per_seed = seed_slopes(list(groups.values()), which, key, log, seeds)
            mean, lo, hi = interval(per_seed)
            trends.append({"axis": axis.name, "over": which, "readout": key, "label": label, "log2": log,
                           "slope": mean, "lo": lo, "hi": hi, "seeds": len(per_seed)})
    return {"analysis": "elasticity", "points": rows, "trends": trends,
            "method": "per seed: least-squares slope on log2(" + "tokens or parameters" + ") over the axis's levels, "
                      "averaged over the other axes; mean over seeds, 95% Student-t interval"}


ANALYSES = {"elasticity": elasticity}


def run_analysis(sweep, root: Path) -> dict[str, Any] | None:
    if sweep.analysis is None:
        return None
    result = ANALYSES[sweep.analysis](sweep, Path(root))
    write_json(Path(root) / "analysis.json", _finite(result))
    return result


def _finite(obj: Any) -> Any:
    """NaN as null: strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
