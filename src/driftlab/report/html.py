"""``report.html`` and ``compare.html``: one self-contained page each (plots inlined as base64 PNG,
no scripts, no network), built from ``metrics.parquet``, ``experiment.yaml`` and ``verdict.json``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import duckdb

from driftlab.errors import DataError
from driftlab.experiments.claims import evaluate
from driftlab.experiments.spec import is_experiment_dir, load_experiment_dir
from driftlab.report.plots import curves_figure, heatmap_figure, pareto_figure, standard_curves
from driftlab.report.text import look_line
from driftlab.runs.atomic import read_json, write_json, write_text
from driftlab.runs.provenance import provenance

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #1a1a1a; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
.verdict { border: 2px solid #888; border-radius: 8px; padding: 1rem 1.2rem; margin: 1rem 0; }
.supported { border-color: #2e7d32; background: #eef7ee; } .not-supported { border-color: #c62828; background: #fbeeee; }
.inconclusive { border-color: #b7950b; background: #fdf8e6; }
.outcome { font-size: 1.5rem; font-weight: 700; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
td, th { border: 1px solid #ddd; padding: .25rem .55rem; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .8rem; overflow-x: auto; font-size: .8rem; max-height: 32rem; }
img { max-width: 100%; } .muted { color: #666; font-size: .9rem; }
"""


class Source:
    """An experiment directory (or a single run directory) opened for reporting."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.metrics = self.root / "metrics.parquet"
        if not self.metrics.exists():
            raise DataError(f"{self.metrics}: not found; {self.root} holds no metrics (is the run started?)")
        self.experiment = load_experiment_dir(self.root) if is_experiment_dir(self.root) else None
        self.con = duckdb.connect()
        self.con.execute(f"create view m as select * from read_parquet('{_sql_path(self.metrics)}')")
        self.arms = list(self.experiment.arms) if self.experiment else \
            [r[0] for r in self.con.execute("select distinct coalesce(arm, 'main') from m").fetchall()]
        self.name = self.experiment.name if self.experiment else self.root.name

    def verdict(self):
        if self.experiment is None or self.experiment.claim is None:
            return None
        return evaluate(self.experiment, self.metrics)

    def config_text(self) -> str:
        for name in ("experiment.yaml", "config.yaml"):
            if (self.root / name).exists():
                return (self.root / name).read_text()
        return ""

    def provenance(self) -> dict[str, Any]:
        path = self.root / "provenance.json"
        if path.exists():
            return read_json(path, DataError, "unreadable")
        return {**provenance(), "note": "recorded when the report was written (the run kept none)"}


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p class='muted'>No data for {html.escape(alt)}.</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(v: Any) -> str:
    return f"{v:+.3f}" if isinstance(v, float) else str(v)


def verdict_html(v) -> str:
    if v is None:
        return "<p class='muted'>This run has no claim attached, so there is no verdict.</p>"
    cls = v.outcome.split(" —")[0].replace(" ", "-")
    one_seed = (" (one seed: intervals are over items, reflect item variation only, and a per-seed quantity has "
                "none)" if len(v.seeds) == 1 else "")
    tests = _table(["check", "test", "effect", f"{v.confidence:.0%} interval", "threshold", "outcome", "what it measures"],
                   [[t.role, t.name, f"{t.estimate.value:+.3f}{t.unit}", "[{:+.3f}, {:+.3f}]".format(*t.interval),
                     f"{t.direction} {t.threshold:+.3f}", t.outcome + (f" ({t.power_note()})" if t.power_note() else ""),
                     t.description] for t in v.tests])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in v.notes)
    numbers = _table(["number", "mean over seeds"], [[k, _num(x)] for k, x in v.numbers.items()]) if v.numbers else ""
    return f"""<div class="verdict {cls}" id="verdict">
