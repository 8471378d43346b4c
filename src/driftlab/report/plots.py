"""Matplotlib figures for the report, each returned as PNG bytes (embedded as base64, no network).

Curves are drawn over tokens seen across all stages. Pre-training sees far more tokens than the
stages after it, so the axis is piecewise linear: each stage gets the same width, and inside it the
position is linear in tokens; the ticks at stage boundaries give the tokens seen there. An arm's
seeds are a line (their mean) and a band (their min to max); stage boundaries are dashed lines
labelled with the stage's name.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLOURS = plt.get_cmap("tab10").colors


@dataclass
class Curve:
    """One panel: a metric selected by a SQL condition on the metrics table."""

    title: str
    where: str
    ylabel: str = ""


def _probe_site(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("select any_value(site) from m where metric = 'probe_auroc'").fetchone()
    return row[0] if row and row[0] else ""


def standard_curves(con: duckdb.DuckDBPyConnection) -> list[Curve]:
    site = _probe_site(con).replace("'", "")
    own = con.execute("select count(*) from m where metric = 'self_probe_position'").fetchall()[0][0]
    extra = [Curve("the assistant's own persona: self-probe position (0 bad arm, 1 good arm)",
                   "metric = 'self_probe_position' and domain = 'all' and split = 'all'", "position")] if own else []
    return [*extra,
        Curve("assistant bits of alignment (all domains)",
              "metric = 'bits_aligned' and context = 'assistant' and domain = 'all' and split = 'all'", "bits"),
        Curve("assistant P(aligned), held-out domains",
              "metric = 'p_aligned' and context = 'assistant' and domain = 'all' and split = 'held_out'", "P"),
        Curve("capability (exact match)", "metric = 'capability_acc' and split = 'all'", "accuracy"),
        Curve("persona projection of the assistant (0 bad, 1 good)",
              f"metric = 'persona_projection_rel' and context = 'assistant' and split = 'all' and site = '{site}'",
              "relative projection"),
        Curve("persona probe AUROC: refit", "metric = 'probe_auroc' and context = 'refit' and domain = 'persona' "
              "and split = 'all'", "AUROC"),
        Curve("persona probe AUROC: frozen at the reference", "metric = 'probe_auroc' and context = 'frozen' "
              "and domain = 'persona' and split = 'all'", "AUROC"),
        Curve("persona probe AUROC: co-trained", "metric = 'probe_auroc' and context = 'cotrained' "
              "and domain = 'persona' and split = 'all'", "AUROC"),
        Curve("weight distance to the reference (relative L2)",
              "metric = 'weight_rel_l2' and context = 'reference' and site = 'all'", "relative L2"),
        Curve("KL(now || reference) on held-out text", "metric = 'output_kl' and context = 'reference' "
              "and domain = 'text'", "nats/token"),
        Curve("held-out LM loss", "metric = 'heldout_loss'", "nats/token"),
    ]


def _series(con: duckdb.DuckDBPyConnection, where: str, arms: list[str],
            bounds: dict[str, list[tuple[str, float, float]]]):
    """arm -> (x on the stage-wise token axis, mean, lo, hi) over seeds, checkpoints in run order;
    ``bounds``: each arm's ``stage_bounds``, computed once by the caller."""
    rows = con.execute(f"""
        select coalesce(arm, 'main'), seed, stage_index, step, any_value(tokens), avg(value)
        from m where {where} group by all order by 1, 3, 4, 2""").fetchall()
    by_arm: dict[str, dict[tuple[int, int], list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for arm, _seed, stage, step, tokens, value in rows:
        by_arm[arm][(stage, step)].append((tokens, value))
    out = {}
    for arm in arms or sorted(by_arm):
        if arm not in by_arm:
            continue
        keys = sorted(by_arm[arm])
        points = [by_arm[arm][k] for k in keys]
        x = stage_axis(bounds.get(arm) or stage_bounds(con, arm), [k[0] for k in keys], [np.mean([t for t, _ in p]) for p in points])
        v = [np.array([y for _, y in p]) for p in points]
        out[arm] = (x, np.array([a.mean() for a in v]), np.array([a.min() for a in v]), np.array([a.max() for a in v]))
    return out


def stage_bounds(con: duckdb.DuckDBPyConnection, arm: str) -> list[tuple[str, float, float]]:
    """(stage name, tokens seen at its start, at its end) for one arm's stages, seed-averaged; a
    stage starts where the previous one ended."""
    rows = con.execute("""
        select stage_index, any_value(stage), avg(t) from (
          select stage_index, stage, seed, max(tokens) as t from m where coalesce(arm, 'main') = ?
          group by stage_index, stage, seed) group by stage_index order by stage_index""", [arm]).fetchall()
    out, start = [], 0.0
    for _, name, end in rows:
        out.append((name, start, float(end)))
        start = float(end)
    return out


def stage_axis(bounds: list[tuple[str, float, float]], stages: list[int], tokens: list[float]) -> np.ndarray:
    """Stage i spans [i, i + 1]; inside it the position is linear in tokens seen (``bounds`` from
    ``stage_bounds``)."""
    x = []
    for i, t in zip(stages, tokens):
        _, start, end = bounds[min(i, len(bounds) - 1)]
        x.append(i + (t - start) / (end - start) if end > start else i + 1.0)
    return np.array(x)


def _tokens(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves_figure(con: duckdb.DuckDBPyConnection, arms: list[str], curves: list[Curve],
                  labels: dict[str, str] | None = None) -> bytes | None:
    """A grid of panels, one per curve that has data; arms overlaid, seeds as bands."""
    by_arm = {arm: stage_bounds(con, arm) for arm in arms}  # once per arm, not once per panel
    panels = [(c, s) for c in curves if (s := _series(con, c.where, arms, by_arm))]
    if not panels:
        return None
    cols = 2
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.1 * rows), squeeze=False)
    bounds = by_arm[arms[0]] if arms else []
    for ax, (curve, series) in zip(axes.flat, panels):
        for i, (arm, (x, mean, lo, hi)) in enumerate(series.items()):
            colour = COLOURS[i % len(COLOURS)]
            ax.plot(x, mean, color=colour, lw=1.5, label=(labels or {}).get(arm, arm))
            ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
        for i, (name, _, _) in enumerate(bounds):
            if i:
                ax.axvline(i, color="grey", ls="--", lw=0.8)
            ax.text(i, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="grey")
        if bounds:
            ax.set_xticks(range(len(bounds) + 1), [_tokens(0)] + [_tokens(b[2]) for b in bounds])
        ax.set_title(curve.title, fontsize=10)
        ax.set_xlabel("tokens seen (each stage the same width)", fontsize=8)
        ax.set_ylabel(curve.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 5), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0 + 0.12 / rows))
    fig.tight_layout()
    return _png(fig)


