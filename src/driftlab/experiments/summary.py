"""The end-of-run summary, computed from ``metrics.parquet`` with DuckDB (never hard-coded)."""

from __future__ import annotations

from pathlib import Path

import duckdb

SUMMARY_SQL = """
with ends as (  -- each stage's last checkpoint, and the initial model as stage_index -1
    select stage_index, stage, max(step) as step from m group by all
    union all
    select distinct -1, 'init', 0 from m where stage_index = 0 and step = 0
)
select e.stage, any_value(m.tokens) as tokens,
  avg(value) filter (metric = 'p_aligned' and context = 'assistant' and domain = 'all' and split = 'trained') as p_trained,
  avg(value) filter (metric = 'bits_aligned' and context = 'assistant' and domain = 'all' and split = 'trained') as bits_trained,
  avg(value) filter (metric = 'p_aligned' and context = 'assistant' and domain = 'all' and split = 'held_out') as p_held_out,
  avg(value) filter (metric = 'bits_aligned' and context = 'assistant' and domain = 'all' and split = 'held_out') as bits_held_out,
  avg(value) filter (metric = 'bayes_bits' and context = 'assistant' and domain = 'all' and split = 'all') as bayes_assistant,
  avg(value) filter (metric = 'bits_aligned' and context = 'good_evidence' and domain = 'all' and split = 'all') as bits_good,
  avg(value) filter (metric = 'bits_aligned' and context = 'bad_evidence' and domain = 'all' and split = 'all') as bits_bad,
  avg(value) filter (metric = 'bayes_gap_bits' and context in ('good_evidence', 'bad_evidence') and domain = 'all' and split = 'all') as gap_evidence,
  avg(value) filter (metric = 'bayes_gap_bits' and context = 'graded' and domain = 'all' and split = 'all') as gap_graded,
  avg(value) filter (metric = 'bits_aligned' and context = 'pair_good' and domain = 'all' and split = 'all') as bits_pair_good,
  avg(value) filter (metric = 'bits_aligned' and context = 'pair_bad' and domain = 'all' and split = 'all') as bits_pair_bad,
  avg(value) filter (metric = 'capability_acc' and split = 'all') as capability,
  avg(value) filter (metric = 'capability_digit_acc' and split = 'all') as capability_digits,
  avg(value) filter (metric = 'capability_answer_nll' and split = 'all') as capability_nll,
  avg(value) filter (metric = 'heldout_loss') as heldout_loss,
  avg(value) filter (metric = 'shortcut_p' and context = 'assistant') as shortcut_assistant,
  avg(value) filter (metric = 'bayes_shortcut_p' and context = 'assistant') as shortcut_bayes,
  avg(value) filter (metric = 'persona_projection_rel' and context = 'assistant' and split = 'all' and m.site = p.probe_site) as proj_assistant,
  avg(value) filter (metric = 'persona_cosine' and context = 'reference' and m.site = p.probe_site) as cos_reference,
  avg(value) filter (metric = 'probe_auroc' and context = 'refit' and domain = 'persona' and split = 'all') as probe_refit,
  avg(value) filter (metric = 'probe_auroc' and context = 'frozen' and domain = 'persona' and split = 'all') as probe_frozen,
  avg(value) filter (metric = 'probe_auroc' and context = 'cotrained' and domain = 'persona' and split = 'all') as probe_cotrained,
  avg(value) filter (metric = 'probe_auroc' and context = 'shuffled' and domain = 'persona' and split = 'all') as probe_shuffled,
  avg(value) filter (metric = 'probe_auroc' and context = 'random' and domain = 'persona' and split = 'all') as probe_random,
  avg(value) filter (metric = 'probe_auroc' and context = 'refit' and domain = 'persona_pair' and split = 'all') as probe_pair_refit,
  avg(value) filter (metric = 'probe_auroc' and context = 'random' and domain = 'persona_pair' and split = 'all') as probe_pair_random,
  avg(value) filter (metric = 'weight_rel_l2' and context = 'stage_start' and m.site = 'all') as update_rel,
  avg(value) filter (metric = 'weight_rel_l2' and context = 'reference' and m.site = 'all') as dist_reference,
  avg(value) filter (metric = 'output_kl' and context = 'reference' and domain in ('text', 'prompts')) as kl_reference
from ends e
cross join (select coalesce(any_value(site), '') as probe_site from m where metric = 'probe_auroc') p join m on m.stage_index = greatest(e.stage_index, 0) and m.step = e.step
group by e.stage, e.stage_index order by e.stage_index
"""

ROWS = {  # summary key -> label, in display order
    "tokens": "tokens seen",
    "p_trained": "assistant P(al), trained",
    "bits_trained": "assistant bits, trained",
    "p_held_out": "assistant P(al), held-out",
    "bits_held_out": "assistant bits, held-out",
    "bayes_assistant": "  Bayes bits, pretrain prior",
    "bits_good": "bits | good evidence",
    "bits_bad": "bits | bad evidence",
    "gap_evidence": "  gap to Bayes (good, bad)",
    "gap_graded": "  gap to Bayes, graded evidence (0-3 episodes, mixed)",
    "bits_pair_good": "bits | two-agent story, the good one",
    "bits_pair_bad": "bits | two-agent story, the bad one",
    "capability": "capability exact match",
    "capability_digits": "  answer digits right (teacher-forced)",
    "capability_nll": "  answer loss (nats/token)",
    "heldout_loss": "held-out LM loss (nats/token)",
    "shortcut_assistant": "assistant P(shortcut 'done') on a task",
    "shortcut_bayes": "  Bayes P(shortcut), pretrain prior",
    "proj_assistant": "persona projection, assistant",
    "cos_reference": "  cosine to reference direction",
    "probe_refit": "persona probe AUROC, refit",
    "probe_frozen": "  frozen at reference",
    "probe_cotrained": "  co-trained",
    "probe_shuffled": "  control: shuffled labels",
    "probe_random": "  control: random direction",
    "probe_pair_refit": "two-agent persona probe AUROC, refit",
    "probe_pair_random": "  control: random direction",
    "update_rel": "weights moved in stage (rel. L2)",
    "dist_reference": "  distance from reference (rel. L2)",
    "kl_reference": "KL to reference, neutral text (nats; pre-trained: at the answer)",
}


def summarize(metrics_path: str | Path) -> list[dict]:
    """One row per stage end (plus the initial model) with the headline metrics."""
    con = duckdb.connect()
    con.execute(f"create view m as select * from read_parquet('{Path(metrics_path).as_posix()}')")
    rel = con.execute(SUMMARY_SQL)
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row)) for row in rel.fetchall()]


def drift_lines(rows: list[dict]) -> list[str]:
    """Plain-language change of the assistant's bits across each stage after the first."""
    lines = []
    for prev, cur in zip(rows[1:], rows[2:]):
        for split in ("trained", "held_out"):
            a, b = prev[f"bits_{split}"], cur[f"bits_{split}"]
            if a is None or b is None:
                continue
            lines.append(f"{cur['stage']}: assistant bits on {split.replace('_', '-')} domains "
                         f"{a:+.2f} → {b:+.2f} ({b - a:+.2f})")
    return lines