<div>Claim <b>{html.escape(v.claim)}</b>: {html.escape(v.text)}</div>
<div class="outcome">Verdict: {html.escape(v.outcome.upper())}</div>
<div><b>{html.escape(v.status)}</b>: {html.escape(look_line(v))}</div>
<div class="muted">{len(v.seeds)} seed(s) per arm ({', '.join(map(str, v.seeds))}); intervals: {html.escape(v.interval)}{one_seed}; rule fixed in the preset: {html.escape(json.dumps(v.rule))}</div>
{tests}<ul>{notes}</ul></div>{numbers}"""


def mitigation_html(v) -> str:
    """The bake-off table (one block of rows per scenario) and its Pareto plot, one panel each."""
    if v is None or not v.table:
        return ""
    from driftlab.report.tables import MITIGATION_COLUMNS, interval_cell

    rows = [[r.get("scenario", ""), r["arm"], r.get("kind", ""),
             *(interval_cell(r, *keys) for _, *keys in MITIGATION_COLUMNS[:3]),
             f"{r.get('gain', 'gain')}: {interval_cell(r, *MITIGATION_COLUMNS[3][1:])}",
             f"{r['heldout_loss_end']:.3f}", f"{r['kl_text_end']:.3f}", r.get("verdict", "baseline")]
            for r in v.table]
    return ("<h2>Mitigations: alignment kept vs what the drift stage gains</h2>"
            "<p class='muted'>Bits of alignment change over the drift stage where the scenario drifts (see "
            "the tests), the difference from the unmitigated baseline at the stage's end, the share of the "
            "stage's starting alignment above the prior kept (where that is above half a bit), and the stage's "
            "own gain; intervals as the verdict's (candidates' Bonferroni-widened).</p>" + _table(
                ["scenario", "arm", "kind", *(c[0] for c in MITIGATION_COLUMNS), "held-out loss", "KL text",
                 "verdict"], rows)
            + _img(pareto_figure(v.table), "mitigations: alignment kept vs gain (Pareto), per scenario"))


def build_report(root: Path) -> str:
    return _build(root)[0]


def _build(root: Path):
    src = Source(root)
    v = src.verdict()
    exp = src.experiment
    desc = html.escape(" ".join((exp.description if exp else "").split()))
    curves = curves_figure(src.con, src.arms, standard_curves(src.con))
    heat = heatmap_figure(src.con, src.arms)
    prov = src.provenance()
    prov_rows = [[k, v_] for k, v_ in prov.items()] + ([["seeds", ", ".join(map(str, exp.seeds))],
                                                         ["arms", ", ".join(exp.arms)]] if exp else [])
    hits = []
    for path in sorted(src.root.glob("*/seed-*/prefix.json")):
        info = read_json(path, DataError, "unreadable")
        hits.append([str(path.parent.relative_to(src.root)), ", ".join(info["stages"]), info["source"]])
    cache = ("<h3>Prefix cache</h3>" + _table(["run", "stages reused", "trained by"], hits)) if hits else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftlab: {html.escape(src.name)}</title>
<style>{CSS}</style></head><body>
<h1>driftlab · {html.escape(src.name)}</h1><p>{desc}</p>
{verdict_html(v)}
<h2>Over training</h2>
<p class="muted">Curves over tokens seen across all stages (dashed: stage boundaries); each arm's line is the mean
over seeds, its band the min to max.</p>
{_img(curves, "curves")}
<h2>Per domain</h2>{_img(heat, "domain heatmap")}
{mitigation_html(v)}
<h2>Provenance</h2>{_table(["", ""], prov_rows)}{cache}
<h2>Resolved config</h2><pre>{html.escape(src.config_text())}</pre>
</body></html>""", v


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Write the report; the verdict it shows is computed afresh from the metrics and kept in
    ``verdict.json`` too, so the two never disagree."""
    root = Path(root)
    out = Path(out) if out is not None else root / "report.html"
    page, verdict = _build(root)
    if verdict is not None:
        write_json(root / "verdict.json", verdict.record())
    write_text(out, page)
    return out


COMPARE_KEYS = {  # label -> SQL condition (end of the last stage, mean over seeds and arms)
    "bits (all)": "metric = 'bits_aligned' and context = 'assistant' and domain = 'all' and split = 'all'",
    "bits held-out": "metric = 'bits_aligned' and context = 'assistant' and domain = 'all' and split = 'held_out'",
    "capability": "metric = 'capability_acc' and split = 'all'",
    "probe refit": "metric = 'probe_auroc' and context = 'refit' and domain = 'persona' and split = 'all'",
    "probe frozen": "metric = 'probe_auroc' and context = 'frozen' and domain = 'persona' and split = 'all'",
    "dist. ref.": "metric = 'weight_rel_l2' and context = 'reference' and site = 'all'",
    "KL text": "metric = 'output_kl' and context = 'reference' and domain = 'text'",
}


def compare_rows(roots: list[Path]) -> tuple[list[str], list[list[str]]]:
    """One row per (run, arm): the end of its last stage, mean over seeds."""
    header = ["run", "arm", *COMPARE_KEYS]
    rows = []
    for root in roots:
        src = Source(root)
        for arm in src.arms:
            cells = []
            for cond in COMPARE_KEYS.values():
                r = src.con.execute(f"""
                    with last as (select seed, max(stage_index * 1000000000 + step) as k from m
                                  where coalesce(arm, 'main') = ? group by seed)
                    select avg(value) from m join last using (seed)
                    where coalesce(arm, 'main') = ? and stage_index * 1000000000 + step = last.k and {cond}""",
                                    [arm, arm]).fetchone()
                cells.append("-" if r[0] is None else f"{r[0]:+.3f}")
            rows.append([Path(root).name, arm, *cells])
    return header, rows


def write_compare(roots: list[Path], out: str | Path) -> Path:
    """Overlaid curves of every (run, arm), and the side-by-side table, in one page."""
    sources = [Source(r) for r in roots]
    con = duckdb.connect()
    parts = [f"""select '{i}:' || coalesce(arm, 'main') as arm, * exclude (arm)
                 from read_parquet('{_sql_path(s.metrics)}')""" for i, s in enumerate(sources)]
    con.execute("create view m as " + " union all by name ".join(parts))
    arms = [f"{i}:{a}" for i, s in enumerate(sources) for a in s.arms]
    labels = {f"{i}:{a}": f"{s.root.name} · {a}" for i, s in enumerate(sources) for a in s.arms}
    header, rows = compare_rows(list(roots))
    for s in sources:
        s.con.close()
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftlab compare</title><style>{CSS}</style></head><body>
<h1>driftlab · compare</h1>
<p>{html.escape(', '.join(str(r) for r in roots))}</p>
<h2>End of the last stage (mean over seeds)</h2>{_table(header, rows)}
<h2>Over training</h2>{_img(curves_figure(con, arms, standard_curves(con), labels), "curves")}
</body></html>"""
    out = Path(out)
    write_text(out, page)
    return out
