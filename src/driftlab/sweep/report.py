"""A sweep's ``report.html``: every point's verdict in one grid, and the key metrics at the end of
each arm's last stage plotted against each axis, with intervals over seeds.

What is plotted is the sweep file's ``report: {metrics: [...]}`` (each a metric slice: ``metric``
and optionally ``context``, ``domain``, ``split``, ``site``, ``label``), by default the assistant's
bits aligned and, where measured, capability. Each point's value is the mean over its seeds of the
slice at the last checkpoint of each run; the interval is Student's t over seeds (seeds are the
unit of replication, as in the verdicts), none with one seed.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from driftlab.errors import DataError
from driftlab.experiments.stats import jackknife_t
from driftlab.report.html import CSS, _img, _table
from driftlab.runs.atomic import read_json, write_text
from driftlab.sweep.query import _quote, connect

DEFAULT_METRICS = [
    {"metric": "bits_aligned", "context": "assistant", "domain": "all", "split": "all", "label": "bits aligned (assistant)"},
    {"metric": "capability_acc", "split": "all", "label": "capability"},
]
SLICE = ("context", "domain", "split", "site")


def interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds and its interval, as every verdict's: the jackknife-t over seeds (for a mean,
    exactly Student's t; NaN bounds with one seed)."""
    x = np.asarray([v for v in values if v == v], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    e = jackknife_t(x[:, None, None], lambda q: q[:, 0], confidence)
    return e.value, e.lo, e.hi


def end_values(con, axes: list[str], spec: dict[str, Any]) -> dict[tuple, list[float]]:
    """(axis labels..., arm) -> the slice's value at each seed's last checkpoint."""
    where = [f"metric = '{spec['metric']}'"] + [f"{k} = '{spec[k]}'" for k in SLICE if spec.get(k) is not None]
    cols = ", ".join(_quote(a) for a in axes)
    keys = f"{cols}, " if axes else ""
    rows = con.execute(f"""select {keys}arm, seed, value from metrics where {' and '.join(where)}
        qualify row_number() over (partition by {keys}arm, seed order by global_step desc) = 1""").fetchall()
    out: dict[tuple, list[float]] = {}
    for r in rows:
        out.setdefault(tuple(str(v) for v in r[:len(axes)]) + (r[len(axes)],), []).append(r[-1])
    return out


def _figure(axis: str, labels: list[str], series: dict[tuple, list[float]], axes: list[str],
            title: str) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from driftlab.report.plots import _png

    k = axes.index(axis)
    lines: dict[tuple, dict[str, tuple[float, float, float]]] = {}
    for key, values in series.items():
        rest = tuple(f"{a}={v}" for a, v in zip(axes, key) if a != axis) + (key[-1],)
        lines.setdefault(rest, {})[key[k]] = interval(values)
    if not lines:
        return None
    numeric = all(_isnum(v) for v in labels)
    xs = [float(v) for v in labels] if numeric else list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for rest, points in sorted(lines.items()):
        x = [xs[i] for i, lab in enumerate(labels) if lab in points]
        m = np.array([points[lab][0] for lab in labels if lab in points])
        lo = np.array([points[lab][1] for lab in labels if lab in points])
        hi = np.array([points[lab][2] for lab in labels if lab in points])
        err = np.vstack([m - lo, hi - m])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.errorbar(x, m, yerr=err, marker="o", capsize=3, label=" ".join(rest))
    if numeric and len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 20:
        ax.set_xscale("log")
    if not numeric or len(xs) <= 8:  # each value of the axis, as the sweep file wrote it
        ax.set_xticks(xs, labels)
        ax.minorticks_off()
    ax.set_xlabel(axis)
    ax.set_ylabel(title)
    ax.grid(alpha=0.3)
    if len(lines) <= 12:
        ax.legend(fontsize=7)
    return _png(fig)


def _isnum(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def build_sweep_report(root: Path) -> str:
    from driftlab.sweep.driver import sweep_points
    from driftlab.sweep.spec import load_sweep

    root = Path(root)
    sweep = load_sweep(root / "sweep.yaml") if (root / "sweep.yaml").is_file() else None
    if sweep is None:
        raise DataError(f"{root}: not a sweep directory (no sweep.yaml)")
    axes = [a.name for a in sweep.axes]
    order = {a.name: a.labels for a in sweep.axes}
    con = connect(root)
    verdicts = {str(Path(r[0])): r[1:] for r in con.execute(
        "select point, outcome, claim, seeds from verdicts").fetchall()}
    status = read_json(root / "status.json", DataError, "unreadable") if (root / "status.json").exists() else {}
    failed = {f["point"]: f["error"] for f in status.get("failures", []) if f.get("point")}
    specs = (sweep.report or {}).get("metrics") or DEFAULT_METRICS
    series = [(s, end_values(con, axes, s)) for s in specs]
    series = [(s, v) for s, v in series if v]
    plot_axes = [a for a in axes if a != "seed"]  # a seed axis is replication: pooled in the figures
    pooled = [(s, end_values(con, plot_axes, s)) for s, _ in series]
    arms = sorted({k[-1] for _, v in series for k in v})
    rows = []
    for values, where in sweep_points(root):
        v = verdicts.get(str(where))
        state = read_json(where / "status.json", DataError, "unreadable").get("state") \
            if (where / "status.json").exists() else "pending"
        name = "/".join(f"{a}={values.get(a)}" for a in axes)
        outcome = v[0] if v else (f"failed: {failed[name]}" if name in failed else state)
        cells = []
        for _, vals in series:
            for arm in arms:
                m, lo, hi = interval(vals.get(tuple(values.get(a) for a in axes) + (arm,), []))
                cells.append("-" if m != m else f"{m:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo == lo else ""))
        rows.append([*(values.get(a) for a in axes), outcome, *cells])
    for p in sweep.points:  # a point whose config failed has no directory
        if p.error:
            rows.append([*(p.values[a] for a in axes), f"config error: {p.error}", *(["-"] * len(series) * len(arms))])
    rank = {a: {lab: i for i, lab in enumerate(order[a])} for a in axes}
    rows.sort(key=lambda r: tuple(rank[a].get(str(r[i]), 1e9) for i, a in enumerate(axes)))
    header = [*axes, "verdict", *(f"{s.get('label', s['metric'])} · {arm}" for s, _ in series for arm in arms)]
    figures = "".join(
        f"<h3>{html.escape(s.get('label', s['metric']))} vs {html.escape(a)}</h3>"
        + _img(_figure(a, order[a], vals, plot_axes, s.get("label", s["metric"])), f"{s['metric']} vs {a}")
        for s, vals in pooled for a in plot_axes)
    analysis = _analysis_html(root, sweep, plot_axes, order)
    desc = html.escape(sweep.description)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftlab sweep: {html.escape(sweep.name)}</title>
<style>{CSS} .grid td {{ white-space: nowrap; }}</style></head><body>
<h1>driftlab sweep · {html.escape(sweep.name)}</h1><p>{desc}</p>
<p class="muted">{len(sweep.points)} points over {html.escape(', '.join(f'{a} ({len(order[a])})' for a in axes))};
state: {html.escape(str(status.get('state', 'unknown')))}. Each point is an experiment directory under this one
(<code>axis=label/...</code>); <code>driftlab query {html.escape(str(root))} "select ..."</code> reads them all.</p>
<h2 id="grid">Verdicts and key metrics</h2>
<p class="muted">At the last checkpoint of each arm; mean over seeds [95% t interval over seeds].</p>
<div class="grid">{_table(header, rows)}</div>
<h2>Against each axis</h2>
<p class="muted">Mean over seeds (a <code>seed</code> axis pooled) with 95% t intervals; one line per arm and
value of the other axes.</p>
{figures}
{analysis}
<h2>Sweep file</h2><pre>{html.escape(sweep.text)}</pre>
</body></html>"""


def write_sweep_report(root: str | Path, out: str | Path | None = None) -> Path:
    root = Path(root)
    out = Path(out) if out is not None else root / "report.html"
    write_text(out, build_sweep_report(root))
    return out


def _cell(v: Any, digits: int = 2) -> str:
    if not isinstance(v, list):
        return "-" if v is None else str(v)
    m, lo, hi = (math.nan if x is None else x for x in v)
    if m != m:
        return "-"
    return f"{m:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo == lo else "")


def _analysis_html(root: Path, sweep, axes: list[str], order: dict[str, list[str]]) -> str:
    """The sweep's analysis (``analysis.json``): each point's read-outs and the trends over each axis."""
    path = root / "analysis.json"
    if not path.exists():
        return ""
    from driftlab.sweep.analyses import TRENDS

    a = read_json(path, DataError, "unreadable")
    keys = ["prior", "bayes_prior", "gain", "align_half_time", "half_time", "ratio", "quarter_to_half",
            "misaligned_half_time", "misaligned_ratio", "benign_half_time", "benign_ratio", "benign_undone"]
    rows = [[*(p["values"].get(x) for x in axes), f"{p['tokens'] / 1e6:.2f}M", f"{p['params'] / 1e3:.0f}k",
             f"{p['seeds']} ({p['censored']}, {p['benign_censored']} benign censored)", *(_cell(p.get(k)) for k in keys)]
            for p in a["points"]]
    trends = [[t["axis"], t["over"], t["label"], _cell([t["slope"], t["lo"], t["hi"]], 3), t["seeds"]]
              for t in a["trends"]]
    figures = ""
    for key in ("ratio", "align_half_time", "half_time", "misaligned_ratio", "benign_ratio"):
        series = {tuple(str(p["values"].get(x)) for x in axes) + ("",): p[key]
                  for p in a["points"] if p.get(key) and p[key][0] is not None}
        for axis in axes:
            png = _summary_figure(axis, order[axis], series, axes, TRENDS[key][0])
            figures += f"<h3>{html.escape(TRENDS[key][0])} vs {html.escape(axis)}</h3>" + _img(png, f"{key} vs {axis}")
    return (f"<h2 id='analysis'>Analysis: {html.escape(a['analysis'])}</h2><p class='muted'>Per point, mean over "
            f"seeds [95% t interval]; a censored seed never undid half the gain (its half-time is the stage's "
            f"length). Trends: {html.escape(a['method'])}.</p>"
            + _table([*axes, "pre-training tokens", "parameters", "seeds", *keys], rows)
            + "<h3>Trends (slope per doubling of the axis's size)</h3>"
            + _table(["axis", "over", "read-out", "slope [95% interval]", "seeds"], trends) + figures)


def _summary_figure(axis: str, labels: list[str], series: dict[tuple, list], axes: list[str], title: str):
    """Like ``_figure``, from (mean, lo, hi) already computed over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from driftlab.report.plots import _png

    k = axes.index(axis)
    lines: dict[tuple, dict[str, list]] = {}
    for key, v in series.items():
        rest = tuple(f"{a}={x}" for a, x in zip(axes, key) if a != axis)
        lines.setdefault(rest, {})[key[k]] = [math.nan if x is None else x for x in v]
    if not lines:
        return None
    xs = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for rest, pts in sorted(lines.items()):
        x = [xs[i] for i, lab in enumerate(labels) if lab in pts]
        m = np.array([pts[lab][0] for lab in labels if lab in pts])
        err = np.array([[pts[lab][0] - pts[lab][1], pts[lab][2] - pts[lab][0]] for lab in labels if lab in pts]).T
        ax.errorbar(x, m, yerr=np.where(np.isfinite(err), err, 0.0), marker="o", capsize=3, label=" ".join(rest))
    ax.set_xticks(xs, labels)
    ax.set_xlabel(axis)
    ax.set_ylabel(title if len(title) < 40 else title[:38] + "…", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
