"""The bake-off table's cells, shared by the terminal and the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np

# the bake-off table's interval columns: (header, value key, low key, high key)
MITIGATION_COLUMNS = [("bits change", "bits_change", "bits_change_lo", "bits_change_hi"),
                      ("kept vs baseline (bits)", "kept_vs_baseline", "kept_lo", "kept_hi"),
                      ("share kept", "retained", "retained_lo", "retained_hi"),
                      ("gain", "capability_gained", "capability_lo", "capability_hi")]


def interval_cell(row: dict[str, Any], value: str, lo: str, hi: str, digits: int = 3) -> str:
    """``+v [+lo, +hi]`` from a table row; ``-`` where the value is undefined (a baseline's kept)."""
    v, a, b = (float(row.get(k, float("nan"))) for k in (value, lo, hi))
    if not np.isfinite(v):
        return "-"
    return f"{v:+.{digits}f} [{a:+.{digits}f}, {b:+.{digits}f}]" if np.isfinite(a) and np.isfinite(b) else f"{v:+.{digits}f}"