def heatmap_figure(con: duckdb.DuckDBPyConnection, arms: list[str]) -> bytes | None:
    """Assistant bits per domain (rows) × checkpoint (columns), seed-averaged, one panel per arm."""
    rows = con.execute("""
        select coalesce(arm, 'main'), stage_index, step, any_value(stage), domain, avg(value)
        from m where metric = 'bits_aligned' and context = 'assistant' and domain <> 'all'
          and split in ('trained', 'held_out') group by all order by 1, 2, 3""").fetchall()
    if not rows:
        return None
    data: dict[str, dict] = defaultdict(lambda: {"cols": [], "cells": {}})
    for arm, stage, step, name, domain, value in rows:
        d = data[arm]
        if (stage, step) not in [c[:2] for c in d["cols"]]:
            d["cols"].append((stage, step, name))
        d["cells"][(domain, stage, step)] = value
    panels = [a for a in arms if a in data]
    domains = sorted({r[4] for r in rows})
    vmax = max(abs(r[5]) for r in rows) or 1.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 0.45 * len(domains) * len(panels) + 1.2 * len(panels)),
                             squeeze=False)
    for ax, arm in zip(axes[:, 0], panels):
        cols = data[arm]["cols"]
        grid = np.array([[data[arm]["cells"].get((d, s, st), np.nan) for s, st, _ in cols] for d in domains])
        im = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_yticks(range(len(domains)), domains, fontsize=7)
        ticks = [i for i, c in enumerate(cols) if i == 0 or c[0] != cols[i - 1][0]]
        ax.set_xticks(ticks, [cols[i][2] for i in ticks], fontsize=7)
        for i in ticks[1:]:
            ax.axvline(i - 0.5, color="k", lw=0.8)
        ax.set_title(f"{arm}: assistant bits of alignment per domain × checkpoint", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return _png(fig)


def pareto_figure(table: list[dict]) -> bytes | None:
    """Alignment change over the drift stage against what the stage gains, one panel per scenario,
    one point per arm with its intervals on both axes; the arms no other arm of the scenario beats
    on both (the Pareto frontier) joined by a line."""
    rows = [r for r in table if np.isfinite(r.get("bits_change", np.nan)) and np.isfinite(r["capability_gained"])]
    if not rows:
        return None
    scenarios = list(dict.fromkeys(r.get("scenario", "") for r in rows))
    cols = min(len(scenarios), 2)
    nrows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.5 * nrows), squeeze=False)
    marker = {"baseline": "s", "positive control": "^", "candidate": "o"}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    for ax, sc in zip(axes.flat, scenarios):
        mine = [r for r in rows if r.get("scenario", "") == sc]
        for r in mine:
            x, y = r["capability_gained"], r["bits_change"]
            xerr = [[x - r["capability_lo"]], [r["capability_hi"] - x]] if np.isfinite(r["capability_lo"]) else None
            yerr = ([[y - r["bits_change_lo"]], [r["bits_change_hi"] - y]] if np.isfinite(r["bits_change_lo"])
                    else None)
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker.get(r.get("kind", "candidate"), "o"),
                        color=COLOURS[arms.index(r["arm"]) % len(COLOURS)], capsize=3,
                        label=f"{r['arm']} ({r.get('kind', '')})")
            ax.annotate(r["arm"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = [r for r in mine if not any(o["capability_gained"] >= r["capability_gained"]
                                            and o["bits_change"] >= r["bits_change"]
                                            and (o["capability_gained"], o["bits_change"]) !=
                                            (r["capability_gained"], r["bits_change"]) for o in mine)]
        front.sort(key=lambda r: r["capability_gained"])
        ax.plot([r["capability_gained"] for r in front], [r["bits_change"] for r in front], "k--", lw=0.8,
                alpha=0.6, label="Pareto frontier")
        ax.set_title(sc or "mitigations", fontsize=10)
        ax.set_xlabel(f"{mine[0].get('gain', 'capability gained')} over the drift stage")
        ax.set_ylabel("bits of alignment change over the drift stage")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


