"""The metrics table: long format, one row per checkpoint × metric × slice, stored as Parquet.

Columns: run, arm, seed, stage, stage_index, step, global_step, tokens, metric, context, domain, split,
site, value. ``site`` says where in the model an internal or weight metric was read (a hook point
such as ``layers.1.resid_post`` or a module group such as ``layers.0.mlp``); it is null for
behaviour metrics. Query it with DuckDB: ``select * from 'runs/x/metrics.parquet' where metric='p_aligned'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from driftlab.errors import DataError
from driftlab.runs.atomic import atomic_write

SCHEMA = pa.schema([
    ("run", pa.string()),
    ("arm", pa.string()),
    ("seed", pa.int64()),
    ("stage", pa.string()),
    ("stage_index", pa.int64()),
    ("step", pa.int64()),
    ("global_step", pa.int64()),
    ("tokens", pa.int64()),
    ("metric", pa.string()),
    ("context", pa.string()),
    ("domain", pa.string()),
    ("split", pa.string()),
    ("site", pa.string()),
    ("value", pa.float64()),
])
COLUMNS = SCHEMA.names


def metric_row(metric: str, value: float, context: str | None = None, domain: str | None = None,
               split: str | None = None, site: str | None = None) -> dict[str, Any]:
    """A measurement's part of a row; the store adds where in the run it was taken."""
    return {"metric": metric, "value": float(value), "context": context, "domain": domain, "split": split,
            "site": site}


class MetricsStore:
    """Rows kept in memory and rewritten atomically to ``metrics.parquet`` at every checkpoint."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            self.rows = read_metrics(self.path).to_pylist()

    def add(self, where: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.rows.extend({**where, **r} for r in rows)

    def truncate_after(self, global_step: int) -> None:
        """Drop rows measured after ``global_step`` (used on resume)."""
        self.rows = [r for r in self.rows if r["global_step"] <= global_step]

    def flush(self) -> None:
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in self.rows], schema=SCHEMA)
        atomic_write(self.path, lambda tmp: pq.write_table(table, tmp))


def read_metrics(path: str | Path) -> pa.Table:
    try:
        return pq.read_table(str(path))
    except (OSError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: cannot read metrics: {e}") from None
