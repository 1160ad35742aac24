"""Reads a lake the way its users do, and prints what it found as JSON on stdout.

DuckDB reads every file with Hive partitioning (the rows, their partition columns and file
names); pyarrow reads each file's metadata (row groups, compression, statistics). Neither is
the archive's writer.

    python read_lake.py LAKE_DIR
"""
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq

root = sys.argv[1]
paths = []
leftovers = []
for directory, _, names in os.walk(root):
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".parquet"):
            paths.append(path)
        elif not os.path.relpath(path, root).startswith("_state"):
            leftovers.append(os.path.relpath(path, root))

rows = []
if paths:
    relation = duckdb.sql(
        f"SELECT *, epoch_ms(event_time) AS event_ms FROM read_parquet('{root}/**/*.parquet', "
        "hive_partitioning=true, filename=true)"
    )
    columns = relation.columns
    for values in relation.fetchall():
        row = dict(zip(columns, values))
        row["event_time"] = None
        row["date"] = str(row["date"])
        row["filename"] = os.path.relpath(row["filename"], root)
        rows.append(row)

files = []
for path in sorted(paths):
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(0)
    files.append({
        "path": os.path.relpath(path, root),
        "rows": meta.num_rows,
        "row_groups": meta.num_row_groups,
        "compression": group.column(0).compression,
        "statistics": all(group.column(i).is_stats_set for i in range(group.num_columns)),
        "schema": [f"{field.name}:{field.type}" for field in pq.read_schema(path)],
    })

json.dump({"rows": rows, "files": files, "leftovers": leftovers}, sys.stdout, default=str)
