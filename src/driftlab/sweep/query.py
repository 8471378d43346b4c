"""``driftlab query``: DuckDB over the metrics of a run, an experiment or a sweep, read where they lie.

Two views:

- ``metrics``: every row of every ``metrics.parquet`` (the columns of ``runs.metrics``), and in a
  sweep the point's axis values as columns, read by DuckDB from the ``axis=label`` folder names
  (hive partitioning; numbers come back as numbers). A point still running contributes the rows
  its runs have written so far.
- ``verdicts``: one row per experiment (a sweep's point) with a verdict: its axis values, the
  claim, the outcome, the seeds, and the tests and numbers as JSON text.

No copy of the Parquet files is made; only the small verdict records are read into memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from driftlab.errors import DataError


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _experiment_files(root: Path) -> list[Path]:
    """An experiment's combined metrics, or (still running) each of its runs' own."""
    if (root / "metrics.parquet").is_file():
        return [root / "metrics.parquet"]
    return sorted(root.glob("*/seed-*/metrics.parquet"))


def _typed(labels: list[str]) -> list[Any]:
    """Axis labels as DuckDB's hive partitioning types them: integers, else numbers, else text."""
    for kind in (int, float):
        try:
            return [kind(v) for v in labels]
        except ValueError:
            continue
    return labels


def _duck_type(values: list[Any]) -> str:
    return "BIGINT" if all(isinstance(x, int) for x in values) else \
        "DOUBLE" if all(isinstance(x, int | float) for x in values) else "VARCHAR"


def sources(path: Path) -> tuple[list[Path], list[tuple[dict[str, str], Path]], bool]:
    """(metrics files, (axis values, experiment directory) of each experiment, whether a sweep)."""
    from driftlab.sweep.driver import sweep_points

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not found (a run, experiment or sweep directory)")
    if (path / "sweep.yaml").is_file():
        points = sweep_points(path)
        files = [f for _, where in points for f in _experiment_files(where)]
        return files, points, True
    if (path / "experiment.yaml").is_file():
        return _experiment_files(path), [({}, path)], False
    if (path / "metrics.parquet").is_file():
        return [path / "metrics.parquet"], [], False
    raise DataError(f"{path}: holds no metrics.parquet (not a driftlab run, experiment or sweep directory)")


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views ``metrics`` and ``verdicts`` over ``path``."""
    files, experiments, is_sweep = sources(Path(path))
    con = duckdb.connect()
    if not files:
        raise DataError(f"{path}: no metrics written yet")
    listed = "[" + ", ".join(_sql_str(str(f.resolve())) for f in files) + "]"
    if is_sweep:
        # hive partitioning reads every key=value folder in the path: keep only the sweep's own axes
        outside = sorted({part.split("=", 1)[0] for part in Path(path).resolve().parts if "=" in part})
        drop = f" exclude ({', '.join(map(_quote, outside))})" if outside else ""
        labels: dict[str, list[str]] = {}
        for values, _ in experiments:
            for axis, label in values.items():
                labels.setdefault(axis, []).append(label)
        types = ", ".join(f"{_sql_str(a)}: '{_duck_type(_typed(v))}'" for a, v in labels.items())
        con.execute(f"create view metrics as select *{drop} from read_parquet({listed}, hive_partitioning=true, "
                    f"hive_types={{{types}}}, union_by_name=true)")
    else:
        con.execute(f"create view metrics as select * from read_parquet({listed}, union_by_name=true)")
    con.register("_verdicts", _verdict_table(experiments))
    con.execute("create view verdicts as select * from _verdicts")
    return con


def _verdict_table(experiments: list[tuple[dict[str, str], Path]]) -> pa.Table:
    axes = list(experiments[0][0]) if experiments else []
    typed = {a: _typed([values[a] for values, _ in experiments]) for a in axes}
    rows = []
    for i, (_, where) in enumerate(experiments):
        path = where / "verdict.json"
        if not path.is_file():
            continue
        try:
            v = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: unreadable ({e})") from None
        interval = v.get("interval")
        rows.append({**{a: typed[a][i] for a in axes}, "point": str(where), "claim": v.get("claim"),
                     "outcome": v.get("outcome"), "seeds": len(v.get("seeds") or []),
                     "confidence": v.get("confidence"),
                     "interval": interval if isinstance(interval, str) else json.dumps(interval),
                     "tests": json.dumps(v.get("tests", [])), "numbers": json.dumps(v.get("numbers", {}))})
    arrow = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string()}
    fields = [pa.field(a, arrow[_duck_type(typed[a])]) for a in axes]
    fields += [pa.field(n, t) for n, t in (("point", pa.string()), ("claim", pa.string()), ("outcome", pa.string()),
                                           ("seeds", pa.int64()), ("confidence", pa.float64()),
                                           ("interval", pa.string()), ("tests", pa.string()),
                                           ("numbers", pa.string()))]
    schema = pa.schema(fields)
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple]]:
    """The query's column names and rows; bad SQL is a one-line error."""
    try:
        result = con.execute(sql)
        header = [d[0] for d in result.description or []]
        return header, result.fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"query: {first}") from None
