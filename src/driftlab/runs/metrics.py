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

from driftlab.errors import DataError, StorageError
from driftlab.runs.atomic import atomic_write
from driftlab.runs.digest import rows_sha256

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
# what a metrics hash covers: every column but the run's and arm's names, which a prefix-cache hit renames
HASHED = [c for c in COLUMNS if c not in ("run", "arm")]


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

    def flush(self) -> dict[str, Any]:
        """Rewrite the file; returns the record of what it holds (row count and hash) for the resume state."""
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in self.rows], schema=SCHEMA)
        atomic_write(self.path, lambda tmp: pq.write_table(table, tmp))
        return metrics_record(table.select(HASHED).to_pylist())

    def check(self, record: dict[str, Any] | None, where: Path) -> None:
        """The rows kept on resume are those ``record`` (stored in ``where``) describes."""
        check_rows(self.path, self.rows, record, where)


def metrics_record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rows": len(rows), "sha256": rows_sha256(rows, HASHED)}


def check_rows(path: Path, rows: list[dict[str, Any]], record: dict[str, Any] | None, where: Path) -> None:
    """A ``StorageError`` naming ``path`` unless ``rows`` (read from it) are the rows ``record`` describes."""
    if record is None:
        raise StorageError(f"{where}: records no hash of the metrics in {path} (not written by this driftlab)")
    if len(rows) != record["rows"]:
        raise StorageError(f"{path}: {len(rows)} rows where {where} recorded {record['rows']} "
                           f"(changed since they were written)")
    if rows_sha256(rows, HASHED) != record["sha256"]:
        raise StorageError(f"{path}: rows do not match the SHA-256 recorded in {where} "
                           f"(changed since they were written)")


def read_metrics(path: str | Path) -> pa.Table:
    try:
        return pq.read_table(str(path))
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read metrics: {e}") from None
