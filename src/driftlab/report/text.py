"""Plain-text lines about a verdict, shared by the terminal and the HTML report."""

from __future__ import annotations


def look_line(verdict) -> str:
    """Where the verdict stands in its design, and why it is exploratory (if it is)."""
    d, look = verdict.design, verdict.look
    at = (f"look {look['look']} of {len(d['looks'])} (seeds {', '.join(map(str, d['looks']))}; {d['spending']} "
          f"spending), nominal one-sided level {look['nominal_alpha']:.2g}" if look.get("look") else
          f"{look.get('seeds')} seeds: not a planned look (seeds {', '.join(map(str, d.get('looks', [])))}), "
          f"fixed-sample level {look.get('nominal_alpha', 0):.2g}")
    why = f"; exploratory because {'; '.join(verdict.why_exploratory)}" if verdict.why_exploratory else ""
    return f"{at}; seeds: {look.get('stop')}; rule {verdict.rule_hash}{why}"
